//! Dataset statistics and the popularity baseline (the reference rule of the shared
//! data READMEs: item counts over the training parts of all users, ties by smaller
//! original item id, history items not removed, target ranked against all items).

use super::dataset::Dataset;
use serde::Serialize;

/// Recall@k of one target at 0-based `rank` (1 if it is in the top k).
pub fn recall_at_k(rank: usize, k: usize) -> f64 {
    if rank < k {
        1.0
    } else {
        0.0
    }
}

/// NDCG@k of one target at 0-based `rank`: 1 / log2(rank + 2) inside the top k.
pub fn ndcg_at_k(rank: usize, k: usize) -> f64 {
    if rank < k {
        1.0 / ((rank + 2) as f64).log2()
    } else {
        0.0
    }
}

/// Mean Recall@10 / NDCG@10 over `n` targets.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Metrics {
    #[serde(rename = "recall@10")]
    pub recall_at_10: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg_at_10: f64,
    /// Number of targets.
    pub n: usize,
}

impl Metrics {
    fn from_ranks(ranks: &[usize]) -> Metrics {
        let n = ranks.len().max(1) as f64;
        Metrics {
            recall_at_10: ranks.iter().map(|&r| recall_at_k(r, 10)).sum::<f64>() / n,
            ndcg_at_10: ranks.iter().map(|&r| ndcg_at_k(r, 10)).sum::<f64>() / n,
            n: ranks.len(),
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Popularity {
    pub validation: Metrics,
    pub test: Metrics,
}

/// Dense item ids ranked by popularity: training-part counts descending, ties by
/// smaller original id (numeric when every id is an integer).
pub fn popularity_ranking(ds: &Dataset) -> Vec<u32> {
    let mut counts = vec![0u64; ds.n_items()];
    for u in 0..ds.n_users() {
        let r = ds.range(u);
        for &i in &ds.items[r.start + ds.split(u).train.start..r.start + ds.split(u).train.end] {
            counts[i as usize] += 1;
        }
    }
    let nums: Option<Vec<u64>> = ds.item_ids.iter().map(|s| s.parse::<u64>().ok()).collect();
    let mut order: Vec<u32> = (0..ds.n_items() as u32).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        let tie = match &nums {
            Some(n) => n[a].cmp(&n[b]).then_with(|| ds.item_ids[a].cmp(&ds.item_ids[b])),
            None => ds.item_ids[a].cmp(&ds.item_ids[b]),
        };
        counts[b].cmp(&counts[a]).then(tie)
    });
    order
}

/// The popularity baseline on the leave-one-out validation and test targets.
pub fn popularity_baseline(ds: &Dataset) -> Popularity {
    let order = popularity_ranking(ds);
    let mut rank = vec![0usize; ds.n_items()];
    for (r, &i) in order.iter().enumerate() {
        rank[i as usize] = r;
    }
    let (mut valid, mut test) = (Vec::new(), Vec::new());
    for u in 0..ds.n_users() {
        let s = ds.split(u);
        let h = ds.history(u);
        if let Some(v) = s.valid {
            valid.push(rank[h[v] as usize]);
        }
        if let Some(t) = s.test {
            test.push(rank[h[t] as usize]);
        }
    }
    Popularity { validation: Metrics::from_ranks(&valid), test: Metrics::from_ranks(&test) }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LengthStats {
    pub min: usize,
    pub median: f64,
    pub mean: f64,
    pub max: usize,
}

/// Everything `onerec data stats` prints.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DatasetStats {
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    pub train_interactions: usize,
    pub history_length: LengthStats,
    pub features: Vec<String>,
    pub sessions: usize,
    pub high_quality_sessions: usize,
    pub session_rule: String,
    pub popularity: Popularity,
}

/// Computes the statistics of a dataset.
pub fn stats(ds: &Dataset) -> DatasetStats {
    let mut lens: Vec<usize> = (0..ds.n_users()).map(|u| ds.range(u).len()).collect();
    lens.sort_unstable();
    let median = match lens.len() {
        0 => 0.0,
        n if n % 2 == 1 => lens[n / 2] as f64,
        n => (lens[n / 2 - 1] + lens[n / 2]) as f64 / 2.0,
    };
    DatasetStats {
        users: ds.n_users(),
        items: ds.n_items(),
        interactions: ds.items.len(),
        train_interactions: (0..ds.n_users()).map(|u| ds.split(u).train.len()).sum(),
        history_length: LengthStats {
            min: lens.first().copied().unwrap_or(0),
            median,
            mean: if lens.is_empty() { 0.0 } else { ds.items.len() as f64 / lens.len() as f64 },
            max: lens.last().copied().unwrap_or(0),
        },
        features: ds.manifest.features.clone(),
        sessions: ds.session_starts.len(),
        high_quality_sessions: ds.session_quality.iter().filter(|&&q| q).count(),
        session_rule: ds.manifest.sessions.clone(),
        popularity: popularity_baseline(ds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_helpers() {
        assert_eq!(recall_at_k(0, 10), 1.0);
        assert_eq!(recall_at_k(9, 10), 1.0);
        assert_eq!(recall_at_k(10, 10), 0.0);
        assert!((ndcg_at_k(0, 10) - 1.0).abs() < 1e-12);
        assert!((ndcg_at_k(2, 10) - 0.5).abs() < 1e-12);
        assert_eq!(ndcg_at_k(10, 10), 0.0);
    }

    #[test]
    fn popularity_counts_train_only_and_breaks_ties_by_id() {
        // Item 2 is the most frequent in training parts; items 0 and 1 tie.
        let ds = Dataset::from_histories(&[vec![2, 0, 1, 3], vec![2, 1, 0, 3], vec![3, 3, 3]], 4);
        // Train parts: [2,0], [2,1], [3]: counts 0:1 1:1 2:2 3:1.
        assert_eq!(popularity_ranking(&ds), vec![2, 0, 1, 3]);
        let p = popularity_baseline(&ds);
        assert_eq!(p.test.n, 3);
        assert_eq!(p.test.recall_at_10, 1.0);
        // Validation targets: 1 (rank 2), 0 (rank 1), 3 (rank 3).
        let want = (1.0 / 4f64.log2() + 1.0 / 3f64.log2() + 1.0 / 5f64.log2()) / 3.0;
        assert!((p.validation.ndcg_at_10 - want).abs() < 1e-12);
    }
}
