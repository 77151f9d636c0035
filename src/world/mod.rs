//! The synthetic short-video world: items with latent topics, users with drifting
//! latent preferences, a ground-truth choice and engagement model, and the true
//! expected reward of any session for any user.
//!
//! API used by later stages (implemented in this module):
//! - `World::load(path) -> Result<World>` reads the world file `data synth` writes;
//! - `World::expected_session_reward(&self, user_id: &str, item_ids: &[&str]) -> Result<f64>`
//!   is the ground-truth expected reward of showing that session (original ids) to that
//!   user at the end of their logged history;
//! - `expected_item_reward`, `user_count`, `item_count`, `item_topic`, `item_attractiveness`;
//! - references for tests: `best_items(user, k)` (top-k item reward), `best_session(user, k)`
//!   (greedy on the session reward, near-optimal), `most_clicked_items(user, k)` (the mode
//!   of the logging policy: what a perfect imitator would recommend).
//!
//! # The model (all vectors unit length, so affinities are cosines in [-1, 1])
//! - item `i`: latent `v_i` (topic centre + noise), duration `d_i` seconds
//!   (log-normal around 30 s, in [5, 180]), clickbait
//!   attractiveness `a_i ~ N(0,1)`, hidden quality `q_i = 0.5 N(0,1) - clickbait_quality * a_i`,
//!   log-popularity `pop_i` (Zipf over a random ranking, mean 0);
//! - user `u`: preference `p_u` (mix of 1-3 topics), a small random walk per session;
//! - affinity `s = p_u . v_i`;
//! - logged choice (what users CLICK): softmax over unseen items of
//!   `choice_aff * s + choice_attract * a_i + choice_pop * pop_i`;
//! - engagement (what users ENJOY): watch fraction `f = sigmoid(watch_aff * s + q_i + watch_bias)`,
//!   `watch_time = clamp(f d_i + N(0, (watch_noise d_i)^2), 0, d_i)`,
//!   `P(like) = sigmoid(like_aff * s + q_i + like_bias)`.
//!
//! - logs: per user `min_history + Poisson(mean - min)` distinct items in sessions of
//!   `session_min..=session_max` items a few tens of seconds apart; sessions are 2-36 h
//!   apart (any gap over 30 min separates them);
//! - modalities: `text` and `image` are each their own random projection of `v_i` plus
//!   their own nuisance factors (text carries log-duration, image the clickbait score)
//!   and noise, so both cluster by topic without being the same view.
//!
//! Clickbait raises clicks but lowers quality, and popularity biases exposure: imitating
//! the log is therefore NOT reward-optimal, which is what alignment must fix.
//!
//! # The true reward
//! With `p_u` the user's preference in their LAST logged session (the random walk has
//! zero mean, so this is also the expected next state):
//! - item reward `r(u,i) = f d_i / watch_ref_s + like_bonus * P(like)` (the expected
//!   watch time uses the mean `f d_i`; the clamp of the noise is ignored);
//! - session reward `R(u, [i_1..i_n]) = sum_k r(u,i_k) / (1 + redundancy * sum_{j<k} max(0, v_j . v_k)^redundancy_power)`:
//!   diminishing returns for near-duplicate items, so diverse good sessions win and a
//!   repeated item is worth much less.

mod choice;
mod reference;
mod synth;

pub use reference::{headroom_closed, ReferenceRewards};
pub use synth::{synth, SynthOptions, SynthOutput, SESSION_GAP_S};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Format tag of `world.json`.
pub const WORLD_FORMAT: &str = "onerec-world";
pub const WORLD_VERSION: u32 = 1;
pub const WORLD_JSON: &str = "world.json";
pub const WORLD_TENSORS: &str = "world.safetensors";

/// Constants of the ground-truth choice, engagement and reward models.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorldParams {
    /// Weight of affinity in the logged choice softmax.
    pub choice_aff: f64,
    /// Weight of clickbait attractiveness in the logged choice softmax.
    pub choice_attract: f64,
    /// Weight of log-popularity in the logged choice softmax (popularity exposure).
    pub choice_pop: f64,
    /// How much clickbait lowers hidden quality.
    pub clickbait_quality: f64,
    pub watch_aff: f64,
    pub watch_bias: f64,
    /// Std of watch-time noise as a fraction of the duration.
    pub watch_noise: f64,
    pub like_aff: f64,
    pub like_bias: f64,
    /// Seconds of expected watch time worth one reward unit.
    pub watch_ref_s: f64,
    /// Reward of a like (times its probability).
    pub like_bonus: f64,
    /// Strength of the diminishing-returns factor for redundant items in a session.
    pub redundancy: f64,
    pub redundancy_power: i32,
    /// Std of the per-session preference random walk (norm of the step, before renormalising).
    pub drift: f64,
}

