//! The logged choice of one session: `s_len` distinct unseen items drawn one after another
//! from the softmax of `choice_aff * s + choice_attract * a_i + choice_pop * pop_i`.
//!
//! Two samplers of that same distribution:
//! - small worlds (<= [`SCAN_MAX_ITEMS`] items): Gumbel-top-k over every unseen item, one
//!   uniform per item per session (O(items) per session; the original sampler, whose
//!   output bytes existing worlds keep);
//! - large worlds: rejection sampling. Items are grouped by topic and, within a topic, by
//!   their distance `r_i = |v_i - c_t|` from the topic centre (equal-count bins). For a
//!   preference `p`, `p . v_i <= p . c_t + R_g` (R_g: the group's largest `r_i`), which
//!   bounds the affinity part of every logit in group `g` by `L_g`. The proposal picks a
//!   group with weight `W_g exp(L_g)`, then an item with weight `w_i`, the user-free part
//!   `exp(choice_attract a_i + choice_pop pop_i)` (`W_g`: the group's sum of `w_i`).
//!   Accepting with `exp(choice_aff s_i - L_g) <= 1` and rejecting seen items makes it
//!   exactly sequential sampling without replacement from the softmax, at O(session x 1/acceptance) per session.

use super::{dot, WorldParams};
use crate::util::rng::Rng;
use rand::distributions::{Distribution, WeightedIndex};
use rand::Rng as _;
use std::collections::HashSet;

/// Worlds with at most this many items use the exact per-item scan.
pub const SCAN_MAX_ITEMS: usize = 50_000;

/// Radius bins per topic of the rejection sampler's groups.
const RADIUS_BINS: usize = 8;

/// A group of the rejection sampler: items of one topic within one radius bin.
struct Group {
    topic: usize,
    /// Largest distance of a member from its topic centre.
    radius: f64,
    /// Sum of the members' user-free weights.
    weight: f64,
    items: Vec<usize>,
    pick: WeightedIndex<f64>,
}

/// The item side of the choice model, shared by every user.
pub(super) struct ChoiceModel<'a> {
    params: &'a WorldParams,
    latent: &'a [f64],
    d: usize,
    attract: &'a [f64],
    logpop: &'a [f64],
    centres: &'a [Vec<f64>],
    /// Rejection groups; empty = scan every item.
    groups: Vec<Group>,
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

/// The item tables `ChoiceModel::new` reads.
pub(super) struct ItemTables<'a> {
    pub latent: &'a [f64],
    pub d: usize,
    pub topic: &'a [usize],
    pub attract: &'a [f64],
    pub logpop: &'a [f64],
    pub centres: &'a [Vec<f64>],
}

impl<'a> ChoiceModel<'a> {
    pub fn new(params: &'a WorldParams, t: ItemTables<'a>) -> Self {
        let rejection = t.attract.len() > SCAN_MAX_ITEMS;
        Self::with_sampler(params, t, rejection)
    }

    /// `rejection`: use the rejection sampler whatever the world's size (tests).
    fn with_sampler(params: &'a WorldParams, t: ItemTables<'a>, rejection: bool) -> Self {
        let d = t.d;
        let groups = if rejection { build_groups(params, &t) } else { Vec::new() };
        ChoiceModel { params, latent: t.latent, d, attract: t.attract, logpop: t.logpop, centres: t.centres, groups }
    }

    /// An empty record of seen items, in the form this model's sampler uses.
    pub fn new_seen(&self) -> Seen {
        if self.groups.is_empty() {
            Seen::Flags(vec![false; self.attract.len()])
        } else {
            Seen::Set(HashSet::new())
        }
    }

    /// Draws `s_len` distinct unseen items in choice order and marks them seen.
    pub fn draw(&self, pref: &[f64], s_len: usize, seen: &mut Seen, rng: &mut Rng) -> Vec<usize> {
        let (p, d) = (self.params, self.d);
        let affinity = |i: usize| dot(pref, &self.latent[i * d..(i + 1) * d]);
        let chosen: Vec<usize> = if self.groups.is_empty() {
            // Gumbel-top-k over the choice softmax = sequential sampling without replacement.
            let mut keyed: Vec<(f64, usize)> = (0..self.attract.len())
                .filter(|&i| !seen.contains(i))
                .map(|i| {
                    let logit =
                        p.choice_aff * affinity(i) + p.choice_attract * self.attract[i] + p.choice_pop * self.logpop[i];
                    let uni: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
                    (logit - (-uni.ln()).ln(), i)
                })
                .collect();
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            keyed.iter().take(s_len).map(|&(_, i)| i).collect()
        } else {
            // Bound of the affinity logit per group for this preference.
            let toward: Vec<f64> = self.centres.iter().map(|c| dot(pref, c)).collect();
            let bound: Vec<f64> = self
                .groups
                .iter()
                .map(|g| {
                    let a = toward[g.topic];
                    if p.choice_aff >= 0.0 {
                        p.choice_aff * (a + g.radius).min(1.0)
                    } else {
                        p.choice_aff * (a - g.radius).max(-1.0)
                    }
                })
                .collect();
            let top = bound.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let group = WeightedIndex::new(
                self.groups.iter().zip(&bound).map(|(g, b)| (g.weight * (b - top).exp()).max(f64::MIN_POSITIVE)),
            )
            .expect("positive finite group weights");
            let mut out = Vec::with_capacity(s_len);
            while out.len() < s_len {
                let gi = group.sample(rng);
                let g = &self.groups[gi];
                let i = g.items[g.pick.sample(rng)];
                if seen.contains(i) || out.contains(&i) {
                    continue;
                }
                if rng.gen::<f64>() < (p.choice_aff * affinity(i) - bound[gi]).exp() {
                    out.push(i);
                }
            }
            out
        };
        for &i in &chosen {
            seen.insert(i);
        }
        chosen
    }
}

