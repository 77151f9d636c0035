//! RQ-VAE: encoder MLP -> residual VQ (L levels, k-means initialised codebooks,
//! straight-through gradients, commitment loss, dead codes re-seeded each epoch)
//! -> decoder MLP, trained in candle. Modest by design: a tokenizer, not a model.

use super::kernel::nearest;
use super::kmeans::{rq_kmeans, Residual, DEFAULT_FIT_SAMPLE};
use super::rows::gather_rows;
use crate::nn::optim::AdamW;
use crate::nn::params::sorted_vars;
use crate::nn::Linear;
use crate::util::rng::stream;
use anyhow::{bail, Result};
use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RqVaeOptions {
    pub hidden: usize,
    pub latent: usize,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    /// Weight of the commitment loss.
    pub beta: f64,
}

impl Default for RqVaeOptions {
    fn default() -> Self {
        RqVaeOptions { hidden: 256, latent: 32, epochs: 20, batch: 256, lr: 1e-3, beta: 0.25 }
    }
}

/// A trained RQ-VAE's outputs.
pub struct VaeFit {
    /// Codes, latent codebooks and the last level's inputs (latent space).
    pub residual: Residual,
    /// Decoder output for each item's quantized path [n, d].
    pub recon: Vec<f32>,
    /// Encoder/decoder weights (name, shape, data) for the artifact; weights [out, in].
    pub weights: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub loss_first: f64,
    pub loss_last: f64,
    pub reseeded: usize,
}

/// The encoder and decoder MLPs (`rqvae.encoder.{0,1}`, `rqvae.decoder.{0,1}`).
struct Net {
    enc1: Linear,
    enc2: Linear,
    dec1: Linear,
    dec2: Linear,
}

impl Net {
    /// Layers of widths d -> hidden -> latent -> hidden -> d with parameters from `vb`.
    fn new(d: usize, hidden: usize, latent: usize, vb: VarBuilder) -> candle_core::Result<Net> {
        Ok(Net {
            enc1: Linear::with_bias(d, hidden, vb.pp("rqvae.encoder.0"))?,
            enc2: Linear::with_bias(hidden, latent, vb.pp("rqvae.encoder.1"))?,
            dec1: Linear::with_bias(latent, hidden, vb.pp("rqvae.decoder.0"))?,
            dec2: Linear::with_bias(hidden, d, vb.pp("rqvae.decoder.1"))?,
        })
    }

