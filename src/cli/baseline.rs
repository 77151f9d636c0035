//! `onerec baseline`: ID-only baselines scored by the same metric code as `eval`.

use crate::baseline::popularity::evaluate_popularity;
use crate::data::Dataset;
use crate::generate::users::SplitSel;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct BaselineArgs {
    #[command(subcommand)]
    pub command: BaselineCommand,
}

#[derive(Subcommand, Debug)]
pub enum BaselineCommand {
    /// Rank every user's list by training-part popularity and evaluate it.
    Popularity(PopularityArgs),
    /// SASRec with full-softmax CE (not implemented yet).
    Sasrec,
}

#[derive(Args, Debug)]
pub struct PopularityArgs {
    /// Prepared dataset directory.
    #[arg(long)]
    pub data: PathBuf,
    /// valid | test.
    #[arg(long, default_value = "test")]
    pub split: SplitSel,
    /// Cut-offs, comma separated.
    #[arg(long, default_value = "5,10,20", value_delimiter = ',')]
    pub k: Vec<usize>,
    /// Never recommend items from the user's history.
    #[arg(long)]
    pub exclude_history: bool,
    /// Evaluate an evenly spaced deterministic subset of at most N users.
    #[arg(long)]
    pub max_users: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: BaselineArgs) -> Result<()> {
    match a.command {
        BaselineCommand::Popularity(p) => popularity(p),
        BaselineCommand::Sasrec => Err(super::not_implemented("baseline sasrec")),
    }
}

fn popularity(a: PopularityArgs) -> Result<()> {
    let ds = Dataset::load(&a.data).with_context(|| format!("loading dataset {}", a.data.display()))?;
    tracing::info!(
        "popularity baseline on {} ({:?}, exclude_history={})",
        a.data.display(),
        a.split,
        a.exclude_history
    );
    let report = evaluate_popularity(&ds, a.split, &a.k, a.exclude_history, a.max_users)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
