//! Training the policy on one iteration's preferences against the frozen reference:
//! `align.steps` AdamW steps of `L_NTP(chosen) + lambda * L_pref`, where `L_pref` is DPO
//! over (chosen, rejected) pairs or ECPO over whole candidate groups (GRPO).
//!
//! Data-parallel (world size > 1): the reference log-probs are computed for each rank's
//! part of the units and gathered; each step's minibatch is split over the ranks, each
//! rank's losses (means over its units) weighted by its share of the minibatch, so the
//! gradients and logged statistics summed over ranks are the whole minibatch's.

use super::dpo::{dpo_loss, ecpo_loss, group_advantages};
use super::iterate::Policy;
use super::preferences::{Group, Pair, Preferences};
use super::{AlignConfig, Objective};
use crate::dist::{self, GradSync};
use crate::nn::optim::{clip_global_norm, AdamW};
use crate::util::rng::Rng;
use anyhow::{ensure, Result};
use candle_core::{Device, Tensor, Var};
use rand::seq::SliceRandom;
use std::collections::HashMap;

/// Means over an iteration's steps, and the preference loss of its first and last step.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainStats {
    pub loss: f64,
    pub ntp_loss: f64,
    /// DPO loss, or the ECPO objective.
    pub pref_loss: f64,
    pub pref_loss_first: f64,
    pub pref_loss_last: f64,
    /// DPO only: the fraction of pairs the implicit reward ranks right, and its margin.
    pub accuracy: f64,
    pub margin: f64,
}

/// The reference's sequence log-probs of every training unit, computed once, detached.
pub enum ReferenceLogprobs {
    /// Per pair: chosen and rejected session.
    Pairs { chosen: Vec<f32>, rejected: Vec<f32> },
    /// Per group, its `align.candidates` sessions in a row.
    Groups(Vec<f32>),
}

/// The reference's log-probs of what `objective` trains on.
pub fn reference_logprobs<P: Policy>(
    reference: &P,
    prefs: &Preferences,
    objective: Objective,
    batch: usize,
) -> Result<ReferenceLogprobs> {
    reference_logprobs_on(reference, prefs, objective, batch, &dist::Single)
}

/// [`reference_logprobs`] over the ranks of `sync`: each computes its contiguous part of
/// the rows; the parts are gathered to every rank.
pub fn reference_logprobs_on<P: Policy>(
    reference: &P,
    prefs: &Preferences,
    objective: Objective,
    batch: usize,
    sync: &dyn GradSync,
) -> Result<ReferenceLogprobs> {
    Ok(match objective {
        Objective::Dpo => {
            let c: Vec<_> = prefs.pairs.iter().map(|p| (p.history, p.chosen)).collect();
            let r: Vec<_> = prefs.pairs.iter().map(|p| (p.history, p.rejected)).collect();
            ReferenceLogprobs::Pairs {
                chosen: logprobs_detached(reference, &c, batch, sync)?,
                rejected: logprobs_detached(reference, &r, batch, sync)?,
            }
        }
        Objective::Grpo => {
            let rows: Vec<_> =
                prefs.groups.iter().flat_map(|g| g.sessions.iter().map(move |s| (g.history, *s))).collect();
            ReferenceLogprobs::Groups(logprobs_detached(reference, &rows, batch, sync)?)
        }
    })
}

/// Sequence log-probs of `rows` under `model`, detached, computed in batches (each rank
/// its part of the rows, gathered).
fn logprobs_detached<P: Policy>(
    model: &P,
    rows: &[(&[u32], &[u32])],
    batch: usize,
    sync: &dyn GradSync,
) -> Result<Vec<f32>> {
    let rows = &rows[dist::shard_range(rows.len(), sync.rank(), sync.world_size())];
    let mut out = Vec::with_capacity(rows.len());
    for c in rows.chunks(batch.max(1)) {
        let h: Vec<&[u32]> = c.iter().map(|r| r.0).collect();
        let s: Vec<&[u32]> = c.iter().map(|r| r.1).collect();
        out.extend(model.sequence_logprob(&h, &s)?.detach().to_vec1::<f32>()?);
    }
    dist::all_gather_f32(sync, &out)
}

/// A step's preference loss, and the (history, session) rows its NTP loss is taken on.
struct PreferenceLoss<'a> {
    loss: Tensor,
    ntp_rows: Vec<(&'a [u32], &'a [u32])>,
    accuracy: f64,
    margin: f64,
}

