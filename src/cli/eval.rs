//! `onerec eval`: leave-one-out Recall@K / NDCG@K and friends (see [`crate::eval`]).

use crate::data::Dataset;
use crate::eval::{evaluate, EvalOptions};
use crate::generate::users::{align_dataset, split_point, SplitSel};
use crate::model::Vocab;
use anyhow::{ensure, Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint directory (or a pretrain/align output directory).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Prepared dataset directory.
    #[arg(long)]
    pub data: PathBuf,
    /// valid | test.
    #[arg(long, default_value = "test")]
    pub split: SplitSel,
    /// Cut-offs, comma separated.
    #[arg(long, default_value = "5,10,20", value_delimiter = ',')]
    pub k: Vec<usize>,
    /// Beam width for ranking (raised to the largest K).
    #[arg(long, default_value_t = 20)]
    pub beam: usize,
    /// Session length for diversity and rewards (0 skips that pass).
    #[arg(long, default_value_t = 5)]
    pub session_len: usize,
    /// Beam width when generating those sessions.
    #[arg(long, default_value_t = 10)]
    pub session_beam: usize,
    /// Never recommend items from the user's history.
    #[arg(long)]
    pub exclude_history: bool,
    /// Users decoded together in one batch (batches run in parallel).
    #[arg(long, default_value_t = 64)]
    pub batch_users: usize,
    /// Evaluate an evenly spaced deterministic subset of at most N users.
    #[arg(long)]
    pub max_users: Option<usize>,
    /// Synthetic world directory: adds `true_reward`.
    #[arg(long)]
    pub world: Option<PathBuf>,
    /// Reward model directory: adds `rm_reward`.
    #[arg(long)]
    pub reward: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report here (atomically).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let ckpt = crate::model::checkpoint::load(&a.checkpoint)?;
    let ids = &ckpt.semantic_ids;
    let vocab = Vocab::new(ids.codebook_sizes.clone());
    let ds = Dataset::load(&a.data).with_context(|| format!("loading dataset {}", a.data.display()))?;
    let ds = align_dataset(&ds, ids)?;
    let world = a.world.as_deref().map(crate::world::World::load).transpose()?;
    let true_reward = |u: usize, s: &[u32]| -> Result<f64> {
        let w = world.as_ref().context("no world")?;
        let items: Vec<&str> = s.iter().map(|&i| ids.item_ids[i as usize].as_str()).collect();
        w.expected_session_reward(&ds.user_ids[u], &items)
    };
    let rm = a.reward.as_deref().map(crate::align::reward::RewardModel::load).transpose()?;
    if let Some(rm) = &rm {
        ensure!(
            rm.meta.n_items == ds.n_items(),
            "--reward: the reward model knows {} items but the dataset has {}; train it on this dataset",
            rm.meta.n_items,
            ds.n_items()
        );
    }
    let rm_reward = |u: usize, s: &[u32]| -> Result<f64> {
        let rm = rm.as_ref().context("no reward model")?;
        let end = split_point(&ds, u, a.split).map(|p| p.0).unwrap_or(ds.history(u).len());
        Ok(rm.score(&[&ds.history(u)[..end]], &[s])?[0] as f64)
    };
    let opts = EvalOptions {
        ks: a.k.clone(),
        beam: a.beam,
        session_len: a.session_len,
        session_beam: a.session_beam,
        exclude_history: a.exclude_history,
        batch_users: a.batch_users,
        max_users: a.max_users,
        true_reward: world.is_some().then_some(&true_reward as _),
        rm_reward: rm.is_some().then_some(&rm_reward as _),
    };
    let report = evaluate(&ckpt.model, ids, &vocab, &ds, a.split, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    if let Some(out) = &a.out {
        crate::util::io::write_json(out, &report)?;
        tracing::info!("wrote {}", out.display());
    }
    Ok(())
}
