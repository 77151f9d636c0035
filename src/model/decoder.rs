//! The session decoder: pre-norm causal self-attention -> cross-attention over the
//! encoder output -> FFN (dense SwiGLU or sparse MoE), then an output head over the
//! vocabulary. `forward` is teacher-forced; `step` feeds one token with a KV cache;
//! both run the same [`DecLayer::forward`].

use super::encoder::Encoded;
use super::moe::{Ffn, Moe, MoeOutput, MoeStats};
use super::{ModelConfig, Vocab};
use crate::nn::{causal_mask, Attention, Dropout, Linear, RmsNorm, SwiGlu};
use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use std::sync::Arc;

/// Keys and values split into heads, [B,H,T,dh] each.
pub type KeyValue = (Tensor, Tensor);

pub struct DecLayer {
    self_attn_norm: RmsNorm,
    self_attn: Attention,
    cross_attn_norm: RmsNorm,
    cross_attn: Attention,
    ffn_norm: RmsNorm,
    pub ffn: Ffn,
}

/// What a layer's cross-attention reads: the encoder's keys/values for this layer, its
/// padding mask, and how many consecutive query rows share each K/V row (1 = one each).
#[derive(Clone, Copy)]
struct Cross<'a> {
    kv: &'a KeyValue,
    mask: &'a Tensor,
    group: usize,
}

/// What one decoder layer returns besides its output.
struct LayerOutput {
    x: Tensor,
    /// Self-attention keys/values of every position so far (the cache's next value).
    self_kv: KeyValue,
    /// The MoE pass's routing when the layer is sparse.
    moe: Option<MoeOutput>,
}

impl DecLayer {
    fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<DecLayer> {
        let d = cfg.d_model;
        let ffn = if cfg.moe.experts > 0 {
            Ffn::Moe(Moe::new(d, &cfg.moe, vb.pp("moe"))?)
        } else {
            Ffn::Dense(SwiGlu::new(d, cfg.ffn_hidden, vb.pp("ffn"))?)
        };
        Ok(DecLayer {
            self_attn_norm: RmsNorm::new(d, vb.pp("norm1"))?,
            self_attn: Attention::new(d, cfg.heads, cfg.fused_attention, vb.pp("self_attn"))?,
            cross_attn_norm: RmsNorm::new(d, vb.pp("norm2"))?,
            cross_attn: Attention::new(d, cfg.heads, cfg.fused_attention, vb.pp("cross_attn"))?,
            ffn_norm: RmsNorm::new(d, vb.pp("norm3"))?,
            ffn,
        })
    }

    /// The layer over new positions `x` [B,S,d]. `past`: self-attention keys/values of
    /// earlier positions (KV-cached decoding, S = 1); `causal`: the mask among the S
    /// new positions (teacher forcing). `cross` holds the encoder's keys/values for
    /// this layer and `enc_mask` its padding mask.
    fn forward(
        &self,
        x: &Tensor,
        past: Option<&KeyValue>,
        causal: Option<&Tensor>,
        cross: Cross<'_>,
        drop: &Dropout,
    ) -> Result<LayerOutput> {
        let h = self.self_attn_norm.forward(x)?;
        let (k, v) = self.self_attn.kv(&h)?;
        let (k, v) = match past {
            Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
            None => (k, v),
        };
        let x = (x + drop.forward(&self.self_attn.attend(&h, &k, &v, causal)?)?)?;
        let h = self.cross_attn_norm.forward(&x)?;
        let (ck, cv) = cross.kv;
        let c = match cross.group {
            1 => self.cross_attn.attend(&h, ck, cv, Some(cross.mask))?,
            g => self.cross_attn.attend_grouped(&h, ck, cv, cross.mask, g)?,
        };
        let x = (&x + drop.forward(&c)?)?;
        let (f, moe) = self.ffn.forward(&self.ffn_norm.forward(&x)?)?;
        let x = (&x + drop.forward(&f)?)?;
        Ok(LayerOutput { x, self_kv: (k, v), moe })
    }
}

