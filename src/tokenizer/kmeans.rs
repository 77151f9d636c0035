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
    /// Stop early when the objective improves by less than this fraction.
    pub rel_tol: f64,
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
/// Returns the assignment and the sum of the chosen scores (||c||^2 - 2 x.c).
pub fn balanced_assign(x: &[f32], d: usize, c: &[f32], k: usize) -> (Vec<u32>, f64) {
    let n = x.len() / d;
    let q = n / k;
    let mut extra = n % k;
    let mut counts = vec![0usize; k];
    let mut assign = vec![u32::MAX; n];
    let mut pending: Vec<usize> = (0..n).collect();
    let m = k.min(16);
    let mut rounds = 0;
    let mut score = 0f64;
    while !pending.is_empty() {
        rounds += 1;
        let open: Vec<usize> = (0..k).filter(|&j| counts[j] < q || (counts[j] == q && extra > 0)).collect();
        let ko = open.len();
        let co: Vec<f32> = open.iter().flat_map(|&j| c[j * d..(j + 1) * d].iter().copied()).collect();
        let cn = row_norms(&co, d);
        // The first round scans every row in place; later rounds gather the pending ones.
        let gathered: Vec<f32>;
        let xs: &[f32] = if pending.len() == n {
            x
        } else {
            gathered = pending.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect();
            &gathered
        };
        let mm = m.min(ko);
        let mut cand = vec![(0u32, 0f32); pending.len() * mm];
        scan(xs, d, &co, ko, &cn, &mut cand, mm, |_, s, out| top_m(s, out));
        let mut order: Vec<usize> = (0..pending.len()).collect();
        let gap = |p: usize| if mm > 1 { cand[p * mm + 1].1 - cand[p * mm].1 } else { f32::INFINITY };
        order.sort_by(|&a, &b| gap(b).total_cmp(&gap(a)).then(a.cmp(&b)));
        let mut next = Vec::new();
        for p in order {
            let i = pending[p];
            let mut placed = false;
            for &(j, v) in &cand[p * mm..(p + 1) * mm] {
                let j = open[j as usize];
                if counts[j] < q || (counts[j] == q && extra > 0) {
                    if counts[j] == q {
                        extra -= 1;
                    }
                    counts[j] += 1;
                    assign[i] = j as u32;
                    score += v as f64;
                    placed = true;
                    break;
                }
            }
            if !placed {
                next.push(i);
            }
        }
        next.sort_unstable();
        tracing::trace!("balanced round {rounds}: {} of {} placed", pending.len() - next.len(), pending.len());
        pending = next;
    }
    tracing::debug!("balanced assignment: {rounds} rounds");
    (assign, score)
}

/// The `out.len()` smallest scores (index, score), ascending (ties by index).
/// Candidates under a running threshold go to a small buffer that is pruned with a
/// partial selection when full: ~one compare per score.
fn top_m(s: &[f32], out: &mut [(u32, f32)]) {
    let m = out.len();
    let cap = 4 * m;
    let mut buf: Vec<(u32, f32)> = Vec::with_capacity(cap);
    let mut thr = f32::INFINITY;
    let by = |a: &(u32, f32), b: &(u32, f32)| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0));
    for (j, &v) in s.iter().enumerate() {
        if v < thr {
            buf.push((j as u32, v));
            if buf.len() == cap {
                buf.select_nth_unstable_by(m - 1, by);
                buf.truncate(m);
                thr = buf.iter().fold(f32::NEG_INFINITY, |a, b| a.max(b.1));
            }
        }
    }
    buf.sort_unstable_by(by);
    out.copy_from_slice(&buf[..m]);
}

