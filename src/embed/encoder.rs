//! Sentence encoder: `tokenizer.json` + BERT + mean pooling + L2 normalisation, i.e. what
//! sentence-transformers computes for all-MiniLM-L6-v2-style models.

use super::bert::{mean_pool_normalise, Bert};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{Device, Tensor};
use std::path::Path;
use tokenizers::{Tokenizer, TruncationParams};

/// Default maximum sequence length (tokens, special tokens included), as sentence-transformers.
pub const DEFAULT_MAX_TOKENS: usize = 256;

pub struct SentenceEncoder {
    pub bert: Bert,
    tokenizer: Tokenizer,
    pub max_tokens: usize,
    pad_id: u32,
}

impl SentenceEncoder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from a local directory.
    /// Texts are truncated to `max_tokens` tokens (special tokens included).
    pub fn load(dir: &Path, max_tokens: usize, device: &Device) -> Result<SentenceEncoder> {
        if !dir.is_dir() {
            bail!(
                "model directory {} does not exist; fetch one with scripts/fetch-minilm.sh {}",
                dir.display(),
                dir.display()
            );
        }
        let bert = Bert::load(dir, device)?;
        let tpath = dir.join("tokenizer.json");
        let mut tokenizer =
            Tokenizer::from_file(&tpath).map_err(|e| anyhow!("{}: cannot load tokenizer: {e}", tpath.display()))?;
        let max_tokens = max_tokens.min(bert.config.max_position_embeddings);
        if max_tokens < 2 {
            bail!("--max-tokens must be at least 2 (room for [CLS] and [SEP])");
        }
        // The shipped tokenizer.json pads/truncates to 128; we batch and pad ourselves.
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_tokens, ..Default::default() }))
            .map_err(|e| anyhow!("{}: cannot set truncation: {e}", tpath.display()))?;
        tokenizer.with_padding(None);
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
        tracing::info!(
            "loaded BERT from {} ({} layers, hidden {}, vocab {}), max {} tokens",
            dir.display(),
            bert.config.num_hidden_layers,
            bert.config.hidden_size,
            bert.config.vocab_size,
            max_tokens
        );
        Ok(SentenceEncoder { bert, tokenizer, max_tokens, pad_id })
    }

    pub fn dim(&self) -> usize {
        self.bert.config.hidden_size
    }

    /// Token ids (with [CLS]/[SEP], truncated) of each text.
    pub fn tokenize(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encs = self.tokenizer.encode_batch(refs, true).map_err(|e| anyhow!("tokenizing: {e}"))?;
        let vocab = self.bert.config.vocab_size as u32;
        encs.into_iter()
            .map(|e| {
                let ids = e.get_ids().to_vec();
                if let Some(bad) = ids.iter().find(|&&t| t >= vocab) {
                    bail!(
                        "tokenizer produced id {bad} >= vocab_size {vocab}: tokenizer.json does not match config.json"
                    );
                }
                Ok(ids)
            })
            .collect()
    }

    /// Embeds one batch of token sequences, padded to the longest: returns [n, dim] rows.
    pub fn embed_tokens(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let s = batch.iter().map(|t| t.len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(batch.len() * s);
        let mut mask = Vec::with_capacity(batch.len() * s);
        for t in batch {
            ids.extend_from_slice(t);
            mask.extend(std::iter::repeat_n(1f32, t.len()));
            ids.extend(std::iter::repeat_n(self.pad_id, s - t.len()));
            mask.extend(std::iter::repeat_n(0f32, s - t.len()));
        }
        let dev = self.bert.device();
        let ids = Tensor::from_vec(ids, (batch.len(), s), dev)?;
        let mask = Tensor::from_vec(mask, (batch.len(), s), dev)?;
        let hidden = self.bert.forward(&ids, &mask)?;
        let pooled = mean_pool_normalise(&hidden, &mask)?;
        pooled.to_vec2::<f32>().context("copying embeddings to the host")
    }

    /// Embeds token sequences in length buckets: sorted by length, cut into batches of
    /// `batch_size`, so padding is small. Rows come back in input order. `on_batch` is
    /// called with the number of sequences done after each batch (progress).
    pub fn embed_sorted(
        &self,
        tokens: &[Vec<u32>],
        batch_size: usize,
        mut on_batch: impl FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        let batch_size = batch_size.max(1);
        let mut order: Vec<usize> = (0..tokens.len()).collect();
        order.sort_by_key(|&i| (tokens[i].len(), i));
        let mut out = vec![Vec::new(); tokens.len()];
        for chunk in order.chunks(batch_size) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| tokens[i].as_slice()).collect();
            for (&i, row) in chunk.iter().zip(self.embed_tokens(&batch)?) {
                out[i] = row;
            }
            on_batch(chunk.len());
        }
        Ok(out)
    }

    /// Convenience: tokenizes and embeds texts (length-bucketed batches of 32).
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let tokens = self.tokenize(texts)?;
        self.embed_sorted(&tokens, 32, |_| {})
    }
}