pub struct Decoder {
    tok_emb: Tensor,
    pos_emb: Tensor,
    pub layers: Vec<DecLayer>,
    final_norm: RmsNorm,
    head: Linear,
    drop: Arc<Dropout>,
}

/// Teacher-forced decoder output.
pub struct DecoderOutput {
    /// [B,S,V].
    pub logits: Tensor,
    /// Sum of the MoE aux losses (when that balancing mode is on).
    pub aux_loss: Option<Tensor>,
    /// Routing statistics of each MoE layer, in layer order.
    pub moe_stats: Vec<MoeStats>,
    /// Router probabilities of each MoE layer (with the aux loss on), as `moe_stats`.
    pub router_probs: Vec<Option<Tensor>>,
}

/// Per-layer caches of a batch of decoding rows.
#[derive(Clone)]
pub struct Cache {
    /// Cross-attention keys/values of the encoder output (fixed while decoding).
    pub cross: Vec<KeyValue>,
    /// Self-attention keys/values of the tokens fed so far.
    pub self_kv: Vec<Option<KeyValue>>,
    /// The encoded row (user) each decoding row reads: `cross` stays one row per user
    /// while beams are selected and duplicated.
    pub row_user: Vec<u32>,
}

/// How a decoding step's rows read the per-user cross K/V.
enum CrossRows {
    /// Consecutive groups of this many rows per user, in user order (beam search keeps
    /// rows so): attention reads the user's K/V in place.
    Grouped(usize),
    /// Anything else: the K/V and mask gathered per row.
    Gathered(Tensor),
}

impl Cache {
    fn cross_rows(&self) -> Result<CrossRows> {
        let (rows, users) = (self.row_user.len(), self.cross.first().map_or(0, |c| c.0.dim(0).unwrap_or(0)));
        if users > 0 && rows % users == 0 && rows > 0 {
            let g = rows / users;
            if self.row_user.iter().enumerate().all(|(i, &u)| u as usize == i / g) {
                return Ok(CrossRows::Grouped(g));
            }
        }
        let dev = self.cross.first().map_or(candle_core::Device::Cpu, |c| c.0.device().clone());
        Ok(CrossRows::Gathered(Tensor::from_vec(self.row_user.clone(), rows, &dev)?))
    }
}

impl Decoder {
    pub fn new(cfg: &ModelConfig, vocab: &Vocab, drop: Arc<Dropout>, vb: VarBuilder) -> Result<Decoder> {
        let d = cfg.d_model;
        let init = Init::Randn { mean: 0.0, stdev: 0.02 };
        let layers =
            (0..cfg.dec_layers).map(|i| DecLayer::new(cfg, vb.pp(format!("layer{i}")))).collect::<Result<Vec<_>>>()?;
        Ok(Decoder {
            tok_emb: vb.get_with_hints((vocab.size(), d), "tok_emb", init)?,
            pos_emb: vb.get_with_hints((cfg.max_decoder_len(vocab.levels()), d), "pos_emb", init)?,
            layers,
            final_norm: RmsNorm::new(d, vb.pp("final_norm"))?,
            head: Linear::new(d, vocab.size(), vb.pp("head"))?,
            drop,
        })
    }

    pub fn max_len(&self) -> usize {
        self.pos_emb.dim(0).unwrap_or(0)
    }

    /// Token + position embeddings of `tokens` (row-major [B,S]) at positions start.. .
    fn embed(&self, tokens: &[u32], b: usize, s: usize, start: usize) -> Result<Tensor> {
        let dev = self.tok_emb.device();
        if start + s > self.max_len() {
            candle_core::bail!(
                "decoder input of {} positions exceeds the model's {} (raise model.max_session_items)",
                start + s,
                self.max_len()
            );
        }
        let tok = self.tok_emb.index_select(&Tensor::from_vec(tokens.to_vec(), b * s, dev)?, 0)?;
        let pos = self.pos_emb.narrow(0, start, s)?;
        tok.reshape((b, s, ()))?.broadcast_add(&pos)
    }

