//! The session reward model: how much would this user engage with this whole session?
//!
//! Architecture: items are id embeddings (+ the sum of their semantic-code embeddings);
//! the user is the masked mean of their recent history items through a residual MLP;
//! each session item is made target-aware (`[e, e*u, u]` -> linear -> relu), the
//! session's items attend to each other (one residual self-attention layer), are
//! sum-pooled, and one sigmoid tower per engagement signal reads the pooled vector.
//! Towers: `watch` (session watch time / duration), `like` (fraction liked) when the data
//! has those features, otherwise `interact` (real session = 1). Negatives are random
//! sessions with label 0 on every tower. The scalar reward is a weighted tower sum.
//!
//! On disk: `reward.safetensors` (weights + `meta.codes`), `reward.json`
//! ([`RewardMeta`]), `report.json` ([`RewardReport`]) and `config.toml`.

use super::RewardConfig;
use crate::nn::{params, Linear};
use crate::tokenizer::SemanticIds;
use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use std::path::Path;

mod train;
pub use train::{train_reward_model, RewardSpec};

pub const WEIGHTS_FILE: &str = "reward.safetensors";
pub const META_FILE: &str = "reward.json";
const FORMAT: &str = "onerec-reward-v1";

/// What a saved reward model was trained with; checked before it scores anything.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RewardMeta {
    pub format: String,
    pub config: RewardConfig,
    /// Tower names, in output order.
    pub towers: Vec<String>,
    /// Scalar-reward weight of each tower.
    pub weights: Vec<f64>,
    /// Engagement features of the training dataset.
    pub features: Vec<String>,
    /// sha256 of the tokenizer's `codes.tsv`.
    pub tokenizer_sha256: String,
    /// Dense item count of the training dataset.
    pub n_items: usize,
    /// Codebook sizes when semantic-code embeddings are used, else empty.
    pub codebook_sizes: Vec<usize>,
    pub seed: u64,
}

/// Held-out quality of one tower.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TowerMetrics {
    pub name: String,
    /// AUC with positives = held-out examples whose label is above the held-out mean
    /// label (for binary labels: the usual AUC). None if one class is empty.
    pub auc: Option<f64>,
    pub threshold: f64,
    /// Mean BCE on held-out examples.
    pub loss: f64,
}

/// What `train_reward_model` measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RewardReport {
    pub towers: Vec<TowerMetrics>,
    /// AUC of the scalar reward for real held-out sessions vs sampled negatives.
    pub reward_auc: Option<f64>,
    pub train_examples: usize,
    pub heldout_examples: usize,
    pub heldout_users: usize,
    /// Mean training loss of each epoch.
    pub epoch_losses: Vec<f64>,
    pub seconds: f64,
}

/// The towers data with these engagement features supports.
pub fn towers_for(features: &[String]) -> Vec<String> {
    let has = |f: &str| features.iter().any(|x| x == f);
    let mut t = Vec::new();
    if has("watch_time") && has("duration") {
        t.push("watch".to_string());
    }
    if has("like") {
        t.push("like".to_string());
    }
    if t.is_empty() {
        t.push("interact".to_string());
    }
    t
}

/// The network (weights live in the VarMap / tensors it was built from).
struct RewardNet {
    item_emb: Embedding,
    /// Code embeddings and per-item global code indices `[n_items + 1, levels]` (pad row last).
    codes: Option<(Embedding, Tensor)>,
    user1: Linear,
    user2: Linear,
    fuse: Linear,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    towers: Vec<(Linear, Linear)>,
    dim: usize,
    pad: u32,
}

/// One padded batch: ids are `pad` where masked out.
struct Batch {
    hist: Tensor,
    hist_w: Tensor,
    sess: Tensor,
    sess_mask: Tensor,
    sess_add: Tensor,
}

