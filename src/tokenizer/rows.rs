//! Host rows <-> tensors for the tokenizer's trained parts (RQ-VAE, alignment).

use candle_core::{Device, Tensor};

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
