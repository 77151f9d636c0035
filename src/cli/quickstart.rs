//! `onerec quickstart`: every stage built so far on a fresh synthetic world.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct QuickstartArgs {
    /// Output directory (world/, data/, tokenizer/, pretrain/, reward/, aligned/, summary.json).
    #[arg(long, default_value = "runs/quickstart")]
    pub out: PathBuf,
    /// Seed for the world and every stage.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

pub fn run(_args: QuickstartArgs) -> Result<()> {
    Err(super::not_implemented("quickstart"))
}
