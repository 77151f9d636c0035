//! Baselines in the shared harness: popularity reproduces `data stats` and a hand-computed case.

use onerec::baseline::popularity::evaluate_popularity;
use onerec::data::stats::popularity_baseline;
use onerec::data::Dataset;
use onerec::generate::users::SplitSel;

/// Histories over 4 items; leave-one-out: last = test, second last = valid, rest = train.
fn tiny() -> Dataset {
    let hs = vec![vec![0, 0, 1, 2], vec![0, 1, 3, 0], vec![0, 2, 1, 3]];
    Dataset::from_histories(&hs, 4)
}

#[test]
fn popularity_matches_hand_computed_metrics() {
    let ds = tiny();
    // Train counts: item0 = 4, item1 = 1, item2 = 1 -> order 0, 1, 2, 3 (ties by id).
    // Test targets: 2 (rank 2), 0 (rank 0), 3 (rank 3).
    let r = evaluate_popularity(&ds, SplitSel::Test, &[1, 3], false, None).unwrap();
    let l = |r: usize| 1.0 / ((r + 2) as f64).log2();
    assert!((r.metrics["recall@1"] - 1.0 / 3.0).abs() < 1e-12);
    assert!((r.metrics["recall@3"] - 2.0 / 3.0).abs() < 1e-12);
    assert!((r.metrics["ndcg@3"] - (l(2) + l(0)) / 3.0).abs() < 1e-12);
    // History excluded: user0 history {0,1} -> list 2,3 (target 2 at rank 0);
    // user1 history {0,1,3} -> list 2 (target 0 never listed); user2 history {0,2,1} -> 3 at rank 0.
    let r = evaluate_popularity(&ds, SplitSel::Test, &[1, 3], true, None).unwrap();
    assert!((r.metrics["recall@1"] - 2.0 / 3.0).abs() < 1e-12);
    assert!((r.metrics["ndcg@3"] - 2.0 / 3.0).abs() < 1e-12);
}

#[test]
fn popularity_reproduces_data_stats() {
    let hs: Vec<Vec<u32>> = (0..50u32).map(|u| (0..6).map(|j| (u * 3 + j * j + u % 7) % 23).collect()).collect();
    let ds = Dataset::from_histories(&hs, 23);
    let want = popularity_baseline(&ds);
    for (split, m) in [(SplitSel::Valid, &want.validation), (SplitSel::Test, &want.test)] {
        let got = evaluate_popularity(&ds, split, &[10], false, None).unwrap();
        assert!((got.metrics["recall@10"] - m.recall_at_10).abs() < 1e-12, "{split:?}");
        assert!((got.metrics["ndcg@10"] - m.ndcg_at_10).abs() < 1e-12, "{split:?}");
    }
}

// ---- CE-SASRec ----------------------------------------------------------------------

use onerec::baseline::sasrec::train::{train_batch, train_sequences, Hooks};
use onerec::baseline::sasrec::{evaluate_sasrec, train_sasrec, train_sasrec_with, Sasrec, SasrecConfig};
use std::path::Path;
use std::process::Command;

fn onerec_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_onerec")).args(args).env("RAYON_NUM_THREADS", "1").output().unwrap()
}

/// A small synthetic world, prepared as a dataset.
fn synthetic_dataset(root: &Path, users: usize, items: usize, seed: u64) -> Dataset {
    use onerec::data::prepare::{prepare_interactions, PrepareOptions};
    use onerec::world::{synth, SynthOptions};
    let world = root.join("world");
    synth(&SynthOptions { users, items, topics: 5, seed, ..SynthOptions::default() }, &world).unwrap();
    prepare_interactions(&world.join("interactions.csv"), &PrepareOptions::default()).unwrap()
}