    fn encode(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.enc2.forward(&self.enc1.forward(x)?.relu()?)
    }
    fn decode(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        self.dec2.forward(&self.dec1.forward(z)?.relu()?)
    }
    /// Applies `f` in chunks of rows and collects host rows.
    fn host(&self, x: &[f32], d: usize, f: impl Fn(&Net, &Tensor) -> candle_core::Result<Tensor>) -> Result<Vec<f32>> {
        let n = x.len() / d;
        let mut out = Vec::new();
        for s in (0..n).step_by(4096) {
            let idx: Vec<usize> = (s..(s + 4096).min(n)).collect();
            out.extend(f(self, &gather_rows(x, d, &idx)?)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

/// Residual quantization of latent rows with fixed codebooks (host kernel).
fn quantize(z: &[f32], e: usize, cbs: &[Vec<f32>], sizes: &[usize]) -> (Vec<u32>, Vec<Vec<f32>>) {
    let n = z.len() / e;
    let levels = sizes.len();
    let mut r = z.to_vec();
    let mut codes = vec![0u32; n * levels];
    let mut inputs = Vec::with_capacity(levels);
    for (l, cb) in cbs.iter().enumerate() {
        let (idx, _) = nearest(&r, e, cb, sizes[l]);
        inputs.push(r.clone());
        for i in 0..n {
            codes[i * levels + l] = idx[i];
            let c = &cb[idx[i] as usize * e..(idx[i] as usize + 1) * e];
            r[i * e..(i + 1) * e].iter_mut().zip(c).for_each(|(v, w)| *v -= w);
        }
    }
    (codes, inputs)
}

/// Trains the RQ-VAE on `x` ([n, d]) with codebook sizes `sizes`.
pub fn fit(x: &[f32], d: usize, sizes: &[usize], opts: &RqVaeOptions, seed: u64) -> Result<VaeFit> {
    let n = x.len() / d;
    let levels = sizes.len();
    if opts.latent == 0 || opts.hidden == 0 || opts.batch == 0 {
        bail!("rq-vae: hidden, latent and batch must be at least 1");
    }
    if let Some(&k) = sizes.iter().find(|&&k| k > n) {
        bail!("codebook size {k} exceeds the number of items {n}; use a smaller --codebook-size");
    }
    let e = opts.latent;
    let varmap = VarMap::new();
    let net = Net::new(d, opts.hidden, e, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
    crate::nn::init::seeded(&varmap, seed, "tokenizer.rqvae.init")?;
    // k-means initialisation of the codebooks on the initial encoder outputs.
    let z0 = net.host(x, d, |m, t| m.encode(t))?;
    let init = rq_kmeans(&z0, e, sizes, 10, false, DEFAULT_FIT_SAMPLE, seed ^ 0x5eed)?;
    let cbs: Vec<Var> = init
        .codebooks
        .iter()
        .zip(sizes)
        .map(|(c, &k)| Var::from_tensor(&Tensor::from_vec(c.clone(), (k, e), &Device::Cpu)?))
        .collect::<candle_core::Result<_>>()?;
    let mut vars = sorted_vars(&varmap);
    vars.extend(cbs.iter().enumerate().map(|(l, c)| (format!("rqvae.codebook.{l}"), c.clone())));
    let mut opt = AdamW::with_default_betas(vars, 0.0)?;
    let mut order: Vec<usize> = (0..n).collect();
    let mut srng = stream(seed, "tokenizer.rqvae.train");
    let (mut first, mut last, mut reseeded) = (f64::NAN, f64::NAN, 0usize);
    let pb = crate::util::progress::bar(opts.epochs as u64, "rq-vae");
    for _epoch in 0..opts.epochs {
        order.shuffle(&mut srng);
        let mut usage: Vec<Vec<usize>> = sizes.iter().map(|&k| vec![0; k]).collect();
        let mut sum = 0f64;
        let mut nb = 0;
        for chunk in order.chunks(opts.batch) {
            let xb = gather_rows(x, d, chunk)?;
            let z = net.encode(&xb)?;
            let mut r = z.clone();
            let mut zq = z.zeros_like()?;
            let mut cb_loss = Tensor::new(0f32, &Device::Cpu)?;
            let mut commit = Tensor::new(0f32, &Device::Cpu)?;
            for (l, cb) in cbs.iter().enumerate() {
                let c = cb.as_tensor();
                let rd = r.detach();
                let dist = rd
                    .sqr()?
                    .sum_keepdim(D::Minus1)?
                    .broadcast_add(&c.sqr()?.sum_keepdim(D::Minus1)?.t()?)?
                    .sub(&(rd.matmul(&c.t()?)? * 2.0)?)?;
                let idx = dist.argmin(D::Minus1)?;
                for &j in &idx.to_vec1::<u32>()? {
                    usage[l][j as usize] += 1;
                }
                let q = c.index_select(&idx, 0)?;
                cb_loss = (cb_loss + candle_nn::loss::mse(&q, &rd)?)?;
                commit = (commit + candle_nn::loss::mse(&r, &q.detach())?)?;
                zq = (zq + &q)?;
                r = (r - q.detach())?;
            }
            // Straight-through: the decoder sees zq, gradients flow to z.
            let zst = (&z + (zq - &z)?.detach())?;
            let xh = net.decode(&zst)?;
            let loss = ((candle_nn::loss::mse(&xh, &xb)? + cb_loss)? + (commit * opts.beta)?)?;
            opt.backward_step(&loss, opts.lr, 0.0)?;
            let v = loss.to_scalar::<f32>()? as f64;
            if first.is_nan() {
                first = v;
            }
            sum += v;
            nb += 1;
        }
        last = sum / nb.max(1) as f64;
        // Dead-code re-seeding: unused codewords jump to random current residuals.
        if usage.iter().any(|u| u.contains(&0)) {
            let z = net.host(x, d, |m, t| m.encode(t))?;
            let host: Vec<Vec<f32>> = cbs
                .iter()
                .map(|c| c.as_tensor().flatten_all()?.to_vec1::<f32>())
                .collect::<candle_core::Result<_>>()?;
            let (_, inputs) = quantize(&z, e, &host, sizes);
            for (l, u) in usage.iter().enumerate() {
                let dead: Vec<usize> = (0..sizes[l]).filter(|&j| u[j] == 0).collect();
                if dead.is_empty() {
                    continue;
                }
                let mut cb = host[l].clone();
                for &j in &dead {
                    let i = srng.gen_range(0..n);
                    cb[j * e..(j + 1) * e].copy_from_slice(&inputs[l][i * e..(i + 1) * e]);
                }
                reseeded += dead.len();
                cbs[l].set(&Tensor::from_vec(cb, (sizes[l], e), &Device::Cpu)?)?;
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    tracing::info!("rq-vae: loss {first:.5} -> {last:.5}, {reseeded} dead codes re-seeded");
    let z = net.host(x, d, |m, t| m.encode(t))?;
    let host: Vec<Vec<f32>> =
        cbs.iter().map(|c| c.as_tensor().flatten_all()?.to_vec1::<f32>()).collect::<candle_core::Result<_>>()?;
    let (codes, mut inputs) = quantize(&z, e, &host, sizes);
    let last_input = inputs.pop().unwrap_or_default();
    let residual = Residual { codes, codebooks: host, last_input };
    let recon = decode_codes(&net, &residual.codes, levels, &residual.codebooks, e)?;
    let mut weights = Vec::new();
    for (name, v) in sorted_vars(&varmap) {
        let t = v.as_tensor();
        weights.push((name, t.dims().to_vec(), t.flatten_all()?.to_vec1::<f32>()?));
    }
    Ok(VaeFit { residual, recon, weights, loss_first: first, loss_last: last, reseeded })
}

/// Decoder output for paths `codes` (levels columns; extra columns ignored).
fn decode_codes(net: &Net, codes: &[u32], levels: usize, cbs: &[Vec<f32>], e: usize) -> Result<Vec<f32>> {
    let zq = super::kmeans::reconstruct(codes, levels, cbs, e);
    net.host(&zq, e, |m, t| m.decode(t))
}

/// The RQ-VAE's reconstruction for final (possibly reassigned) quantizer codes.
pub struct Decoder {
    net: Net,
    e: usize,
}

impl VaeFit {
    /// Rebuilds a decoder from the stored weights (for re-scoring reassigned codes).
    pub fn decoder(&self) -> Result<Decoder> {
        let mut tensors = std::collections::HashMap::new();
        for (name, shape, data) in &self.weights {
            tensors.insert(name.clone(), Tensor::from_vec(data.clone(), shape.as_slice(), &Device::Cpu)?);
        }
        let dims = |name: &str| -> Result<Vec<usize>> {
            Ok(tensors.get(name).ok_or_else(|| anyhow::anyhow!("rq-vae weights: missing {name}"))?.dims().to_vec())
        };
        // Weights are [out, in]: encoder.0 maps d -> hidden, encoder.1 hidden -> latent.
        let (enc1, enc2) = (dims("rqvae.encoder.0.weight")?, dims("rqvae.encoder.1.weight")?);
        let (d, hidden, e) = (enc1[1], enc1[0], enc2[0]);
        let net = Net::new(d, hidden, e, VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu))?;
        Ok(Decoder { net, e })
    }
}

impl Decoder {
    pub fn decode(&self, codes: &[u32], levels: usize, cbs: &[Vec<f32>]) -> Result<Vec<f32>> {
        decode_codes(&self.net, codes, levels, cbs, self.e)
    }
}
