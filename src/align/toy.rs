//! A tiny bigram policy (a learned logit table `prev item -> next item`) for testing and
//! demonstrating alignment without the full model: the first item of a session is
//! conditioned on the last history item, each later item on the one before it.

use super::iterate::Policy;
use super::params;
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
        params::reinit_seeded(&vm, seed, "toy.bigram")?;
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

    /// Samples `n` sessions of `len` items per history from the policy (with replacement).
    pub fn sample(&self, histories: &[&[u32]], n: usize, len: usize, rng: &mut Rng) -> Result<Vec<Vec<Vec<u32>>>> {
        let probs = candle_nn::ops::softmax(&self.table, D::Minus1)?.to_vec2::<f32>()?;
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
        ensure!(histories.len() == sessions.len(), "bigram: {} histories, {} sessions", histories.len(), sessions.len());
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