/// DPO on the pairs `idx`; NTP on their chosen sessions.
fn dpo_step_loss<'a, P: Policy>(
    policy: &P,
    pairs: &[Pair<'a>],
    ref_chosen: &[f32],
    ref_rejected: &[f32],
    idx: &[usize],
    beta: f64,
) -> Result<PreferenceLoss<'a>> {
    let dev = Device::Cpu;
    let h: Vec<&[u32]> = idx.iter().map(|&i| pairs[i].history).collect();
    let c: Vec<&[u32]> = idx.iter().map(|&i| pairs[i].chosen).collect();
    let r: Vec<&[u32]> = idx.iter().map(|&i| pairs[i].rejected).collect();
    let hh: Vec<&[u32]> = h.iter().chain(h.iter()).copied().collect();
    let cr: Vec<&[u32]> = c.iter().chain(r.iter()).copied().collect();
    let lp = policy.sequence_logprob(&hh, &cr)?;
    let b = idx.len();
    let (pc, pr) = (lp.narrow(0, 0, b)?, lp.narrow(0, b, b)?);
    let rc: Vec<f32> = idx.iter().map(|&i| ref_chosen[i]).collect();
    let rr: Vec<f32> = idx.iter().map(|&i| ref_rejected[i]).collect();
    let out = dpo_loss(&pc, &pr, &Tensor::new(rc, &dev)?, &Tensor::new(rr, &dev)?, beta)?;
    let ntp_rows = h.iter().zip(&c).map(|(a, b)| (*a, *b)).collect();
    Ok(PreferenceLoss { loss: out.loss, ntp_rows, accuracy: out.accuracy as f64, margin: out.margin as f64 })
}

/// ECPO on the groups `idx` (advantages normalised within each group); NTP on each
/// group's best session.
fn grpo_step_loss<'a, P: Policy>(
    policy: &P,
    groups: &[Group<'a>],
    ref_groups: &[f32],
    idx: &[usize],
    cfg: &AlignConfig,
) -> Result<PreferenceLoss<'a>> {
    let g = cfg.candidates;
    let (mut h, mut ss, mut rw, mut old, mut ntp_rows) = (vec![], vec![], vec![], vec![], vec![]);
    for &i in idx {
        let Group { history, sessions, rewards } = &groups[i];
        h.extend(std::iter::repeat_n(*history, g));
        ss.extend(sessions.iter().copied());
        rw.extend(rewards.iter().copied());
        old.extend_from_slice(&ref_groups[i * g..(i + 1) * g]);
        let best = rewards.iter().enumerate().fold(0, |b, (j, &v)| if v > rewards[b] { j } else { b });
        ntp_rows.push((*history, sessions[best]));
    }
    let adv = group_advantages(&rw, g)?;
    let lp = policy.sequence_logprob(&h, &ss)?;
    let loss = ecpo_loss(&lp, &Tensor::new(old, &Device::Cpu)?, &adv, cfg.clip_eps, cfg.ecpo_delta)?;
    Ok(PreferenceLoss { loss, ntp_rows, accuracy: 0.0, margin: 0.0 })
}

/// Mean per-token negative log-likelihood of the sessions in `rows`.
fn ntp_loss<P: Policy>(policy: &P, rows: &[(&[u32], &[u32])]) -> Result<Tensor> {
    let nh: Vec<&[u32]> = rows.iter().map(|r| r.0).collect();
    let ns: Vec<&[u32]> = rows.iter().map(|r| r.1).collect();
    let lens: Vec<f32> = ns.iter().map(|s| s.len() as f32).collect();
    Ok(policy.sequence_logprob(&nh, &ns)?.div(&Tensor::new(lens, &Device::Cpu)?)?.mean_all()?.neg()?)
}

/// Minibatches of training-unit indices: the units in a seeded order, reshuffled each
/// time they run out.
struct UnitBatches {
    order: Vec<usize>,
    pos: usize,
    rng: Rng,
}

impl UnitBatches {
    fn new(units: usize, rng: Rng) -> UnitBatches {
        UnitBatches { order: (0..units).collect(), pos: units, rng }
    }

    fn next(&mut self, size: usize) -> Vec<usize> {
        let n = self.order.len();
        let mut idx = Vec::with_capacity(size);
        while idx.len() < size.min(n) {
            if self.pos == n {
                self.order.shuffle(&mut self.rng);
                self.pos = 0;
            }
            idx.push(self.order[self.pos]);
            self.pos += 1;
        }
        idx
    }
}

