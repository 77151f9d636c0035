//! Evaluating a checkpoint from files: what `onerec eval` and the quickstart run.

use super::{evaluate, EvalOptions, EvalReport};
use crate::align::reward::RewardModel;
use crate::data::Dataset;
use crate::generate::users::{align_dataset, split_point, SplitSel};
use crate::tokenizer::Vocab;
use anyhow::{ensure, Context, Result};
use std::path::Path;

/// Evaluates checkpoint `checkpoint` (a checkpoint dir, or the `best/` of a run dir) on
/// the prepared dataset `data`. With `world`, adds `true_reward` (ground truth of the
/// synthetic world); with `reward`, adds `rm_reward` (the reward model's score, given
/// the same history the ranking used). `base` supplies everything else; its reward
/// hooks are ignored.
pub fn evaluate_checkpoint(
    checkpoint: &Path,
    data: &Path,
    split: SplitSel,
    base: &EvalOptions,
    world: Option<&Path>,
    reward: Option<&Path>,
) -> Result<EvalReport> {
    let ckpt = crate::model::checkpoint::load(checkpoint)?;
    let ids = &ckpt.semantic_ids;
    let vocab = Vocab::new(ids.codebook_sizes.clone());
    let ds = Dataset::load(data).with_context(|| format!("loading dataset {}", data.display()))?;
    let ds = align_dataset(&ds, ids)?;
    let world = world.map(crate::world::World::load).transpose()?;
    let rm = reward.map(RewardModel::load).transpose()?;
    if let Some(rm) = &rm {
        ensure!(
            rm.meta.n_items == ds.n_items(),
            "--reward: the reward model knows {} items but the dataset has {}; train it on this dataset",
            rm.meta.n_items,
            ds.n_items()
        );
    }
    let true_reward = |u: usize, s: &[u32]| -> Result<f64> {
        let w = world.as_ref().context("no world")?;
        let items: Vec<&str> = s.iter().map(|&i| ids.item_ids[i as usize].as_str()).collect();
        w.expected_session_reward(&ds.user_ids[u], &items)
    };
    let rm_reward = |u: usize, s: &[u32]| -> Result<f64> {
        let rm = rm.as_ref().context("no reward model")?;
        let end = split_point(&ds, u, split).map(|p| p.0).unwrap_or(ds.history(u).len());
        Ok(rm.score(&[&ds.history(u)[..end]], &[s])?[0] as f64)
    };
    let opts = EvalOptions {
        true_reward: world.is_some().then_some(&true_reward as _),
        rm_reward: rm.is_some().then_some(&rm_reward as _),
        ..base.clone()
    };
    evaluate(&ckpt.model, ids, &vocab, &ds, split, &opts)
}

/// Evaluates a SASRec checkpoint (`checkpoint`, or its `best/`) on the prepared dataset
/// `data` with the protocol flags of `base` (cut-offs, `exclude_history`, `max_users`,
/// `batch_users`); every item is scored, so there is no beam and no session pass.
pub fn evaluate_sasrec_checkpoint(
    checkpoint: &Path,
    data: &Path,
    split: SplitSel,
    base: &EvalOptions,
) -> Result<EvalReport> {
    let ck = crate::baseline::sasrec::load(checkpoint)?;
    let ds = Dataset::load(data).with_context(|| format!("loading dataset {}", data.display()))?;
    crate::baseline::sasrec::checkpoint::check_dataset(&ck.meta, &ck.dir, &ds)?;
    let t0 = std::time::Instant::now();
    let r = crate::baseline::sasrec::evaluate_sasrec(
        &ck.model,
        &ds,
        split,
        &base.ks,
        base.exclude_history,
        base.max_users,
        base.batch_users,
    )?;
    tracing::info!("evaluated SASRec on {} users ({split}) in {:.1}s", r.users, t0.elapsed().as_secs_f64());
    Ok(r)
}
