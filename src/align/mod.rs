//! The reward model and iterative preference alignment (DPO against a frozen reference).
//!
//! - [`reward`]: a session reward model (user history + session -> one sigmoid tower per
//!   engagement signal), trained on real sessions vs sampled negatives;
//! - [`dpo`]: the DPO loss (and an ECPO/GRPO-style alternative);
//! - [`iterate`]: the iterative alignment loop, written against the small [`iterate::Policy`],
//!   [`iterate::SessionGenerator`] and [`iterate::SessionScorer`] traits so it runs with any
//!   model (the real OneRec model, or [`toy::BigramPolicy`] in tests); per iteration,
//!   [`preferences`] mines (chosen, rejected) pairs and groups from scored candidates and
//!   [`train_policy`] trains on them against the frozen reference;
//! - [`onerec`]: the stage for datasets and the real model (`onerec align`).

pub mod dpo;
pub mod iterate;
pub mod onerec;
pub mod preferences;
pub mod reward;
/// A toy world and bigram policy for alignment tests: `testkit` feature only.
#[cfg(any(test, feature = "testkit"))]
pub mod toy;
pub mod train_policy;

pub use dpo::{dpo_loss, ecpo_loss, group_advantages, DpoOutput};
pub use iterate::{align, align_on, AlignOutcome, Policy, SessionGenerator, SessionScorer};
pub use reward::{train_reward_model, RewardModel, RewardReport, RewardSpec};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Names of the towers the reward model knows. `watch` and `like` need the engagement
/// features `watch_time`+`duration` and `like`; `interact` is used when data has neither.
pub const KNOWN_TOWERS: &[&str] = &["watch", "like", "interact"];

/// Reward model settings (the `[reward]` config section).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    /// Items per training session window (`m`); longer real sessions are cut into windows.
    pub session_len: usize,
    /// Shortest real window kept (items); shorter session tails are dropped.
    pub min_session_len: usize,
    /// Hidden size of every layer.
    pub dim: usize,
    /// Most recent history items the user encoder sees.
    pub history_len: usize,
    /// Add the item's semantic-code embeddings to its id embedding.
    pub semantic_codes: bool,
    /// Random negative sessions sampled per real session.
    pub negatives: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Fraction of users whose sessions are held out for AUC (never trained on).
    pub holdout_users: f64,
    /// Weight of each tower in the scalar reward; towers not listed get weight 1.
    pub tower_weights: BTreeMap<String, f64>,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            session_len: 4,
            min_session_len: 2,
            dim: 32,
            history_len: 50,
            semantic_codes: true,
            negatives: 1,
            epochs: 5,
            batch_size: 128,
            lr: 3e-3,
            weight_decay: 0.01,
            holdout_users: 0.1,
            tower_weights: BTreeMap::new(),
        }
    }
}

impl RewardConfig {
    pub fn validate(&self) -> Result<()> {
        positive("session_len", self.session_len)?;
        positive("dim", self.dim)?;
        positive("history_len", self.history_len)?;
        positive("epochs", self.epochs)?;
        positive("batch_size", self.batch_size)?;
        if self.min_session_len == 0 || self.min_session_len > self.session_len {
            bail!("min_session_len = {}: must be in 1..=session_len ({})", self.min_session_len, self.session_len);
        }
        if self.negatives == 0 {
            bail!("negatives = 0: the reward model needs sampled negative sessions (use >= 1)");
        }
        finite_pos("lr", self.lr)?;
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            bail!("weight_decay = {}: must be >= 0", self.weight_decay);
        }
        if !(self.holdout_users > 0.0 && self.holdout_users < 1.0) {
            bail!("holdout_users = {}: must be in (0, 1)", self.holdout_users);
        }
        for (name, w) in &self.tower_weights {
            if !KNOWN_TOWERS.contains(&name.as_str()) {
                bail!("tower_weights.{name}: unknown tower (known: {})", KNOWN_TOWERS.join(", "));
            }
            if !w.is_finite() {
                bail!("tower_weights.{name} = {w}: must be finite");
            }
        }
        Ok(())
    }
}

