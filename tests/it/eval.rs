//! Evaluation: textbook metric values and `evaluate` against an independent recomputation.

use crate::common::*;

use onerec::data::Dataset;
use onerec::eval::metrics::{ndcg_at_k, recall_at_k};
use onerec::eval::{evaluate, EvalOptions};
use onerec::generate::users::SplitSel;
use onerec::generate::{beam_search, BeamOptions};

#[test]
fn metrics_on_hand_made_ranking() {
    // Target at 0-based rank 3 of [10, 11, 12, 13, 14].
    let ranked = [10u32, 11, 12, 13, 14];
    assert_eq!(recall_at_k(&ranked, &[13], 3), 0.0);
    assert_eq!(recall_at_k(&ranked, &[13], 4), 1.0);
    assert!((ndcg_at_k(&ranked, &[13], 5) - 1.0 / 5f64.log2()).abs() < 1e-12);
    assert_eq!(ndcg_at_k(&ranked, &[13], 3), 0.0);
    assert_eq!(ndcg_at_k(&ranked, &[99], 5), 0.0);
    assert_eq!(ndcg_at_k(&ranked, &[10], 1), 1.0);
}

#[test]
fn evaluate_matches_independent_ranking() {
    let (ids, vocab, model) = setup(&[4, 4, 2], 30, 31);
    let hist = random_histories(25, 30, 9, 32);
    let ds = Dataset::from_histories(&hist, 30);
    let reward = |_u: usize, s: &[u32]| -> anyhow::Result<f64> { Ok(s.len() as f64) };
    let rm = |u: usize, _s: &[u32]| -> anyhow::Result<f64> { Ok(u as f64) };
    let opts = EvalOptions { true_reward: Some(&reward), rm_reward: Some(&rm), batch_users: 4, ..Default::default() };
    let rep = evaluate(&model, &ids, &vocab, &ds, SplitSel::Test, &opts).unwrap();
    assert_eq!(rep.users, 25);
    assert_eq!(rep.invalid_paths, 0);
    assert!(rep.invalid_paths_before_masking > 0.0 && rep.invalid_paths_before_masking <= 1.0);
    // Independent recomputation of Recall@K / NDCG@K.
    let mut hits = [0.0f64; 3];
    let mut ndcg = [0.0f64; 3];
    let mut ranks = Vec::new();
    for h in &hist {
        let n = h.len();
        let res = beam_search(
            &model,
            &ids,
            &vocab,
            &[&h[..n - 1]],
            &BeamOptions { beam: 20, session_len: 1, top: 20, exclude_history: false },
        )
        .unwrap();
        let rank = res[0].iter().position(|x| x.items[0] == h[n - 1]);
        ranks.push(rank.map(|r| r + 1));
        for (j, k) in [5usize, 10, 20].into_iter().enumerate() {
            if let Some(r) = rank.filter(|&r| r < k) {
                hits[j] += 1.0;
                ndcg[j] += 1.0 / ((r + 2) as f64).log2();
            }
        }
    }
    for (j, k) in [5, 10, 20].into_iter().enumerate() {
        assert!((rep.metrics[&format!("recall@{k}")] - hits[j] / 25.0).abs() < 1e-12);
        assert!((rep.metrics[&format!("ndcg@{k}")] - ndcg[j] / 25.0).abs() < 1e-12);
    }
    assert!(hits[2] > 0.0, "vacuous: no hit at 20");
    // The per-user ranks (`--per-user`, `onerec compare`) are the same ranks.
    assert_eq!(rep.per_user.iter().map(|r| r.rank).collect::<Vec<_>>(), ranks);
    assert_eq!(
        rep.per_user.iter().map(|r| r.history_len).collect::<Vec<_>>(),
        hist.iter().map(|h| h.len() - 1).collect::<Vec<_>>()
    );
    assert!(
        rep.metrics["recall@5"] <= rep.metrics["recall@10"] && rep.metrics["recall@10"] <= rep.metrics["recall@20"]
    );
    assert!(rep.coverage > 0.0 && rep.coverage <= 1.0);
    let d = rep.diversity.unwrap();
    assert!(d > 0.0 && d <= 1.0);
    assert_eq!(rep.true_reward, Some(5.0));
    assert_eq!(rep.rm_reward, Some(12.0)); // mean of dense user ids 0..25
    let json = serde_json::to_value(&rep).unwrap();
    for key in [
        "recall@5",
        "ndcg@5",
        "recall@10",
        "ndcg@20",
        "invalid_paths",
        "invalid_paths_before_masking",
        "coverage",
        "diversity",
        "users",
    ] {
        assert!(json.get(key).is_some(), "missing {key} in {json}");
    }
    // Same numbers for any batching; max_users subsamples deterministically.
    let o1 = EvalOptions { batch_users: 1, ..Default::default() };
    let o2 = EvalOptions { batch_users: 100, ..Default::default() };
    let (a, b) = (
        evaluate(&model, &ids, &vocab, &ds, SplitSel::Test, &o1).unwrap(),
        evaluate(&model, &ids, &vocab, &ds, SplitSel::Test, &o2).unwrap(),
    );
    assert_eq!(a, b);
    let o3 = EvalOptions { max_users: Some(7), ..Default::default() };
    assert_eq!(evaluate(&model, &ids, &vocab, &ds, SplitSel::Valid, &o3).unwrap().users, 7);
    assert!(evaluate(&model, &ids, &vocab, &ds, SplitSel::All, &o3).is_err());
}
