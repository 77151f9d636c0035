//! The `[eval]` config section: the evaluation protocol a recipe reports (the flags of
//! `onerec eval`), so one TOML file is a whole recipe.

use super::EvalOptions;
use crate::generate::Fusion;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Cut-offs of Recall@K / NDCG@K.
    pub ks: Vec<usize>,
    /// Beam width for ranking (raised to the largest K).
    pub beam: usize,
    /// Session length for diversity and rewards (0 skips that pass).
    pub session_len: usize,
    /// Beam width when generating those sessions.
    pub session_beam: usize,
    /// Never rank an item the user already has (the protocol a recipe leads with).
    pub exclude_history: bool,
    /// Also report the test split under the other history protocol (published rows do
    /// not always say which one they use).
    pub both_protocols: bool,
    /// Evaluate an evenly spaced deterministic subset of at most this many users (0 = all).
    pub max_users: usize,
    /// Also evaluate the validation split (what recipes are compared on, never test);
    /// off saves a pass, e.g. for ablations.
    pub validation: bool,
    /// Rank by `log p_gen + item_head_weight * log p_head` over the beam's and the
    /// item head's candidates (0 = the beam alone). Needs a model trained with
    /// `model.item_id_embedding = true`; choose it on validation.
    pub item_head_weight: f64,
    /// Item-head candidates added to the beam's when fusing (0 = the beam width).
    pub item_head_candidates: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        let o = EvalOptions::default();
        EvalConfig {
            ks: o.ks,
            beam: o.beam,
            session_len: o.session_len,
            session_beam: o.session_beam,
            exclude_history: o.exclude_history,
            both_protocols: false,
            max_users: 0,
            validation: true,
            item_head_weight: 0.0,
            item_head_candidates: 0,
        }
    }
}

impl EvalConfig {
    pub fn validate(&self) -> Result<()> {
        if self.ks.is_empty() || self.ks.contains(&0) {
            bail!("ks = {:?}: give at least one cut-off >= 1", self.ks);
        }
        if self.beam == 0 {
            bail!("beam must be at least 1");
        }
        if self.session_len > 0 && self.session_beam == 0 {
            bail!("session_beam must be at least 1 when session_len > 0");
        }
        if !(self.item_head_weight.is_finite() && self.item_head_weight >= 0.0) {
            bail!("item_head_weight = {} must be a finite number >= 0", self.item_head_weight);
        }
        Ok(())
    }

    /// The fused-ranking settings, `None` when `item_head_weight` is 0.
    pub fn fusion(&self) -> Option<Fusion> {
        fusion(self.item_head_weight, self.item_head_candidates, self.beam)
    }

    /// The evaluation options this section stands for (no reward hooks).
    pub fn options(&self) -> EvalOptions<'static> {
        EvalOptions {
            ks: self.ks.clone(),
            beam: self.beam,
            session_len: self.session_len,
            session_beam: self.session_beam,
            exclude_history: self.exclude_history,
            max_users: (self.max_users > 0).then_some(self.max_users),
            fusion: self.fusion(),
            ..EvalOptions::default()
        }
    }
}

/// Fused ranking for an item-head `weight` (0 = off) and `candidates` (0 = `beam`).
pub fn fusion(weight: f64, candidates: usize, beam: usize) -> Option<Fusion> {
    (weight > 0.0)
        .then_some(Fusion { weight: weight as f32, candidates: if candidates == 0 { beam.max(1) } else { candidates } })
}

/// [`fusion`] from the `--item-head-weight` / `--item-head-candidates` flags, checked.
pub fn fusion_flags(weight: f64, candidates: usize, beam: usize) -> Result<Option<Fusion>> {
    if !(weight.is_finite() && weight >= 0.0) {
        bail!("--item-head-weight {weight} must be a finite number >= 0");
    }
    Ok(fusion(weight, candidates, beam))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_head_weight_turns_fusion_on_and_is_checked() {
        let mut c = EvalConfig::default();
        assert_eq!(c.options().fusion, None);
        c.item_head_weight = 3.0;
        assert_eq!(c.options().fusion, Some(Fusion { weight: 3.0, candidates: c.beam }));
        c.item_head_candidates = 50;
        assert_eq!(c.fusion().map(|f| f.candidates), Some(50));
        c.item_head_weight = -1.0;
        assert!(c.validate().unwrap_err().to_string().contains("item_head_weight"));
        assert!(fusion_flags(f64::NAN, 0, 20).is_err());
    }
}
