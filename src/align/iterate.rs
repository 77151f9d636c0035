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

use super::dpo::{dpo_loss, ecpo_loss, group_advantages};
use super::{AlignConfig, Objective};
use crate::nn::optim::AdamW;
use crate::util::rng::Rng;
use anyhow::{bail, ensure, Context, Result};
use candle_core::{Tensor, Var};
use rand::seq::SliceRandom;
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
    /// Means over the iteration's steps.
    pub loss: f64,
    pub ntp_loss: f64,
    /// DPO loss (or ECPO objective) and, for DPO, preference accuracy / implicit margin.
    pub pref_loss: f64,
    pub pref_loss_first: f64,
    pub pref_loss_last: f64,
    pub accuracy: f64,
    pub margin: f64,
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
    mut eval: Option<EvalHook<'_, P>>,
) -> Result<AlignOutcome> {
    cfg.validate().context("[align]")?;
    ensure!(!histories.is_empty(), "align: no users with a training history");
    let state_path = out.map(|o| o.join("state.json"));
    let mut resumed_after = 0;
    let mut state = match state_path.as_ref().filter(|p| p.exists()) {
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
            let initial_sha256 = match out {
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
    if let (Some(sp), 0) = (&state_path, resumed_after) {
        crate::util::io::write_json(sp, &state)?;
    }
    let mut reference = policy.deep_copy()?;
    for it in resumed_after + 1..=cfg.iterations {
        let t0 = std::time::Instant::now();
        let ref_sha = match state.iterations.last() {
            Some(l) => l.policy_sha256.clone(),
            None => state.initial_sha256.clone(),
        };
        let mut log = iteration(policy, &reference, generator, scorer, histories, cfg, seed, it)?;
        reference = policy.deep_copy()?;
        log.reference_sha256 = ref_sha;
        if let Some(o) = out {
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
            pref_loss = log.pref_loss,
            accuracy = log.accuracy,
            margin = log.margin,
            eval = ?log.eval,
            "alignment iteration"
        );
        state.iterations.push(log);
        if let Some(sp) = &state_path {
            crate::util::io::write_json(sp, &state)?;
        }
    }
    Ok(AlignOutcome { state, resumed_after })
}

/// Sequence log-probs of `rows` under `model`, detached, computed in batches.
fn logprobs_detached<P: Policy>(model: &P, rows: &[(&[u32], &[u32])], batch: usize) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(rows.len());
    for c in rows.chunks(batch.max(1)) {
        let h: Vec<&[u32]> = c.iter().map(|r| r.0).collect();
        let s: Vec<&[u32]> = c.iter().map(|r| r.1).collect();
        out.extend(model.sequence_logprob(&h, &s)?.detach().to_vec1::<f32>()?);
    }
    Ok(out)
}

/// Backward, optional global-norm clipping, optimizer step.
fn step(opt: &mut AdamW, loss: &Tensor, lr: f64, clip: f64) -> Result<()> {
    let norm = opt.backward_step(loss, lr, clip)?;
    ensure!(norm.is_finite(), "alignment gradient is not finite; lower align.lr or align.beta");
    Ok(())
}

/// One alignment iteration (generation, scoring, pairing, training) without I/O.
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
    let n_users = histories.len();
    let k = ((n_users as f64 * cfg.user_fraction).ceil() as usize).clamp(1, n_users);
    let mut users: Vec<usize> = (0..n_users).collect();
    users.shuffle(&mut crate::util::rng::stream(seed, &format!("align.users.{it}")));
    users.truncate(k);
    users.sort_unstable();
    let hs: Vec<&[u32]> = users.iter().map(|&u| histories[u].as_slice()).collect();
    let mut grng = crate::util::rng::stream(seed, &format!("align.generate.{it}"));
    let cands = generator.generate(policy, &hs, cfg.candidates, cfg.session_len, &mut grng)?;
    ensure!(cands.len() == hs.len(), "generator returned {} candidate lists for {} users", cands.len(), hs.len());

    // Score every candidate.
    let (mut rh, mut rs) = (Vec::new(), Vec::new());
    for (h, cs) in hs.iter().zip(&cands) {
        for s in cs {
            ensure!(!s.is_empty(), "generator returned an empty session");
            rh.push(*h);
            rs.push(s.as_slice());
        }
    }
    ensure!(!rs.is_empty(), "iteration {it}: the generator produced no candidate sessions");
    let scores = scorer.score(&rh, &rs)?;
    ensure!(scores.len() == rs.len(), "scorer returned {} scores for {} sessions", scores.len(), rs.len());
    ensure!(scores.iter().all(|s| s.is_finite()), "scorer returned a non-finite reward");
    let mut log = IterationLog {
        iteration: it,
        users: hs.len(),
        pairs: 0,
        ties: 0,
        mean_reward: scores.iter().map(|&s| s as f64).sum::<f64>() / scores.len().max(1) as f64,
        mean_best_reward: 0.0,
        max_reward: scores.iter().fold(f64::NEG_INFINITY, |a, &s| a.max(s as f64)),
        loss: 0.0,
        ntp_loss: 0.0,
        pref_loss: 0.0,
        pref_loss_first: 0.0,
        pref_loss_last: 0.0,
        accuracy: 0.0,
        margin: 0.0,
        reference_sha256: None,
        policy_sha256: None,
        eval: BTreeMap::new(),
        seconds: 0.0,
    };

    // Per user: (history, candidates, scores).
    let mut pairs: Vec<(&[u32], &[u32], &[u32])> = Vec::new();
    #[allow(clippy::type_complexity)]
    let mut groups: Vec<(&[u32], Vec<&[u32]>, Vec<f32>)> = Vec::new();
    let mut off = 0;
    let mut best_sum = 0f64;
    for (h, cs) in hs.iter().zip(&cands) {
        let sc = &scores[off..off + cs.len()];
        off += cs.len();
        if cs.is_empty() {
            continue;
        }
        let (mut bi, mut wi) = (0, 0);
        for i in 1..sc.len() {
            if sc[i] > sc[bi] {
                bi = i;
            }
            if sc[i] < sc[wi] {
                wi = i;
            }
        }
        best_sum += sc[bi] as f64;
        if cs.len() < 2 || ((sc[bi] - sc[wi]) as f64) <= cfg.min_gap || cs[bi] == cs[wi] {
            log.ties += 1;
            continue;
        }
        pairs.push((h, &cs[bi], &cs[wi]));
        if cs.len() == cfg.candidates {
            groups.push((h, cs.iter().map(|s| s.as_slice()).collect(), sc.to_vec()));
        }
    }
    log.mean_best_reward = best_sum / hs.len() as f64;
    log.pairs = pairs.len();
    if pairs.is_empty() {
        tracing::warn!(iteration = it, "every user's candidates tied: nothing to train on this iteration");
        return Ok(log);
    }

    let mut opt = AdamW::with_default_betas(policy.vars(), cfg.weight_decay)?;
    let mut brng = crate::util::rng::stream(seed, &format!("align.batches.{it}"));
    let n_units = match cfg.objective {
        Objective::Dpo => pairs.len(),
        Objective::Grpo => groups.len(),
    };
    ensure!(n_units > 0, "no complete candidate groups of {} sessions for GRPO", cfg.candidates);
    // Reference log-probs, once per pair / group member, no gradient.
    let (ref_c, ref_r, ref_g) = match cfg.objective {
        Objective::Dpo => {
            let c: Vec<_> = pairs.iter().map(|p| (p.0, p.1)).collect();
            let r: Vec<_> = pairs.iter().map(|p| (p.0, p.2)).collect();
            (
                logprobs_detached(reference, &c, cfg.batch_size)?,
                logprobs_detached(reference, &r, cfg.batch_size)?,
                vec![],
            )
        }
        Objective::Grpo => {
            let rows: Vec<_> = groups.iter().flat_map(|g| g.1.iter().map(move |s| (g.0, *s))).collect();
            (vec![], vec![], logprobs_detached(reference, &rows, cfg.batch_size)?)
        }
    };
    let mut order: Vec<usize> = (0..n_units).collect();
    let mut pos = n_units;
    let (mut sums, mut first, mut last) = ([0f64; 5], 0f64, 0f64);
    for s in 0..cfg.steps {
        let mut idx = Vec::with_capacity(cfg.batch_size);
        while idx.len() < cfg.batch_size.min(n_units) {
            if pos == n_units {
                order.shuffle(&mut brng);
                pos = 0;
            }
            idx.push(order[pos]);
            pos += 1;
        }
        let dev = candle_core::Device::Cpu;
        #[allow(clippy::type_complexity)]
        let (ntp_rows, pref, acc, margin): (Vec<(&[u32], &[u32])>, Tensor, f64, f64) = match cfg.objective {
            Objective::Dpo => {
                let h: Vec<&[u32]> = idx.iter().map(|&i| pairs[i].0).collect();
                let c: Vec<&[u32]> = idx.iter().map(|&i| pairs[i].1).collect();
                let r: Vec<&[u32]> = idx.iter().map(|&i| pairs[i].2).collect();
                let hh: Vec<&[u32]> = h.iter().chain(h.iter()).copied().collect();
                let cr: Vec<&[u32]> = c.iter().chain(r.iter()).copied().collect();
                let lp = policy.sequence_logprob(&hh, &cr)?;
                let b = idx.len();
                let (pc, pr) = (lp.narrow(0, 0, b)?, lp.narrow(0, b, b)?);
                let rc: Vec<f32> = idx.iter().map(|&i| ref_c[i]).collect();
                let rr: Vec<f32> = idx.iter().map(|&i| ref_r[i]).collect();
                let out = dpo_loss(&pc, &pr, &Tensor::new(rc, &dev)?, &Tensor::new(rr, &dev)?, cfg.beta)?;
                let rows = h.iter().zip(&c).map(|(a, b)| (*a, *b)).collect();
                (rows, out.loss, out.accuracy as f64, out.margin as f64)
            }
            Objective::Grpo => {
                let g = cfg.candidates;
                let (mut h, mut ss, mut rw, mut old, mut rows) = (vec![], vec![], vec![], vec![], vec![]);
                for &i in &idx {
                    let (gh, gs, gr) = &groups[i];
                    h.extend(std::iter::repeat_n(*gh, g));
                    ss.extend(gs.iter().copied());
                    rw.extend(gr.iter().copied());
                    old.extend_from_slice(&ref_g[i * g..(i + 1) * g]);
                    let best = gr.iter().enumerate().fold(0, |b, (j, &v)| if v > gr[b] { j } else { b });
                    rows.push((*gh, gs[best]));
                }
                let adv = group_advantages(&rw, g)?;
                let lp = policy.sequence_logprob(&h, &ss)?;
                let l = ecpo_loss(&lp, &Tensor::new(old, &dev)?, &adv, cfg.clip_eps, cfg.ecpo_delta)?;
                (rows, l, 0.0, 0.0)
            }
        };
        let nh: Vec<&[u32]> = ntp_rows.iter().map(|r| r.0).collect();
        let ns: Vec<&[u32]> = ntp_rows.iter().map(|r| r.1).collect();
        let lens: Vec<f32> = ns.iter().map(|s| s.len() as f32).collect();
        let ntp = policy.sequence_logprob(&nh, &ns)?.div(&Tensor::new(lens, &dev)?)?.mean_all()?.neg()?;
        let loss = (&ntp + pref.affine(cfg.lambda, 0.0)?)?;
        let vals = [loss.to_scalar::<f32>()?, ntp.to_scalar::<f32>()?, pref.to_scalar::<f32>()?];
        ensure!(vals.iter().all(|v| v.is_finite()), "alignment loss is not finite at step {s}; lower align.lr");
        for (acc_, v) in sums.iter_mut().zip([vals[0] as f64, vals[1] as f64, vals[2] as f64, acc, margin]) {
            *acc_ += v;
        }
        if s == 0 {
            first = vals[2] as f64;
        }
        last = vals[2] as f64;
        tracing::debug!(step = s, loss = vals[0], ntp = vals[1], pref = vals[2], acc, margin, "align step");
        step(&mut opt, &loss, cfg.lr, cfg.grad_clip)?;
    }
    let n = cfg.steps as f64;
    log.loss = sums[0] / n;
    log.ntp_loss = sums[1] / n;
    log.pref_loss = sums[2] / n;
    log.accuracy = sums[3] / n;
    log.margin = sums[4] / n;
    log.pref_loss_first = first;
    log.pref_loss_last = last;
    Ok(log)
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
