//! `onerec data synth`: draws a world and its logs from a seed. Every user's history
//! comes from its own random stream, so the output is identical for any thread count.

use super::{affinity, sigmoid, World, WorldParams};
use crate::data::embeddings::{save_safetensors, Embeddings};
use crate::util::rng::stream;
use anyhow::{ensure, Result};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// Size and shape of a synthetic world.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SynthOptions {
    pub users: usize,
    pub items: usize,
    pub topics: usize,
    pub latent_dim: usize,
    /// Mean interactions per user (at least `min_history`).
    pub mean_history: usize,
    pub min_history: usize,
    /// Width of the text-like and image-like embeddings.
    pub text_dim: usize,
    pub image_dim: usize,
    pub seed: u64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            users: 2000,
            items: 1000,
            topics: 20,
            latent_dim: 16,
            mean_history: 20,
            min_history: 5,
            text_dim: 64,
            image_dim: 48,
            seed: 42,
        }
    }
}

impl SynthOptions {
    pub fn validate(&self) -> Result<()> {
        ensure!(self.users >= 1, "--users must be at least 1");
        ensure!(self.topics >= 1 && self.topics <= self.items, "--topics must be in 1..=items");
        ensure!(self.min_history >= 3, "--min-history must be at least 3 (leave-one-out needs 3)");
        ensure!(self.mean_history >= self.min_history, "--mean-history must be >= --min-history");
        ensure!(
            self.items >= 2 * self.mean_history.max(self.min_history) + 10,
            "--items must be well above the history length (histories never repeat an item)"
        );
        ensure!(self.latent_dim >= 2 && self.text_dim >= 2 && self.image_dim >= 2, "dimensions must be >= 2");
        Ok(())
    }
}

fn normal(rng: &mut impl Rng) -> f64 {
    StandardNormal.sample(rng)
}

