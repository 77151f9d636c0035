//! Training: every position of each user's training sequence predicts the next item
//! at once (full-softmax CE over all items), AdamW, validation NDCG@10 over all
//! validation users after every `eval_every` epochs, early stopping with `patience`.
//!
//! `OUT/` holds `config.toml` (resolved config + seed), `metrics.jsonl` (one row per
//! epoch), `best/` (best validation NDCG@10), `last/` (latest epoch, optimizer state and
//! `train_state.json`, for `--resume`) and `summary.json`. Random draws come from
//! per-epoch streams of the seed (shuffle) and per-batch streams (dropout), so a run
//! resumed from `last/` continues exactly as if never stopped.
//!
//! Data-parallel under `mpirun` ([`train_sasrec_on`]): `train.batch_size` stays the
//! global batch; each rank trains on its contiguous part of every batch with its mean loss
//! weighted by its share of the batch's scored positions, the gradients are summed over
//! ranks, and every rank clips and steps identically. Validation ranks each rank's part of
//! the users and gathers the top-K lists, so every rank takes the same best/early-stop
//! decision; rank 0 alone writes `OUT/`.

use super::checkpoint::{self, SasrecMeta};
use super::config::SasrecConfig;
use super::model::{Sasrec, SeqBatch};
use super::rank::evaluate_sasrec_on;
use crate::data::Dataset;
use crate::dist::{self, GradSync};
use crate::generate::users::SplitSel;
use crate::nn::optim::{clip_global_norm, AdamW};
use anyhow::{ensure, Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;
use tracing::info;

/// Optional controls of [`train_sasrec_with`].
#[derive(Default)]
pub struct Hooks {
    /// Stop after this many epochs (as if killed; tests of `--resume`).
    #[cfg(feature = "testkit")]
    pub stop_after_epoch: Option<usize>,
}

/// What a training run did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SasrecSummary {
    /// Epochs completed (in total, over resumes).
    pub epochs: usize,
    pub best_epoch: usize,
    pub best_valid_ndcg10: f64,
    pub best_valid_recall10: f64,
    pub stopped_early: bool,
    pub users: usize,
    pub positions_per_epoch: usize,
    /// Wall seconds of this process's part of the run.
    pub seconds: f64,
    /// Thread counts the run has used, over resumes.
    #[serde(default)]
    pub threads: Vec<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainState {
    epoch: usize,
    optimizer_steps: usize,
    best_epoch: usize,
    best_ndcg10: f64,
    best_recall10: f64,
    evals_since_best: usize,
    stopped_early: bool,
    /// Thread counts the run has used (empty in checkpoints from before this was kept).
    #[serde(default)]
    threads: Vec<usize>,
}

/// The training sequences: each user's training part (never the validation or test
/// item), cut to its newest `max_len + 1` items; users with fewer than 2 are skipped.
pub fn train_sequences(ds: &Dataset, max_len: usize) -> Vec<&[u32]> {
    (0..ds.n_users())
        .filter_map(|u| {
            let tr = &ds.history(u)[ds.split(u).train];
            (tr.len() >= 2).then(|| &tr[tr.len().saturating_sub(max_len + 1)..])
        })
        .collect()
}

/// One training batch: inputs `s[..n-1]`, targets `s[1..]` at every position.
pub struct TrainBatch {
    pub seqs: SeqBatch,
    /// Row of each scored position in the flattened [B*T] batch.
    pub rows: Tensor,
    pub targets: Vec<u32>,
    /// With `mask_history`: per position, the items it has read (`s[..=j]`, without its
    /// target), left out of its softmax; empty otherwise.
    pub excluded: Vec<Vec<u32>>,
}

pub fn train_batch(seqs: &[&[u32]], max_len: usize, mask_history: bool) -> Result<TrainBatch> {
    let inputs: Vec<&[u32]> = seqs.iter().map(|s| &s[..s.len() - 1]).collect();
    let b = SeqBatch::new(&inputs, max_len, &Device::Cpu)?;
    let (mut rows, mut targets, mut excluded) = (Vec::new(), Vec::new(), Vec::new());
    for (r, s) in seqs.iter().enumerate() {
        let n = s.len() - 1;
        let pad = b.t - n;
        for j in 0..n {
            rows.push((r * b.t + pad + j) as u32);
            targets.push(s[j + 1]);
            if mask_history {
                let mut seen: Vec<u32> = s[..=j].iter().copied().filter(|&i| i != s[j + 1]).collect();
                seen.sort_unstable();
                seen.dedup();
                excluded.push(seen);
            }
        }
    }
    let rows = Tensor::from_vec(rows, targets.len(), &Device::Cpu)?;
    Ok(TrainBatch { seqs: b, rows, targets, excluded })
}

/// Trains SASRec on `ds` into `out` (see the module doc); what `onerec baseline sasrec` runs.
pub fn train_sasrec(cfg: &SasrecConfig, ds: &Dataset, out: &Path, resume: bool) -> Result<SasrecSummary> {
    train_sasrec_with(cfg, ds, out, resume, &Hooks::default())
}

/// [`train_sasrec`] data-parallel over the ranks of `sync` (every rank calls it with the
/// same arguments); rank 0 alone writes `out`. With [`dist::Single`] this is [`train_sasrec`].
pub fn train_sasrec_on(
    cfg: &SasrecConfig,
    ds: &Dataset,
    out: &Path,
    resume: bool,
    sync: &dyn GradSync,
) -> Result<SasrecSummary> {
    train(cfg, ds, out, resume, sync, &Hooks::default())
}

pub fn train_sasrec_with(
    cfg: &SasrecConfig,
    ds: &Dataset,
    out: &Path,
    resume: bool,
    hooks: &Hooks,
) -> Result<SasrecSummary> {
    train(cfg, ds, out, resume, &dist::Single, hooks)
}

/// Whether the run resumes from `out/last`, decided (and `last/`, `best/` recovered) by
/// rank 0 alone and told to the others, so no two ranks repair the same directory.
fn resumes(out: &Path, resume: bool, sync: &dyn GradSync) -> Result<bool> {
    let mut decision = [0.0];
    if sync.is_leader() {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        decision[0] = crate::util::io::resume_from_last(out, checkpoint::META_FILE, resume)? as u8 as f64;
    }
    sync.broadcast_f64(&mut decision)?;
    Ok(decision[0] > 0.0)
}

fn train(
    cfg: &SasrecConfig,
    ds: &Dataset,
    out: &Path,
    resume: bool,
    sync: &dyn GradSync,
    hooks: &Hooks,
) -> Result<SasrecSummary> {
    #[cfg(not(feature = "testkit"))]
    let _ = hooks;
    cfg.validate()?;
    let tc = &cfg.train;
    let mc = &cfg.model;
    let (rank, world, leader) = (sync.rank(), sync.world_size(), sync.is_leader());
    let items_sha = checkpoint::items_sha256(ds);
    let last_dir = out.join("last");
    let (model, varmap, state) = if resumes(out, resume, sync)? {
        let ck = checkpoint::load(&last_dir)?;
        ensure!(
            ck.meta.model == *mc,
            "--resume: [model] of {} differs from the given config; resume with the config of that run ({}/config.toml)",
            last_dir.display(),
            out.display()
        );
        ensure!(
            ck.meta.seed == cfg.seed,
            "--resume: {} was trained with seed {}, not {}",
            last_dir.display(),
            ck.meta.seed,
            cfg.seed
        );
        checkpoint::check_dataset(&ck.meta, &last_dir, ds)?;
        let mut st: TrainState = crate::util::io::read_json(&last_dir.join("train_state.json"))?;
        st.threads = crate::util::threads::on_resume(st.threads, &last_dir);
        info!(epoch = st.epoch, dir = %last_dir.display(), "resuming");
        (ck.model, ck.varmap, st)
    } else {
        let (m, vm) = Sasrec::build(mc, ds.n_items(), cfg.seed)?;
        let st = TrainState {
            epoch: 0,
            optimizer_steps: 0,
            best_epoch: 0,
            best_ndcg10: -1.0, // below any NDCG (and JSON has no -inf): the first validation is best
            best_recall10: 0.0,
            evals_since_best: 0,
            stopped_early: false,
            threads: vec![crate::util::threads::compute_threads()],
        };
        (m, vm, st)
    };
    if leader {
        crate::util::io::atomic_write(&out.join("config.toml"), cfg.to_toml()?.as_bytes())?;
    }
    let vars = crate::nn::params::sorted_vars(&varmap);
    let n_params: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    let mut opt = AdamW::new(vars.clone(), tc.beta1, tc.beta2, tc.eps, tc.weight_decay)?;
    if state.optimizer_steps > 0 {
        opt.load(&last_dir.join("optimizer.safetensors"), state.optimizer_steps)?;
    }
    let seqs = train_sequences(ds, mc.max_len);
    ensure!(!seqs.is_empty(), "no training sequences: every user's training part has fewer than 2 items");
    let positions: usize = seqs.iter().map(|s| s.len() - 1).sum();
    let lens: Vec<u32> = seqs.iter().map(|s| s.len() as u32).collect();
    info!(
        params = n_params,
        users = seqs.len(),
        positions,
        items = ds.n_items(),
        "SASRec: d_model={} layers={} heads={} max_len={} dropout={} norm={:?}",
        mc.d_model,
        mc.layers,
        mc.heads,
        mc.max_len,
        mc.dropout,
        mc.norm
    );
    if world > 1 {
        info!(
            backend = sync.backend(),
            "data-parallel on {world} ranks: each takes its part of every batch of {}; rank 0 writes {}",
            tc.batch_size,
            out.display()
        );
    }
    let metrics_path = out.join("metrics.jsonl");
    let mut rows = read_rows(&metrics_path, state.epoch)?;
    let TrainState {
        epoch: start,
        optimizer_steps: mut steps,
        mut best_epoch,
        mut best_ndcg10,
        mut best_recall10,
        mut evals_since_best,
        mut stopped_early,
        threads,
    } = state;
    let t0 = Instant::now();
    let meta_at = |epoch: usize, extra: Value| SasrecMeta {
        format: checkpoint::FORMAT,
        kind: "sasrec".into(),
        model: mc.clone(),
        n_items: ds.n_items(),
        items_sha256: items_sha.clone(),
        epoch,
        seed: cfg.seed,
        data_dir: ds.dir.clone(),
        extra,
    };
    let valid_users = (tc.valid_users > 0).then_some(tc.valid_users);
    let mut epoch = start;
    let pb = crate::util::progress::bar(tc.epochs.saturating_sub(start) as u64, "sasrec");
    if !leader {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    while epoch < tc.epochs && !stopped_early {
        let te = Instant::now();
        let order = if tc.length_buckets > 0 {
            crate::train::data::epoch_order_bucketed(&lens, tc.batch_size, tc.length_buckets, cfg.seed, epoch)
        } else {
            crate::train::data::epoch_order(seqs.len(), cfg.seed, epoch)
        };
        let (mut loss_sum, mut loss_n) = (0.0f64, 0usize);
        for (bi, idx) in order.chunks(tc.batch_size).enumerate() {
            let mine = &idx[dist::shard_range(idx.len(), rank, world)];
            let mut grads: HashMap<String, Tensor> = HashMap::new();
            if !mine.is_empty() {
                let batch_seqs: Vec<&[u32]> = mine.iter().map(|&i| seqs[i as usize]).collect();
                let tb = train_batch(&batch_seqs, mc.max_len, tc.mask_history)?;
                // Dropout masks from a per-batch stream (per rank too when data-parallel).
                let key = match world {
                    1 => format!("sasrec/dropout/{epoch}/{bi}"),
                    _ => format!("sasrec/dropout/{epoch}/{bi}/rank{rank}"),
                };
                let loss = {
                    let _train = model.training(crate::util::rng::stream(cfg.seed, &key));
                    model.loss(&tb.seqs, &tb.rows, &tb.targets, &tb.excluded)?
                };
                let lv = loss.to_scalar::<f32>()? as f64;
                ensure!(lv.is_finite(), "training loss became {lv} in epoch {epoch}; lower train.lr");
                // The loss is a mean over scored positions: weighted by this rank's share of
                // the whole batch's, the gradients summed over ranks are the batch's.
                let loss = match world {
                    1 => loss,
                    _ => {
                        let all: usize = idx.iter().map(|&i| seqs[i as usize].len() - 1).sum();
                        (loss * (tb.targets.len() as f64 / all as f64))?
                    }
                };
                let gs = loss.backward()?;
                for (name, v) in &vars {
                    if let Some(g) = gs.get(v.as_tensor()) {
                        grads.insert(name.clone(), g.clone());
                    }
                }
                loss_sum += lv * tb.targets.len() as f64;
                loss_n += tb.targets.len();
            }
            if world > 1 {
                dist::all_reduce_grads(sync, &vars, &mut grads)?;
            }
            if tc.grad_clip > 0.0 {
                clip_global_norm(&mut grads, tc.grad_clip)?;
            }
            opt.step(&grads, tc.lr)?;
            steps += 1;
        }
        epoch += 1;
        if world > 1 {
            let mut sums = [loss_sum, loss_n as f64];
            sync.all_reduce_f64(&mut sums)?;
            (loss_sum, loss_n) = (sums[0], sums[1] as usize);
        }
        let train_loss = loss_sum / loss_n.max(1) as f64;
        let mut row = json!({ "epoch": epoch, "train_loss": train_loss, "train_secs": te.elapsed().as_secs_f64() });
        let evaluate_now = epoch % tc.eval_every == 0 || epoch == tc.epochs;
        if evaluate_now {
            let tv = Instant::now();
            let r = evaluate_sasrec_on(
                &model,
                ds,
                SplitSel::Valid,
                &[10],
                tc.valid_exclude_history,
                valid_users,
                tc.eval_batch,
                sync,
            )?;
            let (ndcg, recall) = (r.metrics["ndcg@10"], r.metrics["recall@10"]);
            row["valid_ndcg@10"] = json!(ndcg);
            row["valid_recall@10"] = json!(recall);
            row["valid_secs"] = json!(tv.elapsed().as_secs_f64());
            if ndcg > best_ndcg10 {
                (best_epoch, best_ndcg10, best_recall10, evals_since_best) = (epoch, ndcg, recall, 0);
                let meta = meta_at(epoch, valid_extra(recall, ndcg, tc.valid_exclude_history));
                if leader {
                    crate::util::io::atomic_dir(&out.join("best"), |d| checkpoint::write_model(d, &varmap, &meta))?;
                }
            } else {
                evals_since_best += 1;
                stopped_early = evals_since_best >= tc.patience;
            }
        }
        row["best_epoch"] = json!(best_epoch);
        info!(
            epoch,
            train_loss = format!("{train_loss:.4}"),
            valid_ndcg10 = row.get("valid_ndcg@10").and_then(|v| v.as_f64()).map(|v| format!("{v:.4}")),
            best_epoch,
            secs = format!("{:.1}", te.elapsed().as_secs_f64()),
            "epoch done"
        );
        rows.push(row);
        if world > 1 {
            let checksum = dist::check_in_sync(sync, &vars, &format!("epoch {epoch}"))?;
            info!(epoch, "ranks in sync: parameter checksum {checksum:012x} on all {world} ranks");
        }
        pb.inc(1);
        if stopped_early {
            info!(epoch, best_epoch, "early stop: {} validations without a better NDCG@10", tc.patience);
        }
        #[cfg(feature = "testkit")]
        let stop = hooks.stop_after_epoch == Some(epoch);
        #[cfg(not(feature = "testkit"))]
        let stop = false;
        if leader {
            write_rows(&metrics_path, &rows)?;
            let st = TrainState {
                epoch,
                optimizer_steps: steps,
                best_epoch,
                best_ndcg10,
                best_recall10,
                evals_since_best,
                stopped_early,
                threads: threads.clone(),
            };
            let meta = meta_at(epoch, json!({ "train_loss": train_loss }));
            crate::util::io::atomic_dir(&last_dir, |d| {
                checkpoint::write_model(d, &varmap, &meta)?;
                opt.save(&d.join("optimizer.safetensors"))?;
                crate::util::io::write_json(&d.join("train_state.json"), &st)
            })?;
        }
        if stop {
            break;
        }
    }
    pb.finish_and_clear();
    sync.barrier()?; // rank 0's last checkpoint is written before any rank returns
    let summary = SasrecSummary {
        epochs: epoch,
        best_epoch,
        best_valid_ndcg10: best_ndcg10,
        best_valid_recall10: best_recall10,
        stopped_early,
        users: seqs.len(),
        positions_per_epoch: positions,
        seconds: t0.elapsed().as_secs_f64(),
        threads,
    };
    if leader {
        crate::util::io::write_json(&out.join("summary.json"), &summary)?;
        info!(?summary, "SASRec training done");
    }
    Ok(summary)
}

fn valid_extra(recall: f64, ndcg: f64, exclude_history: bool) -> Value {
    json!({ "valid_recall@10": recall, "valid_ndcg@10": ndcg, "valid_exclude_history": exclude_history })
}

/// Rows of `metrics.jsonl` up to `epoch` (a resumed run drops rows written after its checkpoint).
fn read_rows(path: &Path, epoch: usize) -> Result<Vec<Value>> {
    if epoch == 0 || !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}: invalid JSON", path.display(), i + 1))?;
        if v.get("epoch").and_then(|e| e.as_u64()).is_some_and(|e| e as usize <= epoch) {
            rows.push(v);
        }
    }
    Ok(rows)
}

fn write_rows(path: &Path, rows: &[Value]) -> Result<()> {
    let mut text = String::new();
    for r in rows {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    crate::util::io::atomic_write(path, text.as_bytes())
}
