//! `<out>.run.json` beside an output file: how it was made (the command's arguments,
//! the resolved checkpoint and dataset, the checkpoint's step and seed), so any
//! result can be traced back and re-run.

use crate::model::checkpoint::CheckpointMeta;
use anyhow::Result;
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// `<out>.run.json` (e.g. `scores.tsv.run.json`).
pub fn path_for(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".run.json");
    out.with_file_name(name)
}

/// Writes the run record of `out` atomically. `facts` (an object) adds counts etc.
pub fn write(
    out: &Path,
    command: &str,
    args: &impl Serialize,
    ckpt_dir: &Path,
    meta: &CheckpointMeta,
    data: Option<&Path>,
    facts: Value,
) -> Result<()> {
    let mut rec = json!({
        "command": command,
        "version": env!("CARGO_PKG_VERSION"),
        "args": args,
        "checkpoint": ckpt_dir,
        "checkpoint_step": meta.step,
        "seed": meta.seed,
        "tokenizer_sha256": meta.tokenizer_sha256,
        "data": data,
    });
    if let (Some(r), Value::Object(f)) = (rec.as_object_mut(), facts) {
        r.extend(f);
    }
    let path = path_for(out);
    crate::util::io::write_json(&path, &rec)?;
    tracing::info!("wrote {}", path.display());
    Ok(())
}
