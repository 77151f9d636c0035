//! Checkpoints: weights in safetensors, a JSON config beside them, the tokenizer's
//! codes, optimizer state for resuming. (Placeholder signatures; lands with pretraining.)

use super::OneRecModel;
use crate::tokenizer::SemanticIds;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// A loaded checkpoint: the model and the semantic ids it was trained with, re-indexed
/// to the training dataset's dense item ids.
pub struct Checkpoint {
    pub model: OneRecModel,
    pub semantic_ids: SemanticIds,
    pub dir: PathBuf,
}

/// Loads a checkpoint directory, or the best checkpoint of a pretrain/align output dir.
pub fn load(dir: &Path) -> Result<Checkpoint> {
    bail!("loading checkpoint {}: not implemented yet", dir.display())
}
