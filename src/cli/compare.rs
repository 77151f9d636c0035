//! `onerec compare`: two models' per-user rank files (`onerec eval --per-user`, or the
//! `*.users.tsv` a recipe writes) compared pair by pair (see [`crate::eval::compare`]).

use crate::eval::compare::{compare, CompareOptions};
use crate::eval::per_user::read_tsv;
use anyhow::{ensure, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Per-user rank file of model A.
    pub a: PathBuf,
    /// Per-user rank file of model B (the same users and targets).
    pub b: PathBuf,
    /// Names of A and B in the table, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = ["A".to_string(), "B".to_string()])]
    pub names: Vec<String>,
    /// Cut-offs, comma separated.
    #[arg(long, default_value = "5,10,20", value_delimiter = ',')]
    pub k: Vec<usize>,
    /// Bootstrap resamples of the users for the intervals (0: none).
    #[arg(long, default_value_t = 1000)]
    pub resamples: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Upper ends of the history-length buckets, comma separated.
    #[arg(long, default_value = "5,10,20", value_delimiter = ',')]
    pub buckets: Vec<usize>,
    /// Print JSON instead of markdown.
    #[arg(long)]
    pub json: bool,
    /// Also write the markdown (or, with --json, the JSON) here, atomically.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(a: CompareArgs) -> Result<()> {
    ensure!(a.names.len() == 2, "--names takes two names, comma separated (got {})", a.names.len());
    let (ra, rb) = (read_tsv(&a.a)?, read_tsv(&a.b)?);
    tracing::info!("read {} ({} users) and {} ({} users)", a.a.display(), ra.len(), a.b.display(), rb.len());
    let opts =
        CompareOptions { ks: a.k.clone(), resamples: a.resamples, seed: a.seed, bucket_edges: a.buckets.clone() };
    let c = compare(&ra, &rb, &opts)?;
    let text = if a.json { serde_json::to_string_pretty(&c)? + "\n" } else { c.markdown(&a.names[0], &a.names[1]) };
    print!("{text}");
    if let Some(out) = &a.out {
        crate::util::io::atomic_write(out, text.as_bytes())?;
        tracing::info!("wrote {}", out.display());
    }
    Ok(())
}
