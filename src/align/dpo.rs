//! Preference losses over sequence log-probabilities (sums over a session's tokens).
//!
//! - DPO: `-log sigmoid(beta * ((logpi(c) - logref(c)) - (logpi(r) - logref(r))))`;
//! - ECPO (OneRec's GRPO variant): group-normalised advantages, PPO ratio clipping, and
//!   for negative advantages the old policy is raised to `sg(pi) / (1 + eps + delta)`
//!   first, so a sharply falling ratio cannot blow the update up.
//!
//! Reference / old-policy log-probabilities are always detached here, so passing a
//! tensor that still tracks gradients cannot leak updates into the reference.

use anyhow::{bail, ensure, Result};
use candle_core::{DType, Tensor, D};

/// DPO loss and the statistics logged next to it.
pub struct DpoOutput {
    /// Scalar mean loss (differentiable w.r.t. the policy log-probs).
    pub loss: Tensor,
    /// Fraction of pairs whose implicit reward ranks chosen above rejected.
    pub accuracy: f32,
    /// Mean implicit reward margin `beta * ((pi_c - ref_c) - (pi_r - ref_r))`.
    pub margin: f32,
}

/// `log(1 + exp(x))`, stable for large |x|, with a working backward.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    // relu(x) + log(1 + exp(-|x|))
    let tail = ((x.abs()?.neg()?.exp()? + 1.0)?).log()?;
    Ok((x.relu()? + tail)?)
}

/// DPO over `[B]` sequence log-probs of chosen/rejected sessions under the policy
/// (`pi_*`, differentiable) and the frozen reference (`ref_*`, detached here).
pub fn dpo_loss(pi_c: &Tensor, pi_r: &Tensor, ref_c: &Tensor, ref_r: &Tensor, beta: f64) -> Result<DpoOutput> {
    let n = pi_c.dims1()?;
    ensure!(n > 0, "dpo_loss: empty batch");
    for (name, t) in [("pi_r", pi_r), ("ref_c", ref_c), ("ref_r", ref_r)] {
        ensure!(t.dims1()? == n, "dpo_loss: {name} has {} rows, pi_c has {n}", t.dims1()?);
    }
    if !(beta > 0.0 && beta.is_finite()) {
        bail!("dpo_loss: beta = {beta} must be > 0");
    }
    let ref_c = ref_c.detach();
    let ref_r = ref_r.detach();
    let z = ((pi_c - &ref_c)? - (pi_r - &ref_r)?)?.affine(beta, 0.0)?;
    let loss = softplus(&z.neg()?)?.mean_all()?;
    let zs = z.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let accuracy = zs.iter().filter(|&&v| v > 0.0).count() as f32 / n as f32;
    let margin = zs.iter().sum::<f32>() / n as f32;
    Ok(DpoOutput { loss, accuracy, margin })
}

/// Group-normalised advantages: `(r - mean) / (std + 1e-6)` within each consecutive
/// group of `group` rewards (a group = one user's N candidates). Zero for flat groups.
pub fn group_advantages(rewards: &[f32], group: usize) -> Result<Vec<f32>> {
    ensure!(group >= 2, "group_advantages: group size {group} < 2");
    ensure!(
        rewards.len().is_multiple_of(group),
        "group_advantages: {} rewards not a multiple of {group}",
        rewards.len()
    );
    let mut out = Vec::with_capacity(rewards.len());
    for g in rewards.chunks_exact(group) {
        let mean = g.iter().sum::<f32>() / group as f32;
        let var = g.iter().map(|r| (r - mean) * (r - mean)).sum::<f32>() / group as f32;
        let std = var.sqrt();
        out.extend(g.iter().map(|r| if std < 1e-6 { 0.0 } else { (r - mean) / (std + 1e-6) }));
    }
    Ok(out)
}

/// ECPO loss (to minimise) over `[B]` sequence log-probs `logp` (differentiable), the
/// old policy's `old_logp` (detached here) and per-row advantages.
pub fn ecpo_loss(logp: &Tensor, old_logp: &Tensor, advantages: &[f32], clip_eps: f64, delta: f64) -> Result<Tensor> {
    let n = logp.dims1()?;
    ensure!(n > 0 && old_logp.dims1()? == n && advantages.len() == n, "ecpo_loss: mismatched batch sizes");
    let dev = logp.device();
    let old = old_logp.detach();
    let adv = Tensor::from_slice(advantages, n, dev)?.to_dtype(logp.dtype())?;
    // Early clipping: for A < 0 use max(old, sg(logp) - log(1 + eps + delta)).
    let floor = (logp.detach() - (1.0 + clip_eps + delta).ln())?;
    let raised = old.maximum(&floor)?;
    let neg = adv.lt(0.0)?;
    let old_eff = neg.where_cond(&raised, &old)?;
    let ratio = (logp - old_eff)?.exp()?;
    let unclipped = (&ratio * &adv)?;
    let clipped = (ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)? * &adv)?;
    let obj = unclipped.minimum(&clipped)?;
    Ok(obj.mean(D::Minus1)?.neg()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn softplus_matches_formula() {
        let x = Tensor::new(&[-50f32, -1.0, 0.0, 2.0, 60.0], &Device::Cpu).unwrap();
        let y = softplus(&x).unwrap().to_vec1::<f32>().unwrap();
        for (xi, yi) in [-50f32, -1.0, 0.0, 2.0, 60.0].iter().zip(y) {
            let want = if *xi > 30.0 { *xi } else { (1.0 + xi.exp()).ln() };
            assert!((yi - want).abs() < 1e-5, "{xi}: {yi} vs {want}");
        }
    }

    #[test]
    fn advantages_are_normalised() {
        let a = group_advantages(&[1.0, 2.0, 3.0, 5.0, 5.0, 5.0], 3).unwrap();
        assert!((a[0] + a[2]).abs() < 1e-5 && a[1].abs() < 1e-6 && a[2] > 1.0);
        assert_eq!(&a[3..], &[0.0, 0.0, 0.0]);
        assert!(group_advantages(&[1.0, 2.0, 3.0], 2).is_err());
    }
}