impl RewardNet {
    fn new(
        vb: VarBuilder,
        n_items: usize,
        dim: usize,
        code_idx: Option<(usize, Tensor)>,
        n_towers: usize,
    ) -> Result<Self> {
        let item_emb = candle_nn::embedding(n_items + 1, dim, vb.pp("item_emb"))?;
        let codes = match code_idx {
            Some((n_codes, idx)) => Some((candle_nn::embedding(n_codes + 1, dim, vb.pp("code_emb"))?, idx)),
            None => None,
        };
        let l = |i, o, name: &str| Linear::with_bias(i, o, vb.pp(name));
        let towers = (0..n_towers)
            .map(|t| Ok((l(dim, dim, &format!("tower{t}.l1"))?, l(dim, 1, &format!("tower{t}.l2"))?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(RewardNet {
            item_emb,
            codes,
            user1: l(dim, dim, "user.l1")?,
            user2: l(dim, dim, "user.l2")?,
            fuse: l(3 * dim, dim, "fuse")?,
            q: l(dim, dim, "attn.q")?,
            k: l(dim, dim, "attn.k")?,
            v: l(dim, dim, "attn.v")?,
            o: l(dim, dim, "attn.o")?,
            towers,
            dim,
            pad: n_items as u32,
        })
    }

    /// Item representations for ids `[B, L]` -> `[B, L, d]`.
    fn items(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let mut e = self.item_emb.forward(ids)?;
        if let Some((emb, idx)) = &self.codes {
            let levels = idx.dim(1)?;
            let c = idx.index_select(&ids.flatten_all()?, 0)?.flatten_all()?;
            let ce = emb.forward(&c)?.reshape((b, l, levels, self.dim))?.sum(2)?;
            e = (e + ce)?;
        }
        Ok(e)
    }

    /// Tower logits `[B, T]`.
    fn forward(&self, x: &Batch) -> Result<Tensor> {
        let (b, m) = x.sess.dims2()?;
        let eh = self.items(&x.hist)?;
        let pooled = x.hist_w.unsqueeze(1)?.matmul(&eh)?.squeeze(1)?; // [B, d]
        let u = (self.user2.forward(&self.user1.forward(&pooled)?.relu()?)? + &pooled)?;
        let es = self.items(&x.sess)?;
        let ub = u.unsqueeze(1)?.broadcast_as((b, m, self.dim))?.contiguous()?;
        let feats = Tensor::cat(&[&es, &(&es * &ub)?, &ub], 2)?;
        let h = self.fuse.forward(&feats)?.relu()?;
        let q = self.q.forward(&h)?;
        let k = self.k.forward(&h)?;
        let v = self.v.forward(&h)?;
        let scores = (q.matmul(&k.t()?.contiguous()?)? / (self.dim as f64).sqrt())?;
        let scores = scores.broadcast_add(&x.sess_add.unsqueeze(1)?)?;
        let att = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let h = (&h + self.o.forward(&att.matmul(&v)?)?)?;
        let s = x.sess_mask.unsqueeze(1)?.matmul(&h)?.squeeze(1)?; // sum pooling [B, d]
        let outs =
            self.towers.iter().map(|(l1, l2)| Ok(l2.forward(&l1.forward(&s)?.relu()?)?)).collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&outs, 1)?)
    }

    /// Pads histories (last `hist_len` items) and sessions into a batch.
    fn batch(&self, histories: &[&[u32]], sessions: &[&[u32]], hist_len: usize) -> Result<Batch> {
        let b = histories.len();
        let hl = histories.iter().map(|h| h.len().min(hist_len)).max().unwrap_or(0).max(1);
        let sl = sessions.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let mut hist = vec![self.pad; b * hl];
        let mut hist_w = vec![0f32; b * hl];
        let mut sess = vec![self.pad; b * sl];
        let mut sess_mask = vec![0f32; b * sl];
        let mut sess_add = vec![-1e9f32; b * sl];
        for (r, (h, s)) in histories.iter().zip(sessions).enumerate() {
            let h = &h[h.len().saturating_sub(hist_len)..];
            for (j, &it) in h.iter().enumerate() {
                hist[r * hl + j] = it;
                hist_w[r * hl + j] = 1.0 / h.len() as f32;
            }
            for (j, &it) in s.iter().enumerate() {
                sess[r * sl + j] = it;
                sess_mask[r * sl + j] = 1.0;
                sess_add[r * sl + j] = 0.0;
            }
        }
        let dev = &Device::Cpu;
        Ok(Batch {
            hist: Tensor::from_vec(hist, (b, hl), dev)?,
            hist_w: Tensor::from_vec(hist_w, (b, hl), dev)?,
            sess: Tensor::from_vec(sess, (b, sl), dev)?,
            sess_mask: Tensor::from_vec(sess_mask, (b, sl), dev)?,
            sess_add: Tensor::from_vec(sess_add, (b, sl), dev)?,
        })
    }
}

/// Global code indices per item (`[n_items + 1, levels]`, last row = pad code).
fn code_index(sids: &SemanticIds) -> Result<(usize, Tensor)> {
    let levels = sids.levels();
    let mut offs = vec![0u32; levels];
    for l in 1..levels {
        offs[l] = offs[l - 1] + sids.codebook_sizes[l - 1] as u32;
    }
    let n_codes: usize = sids.codebook_sizes.iter().sum();
    let mut idx = Vec::with_capacity((sids.n_items() + 1) * levels);
    for i in 0..sids.n_items() {
        idx.extend(sids.codes(i as u32).iter().zip(&offs).map(|(c, o)| c + o));
    }
    idx.extend(std::iter::repeat_n(n_codes as u32, levels));
    Ok((n_codes, Tensor::from_vec(idx, (sids.n_items() + 1, levels), &Device::Cpu)?))
}

/// A trained reward model ready to score sessions.
pub struct RewardModel {
    net: RewardNet,
    pub meta: RewardMeta,
}

impl RewardModel {
    /// Loads a directory written by [`train_reward_model`].
    pub fn load(dir: &Path) -> Result<RewardModel> {
        let meta_path = dir.join(META_FILE);
        let meta: RewardMeta = crate::util::io::read_json(&meta_path).with_context(|| {
            format!("{} is not a reward model directory (`onerec reward` writes one)", dir.display())
        })?;
        if meta.format != FORMAT {
            bail!("{}: format `{}`, expected `{FORMAT}`", meta_path.display(), meta.format);
        }
        ensure!(
            meta.towers.len() == meta.weights.len() && !meta.towers.is_empty(),
            "{}: towers/weights mismatch",
            meta_path.display()
        );
        let wpath = dir.join(WEIGHTS_FILE);
        let tensors = params::load_tensors(&wpath)?;
        let code_idx = if meta.codebook_sizes.is_empty() {
            None
        } else {
            let idx = tensors
                .get("meta.codes")
                .with_context(|| format!("{}: tensor `meta.codes` missing", wpath.display()))?
                .clone();
            ensure!(
                idx.dims() == [meta.n_items + 1, meta.codebook_sizes.len()],
                "{}: meta.codes has shape {:?}, expected [{}, {}]",
                wpath.display(),
                idx.dims(),
                meta.n_items + 1,
                meta.codebook_sizes.len()
            );
            Some((meta.codebook_sizes.iter().sum(), idx))
        };
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let net = RewardNet::new(vb, meta.n_items, meta.config.dim, code_idx, meta.towers.len())?;
        params::fill_varmap(&vm, &tensors, &wpath)?;
        tracing::info!(dir = %dir.display(), towers = ?meta.towers, items = meta.n_items, "loaded reward model");
        Ok(RewardModel { net, meta })
    }

