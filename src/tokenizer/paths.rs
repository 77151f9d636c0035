//! Unique item paths and the tokenizer's quality metrics.

use super::kernel::sqdist;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// How items that share a full path are told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Collisions {
    /// Append a level: 0 for the first item of a shared path, 1, 2, ... for the next.
    Disambiguate,
    /// Move a colliding item to the nearest free last-level code under its prefix
    /// (falling back to a disambiguation level when the prefix is full).
    Reassign,
}

/// Paths after resolution plus what resolution found.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub codes: Vec<u32>,
    pub sizes: Vec<usize>,
    pub collisions_before: usize,
    pub longest_chain: usize,
    pub reassigned: usize,
    pub disambiguation_level: bool,
}

/// Groups items by full path (first-seen order, members in item order).
fn groups(codes: &[u32], levels: usize) -> Vec<Vec<u32>> {
    let mut idx: HashMap<&[u32], usize> = HashMap::new();
    let mut out: Vec<Vec<u32>> = Vec::new();
    for (i, p) in codes.chunks_exact(levels).enumerate() {
        let g = *idx.entry(p).or_insert_with(|| {
            out.push(Vec::new());
            out.len() - 1
        });
        out[g].push(i as u32);
    }
    out
}

/// Appends a disambiguation level when any path is shared.
fn disambiguate(codes: &[u32], levels: usize, sizes: &[usize]) -> (Vec<u32>, Vec<usize>, bool) {
    let gs = groups(codes, levels);
    let chain = gs.iter().map(Vec::len).max().unwrap_or(1);
    if chain <= 1 {
        return (codes.to_vec(), sizes.to_vec(), false);
    }
    let n = codes.len() / levels;
    let mut rank = vec![0u32; n];
    for g in &gs {
        for (r, &i) in g.iter().enumerate() {
            rank[i as usize] = r as u32;
        }
    }
    let mut out = Vec::with_capacity(n * (levels + 1));
    for (i, p) in codes.chunks_exact(levels).enumerate() {
        out.extend_from_slice(p);
        out.push(rank[i]);
    }
    let mut s = sizes.to_vec();
    s.push(chain);
    (out, s, true)
}

/// Makes every path unique. `last` = (each item's input to the last level [n, d],
/// the last codebook [k, d], d), needed for `Reassign`.
pub fn resolve(codes: &[u32], sizes: &[usize], mode: Collisions, last: Option<(&[f32], &[f32], usize)>) -> Resolved {
    let levels = sizes.len();
    let n = codes.len() / levels;
    let gs = groups(codes, levels);
    let collisions_before = n - gs.len();
    let longest_chain = gs.iter().map(Vec::len).max().unwrap_or(0);
    let mut codes = codes.to_vec();
    let mut reassigned = 0;
    if mode == Collisions::Reassign && collisions_before > 0 {
        if let Some((resid, cb, d)) = last {
            let k = sizes[levels - 1];
            let mut used: HashSet<Vec<u32>> =
                gs.iter().map(|g| codes[g[0] as usize * levels..][..levels].to_vec()).collect();
            for g in &gs {
                for &i in &g[1..] {
                    let i = i as usize;
                    let r = &resid[i * d..(i + 1) * d];
                    let mut order: Vec<(f32, u32)> =
                        (0..k).map(|j| (sqdist(r, &cb[j * d..(j + 1) * d]), j as u32)).collect();
                    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    let mut path = codes[i * levels..(i + 1) * levels].to_vec();
                    for &(_, j) in &order {
                        path[levels - 1] = j;
                        if !used.contains(&path) {
                            used.insert(path.clone());
                            codes[i * levels + levels - 1] = j;
                            reassigned += 1;
                            break;
                        }
                    }
                }
            }
        }
    }
    let (codes, sizes, dis) = disambiguate(&codes, levels, sizes);
    Resolved { codes, sizes, collisions_before, longest_chain, reassigned, disambiguation_level: dis }
}

/// The tokenizer's metrics (`metrics` in manifest.json; the first five are a contract).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    /// Fraction of each level's codes used by at least one item.
    pub utilization: Vec<f64>,
    /// Entropy of each level's code distribution, in bits.
    pub entropy_bits: Vec<f64>,
    /// Items whose full quantizer path was shared with an earlier item.
    pub collisions_before: usize,
    pub unique_paths: bool,
    pub n_items: usize,
    /// sum ||x - x_hat||^2 / sum ||x||^2 over the quantizer's input vectors.
    pub relative_reconstruction_error: f64,
    pub collision_rate: f64,
    pub longest_chain: usize,
    pub items_per_first_code_min: usize,
    pub items_per_first_code_median: f64,
    pub items_per_first_code_max: usize,
    pub reassigned: usize,
}

