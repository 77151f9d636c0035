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

use super::iterate::{align, AlignOutcome, EvalHook, Policy, SessionGenerator, SessionScorer};
use super::reward::RewardModel;
use crate::config::Config;
use crate::data::Dataset;
use crate::util::rng::Rng;
use anyhow::{bail, ensure, Context, Result};
use rand::seq::SliceRandom;
use std::collections::BTreeMap;
use std::path::Path;

/// The tokenizer fingerprint of a checkpoint directory (sha256 of its `codes.tsv`).
pub fn checkpoint_tokenizer_sha(dir: &Path) -> Result<String> {
    crate::tokenizer::SemanticIds::fingerprint(dir).with_context(|| {
        format!("checkpoint {}: no codes.tsv, cannot tell which tokenizer it was trained with", dir.display())
    })
}

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
    mut generator: G,
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
    move |policy: &P| {
        let hs: Vec<&[u32]> = users.iter().map(|&u| ds.history(u)).collect();
        let mut rng: Rng = crate::util::rng::stream(seed, "align.eval");
        let sessions = generator.generate(policy, &hs, 1, session_len, &mut rng)?;
        ensure!(sessions.len() == hs.len(), "generator returned {} lists for {} users", sessions.len(), hs.len());
        let (mut tot, mut rows) = (0.0, Vec::new());
        for (&u, ss) in users.iter().zip(&sessions) {
            let s = ss.first().context("generator returned no session")?;
            tot += truth(u, s)?;
            rows.push(s.as_slice());
        }
        let n = users.len().max(1) as f64;
        let mut m = BTreeMap::from([("true_reward".to_string(), tot / n)]);
        if let Some(sc) = scorer {
            let r = sc.score(&hs, &rows)?;
            m.insert("model_reward".into(), r.iter().map(|&v| v as f64).sum::<f64>() / n);
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

/// Aligns `policy` on `ds`'s training histories against `reward`, writing `out`
/// (checkpoints, `state.json`, `config.toml`; resumable).
pub fn align_dataset<P: Policy, G: SessionGenerator<P>>(
    cfg: &Config,
    ds: &Dataset,
    policy: &mut P,
    generator: &mut G,
    reward: &RewardModel,
    out: &Path,
    eval: Option<EvalHook<'_, P>>,
) -> Result<AlignOutcome> {
    ensure!(
        reward.meta.n_items == ds.n_items(),
        "reward model knows {} items, dataset has {}",
        reward.meta.n_items,
        ds.n_items()
    );
    if cfg.align.session_len != reward.meta.config.session_len {
        tracing::warn!(
            align = cfg.align.session_len,
            reward = reward.meta.config.session_len,
            "align.session_len differs from the reward model's session_len; its sum-pooled scores are calibrated for the latter"
        );
    }
    let (_users, hs) = super::iterate::train_histories(ds);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    cfg.save(out)?;
    tracing::info!(users = hs.len(), out = %out.display(), config = ?cfg.align, "alignment");
    align(policy, generator, reward, &hs, &cfg.align, cfg.seed, Some(out), eval)
}

/// `onerec align`: aligns the checkpoint against the reward model, writing `out`.
pub fn run(cfg: &Config, checkpoint: &Path, reward: &Path, data: &Path, out: &Path) -> Result<()> {
    cfg.align.validate().context("[align]")?;
    let rm = RewardModel::load(reward)?;
    let ds = Dataset::load(data)?;
    let ckpt = crate::model::checkpoint::load(checkpoint)?;
    let sha = checkpoint_tokenizer_sha(&ckpt.dir)?;
    rm.check_compatible(&sha, &ds.manifest.features, ds.n_items())?;
    tracing::info!(out = %out.display(), "alignment inputs verified");
    bail!(
        "`onerec align`: inputs verified, but the OneRec model does not implement align::Policy \
         and beam-search generation has not landed yet (see src/align/onerec.rs)"
    )
}
