//! Training the reward model: examples (real session windows of the training parts,
//! labelled per tower, plus sampled negatives), a held-out user split, the epoch loop,
//! the held-out evaluation, and the saved directory.

use super::{auc, bce, code_index, towers_for, RewardMeta, RewardNet, RewardReport, TowerMetrics};
use super::{Batch, FORMAT, META_FILE, WEIGHTS_FILE};
use crate::align::RewardConfig;
use crate::data::Dataset;
use crate::nn::optim::AdamW;
use crate::nn::{init, params};
use crate::tokenizer::SemanticIds;
use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::Rng;
use std::path::Path;

/// What the reward stage takes from the run config: its section, the run seed, and the
/// resolved config to record as `config.toml` (serialised by the caller).
#[derive(Clone, Debug)]
pub struct RewardSpec<'a> {
    pub reward: &'a RewardConfig,
    pub seed: u64,
    /// The resolved run config (TOML), written verbatim.
    pub config_toml: String,
}

/// Trains the reward model on `ds` (training parts only; held-out users for AUC) and
/// writes it to `out` atomically. `tokenizer_dir` holds the tokenizer's `codes.tsv`.
pub fn train_reward_model(spec: &RewardSpec, ds: &Dataset, tokenizer_dir: &Path, out: &Path) -> Result<RewardReport> {
    let t0 = std::time::Instant::now();
    let (rc, seed) = (spec.reward, spec.seed);
    rc.validate().context("[reward]")?;
    let (tok_sha, sids) = tokenizer_codes(rc, ds, tokenizer_dir)?;
    let (towers, weights) = towers_and_weights(rc, ds)?;
    tracing::info!(?towers, ?weights, features = ?ds.manifest.features, users = ds.n_users(), items = ds.n_items(), "reward model");

    let held = heldout_users(ds.n_users(), rc.holdout_users, seed);
    let examples = build_examples(ds, rc, &towers, seed)?;
    let (test, train): (Vec<&Example>, Vec<&Example>) = examples.iter().partition(|e| held[e.user]);
    if train.is_empty() {
        bail!(
            "no training sessions: every user's training part is shorter than reward.min_session_len = {}",
            rc.min_session_len
        );
    }
    let n_hold = held.iter().filter(|&&h| h).count();
    tracing::info!(
        train = train.len(),
        heldout = test.len(),
        heldout_users = n_hold,
        "reward examples (real + negative)"
    );

    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let code_idx = sids.as_ref().map(code_index).transpose()?;
    let net = RewardNet::new(vb, ds.n_items(), rc.dim, code_idx.clone(), towers.len())?;
    init::seeded(&vm, seed, "reward.init")?;
    let epoch_losses = fit(&net, &vm, ds, &train, rc, seed)?;
    let (tower_metrics, reward_auc) = evaluate_heldout(&net, ds, &test, &towers, &weights, rc.history_len)?;
    let report = RewardReport {
        towers: tower_metrics,
        reward_auc,
        train_examples: train.len(),
        heldout_examples: test.len(),
        heldout_users: n_hold,
        epoch_losses,
        seconds: t0.elapsed().as_secs_f64(),
    };
    tracing::info!(reward_auc = ?report.reward_auc, seconds = report.seconds, "reward model trained");

    let meta = RewardMeta {
        format: FORMAT.into(),
        config: rc.clone(),
        towers,
        weights,
        features: ds.manifest.features.clone(),
        tokenizer_sha256: tok_sha,
        n_items: ds.n_items(),
        codebook_sizes: sids.as_ref().map(|s| s.codebook_sizes.clone()).unwrap_or_default(),
        seed,
    };
    let extra: Vec<(String, Tensor)> = code_idx.map(|(_, t)| vec![("meta.codes".to_string(), t)]).unwrap_or_default();
    save(out, &vm, &extra, &meta, &report, &spec.config_toml)?;
    Ok(report)
}

/// Writes the reward model directory atomically: weights (+ `extra` tensors), meta,
/// report and the resolved run config.
fn save(
    out: &Path,
    vm: &VarMap,
    extra: &[(String, Tensor)],
    meta: &RewardMeta,
    report: &RewardReport,
    config_toml: &str,
) -> Result<()> {
    crate::util::io::atomic_dir(out, |dir| {
        params::save_varmap(vm, extra, &dir.join(WEIGHTS_FILE))?;
        crate::util::io::write_json(&dir.join(META_FILE), meta)?;
        crate::util::io::write_json(&dir.join("report.json"), report)?;
        crate::util::io::atomic_write(&dir.join("config.toml"), config_toml.as_bytes())
    })?;
    tracing::info!(out = %out.display(), "wrote reward model");
    Ok(())
}

