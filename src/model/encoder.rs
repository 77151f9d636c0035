//! The history encoder: one position per history item (embedding = sum of its
//! code-token embeddings, plus an item-id embedding when `model.item_id_embedding`)
//! after a leading summary slot, learned recency-aligned positions, pre-norm
//! bidirectional self-attention with a padding mask, SwiGLU FFN.

use super::{ModelConfig, Vocab};
use crate::nn::{key_mask, Attention, Dropout, RmsNorm, SwiGlu};
use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use std::sync::Arc;

struct EncLayer {
    attn_norm: RmsNorm,
    attn: Attention,
    ffn_norm: RmsNorm,
    ffn: SwiGlu,
}

impl EncLayer {
    /// Bidirectional self-attention under the padding `mask`, then the FFN.
    fn forward(&self, x: &Tensor, mask: &Tensor, drop: &Dropout) -> Result<Tensor> {
        let h = self.attn_norm.forward(x)?;
        let (k, v) = self.attn.kv(&h)?;
        let x = (x + drop.forward(&self.attn.attend(&h, &k, &v, Some(mask))?)?)?;
        &x + drop.forward(&self.ffn.forward(&self.ffn_norm.forward(&x)?)?)?
    }
}

pub struct Encoder {
    tok_emb: Tensor,
    pos_emb: Tensor,
    layers: Vec<EncLayer>,
    final_norm: RmsNorm,
    /// Hybrid input: one learned vector per item, [n_items + 1, d] (the last row is
    /// for the summary slot and padding). Also the output table of the item head.
    item_emb: Option<Tensor>,
    history_len: usize,
    drop: Arc<Dropout>,
}

/// Encoder output and its additive key mask [B,1,1,T].
#[derive(Clone)]
pub struct Encoded {
    pub out: Tensor,
    pub mask: Tensor,
}

impl Encoder {
    pub fn new(
        cfg: &ModelConfig,
        vocab: &Vocab,
        n_items: usize,
        drop: Arc<Dropout>,
        vb: VarBuilder,
    ) -> Result<Encoder> {
        let d = cfg.d_model;
        let init = Init::Randn { mean: 0.0, stdev: 0.02 };
        let layers = (0..cfg.enc_layers)
            .map(|i| {
                let vb = vb.pp(format!("layer{i}"));
                Ok(EncLayer {
                    attn_norm: RmsNorm::new(d, vb.pp("norm1"))?,
                    attn: Attention::new(d, cfg.heads, cfg.fused_attention, vb.pp("attn"))?,
                    ffn_norm: RmsNorm::new(d, vb.pp("norm2"))?,
                    ffn: SwiGlu::new(d, cfg.ffn_hidden, vb.pp("ffn"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder {
            tok_emb: vb.get_with_hints((vocab.size(), d), "tok_emb", init)?,
            pos_emb: vb.get_with_hints((cfg.history_len + 1, d), "pos_emb", init)?,
            layers,
            final_norm: RmsNorm::new(d, vb.pp("final_norm"))?,
            item_emb: match cfg.item_id_embedding {
                true => Some(vb.get_with_hints((n_items + 1, d), "item_emb", init)?),
                false => None,
            },
            history_len: cfg.history_len,
            drop,
        })
    }

    /// Encodes the last `history_len` items of each history. Slot 0 is a summary slot
    /// (so an empty history is fine); items are left-padded so the most recent item
    /// always sits at the last position and gets the same position embedding.
    pub fn forward(&self, histories: &[&[u32]], item_codes: &[u32], vocab: &Vocab) -> Result<Encoded> {
        let dev = self.tok_emb.device();
        let levels = vocab.levels();
        let n = self.history_len;
        let b = histories.len();
        let t = 1 + histories.iter().map(|h| h.len().min(n)).max().unwrap_or(0);
        let mut ids: Vec<Vec<u32>> = vec![Vec::with_capacity(b * t); levels];
        let mut pos = Vec::with_capacity(b * t);
        let no_item = (item_codes.len() / levels.max(1)) as u32;
        let mut item_ids = Vec::with_capacity(b * t);
        let mut valid = Vec::with_capacity(b);
        for h in histories {
            let h = &h[h.len().saturating_sub(n)..];
            let pad = t - 1 - h.len();
            let mut row = vec![true; t];
            ids[0].push(Vocab::BOS);
            for level in ids.iter_mut().take(levels).skip(1) {
                level.push(Vocab::PAD);
            }
            pos.push(0u32);
            item_ids.push(no_item);
            for r in row.iter_mut().skip(1).take(pad) {
                *r = false;
                for lv in ids.iter_mut() {
                    lv.push(Vocab::PAD);
                }
                pos.push(0);
                item_ids.push(no_item);
            }
            for (i, &item) in h.iter().enumerate() {
                let codes = item_codes.get(item as usize * levels..(item as usize + 1) * levels).ok_or_else(|| {
                    candle_core::Error::Msg(format!(
                        "history item {item} has no semantic id (model knows {} items)",
                        item_codes.len() / levels.max(1)
                    ))
                })?;
                for (l, &c) in codes.iter().enumerate() {
                    ids[l].push(vocab.token(l, c));
                }
                pos.push((n - h.len() + i + 1) as u32);
                item_ids.push(item);
            }
            valid.push(row);
        }
        let mut x = self.pos_emb.index_select(&Tensor::from_vec(pos, b * t, dev)?, 0)?;
        for lv in ids {
            x = (x + self.tok_emb.index_select(&Tensor::from_vec(lv, b * t, dev)?, 0)?)?;
        }
        if let Some(table) = &self.item_emb {
            x = (x + table.index_select(&Tensor::from_vec(item_ids, b * t, dev)?, 0)?)?;
        }
        let mut x = self.drop.forward(&x.reshape((b, t, self.tok_emb.dim(1)?))?)?;
        let mask = key_mask(&valid, dev)?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask, &self.drop)?;
        }
        Ok(Encoded { out: self.final_norm.forward(&x)?, mask })
    }

    /// Full-item logits [B, n_items] from the summary slot, scored against the item-id
    /// table (SASRec-style tied output): the auxiliary item head. `None` without
    /// item-id embeddings.
    pub fn item_logits(&self, enc: &Encoded) -> Result<Option<Tensor>> {
        let Some(table) = &self.item_emb else { return Ok(None) };
        let n_items = table.dim(0)? - 1;
        let user = enc.out.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?;
        Ok(Some(user.matmul(&table.narrow(0, 0, n_items)?.t()?)?))
    }
}
