//! The reward model and iterative preference alignment (DPO against a frozen reference).

use serde::{Deserialize, Serialize};

/// Reward model settings (the `[reward]` config section).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {}

impl RewardConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Alignment settings (the `[align]` config section).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlignConfig {}

impl AlignConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        Ok(())
    }
}