/// The fingerprint of the tokenizer's `codes.tsv`, and its codes in dataset order when
/// `reward.semantic_codes` is on.
fn tokenizer_codes(rc: &RewardConfig, ds: &Dataset, dir: &Path) -> Result<(String, Option<SemanticIds>)> {
    let sha = SemanticIds::fingerprint(dir)
        .with_context(|| format!("tokenizer {}: expected a directory with codes.tsv", dir.display()))?;
    if !rc.semantic_codes {
        return Ok((sha, None));
    }
    let s = SemanticIds::load(dir)?;
    let dense =
        s.reindexed(&ds.item_ids).with_context(|| format!("tokenizer {} does not cover the dataset", dir.display()))?;
    Ok((sha, Some(dense)))
}

/// The towers `ds` supports and each one's weight in the scalar reward.
fn towers_and_weights(rc: &RewardConfig, ds: &Dataset) -> Result<(Vec<String>, Vec<f64>)> {
    let towers = towers_for(&ds.manifest.features);
    for k in rc.tower_weights.keys() {
        if !towers.contains(k) {
            bail!(
                "[reward] tower_weights.{k}: this dataset has no `{k}` tower (towers: {}; features: {:?})",
                towers.join(", "),
                ds.manifest.features
            );
        }
    }
    let weights = towers.iter().map(|t| rc.tower_weights.get(t).copied().unwrap_or(1.0)).collect();
    Ok((towers, weights))
}

/// A seeded `fraction` of the users (at least one user is kept for training), as a
/// per-user flag.
fn heldout_users(n_users: usize, fraction: f64, seed: u64) -> Vec<bool> {
    let mut users: Vec<usize> = (0..n_users).collect();
    users.shuffle(&mut crate::util::rng::stream(seed, "reward.holdout"));
    let n_hold = ((n_users as f64 * fraction).ceil() as usize).min(n_users.saturating_sub(1));
    let mut held = vec![false; n_users];
    for &u in &users[..n_hold] {
        held[u] = true;
    }
    held
}

/// `reward.epochs` epochs of AdamW on BCE over seeded shuffles of `train`; the mean
/// loss of each epoch.
fn fit(
    net: &RewardNet,
    vm: &VarMap,
    ds: &Dataset,
    train: &[&Example],
    rc: &RewardConfig,
    seed: u64,
) -> Result<Vec<f64>> {
    let mut opt = AdamW::with_default_betas(params::sorted_vars(vm), rc.weight_decay)?;
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut shuf = crate::util::rng::stream(seed, "reward.shuffle");
    let mut epoch_losses = Vec::new();
    let pb = crate::util::progress::bar((rc.epochs * train.len().div_ceil(rc.batch_size)) as u64, "reward");
    for epoch in 0..rc.epochs {
        order.shuffle(&mut shuf);
        let (mut sum, mut cnt) = (0f64, 0usize);
        for chunk in order.chunks(rc.batch_size) {
            let ex: Vec<&Example> = chunk.iter().map(|&i| train[i]).collect();
            let (batch, labels) = examples_batch(net, ds, &ex, rc.history_len)?;
            let loss = bce(&net.forward(&batch)?, &labels)?.mean_all()?;
            opt.backward_step(&loss, rc.lr, 0.0)?;
            sum += loss.to_scalar::<f32>()? as f64 * ex.len() as f64;
            cnt += ex.len();
            pb.inc(1);
        }
        let l = sum / cnt.max(1) as f64;
        ensure!(l.is_finite(), "reward training diverged at epoch {epoch} (loss {l}); lower reward.lr");
        tracing::info!(epoch, loss = l, "reward epoch");
        epoch_losses.push(l);
    }
    pb.finish_and_clear();
    Ok(epoch_losses)
}

/// Per-tower AUC and BCE on the held-out examples, and the AUC of the weighted scalar
/// reward for real sessions against sampled negatives.
fn evaluate_heldout(
    net: &RewardNet,
    ds: &Dataset,
    test: &[&Example],
    towers: &[String],
    weights: &[f64],
    hist_len: usize,
) -> Result<(Vec<TowerMetrics>, Option<f64>)> {
    let mut probs: Vec<Vec<f32>> = Vec::with_capacity(test.len());
    let mut losses = vec![0f64; towers.len()];
    for chunk in test.chunks(512) {
        let (batch, labels) = examples_batch(net, ds, chunk, hist_len)?;
        let logits = net.forward(&batch)?;
        let l = bce(&logits, &labels)?.sum(0)?.to_vec1::<f32>()?;
        for (acc, v) in losses.iter_mut().zip(l) {
            *acc += v as f64;
        }
        probs.extend(candle_nn::ops::sigmoid(&logits)?.to_vec2::<f32>()?);
    }
    let mut tower_metrics = Vec::new();
    for (t, name) in towers.iter().enumerate() {
        let labels: Vec<f32> = test.iter().map(|e| e.labels[t]).collect();
        let thr = labels.iter().map(|&v| v as f64).sum::<f64>() / labels.len().max(1) as f64;
        let bin: Vec<bool> = labels.iter().map(|&v| v as f64 > thr).collect();
        let sc: Vec<f32> = probs.iter().map(|p| p[t]).collect();
        let m = TowerMetrics {
            name: name.clone(),
            auc: auc(&sc, &bin),
            threshold: thr,
            loss: losses[t] / test.len().max(1) as f64,
        };
        tracing::info!(tower = %m.name, auc = ?m.auc, loss = m.loss, "held-out tower");
        tower_metrics.push(m);
    }
    let scalar: Vec<f32> = probs.iter().map(|p| p.iter().zip(weights).map(|(a, w)| a * *w as f32).sum()).collect();
    let real: Vec<bool> = test.iter().map(|e| e.real).collect();
    Ok((tower_metrics, auc(&scalar, &real)))
}

