//! `onerec quickstart`: every stage on a fresh synthetic world with the tiny config,
//! through [`crate::pipeline::synthetic`] (the same library run the pipeline test uses).

use crate::pipeline::synthetic::SyntheticRun;
use crate::world::SynthOptions;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct QuickstartArgs {
    /// Output directory (world/, data/, tokenizer/, pretrain/, reward/, aligned/, summary.json).
    #[arg(long, default_value = "runs/quickstart")]
    pub out: PathBuf,
    /// Seed for the world and every stage.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Config (a path or built-in name).
    #[arg(long, default_value = "tiny")]
    pub config: String,
    /// Config overrides, e.g. --set align.lambda=0 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Synthetic users (smaller is faster).
    #[arg(long, default_value_t = 2000)]
    pub users: usize,
    /// Synthetic items.
    #[arg(long, default_value_t = 1000)]
    pub items: usize,
}

pub fn run(a: QuickstartArgs) -> Result<()> {
    let started = Instant::now();
    let mut overrides = vec![format!("seed={}", a.seed)];
    overrides.extend(a.set.iter().cloned());
    let cfg = crate::config::Config::load(&a.config, &overrides)?;
    let run = SyntheticRun {
        world: SynthOptions { users: a.users, items: a.items, seed: a.seed, ..SynthOptions::default() },
        config: &cfg,
        out: &a.out,
        config_label: a.config.clone(),
        overrides: a.set.clone(),
    };
    let outcome = crate::pipeline::synthetic::run(&run)?;
    println!("\n{:<10} {:>12} {:>12} {:>10} {:>10}", "model", "true_reward", "rm_reward", "recall@10", "ndcg@10");
    for (name, r) in [("pretrain", &outcome.pretrained), ("aligned", &outcome.aligned)] {
        let metric = |k: &str| r.metrics.get(k).copied().unwrap_or(f64::NAN);
        println!(
            "{name:<10} {:>12.4} {:>12.4} {:>10.4} {:>10.4}",
            r.true_reward.unwrap_or(f64::NAN),
            r.rm_reward.unwrap_or(f64::NAN),
            metric("recall@10"),
            metric("ndcg@10")
        );
    }
    println!("quickstart finished in {:.1}s; outputs in {}", started.elapsed().as_secs_f64(), a.out.display());
    Ok(())
}