    /// Per-tower probabilities `[B][T]` for each (history, session) row.
    pub fn tower_probs(&self, histories: &[&[u32]], sessions: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        ensure!(
            histories.len() == sessions.len(),
            "reward score: {} histories but {} sessions",
            histories.len(),
            sessions.len()
        );
        let n = self.meta.n_items as u32;
        for (r, s) in sessions.iter().enumerate() {
            ensure!(!s.is_empty(), "reward score: session {r} is empty");
            if let Some(&bad) = s.iter().chain(histories[r].iter()).find(|&&i| i >= n) {
                bail!("reward score: row {r} has item {bad}, but the reward model knows {n} items (trained on another dataset?)");
            }
        }
        let mut out = Vec::with_capacity(sessions.len());
        for start in (0..sessions.len()).step_by(512) {
            let end = (start + 512).min(sessions.len());
            let batch = self.net.batch(&histories[start..end], &sessions[start..end], self.meta.config.history_len)?;
            let p = candle_nn::ops::sigmoid(&self.net.forward(&batch)?)?;
            out.extend(p.to_vec2::<f32>()?);
        }
        Ok(out)
    }

    /// Scalar rewards (weighted tower sum), one per (history, session) row.
    pub fn score(&self, histories: &[&[u32]], sessions: &[&[u32]]) -> Result<Vec<f32>> {
        Ok(self
            .tower_probs(histories, sessions)?
            .iter()
            .map(|p| p.iter().zip(&self.meta.weights).map(|(a, w)| a * *w as f32).sum())
            .collect())
    }

