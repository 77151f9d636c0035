//! The OneRec model: an encoder over the user's history (items as sums of their
//! semantic-ID token embeddings) and a decoder with sparse Mixture-of-Experts
//! feed-forward layers that generates a session token by token.

pub mod vocab;

pub use vocab::Vocab;

use serde::{Deserialize, Serialize};

/// Model architecture (the `[model]` config section).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {}

impl ModelConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

pub mod checkpoint;

use crate::generate::StepModel;
use anyhow::{bail, Result};
use candle_core::Tensor;

/// The encoder / sparse-MoE decoder model. (Placeholder: the real model lands with
/// the pretraining issue; these signatures are what other stages call.)
pub struct OneRecModel {
    pub vocab: Vocab,
}

/// Decoding state for a batch of rows (placeholder).
pub struct DecodeState;

impl OneRecModel {
    /// Sum of the log-probabilities of each session's tokens (all its items' code
    /// tokens, teacher-forced) given each history: a differentiable [B] tensor.
    /// `histories` and `sessions` hold dense dataset item ids.
    pub fn sequence_logprob(&self, _histories: &[&[u32]], _sessions: &[&[u32]]) -> Result<Tensor> {
        bail!("OneRecModel is not implemented yet")
    }
}

impl StepModel for OneRecModel {
    type State = DecodeState;
    fn encode(&self, _histories: &[&[u32]]) -> Result<DecodeState> {
        bail!("OneRecModel is not implemented yet")
    }
    fn step(&self, _state: &mut DecodeState, _tokens: &[u32]) -> Result<Vec<f32>> {
        bail!("OneRecModel is not implemented yet")
    }
    fn reorder(&self, _state: &mut DecodeState, _rows: &[u32]) -> Result<()> {
        bail!("OneRecModel is not implemented yet")
    }
    fn vocab_size(&self) -> usize {
        self.vocab.size()
    }
}
