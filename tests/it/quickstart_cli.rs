//! `onerec quickstart --out DIR` on a very small world: the contract layout (world, data,
//! tokenizer, pretrain, reward, aligned, summary.json) and the before/after numbers.

use std::process::Command;

/// A schedule just long enough to exercise every stage (seconds, not minutes).
const OVERRIDES: &[&str] = &[
    "train.epochs=1",
    "train.max_steps=8",
    "train.rank_beam=10",
    "train.valid_users=40",
    "train.rank_users=40",
    "reward.epochs=1",
    "align.iterations=1",
    "align.steps=5",
    "align.candidates=4",
];

#[test]
fn quickstart_writes_the_contract_layout() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("qs");
    let started = std::time::Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onerec"));
    cmd.args(["-q", "quickstart", "--out"]).arg(&out);
    cmd.args(["--seed", "5", "--users", "100", "--items", "60"]);
    for kv in OVERRIDES {
        cmd.args(["--set", kv]);
    }
    let o = cmd.env("RAYON_NUM_THREADS", "2").output().unwrap();
    assert!(o.status.success(), "quickstart failed:\n{}", String::from_utf8_lossy(&o.stderr));
    eprintln!("quickstart on 100 users x 60 items: {:.1}s", started.elapsed().as_secs_f64());
    for d in ["world", "data", "tokenizer", "pretrain", "reward", "aligned"] {
        assert!(out.join(d).is_dir(), "missing {d}/");
    }
    assert!(out.join("tokenizer/codes.tsv").is_file() && out.join("data/dataset.json").is_file());
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    for stage in ["pretrain", "aligned"] {
        for key in ["true_reward", "rm_reward", "recall@10"] {
            let v = s[stage][key]
                .as_f64()
                .unwrap_or_else(|| panic!("summary.json {stage}.{key} is not a number: {}", s[stage]));
            assert!(v.is_finite(), "{stage}.{key} = {v}");
        }
        let r = s[stage]["recall@10"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&r), "{stage} recall@10 = {r}");
    }
    assert_eq!(s["world"]["users"], 100);
}
