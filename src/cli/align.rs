//! `onerec align`: iterative preference alignment of a pretrained checkpoint.

use crate::config::Config;
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
    /// Synthetic world directory: logs the ground-truth reward of held-out generations.
    #[arg(long)]
    pub world: Option<PathBuf>,
    /// Preference objective, overriding `align.objective`: dpo (chosen vs rejected
    /// pairs) or grpo (group-normalised advantages, ECPO clipping).
    #[arg(long, value_parser = ["dpo", "grpo"])]
    pub objective: Option<String>,
}

pub fn run(args: AlignArgs) -> Result<()> {
    run_on(args, &crate::dist::Single)
}

/// Runs on every rank of `sync` (data-parallel under `mpirun`); rank 0 holds the output
/// lock and prints the iterations.
pub fn run_on(args: AlignArgs, sync: &dyn crate::dist::GradSync) -> Result<()> {
    let mut set = args.set.clone();
    if let Some(o) = &args.objective {
        set.push(format!("align.objective=\"{o}\""));
    }
    let cfg = Config::load(&args.config, &set)?;
    let _lock = sync.is_leader().then(|| crate::util::lock::OutLock::acquire(&args.out)).transpose()?;
    let outcome = crate::align::onerec::run_on(
        &cfg.align_spec()?,
        &args.checkpoint,
        &args.reward,
        &args.data,
        &args.out,
        args.world.as_deref(),
        sync,
    )?;
    if !sync.is_leader() {
        return Ok(());
    }
    for it in &outcome.state.iterations {
        println!(
            "iteration {}: pairs {} reward mean {:.4} best {:.4} | dpo {:.4} acc {:.3} margin {:.4} | {:?}",
            it.iteration,
            it.pairs,
            it.mean_reward,
            it.mean_best_reward,
            it.train.pref_loss,
            it.train.accuracy,
            it.train.margin,
            it.eval
        );
    }
    Ok(())
}
