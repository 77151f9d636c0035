//! Teacher-forced scoring: the model's log-probability of given sessions, computed
//! token by token through [`StepModel::step`] exactly as decoding sees them.

use super::beam::{check_inputs, check_items};
use super::StepModel;
use crate::tokenizer::SemanticIds;
use crate::tokenizer::Vocab;
use anyhow::{ensure, Result};

/// Sum of the log-probabilities of every code token of `sessions[u]` (dense item
/// ids) given `histories[u]`; sessions may differ in length (an empty one scores 0).
pub fn teacher_forced_logprob<M: StepModel>(
    model: &M,
    vocab: &Vocab,
    ids: &SemanticIds,
    histories: &[&[u32]],
    sessions: &[&[u32]],
) -> Result<Vec<f32>> {
    ensure!(histories.len() == sessions.len(), "{} histories but {} sessions", histories.len(), sessions.len());
    let rows: Vec<u32> = (0..histories.len() as u32).collect();
    teacher_forced_logprob_rows(model, vocab, ids, histories, &rows, sessions)
}

/// [`teacher_forced_logprob`] of `sessions[r]` given `histories[rows[r]]`: each history
/// is encoded once however many sessions are scored after it (rows share its encoding
/// through [`StepModel::reorder`]).
pub fn teacher_forced_logprob_rows<M: StepModel>(
    model: &M,
    vocab: &Vocab,
    ids: &SemanticIds,
    histories: &[&[u32]],
    rows: &[u32],
    sessions: &[&[u32]],
) -> Result<Vec<f32>> {
    check_inputs(model, ids, vocab, histories)?;
    if sessions.iter().all(|s| s.is_empty()) {
        // Nothing to score: no encoding needed (and none possible for zero histories).
        ensure!(rows.len() == sessions.len(), "{} rows but {} sessions", rows.len(), sessions.len());
        return Ok(vec![0.0; sessions.len()]);
    }
    let state = model.encode(histories)?;
    teacher_forced_encoded(model, state, vocab, ids, histories.len(), rows, sessions)
}

/// [`teacher_forced_logprob_rows`] from `state`, the fresh encoding of `n_histories`
/// histories (checked by the caller).
pub(crate) fn teacher_forced_encoded<M: StepModel>(
    model: &M,
    mut state: M::State,
    vocab: &Vocab,
    ids: &SemanticIds,
    n_histories: usize,
    rows: &[u32],
    sessions: &[&[u32]],
) -> Result<Vec<f32>> {
    ensure!(rows.len() == sessions.len(), "{} rows but {} sessions", rows.len(), sessions.len());
    check_items(ids, sessions, "session")?;
    if let Some(&r) = rows.iter().find(|&&r| r as usize >= n_histories) {
        anyhow::bail!("row {r} refers past the {n_histories} histories");
    }
    let seqs: Vec<Vec<u32>> =
        sessions.iter().map(|s| s.iter().flat_map(|&i| vocab.item_tokens(ids.codes(i))).collect()).collect();
    let len = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut sums = vec![0f32; seqs.len()];
    if len == 0 {
        return Ok(sums);
    }
    let v = vocab.size();
    if !rows.iter().enumerate().all(|(r, &h)| r == h as usize) || rows.len() != n_histories {
        model.reorder(&mut state, rows)?;
    }
    let mut tokens = vec![Vocab::BOS; seqs.len()];
    for t in 0..len {
        let lp = model.step(&mut state, &tokens)?;
        ensure!(lp.len() == seqs.len() * v, "model returned {} log-probs for {} rows x {v}", lp.len(), seqs.len());
        for (r, s) in seqs.iter().enumerate() {
            tokens[r] = match s.get(t) {
                Some(&tok) => {
                    sums[r] += lp[r * v + tok as usize];
                    tok
                }
                None => Vocab::PAD,
            };
        }
    }
    Ok(sums)
}
