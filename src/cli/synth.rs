//! `onerec data synth`: a seeded synthetic world with known ground truth.

use crate::world::{synth, SynthOptions};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 2000)]
    pub users: usize,
    #[arg(long, default_value_t = 1000)]
    pub items: usize,
    #[arg(long, default_value_t = 20)]
    pub topics: usize,
    /// Mean interactions per user.
    #[arg(long, default_value_t = 20)]
    pub mean_history: usize,
    #[arg(long, default_value_t = 5)]
    pub min_history: usize,
}

pub fn run(a: SynthArgs) -> Result<()> {
    let opts = SynthOptions {
        users: a.users,
        items: a.items,
        topics: a.topics,
        mean_history: a.mean_history,
        min_history: a.min_history,
        seed: a.seed,
        ..SynthOptions::default()
    };
    synth(&opts, &a.out)?;
    Ok(())
}
