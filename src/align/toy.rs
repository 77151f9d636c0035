//! A tiny bigram policy (a learned logit table `prev item -> next item`) for testing and
//! demonstrating alignment without the full model: the first item of a session is
//! conditioned on the last history item, each later item on the one before it.

use super::iterate::Policy;
use crate::nn::{init, params};
use crate::util::rng::Rng;
use anyhow::{ensure, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use rand::Rng as _;
use std::path::{Path, PathBuf};

pub struct BigramPolicy {
    vm: VarMap,
    table: Tensor,
    pub n_items: usize,
}

impl BigramPolicy {
    /// A seeded table over `n_items` items (row `n_items` = "empty history").
    pub fn new(n_items: usize, seed: u64) -> Result<BigramPolicy> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        vb.get_with_hints((n_items + 1, n_items), "bigram.table", candle_nn::Init::Const(0.0))?;
        init::seeded(&vm, seed, "toy.bigram")?;
        Self::from_varmap(vm, n_items)
    }

    fn from_varmap(vm: VarMap, n_items: usize) -> Result<BigramPolicy> {
        let table = params::sorted_vars(&vm)
            .into_iter()
            .find(|(n, _)| n == "bigram.table")
            .map(|(_, v)| v.as_tensor().clone())
            .ok_or_else(|| anyhow::anyhow!("bigram.table missing"))?;
        Ok(BigramPolicy { vm, table, n_items })
    }

    fn prev_next(&self, h: &[u32], s: &[u32]) -> impl Iterator<Item = (u32, u32)> + '_ {
        let first = h.last().copied().unwrap_or(self.n_items as u32);
        let prevs: Vec<u32> = std::iter::once(first).chain(s.iter().copied()).collect();
        prevs.into_iter().zip(s.to_vec())
    }

    /// Next-item distributions, one row per previous item (last row: empty history).
    pub fn next_probs(&self) -> Result<Vec<Vec<f32>>> {
        Ok(candle_nn::ops::softmax(&self.table, D::Minus1)?.to_vec2::<f32>()?)
    }

    /// The most likely item at each step (greedy decoding), one session per history.
    pub fn greedy(&self, histories: &[&[u32]], len: usize) -> Result<Vec<Vec<u32>>> {
        let probs = self.next_probs()?;
        let argmax = |row: &[f32]| row.iter().enumerate().fold(0, |b, (i, &p)| if p > row[b] { i } else { b });
        Ok(histories
            .iter()
            .map(|h| {
                let mut prev = h.last().copied().unwrap_or(self.n_items as u32) as usize;
                (0..len)
                    .map(|_| {
                        prev = argmax(&probs[prev]);
                        prev as u32
                    })
                    .collect()
            })
            .collect())
    }

    /// Samples `n` sessions of `len` items per history from the policy (with replacement).
    pub fn sample(
        &self,
        histories: &[&[u32]],
        n: usize,
        len: usize,
        rng: &mut Rng,
    ) -> Result<super::iterate::Sessions> {
        let probs = self.next_probs()?;
        Ok(histories
            .iter()
            .map(|h| {
                (0..n)
                    .map(|_| {
                        let mut prev = h.last().copied().unwrap_or(self.n_items as u32) as usize;
                        (0..len)
                            .map(|_| {
                                let x: f32 = rng.gen();
                                let row = &probs[prev];
                                let (mut acc, mut pick) = (0f32, row.len() - 1);
                                for (i, p) in row.iter().enumerate() {
                                    acc += p;
                                    if x < acc {
                                        pick = i;
                                        break;
                                    }
                                }
                                prev = pick;
                                pick as u32
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect())
    }
}

impl Policy for BigramPolicy {
    fn sequence_logprob(&self, histories: &[&[u32]], sessions: &[&[u32]]) -> Result<Tensor> {
        ensure!(
            histories.len() == sessions.len(),
            "bigram: {} histories, {} sessions",
            histories.len(),
            sessions.len()
        );
        let (mut prev, mut next, mut seg) = (vec![], vec![], vec![]);
        let mut rows = 0;
        for (b, (h, s)) in histories.iter().zip(sessions).enumerate() {
            for (p, n) in self.prev_next(h, s) {
                ensure!((n as usize) < self.n_items && (p as usize) <= self.n_items, "bigram: item out of range");
                prev.push(p);
                next.push(n);
                seg.push(b);
                rows += 1;
            }
        }
        let dev = &Device::Cpu;
        let b = sessions.len();
        let mut segm = vec![0f32; b * rows];
        for (r, &bi) in seg.iter().enumerate() {
            segm[bi * rows + r] = 1.0;
        }
        let logits = self.table.index_select(&Tensor::new(prev, dev)?, 0)?;
        let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let picked = lp.gather(&Tensor::new(next, dev)?.unsqueeze(1)?, 1)?; // [R, 1]
        Ok(Tensor::from_vec(segm, (b, rows), dev)?.matmul(&picked)?.squeeze(1)?)
    }
    fn vars(&self) -> Vec<(String, Var)> {
        params::sorted_vars(&self.vm)
    }
    fn deep_copy(&self) -> Result<Self> {
        Self::from_varmap(params::clone_varmap(&self.vm)?, self.n_items)
    }
    fn save(&self, dir: &Path) -> Result<PathBuf> {
        let p = dir.join("weights.safetensors");
        params::save_varmap(&self.vm, &[], &p)?;
        Ok(p)
    }
    fn load_weights(&mut self, dir: &Path) -> Result<()> {
        let p = dir.join("weights.safetensors");
        params::fill_varmap(&self.vm, &params::load_tensors(&p)?, &p)
    }
}

/// A toy world for tests and demos: item `i` has topic `i % topics`, user `u` prefers
/// topic `u % topics`; engagement (watch fraction, likes) is high on the preferred topic.
pub struct ToyWorld {
    pub users: usize,
    pub items: usize,
    pub topics: usize,
}

impl ToyWorld {
    pub fn topic(&self, item: u32) -> usize {
        item as usize % self.topics
    }
    /// The majority topic of a history (the user's preferred topic for toy histories).
    pub fn history_topic(&self, history: &[u32]) -> usize {
        let mut c = vec![0usize; self.topics];
        for &i in history {
            c[self.topic(i)] += 1;
        }
        (0..self.topics).max_by_key(|&t| (c[t], std::cmp::Reverse(t))).unwrap_or(0)
    }
    /// True reward: the fraction of the session's items on the history's topic.
    pub fn reward(&self, history: &[u32], session: &[u32]) -> f32 {
        let t = self.history_topic(history);
        session.iter().filter(|&&i| self.topic(i) == t).count() as f32 / session.len().max(1) as f32
    }
    /// A dataset of `hist_len` interactions per user (75% on the preferred topic), cut
    /// into sessions of `session_len`; with engagement features `watch_time`, `duration`,
    /// `like` when `engagement` is set.
    pub fn dataset(&self, hist_len: usize, session_len: usize, engagement: bool, seed: u64) -> crate::data::Dataset {
        let mut rng = crate::util::rng::stream(seed, "toy.world");
        let per_topic = self.items.div_ceil(self.topics);
        let mut hs = Vec::new();
        let (mut wt, mut dur, mut like) = (vec![], vec![], vec![]);
        for u in 0..self.users {
            let t = u % self.topics;
            let h: Vec<u32> = (0..hist_len)
                .map(|_| {
                    if rng.gen::<f32>() < 0.75 {
                        loop {
                            let i = (rng.gen_range(0..per_topic) * self.topics + t) as u32;
                            if (i as usize) < self.items {
                                break i;
                            }
                        }
                    } else {
                        rng.gen_range(0..self.items as u32)
                    }
                })
                .collect();
            for &i in &h {
                let on = self.topic(i) == t;
                let d = 10.0 + (i % 7) as f32;
                let f = (if on { 0.8 } else { 0.15 }) + rng.gen_range(-0.1f32..0.1);
                dur.push(d);
                wt.push(d * f);
                like.push(if rng.gen::<f32>() < if on { 0.4 } else { 0.02 } { 1.0 } else { 0.0 });
            }
            hs.push(h);
        }
        let mut ds = crate::data::Dataset::from_histories(&hs, self.items);
        if engagement {
            ds.manifest.features = vec!["watch_time".into(), "duration".into(), "like".into()];
            ds.features = vec![wt, dur, like];
        }
        ds.session_starts.clear();
        ds.session_offsets = vec![0];
        for _ in 0..self.users {
            ds.session_starts.extend((0..hist_len).step_by(session_len.max(1)));
            ds.session_offsets.push(ds.session_starts.len());
        }
        ds.manifest.sessions = format!("every:{session_len}");
        ds
    }
    /// Two-level semantic ids (topic, index within topic) for the toy items.
    pub fn semantic_ids(&self) -> Result<crate::tokenizer::SemanticIds> {
        let per_topic = self.items.div_ceil(self.topics);
        let codes = (0..self.items).flat_map(|i| [(i % self.topics) as u32, (i / self.topics) as u32]).collect();
        crate::tokenizer::SemanticIds::new(
            (0..self.items).map(|i| i.to_string()).collect(),
            vec![self.topics, per_topic],
            codes,
        )
    }
}
