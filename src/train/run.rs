//! A pretraining run: started fresh or resumed from `OUT/last`, one optimizer step at a
//! time, evaluated and checkpointed (`best/`, `last/`, `metrics.jsonl`) on schedule.

use super::data::{self, Batches};
use super::sync;
use super::{Hooks, PretrainSpec};
use crate::data::Dataset;
use crate::dist::{self, GradSync};
use crate::model::checkpoint::{self, CheckpointMeta};
use crate::model::moe::MoeStats;
use crate::model::{Loss, OneRecModel, Vocab};
use crate::nn::{optim, params::sorted_vars};
use crate::tokenizer::SemanticIds;
use anyhow::{ensure, Context, Result};
use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tracing::info;

/// `last/train_state.json`: where a run stands, for `--resume`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct TrainState {
    /// Optimizer steps done.
    pub step: usize,
    pub best_step: usize,
    /// `train.select_metric` of `best/` (NaN before the first eval).
    pub best_value: f64,
    /// Thread counts the run has used (empty in checkpoints from before this was kept).
    #[serde(default)]
    pub threads: Vec<usize>,
}

/// What one micro-batch contributed to the logs.
pub struct MicroBatchStats {
    /// Mean next-token cross-entropy.
    pub ce: f64,
    /// MoE auxiliary (balance) loss, if the model has one.
    pub aux: Option<f64>,
    /// Mean full-item cross-entropy of the auxiliary item head, if it trains.
    pub item_ce: Option<f64>,
    pub tokens: f64,
    pub examples: usize,
}

/// What one optimizer step did: per micro-batch stats, routing stats per MoE layer.
pub struct StepStats {
    pub micro_batches: Vec<MicroBatchStats>,
    pub routing: Vec<MoeStats>,
}

/// The model being trained, its optimizer and where the run stands.
pub(super) struct Run<'a> {
    spec: &'a PretrainSpec<'a>,
    ds: &'a Dataset,
    out: &'a Path,
    /// The ranks training together ([`dist::Single`] for one process).
    pub sync: &'a dyn GradSync,
    pub model: OneRecModel,
    varmap: VarMap,
    pub(super) vars: Vec<(String, Var)>,
    opt: optim::AdamW,
    /// The tokenizer's semantic ids in dataset order (saved with every checkpoint).
    dense: SemanticIds,
    /// sha256 of the tokenizer's codes, recorded in checkpoints.
    tokenizer_sha256: String,
    pub state: TrainState,
    /// Eval rows so far (`metrics.jsonl`).
    rows: Vec<Value>,
}

