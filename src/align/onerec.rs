//! Wiring alignment to datasets, the synthetic world and the real OneRec model
//! (`onerec align`).
//!
//! [`align_dataset`] is the whole stage for any [`Policy`] + [`SessionGenerator`]:
//! training histories from the dataset, the reward model as scorer, a ground-truth hook,
//! `config.toml` beside the outputs. [`run`] validates every CLI input (config, dataset,
//! reward model vs the checkpoint's tokenizer and feature set) and then needs the
//! model/generation stages: `Policy` for the checkpoint's model (sequence log-probs,
//! sorted vars, deep copy, save/load) and a generator backed by `generate::beam_search`
//! (beam = top = `align.candidates`). Until those land it stops with a clear error
//! after the checks, never with a fake result.

use super::iterate::{align_on, AlignOutcome, EvalHook, Policy, SessionGenerator, SessionScorer, Sessions};
use super::reward::RewardModel;
use super::AlignConfig;
use crate::data::Dataset;
use crate::dist::{GradSync, Single};
use crate::generate::{beam_search, BeamOptions};
use crate::model::checkpoint::{write_model, Checkpoint};
use crate::model::{OneRecModel, Vocab};
use crate::nn::params::sorted_vars;
use crate::util::rng::Rng;
use anyhow::{ensure, Context, Result};
use candle_core::{Tensor, Var};
use rand::seq::SliceRandom;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A seeded sample of `n` users with a non-empty history (all of them if fewer).
pub fn eval_users(ds: &Dataset, n: usize, seed: u64) -> Vec<usize> {
    let mut users: Vec<usize> = (0..ds.n_users()).filter(|&u| !ds.history(u).is_empty()).collect();
    users.shuffle(&mut crate::util::rng::stream(seed, "align.eval_users"));
    users.truncate(n);
    users.sort_unstable();
    users
}

/// An evaluation hook: for each of `users`, generate one session (`n = 1`, i.e. the top
/// beam) from the full logged history and report `true_reward` (mean of `truth(user,
/// session)`) and, with a scorer, `model_reward` (its mean score; a widening gap
/// between the two flags reward hacking).
pub fn truth_hook<'a, P, G, T>(
    ds: &'a Dataset,
    users: Vec<usize>,
    generator: G,
    session_len: usize,
    seed: u64,
    truth: T,
    scorer: Option<&'a dyn SessionScorer>,
) -> impl FnMut(&P) -> Result<BTreeMap<String, f64>> + 'a
where
    G: SessionGenerator<P> + 'a,
    T: Fn(usize, &[u32]) -> Result<f64> + 'a,
    P: 'a,
{
    truth_hook_on(ds, users, generator, session_len, seed, truth, scorer, &Single)
}

/// [`truth_hook`] over the ranks of `sync`: each rank generates and scores for its
/// contiguous part of `users` and the sums are added over ranks, so every rank gets the
/// same metrics (call it on every rank).
#[allow(clippy::too_many_arguments)]
pub fn truth_hook_on<'a, P, G, T>(
    ds: &'a Dataset,
    users: Vec<usize>,
    mut generator: G,
    session_len: usize,
    seed: u64,
    truth: T,
    scorer: Option<&'a dyn SessionScorer>,
    sync: &'a dyn GradSync,
) -> impl FnMut(&P) -> Result<BTreeMap<String, f64>> + 'a
where
    G: SessionGenerator<P> + 'a,
    T: Fn(usize, &[u32]) -> Result<f64> + 'a,
    P: 'a,
{
    move |policy: &P| {
        let (rank, world) = (sync.rank(), sync.world_size());
        let mine = &users[crate::dist::shard_range(users.len(), rank, world)];
        let hs: Vec<&[u32]> = mine.iter().map(|&u| ds.history(u)).collect();
        let key = match world {
            1 => "align.eval".to_string(),
            _ => format!("align.eval/rank{rank}"),
        };
        let mut rng: Rng = crate::util::rng::stream(seed, &key);
        let sessions = match hs.is_empty() {
            true => Vec::new(),
            false => generator.generate(policy, &hs, 1, session_len, &mut rng)?,
        };
        ensure!(sessions.len() == hs.len(), "generator returned {} lists for {} users", sessions.len(), hs.len());
        let (mut tot, mut rows) = (0.0, Vec::new());
        for (&u, ss) in mine.iter().zip(&sessions) {
            let s = ss.first().context("generator returned no session")?;
            tot += truth(u, s)?;
            rows.push(s.as_slice());
        }
        let mut model_tot = 0.0;
        if let (Some(sc), false) = (scorer, hs.is_empty()) {
            model_tot = sc.score(&hs, &rows)?.iter().map(|&v| v as f64).sum::<f64>();
        }
        if world > 1 {
            let mut sums = [tot, model_tot];
            sync.all_reduce_f64(&mut sums)?;
            [tot, model_tot] = sums;
        }
        let n = users.len().max(1) as f64;
        let mut m = BTreeMap::from([("true_reward".to_string(), tot / n)]);
        if scorer.is_some() {
            m.insert("model_reward".into(), model_tot / n);
        }
        Ok(m)
    }
}