fn unit(v: &mut [f64]) {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

/// One logged interaction.
struct Event {
    item: usize,
    t: i64,
    watch: f64,
    like: u8,
}

/// Draws the world, writes `interactions.csv`, `text.safetensors`, `image.safetensors`,
/// `world.json` and `world.safetensors` into `out`, and returns the world.
pub fn synth(opts: &SynthOptions, out: &Path) -> Result<World> {
    opts.validate()?;
    let started = std::time::Instant::now();
    let k = opts.latent_dim;
    let mut rng = stream(opts.seed, "world.items");
    let centers: Vec<Vec<f64>> = (0..opts.topics)
        .map(|_| {
            let mut c: Vec<f64> = (0..k).map(|_| normal(&mut rng)).collect();
            unit(&mut c);
            c
        })
        .collect();
    let mut item_topic = Vec::with_capacity(opts.items);
    let mut item_latent = Vec::with_capacity(opts.items * k);
    let (mut quality, mut attract, mut duration, mut log_pop) = (vec![], vec![], vec![], vec![]);
    for i in 0..opts.items {
        let t = if i < opts.topics { i } else { rng.gen_range(0..opts.topics) };
        let mut z: Vec<f64> = centers[t].iter().map(|c| c + 0.2 * normal(&mut rng)).collect();
        unit(&mut z);
        item_topic.push(t as u32);
        item_latent.extend(z);
        quality.push(0.5 * normal(&mut rng));
        attract.push(normal(&mut rng));
        duration.push(rng.gen_range(15.0..120.0f64).round());
        log_pop.push(0.8 * normal(&mut rng));
    }
    // Two observed modalities: different noisy projections of the latent, each with its
    // own nuisance factors the tokenizer has to see through.
    let modality = |name: &str, dim: usize| -> Embeddings {
        let mut r = stream(opts.seed, name);
        let proj: Vec<f64> = (0..dim * k).map(|_| normal(&mut r) / (k as f64).sqrt()).collect();
        let nuis: Vec<f64> = (0..dim * 4).map(|_| normal(&mut r) * 0.1).collect();
        let mut data = Vec::with_capacity(opts.items * dim);
        for i in 0..opts.items {
            let z = &item_latent[i * k..(i + 1) * k];
            let f: Vec<f64> = (0..4).map(|_| normal(&mut r)).collect();
            for d in 0..dim {
                let signal: f64 = (0..k).map(|j| proj[d * k + j] * z[j]).sum();
                let nuisance: f64 = (0..4).map(|j| nuis[d * 4 + j] * f[j]).sum();
                data.push((signal + nuisance + 0.05 * normal(&mut r)) as f32);
            }
        }
        Embeddings { item_ids: (0..opts.items).map(World::item_id).collect(), data, n: opts.items, d: dim }
    };
    let text = modality("world.text", opts.text_dim);
    let image = modality("world.image", opts.image_dim);

    // Users: a mixture of two topics, drifting after every session.
    let users: Vec<(Vec<Event>, Vec<f64>)> = (0..opts.users)
        .into_par_iter()
        .map(|u| {
            let mut r = stream(opts.seed ^ (u as u64).wrapping_mul(0x9E3779B97F4A7C15), "world.user");
            let (a, b) = (r.gen_range(0..opts.topics), r.gen_range(0..opts.topics));
            let w = r.gen_range(0.5..1.0);
            let mut pref: Vec<f64> = (0..k).map(|j| w * centers[a][j] + (1.0 - w) * centers[b][j] + 0.3 * normal(&mut r)).collect();
            unit(&mut pref);
            let extra = opts.mean_history - opts.min_history;
            let p = 1.0 / (extra as f64 + 1.0);
            let mut n = opts.min_history;
            while n < opts.items / 2 && r.gen::<f64>() > p {
                n += 1;
            }
            let mut seen = vec![false; opts.items];
            let mut events = Vec::with_capacity(n);
            let mut t: i64 = 1_600_000_000 + r.gen_range(0..30 * 86_400);
            let mut logits = vec![0.0f64; opts.items];
            while events.len() < n {
                let session = r.gen_range(3..=8).min(n - events.len());
                for _ in 0..session {
                    for i in 0..opts.items {
                        logits[i] = if seen[i] {
                            f64::NEG_INFINITY
                        } else {
                            let s = affinity(&pref, &item_latent[i * k..(i + 1) * k], quality[i]);
                            1.2 * s + 0.8 * attract[i] + 0.5 * log_pop[i]
                        };
                    }
                    let item = sample_softmax(&logits, &mut r);
                    seen[item] = true;
                    let s = affinity(&pref, &item_latent[item * k..(item + 1) * k], quality[item]);
                    let f = sigmoid(s - 0.8 * attract[item] - 0.5);
                    let watch = (f * duration[item] * r.gen_range(0.8..1.2)).min(duration[item]).round();
                    let like = (r.gen::<f64>() < sigmoid(2.0 * s - 0.8 * attract[item] - 3.0)) as u8;
                    events.push(Event { item, t, watch, like });
                    t += r.gen_range(20..90);
                }
                t += r.gen_range(2 * 3600..48 * 3600);
                for x in pref.iter_mut() {
                    *x += 0.08 * normal(&mut r);
                }
                unit(&mut pref);
            }
            (events, pref)
        })
        .collect();

    let params = WorldParams { options: opts.clone(), like_bonus: 1.0, topic_decay: 0.8 };
    let user_pref: Vec<f64> = users.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let world = World::from_parts(params, item_latent, quality, attract, duration.clone(), item_topic, user_pref);
    std::fs::create_dir_all(out)?;
    crate::util::io::atomic_write_with(&out.join("interactions.csv"), |w| {
        writeln!(w, "user_id,item_id,timestamp,watch_time,duration,like")?;
        for (u, (events, _)) in users.iter().enumerate() {
            for e in events {
                writeln!(w, "{},{},{},{},{},{}", u + 1, e.item + 1, e.t, e.watch, duration[e.item], e.like)?;
            }
        }
        Ok(())
    })?;
    save_safetensors(&out.join("text.safetensors"), &text, false)?;
    save_safetensors(&out.join("image.safetensors"), &image, false)?;
    world.save(out)?;
    let interactions: usize = users.iter().map(|u| u.0.len()).sum();
    tracing::info!(
        out = %out.display(),
        users = opts.users,
        items = opts.items,
        interactions,
        secs = format!("{:.2}", started.elapsed().as_secs_f64()),
        "wrote synthetic world (interactions.csv, text/image.safetensors, world.json/.safetensors)"
    );
    Ok(world)
}

fn sample_softmax(logits: &[f64], r: &mut impl Rng) -> usize {
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = logits.iter().map(|l| (l - m).exp()).sum();
    let mut x = r.gen::<f64>() * total;
    let mut last = 0;
    for (i, l) in logits.iter().enumerate() {
        if l.is_finite() {
            last = i;
            x -= (l - m).exp();
            if x <= 0.0 {
                return i;
            }
        }
    }
    last
}