/// Groups of the rejection sampler: per topic, items binned by distance from the centre.
fn build_groups(p: &WorldParams, t: &ItemTables) -> Vec<Group> {
    let n = t.attract.len();
    let d = t.d;
    let logit = |i: usize| p.choice_attract * t.attract[i] + p.choice_pop * t.logpop[i];
    let max = (0..n).map(logit).fold(f64::NEG_INFINITY, f64::max);
    let weight = |i: usize| (logit(i) - max).exp().max(f64::MIN_POSITIVE);
    let radius = |i: usize| {
        let c = &t.centres[t.topic[i]];
        t.latent[i * d..(i + 1) * d].iter().zip(c).map(|(v, c)| (v - c) * (v - c)).sum::<f64>().sqrt()
    };
    let mut by_topic: Vec<Vec<(f64, usize)>> = vec![Vec::new(); t.centres.len()];
    for i in 0..n {
        by_topic[t.topic[i]].push((radius(i), i));
    }
    let mut groups = Vec::new();
    for (topic, mut members) in by_topic.into_iter().enumerate() {
        members.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let per = members.len().div_ceil(RADIUS_BINS).max(1);
        for bin in members.chunks(per) {
            let items: Vec<usize> = bin.iter().map(|&(_, i)| i).collect();
            let w: Vec<f64> = items.iter().map(|&i| weight(i)).collect();
            groups.push(Group {
                topic,
                // Rounding slack: the bound must never fall below a member's affinity.
                radius: bin.last().map_or(0.0, |b| b.0) + 1e-9,
                weight: w.iter().sum(),
                pick: WeightedIndex::new(&w).expect("positive finite weights"),
                items,
            });
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::stream;

    fn unit(v: &mut [f64]) {
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
    }

    /// latent, topic, attract, logpop, centres.
    type Tables = (Vec<f64>, Vec<usize>, Vec<f64>, Vec<f64>, Vec<Vec<f64>>);

    /// A small world: 60 items around 3 topic centres in 4-d.
    fn tables() -> Tables {
        let (n, d, t) = (60, 4, 3);
        let mut rng = stream(7, "test");
        let mut centres = Vec::new();
        for _ in 0..t {
            let mut c: Vec<f64> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
            unit(&mut c);
            centres.push(c);
        }
        let (mut latent, mut topic, mut attract, mut logpop) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let k = i % t;
            let mut v: Vec<f64> = centres[k].iter().map(|c| c + rng.gen_range(-0.4..0.4)).collect();
            unit(&mut v);
            latent.extend(v);
            topic.push(k);
            attract.push(rng.gen_range(-1.0..1.0));
            logpop.push(-((i + 1) as f64).ln() + 2.0);
        }
        (latent, topic, attract, logpop, centres)
    }

    /// Both samplers draw the first item of a session from the choice softmax, and
    /// never an item already seen or twice in one session.
    #[test]
    fn both_samplers_follow_the_choice_softmax() {
        let (latent, topic, attract, logpop, centres) = tables();
        let params = WorldParams::default();
        let mut pref = vec![0.3, -0.5, 0.8, 0.1];
        unit(&mut pref);
        let logit = |i: usize| {
            params.choice_aff * dot(&pref, &latent[i * 4..(i + 1) * 4])
                + params.choice_attract * attract[i]
                + params.choice_pop * logpop[i]
        };
        let n = attract.len();
        let z: f64 = (0..n).map(|i| logit(i).exp()).sum();
        for rejection in [false, true] {
            let t = ItemTables {
                latent: &latent,
                d: 4,
                topic: &topic,
                attract: &attract,
                logpop: &logpop,
                centres: &centres,
            };
            let model = ChoiceModel::with_sampler(&params, t, rejection);
            let mut rng = stream(1, "draws");
            let draws = 60_000;
            let mut freq = vec![0usize; n];
            for _ in 0..draws {
                freq[model.draw(&pref, 1, &mut model.new_seen(), &mut rng)[0]] += 1;
            }
            for (i, &f) in freq.iter().enumerate() {
                let (got, want) = (f as f64 / draws as f64, logit(i).exp() / z);
                // 5 standard errors of a frequency (at least 0.002).
                let tol = 5.0 * (want * (1.0 - want) / draws as f64).sqrt() + 0.002;
                assert!((got - want).abs() < tol, "rejection={rejection} item {i}: {got:.4} vs softmax {want:.4}");
            }
            let mut seen = model.new_seen();
            let first = model.draw(&pref, 25, &mut seen, &mut rng);
            let second = model.draw(&pref, 25, &mut seen, &mut rng);
            let mut all: Vec<usize> = first.iter().chain(&second).copied().collect();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), 50, "rejection={rejection}: an item was drawn twice");
        }
    }
}
