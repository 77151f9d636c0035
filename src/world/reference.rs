//! Reference rows the world knows, scored with the same true reward as a model's
//! sessions: the near-optimal greedy session ([`World::best_session`], the "oracle")
//! and the logging policy's mode ([`World::most_clicked_items`], a perfect "imitator"
//! of the logs). Alignment closes part of the gap between what pretraining imitates
//! and what the reward asks for; these rows say how much gap there is.

use super::World;
use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

/// Mean true session reward of the two references over a set of users.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ReferenceRewards {
    /// `best_session(user, session_len)`: greedy on the marginal session reward.
    pub oracle_reward: f64,
    /// `most_clicked_items(user, session_len)`: the logging policy's top items, in order.
    pub imitator_reward: f64,
    pub session_len: usize,
    pub users: usize,
}

impl ReferenceRewards {
    /// Where `reward` sits on the imitator (0) -> oracle (1) scale; None without a gap.
    pub fn position(&self, reward: f64) -> Option<f64> {
        headroom_closed(self.imitator_reward, reward, self.oracle_reward)
    }
}

/// The fraction of the headroom `to - from` that `reached - from` covers, e.g. how much
/// of the pretrained -> oracle gap alignment closes; None when there is no headroom.
pub fn headroom_closed(from: f64, reached: f64, to: f64) -> Option<f64> {
    let gap = to - from;
    (gap.abs() > 1e-12).then(|| (reached - from) / gap)
}

impl World {
    /// Mean true reward of the oracle and imitator sessions of `session_len` items for
    /// `user_ids` (original ids; every one must be in the world). Neither reference
    /// avoids the user's history: the oracle is an upper reference, not a bound on
    /// history-excluding recommenders.
    pub fn reference_rewards(&self, user_ids: &[&str], session_len: usize) -> Result<ReferenceRewards> {
        let rows = user_ids
            .par_iter()
            .map(|u| -> Result<(f64, f64)> {
                let score = |items: Vec<String>| {
                    let ids: Vec<&str> = items.iter().map(String::as_str).collect();
                    self.expected_session_reward(u, &ids)
                };
                Ok((score(self.best_session(u, session_len)?)?, score(self.most_clicked_items(u, session_len)?)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let n = rows.len().max(1) as f64;
        Ok(ReferenceRewards {
            oracle_reward: rows.iter().map(|r| r.0).sum::<f64>() / n,
            imitator_reward: rows.iter().map(|r| r.1).sum::<f64>() / n,
            session_len,
            users: rows.len(),
        })
    }
}
