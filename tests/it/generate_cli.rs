//! The `generate` / `score` / `eval` command lines.

use std::process::Command;

fn onerec(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_onerec")).args(args).env("RAYON_NUM_THREADS", "1").output().unwrap()
}

#[test]
fn bad_shard_and_split_are_rejected_by_the_parser() {
    let out = onerec(&["generate", "--checkpoint", "c", "--data", "d", "--out", "o", "--shard", "2/2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad shard"));
    let out = onerec(&["eval", "--checkpoint", "c", "--data", "d", "--split", "train"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown split"));
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Reads `<out>.run.json`.
fn run_record(out: &std::path::Path) -> serde_json::Value {
    let p = format!("{}.run.json", out.display());
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))).unwrap()
}

/// Shards of `onerec generate` (and `--batch-users`) concatenate to the unsharded
/// output, byte for byte, on a real trained checkpoint.
#[test]
fn cli_shards_concatenate_to_unsharded() {
    let (dir, ckpt, data) = crate::common::tiny_checkpoint(5);
    let run = |extra: &[&str], name: &str| {
        let out = dir.path().join(name);
        let o = out.to_str().unwrap();
        let mut args = vec![
            "generate",
            "--checkpoint",
            &ckpt,
            "--data",
            &data,
            "--split",
            "test",
            "--beam",
            "5",
            "--top",
            "5",
            "--out",
            o,
        ];
        args.extend_from_slice(extra);
        let r = onerec(&args);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        std::fs::read(out).unwrap()
    };
    // Batches of 7 users: 60 users = 9 batches, so shards hold 3 whole batches each.
    let full = run(&["--batch-users", "7"], "full.jsonl");
    let mut cat = run(&["--shard", "0/3", "--batch-users", "7"], "0.jsonl");
    cat.extend(run(&["--shard", "1/3", "--batch-users", "7"], "1.jsonl"));
    cat.extend(run(&["--shard", "2/3", "--batch-users", "7"], "2.jsonl"));
    let (full, cat) = (String::from_utf8(full).unwrap(), String::from_utf8(cat).unwrap());
    for (i, (a, b)) in full.lines().zip(cat.lines()).enumerate() {
        assert_eq!(a, b, "line {i} differs");
    }
    assert_eq!(full, cat);
    let text = full;
    assert_eq!(text.lines().count(), 60, "one line per test user");
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["user"].is_string(), "{v}");
        let items = v["items"].as_array().unwrap();
        let scores: Vec<f64> = v["scores"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!((items.len(), scores.len()), (5, 5), "{v}");
        assert!(scores.iter().all(|s| s.is_finite() && *s <= 0.0), "{v}");
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first: {v}");
    }
    // The run record beside the output, and the same output without --data (the
    // checkpoint's recorded dataset).
    let rec = run_record(&dir.path().join("full.jsonl"));
    assert_eq!(
        (rec["command"].as_str(), rec["args"]["beam"].as_u64(), rec["users"].as_u64()),
        (Some("generate"), Some(5), Some(60))
    );
    assert!(rec["seed"].is_u64() && rec["checkpoint_step"].as_u64() == Some(4), "{rec}");
    assert_eq!(rec["threads"].as_u64(), Some(1), "RAYON_NUM_THREADS=1 is recorded: {rec}");
    let out = dir.path().join("nodata.jsonl");
    let r = onerec(&[
        "generate",
        "--checkpoint",
        &ckpt,
        "--split",
        "test",
        "--beam",
        "5",
        "--top",
        "5",
        "--batch-users",
        "7",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
    let canonical = std::fs::canonicalize(&data).unwrap();
    assert_eq!(run_record(&out)["data"].as_str(), canonical.to_str());
}

/// `onerec score --checkpoint DIR --pairs FILE --out FILE` exactly as the contract
/// writes it (no --data: the checkpoint's recorded dataset), equal to an explicit
/// --data; a header line is accepted; unknown ids are named by file:line, or skipped
/// and counted with --skip-bad-lines.
#[test]
fn cli_score_contract_header_and_bad_lines() {
    let (dir, ckpt, data) = crate::common::tiny_checkpoint(5);
    let ds = onerec::data::Dataset::load(std::path::Path::new(&data)).unwrap();
    let users: Vec<&str> =
        (0..ds.n_users()).filter(|&u| ds.split(u).test.is_some()).map(|u| ds.user_ids[u].as_str()).take(5).collect();
    assert_eq!(users.len(), 5);
    let items = &ds.item_ids;
    let mut valid = vec![];
    for (k, u) in users.iter().enumerate() {
        valid.push((u.to_string(), items[k * 7 % items.len()].clone()));
        valid.push((u.to_string(), items[(k * 7 + 3) % items.len()].clone()));
    }
    let mut text = "user_id\titem_id\n".to_string();
    for (u, i) in &valid {
        text.push_str(&format!("{u}\t{i}\n"));
    }
    let pairs = dir.path().join("pairs.tsv");
    std::fs::write(&pairs, &text).unwrap();
    let p = pairs.to_str().unwrap();
    let out = dir.path().join("scores.tsv");
    let r = onerec(&["score", "--checkpoint", &ckpt, "--pairs", p, "--out", out.to_str().unwrap()]);
    assert!(r.status.success(), "{}", stderr(&r));
    let got = std::fs::read_to_string(&out).unwrap();
    assert_eq!(got.lines().count(), valid.len(), "one line per valid pair:\n{got}");
    for (line, (u, i)) in got.lines().zip(&valid) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!((f.len(), f[0], f[1]), (3, u.as_str(), i.as_str()), "{line}");
        let lp: f64 = f[2].parse().unwrap();
        assert!(lp.is_finite() && lp <= 0.0, "{line}");
    }
    assert!(stderr(&r).contains("taken as a header"), "{}", stderr(&r));
    let rec = run_record(&out);
    assert_eq!(
        (rec["command"].as_str(), rec["pairs_scored"].as_u64(), rec["header_line"].as_bool()),
        (Some("score"), Some(10), Some(true))
    );
    let out2 = dir.path().join("scores2.tsv");
    let r = onerec(&["score", "--checkpoint", &ckpt, "--data", &data, "--pairs", p, "--out", out2.to_str().unwrap()]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(std::fs::read_to_string(&out2).unwrap(), got, "--data gives the same scores");

    // Unknown user (line 3) and unknown item (line 5).
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines.insert(2, format!("nobody\t{}", items[0]));
    lines.insert(4, format!("{}\tno-such-item", users[0]));
    std::fs::write(&pairs, lines.join("\n") + "\n").unwrap();
    let bad_out = dir.path().join("bad.tsv");
    let r = onerec(&["score", "--checkpoint", &ckpt, "--pairs", p, "--out", bad_out.to_str().unwrap()]);
    assert!(!r.status.success());
    let err = stderr(&r);
    assert!(
        err.contains("pairs.tsv:3") && err.contains("unknown user id `nobody`") && err.contains("--skip-bad-lines"),
        "{err}"
    );
    assert!(!bad_out.exists(), "no output on error");
    let r =
        onerec(&["score", "--checkpoint", &ckpt, "--pairs", p, "--out", bad_out.to_str().unwrap(), "--skip-bad-lines"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let err = stderr(&r);
    assert!(
        err.contains("skipped 2 bad lines") && err.contains("pairs.tsv:5") && err.contains("no-such-item"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&bad_out).unwrap(), got, "the other lines are still scored, identically");
    assert_eq!(run_record(&bad_out)["skipped_lines"].as_u64(), Some(2));
}

/// A checkpoint that does not fit the dataset or has lost its dataset, a tampered
/// tokenizer copy, and empty histories: one clear error line each.
#[test]
fn cli_mismatched_or_missing_inputs_give_clear_errors() {
    use onerec::data::prepare::{prepare_interactions, write_dataset, PrepareOptions};
    let (dir, ckpt, data) = crate::common::tiny_checkpoint(5);
    let root = dir.path();
    let ds = onerec::data::Dataset::load(std::path::Path::new(&data)).unwrap();
    let pairs = root.join("p.tsv");
    std::fs::write(&pairs, format!("{}\t{}\n", ds.user_ids[0], ds.item_ids[0])).unwrap();
    let p = pairs.to_str().unwrap();
    let out = root.join("o.tsv");
    let o = out.to_str().unwrap();

    // Histories file: an empty history is named, or skipped and counted.
    let hist = root.join("h.txt");
    std::fs::write(&hist, format!("a {}\nb\nc {} {}\n", ds.item_ids[1], ds.item_ids[2], ds.item_ids[3])).unwrap();
    let h = hist.to_str().unwrap();
    let gout = root.join("g.jsonl");
    let g = gout.to_str().unwrap();
    let r = onerec(&["generate", "--checkpoint", &ckpt, "--histories", h, "--beam", "4", "--top", "2", "--out", g]);
    assert!(!r.status.success());
    assert!(stderr(&r).contains("h.txt:2") && stderr(&r).contains("empty history"), "{}", stderr(&r));
    let r = onerec(&[
        "generate",
        "--checkpoint",
        &ckpt,
        "--histories",
        h,
        "--beam",
        "4",
        "--top",
        "2",
        "--out",
        g,
        "--skip-bad-lines",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(stderr(&r).contains("skipped 1 bad lines"), "{}", stderr(&r));
    let users: Vec<String> = std::fs::read_to_string(&gout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["user"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(users, ["a", "c"]);

    // A dataset with items the checkpoint's catalogue lacks.
    let (w2, d2) = (root.join("world2"), root.join("data2"));
    onerec::world::synth(
        &onerec::world::SynthOptions { users: 30, items: 120, topics: 4, seed: 9, ..Default::default() },
        &w2,
    )
    .unwrap();
    let other = prepare_interactions(&w2.join("interactions.csv"), &PrepareOptions::default()).unwrap();
    write_dataset(&other, &d2).unwrap();
    for cmd in ["score", "generate"] {
        let args: Vec<&str> = if cmd == "score" {
            vec!["score", "--checkpoint", &ckpt, "--data", d2.to_str().unwrap(), "--pairs", p, "--out", o]
        } else {
            vec!["generate", "--checkpoint", &ckpt, "--data", d2.to_str().unwrap(), "--out", g]
        };
        let r = onerec(&args);
        assert!(!r.status.success());
        let err = stderr(&r);
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert!(errors.len() == 1 && errors[0].contains("the checkpoint's catalogue lacks"), "{cmd}: {err}");
    }

    // A tampered tokenizer copy in the checkpoint.
    let best = std::path::Path::new(&ckpt).join("best");
    let codes = std::fs::read_to_string(best.join("codes.tsv")).unwrap();
    let mut swapped: Vec<&str> = codes.lines().collect();
    swapped.swap(1, 2);
    std::fs::write(best.join("codes.tsv"), swapped.join("\n") + "\n").unwrap();
    let r = onerec(&["score", "--checkpoint", &ckpt, "--pairs", p, "--out", o]);
    assert!(!r.status.success());
    assert!(stderr(&r).contains("codes.tsv") && stderr(&r).contains("differs"), "{}", stderr(&r));
    std::fs::write(best.join("codes.tsv"), &codes).unwrap();

    // The recorded dataset moved away; then a checkpoint that records none.
    let moved = root.join("data-moved");
    std::fs::rename(&data, &moved).unwrap();
    let r = onerec(&["score", "--checkpoint", &ckpt, "--pairs", p, "--out", o]);
    assert!(!r.status.success());
    assert!(stderr(&r).contains("no longer exists") && stderr(&r).contains("pass --data"), "{}", stderr(&r));
    let r = onerec(&["score", "--checkpoint", &ckpt, "--data", moved.to_str().unwrap(), "--pairs", p, "--out", o]);
    assert!(r.status.success(), "--data overrides: {}", stderr(&r));
    let meta_path = best.join("checkpoint.json");
    let mut meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    assert!(meta.as_object_mut().unwrap().remove("data_dir").is_some());
    std::fs::write(&meta_path, serde_json::to_string(&meta).unwrap()).unwrap();
    for args in [
        vec!["score", "--checkpoint", &ckpt, "--pairs", p, "--out", o],
        vec!["eval", "--checkpoint", &ckpt, "--split", "test", "--json"],
    ] {
        let r = onerec(&args);
        assert!(!r.status.success());
        assert!(
            stderr(&r).contains("does not record its dataset") && stderr(&r).contains("pass --data DIR"),
            "{}",
            stderr(&r)
        );
    }
}

/// `onerec eval --json` prints the contract's keys with invalid_paths == 0.
#[test]
fn cli_eval_json_has_the_contract_keys() {
    let (dir, ckpt, data) = crate::common::tiny_checkpoint(5);
    let r = onerec(&["eval", "--checkpoint", &ckpt, "--data", &data, "--split", "test", "--json"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    for k in
        ["recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20", "invalid_paths", "coverage", "users"]
    {
        assert!(v.get(k).is_some(), "missing {k} in {v}");
    }
    assert_eq!(v["invalid_paths"].as_f64(), Some(0.0));
    assert_eq!(v["users"].as_f64(), Some(60.0));
    // Without --data: the checkpoint's recorded dataset, same report; --out adds the
    // run record.
    let out = dir.path().join("eval.json");
    let r2 = onerec(&["eval", "--checkpoint", &ckpt, "--split", "test", "--json", "--out", out.to_str().unwrap()]);
    assert!(r2.status.success(), "{}", stderr(&r2));
    assert_eq!(r2.stdout, r.stdout);
    let rec = run_record(&out);
    assert_eq!((rec["command"].as_str(), rec["args"]["split"].as_str()), (Some("eval"), Some("test")));
}

/// `--item-head-weight` on eval and generate: fused lists are sorted, unique and skip
/// history; it needs a model with an item head, single-item sessions and a sane weight.
#[test]
fn cli_fused_ranking_eval_and_generate() {
    let (dir, ckpt, data) =
        crate::common::tiny_checkpoint_with(6, &["model.item_id_embedding=true", "model.item_head_weight=1.0"]);
    let r = onerec(&[
        "eval",
        "--checkpoint",
        &ckpt,
        "--data",
        &data,
        "--split",
        "test",
        "--json",
        "--exclude-history",
        "--session-len",
        "0",
        "--item-head-weight",
        "2",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert!(v["recall@10"].as_f64().is_some() && v["users"].as_f64() == Some(60.0), "{v}");
    let out = dir.path().join("recs.jsonl");
    let r = onerec(&[
        "generate",
        "--checkpoint",
        &ckpt,
        "--data",
        &data,
        "--exclude-history",
        "--top",
        "10",
        "--item-head-weight",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let ds = onerec::data::Dataset::load(std::path::Path::new(&data)).unwrap();
    let users = onerec::generate::users::users_from_split(&ds, onerec::generate::SplitSel::Test);
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), users.len());
    for (u, l) in users.iter().zip(&lines) {
        let items: Vec<&str> = l["items"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
        let scores: Vec<f64> = l["scores"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(items.len(), 10, "{l}");
        assert!(scores.windows(2).all(|p| p[0] >= p[1]), "unsorted {scores:?}");
        assert_eq!(items.iter().collect::<std::collections::HashSet<_>>().len(), 10, "repeats {items:?}");
        let hist: Vec<&str> = u.history.iter().map(|&i| ds.item_ids[i as usize].as_str()).collect();
        assert!(items.iter().all(|i| !hist.contains(i)), "history item in {items:?}");
    }
    let fails = |args: &[&str], want: &str| {
        let r = onerec(args);
        assert!(!r.status.success() && stderr(&r).contains(want), "{args:?}: {}", stderr(&r));
    };
    let o = out.to_str().unwrap();
    fails(
        &["generate", "--checkpoint", &ckpt, "--session-len", "2", "--item-head-weight", "1", "--out", o],
        "--session-len 1",
    );
    fails(&["eval", "--checkpoint", &ckpt, "--item-head-weight=-1"], "must be a finite number");
    let (_d2, plain, data2) = crate::common::tiny_checkpoint(6);
    fails(&["eval", "--checkpoint", &plain, "--data", &data2, "--item-head-weight", "1"], "item_id_embedding");
}
