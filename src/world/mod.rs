//! The synthetic short-video world: items with latent topics, users with drifting
//! latent preferences, a ground-truth choice and engagement model, and the true
//! expected reward of any session for any user.
//!
//! Why it exists: every later stage is tested against this truth. The logged choice
//! model deliberately differs from what users enjoy: each item has an
//! *attractiveness* (clickbait) that raises its chance of being clicked but lowers
//! watch time, and popular items get extra exposure. Imitating the logs therefore
//! reproduces clickbait, while a reward model trained on engagement can learn better,
//! which is what preference alignment must exploit.
//!
//! Ground truth, for user preference `u` (unit vector) and item `i` with latent `z_i`
//! (unit vector), quality `q_i`, attractiveness `a_i`, duration `d_i` seconds:
//! - affinity `s = 3 u.z_i + q_i`;
//! - choice (logging): softmax over unseen items of `1.2 s + 0.8 a_i + 0.5 log pop_i`;
//! - watch fraction `f = sigmoid(s - 0.8 a_i - 0.5)`, watch time `~ f d_i` (noisy);
//! - like probability `p = sigmoid(2 s - 0.8 a_i - 3)`;
//! - expected item reward `r = f d_i / 60 + 1.0 p` (minutes watched plus a like bonus);
//! - session reward: the sum over distinct items, the k-th item of an already-seen
//!   topic in the session weighted `0.8^k` (diminishing returns favour diverse sessions);
//!   a repeated item adds nothing.
//!
//! [`World::expected_session_reward`] uses each user's preference at the *end* of their
//! logged history (preferences drift by a small random walk after every session).

mod synth;

