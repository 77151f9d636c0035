//! Paired comparison of two models scored on the same users (their per-user rank files,
//! [`super::per_user`]): each metric's difference with a paired bootstrap confidence
//! interval, and the metrics by history length, to see whether a gap is more than noise
//! and which users it comes from.

use super::per_user::{pair_up, UserRank};
use anyhow::{ensure, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Settings of [`compare`].
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// Cut-offs of the metrics compared.
    pub ks: Vec<usize>,
    /// Bootstrap resamples of the users (0: no interval).
    pub resamples: usize,
    pub seed: u64,
    /// Upper ends of the history-length buckets (the last bucket is open).
    pub bucket_edges: Vec<usize>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions { ks: vec![5, 10, 20], resamples: 1000, seed: 0, bucket_edges: vec![5, 10, 20] }
    }
}

/// One metric of both models, B - A, with a 95% paired bootstrap interval.
#[derive(Clone, Debug, Serialize)]
pub struct MetricDiff {
    pub metric: String,
    pub a: f64,
    pub b: f64,
    pub diff: f64,
    /// (B - A) / A.
    pub relative: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Two-sided bootstrap p-value of "no difference".
    pub p_value: f64,
}

/// The users of one history-length bucket and both models' metrics there.
#[derive(Clone, Debug, Serialize)]
pub struct BucketRow {
    pub history: String,
    pub users: usize,
    /// Metric name -> (A, B).
    pub metrics: Vec<(String, f64, f64)>,
}

/// Everything [`compare`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub users: usize,
    pub resamples: usize,
    pub seed: u64,
    pub metrics: Vec<MetricDiff>,
    /// The largest cut-off, the K of `only_a` / `only_b`.
    pub max_k: usize,
    /// Users whose target only A / only B ranks within the largest K.
    pub only_a: usize,
    pub only_b: usize,
    pub buckets: Vec<BucketRow>,
}

type MetricFn = fn(&UserRank, usize) -> f64;

fn metric_fns(ks: &[usize]) -> Vec<(String, usize, MetricFn)> {
    let mut out: Vec<(String, usize, MetricFn)> = Vec::new();
    for &k in ks {
        out.push((format!("recall@{k}"), k, UserRank::recall));
        out.push((format!("ndcg@{k}"), k, UserRank::ndcg));
    }
    out
}

/// Compares model A (`a`) with model B (`b`) on their common users (both files must hold
/// the same users and targets). Deterministic for a given `opts.seed`.
pub fn compare(a: &[UserRank], b: &[UserRank], opts: &CompareOptions) -> Result<Comparison> {
    ensure!(!opts.ks.is_empty() && opts.ks.iter().all(|&k| k > 0), "cut-offs K must be positive");
    let pairs = pair_up(a, b)?;
    let n = pairs.len();
    let fns = metric_fns(&opts.ks);
    // Per metric: each user's A value and B - A.
    let per_user: Vec<(Vec<f64>, Vec<f64>)> =
        fns.iter().map(|(_, k, f)| pairs.iter().map(|(ra, rb)| (f(ra, *k), f(rb, *k) - f(ra, *k))).unzip()).collect();
    let mut boot: Vec<Vec<f64>> = vec![Vec::with_capacity(opts.resamples); fns.len()];
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut idx = vec![0usize; n];
    for _ in 0..opts.resamples {
        idx.iter_mut().for_each(|i| *i = rng.gen_range(0..n));
        for (m, (_, d)) in per_user.iter().enumerate() {
            boot[m].push(idx.iter().map(|&i| d[i]).sum::<f64>() / n as f64);
        }
    }
    let metrics = fns
        .iter()
        .zip(&per_user)
        .zip(&mut boot)
        .map(|(((name, _, _), (av, d)), bs)| {
            let a_mean = av.iter().sum::<f64>() / n as f64;
            let diff = d.iter().sum::<f64>() / n as f64;
            bs.sort_by(f64::total_cmp);
            let (ci_low, ci_high, p_value) = if bs.is_empty() {
                (f64::NAN, f64::NAN, f64::NAN)
            } else {
                let q = |p: f64| bs[((p * (bs.len() - 1) as f64).round() as usize).min(bs.len() - 1)];
                let le = bs.iter().filter(|&&x| x <= 0.0).count() as f64 / bs.len() as f64;
                let ge = bs.iter().filter(|&&x| x >= 0.0).count() as f64 / bs.len() as f64;
                (q(0.025), q(0.975), (2.0 * le.min(ge)).min(1.0))
            };
            MetricDiff {
                metric: name.clone(),
                a: a_mean,
                b: a_mean + diff,
                diff,
                relative: if a_mean > 0.0 { diff / a_mean } else { f64::NAN },
                ci_low,
                ci_high,
                p_value,
            }
        })
        .collect();
    let max_k = opts.ks.iter().copied().max().unwrap_or(10);
    let only_a = pairs.iter().filter(|(ra, rb)| ra.recall(max_k) > rb.recall(max_k)).count();
    let only_b = pairs.iter().filter(|(ra, rb)| rb.recall(max_k) > ra.recall(max_k)).count();
    Ok(Comparison {
        users: n,
        resamples: opts.resamples,
        seed: opts.seed,
        metrics,
        max_k,
        only_a,
        only_b,
        buckets: buckets(&pairs, &fns, &opts.bucket_edges),
    })
}

