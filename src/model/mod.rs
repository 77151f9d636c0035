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
