//! Next-token pretraining: the training loop, optimizer, schedule and checkpoints.

use serde::{Deserialize, Serialize};

/// Training schedule (the `[train]` config section).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {}

impl TrainConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        Ok(())
    }
}
