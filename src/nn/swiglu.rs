//! The SwiGLU feed-forward block.

use super::Linear;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// `down(silu(gate(x)) * up(x))`, the product on the fused kernel ([`super::kernels::swiglu`]).
#[derive(Clone, Debug)]
pub struct SwiGlu {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl SwiGlu {
    pub fn new(d: usize, hidden: usize, vb: VarBuilder) -> Result<SwiGlu> {
        Ok(SwiGlu {
            gate: Linear::new(d, hidden, vb.pp("gate"))?,
            up: Linear::new(d, hidden, vb.pp("up"))?,
            down: Linear::new(hidden, d, vb.pp("down"))?,
        })
    }

    /// Multiply-adds per token (forward), for throughput reports.
    pub fn flops_per_token(d: usize, hidden: usize) -> usize {
        2 * 3 * d * hidden
    }
}

impl Module for SwiGlu {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.down.forward(&super::kernels::swiglu(&self.gate.forward(x)?, &self.up.forward(x)?)?)
    }
}
