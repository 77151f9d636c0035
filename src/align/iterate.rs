//! Iterative preference alignment.
//!
//! Per iteration: sample a fraction `r` of users (seeded by iteration), generate `N`
//! candidate sessions each with the current policy, score them with the reward model,
//! pair best (chosen) against worst (rejected) skipping ties, and train
//! `L = L_NTP(chosen) + lambda * L_DPO` (or ECPO over the whole group) against the frozen
//! reference; then the policy becomes the next reference. The reference's log-probs are
//! computed once per pair, before training, and never receive gradients.
//!
//! With an output dir: `iter-000/` holds the starting weights (the first reference),
//! `iter-NNN/` the policy after iteration NNN, and `state.json` the logs ([`AlignState`]),
//! each written atomically; a rerun with the same dir resumes after the last completed
//! iteration (per-iteration random streams make the result identical to an
//! uninterrupted run).
//!
//! Data-parallel under `mpirun` ([`align_on`]): each rank generates and scores the
//! candidates of its contiguous part of the iteration's users, and the candidates and
//! scores are gathered to every rank, so every rank mines the same preferences; the
//! reference log-probs are computed sharded and gathered the same way, and each training
//! step's minibatch is sharded with share-weighted losses and summed gradients
//! ([`super::train_policy`]). The eval hook runs on every rank (the world's hook shards
//! its users); rank 0 alone writes `out`.

use super::preferences::{mine_preferences, sample_users, score_candidates};
use super::train_policy::{train_on_preferences, TrainStats};
use super::AlignConfig;
use crate::dist::{self, GradSync, Single};
use crate::util::rng::Rng;
use anyhow::{bail, ensure, Context, Result};
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A trainable sequence model as alignment sees it.
pub trait Policy: Sized {
    /// Sum of log-probabilities of each session's tokens given each history: a
    /// differentiable `[B]` tensor (dense dataset item ids in both).
    fn sequence_logprob(&self, histories: &[&[u32]], sessions: &[&[u32]]) -> Result<Tensor>;
    /// The trainable variables, sorted by name.
    fn vars(&self) -> Vec<(String, Var)>;
    /// An independent copy of the weights (shares no storage): the frozen reference.
    fn deep_copy(&self) -> Result<Self>;
    /// Writes a checkpoint into the existing directory `dir`; returns the weights file
    /// whose sha256 identifies the model.
    fn save(&self, dir: &Path) -> Result<PathBuf>;
    /// Loads the weights of a checkpoint written by [`Policy::save`].
    fn load_weights(&mut self, dir: &Path) -> Result<()>;
}

/// Candidate sessions: per history, `n` sessions of item ids.
pub type Sessions = Vec<Vec<Vec<u32>>>;

/// Produces `n` candidate sessions of `session_len` items per history with a policy
/// (beam search or sampling); `rng` is seeded per iteration.
pub trait SessionGenerator<P> {
    fn generate(
        &mut self,
        policy: &P,
        histories: &[&[u32]],
        n: usize,
        session_len: usize,
        rng: &mut Rng,
    ) -> Result<Sessions>;
}

impl<P, F> SessionGenerator<P> for F
where
    F: FnMut(&P, &[&[u32]], usize, usize, &mut Rng) -> Result<Sessions>,
{
    fn generate(
        &mut self,
        policy: &P,
        histories: &[&[u32]],
        n: usize,
        session_len: usize,
        rng: &mut Rng,
    ) -> Result<Sessions> {
        self(policy, histories, n, session_len, rng)
    }
}

/// Scores (history, session) rows: the reward model, or any closure in tests.
pub trait SessionScorer {
    fn score(&self, histories: &[&[u32]], sessions: &[&[u32]]) -> Result<Vec<f32>>;
}

impl<F> SessionScorer for F
where
    F: Fn(&[&[u32]], &[&[u32]]) -> Result<Vec<f32>>,
{
    fn score(&self, histories: &[&[u32]], sessions: &[&[u32]]) -> Result<Vec<f32>> {
        self(histories, sessions)
    }
}

/// Named metrics of a policy (validation Recall/NDCG, ground-truth reward, ...).
pub type EvalHook<'a, P> = &'a mut dyn FnMut(&P) -> Result<BTreeMap<String, f64>>;

