//! Wiring of the real OneRec model into alignment (`onerec align`).
//!
//! [`run`] validates every input (config, dataset, reward model vs checkpoint tokenizer
//! and feature set) and then needs two things the model/generation stages provide:
//! [`super::iterate::Policy`] for the checkpoint's model (sequence log-probs, sorted
//! vars, deep copy, save/load) and a [`super::iterate::SessionGenerator`] backed by
//! `generate::beam_search`. Until those land, it stops with a clear error after the
//! checks, never with a fake result.

use super::reward::RewardModel;
use crate::config::Config;
use crate::data::Dataset;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// The tokenizer fingerprint of a checkpoint directory (sha256 of its `codes.tsv`).
pub fn checkpoint_tokenizer_sha(dir: &Path) -> Result<String> {
    crate::tokenizer::SemanticIds::fingerprint(dir).with_context(|| {
        format!("checkpoint {}: no codes.tsv, cannot tell which tokenizer it was trained with", dir.display())
    })
}

/// `onerec align`: aligns the checkpoint against the reward model, writing `out`.
pub fn run(cfg: &Config, checkpoint: &Path, reward: &Path, data: &Path, out: &Path) -> Result<()> {
    cfg.align.validate().context("[align]")?;
    let rm = RewardModel::load(reward)?;
    let ds = Dataset::load(data)?;
    let ckpt = crate::model::checkpoint::load(checkpoint)?;
    let sha = checkpoint_tokenizer_sha(&ckpt.dir)?;
    rm.check_compatible(&sha, &ds.manifest.features, ds.n_items())?;
    let (_users, hs) = super::iterate::train_histories(&ds);
    tracing::info!(users = hs.len(), out = %out.display(), "alignment inputs verified");
    bail!(
        "`onerec align`: inputs verified, but the OneRec model does not implement align::Policy \
         and beam-search generation has not landed yet (see src/align/onerec.rs)"
    )
}
