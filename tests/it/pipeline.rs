//! The whole pipeline on a small synthetic world, checked against the ground truth:
//! pretraining beats the popularity (item-unigram) baseline on validation loss, and
//! iterative DPO alignment raises the *true* expected session reward of generated
//! sessions without collapsing Recall@10.

use onerec::config::Config;
use onerec::data::prepare::{prepare_interactions, write_dataset, PrepareOptions};
use onerec::eval::checkpoint::evaluate_checkpoint;
use onerec::eval::EvalOptions;
use onerec::generate::SplitSel;
use onerec::tokenizer::{tokenize_files, Collisions, TokenizeOptions};
use onerec::world::{synth, SynthOptions};

#[test]
fn pretrain_beats_unigram_and_alignment_raises_true_reward() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let (world, data, tok) = (root.join("world"), root.join("data"), root.join("tok"));
    synth(&SynthOptions { users: 800, items: 400, topics: 10, seed: 3, ..SynthOptions::default() }, &world).unwrap();
    let prep = PrepareOptions { session_gap: Some(1800.0), ..PrepareOptions::default() };
    let ds = prepare_interactions(&world.join("interactions.csv"), &prep).unwrap();
    write_dataset(&ds, &data).unwrap();
    let topts = TokenizeOptions {
        codebook_sizes: vec![8],
        collisions: Collisions::Reassign,
        seed: 3,
        ..TokenizeOptions::default()
    };
    let inputs =
        [("text".to_string(), world.join("text.safetensors")), ("image".to_string(), world.join("image.safetensors"))];
    tokenize_files(&topts, &inputs, None, &tok).unwrap();
    let sids = onerec::tokenizer::SemanticIds::load(&tok).unwrap();

    let cfg = Config::load("tiny", &["seed=3".into(), "train.epochs=3".into(), "train.rank_users=200".into()]).unwrap();
    let pre = root.join("pretrain");
    let summary = onerec::train::pretrain(&crate::common::pretrain_spec(&cfg), &ds, &sids, &pre, false).unwrap();

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

    let rm = root.join("reward");
    onerec::align::train_reward_model(&crate::common::reward_spec(&cfg), &ds, &tok, &rm).unwrap();
    let aligned = root.join("aligned");
    onerec::align::onerec::run(&crate::common::align_spec(&cfg), &pre, &rm, &data, &aligned, Some(&world)).unwrap();

    let opts = EvalOptions { session_len: cfg.align.session_len, ..EvalOptions::default() };
    let before = evaluate_checkpoint(&pre, &data, SplitSel::Test, &opts, Some(&world), Some(&rm)).unwrap();
    let after = evaluate_checkpoint(&aligned, &data, SplitSel::Test, &opts, Some(&world), Some(&rm)).unwrap();
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
    let pop = onerec::data::stats::popularity_baseline(&ds).test.recall_at_10;
    eprintln!("test recall@10: model {:.4} vs popularity {pop:.4}", g(&before, "recall@10"));
    assert!(g(&before, "recall@10") > 1.2 * pop, "pretrained model does not beat popularity");
    assert_eq!(before.invalid_paths, 0);
    assert_eq!(after.invalid_paths, 0);
    assert!(g(&after, "true_reward") > g(&before, "true_reward") * 1.03, "alignment did not raise the true reward");
    assert!(g(&after, "recall@10") >= 0.9 * g(&before, "recall@10"), "alignment collapsed Recall@10");
}
