//! Generate-then-fuse ranking of single items: the beam's items plus the item head's
//! best items, each scored exactly by `log p_gen(item) + weight * log p_head(item)`.
//!
//! Why: the beam ranks by the decoder's code-path probability alone and can only return
//! what it reached; the auxiliary item head (a full softmax over the catalogue on the
//! encoder's summary slot) sees every item at once. Fusing the two scores over the union
//! of their candidates keeps the generative ranking at weight 0's neighbourhood and tends
//! to the head's ranking as the weight grows; the weight is chosen on validation.

use super::beam::{beam_search_encoded, check_inputs, BeamOptions, DecodeStats, Hypothesis};
use super::forced::teacher_forced_encoded;
use super::index::DecodeIndex;
use super::StepModel;
use crate::tokenizer::{SemanticIds, Vocab};
use anyhow::{ensure, Context, Result};
use std::collections::{HashMap, HashSet};

/// Settings of fused ranking.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Fusion {
    /// Weight of the item head's log-probability (> 0).
    pub weight: f32,
    /// How many of the head's best items join the beam's candidates.
    pub candidates: usize,
}

impl Fusion {
    pub fn validate(&self) -> Result<()> {
        ensure!(self.weight.is_finite() && self.weight > 0.0, "item head weight {} must be > 0", self.weight);
        ensure!(self.candidates >= 1, "item head candidates must be >= 1");
        Ok(())
    }
}

/// Ranks single items for each history (`opts.session_len` must be 1): up to `opts.top`
/// hypotheses per user, best fused score first. Each hypothesis holds the item, its
/// generative log-probability (`item_logprobs[0]`) and the fused score (`logprob`).
/// History items are never candidates when `opts.exclude_history`.
pub fn fused_search<M: StepModel>(
    model: &M,
    ids: &SemanticIds,
    index: &DecodeIndex,
    vocab: &Vocab,
    histories: &[&[u32]],
    opts: &BeamOptions,
    fusion: &Fusion,
) -> Result<(Vec<Vec<Hypothesis>>, DecodeStats)> {
    fusion.validate()?;
    ensure!(opts.session_len == 1, "fused ranking ranks single items: session length must be 1");
    check_inputs(model, ids, vocab, histories)?;
    if histories.is_empty() {
        return Ok((vec![], DecodeStats::default()));
    }
    // One encoding serves the beam, the item head and the teacher-forced candidates.
    let state = model.encode(histories)?;
    let beam_opts = BeamOptions { top: opts.beam.max(opts.top), ..*opts };
    let (beams, stats) = beam_search_encoded(model, state.clone(), ids, index, vocab, histories, &beam_opts)?;
    let n = ids.n_items();
    let head = model
        .item_logprobs(&state)?
        .context("fused ranking needs an item head: train with model.item_id_embedding = true")?;
    ensure!(
        head.len() == histories.len() * n,
        "item head returned {} scores for {} rows x {n}",
        head.len(),
        histories.len()
    );

    // Per user: generative log-probs known from the beam, then the head's best items.
    let mut known: Vec<HashMap<u32, f32>> =
        beams.iter().map(|hs| hs.iter().map(|h| (h.items[0], h.item_logprobs[0])).collect()).collect();
    let mut missing: Vec<(usize, u32)> = Vec::new();
    for (u, h) in histories.iter().enumerate() {
        let excluded: HashSet<u32> = if opts.exclude_history { h.iter().copied().collect() } else { HashSet::new() };
        for item in top_items(&head[u * n..(u + 1) * n], fusion.candidates, &excluded) {
            if !known[u].contains_key(&item) {
                missing.push((u, item));
            }
        }
    }
    // Exact generative log-probs of the head's candidates the beam did not reach.
    let rows: Vec<u32> = missing.iter().map(|&(u, _)| u as u32).collect();
    let sessions: Vec<[u32; 1]> = missing.iter().map(|&(_, i)| [i]).collect();
    let sessions: Vec<&[u32]> = sessions.iter().map(|s| &s[..]).collect();
    let lps = teacher_forced_encoded(model, state, vocab, ids, histories.len(), &rows, &sessions)?;
    for (&(u, item), lp) in missing.iter().zip(lps) {
        known[u].insert(item, lp);
    }

    let out = known
        .into_iter()
        .enumerate()
        .map(|(u, cands)| {
            let mut hyps: Vec<Hypothesis> = cands
                .into_iter()
                .map(|(item, gen)| Hypothesis {
                    items: vec![item],
                    item_logprobs: vec![gen],
                    logprob: gen + fusion.weight * head[u * n + item as usize],
                })
                .collect();
            hyps.sort_by(|a, b| b.logprob.total_cmp(&a.logprob).then(a.items[0].cmp(&b.items[0])));
            hyps.truncate(opts.top);
            hyps
        })
        .collect();
    Ok((out, stats))
}

/// The `k` highest-scoring item ids of `scores` outside `excluded`, best first (ties by id).
pub fn top_items(scores: &[f32], k: usize, excluded: &HashSet<u32>) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..scores.len() as u32).filter(|i| !excluded.contains(i)).collect();
    let by_score = |a: &u32, b: &u32| scores[*b as usize].total_cmp(&scores[*a as usize]).then(a.cmp(b));
    if ids.len() > k && k > 0 {
        ids.select_nth_unstable_by(k - 1, by_score);
        ids.truncate(k);
    }
    ids.sort_by(by_score);
    ids.truncate(k);
    ids
}
