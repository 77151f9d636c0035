//! The command line: parses arguments and calls the library. Each subcommand lives in
//! its own file with its argument struct and a `run` function; no logic lives here.

use anyhow::Result;
use clap::{Parser, Subcommand};

pub mod align;
pub mod baseline;
pub mod compare;
pub mod data;
pub mod embed;
pub mod eval;
pub mod generate;
pub mod merge;
pub mod pretrain;
pub mod quickstart;
pub mod recipe;
pub mod record;
pub mod report;
pub mod reward;
pub mod score;
pub mod serve;
pub mod serve_bench;
pub mod summarize;
pub mod synth;
pub mod tokenize;

#[derive(Parser, Debug)]
#[command(name = "onerec", version, about = "End-to-end generative recommender (OneRec-style) on candle")]
pub struct Cli {
    /// More logging (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Worker threads for rayon and candle's matmuls (default: all cores).
    /// candle's element-wise ops run on one thread unless CANDLE_NUM_THREADS is set.
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Prepare datasets, print statistics, or synthesize a world.
    Data(data::DataArgs),
    /// Compute item text embeddings with a local BERT sentence model.
    Embed(embed::EmbedArgs),
    /// Fit the semantic-ID tokenizer on item embeddings.
    Tokenize(tokenize::TokenizeArgs),
    /// Pretrain the encoder / MoE decoder with next-token prediction.
    Pretrain(pretrain::PretrainArgs),
    /// Train the session reward model.
    Reward(reward::RewardArgs),
    /// Iterative preference alignment (DPO) of a pretrained model.
    Align(align::AlignArgs),
    /// Generate recommendations (sessions) for users with constrained beam search.
    Generate(generate::GenerateArgs),
    /// Score (user, candidate item) pairs with the model's log-probability.
    Score(score::ScoreArgs),
    /// Join the shard outputs of one generate/score run into the unsharded file.
    Merge(merge::MergeArgs),
    /// A self-contained HTML report (SVG charts) of a run directory.
    Report(report::ReportArgs),
    /// Offline evaluation: Recall@K, NDCG@K, coverage, reward.
    Eval(eval::EvalArgs),
    /// Two models on the same users, pair by pair: differences with bootstrap intervals.
    Compare(compare::CompareArgs),
    /// Online recommendation server (HTTP/JSON) with dynamic batching.
    Serve(serve::ServeArgs),
    /// Load generator for `onerec serve`: throughput and latency quantiles.
    ServeBench(serve_bench::ServeBenchArgs),
    /// Run the whole pipeline on a fresh synthetic world with the tiny config.
    Quickstart(quickstart::QuickstartArgs),
    /// Run a whole recipe (prepare, embed, tokenize, pretrain, eval) on a data directory.
    Recipe(recipe::RecipeArgs),
    /// Mean ± std over recipe runs (seeds) of one config, beside their CE-SASRec.
    Summarize(summarize::SummarizeArgs),
    /// ID-only baselines (popularity, CE-SASRec) in the same eval harness.
    Baseline(baseline::BaselineArgs),
}

/// Runs a parsed command line in one process.
pub fn run(cli: Cli) -> Result<()> {
    run_on(cli, &crate::dist::Single)
}

/// Runs a parsed command line on the ranks of `sync` (`src/main.rs`: MPI under `mpirun`).
/// `pretrain`, `align` and `baseline sasrec` are data-parallel; every other command
/// refuses more than one rank.
pub fn run_on(cli: Cli, sync: &dyn crate::dist::GradSync) -> Result<()> {
    if !cli.command.data_parallel() {
        let name = format!("{:?}", cli.command).split('(').next().unwrap_or_default().to_lowercase();
        crate::dist::require_single(sync, &format!("`onerec {name}`"))?;
    }
    if let Some(n) = cli.threads {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
    // candle's element-wise thread pool busy-waits for its workers; when another
    // process holds a core the waiting thread spins away its time slice (profiled on a
    // loaded 2-core machine: 64% of a training run's CPU). Matmuls (gemm, on rayon) stay
    // multi-threaded; only element-wise ops run on the calling thread. Set
    // CANDLE_NUM_THREADS to override.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    crate::util::alloc::keep_freed_memory();
    match cli.command {
        Command::Data(a) => data::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Tokenize(a) => tokenize::run(a),
        Command::Pretrain(a) => pretrain::run_on(a, sync),
        Command::Reward(a) => reward::run(a),
        Command::Align(a) => align::run_on(a, sync),
        Command::Generate(a) => generate::run(a),
        Command::Score(a) => score::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Report(a) => report::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Serve(a) => serve::run(a),
        Command::ServeBench(a) => serve_bench::run(a),
        Command::Quickstart(a) => quickstart::run(a),
        Command::Recipe(a) => recipe::run_on(a, sync),
        Command::Summarize(a) => summarize::run(a),
        Command::Baseline(a) => baseline::run_on(a, sync),
    }
}

impl Command {
    /// Whether the command trains data-parallel when started on several ranks.
    fn data_parallel(&self) -> bool {
        match self {
            Command::Pretrain(_) | Command::Align(_) | Command::Recipe(_) => true,
            Command::Baseline(b) => matches!(b.command, baseline::BaselineCommand::Sasrec(_)),
            _ => false,
        }
    }
}