/// One training / held-out example: `history(user)[..hist_end]` and a session.
struct Example {
    user: usize,
    hist_end: usize,
    items: Vec<u32>,
    labels: Vec<f32>,
    real: bool,
}

/// Where the engagement features that labels come from sit among the dataset's columns.
struct FeatureColumns {
    watch_time: Option<usize>,
    duration: Option<usize>,
    like: Option<usize>,
}

impl FeatureColumns {
    fn of(ds: &Dataset) -> Result<FeatureColumns> {
        if ds.features.len() != ds.manifest.features.len() {
            bail!(
                "dataset lists {} features but stores {} feature columns",
                ds.manifest.features.len(),
                ds.features.len()
            );
        }
        let fidx = |name: &str| ds.manifest.features.iter().position(|f| f == name);
        Ok(FeatureColumns { watch_time: fidx("watch_time"), duration: fidx("duration"), like: fidx("like") })
    }

    /// Each tower's label for the real session at interaction rows `r`: `watch` = watch
    /// time / duration, `like` = fraction liked (both clamped to [0, 1]), `interact` = 1.
    fn labels(&self, ds: &Dataset, towers: &[String], r: std::ops::Range<usize>) -> Vec<f32> {
        towers
            .iter()
            .map(|t| match t.as_str() {
                "watch" => {
                    let (w, d) = (self.watch_time.map(|i| &ds.features[i]), self.duration.map(|i| &ds.features[i]));
                    let (w, d) =
                        (w.map(|w| w[r.clone()].iter().sum::<f32>()), d.map(|d| d[r.clone()].iter().sum::<f32>()));
                    match (w, d) {
                        (Some(w), Some(d)) if d > 0.0 && w.is_finite() => (w / d).clamp(0.0, 1.0),
                        _ => 0.0,
                    }
                }
                "like" => self
                    .like
                    .map(|i| ds.features[i][r.clone()].iter().map(|v| v.clamp(0.0, 1.0)).sum::<f32>() / r.len() as f32)
                    .unwrap_or(0.0),
                _ => 1.0,
            })
            .collect()
    }
}

/// Real session windows of the training parts plus sampled negatives, per user.
fn build_examples(ds: &Dataset, cfg: &RewardConfig, towers: &[String], seed: u64) -> Result<Vec<Example>> {
    let columns = FeatureColumns::of(ds)?;
    let n_items = ds.n_items();
    ensure!(n_items >= 2, "dataset has {n_items} items; the reward model needs at least 2");
    let mut rng = crate::util::rng::stream(seed, "reward.negatives");
    let mut out = Vec::new();
    for u in 0..ds.n_users() {
        let train = ds.split(u).train;
        let base = ds.offsets[u];
        for s in ds.sessions(u) {
            let (a, b) = (s.start.max(train.start), s.end.min(train.end));
            let mut st = a;
            while st < b {
                let en = (st + cfg.session_len).min(b);
                if en - st < cfg.min_session_len {
                    break;
                }
                let r = base + st..base + en;
                let labels = columns.labels(ds, towers, r.clone());
                let items = ds.items[r].to_vec();
                for _ in 0..cfg.negatives {
                    let neg: Vec<u32> = (0..items.len()).map(|_| rng.gen_range(0..n_items as u32)).collect();
                    out.push(Example {
                        user: u,
                        hist_end: st,
                        items: neg,
                        labels: vec![0.0; towers.len()],
                        real: false,
                    });
                }
                out.push(Example { user: u, hist_end: st, items, labels, real: true });
                st = en;
            }
        }
    }
    Ok(out)
}

fn examples_batch(net: &RewardNet, ds: &Dataset, ex: &[&Example], hist_len: usize) -> Result<(Batch, Tensor)> {
    let hs: Vec<&[u32]> = ex.iter().map(|e| &ds.history(e.user)[..e.hist_end]).collect();
    let ss: Vec<&[u32]> = ex.iter().map(|e| e.items.as_slice()).collect();
    let t = ex.first().map(|e| e.labels.len()).unwrap_or(0);
    let labels: Vec<f32> = ex.iter().flat_map(|e| e.labels.iter().copied()).collect();
    Ok((net.batch(&hs, &ss, hist_len)?, Tensor::from_vec(labels, (ex.len(), t), &Device::Cpu)?))
}