/// Ground truth of the synthetic world for dense ids of `ds`.
pub fn world_truth<'a>(world: &'a crate::world::World, ds: &'a Dataset) -> impl Fn(usize, &[u32]) -> Result<f64> + 'a {
    move |u, items| {
        let ids: Vec<&str> = items
            .iter()
            .map(|&i| ds.item_ids.get(i as usize).map(|s| s.as_str()).context("generated item outside the dataset"))
            .collect::<Result<_>>()?;
        world.expected_session_reward(&ds.user_ids[u], &ids)
    }
}

/// What the alignment stage takes from the run config: its section, the run seed, and
/// the resolved config to record as `config.toml` (serialised by the caller).
#[derive(Clone, Debug)]
pub struct AlignSpec<'a> {
    pub align: &'a AlignConfig,
    pub seed: u64,
    /// The resolved run config (TOML), written verbatim.
    pub config_toml: String,
}

/// Aligns `policy` on `ds`'s training histories against `reward`, writing `out`
/// (checkpoints, `state.json`, `config.toml`; resumable).
pub fn align_dataset<P: Policy, G: SessionGenerator<P>>(
    spec: &AlignSpec,
    ds: &Dataset,
    policy: &mut P,
    generator: &mut G,
    reward: &RewardModel,
    out: &Path,
    eval: Option<EvalHook<'_, P>>,
) -> Result<AlignOutcome> {
    align_dataset_on(spec, ds, policy, generator, reward, out, eval, &Single)
}

/// [`align_dataset`] data-parallel over the ranks of `sync` ([`align_on`]); rank 0 writes `out`.
#[allow(clippy::too_many_arguments)]
pub fn align_dataset_on<P: Policy, G: SessionGenerator<P>>(
    spec: &AlignSpec,
    ds: &Dataset,
    policy: &mut P,
    generator: &mut G,
    reward: &RewardModel,
    out: &Path,
    eval: Option<EvalHook<'_, P>>,
    sync: &dyn GradSync,
) -> Result<AlignOutcome> {
    ensure!(
        reward.meta.n_items == ds.n_items(),
        "reward model knows {} items, dataset has {}",
        reward.meta.n_items,
        ds.n_items()
    );
    let cfg = spec.align;
    if cfg.session_len != reward.meta.config.session_len {
        tracing::warn!(
            align = cfg.session_len,
            reward = reward.meta.config.session_len,
            "align.session_len differs from the reward model's session_len; its sum-pooled scores are calibrated for the latter"
        );
    }
    let (_users, hs) = super::iterate::train_histories(ds);
    if sync.is_leader() {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        crate::util::io::atomic_write(&out.join("config.toml"), spec.config_toml.as_bytes())?;
    }
    tracing::info!(users = hs.len(), out = %out.display(), config = ?cfg, "alignment");
    align_on(policy, generator, reward, &hs, cfg, spec.seed, Some(out), eval, sync)
}

/// The OneRec model as an alignment [`Policy`]: a loaded checkpoint whose variables
/// are trained in place; saves are full checkpoints (loadable by `eval`/`generate`).
pub struct OneRecPolicy {
    pub ckpt: Checkpoint,
}

impl OneRecPolicy {
    pub fn new(ckpt: Checkpoint) -> OneRecPolicy {
        OneRecPolicy { ckpt }
    }
}

impl Policy for OneRecPolicy {
    fn sequence_logprob(&self, histories: &[&[u32]], sessions: &[&[u32]]) -> Result<Tensor> {
        self.ckpt.model.sequence_logprob(histories, sessions)
    }
    fn vars(&self) -> Vec<(String, Var)> {
        sorted_vars(&self.ckpt.varmap)
    }
    fn deep_copy(&self) -> Result<Self> {
        let m = &self.ckpt.meta;
        let (model, varmap) = OneRecModel::build(
            &m.model,
            Vocab::new(m.vocab.codebook_sizes.clone()),
            self.ckpt.semantic_ids.codes.clone(),
            m.seed,
        )?;
        let src: BTreeMap<String, Var> = sorted_vars(&self.ckpt.varmap).into_iter().collect();
        for (name, var) in sorted_vars(&varmap) {
            let t = src.get(&name).with_context(|| format!("deep_copy: missing variable {name}"))?;
            var.set(&t.as_tensor().copy()?)?;
        }
        for (name, t) in self.ckpt.model.buffers()? {
            model.set_buffer(&name, &t.copy()?)?;
        }
        Ok(OneRecPolicy {
            ckpt: Checkpoint {
                model,
                varmap,
                semantic_ids: self.ckpt.semantic_ids.clone(),
                dir: self.ckpt.dir.clone(),
                meta: self.ckpt.meta.clone(),
            },
        })
    }
    fn save(&self, dir: &Path) -> Result<PathBuf> {
        write_model(dir, &self.ckpt.model, &self.ckpt.varmap, &self.ckpt.semantic_ids, &self.ckpt.meta)?;
        Ok(dir.join("model.safetensors"))
    }
    fn load_weights(&mut self, dir: &Path) -> Result<()> {
        let other = crate::model::checkpoint::load(dir)?;
        let src: BTreeMap<String, Var> = sorted_vars(&other.varmap).into_iter().collect();
        for (name, var) in sorted_vars(&self.ckpt.varmap) {
            let t = src.get(&name).with_context(|| format!("{}: missing variable {name}", dir.display()))?;
            var.set(t.as_tensor())?;
        }
        for (name, t) in other.model.buffers()? {
            self.ckpt.model.set_buffer(&name, &t)?;
        }
        Ok(())
    }
}

