//! From a policy's generated candidates to what alignment trains on: each sampled
//! user's candidates are scored by the reward model, and the best (chosen) and worst
//! (rejected) form a preference pair unless they tie; complete groups are kept for GRPO.

use super::iterate::{SessionScorer, Sessions};
use super::AlignConfig;
use anyhow::{ensure, Result};
use rand::seq::SliceRandom;

/// The users of iteration `it`: a seeded sample of `ceil(n_users * fraction)` (at least
/// one), in ascending order.
pub fn sample_users(n_users: usize, fraction: f64, seed: u64, it: usize) -> Vec<usize> {
    let k = ((n_users as f64 * fraction).ceil() as usize).clamp(1, n_users);
    let mut users: Vec<usize> = (0..n_users).collect();
    users.shuffle(&mut crate::util::rng::stream(seed, &format!("align.users.{it}")));
    users.truncate(k);
    users.sort_unstable();
    users
}

/// The reward of every candidate, flattened in (user, candidate) order.
pub fn score_candidates<S: SessionScorer + ?Sized>(
    scorer: &S,
    histories: &[&[u32]],
    candidates: &Sessions,
    it: usize,
) -> Result<Vec<f32>> {
    let (mut rh, mut rs) = (Vec::new(), Vec::new());
    for (h, cs) in histories.iter().zip(candidates) {
        for s in cs {
            ensure!(!s.is_empty(), "generator returned an empty session");
            rh.push(*h);
            rs.push(s.as_slice());
        }
    }
    ensure!(!rs.is_empty(), "iteration {it}: the generator produced no candidate sessions");
    let scores = scorer.score(&rh, &rs)?;
    ensure!(scores.len() == rs.len(), "scorer returned {} scores for {} sessions", scores.len(), rs.len());
    ensure!(scores.iter().all(|s| s.is_finite()), "scorer returned a non-finite reward");
    Ok(scores)
}

/// A user's best-scored candidate (chosen) against their worst (rejected).
#[derive(Clone, Copy, Debug)]
pub struct Pair<'a> {
    pub history: &'a [u32],
    pub chosen: &'a [u32],
    pub rejected: &'a [u32],
}

/// All `align.candidates` candidates of a user, with their rewards.
#[derive(Clone, Debug)]
pub struct Group<'a> {
    pub history: &'a [u32],
    pub sessions: Vec<&'a [u32]>,
    pub rewards: Vec<f32>,
}

/// What an iteration's candidates teach.
#[derive(Clone, Debug, Default)]
pub struct Preferences<'a> {
    /// One pair per user whose candidates do not tie (DPO's training units).
    pub pairs: Vec<Pair<'a>>,
    /// The complete candidate groups of those users (GRPO's training units).
    pub groups: Vec<Group<'a>>,
    /// Users whose best and worst candidates are within `align.min_gap` (or identical).
    pub ties: usize,
    /// Mean over users of the best candidate's reward.
    pub mean_best_reward: f64,
}

/// Pairs and groups from each user's candidates and their flattened `scores`.
pub fn mine_preferences<'a>(
    histories: &[&'a [u32]],
    candidates: &'a Sessions,
    scores: &[f32],
    cfg: &AlignConfig,
) -> Preferences<'a> {
    let mut prefs = Preferences::default();
    let mut off = 0;
    let mut best_sum = 0f64;
    for (&h, cs) in histories.iter().zip(candidates) {
        let sc = &scores[off..off + cs.len()];
        off += cs.len();
        if cs.is_empty() {
            continue;
        }
        let (mut bi, mut wi) = (0, 0);
        for i in 1..sc.len() {
            if sc[i] > sc[bi] {
                bi = i;
            }
            if sc[i] < sc[wi] {
                wi = i;
            }
        }
        best_sum += sc[bi] as f64;
        if cs.len() < 2 || ((sc[bi] - sc[wi]) as f64) <= cfg.min_gap || cs[bi] == cs[wi] {
            prefs.ties += 1;
            continue;
        }
        prefs.pairs.push(Pair { history: h, chosen: &cs[bi], rejected: &cs[wi] });
        if cs.len() == cfg.candidates {
            prefs.groups.push(Group {
                history: h,
                sessions: cs.iter().map(|s| s.as_slice()).collect(),
                rewards: sc.to_vec(),
            });
        }
    }
    prefs.mean_best_reward = best_sum / histories.len() as f64;
    prefs
}
