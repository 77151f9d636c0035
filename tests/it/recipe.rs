//! `onerec recipe` on a data directory laid out like `../shared/data/amazon-*`
//! (sequences.txt.gz + item_text_embeddings.safetensors), built from a small synthetic
//! world: every stage runs from one config, the evaluations name their protocol, and a
//! directory it cannot use gives a clear error.

use onerec::config::Config;
use onerec::pipeline::recipe::{self, RecipeRun};
use onerec::world::{synth, SynthOptions};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// A raw data dir from a synthetic world: one `user item item ...` line per user in
/// time order (gzip), and the world's text embeddings under the shipped name.
pub(crate) fn amazon_like_dir(root: &Path) -> std::path::PathBuf {
    let world = root.join("world");
    synth(&SynthOptions { users: 300, items: 150, topics: 6, seed: 5, ..SynthOptions::default() }, &world).unwrap();
    let csv = std::fs::read_to_string(world.join("interactions.csv")).unwrap();
    let mut by_user: BTreeMap<u64, Vec<(i64, u64)>> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        by_user.entry(f[0].parse().unwrap()).or_default().push((f[2].parse().unwrap(), f[1].parse().unwrap()));
    }
    let dir = root.join("raw");
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::File::create(dir.join("sequences.txt.gz")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    for (u, mut rows) in by_user {
        rows.sort();
        let items: Vec<String> = rows.iter().map(|r| r.1.to_string()).collect();
        writeln!(gz, "{u} {}", items.join(" ")).unwrap();
    }
    gz.finish().unwrap();
    std::fs::copy(world.join("text.safetensors"), dir.join(recipe::SHIPPED_TEXT_EMBEDDINGS)).unwrap();
    dir
}

fn small_config(extra: &[&str]) -> Config {
    let mut sets: Vec<String> = [
        "train.epochs=1",
        "train.rank_users=50",
        "train.valid_users=50",
        "train.eval_every=1000",
        "tokenizer.codebook_size=[8]",
        "eval.session_len=0",
        "eval.max_users=100",
        "eval.both_protocols=true",
    ]
    .map(String::from)
    .to_vec();
    sets.extend(extra.iter().map(|s| s.to_string()));
    Config::load("tiny", &sets).unwrap()
}

#[test]
fn recipe_runs_every_stage_from_one_config() {
    let t = tempfile::tempdir().unwrap();
    let raw = amazon_like_dir(t.path());
    let out = t.path().join("out");
    let cfg = small_config(&[]);
    let run = RecipeRun { config: &cfg, data_dir: &raw, out: &out, resume: false, eval_only: false };
    let outcome = recipe::run(&run).unwrap();
    for f in ["data/dataset.json", "tok", "pre/best", "config.toml", "results.md", "recipe.json"] {
        assert!(out.join(f).exists(), "missing {f}");
    }
    // valid + test under the config's protocol (history allowed in tiny), test also under the other.
    let files: Vec<(&str, bool)> = outcome.evals.iter().map(|e| (e.file.as_str(), e.exclude_history)).collect();
    assert_eq!(files, [("valid.json", false), ("test.json", false), ("test-history-excluded.json", true)]);
    for e in &outcome.evals {
        let r = e.report.metrics["recall@10"];
        assert!((0.0..=1.0).contains(&r), "{}: recall@10 {r}", e.file);
        assert_eq!(e.report.users, 100);
    }
    // Excluding items the user already has can only help a leave-one-out target that is
    // never a repeat, and the same model is scored both ways.
    let (allowed, excluded) = (&outcome.evals[1].report, &outcome.evals[2].report);
    assert!(excluded.metrics["recall@20"] >= allowed.metrics["recall@20"] - 1e-9);
    let saved = Config::load(out.join("config.toml").to_str().unwrap(), &[]).unwrap();
    assert_eq!(saved.tokenizer.codebook_size, vec![8], "the resolved recipe is recorded");

    // Evaluation only, on the existing run: the same numbers.
    let again = recipe::run(&RecipeRun { eval_only: true, ..run }).unwrap();
    assert_eq!(again.evals[1].report.metrics, outcome.evals[1].report.metrics);
}