pub use synth::{synth, SynthOptions};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Scalar parameters of the ground truth (stored in `world.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WorldParams {
    pub options: SynthOptions,
    pub like_bonus: f64,
    pub topic_decay: f64,
}

/// The ground truth of a synthetic world.
#[derive(Clone, Debug)]
pub struct World {
    pub params: WorldParams,
    pub latent_dim: usize,
    /// Item latents [items, latent_dim], unit rows.
    pub item_latent: Vec<f64>,
    pub item_quality: Vec<f64>,
    pub item_attract: Vec<f64>,
    pub item_duration: Vec<f64>,
    pub item_topic: Vec<u32>,
    /// Final (end-of-history) user preferences [users, latent_dim], unit rows.
    pub user_pref: Vec<f64>,
    user_index: HashMap<String, usize>,
    item_index: HashMap<String, usize>,
}

pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl World {
    pub fn user_count(&self) -> usize {
        self.user_pref.len() / self.latent_dim
    }
    pub fn item_count(&self) -> usize {
        self.item_quality.len()
    }
    /// Original id of user index `u` / item index `i` (ids are `index + 1`).
    pub fn user_id(u: usize) -> String {
        (u + 1).to_string()
    }
    pub fn item_id(i: usize) -> String {
        (i + 1).to_string()
    }

    fn pref(&self, u: usize) -> &[f64] {
        &self.user_pref[u * self.latent_dim..(u + 1) * self.latent_dim]
    }

    /// Ground-truth affinity of user index `u` for item index `i`.
    pub fn affinity(&self, u: usize, i: usize) -> f64 {
        affinity(self.pref(u), &self.item_latent[i * self.latent_dim..(i + 1) * self.latent_dim], self.item_quality[i])
    }

    /// Expected reward of item index `i` alone for user index `u`.
    pub fn expected_item_reward(&self, u: usize, i: usize) -> f64 {
        let s = self.affinity(u, i);
        let a = self.item_attract[i];
        let f = sigmoid(s - 0.8 * a - 0.5);
        let p = sigmoid(2.0 * s - 0.8 * a - 3.0);
        f * self.item_duration[i] / 60.0 + self.params.like_bonus * p
    }

    /// Expected reward of a session of item indices for user index `u`.
    pub fn session_reward_idx(&self, u: usize, items: &[usize]) -> f64 {
        let mut seen_topics: HashMap<u32, i32> = HashMap::new();
        let mut seen_items = Vec::with_capacity(items.len());
        let mut total = 0.0;
        for &i in items {
            if seen_items.contains(&i) {
                continue;
            }
            seen_items.push(i);
            let k = seen_topics.entry(self.item_topic[i]).or_insert(0);
            total += self.params.topic_decay.powi(*k) * self.expected_item_reward(u, i);
            *k += 1;
        }
        total
    }

    /// Ground-truth expected reward of showing `item_ids` (original ids) to `user_id`
    /// at the end of their logged history.
    pub fn expected_session_reward(&self, user_id: &str, item_ids: &[&str]) -> Result<f64> {
        let u = *self.user_index.get(user_id).with_context(|| format!("world: unknown user id {user_id}"))?;
        let items = item_ids
            .iter()
            .map(|id| self.item_index.get(*id).copied().with_context(|| format!("world: unknown item id {id}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.session_reward_idx(u, &items))
    }

    /// The `k` items (indices) with the highest expected item reward for user `u`.
    pub fn best_items(&self, u: usize, k: usize) -> Vec<usize> {
        let mut scored: Vec<(f64, usize)> =
            (0..self.item_count()).map(|i| (self.expected_item_reward(u, i), i)).collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(k).map(|x| x.1).collect()
    }

    /// Loads a world from its directory (or the path of `world.json` in it).
    pub fn load(path: &Path) -> Result<World> {
        let dir = if path.is_dir() { path.to_path_buf() } else { path.parent().unwrap_or(Path::new(".")).to_path_buf() };
        let params: WorldParams = crate::util::io::read_json(&dir.join("world.json"))?;
        let st_path = dir.join("world.safetensors");
        let bytes = std::fs::read(&st_path).with_context(|| format!("cannot read {}", st_path.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{}: not a valid safetensors file", st_path.display()))?;
        let get = |name: &str| -> Result<Vec<f64>> {
            let t = st.tensor(name).with_context(|| format!("{}: missing tensor `{name}`", st_path.display()))?;
            if t.dtype() != safetensors::Dtype::F64 {
                bail!("{}: tensor `{name}` must be f64", st_path.display());
            }
            Ok(t.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
        };
        let k = params.options.latent_dim;
        let item_latent = get("item_latent")?;
        let user_pref = get("user_pref")?;
        let n_items = item_latent.len() / k;
        let n_users = user_pref.len() / k;
        let w = World {
            latent_dim: k,
            item_quality: get("item_quality")?,
            item_attract: get("item_attract")?,
            item_duration: get("item_duration")?,
            item_topic: get("item_topic")?.into_iter().map(|t| t as u32).collect(),
            item_latent,
            user_pref,
            user_index: (0..n_users).map(|u| (Self::user_id(u), u)).collect(),
            item_index: (0..n_items).map(|i| (Self::item_id(i), i)).collect(),
            params,
        };
        if [w.item_quality.len(), w.item_attract.len(), w.item_duration.len(), w.item_topic.len()] != [n_items; 4] {
            bail!("{}: item tensors disagree in length", st_path.display());
        }
        Ok(w)
    }

    /// Writes `world.json` + `world.safetensors` into `dir` (atomically, deterministic bytes).
    pub fn save(&self, dir: &Path) -> Result<()> {
        use safetensors::{tensor::TensorView, Dtype};
        crate::util::io::write_json(&dir.join("world.json"), &self.params)?;
        let topic: Vec<f64> = self.item_topic.iter().map(|&t| t as f64).collect();
        let k = self.latent_dim;
        let fields: Vec<(&str, &[f64], Vec<usize>)> = vec![
            ("item_attract", &self.item_attract, vec![self.item_count()]),
            ("item_duration", &self.item_duration, vec![self.item_count()]),
            ("item_latent", &self.item_latent, vec![self.item_count(), k]),
            ("item_quality", &self.item_quality, vec![self.item_count()]),
            ("item_topic", &topic, vec![self.item_count()]),
            ("user_pref", &self.user_pref, vec![self.user_pref.len() / k, k]),
        ];
        let bufs: Vec<Vec<u8>> = fields.iter().map(|f| f.1.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
        let mut views = Vec::new();
        for (f, b) in fields.iter().zip(&bufs) {
            views.push((f.0.to_string(), TensorView::new(Dtype::F64, f.2.clone(), b)?));
        }
        let bytes = safetensors::serialize(views, None)?;
        crate::util::io::atomic_write(&dir.join("world.safetensors"), &bytes)
    }

    pub(crate) fn from_parts(params: WorldParams, item_latent: Vec<f64>, item_quality: Vec<f64>, item_attract: Vec<f64>,
        item_duration: Vec<f64>, item_topic: Vec<u32>, user_pref: Vec<f64>) -> World {
        let k = params.options.latent_dim;
        let n_users = user_pref.len() / k;
        World {
            latent_dim: k,
            user_index: (0..n_users).map(|u| (Self::user_id(u), u)).collect(),
            item_index: (0..item_quality.len()).map(|i| (Self::item_id(i), i)).collect(),
            params, item_latent, item_quality, item_attract, item_duration, item_topic, user_pref,
        }
    }
}

pub(crate) fn affinity(pref: &[f64], latent: &[f64], quality: f64) -> f64 {
    3.0 * pref.iter().zip(latent).map(|(a, b)| a * b).sum::<f64>() + quality
}
