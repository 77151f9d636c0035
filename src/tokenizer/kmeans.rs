//! (Balanced) k-means and residual k-means. Every random choice comes from a named
//! stream of the run seed; reductions run in a fixed order, so results are repeatable.

use super::kernel::{nearest, row_norms, scan, sqdist};
use crate::util::rng::{stream, Rng};
use anyhow::{bail, Result};
use rand::Rng as _;
use rayon::prelude::*;

/// Options of one k-means fit.
#[derive(Clone, Copy, Debug)]
pub struct KMeansOptions {
    pub k: usize,
    pub iters: usize,
    /// Every cluster gets exactly floor(n/k) or ceil(n/k) points.
    pub balanced: bool,
    /// Stop early when fewer than this fraction of assignments change.
    pub tol: f64,
}

/// A fitted k-means: centroids [k, d] and the assignment of every point.
#[derive(Clone, Debug)]
pub struct KMeans {
    pub centroids: Vec<f32>,
    pub assign: Vec<u32>,
    pub iters_run: usize,
}

/// k-means++ seeding on a deterministic sample of at most `32 k` rows.
pub fn kmeans_pp(x: &[f32], d: usize, k: usize, rng: &mut Rng) -> Vec<f32> {
    let n = x.len() / d;
    let sample: Vec<usize> = if n <= 32 * k.max(64) {
        (0..n).collect()
    } else {
        rand::seq::index::sample(rng, n, 32 * k.max(64)).into_vec()
    };
    let s = sample.len();
    let row = |i: usize| &x[sample[i] * d..(sample[i] + 1) * d];
    let mut cent = Vec::with_capacity(k * d);
    let first = rng.gen_range(0..s);
    cent.extend_from_slice(row(first));
    let mut mind: Vec<f32> = (0..s).into_par_iter().map(|i| sqdist(row(i), row(first))).collect();
    for _ in 1..k {
        let total: f64 = mind.iter().map(|&v| v as f64).sum();
        let pick = if total <= 0.0 {
            rng.gen_range(0..s)
        } else {
            let mut t = rng.gen::<f64>() * total;
            let mut p = s - 1;
            for (i, &v) in mind.iter().enumerate() {
                t -= v as f64;
                if t < 0.0 {
                    p = i;
                    break;
                }
            }
            p
        };
        let c = row(pick).to_vec();
        mind.par_iter_mut().enumerate().for_each(|(i, m)| {
            let v = sqdist(row(i), &c);
            if v < *m {
                *m = v;
            }
        });
        cent.extend_from_slice(&c);
    }
    cent
}

/// Cluster means of `assign` (f64 sums, members in index order); empty clusters keep
/// their old centroid. Returns the cluster sizes.
fn update_centroids(x: &[f32], d: usize, assign: &[u32], k: usize, cent: &mut [f32]) -> Vec<usize> {
    let mut counts = vec![0usize; k];
    for &a in assign {
        counts[a as usize] += 1;
    }
    let mut offs = vec![0usize; k + 1];
    for j in 0..k {
        offs[j + 1] = offs[j] + counts[j];
    }
    let mut members = vec![0u32; assign.len()];
    let mut fill = offs.clone();
    for (i, &a) in assign.iter().enumerate() {
        members[fill[a as usize]] = i as u32;
        fill[a as usize] += 1;
    }
    cent.par_chunks_mut(d).enumerate().for_each(|(j, c)| {
        let m = &members[offs[j]..offs[j + 1]];
        if m.is_empty() {
            return;
        }
        let mut acc = vec![0f64; d];
        for &i in m {
            for (a, v) in acc.iter_mut().zip(&x[i as usize * d..(i as usize + 1) * d]) {
                *a += *v as f64;
            }
        }
        for (cv, a) in c.iter_mut().zip(acc) {
            *cv = (a / m.len() as f64) as f32;
        }
    });
    counts
}

/// Exactly balanced assignment: cluster sizes are floor(n/k) or ceil(n/k).
/// Greedy by regret: points whose best cluster beats their next choices by the widest
/// margin pick first; a point whose candidates are full waits for the next round,
/// where candidates are recomputed among the clusters still open.
pub fn balanced_assign(x: &[f32], d: usize, c: &[f32], k: usize) -> Vec<u32> {
    let n = x.len() / d;
    let q = n / k;
    let mut extra = n % k;
    let mut counts = vec![0usize; k];
    let mut assign = vec![u32::MAX; n];
    let mut pending: Vec<usize> = (0..n).collect();
    let m = k.min(16);
    while !pending.is_empty() {
        let open: Vec<usize> = (0..k).filter(|&j| counts[j] < q || (counts[j] == q && extra > 0)).collect();
        let ko = open.len();
        let co: Vec<f32> = open.iter().flat_map(|&j| c[j * d..(j + 1) * d].iter().copied()).collect();
        let cn = row_norms(&co, d);
        let xs: Vec<f32> = pending.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect();
        let mm = m.min(ko);
        let mut cand = vec![(0u32, 0f32); pending.len() * mm];
        scan(&xs, d, &co, ko, &cn, &mut cand, mm, |_, s, out| {
            // Partial selection of the mm smallest scores, then sort them.
            let mut best: Vec<(u32, f32)> = Vec::with_capacity(mm + 1);
            for (j, &v) in s.iter().enumerate() {
                if best.len() < mm || v < best[mm - 1].1 {
                    let pos = best.partition_point(|b| b.1 <= v);
                    best.insert(pos, (j as u32, v));
                    best.truncate(mm);
                }
            }
            out.copy_from_slice(&best);
        });
        let mut order: Vec<usize> = (0..pending.len()).collect();
        let gap = |p: usize| if mm > 1 { cand[p * mm + 1].1 - cand[p * mm].1 } else { f32::INFINITY };
        order.sort_by(|&a, &b| gap(b).total_cmp(&gap(a)).then(a.cmp(&b)));
        let mut next = Vec::new();
        for p in order {
            let i = pending[p];
            let mut placed = false;
            for &(j, _) in &cand[p * mm..(p + 1) * mm] {
                let j = open[j as usize];
                if counts[j] < q || (counts[j] == q && extra > 0) {
                    if counts[j] == q {
                        extra -= 1;
                    }
                    counts[j] += 1;
                    assign[i] = j as u32;
                    placed = true;
                    break;
                }
            }
            if !placed {
                next.push(i);
            }
        }
        next.sort_unstable();
        pending = next;
    }
    assign
}

