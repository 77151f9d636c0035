//! `onerec report` (and the report `quickstart` writes): every section present with
//! its charts, each chart well-formed SVG; a single pretrain directory and bad inputs.

use std::path::Path;
use std::process::Command;

/// A quickstart small enough for a test (as `quickstart_cli`), with two alignment
/// iterations so the per-iteration charts have more than one point.
const OVERRIDES: &[&str] = &[
    "train.epochs=1",
    "train.max_steps=8",
    "train.eval_every=4",
    "train.rank_beam=10",
    "train.valid_users=40",
    "train.rank_users=40",
    "reward.epochs=1",
    "align.iterations=2",
    "align.steps=3",
    "align.candidates=4",
];

fn onerec(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_onerec")).args(args).env("RAYON_NUM_THREADS", "2").output().unwrap()
}

/// `(section id, number of <svg> charts)` in page order, and checks each chart parses
/// as XML with an `<svg>` root and finite coordinates.
fn sections_and_charts(html: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for part in html.split("<section id=\"").skip(1) {
        let id = part.split('"').next().unwrap().to_string();
        let body = part.split("</section>").next().unwrap();
        let mut charts = 0;
        for svg in body.split("<svg").skip(1) {
            let end = svg.find("</svg>").unwrap_or_else(|| panic!("section {id}: unterminated <svg>"));
            let text = format!("<svg{}</svg>", &svg[..end]);
            let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("section {id}: bad SVG: {e}"));
            assert_eq!(doc.root_element().tag_name().name(), "svg");
            assert!(doc.descendants().count() > 20, "section {id}: a near-empty chart");
            assert!(!text.contains("NaN") && !text.contains("inf\""), "section {id}: non-finite coordinates");
            charts += 1;
        }
        out.push((id, charts));
    }
    out
}

#[test]
fn quickstart_report_has_every_section_with_charts() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("qs");
    let mut args: Vec<String> =
        ["-q", "quickstart", "--out", out.to_str().unwrap(), "--seed", "7"].iter().map(|s| s.to_string()).collect();
    args.extend(["--users", "100", "--items", "60"].iter().map(|s| s.to_string()));
    for kv in OVERRIDES {
        args.extend(["--set".to_string(), kv.to_string()]);
    }
    let o = onerec(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "quickstart failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(out.join("report.html")).expect("quickstart writes report.html");
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    let external = ["<script", "src=\"http", "href=\"http", "url(http"];
    assert!(external.iter().all(|x| !html.contains(x)), "self-contained: no scripts, no external resources");
    let got = sections_and_charts(&html);
    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, onerec::report::SECTION_IDS, "every section, in order");
    for (id, n) in &got {
        assert!(*n >= 1, "section {id} has no chart:\n{}", section_text(&html, id));
    }
    assert!(!html.contains("class=\"note\">skipped"), "nothing skipped on a full run");
    // 2 MoE charts, 3+ alignment charts (reward, accuracy, each eval metric), 2 tokenizer.
    let n = |id: &str| got.iter().find(|(i, _)| i == id).unwrap().1;
    assert_eq!((n("moe"), n("tokenizer")), (2, 2));
    assert!(n("alignment") >= 3, "{}", section_text(&html, "alignment"));

    // `onerec report` on the pretrain directory alone: no alignment, the rest from
    // metrics.jsonl and the checkpoint.
    let single = t.path().join("pre.html");
    let o = onerec(&["report", out.join("pretrain").to_str().unwrap(), "--out", single.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&single).unwrap();
    let got = sections_and_charts(&html);
    for (id, n) in &got {
        let want_charts = id != "alignment";
        assert_eq!(*n >= 1, want_charts, "section {id}:\n{}", section_text(&html, id));
    }
    assert!(section_text(&html, "alignment").contains("skipped: no align output"));

    // A broken metrics file is named in its sections; the rest of the report stays.
    std::fs::write(out.join("pretrain/metrics.jsonl"), "{\"step\": 4}\nnot json\n").unwrap();
    let o = onerec(&["report", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(section_text(&html, "loss").contains("metrics.jsonl:2: invalid JSON"), "{}", section_text(&html, "loss"));
    assert!(sections_and_charts(&html).iter().any(|(id, n)| id == "alignment" && *n >= 3));
}

fn section_text<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html.find(&format!("<section id=\"{id}\"")).unwrap_or(0);
    let end = html[start..].find("</section>").map_or(html.len(), |e| start + e);
    &html[start..end]
}

#[test]
fn report_refuses_what_is_not_a_run_directory() {
    let t = tempfile::tempdir().unwrap();
    let o = onerec(&["report", t.path().join("nope").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
    let o = onerec(&["report", t.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("not a run directory"), "{err}");
    assert!(!Path::new(&t.path().join("report.html")).exists());
}