    /// Fails unless this model was trained with the same tokenizer, feature set and
    /// item count as the data / checkpoint it is about to judge.
    pub fn check_compatible(&self, tokenizer_sha256: &str, features: &[String], n_items: usize) -> Result<()> {
        if self.meta.tokenizer_sha256 != tokenizer_sha256 {
            bail!(
                "reward model was trained with tokenizer codes sha256 {} but the checkpoint uses {}: retrain the reward model with the checkpoint's tokenizer",
                self.meta.tokenizer_sha256,
                tokenizer_sha256
            );
        }
        if self.meta.features != features {
            bail!(
                "reward model was trained on data with features {:?} but this dataset has {:?}: retrain the reward model on this dataset",
                self.meta.features,
                features
            );
        }
        if self.meta.n_items != n_items {
            bail!(
                "reward model knows {} items but this dataset has {n_items}: retrain it on this dataset",
                self.meta.n_items
            );
        }
        Ok(())
    }
}

impl super::iterate::SessionScorer for RewardModel {
    fn score(&self, histories: &[&[u32]], sessions: &[&[u32]]) -> Result<Vec<f32>> {
        RewardModel::score(self, histories, sessions)
    }
}

/// Elementwise BCE with logits `[B, T]` (soft labels allowed).
fn bce(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    Ok((super::dpo::softplus(logits)? - (logits * labels)?)?)
}

/// AUC of `scores` for binary `labels` (ties count half); None if a class is empty.
pub fn auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut i) = (0f64, 0);
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += (i..=j).filter(|&k| labels[idx[k]]).count() as f64 * avg;
        i = j + 1;
    }
    let p = labels.iter().filter(|&&l| l).count() as f64;
    let n = labels.len() as f64 - p;
    (p > 0.0 && n > 0.0).then(|| (rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_basics() {
        assert_eq!(auc(&[0.1, 0.2, 0.9, 0.8], &[false, false, true, true]), Some(1.0));
        assert_eq!(auc(&[0.9, 0.8, 0.1, 0.2], &[false, false, true, true]), Some(0.0));
        assert_eq!(auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(auc(&[0.5, 0.6], &[true, true]), None);
    }

    /// candle has ops without backward that fail silently: every weight must get a gradient.
    #[test]
    fn every_weight_gets_a_gradient() {
        let sids = crate::align::toy::ToyWorld { users: 1, items: 12, topics: 3 }.semantic_ids().unwrap();
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let net = RewardNet::new(vb, 12, 8, Some(code_index(&sids).unwrap()), 2).unwrap();
        crate::nn::init::seeded(&vm, 1, "t").unwrap();
        let b = net.batch(&[&[1, 2, 3], &[4]], &[&[5, 6], &[7, 8, 9]], 10).unwrap();
        let labels = Tensor::new(&[[1f32, 0.5], [0.0, 0.2]], &Device::Cpu).unwrap();
        let loss = bce(&net.forward(&b).unwrap(), &labels).unwrap().mean_all().unwrap();
        let g = loss.backward().unwrap();
        for (name, v) in params::sorted_vars(&vm) {
            let n = g.get(&v).map(|t| t.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap());
            assert!(n.is_some_and(|n| n > 0.0), "{name} gets no gradient");
        }
    }

    #[test]
    fn towers_follow_features() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(towers_for(&f(&["watch_time", "duration", "like"])), f(&["watch", "like"]));
        assert_eq!(towers_for(&f(&["rating"])), f(&["interact"]));
    }
}
