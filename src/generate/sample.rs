//! Sampling sessions (temperature / top-k over the allowed tokens) as an alternative
//! to beam search, e.g. to draw candidate sessions for preference alignment.

use super::beam::{check_inputs, verify_items, BeamOptions, Hypothesis};
use super::index::{DecodeIndex, Exclusion};
use super::StepModel;
use crate::tokenizer::Vocab;
use crate::tokenizer::{PrefixTrie, SemanticIds};
use anyhow::{ensure, Result};
use rand::Rng;

/// Draws `n` sessions per user of `opts.session_len` items under the same constraints
/// as beam search (valid paths, no repeats, optional history exclusion). Tokens are
/// drawn from the allowed set with probabilities softmax(logp / temperature) restricted
/// to the `top_k` most likely allowed tokens (0 = all); temperature 0 is greedy.
/// Scores are the model's raw log-probs. Per user, best first (ties: draw order).
/// `opts.beam` and `opts.top` are ignored. A session cut short because every item
/// is excluded is dropped.
#[allow(clippy::too_many_arguments)]
pub fn sample_sessions<M: StepModel, R: Rng>(
    model: &M,
    ids: &SemanticIds,
    vocab: &Vocab,
    histories: &[&[u32]],
    opts: &BeamOptions,
    n: usize,
    temperature: f32,
    top_k: usize,
    rng: &mut R,
) -> Result<Vec<Vec<Hypothesis>>> {
    ensure!(n >= 1 && opts.session_len >= 1, "samples per user and session length must be >= 1");
    ensure!(temperature.is_finite() && temperature >= 0.0, "temperature must be finite and >= 0, got {temperature}");
    check_inputs(model, ids, vocab, histories)?;
    if histories.is_empty() {
        return Ok(vec![]);
    }
    let index = DecodeIndex::new(ids)?;
    let trie = ids.trie();
    let levels = ids.levels();
    let v = vocab.size();
    let excl: Vec<Exclusion> =
        histories.iter().map(|h| Exclusion::new(&index, if opts.exclude_history { h } else { &[] })).collect();
    let mut state = model.encode(histories)?;
    let rows: Vec<u32> = (0..histories.len() as u32).flat_map(|u| std::iter::repeat_n(u, n)).collect();
    model.reorder(&mut state, &rows)?;
    struct Row {
        node: u32,
        alive: bool,
        tokens: Vec<u32>,
        items: Vec<u32>,
        item_lps: Vec<f32>,
        cur: f32,
        score: f32,
    }
    let mut st: Vec<Row> = rows
        .iter()
        .map(|_| Row {
            node: PrefixTrie::ROOT,
            alive: true,
            tokens: vec![],
            items: vec![],
            item_lps: vec![],
            cur: 0.0,
            score: 0.0,
        })
        .collect();
    let mut tokens = vec![Vocab::BOS; rows.len()];
    let total = opts.session_len * levels;
    for t in 0..total {
        let level = t % levels;
        let lp = model.step(&mut state, &tokens)?;
        ensure!(lp.len() == rows.len() * v, "model returned {} log-probs for {} rows x {v}", lp.len(), rows.len());
        for (ri, row) in st.iter_mut().enumerate() {
            if !row.alive {
                tokens[ri] = Vocab::PAD;
                continue;
            }
            let r = &lp[ri * v..(ri + 1) * v];
            let u = rows[ri] as usize;
            let mut cands: Vec<(f32, u32, u32)> = trie
                .children(row.node)
                .iter()
                .filter(|&&(_, child)| !excl[u].excluded(&index, trie, child, &row.items))
                .map(|&(code, child)| (r[vocab.token(level, code) as usize], code, child))
                .collect();
            if cands.is_empty() {
                row.alive = false;
                tokens[ri] = Vocab::PAD;
                continue;
            }
            cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            if top_k > 0 {
                cands.truncate(top_k);
            }
            let pick = if temperature == 0.0 {
                0
            } else {
                let m = cands[0].0;
                let w: Vec<f64> = cands.iter().map(|c| (((c.0 - m) / temperature) as f64).exp()).collect();
                let mut x = rng.gen::<f64>() * w.iter().sum::<f64>();
                let mut k = 0;
                while k + 1 < w.len() && x >= w[k] {
                    x -= w[k];
                    k += 1;
                }
                k
            };
            let (l, code, child) = cands[pick];
            let tok = vocab.token(level, code);
            row.tokens.push(tok);
            row.score += l;
            row.cur += l;
            row.node = child;
            if level + 1 == levels {
                row.items.push(trie.item(child).unwrap_or(u32::MAX));
                row.item_lps.push(row.cur);
                row.cur = 0.0;
                row.node = PrefixTrie::ROOT;
            }
            tokens[ri] = tok;
        }
    }
    let mut out: Vec<Vec<Hypothesis>> = vec![Vec::new(); histories.len()];
    for (ri, row) in st.into_iter().enumerate() {
        let (_, bad) = verify_items(ids, vocab, &row.tokens, &row.items);
        if row.items.len() == opts.session_len && bad == 0 {
            out[rows[ri] as usize].push(Hypothesis {
                items: row.items,
                item_logprobs: row.item_lps,
                logprob: row.score,
            });
        }
    }
    for h in &mut out {
        h.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
    }
    Ok(out)
}
