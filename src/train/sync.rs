//! Pretraining's sync points when data-parallel (see [`crate::dist`]): the token count of
//! each micro-batch, its routing loads (for the aux loss), and the step's logged statistics
//! and routing loads. With one process each is a no-op or an identity.

use super::run::MicroBatchStats;
use crate::dist::GradSync;
use crate::model::moe::MoeStats;
use anyhow::Result;

/// `x` summed over ranks.
pub fn sum_scalar(sync: &dyn GradSync, x: f64) -> Result<f64> {
    let mut v = [x];
    sync.all_reduce_f64(&mut v)?;
    Ok(v[0])
}

/// Each MoE layer's routing load and token count summed over ranks (entropy left as
/// given): what each rank's part of the global Switch aux loss is built from.
pub fn sum_routing(sync: &dyn GradSync, stats: &[MoeStats]) -> Result<Vec<MoeStats>> {
    let mut buf: Vec<f64> = Vec::new();
    for s in stats {
        buf.extend(s.load.iter().map(|&l| l as f64));
        buf.push(s.tokens as f64);
    }
    sync.all_reduce_f64(&mut buf)?;
    let mut it = buf.into_iter();
    Ok(stats
        .iter()
        .map(|s| MoeStats {
            load: s.load.iter().map(|_| it.next().unwrap_or(0.0) as u64).collect(),
            tokens: it.next().unwrap_or(0.0) as u64,
            entropy_sum: s.entropy_sum,
        })
        .collect())
}

/// Sums the step's per-rank statistics in one all-reduce: each micro-batch's share-weighted
/// cross-entropy and aux loss (so they add up to the micro-batch's means) and each MoE
/// layer's routing load, router entropy and token count. `tokens` and `examples` are
/// already the micro-batch's totals.
pub fn sum_step_stats(sync: &dyn GradSync, mbs: &mut [MicroBatchStats], routing: &mut [MoeStats]) -> Result<()> {
    let mut buf = Vec::new();
    for m in mbs.iter() {
        buf.extend([m.ce, m.aux.unwrap_or(0.0), m.aux.is_some() as u8 as f64]);
        buf.extend([m.item_ce.unwrap_or(0.0), m.item_ce.is_some() as u8 as f64]);
    }
    for r in routing.iter() {
        buf.extend(r.load.iter().map(|&l| l as f64));
        buf.extend([r.entropy_sum, r.tokens as f64]);
    }
    sync.all_reduce_f64(&mut buf)?;
    let mut it = buf.into_iter();
    let mut next = || it.next().unwrap_or(0.0);
    for m in mbs.iter_mut() {
        let (ce, aux, has_aux, item_ce, has_item_ce) = (next(), next(), next(), next(), next());
        m.ce = ce;
        m.aux = (has_aux > 0.0).then_some(aux);
        m.item_ce = (has_item_ce > 0.0).then_some(item_ce);
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
