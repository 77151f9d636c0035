//! The run record of a command that used a checkpoint (eval, generate, score): a
//! [`RunRecord`] with the command's arguments, the resolved checkpoint and dataset, and
//! the checkpoint's step, seed and tokenizer.

use crate::model::checkpoint::CheckpointMeta;
use crate::util::record::RunRecord;
use anyhow::Result;
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

pub use crate::util::record::path_for;

/// Writes `<out>.run.json` atomically. `facts` (an object) adds counts etc.
pub fn write(
    out: &Path,
    command: &str,
    args: &impl Serialize,
    ckpt_dir: &Path,
    meta: &CheckpointMeta,
    data: Option<&Path>,
    facts: Value,
) -> Result<()> {
    checkpoint_record(command, args, ckpt_dir, meta, data)?.extend(facts).write_beside(out)?;
    Ok(())
}

/// The record's common part for a command that read checkpoint `ckpt_dir`.
pub fn checkpoint_record(
    command: &str,
    args: &impl Serialize,
    ckpt_dir: &Path,
    meta: &CheckpointMeta,
    data: Option<&Path>,
) -> Result<RunRecord> {
    RunRecord::new(command)
        .set("args", args)?
        .set("checkpoint", ckpt_dir)?
        .set("checkpoint_step", meta.step)?
        .set("seed", meta.seed)?
        .set("tokenizer_sha256", &meta.tokenizer_sha256)?
        .set("data", data)
}
