//! Fusion of modalities: rows matched by item id, per-modality L2 normalisation,
//! optional PCA to a target width, per-modality weights, concatenation.

use super::kernel::{block_dot, dot};
use crate::data::Embeddings;
use crate::util::rng::stream;
use anyhow::{bail, Result};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use std::collections::HashMap;

/// What fusion did to one modality (recorded in the manifest; PCA kept for encoding).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Part {
    pub name: String,
    pub d_in: usize,
    pub d_out: usize,
    pub weight: f32,
    /// Fraction of variance the PCA kept (None without PCA).
    pub pca_explained: Option<f64>,
    #[serde(skip)]
    pub pca: Option<Pca>,
}

/// A PCA projection: `(x - mean) @ components^T`, components [w, d] row-major.
#[derive(Clone, Debug)]
pub struct Pca {
    pub mean: Vec<f32>,
    pub components: Vec<f32>,
    pub width: usize,
}

/// The fused matrix [n, d] in the row order of the first modality.
#[derive(Clone, Debug)]
pub struct Fused {
    pub item_ids: Vec<String>,
    pub data: Vec<f32>,
    pub n: usize,
    pub d: usize,
    pub parts: Vec<Part>,
}

/// Scales every row to unit L2 norm (zero rows stay zero).
pub fn l2_normalize(x: &mut [f32], d: usize) {
    x.par_chunks_mut(d).for_each(|r| {
        let n = dot(r, r).sqrt();
        if n > 0.0 {
            r.iter_mut().for_each(|v| *v /= n);
        }
    });
}

/// Fuses `inputs` (name, embeddings). `pca(name)` gives the target width of a
/// modality, `weight(name)` its weight.
pub fn fuse(
    inputs: &[(String, Embeddings)],
    pca: &dyn Fn(&str) -> Option<usize>,
    weight: &dyn Fn(&str) -> f32,
    seed: u64,
) -> Result<Fused> {
    let Some((first_name, first)) = inputs.first() else {
        bail!("no embeddings given; pass --embeddings NAME=PATH at least once");
    };
    let mut seen = std::collections::HashSet::new();
    for (name, _) in inputs {
        if !seen.insert(name.as_str()) {
            bail!("modality `{name}` given twice; give each --embeddings a distinct NAME");
        }
    }
    let ids = &first.item_ids;
    let mut row_of: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
    for (r, id) in ids.iter().enumerate() {
        if row_of.insert(id.as_str(), r).is_some() {
            bail!("modality `{first_name}`: item id {id} appears twice (rows {} and {r})", row_of[id.as_str()]);
        }
    }
    let n = first.n;
    let mut parts = Vec::new();
    let mut blocks: Vec<(Vec<f32>, usize)> = Vec::new();
    for (name, e) in inputs {
        if e.n != n {
            bail!(
                "modality `{name}` has {} rows but `{first_name}` has {n}; every modality must cover the same items",
                e.n
            );
        }
        if e.data.len() != e.n * e.d || e.item_ids.len() != e.n {
            bail!(
                "modality `{name}`: data of {} values / {} ids does not match shape [{}, {}]",
                e.data.len(),
                e.item_ids.len(),
                e.n,
                e.d
            );
        }
        if let Some(bad) = e.data.iter().position(|v| !v.is_finite()) {
            bail!("modality `{name}`: row {} (item {}) has a NaN or infinite value", bad / e.d, e.item_ids[bad / e.d]);
        }
        // Reorder to the first modality's row order, matching by item id.
        let mut x = vec![0f32; n * e.d];
        let mut filled = vec![false; n];
        for (r, id) in e.item_ids.iter().enumerate() {
            let Some(&t) = row_of.get(id.as_str()) else {
                bail!("modality `{name}` has item {id} which `{first_name}` lacks; every modality must cover the same items");
            };
            if filled[t] {
                bail!("modality `{name}`: item id {id} appears twice");
            }
            filled[t] = true;
            x[t * e.d..(t + 1) * e.d].copy_from_slice(e.row(r));
        }
        l2_normalize(&mut x, e.d);
        let mut d_out = e.d;
        let mut pca_fit = None;
        let mut explained = None;
        if let Some(w) = pca(name) {
            if w == 0 || w > e.d || w > n {
                bail!("--pca {name}={w}: width must be in 1..={} (the modality's width and item count)", e.d.min(n));
            }
            let (p, ex) = fit_pca(&x, n, e.d, w, seed, name);
            x = p.apply(&x, e.d);
            l2_normalize(&mut x, w);
            d_out = w;
            explained = Some(ex);
            pca_fit = Some(p);
        }
        let wgt = weight(name);
        if !(wgt.is_finite() && wgt > 0.0) {
            bail!("--weight {name}={wgt}: weights must be positive and finite");
        }
        x.iter_mut().for_each(|v| *v *= wgt);
        parts.push(Part { name: name.clone(), d_in: e.d, d_out, weight: wgt, pca_explained: explained, pca: pca_fit });
        blocks.push((x, d_out));
    }
    let d: usize = blocks.iter().map(|b| b.1).sum();
    let mut data = vec![0f32; n * d];
    data.par_chunks_mut(d).enumerate().for_each(|(i, row)| {
        let mut o = 0;
        for (x, w) in &blocks {
            row[o..o + w].copy_from_slice(&x[i * w..(i + 1) * w]);
            o += w;
        }
    });
    Ok(Fused { item_ids: ids.clone(), data, n, d, parts })
}

