//! The synthetic short-video world: items with latent topics, users with drifting
//! latent preferences, a ground-truth choice and engagement model, and the true
//! expected reward of any session for any user.
//!
//! API used by later stages (implemented in this module):
//! - `World::load(path) -> Result<World>` reads the world file `data synth` writes;
//! - `World::expected_session_reward(&self, user_id: &str, item_ids: &[&str]) -> Result<f64>`
//!   is the ground-truth expected reward of showing that session (original ids) to that
//!   user at the end of their logged history.

use anyhow::{bail, Result};
use std::path::Path;

/// The ground truth of a synthetic world (placeholder until `data synth` lands).
pub struct World;

impl World {
    pub fn load(path: &Path) -> Result<World> {
        bail!("loading world {}: not implemented yet", path.display())
    }
    pub fn expected_session_reward(&self, _user_id: &str, _item_ids: &[&str]) -> Result<f64> {
        bail!("World is not implemented yet")
    }
}