/// What one iteration did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IterationLog {
    pub iteration: usize,
    pub users: usize,
    pub pairs: usize,
    /// Users whose candidates all scored within `min_gap` (no pair).
    pub ties: usize,
    /// Reward-model scores of the generated candidates (policy at iteration start).
    pub mean_reward: f64,
    /// Mean over users of the best candidate's score.
    pub mean_best_reward: f64,
    pub max_reward: f64,
    /// Means over the iteration's steps (flattened: `state.json` keeps its flat keys).
    #[serde(flatten)]
    pub train: TrainStats,
    /// sha256 of the reference's weights file (the previous iteration's checkpoint).
    pub reference_sha256: Option<String>,
    /// sha256 of this iteration's checkpoint weights.
    pub policy_sha256: Option<String>,
    /// Hook metrics after this iteration.
    pub eval: BTreeMap<String, f64>,
    pub seconds: f64,
}

/// `state.json` of an alignment output directory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AlignState {
    pub config: AlignConfig,
    pub seed: u64,
    /// sha256 of the starting weights (`iter-000`).
    pub initial_sha256: Option<String>,
    /// Hook metrics of the starting policy.
    pub initial_eval: BTreeMap<String, f64>,
    pub iterations: Vec<IterationLog>,
}

/// The result of [`align`]: the logs, and where the run resumed (0 = fresh).
#[derive(Clone, Debug)]
pub struct AlignOutcome {
    pub state: AlignState,
    pub resumed_after: usize,
}

/// Directory of iteration `it`'s checkpoint under `out`.
pub fn iter_dir(out: &Path, it: usize) -> PathBuf {
    out.join(format!("iter-{it:03}"))
}

fn save_checkpoint<P: Policy>(policy: &P, dir: &Path) -> Result<String> {
    let mut sha = String::new();
    crate::util::io::atomic_dir(dir, |tmp| {
        let w = policy.save(tmp)?;
        sha = crate::util::io::sha256_file(&w)?;
        Ok(())
    })?;
    Ok(sha)
}

/// Runs `cfg.iterations` alignment iterations over `histories` (one per training user).
#[allow(clippy::too_many_arguments)]
pub fn align<P: Policy, G: SessionGenerator<P>, S: SessionScorer + ?Sized>(
    policy: &mut P,
    generator: &mut G,
    scorer: &S,
    histories: &[Vec<u32>],
    cfg: &AlignConfig,
    seed: u64,
    out: Option<&Path>,
    eval: Option<EvalHook<'_, P>>,
) -> Result<AlignOutcome> {
    align_on(policy, generator, scorer, histories, cfg, seed, out, eval, &Single)
}

