//! The session decoder: pre-norm causal self-attention -> cross-attention over the
//! encoder output -> FFN (dense SwiGLU or sparse MoE), then an output head over the
//! vocabulary. `forward` is teacher-forced; `step` feeds one token with a KV cache.

use super::layers::{causal_mask, Attention, Dropout, Lin, RmsNorm, SwiGlu};
use super::moe::{Ffn, Moe};
use super::{ModelConfig, Vocab};
use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use std::sync::Arc;

pub struct DecLayer {
    n1: RmsNorm,
    self_attn: Attention,
    n2: RmsNorm,
    cross: Attention,
    n3: RmsNorm,
    pub ffn: Ffn,
}

pub struct Decoder {
    tok: Tensor,
    pos: Tensor,
    pub layers: Vec<DecLayer>,
    norm: RmsNorm,
    head: Lin,
    drop: Arc<Dropout>,
}

/// Per-layer caches of a batch of decoding rows.
#[derive(Clone)]
pub struct Cache {
    pub cross: Vec<(Tensor, Tensor)>,
    pub selfkv: Vec<Option<(Tensor, Tensor)>>,
}

impl Decoder {
    pub fn new(cfg: &ModelConfig, vocab: &Vocab, drop: Arc<Dropout>, vb: VarBuilder) -> Result<Decoder> {
        let d = cfg.d_model;
        let init = Init::Randn { mean: 0.0, stdev: 0.02 };
        let layers = (0..cfg.dec_layers)
            .map(|i| {
                let vb = vb.pp(format!("layer{i}"));
                let ffn = if cfg.moe.experts > 0 {
                    Ffn::Moe(Moe::new(d, &cfg.moe, vb.pp("moe"))?)
                } else {
                    Ffn::Dense(SwiGlu::new(d, cfg.ffn_hidden, vb.pp("ffn"))?)
                };
                Ok(DecLayer {
                    n1: RmsNorm::new(d, vb.pp("norm1"))?,
                    self_attn: Attention::new(d, cfg.heads, cfg.fused_attention, vb.pp("self_attn"))?,
                    n2: RmsNorm::new(d, vb.pp("norm2"))?,
                    cross: Attention::new(d, cfg.heads, cfg.fused_attention, vb.pp("cross_attn"))?,
                    n3: RmsNorm::new(d, vb.pp("norm3"))?,
                    ffn,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Decoder {
            tok: vb.get_with_hints((vocab.size(), d), "tok_emb", init)?,
            pos: vb.get_with_hints((cfg.max_decoder_len(vocab.levels()), d), "pos_emb", init)?,
            layers,
            norm: RmsNorm::new(d, vb.pp("final_norm"))?,
            head: Lin::new(d, vocab.size(), vb.pp("head"))?,
            drop,
        })
    }

    pub fn max_len(&self) -> usize {
        self.pos.dim(0).unwrap_or(0)
    }

    fn embed(&self, tokens: &[u32], b: usize, s: usize, start: usize) -> Result<Tensor> {
        let dev = self.tok.device();
        if start + s > self.max_len() {
            candle_core::bail!(
                "decoder input of {} positions exceeds the model's {} (raise model.max_session_items)",
                start + s,
                self.max_len()
            );
        }
        let tok = self.tok.index_select(&Tensor::from_vec(tokens.to_vec(), b * s, dev)?, 0)?;
        let pos = self.pos.narrow(0, start, s)?;
        tok.reshape((b, s, ()))?.broadcast_add(&pos)
    }

    /// Teacher-forced logits [B,S,V] for decoder inputs `tokens` (row-major [B,S]),
    /// plus the sum of the MoE aux losses.
    pub fn forward(
        &self,
        tokens: &[u32],
        b: usize,
        s: usize,
        enc: &super::encoder::Encoded,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let drop = &self.drop;
        let mut x = drop.forward(&self.embed(tokens, b, s, 0)?)?;
        let causal = causal_mask(s, x.device())?;
        let mut aux: Option<Tensor> = None;
        for l in &self.layers {
            let h = l.n1.forward(&x)?;
            let (k, v) = l.self_attn.kv(&h)?;
            x = (&x + drop.forward(&l.self_attn.attend(&h, &k, &v, Some(&causal))?)?)?;
            let h = l.n2.forward(&x)?;
            let (ck, cv) = l.cross.kv(&enc.out)?;
            x = (&x + drop.forward(&l.cross.attend(&h, &ck, &cv, Some(&enc.mask))?)?)?;
            let (f, a) = l.ffn.forward(&l.n3.forward(&x)?)?;
            x = (&x + drop.forward(&f)?)?;
            if let Some(a) = a {
                aux = Some(match aux {
                    Some(p) => (p + a)?,
                    None => a,
                });
            }
        }
        Ok((self.head.forward(&self.norm.forward(&x)?)?, aux))
    }

    /// Cross-attention K/V of every layer and empty self caches.
    pub fn start(&self, enc: &super::encoder::Encoded) -> Result<Cache> {
        let cross = self.layers.iter().map(|l| l.cross.kv(&enc.out)).collect::<Result<Vec<_>>>()?;
        Ok(Cache { cross, selfkv: vec![None; self.layers.len()] })
    }

    /// One token per row at position `pos`: logits [R,V].
    pub fn step(&self, tokens: &[u32], pos: usize, cache: &mut Cache, enc_mask: &Tensor) -> Result<Tensor> {
        let r = tokens.len();
        let mut x = self.embed(tokens, r, 1, pos)?;
        for (i, l) in self.layers.iter().enumerate() {
            let h = l.n1.forward(&x)?;
            let (k, v) = l.self_attn.kv(&h)?;
            let (k, v) = match &cache.selfkv[i] {
                Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
                None => (k, v),
            };
            x = (&x + l.self_attn.attend(&h, &k, &v, None)?)?;
            cache.selfkv[i] = Some((k, v));
            let h = l.n2.forward(&x)?;
            let (ck, cv) = &cache.cross[i];
            x = (&x + l.cross.attend(&h, ck, cv, Some(enc_mask))?)?;
            let (f, _) = l.ffn.forward(&l.n3.forward(&x)?)?;
            x = (&x + f)?;
        }
        self.head.forward(&self.norm.forward(&x)?)?.squeeze(1)
    }
}
