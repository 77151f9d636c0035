//! `onerec data`: prepare, stats, synth. Flags map onto `data::prepare::PrepareOptions`
//! and `data::stats`; no logic lives here.

use crate::data::prepare::{self, PrepareOptions, TimeUnit};
use crate::data::readers::TableOptions;
use crate::data::{stats, Dataset};
use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once
pub enum DataCommand {
    /// Read a sequence file or interaction table and write a prepared dataset.
    Prepare(PrepareArgs),
    /// Print counts, length distribution and the popularity baseline.
    Stats(StatsArgs),
    /// Write a synthetic world (interactions, embeddings, ground truth).
    Synth(super::synth::SynthArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TimeUnitArg {
    S,
    Ms,
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// Sequence file: one line per user, `user_id item_id item_id ...`, oldest first.
    #[arg(long, conflicts_with = "interactions", required_unless_present = "interactions")]
    pub sequences: Option<PathBuf>,
    /// Interaction table (CSV/TSV with a header line; `.gz` accepted).
    #[arg(long)]
    pub interactions: Option<PathBuf>,
    /// Output dataset directory (replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// User id column of the interaction table.
    #[arg(long, default_value = "user_id")]
    pub user_col: String,
    /// Item id column of the interaction table.
    #[arg(long, default_value = "item_id")]
    pub item_col: String,
    /// Timestamp column of the interaction table.
    #[arg(long, default_value = "timestamp")]
    pub time_col: String,
    /// Feature columns to keep (comma separated); default: every other all-numeric column.
    #[arg(long, value_delimiter = ',')]
    pub feature_cols: Option<Vec<String>>,
    /// Field delimiter (default: by extension .csv/.tsv, else sniffed). `\t` for tab.
    #[arg(long)]
    pub delimiter: Option<String>,
    /// Accept any text as user/item ids (default: non-negative integers only).
    #[arg(long)]
    pub string_ids: bool,
    /// Request/session id column: consecutive interactions with one value form a session.
    #[arg(long)]
    pub session_col: Option<String>,
    /// New session after a gap of more than SECS seconds (sequence files: positions).
    #[arg(long, value_name = "SECS")]
    pub session_gap: Option<f64>,
    /// Timestamp unit (default: ms when the time column ends in `_ms`, else s).
    #[arg(long, value_enum)]
    pub time_unit: Option<TimeUnitArg>,
    /// Items per session target.
    #[arg(long, default_value_t = 5)]
    pub session_len: usize,
    /// High-quality sessions: at least this many interactions.
    #[arg(long, default_value_t = 1)]
    pub min_session_items: usize,
    /// High-quality sessions: total watch time at least this (watch column units).
    #[arg(long)]
    pub min_watch_time: Option<f32>,
    /// Watch-time feature column (default: watch_time if present).
    #[arg(long)]
    pub watch_col: Option<String>,
    /// High-quality sessions: at least one positive value in the positive column.
    #[arg(long)]
    pub require_positive: bool,
    /// Positive-engagement feature column (default: like if present).
    #[arg(long)]
    pub positive_col: Option<String>,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// A prepared dataset directory.
    pub dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::Prepare(a) => run_prepare(a),
        DataCommand::Stats(a) => run_stats(a),
        DataCommand::Synth(a) => super::synth::run(a),
    }
}

fn delimiter(d: &str) -> Result<u8> {
    match d {
        "\\t" | "\t" | "tab" => Ok(b'\t'),
        s if s.len() == 1 => Ok(s.as_bytes()[0]),
        s => bail!("--delimiter must be one ASCII character or `\\t`, got `{s}`"),
    }
}

/// Maps the flags onto [`PrepareOptions`].
pub fn prepare_options(a: &PrepareArgs) -> Result<PrepareOptions> {
    Ok(PrepareOptions {
        table: TableOptions {
            user_col: a.user_col.clone(),
            item_col: a.item_col.clone(),
            time_col: a.time_col.clone(),
            session_col: a.session_col.clone(),
            feature_cols: a.feature_cols.clone(),
            delimiter: a.delimiter.as_deref().map(delimiter).transpose()?,
            string_ids: a.string_ids,
        },
        session_gap: a.session_gap,
        time_unit: a.time_unit.map(|u| match u {
            TimeUnitArg::S => TimeUnit::Seconds,
            TimeUnitArg::Ms => TimeUnit::Millis,
        }),
        session_len: a.session_len,
        min_session_items: a.min_session_items,
        min_watch_time: a.min_watch_time,
        watch_col: a.watch_col.clone(),
        require_positive: a.require_positive,
        positive_col: a.positive_col.clone(),
    })
}

fn run_prepare(a: PrepareArgs) -> Result<()> {
    let opts = prepare_options(&a)?;
    let ds = match (&a.sequences, &a.interactions) {
        (Some(p), None) => prepare::prepare_sequences(p, &opts)?,
        (None, Some(p)) => prepare::prepare_interactions(p, &opts)?,
        _ => bail!("give exactly one of --sequences or --interactions"),
    };
    prepare::write_dataset(&ds, &a.out)
}

fn run_stats(a: StatsArgs) -> Result<()> {
    let ds = Dataset::load(&a.dir)?;
    let s = stats::stats(&ds);
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(());
    }
    let h = &s.history_length;
    println!("dataset       {}", a.dir.display());
    println!("users         {}", s.users);
    println!("items         {}", s.items);
    println!("interactions  {} ({} in training parts)", s.interactions, s.train_interactions);
    println!("history len   min {} / median {} / mean {:.2} / max {}", h.min, h.median, h.mean, h.max);
    println!("features      {}", if s.features.is_empty() { "-".into() } else { s.features.join(", ") });
    println!("sessions      {} ({} high-quality; rule {})", s.sessions, s.high_quality_sessions, s.session_rule);
    for (name, m) in [("validation", &s.popularity.validation), ("test", &s.popularity.test)] {
        println!(
            "popularity    {name:<10} Recall@10 {:.4}  NDCG@10 {:.4}  ({} targets)",
            m.recall_at_10, m.ndcg_at_10, m.n
        );
    }
    Ok(())
}
