//! The `[data]` config section: how a recipe prepares its raw input (the flags of
//! `onerec data prepare` that a recipe needs), so one TOML file is a whole recipe.

use super::prepare::PrepareOptions;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// New session after a gap greater than this many seconds (sequence files:
    /// positions); absent = one session per user history.
    pub session_gap: Option<f64>,
    /// Items per session target (recorded in the dataset manifest).
    pub session_len: usize,
    /// High-quality session filter: minimum items per session.
    pub min_session_items: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        let p = PrepareOptions::default();
        DataConfig { session_gap: p.session_gap, session_len: p.session_len, min_session_items: p.min_session_items }
    }
}

impl DataConfig {
    pub fn validate(&self) -> Result<()> {
        if let Some(g) = self.session_gap {
            if !(g.is_finite() && g >= 0.0) {
                bail!("session_gap = {g}: must be a finite number >= 0 (or left out)");
            }
        }
        if self.session_len == 0 {
            bail!("session_len must be at least 1");
        }
        Ok(())
    }

    /// The prepare options this section stands for (defaults for everything else).
    pub fn prepare_options(&self) -> PrepareOptions {
        PrepareOptions {
            session_gap: self.session_gap,
            session_len: self.session_len,
            min_session_items: self.min_session_items,
            ..PrepareOptions::default()
        }
    }
}
