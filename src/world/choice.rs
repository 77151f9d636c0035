//! The logged choice of one session: `s_len` distinct unseen items drawn one after another
//! from the softmax of `choice_aff * s + choice_attract * a_i + choice_pop * pop_i`.
//!
//! Two samplers of that same distribution:
//! - small worlds (<= [`SCAN_MAX_ITEMS`] items): Gumbel-top-k over every unseen item, one
//!   uniform per item per session (O(items) per session; the original sampler, whose
//!   output bytes existing worlds keep);
//! - large worlds: rejection sampling. The proposal is the user-free part of the logit,
//!   `exp(choice_attract * a_i + choice_pop * pop_i)` (one table for every user); a draw
//!   is accepted with `exp(choice_aff * s - |choice_aff|) <= 1` (cosines are in [-1, 1]),
//!   and seen items are rejected, which is exactly sequential sampling without
//!   replacement from the softmax, at O(session x 1/acceptance) per session.

use super::{dot, WorldParams};
use crate::util::rng::Rng;
use rand::distributions::{Distribution, WeightedIndex};
use rand::Rng as _;
use std::collections::HashSet;

/// Worlds with at most this many items use the exact per-item scan.
pub const SCAN_MAX_ITEMS: usize = 50_000;

/// The item side of the choice model, shared by every user.
pub(super) struct ChoiceModel<'a> {
    params: &'a WorldParams,
    latent: &'a [f64],
    d: usize,
    attract: &'a [f64],
    logpop: &'a [f64],
    /// Rejection proposal; `None` = scan every item.
    proposal: Option<WeightedIndex<f64>>,
}

/// What a user has already watched (the choice never repeats an item).
pub(super) enum Seen {
    Flags(Vec<bool>),
    Set(HashSet<usize>),
}

impl Seen {
    fn contains(&self, i: usize) -> bool {
        match self {
            Seen::Flags(f) => f[i],
            Seen::Set(s) => s.contains(&i),
        }
    }

    fn insert(&mut self, i: usize) {
        match self {
            Seen::Flags(f) => f[i] = true,
            Seen::Set(s) => {
                s.insert(i);
            }
        }
    }
}

impl<'a> ChoiceModel<'a> {
    pub fn new(params: &'a WorldParams, latent: &'a [f64], d: usize, attract: &'a [f64], logpop: &'a [f64]) -> Self {
        let n = attract.len();
        let proposal = (n > SCAN_MAX_ITEMS).then(|| {
            let logit = |i: usize| params.choice_attract * attract[i] + params.choice_pop * logpop[i];
            let max = (0..n).map(logit).fold(f64::NEG_INFINITY, f64::max);
            // Weights are finite and positive (the max logit has weight 1), so this cannot fail.
            WeightedIndex::new((0..n).map(|i| (logit(i) - max).exp().max(f64::MIN_POSITIVE)))
                .expect("positive finite weights")
        });
        ChoiceModel { params, latent, d, attract, logpop, proposal }
    }

    /// An empty record of seen items, in the form this model's sampler uses.
    pub fn new_seen(&self) -> Seen {
        match self.proposal {
            None => Seen::Flags(vec![false; self.attract.len()]),
            Some(_) => Seen::Set(HashSet::new()),
        }
    }

    /// Draws `s_len` distinct unseen items in choice order and marks them seen.
    pub fn draw(&self, pref: &[f64], s_len: usize, seen: &mut Seen, rng: &mut Rng) -> Vec<usize> {
        let (p, d) = (self.params, self.d);
        let affinity = |i: usize| dot(pref, &self.latent[i * d..(i + 1) * d]);
        let chosen: Vec<usize> = match &self.proposal {
            None => {
                // Gumbel-top-k over the choice softmax = sequential sampling without replacement.
                let mut keyed: Vec<(f64, usize)> = (0..self.attract.len())
                    .filter(|&i| !seen.contains(i))
                    .map(|i| {
                        let logit = p.choice_aff * affinity(i)
                            + p.choice_attract * self.attract[i]
                            + p.choice_pop * self.logpop[i];
                        let uni: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
                        (logit - (-uni.ln()).ln(), i)
                    })
                    .collect();
                keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                keyed.iter().take(s_len).map(|&(_, i)| i).collect()
            }
            Some(proposal) => {
                let bound = p.choice_aff.abs();
                let mut out = Vec::with_capacity(s_len);
                while out.len() < s_len {
                    let i = proposal.sample(rng);
                    if seen.contains(i) || out.contains(&i) {
                        continue;
                    }
                    if rng.gen::<f64>() < (p.choice_aff * affinity(i) - bound).exp() {
                        out.push(i);
                    }
                }
                out
            }
        };
        for &i in &chosen {
            seen.insert(i);
        }
        chosen
    }
}
