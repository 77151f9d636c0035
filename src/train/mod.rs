//! Next-token pretraining: the training loop, optimizer, schedule and checkpoints.
//!
//! `OUT/` holds `config.toml` (resolved config + seed), `metrics.jsonl` (one row per
//! eval), `best/` (best checkpoint by `train.select_metric`) and `last/` (latest
//! checkpoint plus optimizer state, for `--resume`).

pub mod data;

use crate::config::Config;
use crate::data::Dataset;
use crate::model::checkpoint::{self, CheckpointMeta};
use crate::model::moe::MoeStats;
use crate::model::{Loss, OneRecModel, Vocab};
use crate::nn::{optim, params::sorted_vars};
use crate::tokenizer::SemanticIds;
use anyhow::{bail, ensure, Context, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;
use tracing::info;

/// Training schedule (the `[train]` config section).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    pub epochs: usize,
    /// If > 0, the number of optimizer steps (overrides `epochs`).
    pub max_steps: usize,
    pub lr: f64,
    /// Final learning rate as a fraction of `lr` (cosine decay).
    pub min_lr_ratio: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Max global gradient norm (0 = no clipping).
    pub grad_clip: f64,
    /// Items per target session (1 = point-wise next item).
    pub session_len: usize,
    /// Shortest history a training example may have.
    pub min_history: usize,
    pub eval_every: usize,
    pub log_every: usize,
    /// Validation users per eval (0 = all).
    pub valid_users: usize,
    pub valid_batch: usize,
    /// Eval-row key selecting `best/` (lower is better if it contains "loss").
    pub select_metric: String,
    /// Users for validation Recall@10 / NDCG@10 by constrained beam search at every
    /// eval (0 = no ranking eval; only `valid_loss` is then available).
    pub rank_users: usize,
    /// Beam width of that ranking eval.
    pub rank_beam: usize,
    /// Rank with the user's history items excluded, as `onerec eval --exclude-history`
    /// does, so `best/` is picked under the protocol the final numbers are reported in.
    pub rank_exclude_history: bool,
    /// Length bucketing: if > 0, each window of this many batches is sorted by history
    /// length before batching (less encoder padding, faster steps); 0 = plain shuffle.
    pub length_buckets: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch_size: 64,
            grad_accum: 1,
            epochs: 3,
            max_steps: 0,
            lr: 2e-3,
            min_lr_ratio: 0.1,
            warmup_steps: 50,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            grad_clip: 1.0,
            session_len: 1,
            min_history: 1,
            eval_every: 200,
            log_every: 50,
            valid_users: 0,
            valid_batch: 256,
            select_metric: "valid_loss".into(),
            rank_users: 500,
            rank_beam: 20,
            rank_exclude_history: false,
            length_buckets: 0,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.batch_size > 0, "batch_size must be > 0");
        ensure!(self.grad_accum > 0, "grad_accum must be > 0");
        ensure!(self.epochs > 0 || self.max_steps > 0, "set epochs or max_steps > 0");
        ensure!(self.lr > 0.0 && self.lr.is_finite(), "lr must be > 0");
        ensure!((0.0..=1.0).contains(&self.min_lr_ratio), "min_lr_ratio must be in [0, 1]");
        ensure!(
            (0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2),
            "beta1 and beta2 must be in [0, 1)"
        );
        ensure!(
            self.eps > 0.0 && self.weight_decay >= 0.0 && self.grad_clip >= 0.0,
            "eps > 0, weight_decay >= 0, grad_clip >= 0"
        );
        ensure!(self.session_len > 0, "session_len must be > 0");
        ensure!(
            self.eval_every > 0 && self.log_every > 0 && self.valid_batch > 0,
            "eval_every, log_every and valid_batch must be > 0"
        );
        ensure!(self.rank_beam >= 10, "rank_beam must be >= 10 (Recall@10 needs 10 ranked items)");
        ensure!(!self.select_metric.is_empty(), "select_metric must name an eval-row key, e.g. \"valid_loss\"");
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
    /// Stop after this many steps (as if killed; tests of `--resume`).
    #[cfg(feature = "testkit")]
    pub stop_after: Option<usize>,
}

