//! Constrained beam search over semantic-ID paths, batched over users.
//!
//! Every step only tokens that extend a valid prefix of the trie are scored; items
//! already in the session (and, with `exclude_history`, in the user's history) are
//! excluded exactly: a prefix whose whole subtree is excluded is never extended, so
//! no beam is wasted on a dead end. Scores are the model's raw log-probabilities
//! (not renormalised over the allowed set), so a hypothesis' score equals
//! [`teacher_forced_logprob`] of its session.

use super::index::{DecodeIndex, Exclusion};
use super::StepModel;
use crate::tokenizer::Vocab;
use crate::tokenizer::{PrefixTrie, SemanticIds};
use anyhow::{bail, ensure, Result};
use serde::Serialize;

/// Beam search settings.
#[derive(Clone, Debug)]
pub struct BeamOptions {
    /// Beam width per user.
    pub beam: usize,
    /// Items per generated session.
    pub session_len: usize,
    /// Hypotheses returned per user (at most `beam`).
    pub top: usize,
    /// Never recommend an item of the user's history.
    pub exclude_history: bool,
}

/// A generated session: dense item ids, each item's log-probability (sum of its
/// code tokens) and the session's total log-probability.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hypothesis {
    pub items: Vec<u32>,
    pub item_logprobs: Vec<f32>,
    pub logprob: f32,
}

/// Counters of a decoding run (summable over batches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct DecodeStats {
    /// (row, step) pairs decoded.
    pub steps: u64,
    /// Steps where the model's unconstrained top token was not an allowed token.
    pub top_token_invalid: u64,
    /// Items in the returned hypotheses.
    pub items: u64,
    /// Returned items whose token path does not map to a catalogue item (must be 0).
    pub invalid_items: u64,
}

impl DecodeStats {
    pub fn merge(&mut self, o: &DecodeStats) {
        self.steps += o.steps;
        self.top_token_invalid += o.top_token_invalid;
        self.items += o.items;
        self.invalid_items += o.invalid_items;
    }
    /// Fraction of steps where unconstrained argmax would have left the valid paths.
    pub fn invalid_fraction_before_masking(&self) -> f64 {
        if self.steps == 0 {
            0.0
        } else {
            self.top_token_invalid as f64 / self.steps as f64
        }
    }
}

/// One live beam.
#[derive(Clone, Debug)]
struct Beam {
    score: f32,
    node: u32,
    tokens: Vec<u32>,
    items: Vec<u32>,
    item_lps: Vec<f32>,
    cur_lp: f32,
}

impl Beam {
    fn root() -> Beam {
        Beam { score: 0.0, node: PrefixTrie::ROOT, tokens: vec![], items: vec![], item_lps: vec![], cur_lp: 0.0 }
    }
}

/// Checks that the model, vocabulary, semantic ids and histories agree.
pub(crate) fn check_inputs<M: StepModel>(
    model: &M,
    ids: &SemanticIds,
    vocab: &Vocab,
    histories: &[&[u32]],
) -> Result<()> {
    check_items(ids, histories, "history")?;
    ensure!(
        vocab.codebook_sizes == ids.codebook_sizes,
        "vocabulary codebook sizes {:?} differ from the semantic ids' {:?}: the checkpoint and tokenizer do not match",
        vocab.codebook_sizes,
        ids.codebook_sizes
    );
    ensure!(
        model.vocab_size() == vocab.size(),
        "model vocabulary has {} tokens, the semantic-ID vocabulary {}",
        model.vocab_size(),
        vocab.size()
    );
    Ok(())
}

/// Fails naming the first row (`what` + index) holding an item outside the catalogue.
pub(crate) fn check_items(ids: &SemanticIds, rows: &[&[u32]], what: &str) -> Result<()> {
    let n = ids.n_items() as u32;
    for (u, h) in rows.iter().enumerate() {
        if let Some(&bad) = h.iter().find(|&&i| i >= n) {
            bail!("{what} {u}: item {bad} is outside the catalogue of {n} items");
        }
    }
    Ok(())
}

/// Beam search for a batch of users (histories = dense item ids, oldest first).
/// Returns per user up to `top` hypotheses, best first.
pub fn beam_search<M: StepModel>(
    model: &M,
    ids: &SemanticIds,
    vocab: &Vocab,
    histories: &[&[u32]],
    opts: &BeamOptions,
) -> Result<Vec<Vec<Hypothesis>>> {
    let index = DecodeIndex::new(ids)?;
    Ok(beam_search_with(model, ids, &index, vocab, histories, opts)?.0)
}

/// [`beam_search`] with a prebuilt [`DecodeIndex`], also returning the counters.
pub fn beam_search_with<M: StepModel>(
    model: &M,
    ids: &SemanticIds,
    index: &DecodeIndex,
    vocab: &Vocab,
    histories: &[&[u32]],
    opts: &BeamOptions,
) -> Result<(Vec<Vec<Hypothesis>>, DecodeStats)> {
    ensure!(opts.beam >= 1 && opts.session_len >= 1 && opts.top >= 1, "beam, session length and top must be >= 1");
    check_inputs(model, ids, vocab, histories)?;
    if histories.is_empty() {
        return Ok((vec![], DecodeStats::default()));
    }
    let state = model.encode(histories)?;
    beam_search_encoded(model, state, ids, index, vocab, histories, opts)
}

