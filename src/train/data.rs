//! Training and validation examples from the leave-one-out split. Training examples
//! come from every prefix of each user's TRAINING part only; validation targets are
//! never used for training.

use crate::data::Dataset;
use crate::model::moe::MoeStats;
use crate::model::{Batch, OneRecModel};
use anyhow::Result;
use rand::seq::SliceRandom;

/// A training example: user `user`, target starting at history index `pos`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Example {
    pub user: u32,
    pub pos: u32,
}

/// Every (user, pos) with pos in `min_history..train.end` of the user's training part.
pub fn train_examples(ds: &Dataset, min_history: usize) -> Vec<Example> {
    let mut out = Vec::new();
    for u in 0..ds.n_users() {
        let tr = ds.split(u).train;
        for p in tr.start + min_history..tr.end {
            out.push(Example { user: u as u32, pos: p as u32 });
        }
    }
    out
}

/// The order of examples in `epoch`: a seeded shuffle, independent per epoch, so a
/// resumed run sees exactly the same batches.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..n as u32).collect();
    idx.shuffle(&mut crate::util::rng::stream(seed, &format!("train/shuffle/epoch{epoch}")));
    idx
}

/// Like [`epoch_order`], but batches hold examples of similar history length, so
/// the encoder pads less (histories are padded to the batch's longest): each window
/// of `window` batches is sorted by history length and cut into batches, then the
/// full batches are shuffled (the final partial batch stays last). Same seed, same
/// order. `lens[i]` = history length the encoder sees for example i.
pub fn epoch_order_bucketed(lens: &[u32], batch: usize, window: usize, seed: u64, epoch: usize) -> Vec<u32> {
    let mut idx = epoch_order(lens.len(), seed, epoch);
    let batch = batch.max(1);
    for w in idx.chunks_mut(batch * window.max(1)) {
        w.sort_by_key(|&i| lens[i as usize]);
    }
    let full = idx.len() / batch;
    let mut batches: Vec<usize> = (0..full).collect();
    batches.shuffle(&mut crate::util::rng::stream(seed, &format!("train/buckets/epoch{epoch}")));
    let mut out = Vec::with_capacity(idx.len());
    for b in batches {
        out.extend_from_slice(&idx[b * batch..(b + 1) * batch]);
    }
    out.extend_from_slice(&idx[full * batch..]);
    out
}

/// One micro-batch of training examples; `index` counts micro-batches from the start of
/// training (it keys the dropout stream, so a resumed run draws the same masks).
pub struct MicroBatch {
    pub index: usize,
    pub examples: Vec<Example>,
}

/// The micro-batches of training, in order and without end: each epoch is a seeded
/// shuffle of the examples ([`epoch_order`], or [`epoch_order_bucketed`] when
/// `length_buckets > 0`) cut into `batch_size` chunks, the last one possibly short.
/// Starting at micro-batch `start` gives exactly the batches an uninterrupted run sees
/// from there (`--resume`).
pub struct Batches<'a> {
    examples: &'a [Example],
    /// History lengths of `examples`, for length bucketing.
    lens: Vec<u32>,
    batch_size: usize,
    length_buckets: usize,
    seed: u64,
    per_epoch: usize,
    next: usize,
    /// The current epoch and its example order.
    order: Option<(usize, Vec<u32>)>,
}

impl<'a> Batches<'a> {
    /// `history_len` is the model's: bucketing sorts by the history the encoder sees.
    pub fn new(
        examples: &'a [Example],
        batch_size: usize,
        length_buckets: usize,
        history_len: usize,
        seed: u64,
        start: usize,
    ) -> Batches<'a> {
        Batches {
            examples,
            lens: history_lengths(examples, history_len),
            batch_size,
            length_buckets,
            seed,
            per_epoch: examples.len().div_ceil(batch_size),
            next: start,
            order: None,
        }
    }

    /// Micro-batches in one epoch.
    pub fn per_epoch(&self) -> usize {
        self.per_epoch
    }
}

