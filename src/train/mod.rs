//! Next-token pretraining: the training loop, optimizer, schedule and checkpoints.
//!
//! `OUT/` holds `config.toml` (resolved config + seed), `metrics.jsonl` (one row per
//! eval), `best/` (best checkpoint by `train.select_metric`) and `last/` (latest
//! checkpoint plus optimizer state, for `--resume`).
//!
//! The loop ([`pretrain_with`]) reads in nanoGPT's order: learning rate for the step;
//! forward/backward/update (`Run::step`, in `run.rs`); timing and logging (`LogWindow`,
//! in `log.rs`); evaluate and checkpoint (`Run::evaluate_and_checkpoint`); termination.
//! `Batches` (in [`data`]) yields the micro-batches: epoch order, length buckets, and the
//! resume offset.

mod config;
pub mod data;
mod log;
mod run;
mod sync;

pub use config::{SelectMetric, TrainConfig};

use crate::data::Dataset;
use crate::dist::{self, GradSync};
use crate::model::{ModelConfig, OneRecModel, Vocab};
use crate::nn::optim;
use crate::tokenizer::SemanticIds;
use anyhow::{ensure, Context, Result};
use log::{LogWindow, Mean};
use run::Run;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;
use std::time::Instant;
use tracing::info;

/// What pretraining takes from the run config: its two sections, the run seed, and the
/// resolved config to record as `OUT/config.toml` (serialised by the caller, so this
/// module does not depend on `crate::config`).
#[derive(Clone, Debug)]
pub struct PretrainSpec<'a> {
    pub model: &'a ModelConfig,
    pub train: &'a TrainConfig,
    pub seed: u64,
    /// The resolved run config (TOML), written verbatim.
    pub config_toml: String,
}

impl PretrainSpec<'_> {
    fn validate(&self) -> Result<()> {
        self.model.validate().context("[model]")?;
        self.train.validate().context("[train]")?;
        ensure!(
            self.train.session_len <= self.model.max_session_items,
            "train.session_len = {} exceeds model.max_session_items = {}; raise the latter",
            self.train.session_len,
            self.model.max_session_items
        );
        ensure!(
            self.train.rank_item_head_weight == 0.0 || self.model.item_id_embedding,
            "train.rank_item_head_weight = {} needs the item head: set model.item_id_embedding = true (and model.item_head_weight > 0 to train it)",
            self.train.rank_item_head_weight
        );
        Ok(())
    }
}

/// The in-training validation ranking eval: Recall/NDCG@10 over `rank_users` users.
pub fn rank_eval_options(tc: &TrainConfig) -> crate::eval::EvalOptions<'static> {
    crate::eval::EvalOptions {
        ks: vec![10],
        beam: tc.rank_beam,
        session_len: 0,
        max_users: Some(tc.rank_users),
        exclude_history: tc.rank_exclude_history,
        fusion: crate::eval::config::fusion(tc.rank_item_head_weight, tc.rank_item_head_candidates, tc.rank_beam),
        ..Default::default()
    }
}

/// Extra metrics for an eval row, computed from the model being trained.
pub type EvalHook<'a> = &'a dyn Fn(&OneRecModel) -> Result<Map<String, Value>>;

/// Optional hooks into [`pretrain_with`].
#[derive(Default)]
pub struct Hooks<'a> {
    /// Extra metrics (e.g. Recall/NDCG) added to every eval row.
    pub eval: Option<EvalHook<'a>>,
    /// The ranks training together when data-parallel (`None`: one process).
    pub dist: Option<&'a dyn GradSync>,
    /// Stop after this many steps (as if killed; tests of `--resume`).
    #[cfg(feature = "testkit")]
    pub stop_after: Option<usize>,
}

/// Pretrains on `ds` with `sids` (the tokenizer's semantic ids; re-indexed here), with
/// the validation ranking eval (Recall@10 / NDCG@10 by constrained beam
/// search over `train.rank_users` validation users) added to every eval row, so
/// `train.select_metric = "ndcg@10"` can pick the best checkpoint. This is what
/// `onerec pretrain` runs.
pub fn pretrain(spec: &PretrainSpec, ds: &Dataset, sids: &SemanticIds, out: &Path, resume: bool) -> Result<Summary> {
    pretrain_on(spec, ds, sids, out, resume, &dist::Single)
}

/// [`pretrain`] data-parallel over the ranks of `sync` (every rank calls it with the same
/// arguments; `train.batch_size` stays the global batch): rank 0 alone logs, evaluates
/// and writes `OUT/`. With [`dist::Single`] this is [`pretrain`].
pub fn pretrain_on(
    spec: &PretrainSpec,
    ds: &Dataset,
    sids: &SemanticIds,
    out: &Path,
    resume: bool,
    sync: &dyn GradSync,
) -> Result<Summary> {
    let tc = spec.train;
    ensure!(
        tc.rank_users > 0 || !tc.select_metric.is_ranking(),
        "train.select_metric = {:?} needs the validation ranking eval: set train.rank_users > 0, or select by \"valid_loss\"",
        tc.select_metric.key()
    );
    if tc.rank_users == 0 {
        return pretrain_with(spec, ds, sids, out, resume, &Hooks { dist: Some(sync), ..Hooks::default() });
    }
    let dense = sids.reindexed(&ds.item_ids)?;
    let vocab = Vocab::new(dense.codebook_sizes.clone());
    let opts = rank_eval_options(tc);
    let hook = |model: &OneRecModel| -> Result<Map<String, Value>> {
        let r = crate::eval::evaluate(model, &dense, &vocab, ds, crate::generate::SplitSel::Valid, &opts)?;
        let mut m = Map::new();
        for k in ["recall@10", "ndcg@10"] {
            if let Some(v) = r.metrics.get(k) {
                m.insert(k.to_string(), Value::from(*v));
            }
        }
        Ok(m)
    };
    let mut hooks = Hooks { dist: Some(sync), ..Hooks::default() };
    hooks.eval = Some(&hook);
    pretrain_with(spec, ds, sids, out, resume, &hooks)
}