impl Default for WorldParams {
    fn default() -> Self {
        WorldParams {
            choice_aff: 5.0,
            choice_attract: 1.2,
            choice_pop: 0.5,
            clickbait_quality: 0.4,
            watch_aff: 5.0,
            watch_bias: -1.5,
            watch_noise: 0.1,
            like_aff: 6.0,
            like_bias: -4.0,
            watch_ref_s: 30.0,
            like_bonus: 2.0,
            redundancy: 0.3,
            redundancy_power: 4,
            drift: 0.15,
        }
    }
}

/// `world.json`: what the tensors in `world.safetensors` mean.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorldMeta {
    pub format: String,
    pub version: u32,
    pub options: SynthOptions,
    pub params: WorldParams,
    pub users: usize,
    pub items: usize,
    pub latent_dim: usize,
}

/// The ground truth of a synthetic world.
#[derive(Clone, Debug)]
pub struct World {
    pub meta: WorldMeta,
    /// Original ids (as in `interactions.csv`), in row order.
    pub item_ids: Vec<String>,
    pub user_ids: Vec<String>,
    /// `[items, latent_dim]`, unit rows.
    pub item_latent: Vec<f64>,
    pub item_topic: Vec<usize>,
    pub item_duration: Vec<f64>,
    pub item_attract: Vec<f64>,
    pub item_quality: Vec<f64>,
    pub item_logpop: Vec<f64>,
    /// `[users, latent_dim]`: preference in each user's last logged session, unit rows.
    pub user_pref: Vec<f64>,
    item_index: HashMap<String, usize>,
    user_index: HashMap<String, usize>,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl World {
    /// Builds the id indexes; called by `synth` and `load`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assemble(
        meta: WorldMeta,
        item_ids: Vec<String>,
        user_ids: Vec<String>,
        item_latent: Vec<f64>,
        item_topic: Vec<usize>,
        item_duration: Vec<f64>,
        item_attract: Vec<f64>,
        item_quality: Vec<f64>,
        item_logpop: Vec<f64>,
        user_pref: Vec<f64>,
    ) -> World {
        let item_index = item_ids.iter().enumerate().map(|(i, s)| (s.clone(), i)).collect();
        let user_index = user_ids.iter().enumerate().map(|(i, s)| (s.clone(), i)).collect();
        World {
            meta,
            item_ids,
            user_ids,
            item_latent,
            item_topic,
            item_duration,
            item_attract,
            item_quality,
            item_logpop,
            user_pref,
            item_index,
            user_index,
        }
    }

