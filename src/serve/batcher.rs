//! Dynamic batching: handlers put jobs on a bounded queue; `workers` threads (off the
//! async runtime) take turns at it: a worker takes the first job, gathers more until
//! `max_batch` jobs or `max_wait` has passed, then releases the queue to the next worker
//! and decodes its batch, so one batch gathers while another decodes (as `onerec
//! generate` decodes a batch per thread). Batches run through the same library calls as
//! `onerec generate` ([`rank_batched`]) and `onerec score`
//! ([`teacher_forced_logprob_rows`]). Jobs of one batch may differ in beam settings: they
//! are grouped by [`BeamOptions`] and fused ranking, and each group is one batched
//! search ([`rank_batched`]).

use super::metrics::Metrics;
use super::state::ModelState;
use crate::generate::fused::Fusion;
use crate::generate::{rank_batched, teacher_forced_logprob_rows, BeamOptions, Hypothesis};
use anyhow::{anyhow, Result};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// One unit of model work and where its answer goes.
pub enum Job {
    Recommend {
        history: Vec<u32>,
        opts: BeamOptions,
        fusion: Option<Fusion>,
        reply: oneshot::Sender<Result<Vec<Hypothesis>>>,
    },
    Score {
        history: Vec<u32>,
        items: Vec<u32>,
        reply: oneshot::Sender<Result<Vec<f32>>>,
    },
}

/// Batching limits.
#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    /// Most jobs decoded together.
    pub max_batch: usize,
    /// Longest a job waits for others to join its batch.
    pub max_wait: Duration,
    /// Jobs that may wait in the queue; more are refused (503).
    pub queue: usize,
    /// Threads that gather and decode batches (at least 1).
    pub workers: usize,
}

/// The handlers' side of the queue.
#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Job>,
    metrics: Arc<Metrics>,
}

/// Why a job was not queued.
pub enum Refused {
    /// The queue is full (backpressure: 503).
    Full,
    /// The worker has stopped (shutting down).
    Closed,
}

impl Batcher {
    /// Starts the worker threads; they run until every [`Batcher`] clone is dropped and
    /// the queue is drained.
    pub fn start(
        state: Arc<ModelState>,
        cfg: BatchConfig,
        metrics: Arc<Metrics>,
    ) -> Result<(Batcher, Vec<std::thread::JoinHandle<()>>)> {
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..cfg.workers.max(1))
            .map(|i| {
                let (state, rx, m) = (state.clone(), rx.clone(), metrics.clone());
                std::thread::Builder::new()
                    .name(format!("onerec-batcher-{i}"))
                    .spawn(move || worker(&state, cfg, &rx, &m))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok((Batcher { tx, metrics }, workers))
    }

    /// Queues a job without waiting.
    pub fn submit(&self, job: Job) -> std::result::Result<(), Refused> {
        // Counted before sending so the worker's decrement never goes below zero.
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => Refused::Full,
                    TrySendError::Disconnected(_) => Refused::Closed,
                })
            }
        }
    }
}

fn worker(state: &ModelState, cfg: BatchConfig, rx: &Mutex<Receiver<Job>>, metrics: &Metrics) {
    while let Some(batch) = gather(cfg, rx) {
        metrics.queue_depth.fetch_sub(batch.len() as i64, Ordering::Relaxed);
        metrics.observe_batch(batch.len());
        let t0 = Instant::now();
        let n = batch.len();
        run_batch(state, batch);
        tracing::debug!("batch of {n} done in {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
    }
    tracing::info!("batcher: queue closed and drained, worker stops");
}

/// The next batch, holding the queue while gathering it; None once the queue is closed
/// and empty.
fn gather(cfg: BatchConfig, rx: &Mutex<Receiver<Job>>) -> Option<Vec<Job>> {
    // A poisoned lock only means another worker panicked while gathering: the queue
    // itself is intact.
    let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
    let mut batch = vec![rx.recv().ok()?];
    let deadline = Instant::now() + cfg.max_wait;
    while batch.len() < cfg.max_batch {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(j) => batch.push(j),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    Some(batch)
}

/// Recommend jobs that share beam and fusion settings: (history, reply channel) each.
type Group = (BeamOptions, Option<Fusion>, Vec<(Vec<u32>, oneshot::Sender<Result<Vec<Hypothesis>>>)>);

/// Runs one gathered batch: recommend jobs grouped by settings, score jobs together.
fn run_batch(state: &ModelState, batch: Vec<Job>) {
    let mut groups: Vec<Group> = Vec::new();
    let mut scores = Vec::new();
    for job in batch {
        match job {
            Job::Recommend { history, opts, fusion, reply } => {
                match groups.iter_mut().find(|(o, f, _)| same(o, &opts) && *f == fusion) {
                    Some((_, _, g)) => g.push((history, reply)),
                    None => groups.push((opts, fusion, vec![(history, reply)])),
                }
            }
            Job::Score { history, items, reply } => scores.push((history, items, reply)),
        }
    }
    for (opts, fusion, jobs) in groups {
        let hist: Vec<&[u32]> = jobs.iter().map(|(h, _)| &h[..]).collect();
        let res = guarded(|| {
            let (model, ids) = (&state.ckpt.model, &state.ckpt.semantic_ids);
            let n = hist.len().max(1);
            rank_batched(model, ids, &state.index, &state.vocab, &hist, &opts, n, fusion.as_ref()).map(|r| r.0)
        });
        match res {
            Ok(mut hyps) => {
                for ((_, reply), h) in jobs.into_iter().zip(hyps.drain(..)) {
                    let _ = reply.send(Ok(h));
                }
            }
            Err(e) => {
                tracing::error!("beam search failed for a batch of {}: {e:#}", jobs.len());
                for (_, reply) in jobs {
                    let _ = reply.send(Err(anyhow!("{e:#}")));
                }
            }
        }
    }
    if !scores.is_empty() {
        // One encoding per request; its candidates share the decoder steps of common
        // code prefixes, as `onerec score` scores a user's pairs.
        let hist: Vec<&[u32]> = scores.iter().map(|(h, _, _)| &h[..]).collect();
        let mut rows: Vec<u32> = Vec::new();
        let mut sess: Vec<&[u32]> = Vec::new();
        for (r, (_, items, _)) in scores.iter().enumerate() {
            for i in items {
                rows.push(r as u32);
                sess.push(std::slice::from_ref(i));
            }
        }
        let res = guarded(|| {
            let lp = teacher_forced_logprob_rows(
                &state.ckpt.model,
                &state.vocab,
                &state.ckpt.semantic_ids,
                &hist,
                &rows,
                &sess,
            )?;
            anyhow::ensure!(lp.len() == sess.len(), "scoring returned {} values for {} pairs", lp.len(), sess.len());
            Ok(lp)
        });
        match res {
            Ok(lp) => {
                let mut at = 0;
                for (_, items, reply) in scores {
                    let _ = reply.send(Ok(lp[at..at + items.len()].to_vec()));
                    at += items.len();
                }
            }
            Err(e) => {
                tracing::error!("scoring failed for a batch of {}: {e:#}", scores.len());
                for (_, _, reply) in scores {
                    let _ = reply.send(Err(anyhow!("{e:#}")));
                }
            }
        }
    }
}

fn same(a: &BeamOptions, b: &BeamOptions) -> bool {
    a.beam == b.beam && a.session_len == b.session_len && a.top == b.top && a.exclude_history == b.exclude_history
}

/// Runs model work, turning a panic into an error so the worker keeps serving.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(anyhow!("internal error (model work panicked: {msg})"))
        }
    }
}
