//! Building blocks with working backward passes on CPU: a 2-D linear (no broadcast
//! matmul, so weight gradients never reduce over a non-last dim), RMSNorm and SwiGLU on
//! fused kernels ([`super::fused`]; candle's own fused norm has no backward), attention.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// y = x W^T over the last dim, computed on a 2-D view.
#[derive(Clone, Debug)]
pub struct Lin {
    pub w: Tensor,
}

impl Lin {
    pub fn new(inp: usize, out: usize, vb: VarBuilder) -> Result<Lin> {
        let std = (1.0 / inp as f64).sqrt();
        let w = vb.get_with_hints((out, inp), "weight", Init::Randn { mean: 0.0, stdev: std })?;
        Ok(Lin { w })
    }
}

impl Module for Lin {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let inp = dims[dims.len() - 1];
        let n = x.elem_count() / inp;
        let y = x.reshape((n, inp))?.matmul(&self.w.t()?)?;
        let mut out = dims;
        let last = out.len() - 1;
        out[last] = self.w.dim(0)?;
        y.reshape(out)
    }
}

/// RMSNorm over the last dim with a learned scale (differentiable).
#[derive(Clone, Debug)]
pub struct RmsNorm {
    pub w: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(d: usize, vb: VarBuilder) -> Result<RmsNorm> {
        Ok(RmsNorm { w: vb.get_with_hints(d, "weight", Init::Const(1.0))?, eps: 1e-6 })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        super::fused::rms_norm(x, &self.w, self.eps)
    }
}

/// SwiGLU feed-forward: down(silu(gate(x)) * up(x)).
#[derive(Clone, Debug)]
pub struct SwiGlu {
    gate: Lin,
    up: Lin,
    down: Lin,
}

impl SwiGlu {
    pub fn new(d: usize, hidden: usize, vb: VarBuilder) -> Result<SwiGlu> {
        Ok(SwiGlu {
            gate: Lin::new(d, hidden, vb.pp("gate"))?,
            up: Lin::new(d, hidden, vb.pp("up"))?,
            down: Lin::new(hidden, d, vb.pp("down"))?,
        })
    }
    /// Multiply-adds per token (forward), for throughput reports.
    pub fn flops_per_token(d: usize, hidden: usize) -> usize {
        2 * 3 * d * hidden
    }
}

impl Module for SwiGlu {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.down.forward(&super::fused::swiglu(&self.gate.forward(x)?, &self.up.forward(x)?)?)
    }
}

/// Multi-head attention projections; the caller supplies keys/values (self or cross).
#[derive(Clone, Debug)]
pub struct Attention {
    pub q: Lin,
    pub k: Lin,
    pub v: Lin,
    pub o: Lin,
    pub heads: usize,
    /// Use the fused CPU kernel ([`super::attention_op::sdpa`]).
    pub fused: bool,
}

impl Attention {
    pub fn new(d: usize, heads: usize, fused: bool, vb: VarBuilder) -> Result<Attention> {
        Ok(Attention {
            q: Lin::new(d, d, vb.pp("q"))?,
            k: Lin::new(d, d, vb.pp("k"))?,
            v: Lin::new(d, d, vb.pp("v"))?,
            o: Lin::new(d, d, vb.pp("o"))?,
            heads,
            fused,
        })
    }

    /// [B,T,d] -> [B,H,T,dh] (contiguous).
    pub fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        x.reshape((b, t, self.heads, d / self.heads))?.transpose(1, 2)?.contiguous()
    }

    /// Keys and values of `x` ([B,T,d]) split into heads.
    pub fn kv(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.split_heads(&self.k.forward(x)?)?, self.split_heads(&self.v.forward(x)?)?))
    }

    /// Attention of queries from `x` ([B,Tq,d]) over heads-split k/v ([B,H,Tk,dh]);
    /// `mask` is additive, broadcastable to [B,H,Tq,Tk].
    pub fn attend(&self, x: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, tq, d) = x.dims3()?;
        let dh = d / self.heads;
        let q = self.split_heads(&self.q.forward(x)?)?;
        let o = if self.fused && x.device().is_cpu() {
            super::attention_op::sdpa(&q, k, v, mask, 1.0 / (dh as f32).sqrt())?
        } else {
            super::attention_op::sdpa_reference(&q, k, v, mask, 1.0 / (dh as f32).sqrt())?
        };
        self.o.forward(&o.transpose(1, 2)?.reshape((b, tq, d))?)
    }
}

/// Additive key-padding mask [B,1,1,T]: 0 where `valid`, -1e9 elsewhere.
pub fn key_mask(valid: &[Vec<bool>], dev: &candle_core::Device) -> Result<Tensor> {
    let b = valid.len();
    let t = valid.first().map_or(0, |v| v.len());
    let data: Vec<f32> = valid.iter().flat_map(|r| r.iter().map(|&ok| if ok { 0.0 } else { -1e9 })).collect();
    Tensor::from_vec(data, (b, 1, 1, t), dev)
}

/// Additive causal mask [1,1,T,T].
pub fn causal_mask(t: usize, dev: &candle_core::Device) -> Result<Tensor> {
    let data: Vec<f32> = (0..t).flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { -1e9 })).collect();
    Tensor::from_vec(data, (1, 1, t, t), dev)?.to_dtype(DType::F32)
}

/// Inverted dropout whose masks are drawn on the host from a seeded stream (candle's
/// CPU `rand` cannot be seeded), so a training run is reproducible. Off (identity)
/// unless a training pass has switched it on with [`Dropout::training`]; eval,
/// generation and alignment never drop.
#[derive(Debug)]
pub struct Dropout {
    p: f32,
    rng: std::sync::Mutex<Option<crate::util::rng::Rng>>,
}

/// Switches dropout off again when dropped (see [`Dropout::training`]).
pub struct DropoutGuard<'a>(&'a Dropout);

impl Drop for DropoutGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut g) = self.0.rng.lock() {
            *g = None;
        }
    }
}

impl Dropout {
    pub fn new(p: f64) -> Dropout {
        Dropout { p: p as f32, rng: std::sync::Mutex::new(None) }
    }

    pub fn p(&self) -> f32 {
        self.p
    }

    /// Turns dropout on, drawing masks from `rng`, until the guard is dropped.
    pub fn training(&self, rng: crate::util::rng::Rng) -> DropoutGuard<'_> {
        if let Ok(mut g) = self.rng.lock() {
            *g = Some(rng);
        }
        DropoutGuard(self)
    }

    /// `x` with each element zeroed with probability p and the rest scaled by
    /// 1/(1-p); `x` itself when off or p = 0.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.p <= 0.0 {
            return Ok(x.clone());
        }
        let mut guard = self.rng.lock().map_err(|_| candle_core::Error::Msg("dropout rng lock poisoned".into()))?;
        let Some(rng) = guard.as_mut() else { return Ok(x.clone()) };
        let n = x.elem_count();
        let keep = 1.0 / (1.0 - self.p);
        // 16 random bits per element: p is resolved to 1/65536.
        let threshold = (self.p as f64 * 65536.0).round() as u64;
        let mut mask = Vec::with_capacity(n + 3);
        while mask.len() < n {
            let r = rand::RngCore::next_u64(rng);
            for s in 0..4 {
                mask.push(if (r >> (16 * s)) & 0xffff < threshold { 0.0f32 } else { keep });
            }
        }
        mask.truncate(n);
        x.mul(&Tensor::from_vec(mask, x.dims(), x.device())?.to_dtype(x.dtype())?)
    }
}
