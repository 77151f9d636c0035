//! Offline evaluation: Recall@K, NDCG@K, coverage, diversity, true reward.
//!
//! Leave-one-out: each user's held-out item is ranked by constrained beam search over
//! the whole catalogue (one-item sessions, beam >= max K); a target that the beam does
//! not return counts as a miss. With [`EvalOptions::fusion`] the list is the fused
//! ranking of [`crate::generate::fused`] (beam candidates plus the item head's).
//! Diversity and rewards look at each user's best generated session of `session_len`
//! items.

pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod metrics;
pub mod per_user;

pub use config::EvalConfig;
pub use per_user::UserRank;

use crate::data::Dataset;
use crate::generate::users::{users_from_split, SplitSel, UserQuery};
use crate::generate::{generate_batched, rank_batched, BeamOptions, DecodeIndex, Fusion, StepModel};
use crate::tokenizer::SemanticIds;
use crate::tokenizer::Vocab;
use anyhow::{ensure, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// A session scorer: (dense user id, dense item ids of a session) -> reward.
pub type SessionScorer<'a> = &'a (dyn Fn(usize, &[u32]) -> Result<f64> + Sync);

/// Evaluation settings.
#[derive(Clone)]
pub struct EvalOptions<'a> {
    /// Cut-offs, e.g. [5, 10, 20].
    pub ks: Vec<usize>,
    /// Beam width for ranking (raised to max K if smaller).
    pub beam: usize,
    /// Session length for diversity and rewards (0 = skip that pass).
    pub session_len: usize,
    /// Beam width for the session pass.
    pub session_beam: usize,
    pub exclude_history: bool,
    pub batch_users: usize,
    /// Evaluate at most this many users (an evenly spaced, deterministic subset).
    pub max_users: Option<usize>,
    /// Ground-truth expected reward of a session (synthetic world) -> `true_reward`.
    pub true_reward: Option<SessionScorer<'a>>,
    /// HOOK for the reward model (align stage) -> `rm_reward`.
    pub rm_reward: Option<SessionScorer<'a>>,
    /// Rank by fused generative + item-head scores instead of the beam alone.
    pub fusion: Option<Fusion>,
}

impl Default for EvalOptions<'_> {
    fn default() -> Self {
        EvalOptions {
            ks: vec![5, 10, 20],
            beam: 20,
            session_len: 5,
            session_beam: 10,
            exclude_history: false,
            batch_users: 64,
            max_users: None,
            true_reward: None,
            rm_reward: None,
            fusion: None,
        }
    }
}

/// Evaluation results (serialised flat: `recall@5`, `ndcg@5`, ...).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EvalReport {
    #[serde(flatten)]
    pub metrics: BTreeMap<String, f64>,
    pub invalid_paths: u64,
    pub invalid_paths_before_masking: f64,
    /// Distinct items in all users' top-10 lists / catalogue size.
    pub coverage: f64,
    /// Mean over users of (distinct first-level codes / items) in the best session.
    pub diversity: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub true_reward: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rm_reward: Option<f64>,
    pub users: usize,
    /// Where each user's target landed ([`per_user::write_tsv`] writes it); not in the JSON.
    #[serde(skip)]
    pub per_user: Vec<UserRank>,
}

impl EvalReport {
    /// A printable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.metrics {
            s.push_str(&format!("{k:<32} {v:.4}\n"));
        }
        s.push_str(&format!("{:<32} {}\n", "invalid_paths", self.invalid_paths));
        s.push_str(&format!("{:<32} {:.4}\n", "invalid_paths_before_masking", self.invalid_paths_before_masking));
        s.push_str(&format!("{:<32} {:.4}\n", "coverage", self.coverage));
        for (name, v) in
            [("diversity", self.diversity), ("true_reward", self.true_reward), ("rm_reward", self.rm_reward)]
        {
            if let Some(v) = v {
                s.push_str(&format!("{name:<32} {v:.4}\n"));
            }
        }
        s.push_str(&format!("{:<32} {}\n", "users", self.users));
        s
    }
}

/// Evenly spaced deterministic subset of `n` indices, at most `max`.
pub fn subsample(n: usize, max: Option<usize>) -> Vec<usize> {
    match max {
        Some(m) if m < n => (0..m).map(|i| i * n / m).collect(),
        _ => (0..n).collect(),
    }
}

/// The users [`evaluate`] scores: those with a `split` target, subsampled to `max_users`.
pub fn eval_users(ds: &Dataset, split: SplitSel, max_users: Option<usize>) -> Vec<UserQuery> {
    let all = users_from_split(ds, split);
    subsample(all.len(), max_users).into_iter().map(|i| all[i].clone()).collect()
}

/// The world's reference rows (oracle and imitator sessions of `opts.session_len`
/// items) over the same users [`evaluate`] scores, so they sit beside its `true_reward`.
pub fn world_references(
    world: &crate::world::World,
    ds: &Dataset,
    split: SplitSel,
    opts: &EvalOptions,
) -> Result<crate::world::ReferenceRewards> {
    ensure!(opts.session_len > 0, "reference rows need sessions: --session-len must be > 0");
    let users = eval_users(ds, split, opts.max_users);
    let ids: Vec<&str> = users.iter().map(|u| u.user_id.as_str()).collect();
    world.reference_rewards(&ids, opts.session_len)
}

