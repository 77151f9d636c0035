//! The one optimizer (pretraining, reward model, alignment, the tokenizer's RQ-VAE and
//! projection): AdamW with per-parameter decay flags and saveable state, global-norm
//! gradient clipping, and a warmup + cosine learning-rate schedule. Unlike
//! candle_nn's AdamW it does not decay norms, biases or embeddings, and it updates
//! every parameter each step (a parameter without a gradient gets a zero one).

use anyhow::{Context, Result};
use candle_core::{DType, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

/// Linear warmup to `lr`, then cosine decay to `lr * min_ratio` at `total`.
pub fn lr_at(step: usize, total: usize, lr: f64, warmup: usize, min_ratio: f64) -> f64 {
    if warmup > 0 && step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let p = ((step - warmup.min(step)) as f64 / span).min(1.0);
    lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
}

/// Whether a parameter gets weight decay: matrices of linear layers only (not norms,
/// not embeddings, not biases or codebooks).
pub fn decays(name: &str) -> bool {
    name.ends_with(".weight") && !name.contains("norm") && !name.contains("emb")
}

pub struct AdamW {
    /// (name, var, decay), sorted by name.
    params: Vec<(String, Var, bool)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub t: usize,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    pub fn new(params: Vec<(String, Var)>, beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Result<AdamW> {
        let mut m = Vec::new();
        let mut v = Vec::new();
        for (_, p) in &params {
            m.push(p.as_tensor().zeros_like()?);
            v.push(p.as_tensor().zeros_like()?);
        }
        let params = params.into_iter().map(|(n, p)| {
            let d = decays(&n);
            (n, p, d)
        });
        Ok(AdamW { params: params.collect(), m, v, t: 0, beta1, beta2, eps, weight_decay })
    }

    /// candle_nn's (and PyTorch's) default moments: betas (0.9, 0.999), eps 1e-8.
    pub fn with_default_betas(params: Vec<(String, Var)>, weight_decay: f64) -> Result<AdamW> {
        AdamW::new(params, 0.9, 0.999, 1e-8, weight_decay)
    }

    /// Backpropagates `loss`, clips the gradients to global norm `clip` (0 = no
    /// clipping) and updates at `lr`; returns the gradient norm before clipping.
    pub fn backward_step(&mut self, loss: &Tensor, lr: f64, clip: f64) -> Result<f64> {
        let grads = loss.backward()?;
        let mut by_name = HashMap::new();
        for (name, var, _) in &self.params {
            if let Some(g) = grads.get(var.as_tensor()) {
                by_name.insert(name.clone(), g.clone());
            }
        }
        let norm = clip_global_norm(&mut by_name, clip)?;
        self.step(&by_name, lr)?;
        Ok(norm)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.0.as_str())
    }

    /// One update with gradients by parameter name (missing = zero).
    pub fn step(&mut self, grads: &HashMap<String, Tensor>, lr: f64) -> Result<()> {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        for (i, (name, p, decay)) in self.params.iter().enumerate() {
            let g = match grads.get(name) {
                Some(g) => g.clone(),
                None => p.as_tensor().zeros_like()?,
            };
            let wd = if *decay { self.weight_decay } else { 0.0 };
            let h = Hyper { beta1: self.beta1, beta2: self.beta2, eps: self.eps, bc1, bc2, lr, wd };
            let (m, v) = if p.device().is_cpu() && p.dtype() == DType::F32 {
                update_cpu(p, &g, &self.m[i], &self.v[i], &h)?
            } else {
                update_ops(p, &g, &self.m[i], &self.v[i], &h)?
            };
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Saves moments to `path` (safetensors; `m.NAME`, `v.NAME`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for (i, (name, _, _)) in self.params.iter().enumerate() {
            map.insert(format!("m.{name}"), self.m[i].clone());
            map.insert(format!("v.{name}"), self.v[i].clone());
        }
        candle_core::safetensors::save(&map, path).with_context(|| format!("writing {}", path.display()))
    }

    /// Restores moments saved by [`AdamW::save`] and the step count `t`.
    pub fn load(&mut self, path: &Path, t: usize) -> Result<()> {
        let map = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
            .with_context(|| format!("reading {}", path.display()))?;
        for (i, (name, p, _)) in self.params.iter().enumerate() {
            for (key, slot) in [(format!("m.{name}"), &mut self.m[i]), (format!("v.{name}"), &mut self.v[i])] {
                let t = map.get(&key).with_context(|| format!("{}: missing {key}", path.display()))?;
                anyhow::ensure!(
                    t.dims() == p.dims(),
                    "{}: {key} has shape {:?}, expected {:?}",
                    path.display(),
                    t.dims(),
                    p.dims()
                );
                *slot = t.clone();
            }
        }
        self.t = t;
        Ok(())
    }
}

/// One parameter's AdamW constants.
struct Hyper {
    beta1: f64,
    beta2: f64,
    eps: f64,
    bc1: f64,
    bc2: f64,
    lr: f64,
    /// Weight decay of this parameter (0 when it does not decay).
    wd: f64,
}

/// AdamW on one CPU f32 parameter in one pass (the tensor-op version makes ~12 passes
/// and as many allocations per parameter); returns the new moments.
fn update_cpu(p: &Var, g: &Tensor, m: &Tensor, v: &Tensor, h: &Hyper) -> Result<(Tensor, Tensor)> {
    let read = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
    let (mut w, g, mut m, mut v) = (read(p.as_tensor())?, read(g)?, read(m)?, read(v)?);
    anyhow::ensure!(g.len() == w.len(), "gradient of {:?} has {} values, expected {}", p.dims(), g.len(), w.len());
    let (b1, b2, eps) = (h.beta1 as f32, h.beta2 as f32, h.eps as f32);
    let (ibc1, ibc2, lr, shrink) =
        ((1.0 / h.bc1) as f32, (1.0 / h.bc2) as f32, h.lr as f32, (1.0 - h.lr * h.wd) as f32);
    for j in 0..w.len() {
        let gj = g[j];
        m[j] = m[j] * b1 + gj * (1.0 - b1);
        v[j] = v[j] * b2 + gj * gj * (1.0 - b2);
        let upd = (m[j] * ibc1) / ((v[j] * ibc2).sqrt() + eps);
        w[j] = w[j] * shrink - upd * lr;
    }
    let (shape, dev) = (p.shape().clone(), p.device().clone());
    p.set(&Tensor::from_vec(w, shape.clone(), &dev)?)?;
    Ok((Tensor::from_vec(m, shape.clone(), &dev)?, Tensor::from_vec(v, shape, &dev)?))
}

/// The same update from tensor ops (other devices and dtypes).
fn update_ops(p: &Var, g: &Tensor, m: &Tensor, v: &Tensor, h: &Hyper) -> Result<(Tensor, Tensor)> {
    let m = ((m * h.beta1)? + (g * (1.0 - h.beta1))?)?;
    let v = ((v * h.beta2)? + (g.sqr()? * (1.0 - h.beta2))?)?;
    let upd = ((&m * (1.0 / h.bc1))? / ((&v * (1.0 / h.bc2))?.sqrt()? + h.eps)?)?;
    let mut w = p.as_tensor().clone();
    if h.wd > 0.0 {
        w = (&w * (1.0 - h.lr * h.wd))?;
    }
    p.set(&(w - (upd * h.lr)?)?)?;
    Ok((m, v))
}

/// Scales `grads` in place so their global L2 norm is at most `max_norm`; returns
/// the norm before clipping.
pub fn clip_global_norm(grads: &mut HashMap<String, Tensor>, max_norm: f64) -> Result<f64> {
    let mut keys: Vec<&String> = grads.keys().collect();
    keys.sort();
    let mut sq = 0.0f64;
    for k in keys {
        sq += grads[k].sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let s = max_norm / (norm + 1e-6);
        for g in grads.values_mut() {
            *g = (&*g * s)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn schedule_warms_up_then_decays() {
        assert!(lr_at(0, 100, 1.0, 10, 0.1) < lr_at(5, 100, 1.0, 10, 0.1));
        assert!((lr_at(9, 100, 1.0, 10, 0.1) - 1.0).abs() < 1e-9);
        assert!((lr_at(100, 100, 1.0, 10, 0.1) - 0.1).abs() < 1e-9);
        assert!(lr_at(50, 100, 1.0, 10, 0.1) < 1.0);
    }
    #[test]
    fn one_pass_update_equals_the_tensor_op_update() {
        let dev = candle_core::Device::Cpu;
        let mk = |s: f32| {
            Var::from_tensor(&(Tensor::arange(0f32, 12.0, &dev).unwrap().reshape((3, 4)).unwrap() * s as f64).unwrap())
                .unwrap()
        };
        let g = (Tensor::arange(0f32, 12.0, &dev).unwrap().reshape((3, 4)).unwrap().sin().unwrap() * 0.3).unwrap();
        let (m0, v0) = ((g.clone() * 0.5).unwrap(), (g.sqr().unwrap() * 0.2).unwrap());
        for wd in [0.0, 0.1] {
            let h = Hyper { beta1: 0.9, beta2: 0.98, eps: 1e-8, bc1: 0.19, bc2: 0.0396, lr: 1e-2, wd };
            let (p1, p2) = (mk(0.1), mk(0.1));
            let (m1, v1) = update_cpu(&p1, &g, &m0, &v0, &h).unwrap();
            let (m2, v2) = update_ops(&p2, &g, &m0, &v0, &h).unwrap();
            for (a, b) in [(p1.as_tensor(), p2.as_tensor()), (&m1, &m2), (&v1, &v2)] {
                let d =
                    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
                assert!(d < 1e-6, "one-pass AdamW differs by {d}");
            }
            assert!(
                (p1.as_tensor() - mk(0.1).as_tensor())
                    .unwrap()
                    .abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    > 0.0
            );
        }
    }
    #[test]
    fn decay_flags() {
        assert!(decays("dec.layer0.moe.expert1.up.weight"));
        assert!(!decays("dec.layer0.norm1.weight"));
        assert!(!decays("enc.tok_emb"));
        assert!(!decays("item_emb.weight"));
        assert!(!decays("tower.bias"));
    }
}
