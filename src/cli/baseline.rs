//! `onerec baseline`: ID-only baselines scored by the same metric code as `eval`.

use crate::baseline::popularity::evaluate_popularity;
use crate::baseline::sasrec::{train_sasrec_on, SasrecConfig};
use crate::data::Dataset;
use crate::dist::GradSync;
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
    /// Train CE-SASRec (full-softmax cross-entropy); evaluate it with `onerec eval`.
    Sasrec(SasrecArgs),
    /// Write a trained SASRec's item embeddings (`onerec tokenize --embeddings collab=FILE`).
    SasrecEmbeddings(SasrecEmbeddingsArgs),
}

#[derive(Args, Debug, serde::Serialize)]
pub struct SasrecEmbeddingsArgs {
    /// SASRec checkpoint (an `onerec baseline sasrec` output directory or a checkpoint in it).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The prepared dataset it was trained on (its item ids key the rows).
    #[arg(long)]
    pub data: PathBuf,
    /// Output `.safetensors` (item ids in it, or in `OUT.item_ids.txt` when not integers).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug, serde::Serialize)]
pub struct SasrecArgs {
    /// Prepared dataset directory (`onerec data prepare`).
    #[arg(long)]
    pub data: PathBuf,
    /// Output directory (best/, last/, metrics.jsonl, config.toml, summary.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Config file or the built-in name `sasrec` (configs/sasrec.toml).
    #[arg(long, default_value = "sasrec")]
    pub config: String,
    /// Config overrides, e.g. --set model.dropout=0.3 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run seed (overrides the config's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue from OUT/last.
    #[arg(long)]
    pub resume: bool,
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
    run_on(a, &crate::dist::Single)
}

/// `baseline sasrec` runs on every rank of `sync` (data-parallel under `mpirun`); the
/// other baselines run in one process ([`crate::cli::run_on`] refuses more ranks for them).
pub fn run_on(a: BaselineArgs, sync: &dyn GradSync) -> Result<()> {
    match a.command {
        BaselineCommand::Popularity(p) => popularity(p),
        BaselineCommand::Sasrec(s) => sasrec(s, sync),
        BaselineCommand::SasrecEmbeddings(e) => sasrec_embeddings(e),
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

/// Rank 0 holds the output lock and prints the summary.
fn sasrec(a: SasrecArgs, sync: &dyn GradSync) -> Result<()> {
    let mut cfg = SasrecConfig::load(&a.config, &a.set)?;
    if let Some(seed) = a.seed {
        cfg.seed = seed;
    }
    let ds = Dataset::load(&a.data).with_context(|| format!("loading dataset {}", a.data.display()))?;
    let _lock = sync.is_leader().then(|| crate::util::lock::OutLock::acquire(&a.out)).transpose()?;
    let s = train_sasrec_on(&cfg, &ds, &a.out, a.resume, sync)?;
    if !sync.is_leader() {
        return Ok(());
    }
    println!(
        "trained SASRec {} epochs (early stop: {}): best valid NDCG@10 {:.4} / Recall@10 {:.4} at epoch {}; wrote {}",
        s.epochs,
        s.stopped_early,
        s.best_valid_ndcg10,
        s.best_valid_recall10,
        s.best_epoch,
        a.out.display()
    );
    Ok(())
}

fn sasrec_embeddings(a: SasrecEmbeddingsArgs) -> Result<()> {
    let ds = Dataset::load(&a.data).with_context(|| format!("loading dataset {}", a.data.display()))?;
    let emb = crate::baseline::export::sasrec_item_embeddings(&a.checkpoint, &ds)?;
    let sidecar = crate::data::embeddings::save_with_ids(&a.out, &emb, false)?;
    crate::util::record::RunRecord::new("baseline sasrec-embeddings")
        .set("args", &a)?
        .set("items", emb.n)?
        .set("dim", emb.d)?
        .set("item_ids_file", sidecar)?
        .write_beside(&a.out)?;
    tracing::info!("wrote {} ({} items x {})", a.out.display(), emb.n, emb.d);
    Ok(())
}