/// Computes the metrics of final paths `codes` ([n, sizes.len()]).
pub fn metrics(codes: &[u32], sizes: &[usize], res: &Resolved, rel_err: f64) -> Metrics {
    let levels = sizes.len();
    let n = codes.len() / levels;
    let mut utilization = Vec::new();
    let mut entropy = Vec::new();
    let mut first_counts = Vec::new();
    for (l, &k) in sizes.iter().enumerate() {
        let mut c = vec![0usize; k];
        for p in codes.chunks_exact(levels) {
            c[p[l] as usize] += 1;
        }
        utilization.push(c.iter().filter(|&&v| v > 0).count() as f64 / k as f64);
        entropy.push(
            c.iter()
                .filter(|&&v| v > 0)
                .map(|&v| {
                    let p = v as f64 / n as f64;
                    -p * p.log2()
                })
                .sum::<f64>()
                .max(0.0),
        );
        if l == 0 {
            first_counts = c;
        }
    }
    first_counts.sort_unstable();
    let kf = first_counts.len();
    let median = if kf == 0 {
        0.0
    } else if kf % 2 == 1 {
        first_counts[kf / 2] as f64
    } else {
        (first_counts[kf / 2 - 1] + first_counts[kf / 2]) as f64 / 2.0
    };
    let unique = groups(codes, levels).len() == n;
    Metrics {
        utilization,
        entropy_bits: entropy,
        collisions_before: res.collisions_before,
        unique_paths: unique,
        n_items: n,
        relative_reconstruction_error: rel_err,
        collision_rate: if n > 0 { res.collisions_before as f64 / n as f64 } else { 0.0 },
        longest_chain: res.longest_chain,
        items_per_first_code_min: first_counts.first().copied().unwrap_or(0),
        items_per_first_code_median: median,
        items_per_first_code_max: first_counts.last().copied().unwrap_or(0),
        reassigned: res.reassigned,
    }
}

impl Metrics {
    /// The metrics as an aligned text table (`--report`).
    pub fn table(&self) -> String {
        let fmt = |v: &[f64], p: usize| v.iter().map(|x| format!("{x:.p$}")).collect::<Vec<_>>().join(", ");
        let rows = [
            ("items", self.n_items.to_string()),
            ("utilization", fmt(&self.utilization, 3)),
            ("entropy_bits", fmt(&self.entropy_bits, 2)),
            ("collisions_before", self.collisions_before.to_string()),
            ("collision_rate", format!("{:.4}", self.collision_rate)),
            ("longest_chain", self.longest_chain.to_string()),
            ("reassigned", self.reassigned.to_string()),
            ("unique_paths", self.unique_paths.to_string()),
            ("rel_recon_error", format!("{:.4}", self.relative_reconstruction_error)),
            (
                "items/first code",
                format!(
                    "min {} median {} max {}",
                    self.items_per_first_code_min, self.items_per_first_code_median, self.items_per_first_code_max
                ),
            ),
        ];
        rows.iter().map(|(k, v)| format!("{k:<18} {v}\n")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disambiguation_counts_chains() {
        // Items 0, 1, 2, 4 share [0, 1]; item 3 is alone on [1, 1].
        let codes = vec![0, 1, 0, 1, 0, 1, 1, 1, 0, 1];
        let r = resolve(&codes, &[2, 2], Collisions::Disambiguate, None);
        assert_eq!(r.collisions_before, 3);
        assert_eq!(r.longest_chain, 4);
        assert_eq!(r.sizes, vec![2, 2, 4]);
        assert_eq!(r.codes, vec![0, 1, 0, 0, 1, 1, 0, 1, 2, 1, 1, 0, 0, 1, 3]);
    }

    #[test]
    fn reassign_moves_to_nearest_free_code() {
        // Two items on path [0, 0]; last-level codebook has codes 0 (at 0.0), 1 (at 1.0), 2 (at 5.0).
        let codes = vec![0, 0, 0, 0];
        let resid = vec![0.1, 0.2];
        let cb = vec![0.0, 1.0, 5.0];
        let r = resolve(&codes, &[1, 3], Collisions::Reassign, Some((&resid, &cb, 1)));
        assert_eq!(r.codes, vec![0, 0, 0, 1]);
        assert_eq!(r.reassigned, 1);
        assert!(!r.disambiguation_level);
    }
}