    /// Teacher-forced logits for decoder inputs `tokens` (row-major [B,S]).
    pub fn forward(&self, tokens: &[u32], b: usize, s: usize, enc: &Encoded) -> Result<DecoderOutput> {
        let mut x = self.drop.forward(&self.embed(tokens, b, s, 0)?)?;
        let causal = causal_mask(s, x.device())?;
        let (mut aux_loss, mut moe_stats, mut router_probs) = (None::<Tensor>, Vec::new(), Vec::new());
        for layer in &self.layers {
            let cross = layer.cross_attn.kv(&enc.out)?;
            let cross = Cross { kv: &cross, mask: &enc.mask, group: 1 };
            let out = layer.forward(&x, None, Some(&causal), cross, &self.drop)?;
            x = out.x;
            if let Some(moe) = out.moe {
                if let Some(a) = moe.aux_loss {
                    aux_loss = Some(match aux_loss {
                        Some(p) => (p + a)?,
                        None => a,
                    });
                }
                moe_stats.push(moe.stats);
                router_probs.push(moe.router_probs);
            }
        }
        let logits = self.head.forward(&self.final_norm.forward(&x)?)?;
        Ok(DecoderOutput { logits, aux_loss, moe_stats, router_probs })
    }

    /// Cross-attention K/V of every layer and empty self caches.
    pub fn start(&self, enc: &Encoded) -> Result<Cache> {
        // Detached: the weights are variables, so every result holds its inputs (the op
        // graph) alive; a cache kept across steps would keep every earlier activation too.
        let cross = self
            .layers
            .iter()
            .map(|l| l.cross_attn.kv(&enc.out).map(|(k, v)| (k.detach(), v.detach())))
            .collect::<Result<Vec<_>>>()?;
        let row_user = (0..enc.out.dim(0)? as u32).collect();
        Ok(Cache { cross, self_kv: vec![None; self.layers.len()], row_user })
    }

    /// One token per row at position `pos`: logits [R,V]. `enc_mask` is per user (as
    /// `cache.cross`); `cache.row_user` maps rows to users.
    pub fn step(&self, tokens: &[u32], pos: usize, cache: &mut Cache, enc_mask: &Tensor) -> Result<Tensor> {
        let mut x = self.embed(tokens, tokens.len(), 1, pos)?;
        let layout = cache.cross_rows()?;
        let gathered_mask = match &layout {
            CrossRows::Gathered(idx) => Some(enc_mask.index_select(idx, 0)?),
            CrossRows::Grouped(_) => None,
        };
        for (i, layer) in self.layers.iter().enumerate() {
            let (kv, mask, group) = match &layout {
                CrossRows::Grouped(g) => (cache.cross[i].clone(), enc_mask, *g),
                CrossRows::Gathered(idx) => {
                    let (k, v) = &cache.cross[i];
                    ((k.index_select(idx, 0)?, v.index_select(idx, 0)?), gathered_mask.as_ref().unwrap_or(enc_mask), 1)
                }
            };
            let cross = Cross { kv: &kv, mask, group };
            let out = layer.forward(&x, cache.self_kv[i].as_ref(), None, cross, &self.drop)?;
            x = out.x.detach(); // frees this layer's activations once the next layer ran
                                // Detached (see `start`): decoding never backpropagates, and a cache that holds
                                // its op graph kept every step's activations alive (~0.4 MB per row at d 128).
            cache.self_kv[i] = Some((out.self_kv.0.detach(), out.self_kv.1.detach()));
        }
        self.head.forward(&self.final_norm.forward(&x)?)?.squeeze(1)
    }
}