impl Pca {
    /// Projects rows of `x` ([n, d]) to [n, width].
    pub fn apply(&self, x: &[f32], d: usize) -> Vec<f32> {
        let n = x.len() / d;
        let mut centred = x.to_vec();
        centred.par_chunks_mut(d).for_each(|r| r.iter_mut().zip(&self.mean).for_each(|(v, m)| *v -= m));
        let mut out = vec![0f32; n * self.width];
        out.par_chunks_mut(256 * self.width).enumerate().for_each(|(b, o)| {
            let m = o.len() / self.width;
            block_dot(&centred[b * 256 * d..(b * 256 + m) * d], m, d, &self.components, self.width, o);
        });
        out
    }
}

/// PCA by subspace iteration on the covariance matrix (no LAPACK needed): returns the
/// projection and the fraction of total variance it keeps.
pub fn fit_pca(x: &[f32], n: usize, d: usize, w: usize, seed: u64, name: &str) -> (Pca, f64) {
    let mut mean = vec![0f64; d];
    for r in x.chunks_exact(d) {
        mean.iter_mut().zip(r).for_each(|(m, v)| *m += *v as f64);
    }
    let mean: Vec<f32> = mean.iter().map(|m| (m / n as f64) as f32).collect();
    let mut xc = x.to_vec();
    xc.par_chunks_mut(d).for_each(|r| r.iter_mut().zip(&mean).for_each(|(v, m)| *v -= m));
    // Covariance [d, d] = Xc^T Xc / n, via the transposed matrix and one gemm.
    let mut xt = vec![0f32; d * n];
    for i in 0..n {
        for j in 0..d {
            xt[j * n + i] = xc[i * d + j];
        }
    }
    let mut cov = vec![0f32; d * d];
    block_dot(&xt, d, n, &xt, d, &mut cov);
    cov.iter_mut().for_each(|v| *v /= n as f32);
    let trace: f64 = (0..d).map(|j| cov[j * d + j] as f64).sum();
    let p = (w + 8).min(d);
    let mut rng = stream(seed, &format!("tokenizer.pca.{name}"));
    // q: p basis vectors of length d, row-major [p, d].
    let mut q: Vec<f32> = (0..p * d).map(|_| StandardNormal.sample(&mut rng)).collect();
    orthonormalize(&mut q, p, d);
    let mut z = vec![0f32; p * d];
    for _ in 0..60 {
        block_dot(&q, p, d, &cov, d, &mut z); // z = q cov (cov symmetric)
        std::mem::swap(&mut q, &mut z);
        orthonormalize(&mut q, p, d);
    }
    block_dot(&q, p, d, &cov, d, &mut z);
    let mut eig: Vec<(f32, usize)> = (0..p).map(|r| (dot(&q[r * d..(r + 1) * d], &z[r * d..(r + 1) * d]), r)).collect();
    eig.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut components = Vec::with_capacity(w * d);
    let mut kept = 0f64;
    for &(lam, r) in eig.iter().take(w) {
        kept += lam as f64;
        let mut v = q[r * d..(r + 1) * d].to_vec();
        // Deterministic sign: the largest-magnitude entry is positive.
        let big = v.iter().copied().fold(0f32, |a, b| if b.abs() > a.abs() { b } else { a });
        if big < 0.0 {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        components.extend(v);
    }
    let explained = if trace > 0.0 { kept / trace } else { 1.0 };
    (Pca { mean, components, width: w }, explained)
}

/// Modified Gram-Schmidt on the rows of `q` ([p, d]); a degenerate row is replaced by
/// a unit vector.
fn orthonormalize(q: &mut [f32], p: usize, d: usize) {
    for r in 0..p {
        for s in 0..r {
            let (a, b) = q.split_at_mut(r * d);
            let prev = &a[s * d..(s + 1) * d];
            let cur = &mut b[..d];
            let t = dot(prev, cur);
            cur.iter_mut().zip(prev).for_each(|(c, v)| *c -= t * v);
        }
        let row = &mut q[r * d..(r + 1) * d];
        let nrm = dot(row, row).sqrt();
        if nrm > 1e-12 {
            row.iter_mut().for_each(|v| *v /= nrm);
        } else {
            row.fill(0.0);
            row[r % d] = 1.0;
        }
    }
}
