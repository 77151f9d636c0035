//! A tiny deterministic stand-in model for tests and benchmarks: its log-probs depend
//! on the history, every token fed so far (a rolling hash acts as the "KV cache",
//! so a wrong `reorder` changes the scores) and a seed. O(vocab) per row per step.

use super::StepModel;
use crate::tokenizer::SemanticIds;
use anyhow::{ensure, Result};
use rand::Rng;

/// A catalogue of `n` items with distinct random paths over codebooks `sizes`
/// (seeded), item ids "0".."n-1": the fixture of generation tests and benches.
pub fn random_catalogue(sizes: &[usize], n: usize, seed: u64) -> Result<SemanticIds> {
    let paths: usize = sizes.iter().product();
    ensure!(n <= paths, "{n} items cannot have distinct paths over codebooks {sizes:?} ({paths} paths)");
    let mut rng = crate::util::rng::stream(seed, "test-ids");
    let mut seen = std::collections::HashSet::new();
    let mut codes = Vec::new();
    while seen.len() < n {
        let p: Vec<u32> = sizes.iter().map(|&s| rng.gen_range(0..s as u32)).collect();
        if seen.insert(p.clone()) {
            codes.extend(p);
        }
    }
    SemanticIds::new((0..n).map(|i| i.to_string()).collect(), sizes.to_vec(), codes)
}

/// Hash-based language model over `vocab_size` tokens.
#[derive(Clone, Debug)]
pub struct HashLm {
    pub vocab_size: usize,
    pub seed: u64,
    /// Logit scale: larger = peakier distributions.
    pub sharpness: f32,
}

/// Per row: history hash, prefix hash, tokens fed.
#[derive(Clone, Debug)]
pub struct HashLmState {
    pub rows: Vec<(u64, u64, u32)>,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

impl HashLm {
    pub fn new(vocab_size: usize, seed: u64) -> HashLm {
        HashLm { vocab_size, seed, sharpness: 3.0 }
    }
    /// Log-softmax row for a (history, prefix) context.
    fn row(&self, ctx: u64, out: &mut Vec<f32>) {
        let start = out.len();
        let mut max = f32::NEG_INFINITY;
        for v in 0..self.vocab_size as u64 {
            let h = mix(ctx ^ mix(v.wrapping_add(0x9e3779b97f4a7c15)));
            let x = ((h >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * self.sharpness;
            max = max.max(x);
            out.push(x);
        }
        let lse = max + out[start..].iter().map(|x| (x - max).exp()).sum::<f32>().ln();
        for x in &mut out[start..] {
            *x -= lse;
        }
    }
}

impl StepModel for HashLm {
    type State = HashLmState;
    fn encode(&self, histories: &[&[u32]]) -> Result<HashLmState> {
        let rows =
            histories.iter().map(|h| (h.iter().fold(mix(self.seed), |a, &i| mix(a ^ i as u64)), 0u64, 0u32)).collect();
        Ok(HashLmState { rows })
    }
    fn step(&self, state: &mut HashLmState, tokens: &[u32]) -> Result<Vec<f32>> {
        ensure!(tokens.len() == state.rows.len(), "{} tokens for {} rows", tokens.len(), state.rows.len());
        let mut out = Vec::with_capacity(tokens.len() * self.vocab_size);
        for (row, &t) in state.rows.iter_mut().zip(tokens) {
            ensure!((t as usize) < self.vocab_size, "token {t} outside vocabulary of {}", self.vocab_size);
            row.1 = mix(row.1 ^ (t as u64 + 1).wrapping_mul(0x100000001b3));
            row.2 += 1;
            self.row(row.0 ^ row.1, &mut out);
        }
        Ok(out)
    }
    fn reorder(&self, state: &mut HashLmState, rows: &[u32]) -> Result<()> {
        let mut new = Vec::with_capacity(rows.len());
        for &r in rows {
            let row = state.rows.get(r as usize).copied();
            new.push(row.ok_or_else(|| anyhow::anyhow!("reorder: row {r} of {}", state.rows.len()))?);
        }
        state.rows = new;
        Ok(())
    }
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}
