//! The whole pipeline on a small synthetic world, checked against the ground truth:
//! pretraining beats the popularity (item-unigram) baseline on validation loss, and
//! iterative DPO alignment raises the *true* expected session reward of generated
//! sessions without collapsing Recall@10.

use onerec::config::Config;
use onerec::pipeline::synthetic::{self, SyntheticRun};
use onerec::world::SynthOptions;

#[test]
fn pretrain_beats_unigram_and_alignment_raises_true_reward() {
    let t = tempfile::tempdir().unwrap();
    let sets =
        ["seed=3", "train.epochs=3", "train.rank_users=200", "tokenizer.codebook_size=[8]", "tokenizer.align=false"];
    let cfg = Config::load("tiny", &sets.map(String::from)).unwrap();
    let world = SynthOptions { users: 800, items: 400, topics: 10, seed: 3, ..SynthOptions::default() };
    let spec = SyntheticRun { world, config: &cfg, out: t.path(), config_label: "tiny".into(), overrides: vec![] };
    let outcome = synthetic::run(&spec).unwrap();
    let (ds, summary) = (&outcome.dataset, &outcome.pretrain);
    let sids = onerec::tokenizer::SemanticIds::load(&outcome.dirs.tokenizer).unwrap();
    assert!(t.path().join("summary.json").exists() && t.path().join("config.toml").exists());

    // Item-unigram baseline on the same validation targets, per code token.
    let mut counts = vec![1.0f64; ds.n_items()];
    for u in 0..ds.n_users() {
        for &i in &ds.history(u)[ds.split(u).train] {
            counts[i as usize] += 1.0;
        }
    }
    let total: f64 = counts.iter().sum();
    let levels = sids.levels() as f64;
    let (mut nll, mut n) = (0.0, 0.0);
    for u in 0..ds.n_users().min(cfg.train.valid_users) {
        if let Some(v) = ds.split(u).valid {
            nll -= (counts[ds.history(u)[v] as usize] / total).ln() / levels;
            n += 1.0;
        }
    }
    let unigram = nll / n;
    eprintln!("valid loss {:.4} vs item-unigram baseline {unigram:.4}", summary.last_valid_loss);
    assert!(
        summary.last_valid_loss < unigram - 0.05,
        "valid loss {} not clearly below unigram {unigram}",
        summary.last_valid_loss
    );

    let (before, after) = (outcome.pretrained, outcome.aligned);
    let g = |r: &onerec::eval::EvalReport, k: &str| match k {
        "true_reward" => r.true_reward.expect("true_reward"),
        "rm_reward" => r.rm_reward.expect("rm_reward"),
        _ => r.metrics[k],
    };
    eprintln!(
        "true reward {:.4} -> {:.4}, rm reward {:.4} -> {:.4}, recall@10 {:.4} -> {:.4}",
        g(&before, "true_reward"),
        g(&after, "true_reward"),
        g(&before, "rm_reward"),
        g(&after, "rm_reward"),
        g(&before, "recall@10"),
        g(&after, "recall@10")
    );
    let pop = onerec::data::stats::popularity_baseline(ds).test.recall_at_10;
    eprintln!("test recall@10: model {:.4} vs popularity {pop:.4}", g(&before, "recall@10"));
    assert!(g(&before, "recall@10") > 1.2 * pop, "pretrained model does not beat popularity");
    assert_eq!(before.invalid_paths, 0);
    assert_eq!(after.invalid_paths, 0);
    assert!(g(&after, "true_reward") > g(&before, "true_reward") * 1.03, "alignment did not raise the true reward");
    assert!(g(&after, "recall@10") >= 0.9 * g(&before, "recall@10"), "alignment collapsed Recall@10");
}