    /// Loads a world from its directory, `world.json` or `world.safetensors`.
    pub fn load(path: &Path) -> Result<World> {
        let dir: PathBuf = if path.is_dir() {
            path.to_path_buf()
        } else if path.exists() {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            bail!("world {} does not exist; pass the directory `onerec data synth --out DIR` wrote", path.display())
        };
        let json = dir.join(WORLD_JSON);
        let meta: WorldMeta = crate::util::io::read_json(&json)
            .with_context(|| format!("loading world {}: is this a `data synth` output?", dir.display()))?;
        if meta.format != WORLD_FORMAT || meta.version != WORLD_VERSION {
            bail!(
                "{}: format {:?} version {} is not {WORLD_FORMAT} version {WORLD_VERSION}; re-run `onerec data synth`",
                json.display(),
                meta.format,
                meta.version
            );
        }
        let tpath = dir.join(WORLD_TENSORS);
        let bytes = std::fs::read(&tpath).with_context(|| format!("cannot read {}", tpath.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{}: not a valid safetensors file", tpath.display()))?;
        let (n, u, d) = (meta.items, meta.users, meta.latent_dim);
        let f = |name: &str, len: usize| read_f64(&st, &tpath, name, len);
        let ids = |name: &str, len: usize| -> Result<Vec<String>> {
            Ok(read_i64(&st, &tpath, name, len)?.into_iter().map(|v| v.to_string()).collect())
        };
        let item_topic = read_i64(&st, &tpath, "item_topic", n)?
            .into_iter()
            .map(|t| usize::try_from(t).with_context(|| format!("{}: negative item_topic", tpath.display())))
            .collect::<Result<Vec<_>>>()?;
        let world = World::assemble(
            meta.clone(),
            ids("item_ids", n)?,
            ids("user_ids", u)?,
            f("item_latent", n * d)?,
            item_topic,
            f("item_duration", n)?,
            f("item_attract", n)?,
            f("item_quality", n)?,
            f("item_logpop", n)?,
            f("user_pref", u * d)?,
        );
        if world.item_index.len() != n || world.user_index.len() != u {
            bail!("{}: duplicate item or user ids", tpath.display());
        }
        Ok(world)
    }

    /// Writes `world.json` and `world.safetensors` into `dir`, atomically each.
    pub fn save(&self, dir: &Path) -> Result<()> {
        use safetensors::{tensor::TensorView, Dtype};
        let f64b = |v: &[f64]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let i64b = |v: &[i64]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let parse = |ids: &[String]| -> Result<Vec<i64>> {
            ids.iter().map(|s| s.parse::<i64>().with_context(|| format!("id {s} is not an integer"))).collect()
        };
        let (n, u, d) = (self.item_count(), self.user_count(), self.meta.latent_dim);
        let topics: Vec<i64> = self.item_topic.iter().map(|&t| t as i64).collect();
        let data: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
            ("item_ids", Dtype::I64, vec![n], i64b(&parse(&self.item_ids)?)),
            ("user_ids", Dtype::I64, vec![u], i64b(&parse(&self.user_ids)?)),
            ("item_latent", Dtype::F64, vec![n, d], f64b(&self.item_latent)),
            ("item_topic", Dtype::I64, vec![n], i64b(&topics)),
            ("item_duration", Dtype::F64, vec![n], f64b(&self.item_duration)),
            ("item_attract", Dtype::F64, vec![n], f64b(&self.item_attract)),
            ("item_quality", Dtype::F64, vec![n], f64b(&self.item_quality)),
            ("item_logpop", Dtype::F64, vec![n], f64b(&self.item_logpop)),
            ("user_pref", Dtype::F64, vec![u, d], f64b(&self.user_pref)),
        ];
        let views = data
            .iter()
            .map(|(name, dt, shape, bytes)| Ok((name.to_string(), TensorView::new(*dt, shape.clone(), bytes)?)))
            .collect::<Result<Vec<_>>>()?;
        let bytes = safetensors::serialize(views, None)?;
        crate::util::io::atomic_write(&dir.join(WORLD_TENSORS), &bytes)?;
        crate::util::io::write_json(&dir.join(WORLD_JSON), &self.meta)
    }

    pub fn user_count(&self) -> usize {
        self.user_ids.len()
    }

    pub fn item_count(&self) -> usize {
        self.item_ids.len()
    }

    pub fn params(&self) -> &WorldParams {
        &self.meta.params
    }

    /// Row of a user id, or an error naming it.
    pub fn user_index(&self, user_id: &str) -> Result<usize> {
        self.user_index.get(user_id).copied().with_context(|| {
            format!(
                "unknown user id {user_id:?}: the world has {} users (ids as in interactions.csv)",
                self.user_count()
            )
        })
    }

    /// Row of an item id, or an error naming it.
    pub fn item_index(&self, item_id: &str) -> Result<usize> {
        self.item_index.get(item_id).copied().with_context(|| {
            format!(
                "unknown item id {item_id:?}: the world has {} items (ids as in interactions.csv)",
                self.item_count()
            )
        })
    }

    fn latent(&self, i: usize) -> &[f64] {
        let d = self.meta.latent_dim;
        &self.item_latent[i * d..(i + 1) * d]
    }

    fn pref(&self, u: usize) -> &[f64] {
        let d = self.meta.latent_dim;
        &self.user_pref[u * d..(u + 1) * d]
    }

    /// Affinity (cosine) of user row `u` and item row `i` in the final preference state.
    pub fn affinity_idx(&self, u: usize, i: usize) -> f64 {
        dot(self.pref(u), self.latent(i))
    }

    /// Logit of item row `i` in the logged choice softmax of user row `u` (final state).
    pub fn choice_logit_idx(&self, u: usize, i: usize) -> f64 {
        let p = self.params();
        p.choice_aff * self.affinity_idx(u, i)
            + p.choice_attract * self.item_attract[i]
            + p.choice_pop * self.item_logpop[i]
    }

    /// The `k` items a perfect imitator of the logs would rank first for a user (highest
    /// choice logit, best first): the reference an aligned model has to beat.
    pub fn most_clicked_items(&self, user_id: &str, k: usize) -> Result<Vec<String>> {
        let u = self.user_index(user_id)?;
        Ok(self.top_k(k, |i| self.choice_logit_idx(u, i)))
    }

    fn top_k(&self, k: usize, score: impl Fn(usize) -> f64) -> Vec<String> {
        let mut scored: Vec<(f64, usize)> = (0..self.item_count()).map(|i| (score(i), i)).collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(k).map(|(_, i)| self.item_ids[i].clone()).collect()
    }

    /// Expected reward of item row `i` for user row `u` (see the module doc).
    pub fn item_reward_idx(&self, u: usize, i: usize) -> f64 {
        let p = self.params();
        let s = self.affinity_idx(u, i);
        let watch = sigmoid(p.watch_aff * s + self.item_quality[i] + p.watch_bias) * self.item_duration[i];
        let like = sigmoid(p.like_aff * s + self.item_quality[i] + p.like_bias);
        watch / p.watch_ref_s + p.like_bonus * like
    }

    /// Expected reward of a session of item rows for user row `u` (see the module doc).
    pub fn session_reward_idx(&self, u: usize, items: &[usize]) -> f64 {
        let p = self.params();
        let mut total = 0.0;
        for (k, &i) in items.iter().enumerate() {
            let overlap: f64 =
                items[..k].iter().map(|&j| dot(self.latent(i), self.latent(j)).max(0.0).powi(p.redundancy_power)).sum();
            total += self.item_reward_idx(u, i) / (1.0 + p.redundancy * overlap);
        }
        total
    }

    /// Ground-truth expected reward of one item for a user (original ids).
    pub fn expected_item_reward(&self, user_id: &str, item_id: &str) -> Result<f64> {
        Ok(self.item_reward_idx(self.user_index(user_id)?, self.item_index(item_id)?))
    }

    /// Ground-truth expected reward of showing the session `item_ids` (in order) to a user
    /// at the end of their logged history.
    pub fn expected_session_reward(&self, user_id: &str, item_ids: &[&str]) -> Result<f64> {
        let u = self.user_index(user_id)?;
        let items = item_ids.iter().map(|id| self.item_index(id)).collect::<Result<Vec<_>>>()?;
        Ok(self.session_reward_idx(u, &items))
    }

    /// The `k` items of highest expected item reward for a user, best first (ties by row).
    pub fn best_items(&self, user_id: &str, k: usize) -> Result<Vec<String>> {
        let u = self.user_index(user_id)?;
        Ok(self.top_k(k, |i| self.item_reward_idx(u, i)))
    }

    /// A near-optimal session of `k` distinct items: greedy on the marginal session reward
    /// (accounts for redundancy, unlike `best_items`).
    pub fn best_session(&self, user_id: &str, k: usize) -> Result<Vec<String>> {
        let u = self.user_index(user_id)?;
        let p = self.params();
        let mut chosen: Vec<usize> = Vec::new();
        let mut overlap = vec![0.0f64; self.item_count()];
        let base: Vec<f64> = (0..self.item_count()).map(|i| self.item_reward_idx(u, i)).collect();
        for _ in 0..k.min(self.item_count()) {
            let mut best: Option<(f64, usize)> = None;
            for i in 0..self.item_count() {
                if chosen.contains(&i) {
                    continue;
                }
                let gain = base[i] / (1.0 + p.redundancy * overlap[i]);
                if best.is_none_or(|(g, _)| gain > g) {
                    best = Some((gain, i));
                }
            }
            let Some((_, b)) = best else { break };
            chosen.push(b);
            for (i, o) in overlap.iter_mut().enumerate() {
                *o += dot(self.latent(i), self.latent(b)).max(0.0).powi(p.redundancy_power);
            }
        }
        Ok(chosen.into_iter().map(|i| self.item_ids[i].clone()).collect())
    }

    /// Topic of an item (for tests of tokenizers and embeddings).
    pub fn item_topic(&self, item_id: &str) -> Result<usize> {
        Ok(self.item_topic[self.item_index(item_id)?])
    }

    /// Clickbait attractiveness of an item (raises clicks, not enjoyment).
    pub fn item_attractiveness(&self, item_id: &str) -> Result<f64> {
        Ok(self.item_attract[self.item_index(item_id)?])
    }
}

fn tensor<'a>(
    st: &'a safetensors::SafeTensors,
    path: &Path,
    name: &str,
    dtype: safetensors::Dtype,
    len: usize,
) -> Result<&'a [u8]> {
    let t = st
        .tensor(name)
        .with_context(|| format!("{}: missing tensor `{name}`; re-run `onerec data synth`", path.display()))?;
    let n: usize = t.shape().iter().product();
    if t.dtype() != dtype || n != len {
        bail!(
            "{}: tensor `{name}` is {:?} {:?}, expected {dtype:?} with {len} values",
            path.display(),
            t.dtype(),
            t.shape()
        );
    }
    // Borrow from the SafeTensors' buffer, which lives as long as `st`.
    let data: &'a [u8] = t.data();
    Ok(data)
}

