//! RMSNorm on the fused kernel ([`super::kernels::rms_norm`]).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// RMSNorm over the last dim with a learned scale `weight` (differentiable, unlike
/// candle_nn's fused `RmsNorm::forward`).
#[derive(Clone, Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(d: usize, vb: VarBuilder) -> Result<RmsNorm> {
        Ok(RmsNorm { weight: vb.get_with_hints(d, "weight", Init::Const(1.0))?, eps: 1e-6 })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        super::kernels::rms_norm(x, &self.weight, self.eps)
    }
}
