//! Pretraining's sync points when data-parallel (see [`crate::dist`]): the token count of
//! each micro-batch, the step's logged statistics and routing loads, and the check that
//! every rank holds the same parameters. With one process each is a no-op or an identity.

use super::run::MicroBatchStats;
use crate::dist::{self, GradSync};
use crate::model::moe::MoeStats;
use anyhow::{ensure, Result};
use candle_core::Var;

/// `x` summed over ranks.
pub fn sum_scalar(sync: &dyn GradSync, x: f64) -> Result<f64> {
    let mut v = [x];
    sync.all_reduce_f64(&mut v)?;
    Ok(v[0])
}

/// Sums the step's per-rank statistics in one all-reduce: each micro-batch's share-weighted
/// cross-entropy and aux loss (so they add up to the micro-batch's means) and each MoE
/// layer's routing load, router entropy and token count. `tokens` and `examples` are
/// already the micro-batch's totals.
pub fn sum_step_stats(sync: &dyn GradSync, mbs: &mut [MicroBatchStats], routing: &mut [MoeStats]) -> Result<()> {
    let mut buf = Vec::new();
    for m in mbs.iter() {
        buf.extend([m.ce, m.aux.unwrap_or(0.0), m.aux.is_some() as u8 as f64]);
    }
    for r in routing.iter() {
        buf.extend(r.load.iter().map(|&l| l as f64));
        buf.extend([r.entropy_sum, r.tokens as f64]);
    }
    sync.all_reduce_f64(&mut buf)?;
    let mut it = buf.into_iter();
    let mut next = || it.next().unwrap_or(0.0);
    for m in mbs.iter_mut() {
        let (ce, aux, has_aux) = (next(), next(), next());
        m.ce = ce;
        m.aux = (has_aux > 0.0).then_some(aux);
    }
    for r in routing.iter_mut() {
        for l in r.load.iter_mut() {
            *l = next() as u64;
        }
        r.entropy_sum = next();
        r.tokens = next() as u64;
    }
    Ok(())
}

/// Fails on every rank unless all ranks hold bit-identical parameters (a checksum compared
/// with rank 0's): the data-parallel invariant, checked at every eval. Returns the checksum.
pub fn check_in_sync(sync: &dyn GradSync, vars: &[(String, Var)], step: usize) -> Result<u64> {
    let mine = dist::params_checksum(vars)?;
    let mut leader = [mine as f64];
    sync.broadcast_f64(&mut leader)?;
    let differ = sum_scalar(sync, (leader[0] != mine as f64) as u8 as f64)?;
    ensure!(
        differ == 0.0,
        "data-parallel ranks diverged at step {step}: {differ} of {} ranks hold parameters that differ from rank 0's",
        sync.world_size()
    );
    Ok(mine)
}
