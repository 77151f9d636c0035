//! Tiny candle building blocks for the tokenizer's trained parts, initialised from
//! the run's seeded streams (candle's own random init is not seedable on CPU).

use crate::util::rng::Rng;
use candle_core::{Device, Tensor, Var};
use rand_distr::{Distribution, Normal};

/// A linear layer `x W + b` with W [d_in, d_out], b [1, d_out].
pub struct Linear {
    pub w: Var,
    pub b: Var,
}

impl Linear {
    /// He-style init (std = sqrt(2 / d_in)), zero bias.
    pub fn new(d_in: usize, d_out: usize, rng: &mut Rng) -> candle_core::Result<Linear> {
        let normal = Normal::new(0.0f32, (2.0 / d_in as f32).sqrt()).expect("valid std");
        let w: Vec<f32> = (0..d_in * d_out).map(|_| normal.sample(rng)).collect();
        Ok(Linear {
            w: Var::from_tensor(&Tensor::from_vec(w, (d_in, d_out), &Device::Cpu)?)?,
            b: Var::from_tensor(&Tensor::zeros((1, d_out), candle_core::DType::F32, &Device::Cpu)?)?,
        })
    }

    /// Identity-initialised square layer (a projection that starts as a no-op).
    pub fn identity(d: usize) -> candle_core::Result<Linear> {
        Ok(Linear {
            w: Var::from_tensor(&Tensor::eye(d, candle_core::DType::F32, &Device::Cpu)?)?,
            b: Var::from_tensor(&Tensor::zeros((1, d), candle_core::DType::F32, &Device::Cpu)?)?,
        })
    }

    /// The bias enters as `ones [B, 1] @ b [1, d_out]`: its gradient is then a matmul,
    /// not candle's slow reduction over dim 0 (see the candle CPU notes).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let ones = Tensor::ones((x.dim(0)?, 1), candle_core::DType::F32, x.device())?;
        x.matmul(self.w.as_tensor())? + ones.matmul(self.b.as_tensor())?
    }

    pub fn vars(&self) -> Vec<Var> {
        vec![self.w.clone(), self.b.clone()]
    }
}

/// Rows scaled to unit L2 norm (differentiable).
pub fn l2n(x: &Tensor) -> candle_core::Result<Tensor> {
    let n = (x.sqr()?.sum_keepdim(candle_core::D::Minus1)? + 1e-12)?.sqrt()?;
    x.broadcast_div(&n)
}

/// Gathers rows `idx` of a host matrix [n, d] into a tensor [idx.len(), d].
pub fn gather_rows(x: &[f32], d: usize, idx: &[usize]) -> candle_core::Result<Tensor> {
    let mut v = Vec::with_capacity(idx.len() * d);
    for &i in idx {
        v.extend_from_slice(&x[i * d..(i + 1) * d]);
    }
    Tensor::from_vec(v, (idx.len(), d), &Device::Cpu)
}