#[test]
fn recipe_names_what_a_data_dir_lacks() {
    let t = tempfile::tempdir().unwrap();
    let cfg = small_config(&[]);
    let out = t.path().join("out");
    let run = |dir: &Path| {
        recipe::run(&RecipeRun { config: &cfg, data_dir: dir, out: &out, resume: false, eval_only: false })
    };
    let err = format!("{:#}", run(t.path()).unwrap_err());
    assert!(err.contains("sequences.txt.gz"), "{err}");

    // Sequences but no embeddings and no sentence model: says how to get one.
    let raw = t.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    std::fs::write(raw.join("sequences.txt"), "1 1 2 3 4 5\n2 2 3 4 5 1\n").unwrap();
    std::fs::write(raw.join("items.tsv.gz"), b"").unwrap();
    let cfg2 = small_config(&["embed.model_dir=\"/nonexistent/minilm\""]);
    let err = recipe::run(&RecipeRun { config: &cfg2, data_dir: &raw, out: &out, resume: false, eval_only: false })
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("fetch-minilm.sh") && err.contains("/nonexistent/minilm"), "{err}");
}

#[test]
fn recipe_fuses_a_sasrec_item_table_as_the_collab_modality() {
    let t = tempfile::tempdir().unwrap();
    let raw = amazon_like_dir(t.path());
    let out = t.path().join("out");
    // The candidate recipe's levers: collab tokenizer, hybrid input + item head, fused ranking.
    let cfg = small_config(&[
        "tokenizer.collab=\"sasrec\"",
        "eval.both_protocols=false",
        "model.item_id_embedding=true",
        "model.item_head_weight=1",
        "eval.item_head_weight=3",
    ]);
    let run = RecipeRun { config: &cfg, data_dir: &raw, out: &out, resume: false, eval_only: false };
    let outcome = recipe::run(&run).unwrap();
    for f in ["sasrec/best", "sasrec/summary.json", "embeddings/collab.safetensors", "pre/best"] {
        assert!(out.join(f).exists(), "missing {f}");
    }
    // The tokenizer fused both modalities: text (the world's) and the SASRec table (d_model 64).
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tok/manifest.json")).unwrap()).unwrap();
    let fusion: Vec<(String, u64)> = manifest["fusion"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_string(), f["d_in"].as_u64().unwrap()))
        .collect();
    assert_eq!(fusion.len(), 2, "{fusion:?}");
    assert_eq!(fusion[1], ("collab".to_string(), 64));
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("recipe.json")).unwrap()).unwrap();
    assert!(recorded["stage_secs"]["sasrec"].is_number(), "{recorded}");
    assert_eq!(recorded["threads"].as_u64(), Some(rayon::current_num_threads() as u64), "{recorded}");
    // Each evaluation's record says how it ranked: fused, at the configured weight.
    let eval_rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("test.json.run.json")).unwrap()).unwrap();
    assert_eq!(eval_rec["args"]["fusion"]["weight"].as_f64(), Some(3.0), "{eval_rec}");
    assert_eq!(eval_rec["threads"], recorded["threads"], "{eval_rec}");
    // The run's own CE-SASRec is scored beside the model: same splits, protocols, users and
    // metric code as `onerec eval` of its checkpoint.
    let files: Vec<(&str, &str)> = outcome.evals.iter().map(|e| (e.model, e.file.as_str())).collect();
    assert_eq!(
        files,
        [
            ("onerec", "valid.json"),
            ("onerec", "test.json"),
            ("sasrec", "sasrec-valid.json"),
            ("sasrec", "sasrec-test.json")
        ]
    );
    let opts = onerec::eval::EvalOptions { max_users: Some(100), ..Default::default() };
    let direct = onerec::eval::checkpoint::evaluate_sasrec_checkpoint(
        &out.join("sasrec/best"),
        &out.join("data"),
        onerec::generate::SplitSel::Test,
        &opts,
    )
    .unwrap();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sasrec-test.json")).unwrap()).unwrap();
    assert_eq!(saved["ndcg@10"].as_f64(), direct.metrics.get("ndcg@10").copied());
    assert_eq!(outcome.evals[3].report.metrics, direct.metrics);
    let results = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert_eq!(results.lines().filter(|l| l.starts_with("| sasrec |")).count(), 2, "{results}");
    // Both checkpoints record the run's dataset, so eval needs no `--data`.
    let (_, meta) = onerec::model::checkpoint::read_meta(&out.join("pre")).unwrap();
    assert_eq!(meta.data_dir.as_deref(), Some(out.join("data").as_path()));
    let sasrec_meta = onerec::baseline::sasrec::checkpoint::read_meta(&out.join("sasrec/best")).unwrap();
    assert_eq!(sasrec_meta.data_dir.as_deref(), Some(out.join("data").as_path()));
    // Per-user ranks beside each report, paired user by user for `onerec compare`.
    let ours = onerec::eval::per_user::read_tsv(&out.join("test.users.tsv")).unwrap();
    let theirs = onerec::eval::per_user::read_tsv(&out.join("sasrec-test.users.tsv")).unwrap();
    let cmp = onerec::eval::compare::compare(&ours, &theirs, &Default::default()).unwrap();
    assert_eq!(cmp.users, direct.users);
    let r10 = cmp.metrics.iter().find(|m| m.metric == "recall@10").unwrap();
    assert!((r10.b - direct.metrics["recall@10"]).abs() < 1e-12, "{r10:?}");
    assert!((r10.a - outcome.evals[1].report.metrics["recall@10"]).abs() < 1e-12, "{r10:?}");
    // `onerec summarize` reads the run: one row per model and split, and the gap table.
    let summary = onerec::pipeline::summary::summarize(std::slice::from_ref(&out)).unwrap();
    let rows: Vec<(String, String)> = summary.rows().into_iter().map(|r| (r.model, r.split)).collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(summary.markdown(false).contains("Generative model vs CE-SASRec"));

    // A rerun reuses the finished SASRec instead of training it again (or refusing its dir).
    let collab = std::fs::read(out.join("embeddings/collab.safetensors")).unwrap();
    std::fs::remove_dir_all(out.join("pre")).unwrap();
    recipe::run(&run).unwrap();
    assert_eq!(std::fs::read(out.join("embeddings/collab.safetensors")).unwrap(), collab);
    let saved = Config::load(out.join("config.toml").to_str().unwrap(), &[]).unwrap();
    assert_eq!(saved.tokenizer.collab, onerec::tokenizer::Collab::Sasrec);
}

