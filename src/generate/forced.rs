//! Teacher-forced scoring: the model's log-probability of given sessions, computed
//! token by token through [`StepModel::step`] exactly as decoding sees them.

use super::beam::{check_inputs, check_items};
use super::StepModel;
use crate::tokenizer::SemanticIds;
use crate::tokenizer::Vocab;
use anyhow::{ensure, Result};
use std::collections::HashMap;

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
///
/// Sessions after the same history that share a token prefix share its decoder steps:
/// step t runs one row per distinct (history, first t tokens), not one per session.
/// Why: scoring many candidate items for one user (offline scoring, fused ranking)
/// otherwise repeats the BOS step for every candidate and the first code's step for
/// every candidate under the same first code. The KV cache of a row depends only on
/// its history and prefix, so sharing changes no score.
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
    // Depth 0: one decoder row per distinct history that has a non-empty session.
    let mut node_of: Vec<Option<usize>> = vec![None; seqs.len()];
    let mut parents: Vec<u32> = Vec::new();
    let mut first: HashMap<u32, usize> = HashMap::new();
    for (r, s) in seqs.iter().enumerate() {
        if !s.is_empty() {
            node_of[r] = Some(*first.entry(rows[r]).or_insert_with(|| {
                parents.push(rows[r]);
                parents.len() - 1
            }));
        }
    }
    if !parents.iter().enumerate().all(|(i, &h)| i == h as usize) || parents.len() != n_histories {
        model.reorder(&mut state, &parents)?;
    }
    let mut tokens = vec![Vocab::BOS; parents.len()];
    for t in 0..len {
        let lp = model.step(&mut state, &tokens)?;
        ensure!(lp.len() == tokens.len() * v, "model returned {} log-probs for {} rows x {v}", lp.len(), tokens.len());
        // Each session reads its token's log-prob off its node's row, then moves to
        // the child node (parent row, token) if it has more tokens to score.
        let mut child: HashMap<(usize, u32), usize> = HashMap::new();
        parents.clear();
        tokens.clear();
        for (r, s) in seqs.iter().enumerate() {
            let Some(node) = node_of[r] else { continue };
            let tok = s[t];
            sums[r] += lp[node * v + tok as usize];
            node_of[r] = (t + 1 < s.len()).then(|| {
                *child.entry((node, tok)).or_insert_with(|| {
                    parents.push(node as u32);
                    tokens.push(tok);
                    parents.len() - 1
                })
            });
        }
        if parents.is_empty() {
            break;
        }
        model.reorder(&mut state, &parents)?;
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::mock::{random_catalogue, HashLm};
    use std::cell::Cell;

    /// [`HashLm`] that counts the decoder rows it is fed.
    struct Counting(HashLm, Cell<usize>);

    impl StepModel for Counting {
        type State = <HashLm as StepModel>::State;
        fn encode(&self, h: &[&[u32]]) -> Result<Self::State> {
            self.0.encode(h)
        }
        fn step(&self, s: &mut Self::State, tokens: &[u32]) -> Result<Vec<f32>> {
            self.1.set(self.1.get() + tokens.len());
            self.0.step(s, tokens)
        }
        fn reorder(&self, s: &mut Self::State, rows: &[u32]) -> Result<()> {
            self.0.reorder(s, rows)
        }
        fn vocab_size(&self) -> usize {
            self.0.vocab_size
        }
    }

    /// One session alone, token by token, straight through the model.
    fn reference(model: &HashLm, vocab: &Vocab, ids: &SemanticIds, h: &[u32], s: &[u32]) -> f32 {
        let mut state = model.encode(&[h]).unwrap();
        let mut tok = Vocab::BOS;
        let mut sum = 0.0;
        for t in s.iter().flat_map(|&i| vocab.item_tokens(ids.codes(i))) {
            sum += model.step(&mut state, &[tok]).unwrap()[t as usize];
            tok = t;
        }
        sum
    }

    #[test]
    fn shared_prefixes_score_exactly_as_alone_with_fewer_rows() {
        let sizes = [2, 3, 4];
        let ids = random_catalogue(&sizes, 20, 5).unwrap();
        let vocab = Vocab::new(sizes.to_vec());
        let model = Counting(HashLm::new(vocab.size(), 9), Cell::new(0));
        let histories: Vec<&[u32]> = vec![&[1, 2, 3], &[4], &[5, 6]];
        // History 0 scores every item (first codes shared), history 2 nothing; sessions
        // of one, two and zero items, one repeated.
        let mut rows = Vec::new();
        let mut sessions: Vec<Vec<u32>> = Vec::new();
        for i in 0..20 {
            rows.push(0);
            sessions.push(vec![i]);
        }
        for s in [vec![7, 8], vec![7, 9], vec![7, 8], vec![], vec![3]] {
            rows.push(1);
            sessions.push(s);
        }
        let sess: Vec<&[u32]> = sessions.iter().map(|s| &s[..]).collect();
        let got = teacher_forced_logprob_rows(&model, &vocab, &ids, &histories, &rows, &sess).unwrap();
        for ((&r, s), g) in rows.iter().zip(&sess).zip(&got) {
            assert_eq!(*g, reference(&model.0, &vocab, &ids, histories[r as usize], s), "row {r} session {s:?}");
        }
        assert_eq!(got[23], 0.0);
        // Unshared: 3 rows per one-item session, 6 per two-item one = 20*3 + 3*6 + 3.
        let fed = model.1.get();
        assert!(fed < 20 * 3 + 3 * 6 + 3, "{fed} rows fed: prefixes were not shared");
        // History 0: 1 BOS row + at most 2 first codes + at most 6 two-code prefixes;
        // history 1: items 7 and 3 (<= 1 + 2 + 2 rows), then 7's next items (<= 1 + 2 + 2).
        assert!(fed <= 9 + 10, "{fed} rows fed");
    }
}
