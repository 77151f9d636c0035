//! The `generate` / `score` / `eval` command lines.

use std::process::Command;

fn onerec(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_onerec")).args(args).env("RAYON_NUM_THREADS", "1").output().unwrap()
}

#[test]
fn score_without_data_says_it_is_required() {
    let out = onerec(&["score", "--checkpoint", "nope", "--pairs", "p.tsv", "--out", "o.tsv"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--data DIR is required"), "{err}");
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

/// A tiny trained checkpoint on a small synthetic world: (tempdir, checkpoint, data).
fn tiny_checkpoint() -> (tempfile::TempDir, String, String) {
    use onerec::data::prepare::{prepare_interactions, write_dataset, PrepareOptions};
    use onerec::tokenizer::{tokenize_files, Collisions, TokenizeOptions};
    use onerec::world::{synth, SynthOptions};
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let (world, data, tok, pre) = (root.join("world"), root.join("data"), root.join("tok"), root.join("pre"));
    synth(&SynthOptions { users: 60, items: 80, topics: 4, seed: 5, ..SynthOptions::default() }, &world).unwrap();
    let ds = prepare_interactions(&world.join("interactions.csv"), &PrepareOptions::default()).unwrap();
    write_dataset(&ds, &data).unwrap();
    let topts = TokenizeOptions { codebook_sizes: vec![4, 4, 8], collisions: Collisions::Reassign, seed: 5, ..TokenizeOptions::default() };
    tokenize_files(&topts, &[("text".to_string(), world.join("text.safetensors"))], None, &tok).unwrap();
    let sids = onerec::tokenizer::SemanticIds::load(&tok).unwrap();
    let ov: Vec<String> = ["train.max_steps=4", "train.eval_every=4", "train.rank_users=0", "train.select_metric=\"valid_loss\""]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let cfg = onerec::config::Config::load("tiny", &ov).unwrap();
    onerec::train::pretrain(&cfg, &ds, &sids, &pre, false).unwrap();
    (t, pre.to_str().unwrap().to_string(), data.to_str().unwrap().to_string())
}

/// Shards of `onerec generate` (and `--batch-users`) concatenate to the unsharded
/// output, byte for byte, on a real trained checkpoint.
#[test]
fn cli_shards_concatenate_to_unsharded() {
    let (dir, ckpt, data) = tiny_checkpoint();
    let run = |extra: &[&str], name: &str| {
        let out = dir.path().join(name);
        let o = out.to_str().unwrap();
        let mut args = vec!["generate", "--checkpoint", &ckpt, "--data", &data, "--split", "test", "--beam", "5", "--top", "5", "--out", o];
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
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 5);
}

/// `onerec eval --json` prints the contract's keys with invalid_paths == 0.
#[test]
fn cli_eval_json_has_the_contract_keys() {
    let (_dir, ckpt, data) = tiny_checkpoint();
    let r = onerec(&["eval", "--checkpoint", &ckpt, "--data", &data, "--split", "test", "--json"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    for k in ["recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20", "invalid_paths", "coverage", "users"] {
        assert!(v.get(k).is_some(), "missing {k} in {v}");
    }
    assert_eq!(v["invalid_paths"].as_f64(), Some(0.0));
    assert_eq!(v["users"].as_f64(), Some(60.0));
}
