//! `onerec summarize`: the runs of one recipe (one per seed) as one table, mean ± std
//! per model, split and protocol (see [`crate::pipeline::summary`]).

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SummarizeArgs {
    /// Output directories of `onerec recipe` runs of one config (e.g. one per seed).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Also list every run's values.
    #[arg(long)]
    pub per_seed: bool,
    /// Write the markdown table here (atomically) as well as to standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(a: SummarizeArgs) -> Result<()> {
    let summary = crate::pipeline::summary::summarize(&a.runs)?;
    tracing::info!("{} evaluations of {} runs of config {}", summary.evals.len(), a.runs.len(), summary.config);
    let table = summary.markdown(a.per_seed);
    print!("{table}");
    if let Some(out) = &a.out {
        crate::util::io::atomic_write(out, table.as_bytes())?;
        tracing::info!("wrote {}", out.display());
    }
    Ok(())
}
