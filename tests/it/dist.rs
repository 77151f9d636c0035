//! Data-parallel pretraining under `mpirun` (feature `mpi`, docs/distributed.md): 2 ranks
//! with global batch B follow 1 process with batch B, rank 0 alone writes, resume works,
//! and a build without the feature refuses N ranks.
//!
//! Needs Open MPI (`mpirun` and `mpicc` on PATH: Debian's openmpi-bin + libopenmpi-dev,
//! which `.ci/run` installs); skips with a printed reason without it. It builds the `mpi`
//! binary itself into `target/mpi` (a no-op when `.ci/run` built it already).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Relative tolerance per number of an eval row (losses, Recall/NDCG@10), 2 ranks vs 1
/// process. They differ only in float summation order (two half-batch backward passes
/// summed vs one full-batch pass; token counts and routing loads are exact): measured
/// 3e-8 relative on the losses after 40 steps of the quickstart world (docs/distributed.md).
const RTOL: f64 = 1e-5;

fn on_path(exe: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(exe).is_file()))
}

/// The onerec binary with feature `mpi`, built into `target/mpi`; `None` (with the reason
/// printed) when Open MPI is not installed.
fn mpi_binary(test: &str) -> Option<PathBuf> {
    for exe in ["mpirun", "mpicc"] {
        if !on_path(exe) {
            eprintln!(
                "skipping {test}: `{exe}` not on PATH (install openmpi-bin libopenmpi-dev; see docs/distributed.md)"
            );
            return None;
        }
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("mpi");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(cargo)
        .args(["build", "--locked", "--features", "mpi", "--bin", "onerec", "--target-dir"])
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(o.status.success(), "building the mpi binary failed:\n{}", String::from_utf8_lossy(&o.stderr));
    Some(target.join("debug").join("onerec"))
}

/// A small synthetic world prepared and tokenized on disk: (dataset dir, tokenizer dir).
fn world_on_disk(root: &Path) -> (PathBuf, PathBuf) {
    use onerec::data::prepare::{prepare_interactions, write_dataset, PrepareOptions};
    use onerec::tokenizer::{tokenize_files, Collisions, TokenizeOptions};
    use onerec::world::{synth, SynthOptions};
    let (world, data, tok) = (root.join("world"), root.join("data"), root.join("tok"));
    synth(&SynthOptions { users: 80, items: 80, topics: 4, seed: 5, ..SynthOptions::default() }, &world).unwrap();
    let ds = prepare_interactions(&world.join("interactions.csv"), &PrepareOptions::default()).unwrap();
    write_dataset(&ds, &data).unwrap();
    let topts = TokenizeOptions {
        codebook_sizes: vec![4, 4, 8],
        collisions: Collisions::Reassign,
        seed: 5,
        ..Default::default()
    };
    tokenize_files(&topts, &[("text".to_string(), world.join("text.safetensors"))], None, &tok).unwrap();
    (data, tok)
}

/// `onerec pretrain` on the toy world: `ranks` = 0 runs the binary alone, else under
/// `mpirun -np ranks`. A constant learning rate (no warmup, no decay), so a run resumed
/// with a larger `train.max_steps` continues exactly like an uninterrupted one.
/// `extra`: more `--set`s, or `--resume`.
fn pretrain(bin: &Path, ranks: usize, data: &Path, tok: &Path, out: &Path, steps: usize, extra: &[&str]) -> Output {
    let mut cmd = match ranks {
        0 => Command::new(bin),
        n => mpirun(n, bin),
    };
    cmd.env("OMPI_MCA_mpi_yield_when_idle", "1")
        .env("RAYON_NUM_THREADS", "1")
        .args(["pretrain", "--config", "tiny", "--threads", "1", "--data"])
        .arg(data)
        .arg("--tokenizer")
        .arg(tok)
        .arg("--out")
        .arg(out);
    let sets = [
        format!("train.max_steps={steps}"),
        "train.batch_size=64".into(),
        "train.eval_every=4".into(),
        "train.log_every=4".into(),
        "train.warmup_steps=0".into(),
        "train.min_lr_ratio=1.0".into(),
        "train.valid_users=80".into(),
        "train.rank_users=40".into(),
    ];
    for s in sets.iter().map(String::as_str).chain(extra.iter().copied().filter(|a| !a.starts_with("--"))) {
        cmd.args(["--set", s]);
    }
    cmd.args(extra.iter().filter(|a| a.starts_with("--")));
    cmd.output().unwrap()
}

fn ok(o: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{what} failed:\n{err}\n{}", String::from_utf8_lossy(&o.stdout));
    err
}

fn rows(out: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every number of the eval rows `a` and `b` (train/valid loss, lr, Recall/NDCG@10)
/// within `rtol` relative of each other; the rows' `at` (step, epoch) equal.
fn assert_rows_close(a: &[serde_json::Value], b: &[serde_json::Value], rtol: f64, at: &str) {
    assert_eq!(a.len(), b.len());
    let mut worst = 0f64;
    for (ra, rb) in a.iter().zip(b) {
        assert_eq!(ra[at], rb[at]);
        let keys: Vec<&String> = ra.as_object().unwrap().keys().collect();
        assert_eq!(keys, rb.as_object().unwrap().keys().collect::<Vec<_>>());
        for k in keys {
            let (x, y) = (ra[k].as_f64().unwrap(), rb[k].as_f64().unwrap());
            let rel = (x - y).abs() / x.abs().max(y.abs()).max(f64::MIN_POSITIVE);
            assert!(rel <= rtol, "{at} {}: {k} {x} vs {y}", ra[at]);
            worst = worst.max(rel);
        }
    }
    eprintln!("2 ranks vs 1 process: largest relative difference {worst:.1e} (tolerance {rtol:.0e})");
}

#[test]
fn two_ranks_follow_one_process_and_resume() {
    let Some(bin) = mpi_binary("dist::two_ranks_follow_one_process_and_resume") else { return };
    let t = tempfile::tempdir().unwrap();
    let (data, tok) = world_on_disk(t.path());
    // Loss-free ("bias") balancing: its routing loads are summed over ranks, so the update
    // is exact; the "aux" loss is a per-rank batch statistic (docs/distributed.md).
    let exact = ["model.moe.balance=\"bias\""];
    let (one, two) = (t.path().join("one"), t.path().join("two"));
    ok(&pretrain(&bin, 0, &data, &tok, &one, 12, &exact), "1 process");
    let log = ok(&pretrain(&bin, 2, &data, &tok, &two, 12, &exact), "mpirun -np 2");

    // Same curve and final metrics, within rounding.
    let (r1, r2) = (rows(&one), rows(&two));
    assert_eq!(r1.len(), 3, "{r1:?}");
    assert_rows_close(&r1, &r2, RTOL, "step");
    // Ranks held bit-identical parameters at every eval (checked by a checksum collective).
    assert_eq!(log.matches("ranks in sync: parameter checksum").count(), 3, "{log}");
    assert!(log.contains("data-parallel on 2 ranks"), "{log}");
    // Rank 0 wrote the run's files.
    for f in ["config.toml", "metrics.jsonl", "best/checkpoint.json", "last/checkpoint.json"] {
        assert!(two.join(f).is_file(), "{f} missing");
    }

    // Stopped after step 8 (a run of 8 steps) and resumed to 12 on 2 ranks: the same rows,
    // bit for bit, as the uninterrupted 2-rank run.
    let resumed = t.path().join("resumed");
    ok(&pretrain(&bin, 2, &data, &tok, &resumed, 8, &exact), "mpirun -np 2, 8 steps");
    let more = [exact[0], "--resume"];
    let log = ok(&pretrain(&bin, 2, &data, &tok, &resumed, 12, &more), "mpirun -np 2 --resume");
    assert!(log.contains("resuming"), "{log}");
    assert_eq!(rows(&resumed), r2);

    // Commands that are not data-parallel refuse several ranks instead of racing.
    let o = mpirun(2, &bin)
        .args(["eval", "--checkpoint"])
        .arg(&two)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(t.path().join("eval.json"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("`onerec eval` does not run data-parallel"), "{err}");
    assert!(!t.path().join("eval.json").exists());
}

/// `onerec baseline sasrec` on the toy world with a tiny model: `ranks` = 0 runs the binary
/// alone, else under `mpirun -np ranks`. Dropout 0 (each rank draws its own masks, so
/// with dropout the runs differ by design); clipping on, so the summed gradient's norm is
/// what gets clipped.
fn sasrec(bin: &Path, ranks: usize, data: &Path, out: &Path, epochs: usize, extra: &[&str]) -> Output {
    let mut cmd = match ranks {
        0 => Command::new(bin),
        n => mpirun(n, bin),
    };
    cmd.env("OMPI_MCA_mpi_yield_when_idle", "1")
        .env("RAYON_NUM_THREADS", "1")
        .args(["baseline", "sasrec", "--threads", "1", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out);
    let sets = [
        format!("train.epochs={epochs}"),
        "model.d_model=16".into(),
        "model.ffn_hidden=16".into(),
        "model.max_len=20".into(),
        "model.dropout=0.0".into(),
        "train.batch_size=24".into(),
        "train.eval_every=2".into(),
        "train.patience=100".into(),
        "train.grad_clip=1.0".into(),
        "train.lr=3e-3".into(),
    ];
    for s in &sets {
        cmd.args(["--set", s]);
    }
    cmd.args(extra);
    cmd.output().unwrap()
}

/// `metrics.jsonl` of a SASRec run without its wall-clock columns (`*_secs`).
fn sasrec_rows(out: &Path) -> Vec<serde_json::Value> {
    let mut rows = rows(out);
    for r in &mut rows {
        r.as_object_mut().unwrap().retain(|k, _| !k.ends_with("_secs"));
    }
    rows
}

#[test]
fn sasrec_on_two_ranks_follows_one_process_and_resumes() {
    let Some(bin) = mpi_binary("dist::sasrec_on_two_ranks_follows_one_process_and_resumes") else { return };
    let t = tempfile::tempdir().unwrap();
    let (data, _) = world_on_disk(t.path());
    let (one, two) = (t.path().join("one"), t.path().join("two"));
    ok(&sasrec(&bin, 0, &data, &one, 6, &[]), "1 process");
    let log = ok(&sasrec(&bin, 2, &data, &two, 6, &[]), "mpirun -np 2");

    // Same losses and validation metrics per epoch within rounding, same best epoch.
    let (r1, r2) = (sasrec_rows(&one), sasrec_rows(&two));
    assert_eq!(r1.len(), 6, "{r1:?}");
    assert_rows_close(&r1, &r2, RTOL, "epoch");
    assert_eq!(r1.last().unwrap()["best_epoch"], r2.last().unwrap()["best_epoch"]);
    assert!(r1.last().unwrap()["train_loss"].as_f64().unwrap() < r1[0]["train_loss"].as_f64().unwrap());
    assert_eq!(log.matches("ranks in sync: parameter checksum").count(), 6, "{log}");
    assert!(log.contains("data-parallel on 2 ranks"), "{log}");
    for f in ["config.toml", "metrics.jsonl", "summary.json", "best/sasrec.json", "last/sasrec.json"] {
        assert!(two.join(f).is_file(), "{f} missing");
    }

    // 4 epochs, then resumed to 6 on 2 ranks: the uninterrupted 2-rank run's rows, bit for bit.
    let resumed = t.path().join("resumed");
    ok(&sasrec(&bin, 2, &data, &resumed, 4, &[]), "mpirun -np 2, 4 epochs");
    let log = ok(&sasrec(&bin, 2, &data, &resumed, 6, &["--resume"]), "mpirun -np 2 --resume");
    assert!(log.contains("resuming"), "{log}");
    assert_eq!(sasrec_rows(&resumed), r2);
}

/// With the Switch aux loss (`moe.balance = "aux"`), each micro-batch's routing loads are
/// summed over ranks before the aux loss is formed, so 2 ranks follow 1 process within
/// the same rounding tolerance as the loss-free balancing above.
#[test]
fn aux_balance_loss_is_exact_across_ranks() {
    let Some(bin) = mpi_binary("dist::aux_balance_loss_is_exact_across_ranks") else { return };
    let t = tempfile::tempdir().unwrap();
    let (data, tok) = world_on_disk(t.path());
    let aux = ["model.moe.balance=\"aux\"", "model.moe.aux_coef=0.05"];
    let (one, two) = (t.path().join("one"), t.path().join("two"));
    ok(&pretrain(&bin, 0, &data, &tok, &one, 12, &aux), "1 process");
    ok(&pretrain(&bin, 2, &data, &tok, &two, 12, &aux), "mpirun -np 2");
    let (r1, r2) = (rows(&one), rows(&two));
    assert_eq!(r1.len(), 3, "{r1:?}");
    assert_rows_close(&r1, &r2, RTOL, "step");
}

#[test]
fn build_without_the_feature_refuses_several_ranks() {
    if !on_path("mpirun") {
        eprintln!("skipping dist::build_without_the_feature_refuses_several_ranks: `mpirun` not on PATH");
        return;
    }
    let o = mpirun(2, Path::new(env!("CARGO_BIN_EXE_onerec")))
        .args(["pretrain", "--config", "tiny", "--data", "d", "--tokenizer", "t", "--out", "o"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("built without the `mpi` feature"), "{err}");
}

/// `mpirun -np N BIN` (Open MPI; allowed as root, more ranks than cores allowed).
fn mpirun(n: usize, bin: &Path) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["-np", &n.to_string(), "--oversubscribe", "--bind-to", "none"])
        .arg(bin)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    c
}

/// `onerec align` on the toy world: `ranks` = 0 runs the binary alone, else under
/// `mpirun -np ranks`; 2 iterations of 4 DPO steps over a quarter of the users, the
/// world's ground-truth reward measured on 16 users.
fn align(bin: &Path, ranks: usize, root: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = match ranks {
        0 => Command::new(bin),
        n => mpirun(n, bin),
    };
    cmd.env("OMPI_MCA_mpi_yield_when_idle", "1")
        .env("RAYON_NUM_THREADS", "1")
        .args(["align", "--config", "tiny", "--threads", "1", "--checkpoint"])
        .arg(root.join("pre"))
        .arg("--reward")
        .arg(root.join("rm"))
        .arg("--data")
        .arg(root.join("data"))
        .arg("--world")
        .arg(root.join("world"))
        .arg("--out")
        .arg(out);
    let sets = [
        "align.iterations=2",
        "align.steps=4",
        "align.batch_size=8",
        "align.user_fraction=0.25",
        "align.eval_users=16",
        "align.lr=1e-3",
    ];
    for s in sets.iter().chain(extra) {
        cmd.args(["--set", s]);
    }
    cmd.output().unwrap()
}

/// Every number in `a` within `rtol` relative (or [`ALIGN_ATOL`] absolute) of the same
/// place in `b` (same shape and strings; sha256 fields skipped: weights equal within
/// rounding hash differently).
fn assert_json_close(a: &serde_json::Value, b: &serde_json::Value, rtol: f64, path: &str, worst: &mut f64) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{path}");
            for (k, v) in x.iter().filter(|(k, _)| !k.ends_with("sha256") && *k != "seconds") {
                assert_json_close(v, &y[k], rtol, &format!("{path}.{k}"), worst);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                assert_json_close(u, v, rtol, &format!("{path}[{i}]"), worst);
            }
        }
        (Value::Number(_), Value::Number(_)) if path.ends_with(".accuracy") => {
            // The fraction of pairs whose implicit reward margin is > 0: at an iteration's
            // first step the policy is the reference and every margin is rounding noise
            // around 0 (sign set by batch shapes), so one pair per step may flip.
            let (x, y) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((x - y).abs() <= ACCURACY_ATOL, "{path}: {x} vs {y}");
        }
        (Value::Number(_), Value::Number(_)) => {
            let (x, y) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            let rel = (x - y).abs() / x.abs().max(y.abs()).max(f64::MIN_POSITIVE);
            assert!(rel <= rtol || (x - y).abs() <= ALIGN_ATOL, "{path}: {x} vs {y}");
            if x.abs().max(y.abs()) >= 1e-3 {
                *worst = worst.max(rel); // of the numbers not near 0
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

#[test]
fn align_on_two_ranks_follows_one_process() {
    let Some(bin) = mpi_binary("dist::align_on_two_ranks_follows_one_process") else { return };
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let (data, tok) = world_on_disk(root);
    ok(&pretrain(&bin, 0, &data, &tok, &root.join("pre"), 8, &[]), "pretrain");
    let o = Command::new(&bin)
        .args(["reward", "--config", "tiny", "--threads", "1", "--set", "reward.epochs=1", "--data"])
        .arg(&data)
        .arg("--tokenizer")
        .arg(&tok)
        .arg("--out")
        .arg(root.join("rm"))
        .output()
        .unwrap();
    ok(&o, "reward");
    let (one, two) = (root.join("one"), root.join("two"));
    ok(&align(&bin, 0, root, &one, &[]), "align, 1 process");
    let log = ok(&align(&bin, 2, root, &two, &[]), "align, mpirun -np 2");
    assert!(log.contains("data-parallel on 2 ranks"), "{log}");
    assert_eq!(log.matches("ranks in sync: parameter checksum").count(), 2, "{log}");

    // The same iterations (users, pairs and ties exactly; rewards, losses, accuracy and the
    // world's reward within rounding), and rank 0 wrote every checkpoint.
    let state = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("state.json")).unwrap()).unwrap()
    };
    let (s1, s2) = (state(&one), state(&two));
    assert_eq!(s1["iterations"].as_array().unwrap().len(), 2);
    assert!(s1["iterations"][0]["pairs"].as_u64().unwrap() > 0);
    let mut worst = 0f64;
    assert_json_close(&s1, &s2, ALIGN_RTOL, "state", &mut worst);
    for it in s2["iterations"].as_array().unwrap() {
        assert!(it["policy_sha256"].is_string(), "{it}");
    }
    for f in ["config.toml", "iter-000/model.safetensors", "iter-002/model.safetensors", "best/model.safetensors"] {
        assert!(two.join(f).is_file(), "{f} missing");
    }
    // The aligned weights agree within rounding.
    let w =
        |d: &Path| candle_core::safetensors::load(d.join("best/model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let (w1, w2) = (w(&one), w(&two));
    assert_eq!(w1.len(), w2.len());
    let mut max_diff = 0f32;
    for (name, a) in &w1 {
        let d = (a - &w2[name]).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        max_diff = max_diff.max(d.to_scalar::<f32>().unwrap());
    }
    eprintln!("align, 2 ranks vs 1 process: largest relative difference in state.json (numbers >= 1e-3) {worst:.1e} (tolerance {ALIGN_RTOL:.0e}), largest weight difference {max_diff:.1e}");
    assert!(max_diff < 1e-4, "aligned weights differ by {max_diff}");

    // Stopped after iteration 1 and rerun to 2 on 2 ranks: the uninterrupted 2-rank run's
    // iterations, checkpoint hashes included.
    let resumed = root.join("resumed");
    ok(&align(&bin, 2, root, &resumed, &["align.iterations=1"]), "align, 2 ranks, 1 iteration");
    let log = ok(&align(&bin, 2, root, &resumed, &[]), "align, 2 ranks, resumed");
    assert!(log.contains("resuming alignment"), "{log}");
    let without_time = |mut s: serde_json::Value| {
        s["iterations"].as_array_mut().unwrap().iter_mut().for_each(|it| it["seconds"] = 0.into());
        s
    };
    assert_eq!(without_time(state(&resumed)), without_time(s2.clone()));

    // GRPO (whole candidate groups as units) shards the same way.
    let grpo = ["align.objective=\"grpo\""];
    let (g1, g2) = (root.join("grpo1"), root.join("grpo2"));
    ok(&align(&bin, 0, root, &g1, &grpo), "align grpo, 1 process");
    ok(&align(&bin, 2, root, &g2, &grpo), "align grpo, mpirun -np 2");
    let mut worst = 0f64;
    assert_json_close(&state(&g1), &state(&g2), ALIGN_RTOL, "grpo state", &mut worst);
    eprintln!(
        "align grpo, 2 ranks vs 1 process: largest relative difference in state.json (numbers >= 1e-3) {worst:.1e}"
    );
}

/// Relative tolerance of `state.json` numbers, 2 ranks vs 1 process: rounding in the
/// sharded forward passes (beam search, reward scores, log-probs in other batch shapes)
/// and the two half-minibatch backward passes summed; measured 4.8e-7 (docs/distributed.md).
const ALIGN_RTOL: f64 = 1e-5;

/// Numbers that are 0 in exact arithmetic are rounding noise: GRPO's objective at an
/// iteration's first step (every ratio 1, advantages summing to 0 per group) came out
/// -1.0e-7 vs -1.2e-7, and later its terms still cancel to a few hundredths (-0.0510820
/// vs -0.0510825 on one machine, -0.0510828 vs -0.0510842 on another: 1.4e-6 apart,
/// the same on every rerun, so it is the CPU's rounding, not noise between runs). The
/// floor is ALIGN_RTOL of the O(1) terms that cancel; losses are O(1), so it hides
/// nothing else.
const ALIGN_ATOL: f64 = 1e-5;

/// `accuracy` (a mean over 4 steps of 8 pairs each): one pair's sign may differ.
const ACCURACY_ATOL: f64 = 1.0 / 32.0 + 1e-9;

/// `onerec recipe` under `mpirun -np 2`: its CE-SASRec and its pretraining run
/// data-parallel (each rank checks the parameter checksum), rank 0 alone prepares, embeds,
/// tokenizes, evaluates and writes, and the run records its ranks. The SASRec's dropout
/// draws different masks per rank, so the numbers are not compared with one process here
/// (the two trainers are, above).
#[test]
fn recipe_runs_data_parallel_on_two_ranks() {
    let Some(bin) = mpi_binary("dist::recipe_runs_data_parallel_on_two_ranks") else { return };
    let t = tempfile::tempdir().unwrap();
    let raw = crate::recipe::amazon_like_dir(t.path());
    let out = t.path().join("out");
    let mut cmd = mpirun(2, &bin);
    cmd.env("OMPI_MCA_mpi_yield_when_idle", "1")
        .env("RAYON_NUM_THREADS", "1")
        .args(["recipe", "--threads", "1", "--config", "tiny", "--out"])
        .arg(&out)
        .arg(&raw);
    for s in [
        "train.epochs=1",
        "train.rank_users=50",
        "train.valid_users=50",
        "train.eval_every=1000",
        "tokenizer.codebook_size=[8]",
        "tokenizer.collab=\"sasrec\"",
        "eval.session_len=0",
        "eval.max_users=60",
    ] {
        cmd.args(["--set", s]);
    }
    let o = cmd.output().unwrap();
    let log = ok(&o, "mpirun -np 2 onerec recipe");
    for f in [
        "data/dataset.json",
        "embeddings/collab.safetensors",
        "sasrec/summary.json",
        "tok/manifest.json",
        "pre/best",
        "config.toml",
        "valid.json",
        "test.json",
        "sasrec-test.json",
        "results.md",
        "recipe.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing; log:\n{log}");
    }
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("recipe.json")).unwrap()).unwrap();
    assert_eq!(recorded["ranks"], 2, "{recorded}");
    assert!(log.contains("data-parallel on 2 ranks"), "{log}");
    assert!(log.contains("ranks in sync: parameter checksum"), "{log}");
    // Only rank 0 evaluates and prints the table.
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.lines().filter(|l| l.starts_with("| onerec | Test")).count(), 1, "{stdout}");
    assert_eq!(log.matches("evaluated SASRec on").count(), 2, "{log}");
}
