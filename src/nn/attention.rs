//! Multi-head attention (projections + scaled dot-product) and its additive masks.

use super::Linear;
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

/// Multi-head attention; the caller supplies keys/values (self or cross), so the same
/// module serves self-attention, cross-attention and KV-cached decoding.
#[derive(Clone, Debug)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
    /// Use the fused CPU kernel ([`super::attention_op::sdpa`]).
    fused: bool,
}

impl Attention {
    /// Projections `q`, `k`, `v`, `o` (each [d, d]) under `vb`.
    pub fn new(d: usize, heads: usize, fused: bool, vb: VarBuilder) -> Result<Attention> {
        Ok(Attention {
            q_proj: Linear::new(d, d, vb.pp("q"))?,
            k_proj: Linear::new(d, d, vb.pp("k"))?,
            v_proj: Linear::new(d, d, vb.pp("v"))?,
            out_proj: Linear::new(d, d, vb.pp("o"))?,
            heads,
            fused,
        })
    }

    /// [B,T,d] -> [B,H,T,dh] (contiguous).
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        x.reshape((b, t, self.heads, d / self.heads))?.transpose(1, 2)?.contiguous()
    }

    /// Keys and values of `x` ([B,T,d]) split into heads.
    pub fn kv(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.split_heads(&self.k_proj.forward(x)?)?, self.split_heads(&self.v_proj.forward(x)?)?))
    }

    /// Scaled dot-product attention of heads-split q/k/v: the fused CPU kernel when on.
    fn sdpa(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, scale: f32) -> Result<Tensor> {
        if self.fused && q.device().is_cpu() {
            super::attention_op::sdpa(q, k, v, mask, scale)
        } else {
            super::attention_op::sdpa_reference(q, k, v, mask, scale)
        }
    }

    /// Attention of queries from `x` ([B,Tq,d]) over heads-split k/v ([B,H,Tk,dh]);
    /// `mask` is additive, broadcastable to [B,H,Tq,Tk].
    pub fn attend(&self, x: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, tq, d) = x.dims3()?;
        let scale = 1.0 / ((d / self.heads) as f32).sqrt();
        let q = self.split_heads(&self.q_proj.forward(x)?)?;
        let o = self.sdpa(&q, k, v, mask, scale)?;
        self.out_proj.forward(&o.transpose(1, 2)?.reshape((b, tq, d))?)
    }

    /// [`Attention::attend`] for one query per row ([R,1,d]) where consecutive groups of
    /// `group` rows share keys/values ([R/group,H,Tk,dh], mask broadcastable to
    /// [R/group,H,group,Tk]): a beam search's beams over their user's encoder output. The
    /// group's queries attend as a [group, Tk] block, so the keys/values are never copied
    /// per row (beam search used to re-index every layer's cross K/V at every step).
    pub fn attend_grouped(&self, x: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, group: usize) -> Result<Tensor> {
        let (r, tq, d) = x.dims3()?;
        if tq != 1 || group == 0 || r % group != 0 {
            candle_core::bail!("attend_grouped: [{r},{tq},{d}] queries in groups of {group}");
        }
        let (u, dh) = (r / group, d / self.heads);
        let scale = 1.0 / (dh as f32).sqrt();
        let q = self.q_proj.forward(x)?.reshape((u, group, self.heads, dh))?.transpose(1, 2)?.contiguous()?;
        let o = self.sdpa(&q, k, v, Some(mask), scale)?;
        self.out_proj.forward(&o.transpose(1, 2)?.reshape((r, 1, d))?)
    }
}

/// Additive key-padding mask [B,1,1,T]: 0 where `valid`, -1e9 elsewhere.
pub fn key_mask(valid: &[Vec<bool>], dev: &Device) -> Result<Tensor> {
    let b = valid.len();
    let t = valid.first().map_or(0, |v| v.len());
    let data: Vec<f32> = valid.iter().flat_map(|r| r.iter().map(|&ok| if ok { 0.0 } else { -1e9 })).collect();
    Tensor::from_vec(data, (b, 1, 1, t), dev)
}

/// Additive causal mask [1,1,T,T].
pub fn causal_mask(t: usize, dev: &Device) -> Result<Tensor> {
    let data: Vec<f32> = (0..t).flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { -1e9 })).collect();
    Tensor::from_vec(data, (1, 1, t, t), dev)?.to_dtype(DType::F32)
}
