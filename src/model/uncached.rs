//! Decoding without a KV cache: every step re-runs the decoder over the whole token
//! prefix (the encoder output is still computed once). Slow on purpose — it is the
//! reference the cached [`super::OneRecModel`] decoding is checked and benchmarked
//! against (per-step cost grows with the prefix here, stays flat with the cache).

use super::{check_reorder, check_step, encoder::Encoded, OneRecModel};
use crate::generate::StepModel;
use anyhow::Result;
use candle_core::{Tensor, D};

/// [`StepModel`] over a [`OneRecModel`] that recomputes the full prefix every step.
pub struct Uncached<'a>(pub &'a OneRecModel);

/// Encoder output and the tokens fed so far, per row.
#[derive(Clone)]
pub struct UncachedState {
    enc: Encoded,
    tokens: Vec<Vec<u32>>,
}

impl StepModel for Uncached<'_> {
    type State = UncachedState;

    fn encode(&self, histories: &[&[u32]]) -> Result<UncachedState> {
        let enc = self.0.encode_histories(histories)?;
        Ok(UncachedState { enc, tokens: vec![Vec::new(); histories.len()] })
    }

    fn step(&self, state: &mut UncachedState, tokens: &[u32]) -> Result<Vec<f32>> {
        check_step(tokens, state.tokens.len(), self.0.vocab.size())?;
        for (row, &t) in state.tokens.iter_mut().zip(tokens) {
            row.push(t);
        }
        let rows = state.tokens.len();
        let len = state.tokens.first().map_or(0, |r| r.len());
        let flat: Vec<u32> = state.tokens.concat();
        let logits = self.0.decoder.forward(&flat, rows, len, &state.enc)?.logits;
        let last = logits.narrow(1, len - 1, 1)?.squeeze(1)?;
        let lp = candle_nn::ops::log_softmax(&last, D::Minus1)?;
        Ok(lp.flatten_all()?.to_vec1()?)
    }

    fn reorder(&self, state: &mut UncachedState, rows: &[u32]) -> Result<()> {
        check_reorder(rows, state.tokens.len())?;
        let idx = Tensor::from_vec(rows.to_vec(), rows.len(), &self.0.device)?;
        state.enc = Encoded { out: state.enc.out.index_select(&idx, 0)?, mask: state.enc.mask.index_select(&idx, 0)? };
        state.tokens = rows.iter().map(|&r| state.tokens[r as usize].clone()).collect();
        Ok(())
    }

    fn vocab_size(&self) -> usize {
        self.0.vocab.size()
    }

    fn item_logprobs(&self, state: &UncachedState) -> Result<Option<Vec<f32>>> {
        self.0.item_logprobs_of(&state.enc)
    }
}