/// A candidate generator backed by constrained beam search: `n` sessions per history
/// are the top `n` beams (beam width `max(n, beam_floor)`), users in chunks of 64.
pub fn beam_generator(
    exclude_history: bool,
) -> impl FnMut(&OneRecPolicy, &[&[u32]], usize, usize, &mut Rng) -> Result<Sessions> {
    move |p: &OneRecPolicy, hs: &[&[u32]], n: usize, len: usize, _rng: &mut Rng| {
        let ids = &p.ckpt.semantic_ids;
        let vocab = Vocab::new(ids.codebook_sizes.clone());
        let opts = BeamOptions { beam: n.max(4), session_len: len, top: n, exclude_history };
        let mut out = Vec::with_capacity(hs.len());
        for chunk in hs.chunks(64) {
            for hyps in beam_search(&p.ckpt.model, ids, &vocab, chunk, &opts)? {
                out.push(hyps.into_iter().map(|h| h.items).collect());
            }
        }
        Ok(out)
    }
}

/// `onerec align`: aligns the checkpoint against the reward model, writing `out`
/// (`iter-NNN/` checkpoints, `state.json`, and `best/` = the last iteration, so `out`
/// works as `--checkpoint` for `eval`/`generate`). With a world, logs the ground-truth
/// reward of held-out generations per iteration.
pub fn run(
    spec: &AlignSpec,
    checkpoint: &Path,
    reward: &Path,
    data: &Path,
    out: &Path,
    world: Option<&Path>,
) -> Result<AlignOutcome> {
    run_on(spec, checkpoint, reward, data, out, world, &Single)
}

/// [`run`] data-parallel over the ranks of `sync` (every rank calls it with the same
/// arguments): `onerec align` under `mpirun`. Rank 0 alone measures the world's reward and
/// writes `out`.
pub fn run_on(
    spec: &AlignSpec,
    checkpoint: &Path,
    reward: &Path,
    data: &Path,
    out: &Path,
    world: Option<&Path>,
    sync: &dyn GradSync,
) -> Result<AlignOutcome> {
    let (cfg, seed) = (spec.align, spec.seed);
    cfg.validate().context("[align]")?;
    let rm = RewardModel::load(reward)?;
    let ds = Dataset::load(data)?;
    let mut ckpt = crate::model::checkpoint::load(checkpoint)?;
    // The checkpoint records the sha256 of the tokenizer's own codes.tsv (its copy is
    // re-indexed to dataset order, so hashing that copy would not match).
    rm.check_compatible(&ckpt.meta.tokenizer_sha256, &ds.manifest.features, ds.n_items())?;
    ensure!(
        ckpt.semantic_ids.item_ids == ds.item_ids,
        "checkpoint {} was trained on another dataset (its items differ from {}); align on the pretraining dataset",
        ckpt.dir.display(),
        data.display()
    );
    tracing::info!(checkpoint = %ckpt.dir.display(), reward = %reward.display(), data = %data.display(), "alignment inputs verified");
    // Aligned checkpoints record the dataset they were aligned on (same items as the
    // pretraining one, checked above).
    ckpt.meta.data_dir = ds.dir.clone().or(ckpt.meta.data_dir);
    let mut policy = OneRecPolicy::new(ckpt);
    let mut generator = beam_generator(cfg.exclude_history);
    let world = world.map(crate::world::World::load).transpose()?;
    let outcome = match &world {
        Some(w) => {
            let users = eval_users(&ds, cfg.eval_users, seed);
            let truth = world_truth(w, &ds);
            let eval_generator = beam_generator(cfg.exclude_history);
            let mut hook = truth_hook_on(&ds, users, eval_generator, cfg.session_len, seed, truth, Some(&rm), sync);
            align_dataset_on(spec, &ds, &mut policy, &mut generator, &rm, out, Some(&mut hook), sync)?
        }
        None => align_dataset_on(spec, &ds, &mut policy, &mut generator, &rm, out, None, sync)?,
    };
    if sync.is_leader() {
        crate::util::io::atomic_dir(&out.join("best"), |tmp| policy.save(tmp).map(|_| ()))?;
        tracing::info!(out = %out.join("best").display(), "aligned checkpoint written");
    }
    sync.barrier()?; // best/ is written before any rank returns
    Ok(outcome)
}