/// Lloyd's k-means (or balanced k-means) with k-means++ seeding. Empty clusters are
/// re-seeded with the points farthest from their centroid.
pub fn kmeans(x: &[f32], d: usize, opts: KMeansOptions, rng: &mut Rng) -> Result<KMeans> {
    let n = if d == 0 { 0 } else { x.len() / d };
    let k = opts.k;
    if k == 0 {
        bail!("codebook size must be at least 1");
    }
    if k > n {
        bail!("codebook size {k} exceeds the number of items {n}; use a smaller --codebook-size");
    }
    let mut cent = kmeans_pp(x, d, k, rng);
    let mut assign: Vec<u32> = vec![u32::MAX; n];
    let mut iters_run = 0;
    for it in 0..opts.iters.max(1) {
        iters_run = it + 1;
        let (new, dist) = if opts.balanced {
            (balanced_assign(x, d, &cent, k), Vec::new())
        } else {
            nearest(x, d, &cent, k)
        };
        let changed = new.iter().zip(&assign).filter(|(a, b)| a != b).count();
        assign = new;
        let counts = update_centroids(x, d, &assign, k, &mut cent);
        let empty: Vec<usize> = (0..k).filter(|&j| counts[j] == 0).collect();
        if !empty.is_empty() && !dist.is_empty() {
            // Farthest points (ties by index) become the new centroids.
            let mut far: Vec<usize> = (0..n).collect();
            far.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
            for (j, &i) in empty.iter().zip(&far) {
                cent[j * d..(j + 1) * d].copy_from_slice(&x[i * d..(i + 1) * d]);
            }
            continue;
        }
        if (changed as f64) < opts.tol * n as f64 {
            break;
        }
    }
    if opts.balanced {
        // Final balanced assignment against the final centroids, then their means.
        assign = balanced_assign(x, d, &cent, k);
        update_centroids(x, d, &assign, k, &mut cent);
    }
    Ok(KMeans { centroids: cent, assign, iters_run })
}

/// Result of residual quantization: codes [n, levels], one codebook [k_l, d] per
/// level, and the residual each level quantized (for collision reassignment).
#[derive(Clone, Debug)]
pub struct Residual {
    pub codes: Vec<u32>,
    pub codebooks: Vec<Vec<f32>>,
    pub last_input: Vec<f32>,
}

/// Residual k-means: level l clusters what levels < l left unexplained.
pub fn rq_kmeans(x: &[f32], d: usize, sizes: &[usize], iters: usize, balanced: bool, seed: u64) -> Result<Residual> {
    let n = x.len() / d;
    let levels = sizes.len();
    let mut residual = x.to_vec();
    let mut codes = vec![0u32; n * levels];
    let mut codebooks = Vec::with_capacity(levels);
    let mut last_input = Vec::new();
    for (l, &k) in sizes.iter().enumerate() {
        let t = std::time::Instant::now();
        let mut rng = stream(seed, &format!("tokenizer.kmeans.level{l}"));
        let km = kmeans(&residual, d, KMeansOptions { k, iters, balanced, tol: 1e-3 }, &mut rng)?;
        if l + 1 == levels {
            last_input = residual.clone();
        }
        residual.par_chunks_mut(d).zip(km.assign.par_iter()).for_each(|(r, &a)| {
            for (v, c) in r.iter_mut().zip(&km.centroids[a as usize * d..(a as usize + 1) * d]) {
                *v -= c;
            }
        });
        for i in 0..n {
            codes[i * levels + l] = km.assign[i];
        }
        tracing::info!(
            "level {l}: k={k} {} iterations, {:.2}s",
            km.iters_run,
            t.elapsed().as_secs_f64()
        );
        codebooks.push(km.centroids);
    }
    Ok(Residual { codes, codebooks, last_input })
}

/// Sum of the codewords of each item's path: the residual quantizer's reconstruction.
pub fn reconstruct(codes: &[u32], levels: usize, codebooks: &[Vec<f32>], d: usize) -> Vec<f32> {
    let n = codes.len() / levels;
    let mut out = vec![0f32; n * d];
    out.par_chunks_mut(d).enumerate().for_each(|(i, o)| {
        for (l, cb) in codebooks.iter().enumerate() {
            let c = codes[i * levels + l] as usize;
            for (v, w) in o.iter_mut().zip(&cb[c * d..(c + 1) * d]) {
                *v += w;
            }
        }
    });
    out
}