/// Pretrains on `ds` with `sids` (the tokenizer's semantic ids; re-indexed here), with
/// the validation ranking eval (Recall@10 / NDCG@10 by constrained beam
/// search over `train.rank_users` validation users) added to every eval row, so
/// `train.select_metric = "ndcg@10"` can pick the best checkpoint. This is what
/// `onerec pretrain` runs.
pub fn pretrain(cfg: &Config, ds: &Dataset, sids: &SemanticIds, out: &Path, resume: bool) -> Result<Summary> {
    let metric = cfg.train.select_metric.as_str();
    let ranked = ["recall@10", "ndcg@10"];
    ensure!(
        ["valid_loss", "train_loss"].contains(&metric) || ranked.contains(&metric),
        "train.select_metric = {metric:?}: expected \"valid_loss\", \"train_loss\", \"recall@10\" or \"ndcg@10\""
    );
    ensure!(
        cfg.train.rank_users > 0 || !ranked.contains(&metric),
        "train.select_metric = {metric:?} needs the validation ranking eval: set train.rank_users > 0, or select by \"valid_loss\""
    );
    if cfg.train.rank_users == 0 {
        return pretrain_with(cfg, ds, sids, out, resume, &Hooks::default());
    }
    let dense = sids.reindexed(&ds.item_ids)?;
    let vocab = Vocab::new(dense.codebook_sizes.clone());
    let opts = rank_eval_options(&cfg.train);
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
    pretrain_with(cfg, ds, sids, out, resume, &Hooks { eval: Some(&hook), ..Hooks::default() })
}

/// What a pretraining run did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub steps: usize,
    pub total_steps: usize,
    pub examples: usize,
    pub best_step: usize,
    pub select_metric: String,
    pub best_value: f64,
    pub last_train_loss: f64,
    pub last_valid_loss: f64,
    pub seconds: f64,
    pub tokens_per_sec: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainState {
    step: usize,
    best_step: usize,
    best_value: f64,
}

fn better(metric: &str, a: f64, b: f64) -> bool {
    if metric.contains("loss") {
        a < b
    } else {
        a > b
    }
}

