//! `onerec merge`: joins the shard outputs of one `generate` / `score` run into the
//! unsharded file (see [`crate::shard::merge`]).

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The merged output: the `--out` the shards were given (with `--shard auto` they
    /// wrote `recs.shard-IIII-of-NNNN.jsonl` beside it).
    #[arg(long)]
    pub out: PathBuf,
    /// Shard files, any order (default: every `<out stem>.shard-*-of-*.<ext>` beside --out).
    pub shards: Vec<PathBuf>,
}

pub fn run(a: MergeArgs) -> Result<()> {
    let inputs = if a.shards.is_empty() { crate::shard::merge::discover(&a.out)? } else { a.shards };
    let r = crate::shard::merge::merge(&inputs, &a.out)?;
    tracing::info!("merged {} shards ({} lines, {} bytes) into {}", r.shards, r.lines, r.bytes, r.out.display());
    Ok(())
}