/// [`beam_search_with`] from `state`, the fresh encoding of `histories` (inputs checked
/// by the caller): lets callers that need the encoding again encode once.
pub(crate) fn beam_search_encoded<M: StepModel>(
    model: &M,
    mut state: M::State,
    ids: &SemanticIds,
    index: &DecodeIndex,
    vocab: &Vocab,
    histories: &[&[u32]],
    opts: &BeamOptions,
) -> Result<(Vec<Vec<Hypothesis>>, DecodeStats)> {
    let mut stats = DecodeStats::default();
    let trie = ids.trie();
    let levels = ids.levels();
    let v = vocab.size();
    let excl: Vec<Exclusion> =
        histories.iter().map(|h| Exclusion::new(index, if opts.exclude_history { h } else { &[] })).collect();
    let mut beams: Vec<Vec<Beam>> = vec![vec![Beam::root()]; histories.len()];
    let mut tokens = vec![Vocab::BOS; histories.len()];
    let total = opts.session_len * levels;
    for t in 0..total {
        let level = t % levels;
        let lp = model.step(&mut state, &tokens)?;
        ensure!(lp.len() == tokens.len() * v, "model returned {} log-probs for {} rows x {v}", lp.len(), tokens.len());
        let mut parents = Vec::new();
        let mut next_tokens = Vec::new();
        let mut row0 = 0usize;
        for (u, ub) in beams.iter_mut().enumerate() {
            // (score, local parent, code, child)
            let mut cands: Vec<(f32, u32, u32, u32)> = Vec::new();
            for (bi, b) in ub.iter().enumerate() {
                let r = &lp[(row0 + bi) * v..(row0 + bi + 1) * v];
                let mut allowed_top = false;
                let top = argmax(r);
                for &(code, child) in trie.children(b.node) {
                    if excl[u].excluded(index, trie, child, &b.items) {
                        continue;
                    }
                    let tok = vocab.token(level, code);
                    allowed_top |= tok as usize == top;
                    cands.push((b.score + r[tok as usize], bi as u32, code, child));
                }
                stats.steps += 1;
                stats.top_token_invalid += u64::from(!allowed_top);
            }
            // Best first; ties broken by (parent, code) so results never depend on sort internals.
            cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            cands.truncate(opts.beam);
            let mut next = Vec::with_capacity(cands.len());
            for &(score, bi, code, child) in &cands {
                let p = &ub[bi as usize];
                let tok = vocab.token(level, code);
                let tok_lp = score - p.score;
                let mut nb = Beam {
                    score,
                    node: child,
                    tokens: p.tokens.clone(),
                    items: p.items.clone(),
                    item_lps: p.item_lps.clone(),
                    cur_lp: p.cur_lp + tok_lp,
                };
                nb.tokens.push(tok);
                if level + 1 == levels {
                    // A leaf: the item is complete; the next item starts at the root.
                    nb.items.push(trie.item(child).unwrap_or(u32::MAX));
                    nb.item_lps.push(nb.cur_lp);
                    nb.cur_lp = 0.0;
                    nb.node = PrefixTrie::ROOT;
                }
                parents.push((row0 + bi as usize) as u32);
                next_tokens.push(tok);
                next.push(nb);
            }
            row0 += ub.len();
            *ub = next;
        }
        if parents.is_empty() {
            break; // every beam of every user is dead (catalogue exhausted by exclusions)
        }
        if t + 1 < total {
            model.reorder(&mut state, &parents)?;
        }
        tokens = next_tokens;
    }
    let mut out = Vec::with_capacity(beams.len());
    for ub in beams {
        let mut hyps = Vec::new();
        for b in ub.into_iter().filter(|b| b.items.len() == opts.session_len).take(opts.top) {
            let (ok, bad) = verify_items(ids, vocab, &b.tokens, &b.items);
            stats.items += ok + bad;
            stats.invalid_items += bad;
            if bad == 0 {
                hyps.push(Hypothesis { items: b.items, item_logprobs: b.item_lps, logprob: b.score });
            }
        }
        out.push(hyps);
    }
    Ok((out, stats))
}

/// Re-derives each item from its generated tokens: (valid, invalid) item counts.
/// An item is invalid if its tokens are not one code per level in order, or the
/// codes are not a catalogue path, or the path is not the item recorded.
pub(crate) fn verify_items(ids: &SemanticIds, vocab: &Vocab, tokens: &[u32], items: &[u32]) -> (u64, u64) {
    let levels = ids.levels();
    let mut ok = 0;
    let mut bad = 0;
    for (k, chunk) in tokens.chunks(levels).enumerate() {
        let codes: Option<Vec<u32>> = chunk
            .iter()
            .enumerate()
            .map(|(l, &t)| vocab.decode(t).filter(|&(tl, _)| tl == l).map(|(_, c)| c))
            .collect();
        let item = codes.and_then(|c| ids.item(&c));
        if item.is_some() && item == items.get(k).copied() {
            ok += 1;
        } else {
            bad += 1;
        }
    }
    (ok, bad)
}

/// Index of the largest value (first on ties; NaN never wins).
pub(crate) fn argmax(r: &[f32]) -> usize {
    let mut best = 0;
    let mut bv = f32::NEG_INFINITY;
    for (i, &x) in r.iter().enumerate() {
        if x > bv {
            bv = x;
            best = i;
        }
    }
    best
}
