//! Full ranking with a SASRec model: every item scored by one matmul per user batch,
//! the user's history items optionally masked, the top K kept, and the lists scored by
//! [`crate::eval::ranking_metrics`] (the code the generative model and popularity use).

use super::model::{Sasrec, SeqBatch};
use crate::data::Dataset;
use crate::dist::{all_gather_lists, shard_range, GradSync, Single};
use crate::eval::{subsample, EvalReport};
use crate::generate::users::{users_from_split, SplitSel, UserQuery};
use anyhow::{ensure, Result};
use candle_core::Device;
use rayon::prelude::*;
use std::collections::HashSet;

/// The `k` best items of `scores` (higher first; ties by smaller item id), skipping
/// `masked`: one pass keeping a sorted buffer of the best `k` so far.
pub fn top_k(scores: &[f32], k: usize, masked: &HashSet<u32>) -> Vec<u32> {
    let before = |a: (f32, u32), b: (f32, u32)| a.0 > b.0 || (a.0 == b.0 && a.1 < b.1);
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (i, &s) in scores.iter().enumerate() {
        let cand = (s, i as u32);
        if k == 0 || (best.len() == k && !before(cand, best[k - 1])) || masked.contains(&cand.1) {
            continue;
        }
        let at = best.partition_point(|&b| before(b, cand));
        best.insert(at, cand);
        best.truncate(k);
    }
    best.into_iter().map(|b| b.1).collect()
}

/// Top-`k` lists for `users` (histories before their targets); users are batched by
/// history length so little padding is computed, and returned in the given order.
pub fn rank_users(
    model: &Sasrec,
    users: &[UserQuery],
    k: usize,
    exclude_history: bool,
    batch: usize,
) -> Result<Vec<Vec<u32>>> {
    let max_len = model.cfg.max_len;
    let mut order: Vec<usize> = (0..users.len()).collect();
    order.sort_by_key(|&i| (users[i].history.len().min(max_len), i));
    let mut lists = vec![Vec::new(); users.len()];
    for chunk in order.chunks(batch.max(1)) {
        let seqs: Vec<&[u32]> = chunk.iter().map(|&i| &users[i].history[..]).collect();
        let b = SeqBatch::new(&seqs, max_len, &Device::Cpu)?;
        let scores = model.score_next(&b)?.to_vec2::<f32>()?;
        let out: Vec<Vec<u32>> = scores
            .par_iter()
            .zip(chunk.par_iter())
            .map(|(row, &i)| {
                let masked: HashSet<u32> =
                    if exclude_history { users[i].history.iter().copied().collect() } else { HashSet::new() };
                top_k(row, k, &masked)
            })
            .collect();
        for (&i, l) in chunk.iter().zip(out) {
            lists[i] = l;
        }
    }
    Ok(lists)
}

/// Leave-one-out evaluation of a SASRec model on `split` of `ds`: Recall@K / NDCG@K
/// (same keys as `onerec eval`), coverage of the top-10 lists.
pub fn evaluate_sasrec(
    model: &Sasrec,
    ds: &Dataset,
    split: SplitSel,
    ks: &[usize],
    exclude_history: bool,
    max_users: Option<usize>,
    batch: usize,
) -> Result<EvalReport> {
    evaluate_sasrec_on(model, ds, split, ks, exclude_history, max_users, batch, &Single)
}

/// [`evaluate_sasrec`] over the ranks of `sync`: each ranks its contiguous part of the
/// users, the top-K lists are gathered to every rank, and every rank scores all of them,
/// so all ranks get the same report (every rank holds the same model).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_sasrec_on(
    model: &Sasrec,
    ds: &Dataset,
    split: SplitSel,
    ks: &[usize],
    exclude_history: bool,
    max_users: Option<usize>,
    batch: usize,
    sync: &dyn GradSync,
) -> Result<EvalReport> {
    ensure!(split != SplitSel::All, "evaluation needs a held-out target: use split valid or test");
    ensure!(!ks.is_empty() && ks.iter().all(|&k| k > 0), "cut-offs K must be positive");
    ensure!(
        ds.n_items() == model.n_items,
        "the model scores {} items but the dataset has {}",
        model.n_items,
        ds.n_items()
    );
    let all = users_from_split(ds, split);
    let users: Vec<UserQuery> = subsample(all.len(), max_users).into_iter().map(|i| all[i].clone()).collect();
    ensure!(!users.is_empty(), "no user has a {split} target");
    let max_k = ks.iter().copied().max().unwrap_or(10);
    let mine = &users[shard_range(users.len(), sync.rank(), sync.world_size())];
    let lists = all_gather_lists(sync, &rank_users(model, mine, max_k, exclude_history, batch)?)?;
    ensure!(lists.len() == users.len(), "gathered {} ranked lists for {} users", lists.len(), users.len());
    Ok(crate::baseline::ranked_report(&users, &lists, ks, &ds.item_ids))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn top_k_orders_masks_and_breaks_ties_by_id() {
        let s = [0.5, 2.0, 2.0, -1.0, 3.0];
        assert_eq!(top_k(&s, 3, &HashSet::new()), vec![4, 1, 2]);
        assert_eq!(top_k(&s, 2, &[4u32].into_iter().collect()), vec![1, 2]);
        assert_eq!(top_k(&s, 10, &[1u32, 2].into_iter().collect()), vec![4, 0, 3]);
    }
}