/// A finished recipe run dir as `onerec summarize` reads it: recipe.json and test files.
fn fake_run(
    root: &Path,
    name: &str,
    seed: u64,
    config: &str,
    model: (f64, f64),
    sasrec: (f64, f64),
) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let rec = serde_json::json!({"command": "recipe", "seed": seed, "config": config, "data_dir": "/data/toys"});
    std::fs::write(dir.join("recipe.json"), rec.to_string()).unwrap();
    for (file, (r, n)) in [("test.json", model), ("sasrec-test.json", sasrec)] {
        let report = serde_json::json!({"recall@10": r, "ndcg@10": n, "coverage": 0.5, "users": 10});
        std::fs::write(dir.join(file), report.to_string()).unwrap();
        let args = serde_json::json!({"args": {"split": "test", "exclude_history": true}});
        std::fs::write(dir.join(format!("{file}.run.json")), args.to_string()).unwrap();
    }
    dir
}

#[test]
fn summarize_gives_mean_std_per_model_and_the_gap_to_sasrec() {
    let t = tempfile::tempdir().unwrap();
    let a = fake_run(t.path(), "s42", 42, "amazon", (0.08, 0.05), (0.10, 0.05));
    let b = fake_run(t.path(), "s43", 43, "amazon", (0.10, 0.06), (0.10, 0.05));
    let s = onerec::pipeline::summary::summarize(&[a.clone(), b]).unwrap();
    assert_eq!(s.metric_names(), ["recall@10", "ndcg@10"], "coverage and users are not ranking metrics");
    let rows = s.rows();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].model.as_str(), rows[0].seeds.clone()), ("onerec", vec![42, 43]));
    let (mean, std) = rows[0].stats["recall@10"];
    assert!((mean - 0.09).abs() < 1e-12 && (std - 0.01).abs() < 1e-12, "{mean} {std}");
    let md = s.markdown(true);
    assert!(md.contains("| onerec | test | excluded | 42 43 | 0.0900 ± 0.0100 | 0.0550 ± 0.0050 |"), "{md}");
    // recall 0.09 vs 0.10: -10%; ndcg 0.055 vs 0.05: +10%.
    assert!(md.contains("| test | excluded | -10.0% | +10.0% |"), "{md}");
    assert!(md.contains("| sasrec | test | excluded | 43 | 0.1000 | 0.0500 |"), "per-seed rows: {md}");

    // Runs of another config do not average with these; a dir that is not a run is named.
    let other = fake_run(t.path(), "beauty", 42, "beauty", (0.1, 0.1), (0.1, 0.1));
    let err = format!("{:#}", onerec::pipeline::summary::summarize(&[a.clone(), other]).unwrap_err());
    assert!(err.contains("one recipe at a time"), "{err}");
    let err = format!("{:#}", onerec::pipeline::summary::summarize(&[t.path().join("nope")]).unwrap_err());
    assert!(err.contains("nope") && err.contains("not a finished"), "{err}");
}
