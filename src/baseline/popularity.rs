//! Popularity baseline: rank items by training-part counts (same order as `data stats`).

use crate::data::stats::popularity_ranking;
use crate::data::Dataset;
use crate::eval::{subsample, EvalReport};
use crate::generate::users::{users_from_split, SplitSel};
use anyhow::{ensure, Result};
use std::collections::HashSet;

/// Leave-one-out evaluation of the popularity ranking on `split`, optionally dropping
/// each user's history items from the list (the `--exclude-history` protocol).
pub fn evaluate_popularity(
    ds: &Dataset,
    split: SplitSel,
    ks: &[usize],
    exclude_history: bool,
    max_users: Option<usize>,
) -> Result<EvalReport> {
    ensure!(split != SplitSel::All, "evaluation needs a held-out target: use split valid or test");
    ensure!(!ks.is_empty() && ks.iter().all(|&k| k > 0), "cut-offs K must be positive");
    let order = popularity_ranking(ds);
    let all = users_from_split(ds, split);
    let users: Vec<_> = subsample(all.len(), max_users).into_iter().map(|i| all[i].clone()).collect();
    ensure!(!users.is_empty(), "no user has a {split:?} target");
    let max_k = ks.iter().copied().max().unwrap_or(10);
    let lists: Vec<Vec<u32>> = users
        .iter()
        .map(|u| {
            let seen: HashSet<u32> = if exclude_history { u.history.iter().copied().collect() } else { HashSet::new() };
            order.iter().copied().filter(|i| !seen.contains(i)).take(max_k).collect()
        })
        .collect();
    Ok(super::ranked_report(&users, &lists, ks, &ds.item_ids))
}
