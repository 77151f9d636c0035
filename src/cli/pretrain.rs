//! `onerec pretrain`: thin wrapper over [`crate::train::pretrain`].

use crate::config::Config;
use crate::dist::GradSync;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// Config file or built-in name (tiny, small, beauty, amazon).
    #[arg(long)]
    pub config: String,
    /// Prepared dataset directory (`onerec data prepare`).
    #[arg(long)]
    pub data: PathBuf,
    /// Tokenizer directory (`onerec tokenize`).
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Output directory (best/, last/, metrics.jsonl, config.toml).
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from OUT/last.
    #[arg(long)]
    pub resume: bool,
    /// Config overrides, e.g. --set train.lr=1e-3 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

pub fn run(a: PretrainArgs) -> Result<()> {
    run_on(a, &crate::dist::Single)
}

/// Runs on every rank of `sync` (data-parallel under `mpirun`); rank 0 holds the output
/// lock and prints the summary.
pub fn run_on(a: PretrainArgs, sync: &dyn GradSync) -> Result<()> {
    let cfg = Config::load(&a.config, &a.set)?;
    let ds = crate::data::Dataset::load(&a.data).with_context(|| format!("loading dataset {}", a.data.display()))?;
    let sids = crate::tokenizer::SemanticIds::load(&a.tokenizer)?;
    let _lock = sync.is_leader().then(|| crate::util::lock::OutLock::acquire(&a.out)).transpose()?;
    let s = crate::train::pretrain_on(&cfg.pretrain_spec()?, &ds, &sids, &a.out, a.resume, sync)?;
    if !sync.is_leader() {
        return Ok(());
    }
    println!(
        "pretrained {} steps: best {} = {:.4} at step {}, last valid_loss {:.4}; wrote {}",
        s.steps,
        s.select_metric,
        s.best_value,
        s.best_step,
        s.last_valid_loss,
        a.out.display()
    );
    Ok(())
}