/// Lloyd's k-means (or balanced k-means) with k-means++ seeding. Empty clusters are
/// re-seeded with the points farthest from their centroid.
pub fn kmeans(x: &[f32], d: usize, opts: KMeansOptions, rng: &mut Rng) -> Result<KMeans> {
    let n = x.len().checked_div(d).unwrap_or(0);
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
    let xsum: f64 = row_norms(x, d).iter().map(|&v| v as f64).sum();
    let mut prev = f64::INFINITY;
    for it in 0..opts.iters.max(1) {
        iters_run = it + 1;
        let (new, dist, inertia) = if opts.balanced {
            let (a, s) = balanced_assign(x, d, &cent, k);
            (a, Vec::new(), s + xsum)
        } else {
            let (a, dist) = nearest(x, d, &cent, k);
            let s = dist.iter().map(|&v| v as f64).sum();
            (a, dist, s)
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
        // Stop when few points move or the objective barely improves.
        if (changed as f64) < opts.tol * n as f64 || (prev - inertia) < opts.rel_tol * prev.abs().min(f64::MAX) {
            break;
        }
        prev = inertia;
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

/// Default of [`rq_kmeans`]'s `fit_sample`: levels of more items than this (and more than
/// [`MIN_SAMPLE_PER_CENTROID`] per centroid) fit their centroids on a sample.
pub const DEFAULT_FIT_SAMPLE: usize = 262_144;

/// A sampled fit keeps at least this many points per centroid (faiss warns below 39).
pub const MIN_SAMPLE_PER_CENTROID: usize = 32;

/// Rows of the sampled fit of one level of `n` items and `k` centroids, or None when
/// the level fits on every item (`fit_sample` 0 = always every item).
pub fn fit_sample_size(n: usize, k: usize, fit_sample: usize) -> Option<usize> {
    let s = fit_sample.max(MIN_SAMPLE_PER_CENTROID * k);
    (fit_sample > 0 && n > s).then_some(s)
}

/// One level: k-means on every row, or (large inputs, see [`fit_sample_size`]) k-means on
/// a seeded sample of rows, then every row assigned to those centroids (balanced when
/// `opts.balanced`) and the centroids moved to the means of their members: a final Lloyd
/// step over all rows. Cost of an iteration drops from n to the sample's size.
pub fn kmeans_level(
    x: &[f32],
    d: usize,
    opts: KMeansOptions,
    fit_sample: usize,
    seed: u64,
    level: usize,
) -> Result<KMeans> {
    let n = x.len().checked_div(d).unwrap_or(0);
    let mut rng = stream(seed, &format!("tokenizer.kmeans.level{level}"));
    let Some(s) = fit_sample_size(n, opts.k, fit_sample) else {
        return kmeans(x, d, opts, &mut rng);
    };
    let mut pick =
        rand::seq::index::sample(&mut stream(seed, &format!("tokenizer.kmeans.sample{level}")), n, s).into_vec();
    pick.sort_unstable();
    let xs: Vec<f32> = pick.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect();
    let t = std::time::Instant::now();
    let fitted = kmeans(&xs, d, opts, &mut rng)?;
    drop(xs);
    tracing::info!(
        "level {level}: centroids fit on a sample of {s} of {n} rows ({} iterations, {:.1}s); assigning every row",
        fitted.iters_run,
        t.elapsed().as_secs_f64()
    );
    let mut cent = fitted.centroids;
    let assign = if opts.balanced { balanced_assign(x, d, &cent, opts.k).0 } else { nearest(x, d, &cent, opts.k).0 };
    update_centroids(x, d, &assign, opts.k, &mut cent);
    Ok(KMeans { centroids: cent, assign, iters_run: fitted.iters_run + 1 })
}

/// Residual k-means: level l clusters what levels < l left unexplained. `fit_sample`:
/// see [`kmeans_level`] ([`DEFAULT_FIT_SAMPLE`] unless told otherwise; 0 = every row).
pub fn rq_kmeans(
    x: &[f32],
    d: usize,
    sizes: &[usize],
    iters: usize,
    balanced: bool,
    fit_sample: usize,
    seed: u64,
) -> Result<Residual> {
    let n = x.len() / d;
    let levels = sizes.len();
    let mut residual = x.to_vec();
    let mut codes = vec![0u32; n * levels];
    let mut codebooks = Vec::with_capacity(levels);
    let mut last_input = Vec::new();
    for (l, &k) in sizes.iter().enumerate() {
        let t = std::time::Instant::now();
        let opts = KMeansOptions { k, iters, balanced, tol: 1e-3, rel_tol: 1e-4 };
        let km = kmeans_level(&residual, d, opts, fit_sample, seed, l)?;
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
        tracing::info!("level {l}: k={k} {} iterations, {:.2}s", km.iters_run, t.elapsed().as_secs_f64());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn points(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = stream(seed, "points");
        (0..n * d).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
    }

    #[test]
    fn sampling_only_kicks_in_above_the_sample() {
        assert_eq!(fit_sample_size(1000, 8, 1000), None, "n <= sample: every row");
        assert_eq!(fit_sample_size(1001, 8, 1000), Some(1000));
        assert_eq!(fit_sample_size(1_000_000, 8192, DEFAULT_FIT_SAMPLE), Some(262_144));
        assert_eq!(fit_sample_size(5000, 100, 1000), Some(3200), "at least 32 per centroid");
        assert_eq!(fit_sample_size(3000, 100, 1000), None);
        assert_eq!(fit_sample_size(1_000_000, 8, 0), None, "0 = never sample");
    }

    /// The sampled fit assigns every row, exactly balanced, the same way for the same
    /// seed, and its centroids are the means of their members.
    #[test]
    fn sampled_fit_is_balanced_and_deterministic() {
        let (n, d, k) = (3000, 6, 10);
        let x = points(n, d, 3);
        let opts = KMeansOptions { k, iters: 8, balanced: true, tol: 1e-3, rel_tol: 1e-4 };
        let a = kmeans_level(&x, d, opts, 400, 42, 0).unwrap();
        let b = kmeans_level(&x, d, opts, 400, 42, 0).unwrap();
        assert_eq!(a.assign, b.assign);
        assert_eq!(a.centroids, b.centroids);
        let mut counts = vec![0usize; k];
        a.assign.iter().for_each(|&j| counts[j as usize] += 1);
        assert!(counts.iter().all(|&c| c == n / k), "sizes {counts:?}");
        let j = a.assign[0] as usize;
        let members: Vec<usize> = (0..n).filter(|&i| a.assign[i] as usize == j).collect();
        let mean0 = members.iter().map(|&i| x[i * d] as f64).sum::<f64>() / members.len() as f64;
        assert!((a.centroids[j * d] as f64 - mean0).abs() < 1e-5);
        let other = kmeans_level(&x, d, opts, 400, 43, 0).unwrap();
        assert_ne!(a.assign, other.assign, "another seed draws another sample");
    }

    /// Residual levels with sampling give every item a code per level, close in quality
    /// to the full fit (relative reconstruction error within 25% of it).
    #[test]
    fn sampled_residual_fit_reconstructs_like_the_full_fit() {
        let (n, d) = (4000, 8);
        let x = points(n, d, 5);
        let err = |r: &Residual| {
            let rec = reconstruct(&r.codes, 2, &r.codebooks, d);
            x.iter().zip(&rec).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>()
        };
        let full = rq_kmeans(&x, d, &[16, 16], 10, true, 0, 1).unwrap();
        let sampled = rq_kmeans(&x, d, &[16, 16], 10, true, 600, 1).unwrap();
        assert_eq!(sampled.codes.len(), n * 2);
        let (ef, es) = (err(&full), err(&sampled));
        assert!(es < 1.25 * ef, "sampled error {es:.1} vs full {ef:.1}");
    }
}
