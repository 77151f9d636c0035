//! Behavioural alignment: a linear projection of the fused vectors trained with an
//! in-batch-negatives InfoNCE loss over item pairs that co-occur (within a window)
//! in users' TRAINING histories, so codes reflect content and collaborative signal.

use super::rows::{gather_rows, l2n};
use crate::data::Dataset;
use crate::nn::optim::AdamW;
use crate::nn::params::sorted_vars;
use crate::nn::Linear;
use crate::util::rng::stream;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlignOptions {
    /// Items at most this many positions apart in a training history form a pair.
    pub window: usize,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub temperature: f64,
    /// At most this many pairs per epoch (a seeded sample), to bound the cost.
    pub max_pairs: usize,
}

impl Default for AlignOptions {
    fn default() -> Self {
        AlignOptions { window: 3, epochs: 2, batch: 512, lr: 1e-3, temperature: 0.1, max_pairs: 200_000 }
    }
}

/// What the alignment did.
#[derive(Clone, Debug, Serialize)]
pub struct AlignReport {
    pub pairs: usize,
    pub dataset_items_without_embedding: usize,
    pub steps: usize,
    pub loss_first: f64,
    pub loss_last: f64,
}

/// Co-occurrence pairs (embedding rows) from training histories only.
pub fn pairs(ds: &Dataset, item_ids: &[String], window: usize) -> (Vec<(usize, usize)>, usize) {
    let row_of: HashMap<&str, usize> = item_ids.iter().enumerate().map(|(r, id)| (id.as_str(), r)).collect();
    let map: Vec<Option<usize>> = ds.item_ids.iter().map(|id| row_of.get(id.as_str()).copied()).collect();
    let missing = map.iter().filter(|m| m.is_none()).count();
    let mut out = Vec::new();
    for u in 0..ds.n_users() {
        let h = ds.history(u);
        let tr = ds.split(u).train;
        let h = &h[tr];
        for i in 0..h.len() {
            for j in i + 1..h.len().min(i + 1 + window) {
                let (a, b) = (map.get(h[i] as usize).copied().flatten(), map.get(h[j] as usize).copied().flatten());
                if let (Some(a), Some(b)) = (a, b) {
                    if a != b {
                        out.push((a, b));
                    }
                }
            }
        }
    }
    (out, missing)
}

/// Trains the projection and returns the projected, L2-normalised vectors [n, d].
pub fn align(
    x: &[f32],
    n: usize,
    d: usize,
    item_ids: &[String],
    ds: &Dataset,
    opts: &AlignOptions,
    seed: u64,
) -> Result<(Vec<f32>, AlignReport)> {
    let (mut all, missing) = pairs(ds, item_ids, opts.window.max(1));
    if all.is_empty() {
        bail!(
            "--align-with: no co-occurring item pairs in the dataset's training histories match the embeddings' item ids \
             ({missing} of {} dataset items have no embedding); check that both use the same item ids",
            ds.n_items()
        );
    }
    if opts.batch < 2 {
        bail!("alignment batch must be at least 2");
    }
    let total_pairs = all.len();
    tracing::info!("alignment: {total_pairs} training co-occurrence pairs, {missing} dataset items without embedding");
    // A projection that starts as the identity (a no-op).
    let varmap = VarMap::new();
    let proj = Linear::with_bias(d, d, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
    let vars = sorted_vars(&varmap);
    for (_, v) in &vars {
        if v.rank() == 2 {
            v.set(&Tensor::eye(d, DType::F32, &Device::Cpu)?)?;
        }
    }
    let mut opt = AdamW::with_default_betas(vars, 0.0)?;
    let mut rng = stream(seed, "tokenizer.align");
    let (mut first, mut last, mut steps) = (f64::NAN, f64::NAN, 0);
    let inv_t = 1.0 / opts.temperature;
    for _ in 0..opts.epochs {
        all.shuffle(&mut rng);
        let take = all.len().min(opts.max_pairs);
        for chunk in all[..take].chunks(opts.batch) {
            if chunk.len() < 2 {
                continue;
            }
            let a: Vec<usize> = chunk.iter().map(|p| p.0).collect();
            let b: Vec<usize> = chunk.iter().map(|p| p.1).collect();
            let za = l2n(&proj.forward(&gather_rows(x, d, &a)?)?)?;
            let zb = l2n(&proj.forward(&gather_rows(x, d, &b)?)?)?;
            let logits = (za.matmul(&zb.t()?)? * inv_t)?;
            let tgt = Tensor::arange(0u32, chunk.len() as u32, &Device::Cpu)?;
            let loss = ((candle_nn::loss::cross_entropy(&logits, &tgt)?
                + candle_nn::loss::cross_entropy(&logits.t()?, &tgt)?)?
                * 0.5)?;
            opt.backward_step(&loss, opts.lr, 0.0)?;
            let v = loss.to_scalar::<f32>()? as f64;
            if steps == 0 {
                first = v;
            }
            last = v;
            steps += 1;
        }
    }
    tracing::info!("alignment: {steps} steps, InfoNCE loss {first:.4} -> {last:.4}");
    let mut out = Vec::with_capacity(n * d);
    for start in (0..n).step_by(4096) {
        let idx: Vec<usize> = (start..(start + 4096).min(n)).collect();
        let z = l2n(&proj.forward(&gather_rows(x, d, &idx)?)?)?;
        out.extend(z.flatten_all()?.to_vec1::<f32>().context("alignment output")?);
    }
    Ok((
        out,
        AlignReport {
            pairs: total_pairs,
            dataset_items_without_embedding: missing,
            steps,
            loss_first: first,
            loss_last: last,
        },
    ))
}