/// Trains `policy` for `cfg.steps` steps on `prefs` (non-empty) against `reference`,
/// data-parallel over the ranks of `sync` (see the module doc; [`dist::Single`]: one process).
pub fn train_on_preferences<P: Policy>(
    policy: &mut P,
    reference: &P,
    prefs: &Preferences,
    cfg: &AlignConfig,
    seed: u64,
    it: usize,
    sync: &dyn GradSync,
) -> Result<TrainStats> {
    let (rank, world) = (sync.rank(), sync.world_size());
    let vars = policy.vars();
    let mut opt = AdamW::with_default_betas(vars.clone(), cfg.weight_decay)?;
    let units = match cfg.objective {
        Objective::Dpo => prefs.pairs.len(),
        Objective::Grpo => prefs.groups.len(),
    };
    ensure!(units > 0, "no complete candidate groups of {} sessions for GRPO", cfg.candidates);
    let reference = reference_logprobs_on(reference, prefs, cfg.objective, cfg.batch_size, sync)?;
    let mut batches = UnitBatches::new(units, crate::util::rng::stream(seed, &format!("align.batches.{it}")));
    let mut sums = TrainStats::default();
    for s in 0..cfg.steps {
        let all = batches.next(cfg.batch_size);
        let idx = &all[dist::shard_range(all.len(), rank, world)];
        // This rank's losses, weighted by its share of the minibatch (1 in one process).
        let share = idx.len() as f64 / all.len() as f64;
        // loss, ntp, pref, accuracy, margin: share-weighted, then summed over ranks.
        let mut vals = [0f64; 5];
        let mut grads = HashMap::new();
        if !idx.is_empty() {
            let pref = match &reference {
                ReferenceLogprobs::Pairs { chosen, rejected } => {
                    dpo_step_loss(policy, &prefs.pairs, chosen, rejected, idx, cfg.beta)?
                }
                ReferenceLogprobs::Groups(old) => grpo_step_loss(policy, &prefs.groups, old, idx, cfg)?,
            };
            let ntp = ntp_loss(policy, &pref.ntp_rows)?;
            let loss = (&ntp + pref.loss.affine(cfg.lambda, 0.0)?)?;
            let v = [loss.to_scalar::<f32>()?, ntp.to_scalar::<f32>()?, pref.loss.to_scalar::<f32>()?];
            vals = [v[0] as f64, v[1] as f64, v[2] as f64, pref.accuracy, pref.margin];
            grads = match world {
                1 => gradients(&vars, &loss)?,
                _ => {
                    vals.iter_mut().for_each(|x| *x *= share);
                    gradients(&vars, &(loss * share)?)?
                }
            };
        }
        if world > 1 {
            sync.all_reduce_f64(&mut vals)?;
            dist::all_reduce_grads(sync, &vars, &mut grads)?;
        }
        ensure!(vals[..3].iter().all(|v| v.is_finite()), "alignment loss is not finite at step {s}; lower align.lr");
        let (acc, margin) = (vals[3], vals[4]);
        sums.loss += vals[0];
        sums.ntp_loss += vals[1];
        sums.pref_loss += vals[2];
        sums.accuracy += acc;
        sums.margin += margin;
        if s == 0 {
            sums.pref_loss_first = vals[2];
        }
        sums.pref_loss_last = vals[2];
        tracing::debug!(step = s, loss = vals[0], ntp = vals[1], pref = vals[2], acc, margin, "align step");
        update(&mut opt, &mut grads, cfg.lr, cfg.grad_clip)?;
    }
    let n = cfg.steps as f64;
    Ok(TrainStats {
        loss: sums.loss / n,
        ntp_loss: sums.ntp_loss / n,
        pref_loss: sums.pref_loss / n,
        accuracy: sums.accuracy / n,
        margin: sums.margin / n,
        ..sums
    })
}

/// The gradients of `loss` by parameter name (parameters it does not reach are left out).
fn gradients(vars: &[(String, Var)], loss: &Tensor) -> Result<HashMap<String, Tensor>> {
    let gs = loss.backward()?;
    Ok(vars.iter().filter_map(|(name, v)| gs.get(v.as_tensor()).map(|g| (name.clone(), g.clone()))).collect())
}

/// Optional global-norm clipping, then the optimizer step at learning rate `lr` (what
/// `AdamW::backward_step` does after its backward, split so the gradients can be summed
/// over ranks in between).
fn update(opt: &mut AdamW, grads: &mut HashMap<String, Tensor>, lr: f64, clip: f64) -> Result<()> {
    let norm = clip_global_norm(grads, clip)?;
    ensure!(norm.is_finite(), "alignment gradient is not finite; lower align.lr or align.beta");
    opt.step(grads, lr)?;
    Ok(())
}
