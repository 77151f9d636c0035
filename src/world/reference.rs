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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{synth, SynthOptions};

    #[test]
    fn oracle_beats_the_imitator_and_each_row_is_its_sessions_mean() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = SynthOptions { users: 30, items: 80, topics: 4, seed: 3, ..SynthOptions::default() };
        let w = synth(&opts, dir.path()).expect("synth").world;
        let users: Vec<String> = w.user_ids.iter().take(12).cloned().collect();
        let ids: Vec<&str> = users.iter().map(String::as_str).collect();
        let r = w.reference_rewards(&ids, 4).expect("references");
        assert_eq!((r.users, r.session_len), (12, 4));
        // Recomputed one user at a time, and against the top-4 items by item reward.
        let (mut oracle, mut imitator, mut top_items) = (0.0, 0.0, 0.0);
        for u in &ids {
            let mean = |items: Vec<String>| {
                let v: Vec<&str> = items.iter().map(String::as_str).collect();
                w.expected_session_reward(u, &v).expect("reward")
            };
            oracle += mean(w.best_session(u, 4).expect("oracle")) / 12.0;
            imitator += mean(w.most_clicked_items(u, 4).expect("imitator")) / 12.0;
            top_items += mean(w.best_items(u, 4).expect("top items")) / 12.0;
        }
        assert!((r.oracle_reward - oracle).abs() < 1e-9 && (r.imitator_reward - imitator).abs() < 1e-9);
        assert!(r.oracle_reward > r.imitator_reward, "{r:?}");
        assert!(r.oracle_reward >= top_items - 1e-9, "greedy on the session reward >= top items: {r:?} {top_items}");
        assert_eq!(r.position(r.imitator_reward), Some(0.0));
        assert!((r.position(r.oracle_reward).expect("gap") - 1.0).abs() < 1e-12);
        assert!(w.reference_rewards(&["no-such-user"], 4).is_err());
    }

    #[test]
    fn headroom_fraction() {
        assert_eq!(headroom_closed(5.0, 6.0, 15.0), Some(0.1));
        assert_eq!(headroom_closed(5.0, 4.0, 15.0), Some(-0.1));
        assert_eq!(headroom_closed(5.0, 6.0, 5.0), None);
    }
}