fn small_config(extra: &[&str]) -> SasrecConfig {
    let mut ov: Vec<String> = [
        "model.d_model=32",
        "model.heads=2",
        "model.max_len=20",
        "model.ffn_hidden=32",
        "model.dropout=0.2",
        "train.batch_size=64",
        "train.lr=3e-3",
        "train.eval_every=1",
        "train.patience=100",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ov.extend(extra.iter().map(|s| s.to_string()));
    SasrecConfig::load("sasrec", &ov).unwrap()
}

#[test]
fn sasrec_every_parameter_gets_a_gradient() {
    let hs: Vec<Vec<u32>> = (0..8u32).map(|u| (0..7).map(|j| (u + 3 * j) % 11).collect()).collect();
    let ds = Dataset::from_histories(&hs, 11);
    for norm in ["pre", "post"] {
        for act in ["relu", "gelu", "swiglu"] {
            let cfg = small_config(&[&format!("model.norm=\"{norm}\""), &format!("model.activation=\"{act}\"")]);
            let (model, varmap) = Sasrec::build(&cfg.model, ds.n_items(), 1).unwrap();
            let seqs = train_sequences(&ds, cfg.model.max_len);
            let tb = train_batch(&seqs, cfg.model.max_len, false).unwrap();
            let loss = {
                let _t = model.training(onerec::util::rng::stream(1, "test"));
                model.loss(&tb.seqs, &tb.rows, &tb.targets, &tb.excluded).unwrap()
            };
            let grads = loss.backward().unwrap();
            for (name, var) in onerec::nn::params::sorted_vars(&varmap) {
                let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{norm}/{act}: no gradient for {name}"));
                let mag = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(mag > 0.0, "{norm}/{act}: zero gradient for {name}");
            }
        }
    }
}

#[test]
fn sasrec_learns_the_synthetic_world_and_beats_popularity() {
    let t = tempfile::tempdir().unwrap();
    let ds = synthetic_dataset(t.path(), 500, 120, 11);
    let cfg = small_config(&["train.epochs=12"]);
    let s = train_sasrec(&cfg, &ds, &t.path().join("run"), false).unwrap();
    let ck = onerec::baseline::sasrec::load(&t.path().join("run")).unwrap();
    assert_eq!(ck.meta.epoch, s.best_epoch);
    for split in [SplitSel::Valid, SplitSel::Test] {
        let pop = evaluate_popularity(&ds, split, &[10], true, None).unwrap();
        let sas = evaluate_sasrec(&ck.model, &ds, split, &[10], true, None, 64).unwrap();
        let (p, q) = (pop.metrics["ndcg@10"], sas.metrics["ndcg@10"]);
        eprintln!("{split}: SASRec NDCG@10 {q:.4} vs popularity {p:.4}; best epoch {}", s.best_epoch);
        assert!(q > 1.2 * p && q > p + 0.01, "{split}: SASRec NDCG@10 {q} does not beat popularity {p}");
        assert!(sas.metrics["recall@10"] > pop.metrics["recall@10"], "{split}: recall");
    }
    // Training lowered the loss.
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(t.path().join("run/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), s.epochs);
    assert!(rows.last().unwrap()["train_loss"].as_f64().unwrap() < rows[0]["train_loss"].as_f64().unwrap() - 0.1);
}

/// `train.mask_history`: each position leaves the items it has read (not its target,
/// which may repeat one) out of its softmax, which lowers the loss of the same model.
#[test]
fn sasrec_mask_history_leaves_read_items_out_of_the_loss() {
    let seq: &[u32] = &[3, 1, 3, 2];
    let tb = train_batch(&[seq], 20, true).unwrap();
    assert_eq!(tb.targets, vec![1, 3, 2]);
    assert_eq!(tb.excluded, vec![vec![3], vec![1], vec![1, 3]]);
    assert!(train_batch(&[seq], 20, false).unwrap().excluded.is_empty());
    let cfg = small_config(&["train.mask_history=true"]);
    assert!(cfg.train.mask_history && !small_config(&["train.mask_history=false"]).train.mask_history);
    let (model, _) = Sasrec::build(&cfg.model, 5, 3).unwrap();
    let loss = |tb: &onerec::baseline::sasrec::train::TrainBatch| {
        model.loss(&tb.seqs, &tb.rows, &tb.targets, &tb.excluded).unwrap().to_scalar::<f32>().unwrap()
    };
    let (masked, plain) = (loss(&tb), loss(&train_batch(&[seq], 20, false).unwrap()));
    assert!(masked < plain - 1e-3, "masked loss {masked} is not below the plain {plain}");
}

#[test]
fn sasrec_resume_is_exact() {
    let hs = crate::common::random_histories(120, 30, 15, 4);
    let ds = Dataset::from_histories(&hs, 30);
    let cfg = small_config(&["train.epochs=4", "train.eval_every=2", "model.d_model=16", "model.heads=1"]);
    let t = tempfile::tempdir().unwrap();
    let (full, cut) = (t.path().join("full"), t.path().join("cut"));
    train_sasrec(&cfg, &ds, &full, false).unwrap();
    let hooks = Hooks { stop_after_epoch: Some(1) };
    let s = train_sasrec_with(&cfg, &ds, &cut, false, &hooks).unwrap();
    assert_eq!(s.epochs, 1);
    let again = train_sasrec(&cfg, &ds, &cut, false).unwrap_err();
    assert!(format!("{again:#}").contains("--resume"), "{again:#}");
    let s = train_sasrec(&cfg, &ds, &cut, true).unwrap();
    assert_eq!(s.epochs, 4);
    assert_eq!(s.threads, vec![rayon::current_num_threads()], "same threads: recorded once");
    for f in ["best/model.safetensors", "best/sasrec.json", "last/model.safetensors", "last/optimizer.safetensors"] {
        let (a, b) = (std::fs::read(full.join(f)).unwrap(), std::fs::read(cut.join(f)).unwrap());
        assert!(a == b, "{f} differs between the uninterrupted and the resumed run");
    }
    let rows = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap().lines().count();
    assert_eq!(rows(&cut), 4);
    // A different architecture cannot resume that run.
    let other = small_config(&["train.epochs=5", "model.d_model=24", "model.heads=1"]);
    let err = train_sasrec(&other, &ds, &cut, true).err().unwrap();
    assert!(format!("{err:#}").contains("[model]"), "{err:#}");
}

/// A run resumed at another thread count records both (its bytes depend on them).
#[test]
fn sasrec_resume_records_a_changed_thread_count() {
    let hs = crate::common::random_histories(60, 20, 10, 5);
    let ds = Dataset::from_histories(&hs, 20);
    let cfg = small_config(&["train.epochs=2", "train.eval_every=1", "model.d_model=8", "model.heads=1"]);
    let t = tempfile::tempdir().unwrap();
    let pool = |n: usize| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
    let hooks = Hooks { stop_after_epoch: Some(1) };
    let s = pool(1).install(|| train_sasrec_with(&cfg, &ds, t.path(), false, &hooks)).unwrap();
    assert_eq!(s.threads, vec![1]);
    let s = pool(2).install(|| train_sasrec(&cfg, &ds, t.path(), true)).unwrap();
    assert_eq!((s.epochs, s.threads), (2, vec![1, 2]));
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(saved["threads"], serde_json::json!([1, 2]));
}

/// Items on a circle in a 4-dim space, each embedding zero-mean with unit variance so
/// the final LayerNorm keeps it; attention and feed-forward outputs zeroed: the score of
/// item j after item i is 4 cos(theta_i - theta_j), so the ranking follows the angles.
#[test]
fn sasrec_checkpoint_eval_matches_hand_computed_metrics() {
    let t = tempfile::tempdir().unwrap();
    let hs = vec![vec![0, 1, 2, 3], vec![4, 3, 0, 1], vec![1, 2, 4, 0]];
    let ds = Dataset::from_histories(&hs, 5);
    let data = t.path().join("data");
    ds.save(&data).unwrap();
    let cfg = SasrecConfig::load(
        "sasrec",
        &["model.d_model=4".into(), "model.layers=1".into(), "model.ffn_hidden=4".into(), "model.max_len=8".into()],
    )
    .unwrap();
    let (_, varmap) = Sasrec::build(&cfg.model, 5, 0).unwrap();
    let theta = [0.0f32, 0.3, 1.0, 2.1, 3.0];
    let r = 2f32.sqrt();
    let mut table = vec![0f32; 4]; // padding row
    for th in theta {
        table.extend([r * th.cos(), -r * th.cos(), r * th.sin(), -r * th.sin()]);
    }
    let dev = candle_core::Device::Cpu;
    for (name, var) in onerec::nn::params::sorted_vars(&varmap) {
        if name == "item_emb" {
            var.set(&candle_core::Tensor::from_vec(table.clone(), (6, 4), &dev).unwrap()).unwrap();
        } else if name == "pos_emb" || name.ends_with("attn.o.weight") || name.ends_with("ffn.down.weight") {
            var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
        }
    }
    let ck = t.path().join("ck");
    crate::common::write_sasrec_checkpoint(&ck, &ds, &cfg.model, &varmap);
    // Last items 2, 0, 4 rank (2,1,0,3,4), (0,1,2,3,4), (4,3,2,1,0): test targets 3, 1, 0
    // at ranks 3, 1, 4; history excluded: (3,4), (1,2), (3,0) -> ranks 0, 0, 1.
    let l = |r: usize| 1.0 / ((r + 2) as f64).log2();
    let eval = |exclude: bool| -> serde_json::Value {
        let mut args = vec!["eval", "--checkpoint", ck.to_str().unwrap(), "--data", data.to_str().unwrap()];
        args.extend(["--split", "test", "--k", "1,3,5", "--json"]);
        if exclude {
            args.push("--exclude-history");
        }
        let out = onerec_cli(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let close = |v: &serde_json::Value, k: &str, want: f64| {
        let got = v[k].as_f64().unwrap_or_else(|| panic!("no {k} in {v}"));
        assert!((got - want).abs() < 1e-9, "{k}: {got} vs {want}");
    };
    let v = eval(false);
    let per_user = |exclude: bool, file: &str| -> Vec<usize> {
        let path = t.path().join(file);
        let mut args = vec!["eval", "--checkpoint", ck.to_str().unwrap(), "--data", data.to_str().unwrap()];
        args.extend(["--split", "test", "--k", "1,3,5", "--per-user", path.to_str().unwrap()]);
        if exclude {
            args.push("--exclude-history");
        }
        let out = onerec_cli(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rows = onerec::eval::per_user::read_tsv(&path).unwrap();
        assert_eq!(rows.iter().map(|r| r.history_len).collect::<Vec<_>>(), vec![3, 3, 3]);
        rows.iter().map(|r| r.rank.unwrap_or(0)).collect()
    };
    // 1-based ranks of the targets (0: not in the top 5).
    assert_eq!(per_user(false, "allowed.tsv"), vec![4, 2, 5]);
    assert_eq!(per_user(true, "excluded.tsv"), vec![1, 1, 2]);
    // The paired comparison of the two protocols' files: recall@1 0 -> 2/3 for every resample.
    let out = onerec_cli(&[
        "compare",
        t.path().join("allowed.tsv").to_str().unwrap(),
        t.path().join("excluded.tsv").to_str().unwrap(),
        "--k",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recall1 = &c["metrics"][0];
    assert_eq!(recall1["metric"], "recall@1");
    close(recall1, "diff", 2.0 / 3.0);
    assert!(recall1["ci_low"].as_f64().unwrap() >= 0.0, "{c}");
    assert_eq!((c["only_a"].as_u64(), c["only_b"].as_u64()), (Some(0), Some(2)));
    close(&v, "recall@1", 0.0);
    close(&v, "recall@3", 1.0 / 3.0);
    close(&v, "recall@5", 1.0);
    close(&v, "ndcg@3", l(1) / 3.0);
    close(&v, "ndcg@5", (l(3) + l(1) + l(4)) / 3.0);
    assert_eq!(v["users"], 3);
    let v = eval(true);
    close(&v, "recall@1", 2.0 / 3.0);
    close(&v, "recall@3", 1.0);
    close(&v, "ndcg@3", (2.0 + l(1)) / 3.0);
    // The library path gives the same numbers.
    let ck = onerec::baseline::sasrec::load(&ck).unwrap();
    let r = evaluate_sasrec(&ck.model, &ds, SplitSel::Test, &[3], true, None, 2).unwrap();
    assert!((r.metrics["ndcg@3"] - (2.0 + l(1)) / 3.0).abs() < 1e-9);
    // Another catalogue is refused.
    let other = t.path().join("other");
    Dataset::from_histories(&hs, 6).save(&other).unwrap();
    let out =
        onerec_cli(&["eval", "--checkpoint", t.path().join("ck").to_str().unwrap(), "--data", other.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("catalogue"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn sasrec_cli_errors_are_clear() {
    let t = tempfile::tempdir().unwrap();
    let out_dir = t.path().join("run");
    let missing = t.path().join("no-such-data");
    let out =
        onerec_cli(&["baseline", "sasrec", "--data", missing.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no-such-data"), "{err}");
    let data = t.path().join("data");
    tiny().save(&data).unwrap();
    for (set, key) in [("model.heads=3", "model.heads"), ("train.lr=-1", "train.lr"), ("model.bogus=1", "bogus")] {
        let out = onerec_cli(&[
            "baseline",
            "sasrec",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--set",
            set,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(key), "--set {set}: {err}");
    }
    let out = onerec_cli(&[
        "baseline",
        "sasrec",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--config",
        "nope",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    assert!(!out_dir.join("last").exists());
}
