//! The SASRec network: item-id embeddings (tied input/output) plus learned positions,
//! causal self-attention blocks (pre- or post-norm), scored against every item.
//!
//! Sequences are left-padded to the batch's longest, and positions count from the
//! right (the newest item always has position `max_len - 1`), as in the original
//! SASRec's fixed left padding to `max_len`.

use super::config::{Activation, Norm, SasrecModelConfig};
use crate::nn::{Attention, Dropout, Linear, SwiGlu};
use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use rand_distr::{Distribution, Normal};

/// LayerNorm over the last dim from differentiable ops (candle's fused one has no backward).
struct LayerNorm {
    w: Tensor,
    b: Tensor,
}

impl LayerNorm {
    fn new(d: usize, vb: VarBuilder) -> Result<LayerNorm> {
        Ok(LayerNorm {
            w: vb.get_with_hints(d, "weight", Init::Const(1.0))?,
            b: vb.get_with_hints(d, "bias", Init::Const(0.0))?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm_slow(x, &self.w, &self.b, 1e-6)?)
    }
}

enum Ffn {
    Plain { up: Linear, down: Linear, gelu: bool },
    SwiGlu(SwiGlu),
}

impl Ffn {
    fn forward(&self, x: &Tensor, dropout: &Dropout) -> Result<Tensor> {
        Ok(match self {
            Ffn::Plain { up, down, gelu } => {
                let h = up.forward(x)?;
                let h = if *gelu { h.gelu_erf()? } else { h.relu()? };
                down.forward(&dropout.forward(&h)?)?
            }
            Ffn::SwiGlu(s) => s.forward(x)?,
        })
    }
}

struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    ffn: Ffn,
}

/// A batch of left-padded sequences: `tokens` [B,T] (item + 1; 0 = padding).
pub struct SeqBatch {
    pub tokens: Tensor,
    /// [B,T,1]: 1 at items, 0 at padding.
    pub keep: Tensor,
    /// Additive attention mask [B,1,T,T]: causal and no padding keys.
    pub mask: Tensor,
    pub b: usize,
    pub t: usize,
}

impl SeqBatch {
    /// Left-pads `seqs` (dense item ids, oldest first; each cut to its newest `max_len`).
    pub fn new(seqs: &[&[u32]], max_len: usize, dev: &Device) -> Result<SeqBatch> {
        let b = seqs.len();
        let t = seqs.iter().map(|s| s.len().min(max_len)).max().unwrap_or(0).max(1);
        let mut tokens = vec![0u32; b * t];
        let mut keep = vec![0f32; b * t];
        let mut mask = vec![0f32; b * t * t];
        for (r, s) in seqs.iter().enumerate() {
            let s = &s[s.len().saturating_sub(max_len)..];
            let pad = t - s.len();
            for (j, &item) in s.iter().enumerate() {
                tokens[r * t + pad + j] = item + 1;
                keep[r * t + pad + j] = 1.0;
            }
            for i in 0..t {
                for j in 0..t {
                    if j > i || j < pad {
                        mask[(r * t + i) * t + j] = -1e9;
                    }
                }
            }
        }
        Ok(SeqBatch {
            tokens: Tensor::from_vec(tokens, (b, t), dev)?,
            keep: Tensor::from_vec(keep, (b, t, 1), dev)?,
            mask: Tensor::from_vec(mask, (b, 1, t, t), dev)?,
            b,
            t,
        })
    }
}

pub struct Sasrec {
    pub cfg: SasrecModelConfig,
    pub n_items: usize,
    /// [n_items + 1, d]; row 0 is padding, row i + 1 is item i (also the output layer).
    item_emb: Tensor,
    /// [max_len, d].
    pos_emb: Tensor,
    blocks: Vec<Block>,
    final_norm: Option<LayerNorm>,
    dropout: Dropout,
}

impl Sasrec {
    /// A model whose variables live in `vb` (fresh or about to be loaded).
    pub fn new(cfg: &SasrecModelConfig, n_items: usize, vb: VarBuilder) -> Result<Sasrec> {
        cfg.validate()?;
        ensure!(n_items > 0, "SASRec needs at least one item");
        let d = cfg.d_model;
        let item_emb = vb.get_with_hints((n_items + 1, d), "item_emb", Init::Const(0.0))?;
        let pos_emb = vb.get_with_hints((cfg.max_len, d), "pos_emb", Init::Const(0.0))?;
        let mut blocks = Vec::new();
        for l in 0..cfg.layers {
            let vb = vb.pp(format!("blocks.{l}"));
            let ffn = match cfg.activation {
                Activation::Swiglu => Ffn::SwiGlu(SwiGlu::new(d, cfg.ffn_hidden, vb.pp("ffn"))?),
                a => Ffn::Plain {
                    up: Linear::new(d, cfg.ffn_hidden, vb.pp("ffn.up"))?,
                    down: Linear::new(cfg.ffn_hidden, d, vb.pp("ffn.down"))?,
                    gelu: a == Activation::Gelu,
                },
            };
            blocks.push(Block {
                norm1: LayerNorm::new(d, vb.pp("norm1"))?,
                attn: Attention::new(d, cfg.heads, true, vb.pp("attn"))?,
                norm2: LayerNorm::new(d, vb.pp("norm2"))?,
                ffn,
            });
        }
        let final_norm = match cfg.norm {
            Norm::Pre => Some(LayerNorm::new(d, vb.pp("final_norm"))?),
            Norm::Post => None,
        };
        Ok(Sasrec {
            cfg: cfg.clone(),
            n_items,
            item_emb,
            pos_emb,
            blocks,
            final_norm,
            dropout: Dropout::new(cfg.dropout),
        })
    }

