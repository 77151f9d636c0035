//! Decoding many users: batches of users in parallel (rayon) with results in input
//! order, so output is identical for any thread count; JSONL output.

use super::beam::{beam_search_with, BeamOptions, DecodeStats, Hypothesis};
use super::fused::{fused_search, Fusion};
use super::index::DecodeIndex;
use super::users::UserQuery;
use super::StepModel;
use crate::tokenizer::SemanticIds;
use crate::tokenizer::Vocab;
use anyhow::{ensure, Result};
use rayon::prelude::*;
use serde_json::json;
use std::io::Write;
use std::path::Path;

/// Beam search for all `histories`, `batch_users` at a time, batches in parallel.
pub fn generate_batched<M: StepModel + Sync>(
    model: &M,
    ids: &SemanticIds,
    index: &DecodeIndex,
    vocab: &Vocab,
    histories: &[&[u32]],
    opts: &BeamOptions,
    batch_users: usize,
) -> Result<(Vec<Vec<Hypothesis>>, DecodeStats)> {
    rank_batched(model, ids, index, vocab, histories, opts, batch_users, None)
}

/// [`generate_batched`], or with `fusion` the fused single-item ranking of
/// [`super::fused_search`], batch by batch.
#[allow(clippy::too_many_arguments)]
pub fn rank_batched<M: StepModel + Sync>(
    model: &M,
    ids: &SemanticIds,
    index: &DecodeIndex,
    vocab: &Vocab,
    histories: &[&[u32]],
    opts: &BeamOptions,
    batch_users: usize,
    fusion: Option<&Fusion>,
) -> Result<(Vec<Vec<Hypothesis>>, DecodeStats)> {
    ensure!(batch_users >= 1, "--batch-users must be >= 1");
    let pb = crate::util::progress::bar(histories.len() as u64, "generate");
    let parts: Vec<Result<(Vec<Vec<Hypothesis>>, DecodeStats)>> = histories
        .par_chunks(batch_users)
        .map(|chunk| {
            let r = match fusion {
                Some(f) => fused_search(model, ids, index, vocab, chunk, opts, f),
                None => beam_search_with(model, ids, index, vocab, chunk, opts),
            };
            pb.inc(chunk.len() as u64);
            r
        })
        .collect();
    pb.finish_and_clear();
    let mut out = Vec::with_capacity(histories.len());
    let mut stats = DecodeStats::default();
    for p in parts {
        let (h, s) = p?;
        out.extend(h);
        stats.merge(&s);
    }
    Ok((out, stats))
}

/// One JSON object per user (best first). Session length 1: `items` = the ranked
/// items, `scores` = their log-probs. Longer sessions: `items`/`scores` = the best
/// session and its per-item log-probs, `score` = its total, `sessions` = all
/// hypotheses as `{"items", "item_scores", "score"}`.
pub fn generate_json(user_id: &str, hyps: &[Hypothesis], ids: &SemanticIds, session_len: usize) -> serde_json::Value {
    let name = |i: &u32| ids.item_ids[*i as usize].clone();
    if session_len == 1 {
        let items: Vec<String> = hyps.iter().filter_map(|h| h.items.first()).map(name).collect();
        let scores: Vec<f32> = hyps.iter().map(|h| h.logprob).collect();
        json!({"user": user_id, "items": items, "scores": scores})
    } else {
        let best = hyps.first();
        let sessions: Vec<serde_json::Value> = hyps
            .iter()
            .map(|h| json!({"items": h.items.iter().map(name).collect::<Vec<_>>(), "item_scores": h.item_logprobs, "score": h.logprob}))
            .collect();
        json!({
            "user": user_id,
            "items": best.map(|h| h.items.iter().map(name).collect::<Vec<_>>()).unwrap_or_default(),
            "scores": best.map(|h| h.item_logprobs.clone()).unwrap_or_default(),
            "score": best.map(|h| h.logprob),
            "sessions": sessions,
        })
    }
}

/// Writes one [`generate_json`] line per user, atomically.
pub fn write_generate_jsonl(
    path: &Path,
    users: &[UserQuery],
    results: &[Vec<Hypothesis>],
    ids: &SemanticIds,
    session_len: usize,
) -> Result<()> {
    ensure!(users.len() == results.len(), "{} users but {} results", users.len(), results.len());
    crate::util::io::atomic_write_with(path, |w| {
        for (u, h) in users.iter().zip(results) {
            serde_json::to_writer(&mut *w, &generate_json(&u.user_id, h, ids, session_len))?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}