/// The preference objective of alignment.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Direct preference optimisation on (best, worst) pairs.
    Dpo,
    /// Group-normalised advantages with early-clipped ratios (OneRec's ECPO).
    Grpo,
}

/// Alignment settings (the `[align]` config section).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlignConfig {
    /// Alignment iterations `T`; each ends by making the policy the new reference.
    pub iterations: usize,
    /// Fraction `r` of training users sampled per iteration, in (0, 1].
    pub user_fraction: f64,
    /// Candidate sessions generated per user (`N`, also the beam width).
    pub candidates: usize,
    /// Items per generated session.
    pub session_len: usize,
    /// Keep items of the user's history out of generated sessions (beam search option).
    pub exclude_history: bool,
    /// DPO temperature `beta`.
    pub beta: f64,
    /// Weight `lambda` of the preference loss next to L_NTP(chosen).
    pub lambda: f64,
    /// Optimizer steps per iteration.
    pub steps: usize,
    /// Pairs (DPO) or groups (GRPO) per step.
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 = off).
    pub grad_clip: f64,
    pub objective: Objective,
    /// GRPO: ratio clip epsilon.
    pub clip_eps: f64,
    /// GRPO: extra margin `delta` of ECPO's early clipping for negative advantages.
    pub ecpo_delta: f64,
    /// Users (seeded sample) on which evaluation hooks measure the ground-truth reward.
    pub eval_users: usize,
    /// Minimum reward gap between chosen and rejected; smaller gaps count as ties.
    pub min_gap: f64,
}

impl Default for AlignConfig {
    fn default() -> Self {
        AlignConfig {
            iterations: 2,
            user_fraction: 0.1,
            candidates: 8,
            session_len: 4,
            exclude_history: true,
            beta: 0.1,
            lambda: 1.0,
            steps: 50,
            batch_size: 32,
            lr: 1e-4,
            weight_decay: 0.0,
            grad_clip: 1.0,
            objective: Objective::Dpo,
            clip_eps: 0.2,
            ecpo_delta: 0.1,
            eval_users: 256,
            min_gap: 1e-6,
        }
    }
}

impl AlignConfig {
    pub fn validate(&self) -> Result<()> {
        positive("iterations", self.iterations)?;
        positive("steps", self.steps)?;
        positive("batch_size", self.batch_size)?;
        positive("session_len", self.session_len)?;
        if !(self.user_fraction > 0.0 && self.user_fraction <= 1.0) {
            bail!("user_fraction = {}: must be in (0, 1]", self.user_fraction);
        }
        if self.candidates < 2 {
            bail!("candidates = {}: need N >= 2 to form a (chosen, rejected) pair", self.candidates);
        }
        finite_pos("beta", self.beta)?;
        finite_pos("lr", self.lr)?;
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            bail!("lambda = {}: must be >= 0", self.lambda);
        }
        for (k, v) in [("weight_decay", self.weight_decay), ("grad_clip", self.grad_clip), ("min_gap", self.min_gap)] {
            if !(v >= 0.0 && v.is_finite()) {
                bail!("{k} = {v}: must be >= 0");
            }
        }
        if !(self.clip_eps > 0.0 && self.clip_eps < 1.0) {
            bail!("clip_eps = {}: must be in (0, 1)", self.clip_eps);
        }
        if !(self.ecpo_delta >= 0.0 && self.ecpo_delta.is_finite()) {
            bail!("ecpo_delta = {}: must be >= 0", self.ecpo_delta);
        }
        Ok(())
    }
}

fn positive(key: &str, v: usize) -> Result<()> {
    if v == 0 {
        bail!("{key} = 0: must be >= 1");
    }
    Ok(())
}

fn finite_pos(key: &str, v: f64) -> Result<()> {
    if !(v > 0.0 && v.is_finite()) {
        bail!("{key} = {v}: must be a finite number > 0");
    }
    Ok(())
}