impl<'a> Run<'a> {
    /// A fresh model, or the one in `out/last` when `resume` and it exists; records the
    /// resolved config as `out/config.toml`.
    pub fn start(
        spec: &'a PretrainSpec<'a>,
        ds: &'a Dataset,
        sids: &SemanticIds,
        out: &'a Path,
        resume: bool,
        sync: &'a dyn GradSync,
    ) -> Result<Run<'a>> {
        let dense = sids.reindexed(&ds.item_ids).context("matching tokenizer items to the dataset")?;
        let tokenizer_sha256 = checkpoint::fingerprint(sids);
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let last_dir = out.join("last");
        let (model, varmap, state) = if crate::util::io::resume_from_last(out, "checkpoint.json", resume)? {
            let ck = checkpoint::load(&last_dir)?;
            checkpoint::check_tokenizer(&ck.meta, &last_dir, sids)?;
            ensure!(
                serde_json::to_value(&ck.meta.model)? == serde_json::to_value(spec.model)?,
                "--resume: [model] of {} differs from the given config; resume with the config of that run ({}/config.toml)",
                last_dir.display(),
                out.display()
            );
            let mut st: TrainState = crate::util::io::read_json(&last_dir.join("train_state.json"))?;
            st.threads = crate::util::threads::on_resume(st.threads, &last_dir);
            info!(step = st.step, dir = %last_dir.display(), "resuming");
            (ck.model, ck.varmap, st)
        } else {
            let vocab = Vocab::new(sids.codebook_sizes.clone());
            let (m, vm) = OneRecModel::build(spec.model, vocab, dense.codes.clone(), spec.seed)?;
            let threads = vec![crate::util::threads::compute_threads()];
            (m, vm, TrainState { step: 0, best_step: 0, best_value: f64::NAN, threads })
        };
        if sync.is_leader() {
            crate::util::io::atomic_write(&out.join("config.toml"), spec.config_toml.as_bytes())?;
        }
        let vars = sorted_vars(&varmap);
        let tc = spec.train;
        let mut opt = optim::AdamW::new(vars.clone(), tc.beta1, tc.beta2, tc.eps, tc.weight_decay)?;
        if state.step > 0 {
            opt.load(&last_dir.join("optimizer.safetensors"), state.step)?;
        }
        Ok(Run { spec, ds, out, sync, model, varmap, vars, opt, dense, tokenizer_sha256, state, rows: Vec::new() })
    }

    pub fn n_params(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }

    fn last_dir(&self) -> PathBuf {
        self.out.join("last")
    }

    fn metrics_path(&self) -> PathBuf {
        self.out.join("metrics.jsonl")
    }

    /// On resume: the eval rows of `metrics.jsonl` up to the resumed step.
    pub fn load_metrics(&mut self) -> Result<()> {
        let path = self.metrics_path();
        if self.state.step == 0 || !path.exists() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let v: Value =
                serde_json::from_str(line).with_context(|| format!("{}:{}: invalid JSON", path.display(), i + 1))?;
            if v.get("step").and_then(|s| s.as_u64()).is_some_and(|s| s as usize <= self.state.step) {
                self.rows.push(v);
            }
        }
        Ok(())
    }

    /// One optimizer step at learning rate `lr`: forward and backward over
    /// `train.grad_accum` micro-batches, clip, update, nudge the MoE balance biases.
    ///
    /// Data-parallel (world size > 1): each rank takes its slice of every micro-batch and
    /// weights its mean loss by its share of the micro-batch's target tokens, so the
    /// gradients summed over ranks are the one-process gradient (up to float rounding);
    /// the logged statistics and the routing loads are summed too, so every rank clips,
    /// updates and moves the balance biases identically. With the Switch aux loss
    /// (`moe.balance = "aux"`), each micro-batch's routing loads are summed before the aux
    /// loss is formed, so each rank holds its part of the whole batch's aux loss.
    pub fn step(&mut self, batches: &mut Batches, lr: f64) -> Result<StepStats> {
        let tc = self.spec.train;
        let (rank, world) = (self.sync.rank(), self.sync.world_size());
        let moes = self.model.moe_layers();
        let mut routing: Vec<MoeStats> = moes.iter().map(|m| MoeStats::empty(m.n_experts())).collect();
        let mut grads: HashMap<String, Tensor> = HashMap::new();
        let mut micro_batches = Vec::with_capacity(tc.grad_accum);
        for _ in 0..tc.grad_accum {
            let mb = batches.next().context("no training batches")?;
            let mine = &mb.examples[dist::shard_range(mb.examples.len(), rank, world)];
            let batch = match mine.is_empty() {
                true => None,
                false => Some(data::train_batch(&self.model, self.ds, mine, tc.session_len)?),
            };
            let tokens = batch.as_ref().map_or(0.0, |b| b.tokens() as f64);
            // This rank's share of the micro-batch's target tokens (the loss is their mean).
            let all_tokens = sync::sum_scalar(self.sync, tokens)?;
            let share = if world == 1 { 1.0 } else { tokens / all_tokens };
            let mut stats =
                MicroBatchStats { ce: 0.0, aux: None, item_ce: None, tokens: all_tokens, examples: mb.examples.len() };
            // Data-parallel with the Switch aux loss: every rank (with examples or not) joins
            // the sum of this micro-batch's routing loads, from which each builds its part of
            // the global aux loss.
            let exact_aux = world > 1 && self.model.aux_balancing();
            let Some(batch) = batch else {
                if exact_aux {
                    sync::sum_routing(
                        self.sync,
                        &moes.iter().map(|m| MoeStats::empty(m.n_experts())).collect::<Vec<_>>(),
                    )?;
                }
                micro_batches.push(stats); // nothing of this micro-batch here; still joins the sums
                continue;
            };
            // Dropout masks from a per-micro-batch stream (per rank too when data-parallel):
            // a resumed run draws the same ones.
            let Loss { ce, aux, moe_stats, router_probs, item_ce } = {
                let key = match world {
                    1 => format!("train/dropout/{}", mb.index),
                    _ => format!("train/dropout/{}/rank{rank}", mb.index),
                };
                let _train = self.model.training(crate::util::rng::stream(self.spec.seed, &key));
                self.model.loss(&batch)?
            };
            let aux = match exact_aux {
                true => self.model.aux_loss(&router_probs, &sync::sum_routing(self.sync, &moe_stats)?)?,
                false => aux,
            };
            routing.iter_mut().zip(&moe_stats).for_each(|(acc, s)| acc.add(s));
            let ce_v = ce.to_scalar::<f32>()? as f64;
            ensure!(
                ce_v.is_finite(),
                "training loss became {ce_v} at step {}; lower train.lr or raise train.warmup_steps",
                self.state.step
            );
            stats.ce = ce_v * share;
            // One process: (ce + aux) / grad_accum. Data-parallel: the share-weighted ce plus
            // this rank's part of the global aux loss (already a part: not weighted again).
            let mut loss = if world == 1 { ce } else { (ce * share)? };
            // The auxiliary item head's cross-entropy, weighted and shared like the ce.
            if let Some(ic) = item_ce {
                stats.item_ce = Some(ic.to_scalar::<f32>()? as f64 * share);
                loss = (loss + (ic * (self.model.cfg.item_head_weight * share))?)?;
            }
            if let Some(a) = aux {
                stats.aux = Some(a.to_scalar::<f32>()? as f64);
                loss = (loss + a)?;
            }
            let loss = (loss * (1.0 / tc.grad_accum as f64))?;
            let gs = loss.backward()?;
            for (name, v) in &self.vars {
                if let Some(g) = gs.get(v.as_tensor()) {
                    let g = match grads.remove(name) {
                        Some(prev) => (prev + g)?,
                        None => g.clone(),
                    };
                    grads.insert(name.clone(), g);
                }
            }
            micro_batches.push(stats);
        }
        if world > 1 {
            sync::sum_step_stats(self.sync, &mut micro_batches, &mut routing)?;
            dist::all_reduce_grads(self.sync, &self.vars, &mut grads)?;
        }
        optim::clip_global_norm(&mut grads, tc.grad_clip)?;
        self.opt.step(&grads, lr)?;
        for (m, st) in moes.iter().zip(&routing) {
            m.update_bias(&st.load);
        }
        self.state.step += 1;
        Ok(StepStats { micro_batches, routing })
    }

    /// The eval at the current step: validation loss (and the hook's metrics) into a
    /// `metrics.jsonl` row, `best/` if `train.select_metric` improved, and `last/` with
    /// the optimizer state. Returns the validation loss.
    pub fn evaluate_and_checkpoint(
        &mut self,
        lr: f64,
        train_loss: f64,
        valid: &[(u32, u32)],
        hooks: &Hooks,
    ) -> Result<f64> {
        let te = Instant::now();
        let (tc, step) = (self.spec.train, self.state.step);
        let valid_loss = data::valid_loss(&self.model, self.ds, valid, tc.valid_batch)?;
        let mut row = Map::new();
        row.insert("step".into(), json!(step));
        row.insert("train_loss".into(), json!(train_loss));
        row.insert("valid_loss".into(), if valid_loss.is_finite() { json!(valid_loss) } else { Value::Null });
        row.insert("lr".into(), json!(lr));
        if let Some(f) = hooks.eval {
            row.extend(f(&self.model).context("eval hook")?);
        }
        let value = self.selected_value(&row, train_loss)?;
        let meta = CheckpointMeta {
            format: checkpoint::FORMAT,
            model: self.spec.model.clone(),
            vocab: self.model.vocab.clone(),
            n_items: self.model.n_items(),
            step,
            tokenizer_sha256: self.tokenizer_sha256.clone(),
            codes_sha256: String::new(),
            seed: self.spec.seed,
            data_dir: self.ds.dir.clone(),
            extra: Value::Object(row.clone()),
        };
        let (model, varmap, dense) = (&self.model, &self.varmap, &self.dense);
        if self.state.best_value.is_nan() || tc.select_metric.better(value, self.state.best_value) {
            self.state.best_value = value;
            self.state.best_step = step;
            crate::util::io::atomic_dir(&self.out.join("best"), |d| {
                checkpoint::write_model(d, model, varmap, dense, &meta)
            })?;
        }
        self.rows.push(Value::Object(row));
        let mut text = String::new();
        for r in &self.rows {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        crate::util::io::atomic_write(&self.metrics_path(), text.as_bytes())?;
        let (opt, state, last_dir) = (&self.opt, &self.state, self.last_dir());
        crate::util::io::atomic_dir(&last_dir, |d| {
            checkpoint::write_model(d, model, varmap, dense, &meta)?;
            opt.save(&d.join("optimizer.safetensors"))?;
            crate::util::io::write_json(&d.join("train_state.json"), state)
        })?;
        info!(
            step,
            train_loss = format!("{train_loss:.4}"),
            valid_loss = format!("{valid_loss:.4}"),
            best_step = self.state.best_step,
            secs = format!("{:.1}", te.elapsed().as_secs_f64()),
            "eval; wrote {}",
            last_dir.display()
        );
        Ok(valid_loss)
    }

    /// `train.select_metric` in `row`; without validation users (`valid_loss` is null)
    /// the train loss stands in, so the last checkpoint is kept as best.
    fn selected_value(&self, row: &Map<String, Value>, train_loss: f64) -> Result<f64> {
        let metric = self.spec.train.select_metric;
        let value = row.get(metric.key()).and_then(|v| v.as_f64()).with_context(|| {
            format!(
                "train.select_metric = {:?} is not a number in the eval row (keys: {})",
                metric.key(),
                row.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        });
        match value {
            Ok(v) => Ok(v),
            Err(e) if metric == super::SelectMetric::ValidLoss => {
                tracing::warn!("{e:#}; selecting by train_loss");
                Ok(train_loss)
            }
            Err(e) => Err(e),
        }
    }
}
