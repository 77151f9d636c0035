//! Textbook ranking metrics with binary relevance.

/// Recall@K: |relevant ∩ ranked[..K]| / |relevant| (0 when nothing is relevant).
pub fn recall_at_k(ranked: &[u32], relevant: &[u32], k: usize) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    let hits = ranked.iter().take(k).filter(|i| relevant.contains(i)).count();
    hits as f64 / relevant.len() as f64
}

/// NDCG@K: DCG = sum over hits at 0-based rank r < K of 1 / log2(r + 2), divided by
/// the ideal DCG of min(|relevant|, K) hits at the top.
pub fn ndcg_at_k(ranked: &[u32], relevant: &[u32], k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, i)| relevant.contains(i))
        .map(|(r, _)| 1.0 / ((r + 2) as f64).log2())
        .sum();
    let idcg: f64 = (0..relevant.len().min(k)).map(|r| 1.0 / ((r + 2) as f64).log2()).sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn textbook_values() {
        let ranked = [7, 3, 9, 1, 4];
        assert_eq!(recall_at_k(&ranked, &[9], 2), 0.0);
        assert_eq!(recall_at_k(&ranked, &[9], 3), 1.0);
        assert!((ndcg_at_k(&ranked, &[9], 5) - 0.5).abs() < 1e-12); // 1/log2(4)
        assert!((ndcg_at_k(&ranked, &[7], 5) - 1.0).abs() < 1e-12);
        // two relevant: hits at ranks 1 and 3 -> (1/log2 3 + 1/log2 5) / (1 + 1/log2 3)
        let want = (1.0 / 3f64.log2() + 1.0 / 5f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at_k(&ranked, &[3, 1], 5) - want).abs() < 1e-12);
        assert_eq!(recall_at_k(&ranked, &[3, 1], 3), 0.5);
        assert_eq!(ndcg_at_k(&ranked, &[], 5), 0.0);
    }
}
