//! `onerec align`: iterative preference alignment of a pretrained checkpoint.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct AlignArgs {
    /// Config file or built-in name; its `[align]` section is used.
    #[arg(long)]
    pub config: String,
    /// Override a config key, e.g. `--set align.iterations=3` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Pretrained checkpoint directory (the starting policy and first reference).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Reward model directory written by `onerec reward`.
    #[arg(long)]
    pub reward: PathBuf,
    /// Prepared dataset directory.
    #[arg(long)]
    pub data: PathBuf,
    /// Output directory: per-iteration checkpoints and state.json; rerun to resume.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: AlignArgs) -> Result<()> {
    let cfg = crate::config::Config::load(&args.config, &args.set)?;
    crate::align::onerec::run(&cfg, &args.checkpoint, &args.reward, &args.data, &args.out)
}