    /// A fresh model with every variable initialised from `seed`.
    pub fn build(cfg: &SasrecModelConfig, n_items: usize, seed: u64) -> Result<(Sasrec, VarMap)> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = Sasrec::new(cfg, n_items, vb)?;
        init_params(&varmap, seed)?;
        Ok((model, varmap))
    }

    /// Dropout on (drawing masks from `rng`) until the guard is dropped.
    pub fn training(&self, rng: crate::util::rng::Rng) -> crate::nn::DropoutGuard<'_> {
        self.dropout.training(rng)
    }

    /// Output embeddings of the items [n_items, d] (the input table without padding).
    pub fn item_table(&self) -> Result<Tensor> {
        Ok(self.item_emb.narrow(0, 1, self.n_items)?)
    }

    /// Hidden states [B,T,d] of a batch.
    pub fn forward(&self, batch: &SeqBatch) -> Result<Tensor> {
        let (b, t, d) = (batch.b, batch.t, self.cfg.d_model);
        ensure!(t <= self.cfg.max_len, "sequence length {t} exceeds model.max_len = {}", self.cfg.max_len);
        let x = self.item_emb.index_select(&batch.tokens.flatten_all()?, 0)?.reshape((b, t, d))?;
        let pos = self.pos_emb.narrow(0, self.cfg.max_len - t, t)?;
        let x = ((x * (d as f64).sqrt())?.broadcast_add(&pos))?;
        let mut x = self.dropout.forward(&x)?.broadcast_mul(&batch.keep)?;
        for blk in &self.blocks {
            x = match self.cfg.norm {
                Norm::Pre => {
                    let h = blk.norm1.forward(&x)?;
                    let (k, v) = blk.attn.kv(&h)?;
                    let x = (&x + self.dropout.forward(&blk.attn.attend(&h, &k, &v, Some(&batch.mask))?)?)?;
                    let h = blk.norm2.forward(&x)?;
                    (&x + self.dropout.forward(&blk.ffn.forward(&h, &self.dropout)?)?)?
                }
                Norm::Post => {
                    let (k, v) = blk.attn.kv(&x)?;
                    let a = self.dropout.forward(&blk.attn.attend(&x, &k, &v, Some(&batch.mask))?)?;
                    let x = blk.norm1.forward(&(&x + a)?)?;
                    let f = self.dropout.forward(&blk.ffn.forward(&x, &self.dropout)?)?;
                    blk.norm2.forward(&(&x + f)?)?
                }
            };
            x = x.broadcast_mul(&batch.keep)?;
        }
        if let Some(n) = &self.final_norm {
            x = n.forward(&x)?;
        }
        Ok(x)
    }

    /// Mean full-softmax cross-entropy of next-item prediction at the positions
    /// `rows` (indices into the flattened [B*T] batch), whose targets are `targets`;
    /// `excluded` (empty, or one list per position) holds items left out of a
    /// position's softmax.
    pub fn loss(&self, batch: &SeqBatch, rows: &Tensor, targets: &[u32], excluded: &[Vec<u32>]) -> Result<Tensor> {
        let h = self.forward(batch)?;
        let h = h.reshape((batch.b * batch.t, self.cfg.d_model))?.index_select(rows, 0)?;
        let logits = h.matmul(&self.item_table()?.t()?)?;
        Ok(super::ce::cross_entropy_excluding(&logits, targets, excluded)?)
    }

    /// Scores [B, n_items] of every item as the next one after each sequence.
    pub fn score_next(&self, batch: &SeqBatch) -> Result<Tensor> {
        let h = self.forward(batch)?.narrow(1, batch.t - 1, 1)?.squeeze(1)?;
        Ok(h.matmul(&self.item_table()?.t()?)?)
    }
}

/// Deterministic initialisation, sorted by name: norms 1 / 0, item and position tables
/// Xavier-normal (as in the reference SASRec code), linear weights N(0, 1/fan_in).
pub fn init_params(varmap: &VarMap, seed: u64) -> Result<()> {
    for (name, var) in crate::nn::params::sorted_vars(varmap) {
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let data: Vec<f32> = if name.ends_with("norm1.weight")
            || name.ends_with("norm2.weight")
            || name.ends_with("final_norm.weight")
        {
            vec![1.0; n]
        } else if name.ends_with(".bias") {
            vec![0.0; n]
        } else {
            let std = if name.ends_with("_emb") {
                (2.0 / (dims[0] + dims[1]) as f64).sqrt()
            } else {
                (1.0 / *dims.last().unwrap_or(&1) as f64).sqrt()
            };
            let mut rng = crate::util::rng::stream(seed, &format!("sasrec/init/{name}"));
            let normal = Normal::new(0.0f64, std).context("init distribution")?;
            (0..n).map(|_| normal.sample(&mut rng) as f32).collect()
        };
        var.set(&Tensor::from_vec(data, dims, &Device::Cpu)?)?;
    }
    Ok(())
}