/// [`align`] data-parallel over the ranks of `sync` (every rank calls it with the same
/// arguments; see the module doc). Rank 0 alone writes `out`; its outcome is the run's
/// (the others' leave the checkpoint hashes empty). `eval` runs on every rank: a hook
/// that shards its work over the ranks ([`super::onerec::truth_hook_on`]) must.
#[allow(clippy::too_many_arguments)]
pub fn align_on<P: Policy, G: SessionGenerator<P>, S: SessionScorer + ?Sized>(
    policy: &mut P,
    generator: &mut G,
    scorer: &S,
    histories: &[Vec<u32>],
    cfg: &AlignConfig,
    seed: u64,
    out: Option<&Path>,
    mut eval: Option<EvalHook<'_, P>>,
    sync: &dyn GradSync,
) -> Result<AlignOutcome> {
    cfg.validate().context("[align]")?;
    ensure!(!histories.is_empty(), "align: no users with a training history");
    let (leader, world) = (sync.is_leader(), sync.world_size());
    let out_here = out.filter(|_| leader); // where this rank writes
    let state_path = out.map(|o| o.join("state.json"));
    let resuming = state_path.as_ref().is_some_and(|p| p.exists());
    sync.barrier()?; // every rank looked before rank 0 writes a fresh state.json
    let mut resumed_after = 0;
    let mut state = match state_path.as_ref().filter(|_| resuming) {
        Some(sp) => {
            let st: AlignState = crate::util::io::read_json(sp)?;
            let mut a = st.config.clone();
            a.iterations = cfg.iterations;
            if a != *cfg || st.seed != seed {
                bail!(
                    "{} records a run with another [align] config or seed; resume needs the same settings (only `iterations` may grow) - use a fresh --out",
                    sp.display()
                );
            }
            resumed_after = st.iterations.len();
            let dir = iter_dir(out.unwrap_or(Path::new(".")), resumed_after);
            policy.load_weights(&dir).with_context(|| format!("resuming from {}", dir.display()))?;
            tracing::info!(after = resumed_after, dir = %dir.display(), "resuming alignment");
            AlignState { config: cfg.clone(), ..st }
        }
        None => {
            let initial_sha256 = match out_here {
                Some(o) => Some(save_checkpoint(policy, &iter_dir(o, 0))?),
                None => None,
            };
            let initial_eval = match eval.as_mut() {
                Some(h) => h(policy)?,
                None => BTreeMap::new(),
            };
            tracing::info!(?initial_eval, "starting policy");
            AlignState { config: cfg.clone(), seed, initial_sha256, initial_eval, iterations: vec![] }
        }
    };
    if let (Some(sp), 0, true) = (&state_path, resumed_after, leader) {
        crate::util::io::write_json(sp, &state)?;
    }
    if world > 1 {
        tracing::info!(
            backend = sync.backend(),
            "data-parallel on {world} ranks: each generates for its part of every iteration's users and trains on its part of every minibatch of {}; rank 0 writes",
            cfg.batch_size
        );
    }
    let mut reference = policy.deep_copy()?;
    for it in resumed_after + 1..=cfg.iterations {
        let t0 = std::time::Instant::now();
        let ref_sha = match state.iterations.last() {
            Some(l) => l.policy_sha256.clone(),
            None => state.initial_sha256.clone(),
        };
        let mut log = iteration_on(policy, &reference, generator, scorer, histories, cfg, seed, it, sync)?;
        reference = policy.deep_copy()?;
        log.reference_sha256 = ref_sha;
        if world > 1 {
            let checksum = dist::check_in_sync(sync, &policy.vars(), &format!("iteration {it}"))?;
            tracing::info!(iteration = it, "ranks in sync: parameter checksum {checksum:012x} on all {world} ranks");
        }
        if let Some(o) = out_here {
            log.policy_sha256 = Some(save_checkpoint(policy, &iter_dir(o, it))?);
        }
        if let Some(h) = eval.as_mut() {
            log.eval = h(policy)?;
        }
        log.seconds = t0.elapsed().as_secs_f64();
        tracing::info!(
            iteration = it,
            pairs = log.pairs,
            mean_reward = log.mean_reward,
            mean_best = log.mean_best_reward,
            max_reward = log.max_reward,
            pref_loss = log.train.pref_loss,
            accuracy = log.train.accuracy,
            margin = log.train.margin,
            eval = ?log.eval,
            "alignment iteration"
        );
        state.iterations.push(log);
        if let Some(sp) = state_path.as_ref().filter(|_| leader) {
            crate::util::io::write_json(sp, &state)?;
        }
    }
    sync.barrier()?; // rank 0's last checkpoint and state.json are written before any rank returns
    Ok(AlignOutcome { state, resumed_after })
}

/// One alignment iteration without I/O: sample users, generate candidates with the
/// policy, score them, mine preferences, train the policy on them.
#[allow(clippy::too_many_arguments)]
pub fn iteration<P: Policy, G: SessionGenerator<P>, S: SessionScorer + ?Sized>(
    policy: &mut P,
    reference: &P,
    generator: &mut G,
    scorer: &S,
    histories: &[Vec<u32>],
    cfg: &AlignConfig,
    seed: u64,
    it: usize,
) -> Result<IterationLog> {
    iteration_on(policy, reference, generator, scorer, histories, cfg, seed, it, &Single)
}