impl Iterator for Batches<'_> {
    type Item = MicroBatch;

    fn next(&mut self) -> Option<MicroBatch> {
        if self.per_epoch == 0 {
            return None;
        }
        let j = self.next;
        self.next += 1;
        let epoch = j / self.per_epoch;
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let idx = if self.length_buckets > 0 {
                epoch_order_bucketed(&self.lens, self.batch_size, self.length_buckets, self.seed, epoch)
            } else {
                epoch_order(self.examples.len(), self.seed, epoch)
            };
            self.order = Some((epoch, idx));
        }
        let order = &self.order.as_ref()?.1;
        let b = j % self.per_epoch;
        let idx = &order[b * self.batch_size..((b + 1) * self.batch_size).min(self.examples.len())];
        Some(MicroBatch { index: j, examples: idx.iter().map(|&i| self.examples[i as usize]).collect() })
    }
}

/// History length the encoder sees for each example (at most `history_len`).
pub fn history_lengths(examples: &[Example], history_len: usize) -> Vec<u32> {
    examples.iter().map(|e| e.pos.min(history_len as u32)).collect()
}

/// Session-wise teacher-forced batch: history = the `history_len` items before
/// `pos`, target = up to `session_len` items from `pos` within the training part,
/// then EOS; shorter targets are padded and masked.
pub fn train_batch(model: &OneRecModel, ds: &Dataset, examples: &[Example], session_len: usize) -> Result<Batch> {
    let n = model.cfg.history_len;
    let mut hs = Vec::with_capacity(examples.len());
    let mut ss = Vec::with_capacity(examples.len());
    for e in examples {
        let u = e.user as usize;
        let h = ds.history(u);
        let end = ds.split(u).train.end;
        let p = e.pos as usize;
        hs.push(&h[p.saturating_sub(n)..p]);
        ss.push(&h[p..(p + session_len).min(end)]);
    }
    model.session_batch(&hs, &ss, true)
}

/// Validation examples: (history = everything before the validation item, item).
pub fn valid_examples(ds: &Dataset, max_users: usize) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for u in 0..ds.n_users() {
        if let Some(v) = ds.split(u).valid {
            out.push((u as u32, v as u32));
            if max_users > 0 && out.len() >= max_users {
                break;
            }
        }
    }
    out
}

/// Mean per-token NLL of the validation items' L code tokens.
pub fn valid_loss(model: &OneRecModel, ds: &Dataset, ex: &[(u32, u32)], batch: usize) -> Result<f64> {
    let (sum, toks) = valid_passes(model, ds, ex, batch, |_| ())?;
    Ok(if toks > 0.0 { sum / toks } else { f64::NAN })
}

/// Routing statistics (expert load, router entropy) of each MoE layer over the
/// validation examples `ex`, summed over batches of `batch`.
pub fn valid_routing(model: &OneRecModel, ds: &Dataset, ex: &[(u32, u32)], batch: usize) -> Result<Vec<MoeStats>> {
    let mut acc: Vec<MoeStats> = model.moe_layers().iter().map(|m| MoeStats::empty(m.n_experts())).collect();
    valid_passes(model, ds, ex, batch, |stats| acc.iter_mut().zip(stats).for_each(|(a, s)| a.add(s)))?;
    Ok(acc)
}

/// Teacher-forced passes over `ex` in batches: (summed target NLL, target tokens), with
/// each pass's MoE routing statistics handed to `on_routing`.
fn valid_passes(
    model: &OneRecModel,
    ds: &Dataset,
    ex: &[(u32, u32)],
    batch: usize,
    mut on_routing: impl FnMut(&[MoeStats]),
) -> Result<(f64, f64)> {
    let n = model.cfg.history_len;
    let (mut sum, mut toks) = (0.0f64, 0.0f64);
    for chunk in ex.chunks(batch.max(1)) {
        let mut hs = Vec::new();
        let mut ss = Vec::new();
        for &(u, v) in chunk {
            let h = ds.history(u as usize);
            let v = v as usize;
            hs.push(&h[v.saturating_sub(n)..v]);
            ss.push(&h[v..v + 1]);
        }
        let b = model.session_batch(&hs, &ss, false)?;
        let out = model.forward(&b)?;
        on_routing(&out.moe_stats);
        let lp = model.target_logprobs(&out.logits, &b)?;
        sum -= lp.sum_all()?.to_scalar::<f32>()? as f64;
        toks += b.tokens() as f64;
    }
    Ok((sum, toks))
}
