//! `onerec data`: prepare, stats, synth.

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Read a sequence file or interaction table and write a prepared dataset.
    Prepare {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        rest: Vec<String>,
    },
    /// Print counts, length distribution and the popularity baseline.
    Stats {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        rest: Vec<String>,
    },
    /// Write a synthetic world (interactions, embeddings, ground truth).
    Synth(super::synth::SynthArgs),
}

pub fn run(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::Prepare { .. } => Err(super::not_implemented("data prepare")),
        DataCommand::Stats { .. } => Err(super::not_implemented("data stats")),
        DataCommand::Synth(a) => super::synth::run(a),
    }
}
