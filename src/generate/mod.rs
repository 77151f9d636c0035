//! Constrained beam search over the semantic-ID trie with a KV cache; batch scoring.
//!
//! Decoding is written against [`StepModel`], so the search is testable with a
//! hand-made model and the real [`crate::model`] plugs in by implementing it.

/// What beam search needs from a model: encode histories once, then feed one token
/// per row and get log-probabilities over the whole vocabulary back.
///
/// Rows are (user, beam) pairs laid out by the caller; `reorder` selects and
/// duplicates rows (e.g. `[0,0,0,1,1,1]` expands 2 users to 3 beams each, and a beam
/// step passes the parent row of every surviving beam), moving KV caches with them.
pub trait StepModel {
    /// Cloning a state is cheap (shared tensors) and lets one encoding serve several
    /// decodings (fused ranking: the beam, the item head and teacher forcing).
    type State: Clone;
    /// Encodes one history per row (dense dataset item ids, oldest first). The
    /// state holds the encoder output, cross-attention K/V and an empty KV cache.
    fn encode(&self, histories: &[&[u32]]) -> anyhow::Result<Self::State>;
    /// Feeds `tokens[r]` to row r (the first call feeds BOS), returns log-softmax
    /// over the vocabulary, row-major [rows, vocab].
    fn step(&self, state: &mut Self::State, tokens: &[u32]) -> anyhow::Result<Vec<f32>>;
    /// Keeps rows `rows` (indices into the current rows, repeats allowed), in order.
    fn reorder(&self, state: &mut Self::State, rows: &[u32]) -> anyhow::Result<()>;
    /// Vocabulary size (length of each row returned by `step`).
    fn vocab_size(&self) -> usize;
    /// Log-softmax over the whole catalogue from an item head, row-major
    /// [histories, n_items], read off a state as `encode` returned it (before any
    /// step or reorder); `None` for a model without one (used by fused ranking).
    fn item_logprobs(&self, _state: &Self::State) -> anyhow::Result<Option<Vec<f32>>> {
        Ok(None)
    }
}

pub mod batch;
pub mod beam;
pub mod forced;
pub mod fused;
pub mod index;
/// Test doubles (a hash language model, random catalogues): `testkit` feature only.
#[cfg(any(test, feature = "testkit"))]
pub mod mock;
pub mod sample;
pub mod score;
pub mod users;

pub use batch::{generate_batched, rank_batched, write_generate_jsonl};
pub use beam::{beam_search, beam_search_with, BeamOptions, DecodeStats, Hypothesis};
pub use forced::{teacher_forced_logprob, teacher_forced_logprob_rows};
pub use fused::{fused_search, Fusion};
pub use index::DecodeIndex;
pub use sample::sample_sessions;
pub use users::{Shard, SplitSel, UserQuery};
