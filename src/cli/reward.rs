//! `onerec reward`: train the session reward model.

use crate::config::Config;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RewardArgs {
    /// Config file or built-in name (tiny, small, beauty, amazon); its `[reward]` section is used.
    #[arg(long)]
    pub config: String,
    /// Override a config key, e.g. `--set reward.epochs=3` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Prepared dataset directory.
    #[arg(long)]
    pub data: PathBuf,
    /// Tokenizer directory (its codes.tsv fingerprint is recorded).
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Output directory (replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: RewardArgs) -> Result<()> {
    let cfg = Config::load(&args.config, &args.set)?;
    let ds = crate::data::Dataset::load(&args.data)?;
    let _lock = crate::util::lock::OutLock::acquire(&args.out)?;
    let report = crate::align::train_reward_model(&cfg.reward_spec()?, &ds, &args.tokenizer, &args.out)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