fn buckets(pairs: &[(&UserRank, &UserRank)], fns: &[(String, usize, MetricFn)], edges: &[usize]) -> Vec<BucketRow> {
    let mut edges: Vec<usize> = edges.to_vec();
    edges.sort_unstable();
    edges.dedup();
    // Sorted and deduplicated, each edge is at least the previous one + 1: no empty range.
    let mut ranges: Vec<(usize, Option<usize>)> = Vec::new();
    let mut lo = 0;
    for &e in &edges {
        ranges.push((lo, Some(e)));
        lo = e + 1;
    }
    ranges.push((lo, None));
    ranges
        .into_iter()
        .filter_map(|(lo, hi)| {
            let inside: Vec<_> =
                pairs.iter().filter(|(ra, _)| ra.history_len >= lo && hi.is_none_or(|h| ra.history_len <= h)).collect();
            if inside.is_empty() {
                return None;
            }
            let m = inside.len() as f64;
            let metrics = fns
                .iter()
                .map(|(name, k, f)| {
                    let a = inside.iter().map(|(ra, _)| f(ra, *k)).sum::<f64>() / m;
                    let b = inside.iter().map(|(_, rb)| f(rb, *k)).sum::<f64>() / m;
                    (name.clone(), a, b)
                })
                .collect();
            let history = match hi {
                Some(h) => format!("{lo}-{h}"),
                None => format!("{lo}+"),
            };
            Some(BucketRow { history, users: inside.len(), metrics })
        })
        .collect()
}

impl Comparison {
    /// Markdown tables: the overall differences, then the metrics by history length.
    pub fn markdown(&self, name_a: &str, name_b: &str) -> String {
        let mut s = format!(
            "{} users; B - A with a 95% paired bootstrap interval ({} resamples, seed {}); A = {name_a}, B = {name_b}\n\n",
            self.users, self.resamples, self.seed
        );
        s += &format!("| metric | {name_a} | {name_b} | B - A | relative | 95% interval | p |\n");
        s += "| --- | --- | --- | --- | --- | --- | --- |\n";
        for m in &self.metrics {
            s += &format!(
                "| {} | {:.4} | {:.4} | {:+.4} | {:+.1}% | [{:+.4}, {:+.4}] | {:.3} |\n",
                m.metric,
                m.a,
                m.b,
                m.diff,
                100.0 * m.relative,
                m.ci_low,
                m.ci_high,
                m.p_value
            );
        }
        s += &format!(
            "\nTargets in only {name_a}'s top {}: {}; in only {name_b}'s: {}.\n\n",
            self.max_k, self.only_a, self.only_b
        );
        let names: Vec<&str> =
            self.buckets.first().map(|b| b.metrics.iter().map(|m| m.0.as_str()).collect()).unwrap_or_default();
        s += &format!(
            "| history length | users | {} |\n",
            names.iter().map(|n| format!("{n} A / B")).collect::<Vec<_>>().join(" | ")
        );
        s += &format!("| --- | --- |{}\n", " --- |".repeat(names.len()));
        for b in &self.buckets {
            let cells: Vec<String> = b.metrics.iter().map(|(_, a, bb)| format!("{a:.4} / {bb:.4}")).collect();
            s += &format!("| {} | {} | {} |\n", b.history, b.users, cells.join(" | "));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(u: usize, h: usize, rank: Option<usize>) -> UserRank {
        UserRank { user_id: u.to_string(), history_len: h, target: "t".into(), rank }
    }

    #[test]
    fn hand_computed_differences_buckets_and_determinism() {
        // A hits users 0 and 1 at rank 1; B hits users 0 (rank 1), 2 (rank 3) and 3 (rank 3).
        let a = vec![r(0, 3, Some(1)), r(1, 4, Some(1)), r(2, 12, None), r(3, 30, Some(15))];
        let b = vec![r(0, 3, Some(1)), r(1, 4, None), r(2, 12, Some(3)), r(3, 30, Some(3))];
        let opts = CompareOptions { ks: vec![10], resamples: 200, seed: 7, bucket_edges: vec![5, 20] };
        let c = compare(&a, &b, &opts).unwrap();
        let recall = &c.metrics[0];
        assert_eq!(recall.metric, "recall@10");
        assert!((recall.a - 0.5).abs() < 1e-12 && (recall.b - 0.75).abs() < 1e-12);
        assert!((recall.diff - 0.25).abs() < 1e-12 && (recall.relative - 0.5).abs() < 1e-12);
        assert!(recall.ci_low <= recall.diff && recall.diff <= recall.ci_high);
        let ndcg = &c.metrics[1];
        assert!((ndcg.a - 0.5).abs() < 1e-12);
        assert!((ndcg.b - (1.0 + 2.0 * 0.5) / 4.0).abs() < 1e-12); // rank 3: 1/log2(4)
        assert_eq!((c.only_a, c.only_b), (1, 2));
        let hist: Vec<(&str, usize)> = c.buckets.iter().map(|b| (b.history.as_str(), b.users)).collect();
        assert_eq!(hist, vec![("0-5", 2), ("6-20", 1), ("21+", 1)]);
        assert_eq!(c.buckets[0].metrics[0], ("recall@10".to_string(), 1.0, 0.5));
        let again = compare(&a, &b, &opts).unwrap();
        assert_eq!(again.metrics[0].ci_low, recall.ci_low);
        assert!(c.markdown("onerec", "sasrec").contains("| recall@10 | 0.5000 | 0.7500 | +0.2500 |"));
    }

    #[test]
    fn identical_models_have_a_zero_interval_and_p_one() {
        let a: Vec<UserRank> = (0..50).map(|u| r(u, u % 9, (u % 3 == 0).then_some(u % 7 + 1))).collect();
        let c = compare(&a, &a, &CompareOptions::default()).unwrap();
        for m in &c.metrics {
            assert_eq!((m.diff, m.ci_low, m.ci_high, m.p_value), (0.0, 0.0, 0.0, 1.0));
        }
    }
}
