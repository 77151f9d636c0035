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