/// What a pretraining run did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub steps: usize,
    pub total_steps: usize,
    pub examples: usize,
    pub best_step: usize,
    pub select_metric: SelectMetric,
    pub best_value: f64,
    pub last_train_loss: f64,
    pub last_valid_loss: f64,
    pub seconds: f64,
    pub tokens_per_sec: f64,
}

/// [`pretrain`] with explicit hooks (no ranking eval unless `hooks.eval` adds one).
pub fn pretrain_with(
    spec: &PretrainSpec,
    ds: &Dataset,
    sids: &SemanticIds,
    out: &Path,
    resume: bool,
    hooks: &Hooks,
) -> Result<Summary> {
    spec.validate()?;
    let (tc, t0) = (spec.train, Instant::now());
    let sync: &dyn GradSync = hooks.dist.unwrap_or(&dist::Single);
    let (leader, world) = (sync.is_leader(), sync.world_size());
    let mut run = Run::start(spec, ds, sids, out, resume, sync)?;
    let examples = data::train_examples(ds, tc.min_history);
    ensure!(
        !examples.is_empty(),
        "no training examples: every user's training part is shorter than train.min_history + 1 = {}",
        tc.min_history + 1
    );
    let start = run.state.step;
    let history_len = spec.model.history_len;
    let mut batches =
        data::Batches::new(&examples, tc.batch_size, tc.length_buckets, history_len, spec.seed, start * tc.grad_accum);
    let total = tc.total_steps(batches.per_epoch());
    let valid = data::valid_examples(ds, tc.valid_users);
    info!(
        params = run.n_params(),
        examples = examples.len(),
        valid = valid.len(),
        steps = total,
        users = ds.n_users(),
        items = ds.n_items(),
        "pretraining: d_model={} experts={} top_k={} history={} session_len={}",
        spec.model.d_model,
        spec.model.moe.experts,
        spec.model.moe.top_k,
        history_len,
        tc.session_len
    );
    if world > 1 {
        info!(
            backend = sync.backend(),
            "data-parallel on {world} ranks: each takes its part of every batch of {}; rank 0 logs and writes {}",
            tc.batch_size,
            out.display()
        );
        sync.barrier()?;
    }
    run.load_metrics()?;

    let mut log = LogWindow::new(&run.model.moe_layers());
    let mut train_loss = Mean::default(); // since the last eval
    let (mut last_train, mut last_valid) = (f64::NAN, f64::NAN);
    let (mut tokens, mut train_secs) = (0.0f64, 0.0f64);
    let pb = crate::util::progress::bar((total - start.min(total)) as u64, "pretrain");
    if !leader {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    while run.state.step < total {
        let step_started = Instant::now();
        let lr = optim::lr_at(run.state.step, total, tc.lr, tc.warmup_steps, tc.min_lr_ratio);
        let stats = run.step(&mut batches, lr)?;

        for mb in &stats.micro_batches {
            train_loss.add(mb.ce);
            log.add(mb);
            tokens += mb.tokens;
        }
        log.add_routing(&stats.routing);
        train_secs += step_started.elapsed().as_secs_f64();
        pb.inc(1);
        let step = run.state.step;
        if leader && (step % tc.log_every == 0 || step == total) {
            log.report(step, lr);
        }

        if step % tc.eval_every == 0 || step == total {
            last_train = train_loss.take();
            if world > 1 {
                let checksum = crate::dist::check_in_sync(sync, &run.vars, &format!("step {step}"))?;
                info!(step, "ranks in sync: parameter checksum {checksum:012x} on all {world} ranks");
            }
            if leader {
                last_valid = run.evaluate_and_checkpoint(lr, last_train, &valid, hooks)?;
            }
            if world > 1 {
                // Rank 0's eval results, so every rank's state and summary agree.
                let mut r = [last_valid, run.state.best_value, run.state.best_step as f64];
                sync.broadcast_f64(&mut r)?;
                (last_valid, run.state.best_value, run.state.best_step) = (r[0], r[1], r[2] as usize);
            }
        }

        #[cfg(feature = "testkit")]
        if hooks.stop_after == Some(step) {
            break;
        }
    }
    pb.finish_and_clear();
    sync.barrier()?; // rank 0's last checkpoint is written before any rank returns
    let summary = Summary {
        steps: run.state.step,
        total_steps: total,
        examples: examples.len(),
        best_step: run.state.best_step,
        select_metric: tc.select_metric,
        best_value: run.state.best_value,
        last_train_loss: last_train,
        last_valid_loss: last_valid,
        seconds: t0.elapsed().as_secs_f64(),
        tokens_per_sec: tokens / train_secs.max(1e-9),
    };
    info!(?summary, "pretraining done");
    Ok(summary)
}