fn read_f64(st: &safetensors::SafeTensors, path: &Path, name: &str, len: usize) -> Result<Vec<f64>> {
    let raw = tensor(st, path, name, safetensors::Dtype::F64, len)?;
    let v: Vec<f64> = raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
    if v.iter().any(|x| !x.is_finite()) {
        bail!("{}: tensor `{name}` has a NaN or infinite value", path.display());
    }
    Ok(v)
}

fn read_i64(st: &safetensors::SafeTensors, path: &Path, name: &str, len: usize) -> Result<Vec<i64>> {
    let raw = tensor(st, path, name, safetensors::Dtype::I64, len)?;
    Ok(raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> (tempfile::TempDir, World) {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = SynthOptions { users: 20, items: 60, topics: 4, seed: 9, ..SynthOptions::default() };
        let out = synth(&opts, dir.path()).expect("synth");
        (dir, out.world)
    }

    #[test]
    fn item_reward_matches_formula() {
        let (_, w) = tiny();
        let p = w.params().clone();
        let (u, i) = (3, 7);
        let s = w.affinity_idx(u, i);
        assert!((-1.0..=1.0).contains(&s));
        let f = sigmoid(p.watch_aff * s + w.item_quality[i] + p.watch_bias);
        let like = sigmoid(p.like_aff * s + w.item_quality[i] + p.like_bias);
        let want = f * w.item_duration[i] / p.watch_ref_s + p.like_bonus * like;
        assert!((w.item_reward_idx(u, i) - want).abs() < 1e-12);
    }

    #[test]
    fn redundant_sessions_are_worth_less_than_diverse_ones() {
        let (_, w) = tiny();
        // Two items of the same topic vs two of different topics with the same item rewards:
        // compare each to the plain sum, the same-topic pair loses more.
        let same: Vec<usize> = (0..w.item_count()).filter(|&i| w.item_topic[i] == 0).take(2).collect();
        let other = (0..w.item_count()).find(|&i| w.item_topic[i] == 1).expect("topic 1 item");
        let loss = |items: &[usize]| {
            let plain: f64 = items.iter().map(|&i| w.item_reward_idx(0, i)).sum();
            1.0 - w.session_reward_idx(0, items) / plain
        };
        assert!(loss(&same) > loss(&[same[0], other]), "{} vs {}", loss(&same), loss(&[same[0], other]));
        assert!(loss(&[same[0], other]) >= 0.0);
    }

    #[test]
    fn bad_options_are_rejected_before_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("w");
        let mut o = SynthOptions { users: 5, items: 40, topics: 3, ..SynthOptions::default() };
        o.session_min = 9;
        o.session_max = 3;
        let e = synth(&o, &out).err().expect("must fail");
        assert!(format!("{e:#}").contains("session_min"), "{e:#}");
        o.session_max = 9;
        o.params.like_bonus = f64::NAN;
        let e = synth(&o, &out).err().expect("must fail");
        assert!(format!("{e:#}").contains("like_bonus"), "{e:#}");
        assert!(!out.exists());
    }
}