/// Mean Recall@K / NDCG@K (`recall@K`, `ndcg@K`) of ranked lists against each user's
/// held-out target: the one place every model (generative or baseline) is scored.
pub fn ranking_metrics(users: &[UserQuery], lists: &[Vec<u32>], ks: &[usize]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let n_users = users.len().max(1) as f64;
    for &k in ks {
        let (mut r, mut n) = (0.0, 0.0);
        for (u, list) in users.iter().zip(lists) {
            let rel: Vec<u32> = u.target.into_iter().collect();
            r += metrics::recall_at_k(list, &rel, k);
            n += metrics::ndcg_at_k(list, &rel, k);
        }
        out.insert(format!("recall@{k}"), r / n_users);
        out.insert(format!("ndcg@{k}"), n / n_users);
    }
    out
}

/// Leave-one-out evaluation of `model` on `split` (valid or test) of `ds`.
pub fn evaluate<M: StepModel + Sync>(
    model: &M,
    ids: &SemanticIds,
    vocab: &Vocab,
    ds: &Dataset,
    split: SplitSel,
    opts: &EvalOptions,
) -> Result<EvalReport> {
    ensure!(split != SplitSel::All, "evaluation needs a held-out target: use split valid or test");
    ensure!(!opts.ks.is_empty() && opts.ks.iter().all(|&k| k > 0), "cut-offs K must be positive");
    ensure!(ds.n_items() == ids.n_items(), "dataset has {} items, semantic ids {}", ds.n_items(), ids.n_items());
    let t0 = std::time::Instant::now();
    let users = eval_users(ds, split, opts.max_users);
    ensure!(!users.is_empty(), "no user has a {split:?} target");
    let index = DecodeIndex::new(ids)?;
    let max_k = *opts.ks.iter().max().unwrap_or(&10);
    let hist: Vec<&[u32]> = users.iter().map(|u| &u.history[..]).collect();
    let rank_opts =
        BeamOptions { beam: opts.beam.max(max_k), session_len: 1, top: max_k, exclude_history: opts.exclude_history };
    let (ranked, mut stats) =
        rank_batched(model, ids, &index, vocab, &hist, &rank_opts, opts.batch_users, opts.fusion.as_ref())?;
    let mut metrics = BTreeMap::new();
    let mut recommended = HashSet::new();
    let lists: Vec<Vec<u32>> = ranked.iter().map(|hs| hs.iter().map(|h| h.items[0]).collect()).collect();
    for list in &lists {
        recommended.extend(list.iter().take(10).copied());
    }
    metrics.extend(ranking_metrics(&users, &lists, &opts.ks));
    let (mut diversity, mut true_reward, mut rm_reward) = (None, None, None);
    if opts.session_len > 0 {
        let sess_opts = BeamOptions {
            beam: opts.session_beam.max(1),
            session_len: opts.session_len,
            top: 1,
            exclude_history: opts.exclude_history,
        };
        let (sessions, s2) = generate_batched(model, ids, &index, vocab, &hist, &sess_opts, opts.batch_users)?;
        stats.merge(&s2);
        let best: Vec<(usize, &[u32])> =
            users.iter().enumerate().filter_map(|(i, _)| sessions[i].first().map(|h| (i, &h.items[..]))).collect();
        if !best.is_empty() {
            let d: f64 = best.iter().map(|(_, s)| session_diversity(ids, s)).sum();
            diversity = Some(d / best.len() as f64);
            let mean_of = |f: SessionScorer| -> Result<f64> {
                let mut total = 0.0;
                for &(i, s) in &best {
                    total += f(users[i].user.unwrap_or(i), s)?;
                }
                Ok(total / best.len() as f64)
            };
            true_reward = opts.true_reward.map(mean_of).transpose()?;
            rm_reward = opts.rm_reward.map(mean_of).transpose()?;
        }
    }
    let report = EvalReport {
        metrics,
        invalid_paths: stats.invalid_items,
        invalid_paths_before_masking: stats.invalid_fraction_before_masking(),
        coverage: recommended.len() as f64 / ids.n_items().max(1) as f64,
        diversity,
        true_reward,
        rm_reward,
        users: users.len(),
        per_user: per_user::per_user_ranks(&users, &lists, &ds.item_ids),
    };
    tracing::info!("evaluated {} users on {split:?} in {:.1}s", report.users, t0.elapsed().as_secs_f64());
    Ok(report)
}

/// Distinct-first-level-code fraction of one session (diversity of one session).
pub fn session_diversity(ids: &SemanticIds, session: &[u32]) -> f64 {
    if session.is_empty() {
        return 0.0;
    }
    session.iter().map(|&i| ids.codes(i)[0]).collect::<HashSet<_>>().len() as f64 / session.len() as f64
}
