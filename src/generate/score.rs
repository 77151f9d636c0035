//! Batch scoring of (user, candidate item) pairs: the model's teacher-forced
//! log-probability of the item as the next recommendation after the user's history.

use super::forced::teacher_forced_logprob_rows;
use super::users::{split_point, Shard, SplitSel};
use super::StepModel;
use crate::data::Dataset;
use crate::tokenizer::SemanticIds;
use crate::tokenizer::Vocab;
use anyhow::{bail, ensure, Context, Result};
use rayon::prelude::*;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;

/// A parsed pair: 1-based line number, original ids, dense ids.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub line: usize,
    pub user_id: String,
    pub item_id: String,
    pub user: usize,
    pub item: u32,
}

/// Pairs read from a file, how many bad lines were skipped, and whether the first
/// line was taken as a header.
#[derive(Clone, Debug, Default)]
pub struct Pairs {
    pub pairs: Vec<Pair>,
    pub skipped: usize,
    pub header: bool,
}

/// Reads `user_id<TAB>item_id` lines (original ids; blank and `#` lines ignored).
/// A first line none of whose fields is a known user or item id is taken as a header
/// (e.g. `user_id<TAB>item_id`) and logged. Unknown ids, a wrong column count, or a
/// user with no history before `split`'s target (nothing to score against) are an
/// error naming the line, or, with `skip_bad`, skipped and counted (each logged at warn).
pub fn read_pairs(path: &Path, ds: &Dataset, ids: &SemanticIds, split: SplitSel, skip_bad: bool) -> Result<Pairs> {
    let users: HashMap<&str, usize> = ds.user_ids.iter().enumerate().map(|(i, u)| (u.as_str(), i)).collect();
    let mut out = Pairs::default();
    let mut first = true;
    for (ln, line) in crate::util::io::open_text(path)?.lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: cannot read line", path.display(), ln + 1))?;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
        if std::mem::replace(&mut first, false)
            && cols.iter().all(|c| !users.contains_key(c) && ids.row_of(c).is_none())
        {
            tracing::info!(
                "{}:{}: taken as a header (no field is a known user or item id): {line}",
                path.display(),
                ln + 1
            );
            out.header = true;
            continue;
        }
        let parsed = (|| -> Result<Pair> {
            if cols.len() != 2 {
                bail!("expected 2 tab-separated columns `user_id<TAB>item_id`, found {}", cols.len());
            }
            let user =
                *users.get(cols[0]).with_context(|| format!("unknown user id `{}` (not in the dataset)", cols[0]))?;
            let item =
                ids.row_of(cols[1]).with_context(|| format!("unknown item id `{}` (not in the catalogue)", cols[1]))?;
            if history_before(ds, user, split).is_none() {
                bail!("user `{}` has no history before the {split} target (too short to score)", cols[0]);
            }
            Ok(Pair { line: ln + 1, user_id: cols[0].to_string(), item_id: cols[1].to_string(), user, item })
        })();
        match parsed {
            Ok(p) => out.pairs.push(p),
            Err(e) if skip_bad => {
                tracing::warn!("{}:{}: skipped: {e:#}", path.display(), ln + 1);
                out.skipped += 1;
            }
            Err(e) => bail!("{}:{}: {e:#} (use --skip-bad-lines to skip such lines)", path.display(), ln + 1),
        }
    }
    Ok(out)
}

/// User `u`'s history before `split`'s target; None when there is no such target or
/// the history before it is empty.
fn history_before(ds: &Dataset, u: usize, split: SplitSel) -> Option<&[u32]> {
    let (end, _) = split_point(ds, u, split)?;
    (end > 0).then(|| &ds.history(u)[..end])
}

/// Log-probability of each pair's item given the user's history up to `split`
/// ([`read_pairs`] drops users without one; here they are an error naming the line).
/// Output order = input order.
///
/// Pairs are grouped by user and cut into batches of `batch` pairs that run in
/// parallel; a batch encodes each of its users' histories once and shares the decoder
/// steps of common code prefixes ([`teacher_forced_logprob_rows`]), so scoring many
/// candidates per user costs little more than one beam step per candidate.
#[allow(clippy::too_many_arguments)]
pub fn score_pairs<M: StepModel + Sync>(
    model: &M,
    vocab: &Vocab,
    ids: &SemanticIds,
    ds: &Dataset,
    split: SplitSel,
    pairs: &[Pair],
    batch: usize,
) -> Result<Vec<f32>> {
    ensure!(batch >= 1, "batch size must be >= 1");
    let mut hist: Vec<&[u32]> = Vec::with_capacity(pairs.len());
    for p in pairs {
        let h = history_before(ds, p.user, split).with_context(|| {
            format!("line {}: user `{}` has no history before the {split} target", p.line, p.user_id)
        })?;
        hist.push(h);
    }
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by_key(|&i| pairs[i].user); // stable: a user's pairs stay in file order
    let parts: Vec<Result<Vec<f32>>> = order
        .par_chunks(batch)
        .map(|chunk| {
            let mut histories: Vec<&[u32]> = Vec::new();
            let mut row_of: HashMap<usize, u32> = HashMap::new();
            let mut rows = Vec::with_capacity(chunk.len());
            let mut sessions = Vec::with_capacity(chunk.len());
            for &i in chunk {
                rows.push(*row_of.entry(pairs[i].user).or_insert_with(|| {
                    histories.push(hist[i]);
                    histories.len() as u32 - 1
                }));
                sessions.push(std::slice::from_ref(&pairs[i].item));
            }
            teacher_forced_logprob_rows(model, vocab, ids, &histories, &rows, &sessions)
        })
        .collect();
    let mut out = vec![0f32; pairs.len()];
    for (chunk, part) in order.chunks(batch).zip(parts) {
        for (&i, s) in chunk.iter().zip(part?) {
            out[i] = s;
        }
    }
    Ok(out)
}

/// Writes scores as TSV (`user_id<TAB>item_id<TAB>logprob`, when `path` ends in .tsv)
/// or JSONL (`{"user", "item", "logprob"}`), atomically.
pub fn write_scores(path: &Path, pairs: &[Pair], scores: &[f32]) -> Result<()> {
    ensure!(pairs.len() == scores.len(), "{} pairs but {} scores", pairs.len(), scores.len());
    let tsv = path.extension().is_some_and(|e| e == "tsv");
    crate::util::io::atomic_write_with(path, |w| {
        for (p, s) in pairs.iter().zip(scores) {
            if tsv {
                writeln!(w, "{}\t{}\t{}", p.user_id, p.item_id, s)?;
            } else {
                serde_json::to_writer(
                    &mut *w,
                    &serde_json::json!({"user": p.user_id, "item": p.item_id, "logprob": s}),
                )?;
                w.write_all(b"\n")?;
            }
        }
        Ok(())
    })
}

/// The pairs of one shard (contiguous block of the valid pairs, in file order).
pub fn shard_pairs(pairs: &[Pair], shard: Shard, batch: usize) -> &[Pair] {
    &pairs[shard.range_in_blocks(pairs.len(), batch)]
}