/// [`iteration`] over the ranks of `sync`: candidates generated and scored per rank for
/// its part of the users, then gathered, so every rank mines the same preferences.
#[allow(clippy::too_many_arguments)]
pub fn iteration_on<P: Policy, G: SessionGenerator<P>, S: SessionScorer + ?Sized>(
    policy: &mut P,
    reference: &P,
    generator: &mut G,
    scorer: &S,
    histories: &[Vec<u32>],
    cfg: &AlignConfig,
    seed: u64,
    it: usize,
    sync: &dyn GradSync,
) -> Result<IterationLog> {
    let (rank, world) = (sync.rank(), sync.world_size());
    let users = sample_users(histories.len(), cfg.user_fraction, seed, it);
    let hs: Vec<&[u32]> = users.iter().map(|&u| histories[u].as_slice()).collect();
    let mine = &hs[dist::shard_range(hs.len(), rank, world)];
    // A sampling generator draws from a per-rank stream when data-parallel.
    let key = match world {
        1 => format!("align.generate.{it}"),
        _ => format!("align.generate.{it}/rank{rank}"),
    };
    let mut rng = crate::util::rng::stream(seed, &key);
    let candidates = match mine.is_empty() {
        true => Vec::new(),
        false => generator.generate(policy, mine, cfg.candidates, cfg.session_len, &mut rng)?,
    };
    ensure!(
        candidates.len() == mine.len(),
        "generator returned {} candidate lists for {} users",
        candidates.len(),
        mine.len()
    );
    let scores = match mine.is_empty() {
        true => Vec::new(),
        false => score_candidates(scorer, mine, &candidates, it)?,
    };
    let (candidates, scores) = gather_candidates(sync, candidates, scores)?;
    ensure!(candidates.len() == hs.len(), "gathered {} candidate lists for {} users", candidates.len(), hs.len());
    let prefs = mine_preferences(&hs, &candidates, &scores, cfg);
    let mut log = IterationLog {
        iteration: it,
        users: hs.len(),
        pairs: prefs.pairs.len(),
        ties: prefs.ties,
        mean_reward: scores.iter().map(|&s| s as f64).sum::<f64>() / scores.len().max(1) as f64,
        mean_best_reward: prefs.mean_best_reward,
        max_reward: scores.iter().fold(f64::NEG_INFINITY, |a, &s| a.max(s as f64)),
        train: TrainStats::default(),
        reference_sha256: None,
        policy_sha256: None,
        eval: BTreeMap::new(),
        seconds: 0.0,
    };
    if prefs.pairs.is_empty() {
        tracing::warn!(iteration = it, "every user's candidates tied: nothing to train on this iteration");
        return Ok(log);
    }
    log.train = train_on_preferences(policy, reference, &prefs, cfg, seed, it, sync)?;
    Ok(log)
}

/// Every rank's candidates (per user, its sessions) and their flattened scores, in rank
/// (= user) order, on every rank.
fn gather_candidates(sync: &dyn GradSync, candidates: Sessions, scores: Vec<f32>) -> Result<(Sessions, Vec<f32>)> {
    if sync.world_size() == 1 {
        return Ok((candidates, scores));
    }
    let counts: Vec<u32> = candidates.iter().map(|cs| cs.len() as u32).collect();
    let sessions: Vec<Vec<u32>> = candidates.into_iter().flatten().collect();
    let counts = dist::all_gather_lists(sync, &[counts])?.concat();
    let mut sessions = dist::all_gather_lists(sync, &sessions)?.into_iter();
    let scores = dist::all_gather_f32(sync, &scores)?;
    let candidates: Sessions = counts.iter().map(|&n| sessions.by_ref().take(n as usize).collect()).collect();
    ensure!(
        candidates.iter().zip(&counts).all(|(cs, &n)| cs.len() == n as usize)
            && scores.len() == counts.iter().map(|&n| n as usize).sum::<usize>(),
        "gathered candidates and scores do not line up"
    );
    Ok((candidates, scores))
}

/// The training parts of a dataset's histories (the policy's input per user), for
/// users whose training part is non-empty, with their dense user ids.
pub fn train_histories(ds: &crate::data::Dataset) -> (Vec<usize>, Vec<Vec<u32>>) {
    let mut users = Vec::new();
    let mut hs = Vec::new();
    for u in 0..ds.n_users() {
        let tr = ds.split(u).train;
        if !tr.is_empty() {
            users.push(u);
            hs.push(ds.history(u)[tr].to_vec());
        }
    }
    (users, hs)
}
