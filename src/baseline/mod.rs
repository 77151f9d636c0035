//! ID-only baselines scored in the same harness as the generative model (issue 16).
//!
//! Every baseline produces ranked item lists per user and is scored by
//! [`crate::eval::ranking_metrics`], the same code `evaluate` uses.

pub mod export;
pub mod popularity;
pub mod sasrec;

use crate::eval::{ranking_metrics, EvalReport};
use crate::generate::users::UserQuery;
use std::collections::HashSet;

/// The report of a baseline that ranks items directly (no generated paths or sessions):
/// Recall/NDCG@K of `lists` (one ranked item list per user) by the shared metric code,
/// top-10 coverage of the catalogue, and the per-user ranks (items named by `item_ids`,
/// the dense-id -> original-id table).
pub fn ranked_report(users: &[UserQuery], lists: &[Vec<u32>], ks: &[usize], item_ids: &[String]) -> EvalReport {
    let recommended: HashSet<u32> = lists.iter().flat_map(|l| l.iter().take(10).copied()).collect();
    EvalReport {
        metrics: ranking_metrics(users, lists, ks),
        invalid_paths: 0,
        invalid_paths_before_masking: 0.0,
        coverage: recommended.len() as f64 / item_ids.len().max(1) as f64,
        diversity: None,
        true_reward: None,
        rm_reward: None,
        users: users.len(),
        per_user: crate::eval::per_user::per_user_ranks(users, lists, item_ids),
    }
}
