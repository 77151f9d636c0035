//! `onerec recipe`: a real dataset directory through prepare -> embed (if needed) ->
//! tokenize -> pretrain -> eval, every setting from one config (see
//! [`crate::pipeline::recipe`]).

use crate::dist::GradSync;
use crate::pipeline::recipe::RecipeRun;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RecipeArgs {
    /// Raw data directory (e.g. ../shared/data/amazon-toys): sequences.txt.gz, and
    /// item_text_embeddings.safetensors or an item table to embed.
    pub data_dir: PathBuf,
    /// Output directory (data/, tok/, pre/, valid.json, test.json, results.md, recipe.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Config file or built-in name: its [data], [embed], [tokenizer], [model], [train]
    /// and [eval] sections are the whole recipe.
    #[arg(long, default_value = "beauty")]
    pub config: String,
    /// Config overrides, e.g. --set seed=43 --set tokenizer.align=false (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Continue a killed run (pretraining resumes from OUT/pre/last).
    #[arg(long)]
    pub resume: bool,
    /// Only re-run the evaluations of an existing OUT.
    #[arg(long)]
    pub eval_only: bool,
}

pub fn run(a: RecipeArgs) -> Result<()> {
    run_on(a, &crate::dist::Single)
}

/// Runs on every rank of `sync` (`mpirun -np N onerec recipe ...`: the training stages are
/// data-parallel, the rest runs on rank 0); rank 0 holds the output lock and prints the table.
pub fn run_on(a: RecipeArgs, sync: &dyn GradSync) -> Result<()> {
    let cfg = crate::config::Config::load(&a.config, &a.set)?;
    let _lock = sync.is_leader().then(|| crate::util::lock::OutLock::acquire(&a.out)).transpose()?;
    tracing::info!(
        "recipe {} on {} -> {} (seed {}, {} rank(s))",
        a.config,
        a.data_dir.display(),
        a.out.display(),
        cfg.seed,
        sync.world_size()
    );
    let run = RecipeRun { config: &cfg, data_dir: &a.data_dir, out: &a.out, resume: a.resume, eval_only: a.eval_only };
    crate::pipeline::recipe::run_on(&run, sync)?;
    if sync.is_leader() {
        print!("{}", std::fs::read_to_string(a.out.join("results.md"))?);
    }
    Ok(())
}