pub fn pretrain_with(
    cfg: &Config,
    ds: &Dataset,
    sids: &SemanticIds,
    out: &Path,
    resume: bool,
    hooks: &Hooks,
) -> Result<Summary> {
    cfg.validate()?;
    let tc = &cfg.train;
    ensure!(
        tc.session_len <= cfg.model.max_session_items,
        "train.session_len = {} exceeds model.max_session_items = {}; raise the latter",
        tc.session_len,
        cfg.model.max_session_items
    );
    let dense = sids.reindexed(&ds.item_ids).context("matching tokenizer items to the dataset")?;
    let tok_fp = checkpoint::fingerprint(sids);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let last_dir = out.join("last");
    let (model, varmap, state) = if resume && last_dir.join("checkpoint.json").exists() {
        let ck = checkpoint::load(&last_dir)?;
        checkpoint::check_tokenizer(&ck.meta, &last_dir, sids)?;
        ensure!(
            serde_json::to_value(&ck.meta.model)? == serde_json::to_value(&cfg.model)?,
            "--resume: [model] of {} differs from the given config; resume with the config of that run ({}/config.toml)",
            last_dir.display(),
            out.display()
        );
        let st: TrainState = crate::util::io::read_json(&last_dir.join("train_state.json"))?;
        info!(step = st.step, dir = %last_dir.display(), "resuming");
        (ck.model, ck.varmap, st)
    } else {
        if resume {
            info!("--resume: no checkpoint in {}, starting fresh", last_dir.display());
        } else if last_dir.exists() {
            bail!(
                "{} already holds a run (last/ exists); pass --resume to continue it or choose a new --out",
                out.display()
            );
        }
        let (m, vm) =
            OneRecModel::build(&cfg.model, Vocab::new(sids.codebook_sizes.clone()), dense.codes.clone(), cfg.seed)?;
        (m, vm, TrainState { step: 0, best_step: 0, best_value: f64::NAN })
    };
    cfg.save(out)?;
    let vars = sorted_vars(&varmap);
    let n_params: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    let mut opt = optim::AdamW::new(vars.clone(), tc.beta1, tc.beta2, tc.eps, tc.weight_decay)?;
    if state.step > 0 {
        opt.load(&last_dir.join("optimizer.safetensors"), state.step)?;
    }
    let examples = data::train_examples(ds, tc.min_history);
    ensure!(
        !examples.is_empty(),
        "no training examples: every user's training part is shorter than train.min_history + 1 = {}",
        tc.min_history + 1
    );
    let mb_per_epoch = examples.len().div_ceil(tc.batch_size);
    let lens = data::history_lengths(&examples, cfg.model.history_len);
    let total = if tc.max_steps > 0 { tc.max_steps } else { (tc.epochs * mb_per_epoch).div_ceil(tc.grad_accum) };
    let valid = data::valid_examples(ds, tc.valid_users);
    info!(
        params = n_params,
        examples = examples.len(),
        valid = valid.len(),
        steps = total,
        users = ds.n_users(),
        items = ds.n_items(),
        "pretraining: d_model={} experts={} top_k={} history={} session_len={}",
        cfg.model.d_model,
        cfg.model.moe.experts,
        cfg.model.moe.top_k,
        cfg.model.history_len,
        tc.session_len
    );
    let metrics_path = out.join("metrics.jsonl");
    let mut rows: Vec<Value> = Vec::new();
    if state.step > 0 && metrics_path.exists() {
        let text = std::fs::read_to_string(&metrics_path)
            .with_context(|| format!("cannot read {}", metrics_path.display()))?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: invalid JSON", metrics_path.display(), i + 1))?;
            if v.get("step").and_then(|s| s.as_u64()).is_some_and(|s| s as usize <= state.step) {
                rows.push(v);
            }
        }
    }
    let TrainState { step: start, mut best_step, mut best_value } = state;
    let mut order: (usize, Vec<u32>) = (usize::MAX, Vec::new());
    let (mut ce_sum, mut ce_n) = (0.0f64, 0usize);
    let (mut log_ce, mut log_aux, mut log_n, mut log_tok, mut log_ex) = (0.0f64, 0.0f64, 0usize, 0.0f64, 0usize);
    let mut log_load: Vec<Vec<u64>> = model.moe_layers().iter().map(|m| vec![0; m.n_experts()]).collect();
    let mut log_entropy = (0.0f64, 0u64);
    let (mut last_train, mut last_valid) = (f64::NAN, f64::NAN);
    let t0 = Instant::now();
    let mut log_t = Instant::now();
    let (mut all_tok, mut train_secs) = (0.0f64, 0.0f64);
    let moes = model.moe_layers();
    let pb = crate::util::progress::bar((total - start.min(total)) as u64, "pretrain");
    let mut step = start;
    while step < total {
        let ts = Instant::now();
        let mut step_moe: Vec<MoeStats> = moes.iter().map(|m| MoeStats::empty(m.n_experts())).collect();
        let lr = optim::lr_at(step, total, tc.lr, tc.warmup_steps, tc.min_lr_ratio);
        let mut grads: HashMap<String, Tensor> = HashMap::new();
        for a in 0..tc.grad_accum {
            let j = step * tc.grad_accum + a;
            let epoch = j / mb_per_epoch;
            if order.0 != epoch {
                let idx = if tc.length_buckets > 0 {
                    data::epoch_order_bucketed(&lens, tc.batch_size, tc.length_buckets, cfg.seed, epoch)
                } else {
                    data::epoch_order(examples.len(), cfg.seed, epoch)
                };
                order = (epoch, idx);
            }
            let bi = j % mb_per_epoch;
            let idx = &order.1[bi * tc.batch_size..((bi + 1) * tc.batch_size).min(examples.len())];
            let exs: Vec<data::Example> = idx.iter().map(|&i| examples[i as usize]).collect();
            let batch = data::train_batch(&model, ds, &exs, tc.session_len)?;
            // Dropout masks from a per-micro-batch stream: a resumed run draws the same ones.
            let Loss { ce, aux, moe_stats } = {
                let _train = model.training(crate::util::rng::stream(cfg.seed, &format!("train/dropout/{j}")));
                model.loss(&batch)?
            };
            step_moe.iter_mut().zip(&moe_stats).for_each(|(acc, s)| acc.add(s));
            let ce_v = ce.to_scalar::<f32>()? as f64;
            ensure!(
                ce_v.is_finite(),
                "training loss became {ce_v} at step {step}; lower train.lr or raise train.warmup_steps"
            );
            let mut loss = ce;
            if let Some(a) = aux {
                log_aux += a.to_scalar::<f32>()? as f64;
                loss = (loss + a)?;
            }
            let loss = (loss * (1.0 / tc.grad_accum as f64))?;
            let gs = loss.backward()?;
            for (name, v) in &vars {
                if let Some(g) = gs.get(v.as_tensor()) {
                    let g = match grads.remove(name) {
                        Some(prev) => (prev + g)?,
                        None => g.clone(),
                    };
                    grads.insert(name.clone(), g);
                }
            }
            ce_sum += ce_v;
            ce_n += 1;
            log_ce += ce_v;
            log_n += 1;
            log_tok += batch.tokens() as f64;
            all_tok += batch.tokens() as f64;
            log_ex += exs.len();
        }
        optim::clip_global_norm(&mut grads, tc.grad_clip)?;
        opt.step(&grads, lr)?;
        for (i, m) in moes.iter().enumerate() {
            let st = &step_moe[i];
            m.update_bias(&st.load);
            for (a, b) in log_load[i].iter_mut().zip(&st.load) {
                *a += b;
            }
            log_entropy.0 += st.entropy_sum;
            log_entropy.1 += st.tokens;
        }
        train_secs += ts.elapsed().as_secs_f64();
        step += 1;
        pb.inc(1);
        if step % tc.log_every == 0 || step == total {
            let secs = log_t.elapsed().as_secs_f64().max(1e-9);
            let load: Vec<String> = log_load
                .iter()
                .map(|l| {
                    let s = l.iter().sum::<u64>().max(1) as f64;
                    l.iter().map(|&x| format!("{:.2}", x as f64 / s)).collect::<Vec<_>>().join("/")
                })
                .collect();
            info!(
                step,
                loss = format!("{:.4}", log_ce / log_n.max(1) as f64),
                aux = format!("{:.4}", log_aux / log_n.max(1) as f64),
                lr = format!("{lr:.2e}"),
                tok_per_s = format!("{:.0}", log_tok / secs),
                ex_per_s = format!("{:.0}", log_ex as f64 / secs),
                expert_load = load.join(" | "),
                router_entropy = format!("{:.3}", log_entropy.0 / log_entropy.1.max(1) as f64),
                "train"
            );
            (log_ce, log_aux, log_n, log_tok, log_ex) = (0.0, 0.0, 0, 0.0, 0);
            log_load.iter_mut().for_each(|l| l.iter_mut().for_each(|x| *x = 0));
            log_entropy = (0.0, 0);
            log_t = Instant::now();
        }
        if step % tc.eval_every == 0 || step == total {
            let te = Instant::now();
            last_train = ce_sum / ce_n.max(1) as f64;
            (ce_sum, ce_n) = (0.0, 0);
            last_valid = data::valid_loss(&model, ds, &valid, tc.valid_batch)?;
            let mut row = Map::new();
            row.insert("step".into(), json!(step));
            row.insert("train_loss".into(), json!(last_train));
            row.insert("valid_loss".into(), if last_valid.is_finite() { json!(last_valid) } else { Value::Null });
            row.insert("lr".into(), json!(lr));
            if let Some(f) = hooks.eval {
                row.extend(f(&model).context("eval hook")?);
            }
            let value = row.get(&tc.select_metric).and_then(|v| v.as_f64()).with_context(|| {
                format!(
                    "train.select_metric = {:?} is not a number in the eval row (keys: {})",
                    tc.select_metric,
                    row.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            });
            let value = match value {
                Ok(v) => v,
                Err(e) if tc.select_metric == "valid_loss" => {
                    // No validation users: keep the last checkpoint as best.
                    tracing::warn!("{e:#}; selecting by train_loss");
                    last_train
                }
                Err(e) => return Err(e),
            };
            let meta = CheckpointMeta {
                format: checkpoint::FORMAT,
                model: cfg.model.clone(),
                vocab: model.vocab.clone(),
                n_items: model.n_items(),
                step,
                tokenizer_sha256: tok_fp.clone(),
                codes_sha256: String::new(),
                seed: cfg.seed,
                data_dir: ds.dir.clone(),
                extra: Value::Object(row.clone()),
            };
            if best_value.is_nan() || better(&tc.select_metric, value, best_value) {
                best_value = value;
                best_step = step;
                crate::util::io::atomic_dir(&out.join("best"), |d| {
                    checkpoint::write_model(d, &model, &varmap, &dense, &meta)
                })?;
            }
            rows.push(Value::Object(row));
            let mut text = String::new();
            for r in &rows {
                text.push_str(&serde_json::to_string(r)?);
                text.push('\n');
            }
            crate::util::io::atomic_write(&metrics_path, text.as_bytes())?;
            let st = TrainState { step, best_step, best_value };
            crate::util::io::atomic_dir(&last_dir, |d| {
                checkpoint::write_model(d, &model, &varmap, &dense, &meta)?;
                opt.save(&d.join("optimizer.safetensors"))?;
                crate::util::io::write_json(&d.join("train_state.json"), &st)
            })?;
            info!(
                step,
                train_loss = format!("{last_train:.4}"),
                valid_loss = format!("{last_valid:.4}"),
                best_step,
                secs = format!("{:.1}", te.elapsed().as_secs_f64()),
                "eval; wrote {}",
                last_dir.display()
            );
        }
        #[cfg(feature = "testkit")]
        if hooks.stop_after == Some(step) {
            break;
        }
    }
    pb.finish_and_clear();
    let summary = Summary {
        steps: step,
        total_steps: total,
        examples: examples.len(),
        best_step,
        select_metric: tc.select_metric.clone(),
        best_value,
        last_train_loss: last_train,
        last_valid_loss: last_valid,
        seconds: t0.elapsed().as_secs_f64(),
        tokens_per_sec: all_tok / train_secs.max(1e-9),
    };
    info!(?summary, "pretraining done");
    Ok(summary)
}
