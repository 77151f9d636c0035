//! The one linear layer: `y = x W^T (+ b)` over the last dim, computed on a 2-D view.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// `y = x W^T + b` with W [out, in] and an optional bias b [out]. The matmul runs on a
/// 2-D view of `x` (no broadcast matmul), so the weight gradient never reduces over a
/// non-last dim, and the bias enters as `ones [n, 1] @ b`: its gradient is a matmul
/// too, not candle's slow reduction over dim 0 (see the candle CPU notes).
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// A bias-free layer with its weight `weight` [out, in] taken from `vb`.
    pub fn new(inp: usize, out: usize, vb: VarBuilder) -> Result<Linear> {
        // The hint only matters for a VarBuilder not re-initialised by [`super::init`].
        let std = (1.0 / inp as f64).sqrt();
        let weight = vb.get_with_hints((out, inp), "weight", Init::Randn { mean: 0.0, stdev: std })?;
        Ok(Linear { weight, bias: None })
    }

    /// A layer with weight `weight` [out, in] and bias `bias` [out] taken from `vb`.
    pub fn with_bias(inp: usize, out: usize, vb: VarBuilder) -> Result<Linear> {
        let bias = vb.get_with_hints(out, "bias", Init::Const(0.0))?;
        Ok(Linear { bias: Some(bias), ..Linear::new(inp, out, vb)? })
    }

    /// W [out, in].
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let inp = dims[dims.len() - 1];
        let n = x.elem_count() / inp;
        let mut y = x.reshape((n, inp))?.matmul(&self.weight.t()?)?;
        if let Some(b) = &self.bias {
            let ones = Tensor::ones((n, 1), DType::F32, x.device())?;
            y = (y + ones.matmul(&b.reshape((1, ()))?)?)?;
        }
        let mut out = dims;
        let last = out.len() - 1;
        out[last] = self.weight.dim(0)?;
        y.reshape(out)
    }
}
