//! Offline evaluation: Recall@K, NDCG@K, coverage, diversity, true reward.
