//! Generation of a synthetic world and its logged interactions (`onerec data synth`).
//!
//! Every random draw comes from a named stream of the seed; users are generated in
//! parallel, each from its own stream, so the output bytes do not depend on threads.

use super::choice::{ChoiceModel, ItemTables};
use super::{sigmoid, World, WorldMeta, WorldParams, WORLD_FORMAT, WORLD_VERSION};
use crate::data::embeddings::{save_safetensors, Embeddings};
use crate::util::rng::{stream, Rng};
use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::Rng as _;
use rand_distr::{Distribution, Poisson, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// First timestamp users can start at (2023-11-14, seconds).
const BASE_TIME: i64 = 1_700_000_000;

/// Users simulated (and their CSV lines held) at once.
const USER_CHUNK: usize = 16_384;
/// Users start within this many seconds of `BASE_TIME` (30 days).
const START_SPREAD: i64 = 30 * 86_400;
/// Intra-session gaps are `ceil(watch_time) + U[3, 30]` s (< 30 min); sessions are
/// `U[2 h, 36 h]` apart, so any gap over [`SESSION_GAP_S`] separates sessions.
pub const SESSION_GAP_S: i64 = 1_800;

/// Size and structure of a synthetic world.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SynthOptions {
    pub users: usize,
    pub items: usize,
    pub topics: usize,
    pub latent_dim: usize,
    /// Mean interactions per user (history length = min_history + Poisson(mean - min)).
    pub mean_history: f64,
    pub min_history: usize,
    /// Items per session, uniform in [session_min, session_max] (the last one may be shorter).
    pub session_min: usize,
    pub session_max: usize,
    pub text_dim: usize,
    pub image_dim: usize,
    /// Nuisance (topic-free) dimensions of each modality.
    pub nuisance_dim: usize,
    /// Spread of item latents around their topic centre (norm of the noise).
    pub item_spread: f64,
    pub seed: u64,
    pub params: WorldParams,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            users: 2000,
            items: 1000,
            topics: 20,
            latent_dim: 16,
            mean_history: 20.0,
            min_history: 5,
            session_min: 3,
            session_max: 7,
            text_dim: 64,
            image_dim: 48,
            nuisance_dim: 8,
            item_spread: 0.5,
            seed: 42,
            params: WorldParams::default(),
        }
    }
}

impl SynthOptions {
    fn validate(&self) -> Result<()> {
        let o = self;
        if o.users == 0 || o.items == 0 || o.topics == 0 || o.latent_dim == 0 {
            bail!("synth: users, items, topics and latent_dim must all be at least 1");
        }
        if o.topics > o.items {
            bail!("synth: {} topics for {} items; use --topics <= --items", o.topics, o.items);
        }
        if o.min_history == 0
            || o.mean_history.is_nan()
            || o.mean_history < o.min_history as f64
            || !o.mean_history.is_finite()
        {
            bail!("synth: need 1 <= min_history ({}) <= mean_history ({})", o.min_history, o.mean_history);
        }
        if o.items < 2 * o.min_history {
            bail!(
                "synth: {} items is too few for histories of at least {}; use --items >= {}",
                o.items,
                o.min_history,
                2 * o.min_history
            );
        }
        if o.session_min == 0 || o.session_min > o.session_max {
            bail!("synth: need 1 <= session_min ({}) <= session_max ({})", o.session_min, o.session_max);
        }
        if o.text_dim == 0 || o.image_dim == 0 {
            bail!("synth: text_dim and image_dim must be at least 1");
        }
        if o.item_spread.is_nan() || o.item_spread < 0.0 || o.params.drift.is_nan() || o.params.drift < 0.0 {
            bail!("synth: item_spread and drift must be >= 0");
        }
        if o.params.watch_ref_s <= 0.0 {
            bail!("synth: watch_ref_s must be > 0");
        }
        let json = serde_json::to_value(&o.params)?;
        if let Some(map) = json.as_object() {
            for (key, v) in map {
                if v.as_f64().is_none_or(|x| !x.is_finite()) {
                    bail!("synth: world parameter `{key}` must be a finite number, got {v}");
                }
            }
        }
        Ok(())
    }
}

/// What `synth` wrote.
pub struct SynthOutput {
    pub world: World,
    pub interactions: usize,
    pub sessions: usize,
}

/// One logged interaction.
struct Row {
    item: usize,
    timestamp: i64,
    watch_time: f64,
    like: bool,
}

fn gauss(rng: &mut Rng) -> f64 {
    rng.sample(StandardNormal)
}

fn normalize(v: &mut [f64]) {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// A random direction of norm ~`scale`.
fn noise(rng: &mut Rng, d: usize, scale: f64) -> Vec<f64> {
    let s = scale / (d as f64).sqrt();
    (0..d).map(|_| gauss(rng) * s).collect()
}

/// Generates the world of `opts` and writes `interactions.csv`, `text.safetensors`,
/// `image.safetensors`, `world.json` and `world.safetensors` into `out_dir`.
pub fn synth(opts: &SynthOptions, out_dir: &Path) -> Result<SynthOutput> {
    opts.validate()?;
    let start = Instant::now();
    let (n, d, t) = (opts.items, opts.latent_dim, opts.topics);
    let p = &opts.params;

    // Topics and items.
    let mut rng = stream(opts.seed, "world/topics");
    let centres: Vec<Vec<f64>> = (0..t)
        .map(|_| {
            let mut c = noise(&mut rng, d, 1.0);
            normalize(&mut c);
            c
        })
        .collect();
    let mut rng = stream(opts.seed, "world/items");
    let mut item_latent = Vec::with_capacity(n * d);
    let mut item_topic = Vec::with_capacity(n);
    let mut item_duration = Vec::with_capacity(n);
    let mut item_attract = Vec::with_capacity(n);
    let mut item_quality = Vec::with_capacity(n);
    for i in 0..n {
        // Every topic gets items; the rest are random.
        let topic = if i < t { i } else { rng.gen_range(0..t) };
        let mut v = centres[topic].clone();
        for (x, e) in v.iter_mut().zip(noise(&mut rng, d, opts.item_spread)) {
            *x += e;
        }
        normalize(&mut v);
        item_latent.extend_from_slice(&v);
        item_topic.push(topic);
        item_duration.push((30.0f64.ln() + 0.5 * gauss(&mut rng)).exp().round().clamp(5.0, 180.0));
        let a = gauss(&mut rng);
        item_attract.push(a);
        item_quality.push(0.5 * gauss(&mut rng) - p.clickbait_quality * a);
    }
    let mut ranks: Vec<usize> = (0..n).collect();
    ranks.shuffle(&mut stream(opts.seed, "world/popularity"));
    let raw_pop: Vec<f64> = ranks.iter().map(|&r| -((r + 1) as f64).ln()).collect();
    let mean_pop = raw_pop.iter().sum::<f64>() / n as f64;
    let item_logpop: Vec<f64> = raw_pop.iter().map(|x| x - mean_pop).collect();

    // Users, in parallel chunks, each from its own stream; each chunk's CSV lines are
    // formatted in parallel and written in user order, so memory stays O(chunk).
    std::fs::create_dir_all(out_dir)
        .map_err(|e| anyhow::anyhow!("cannot create output directory {}: {e}", out_dir.display()))?;
    let tables = ItemTables {
        latent: &item_latent,
        d,
        topic: &item_topic,
        attract: &item_attract,
        logpop: &item_logpop,
        centres: &centres,
    };
    let choice = ChoiceModel::new(p, tables);
    let mut user_pref = Vec::with_capacity(opts.users * d);
    let mut interactions = 0;
    let mut sessions = 0;
    crate::util::io::atomic_write_with(&out_dir.join("interactions.csv"), |w| {
        writeln!(w, "user_id,item_id,timestamp,watch_time,duration,like")?;
        for start in (0..opts.users).step_by(USER_CHUNK) {
            let end = (start + USER_CHUNK).min(opts.users);
            let chunk: Vec<(Vec<f64>, Vec<u8>, usize, usize)> = (start..end)
                .into_par_iter()
                .map(|u| {
                    let (pref, rows, s) =
                        simulate_user(opts, u, &centres, &item_latent, &item_duration, &item_quality, &choice);
                    (pref, csv_lines(u, &rows, &item_duration), rows.len(), s)
                })
                .collect();
            for (pref, lines, rows, s) in chunk {
                w.write_all(&lines)?;
                user_pref.extend_from_slice(&pref);
                interactions += rows;
                sessions += s;
            }
        }
        Ok(())
    })?;

    // Ids are 1-based row numbers (`csv_lines` writes the same).
    let user_ids: Vec<String> = (1..=opts.users).map(|u| u.to_string()).collect();
    let item_ids: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let meta = WorldMeta {
        format: WORLD_FORMAT.to_string(),
        version: WORLD_VERSION,
        options: opts.clone(),
        params: p.clone(),
        users: opts.users,
        items: n,
        latent_dim: d,
    };
    let world = World::assemble(
        meta,
        item_ids,
        user_ids,
        item_latent,
        item_topic,
        item_duration,
        item_attract,
        item_quality,
        item_logpop,
        user_pref,
    );
    for (name, dim) in [("text", opts.text_dim), ("image", opts.image_dim)] {
        let emb = modality(opts, &world, name, dim);
        save_safetensors(&out_dir.join(format!("{name}.safetensors")), &emb, false)?;
    }
    world.save(out_dir)?;
    tracing::info!(
        "synth: wrote interactions.csv, text.safetensors [{n}, {}], image.safetensors [{n}, {}], world.json, world.safetensors",
        opts.text_dim,
        opts.image_dim
    );
    tracing::info!(
        "synth: wrote {} interactions ({} users, {} items, {} sessions, {} topics) to {} in {:.2}s",
        interactions,
        opts.users,
        n,
        sessions,
        t,
        out_dir.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(SynthOutput { world, interactions, sessions })
}

/// User `u`'s rows as `interactions.csv` lines (ids are 1-based row numbers).
fn csv_lines(u: usize, rows: &[Row], duration: &[f64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 40);
    for r in rows {
        // Writing into a Vec cannot fail.
        let _ = writeln!(
            out,
            "{},{},{},{:.1},{},{}",
            u + 1,
            r.item + 1,
            r.timestamp,
            r.watch_time,
            duration[r.item] as i64,
            r.like as u8
        );
    }
    out
}

/// One user's logged history; returns (final preference, rows, session count).
#[allow(clippy::too_many_arguments)]
fn simulate_user(
    opts: &SynthOptions,
    u: usize,
    centres: &[Vec<f64>],
    latent: &[f64],
    duration: &[f64],
    quality: &[f64],
    choice: &ChoiceModel,
) -> (Vec<f64>, Vec<Row>, usize) {
    let p = &opts.params;
    let (n, d) = (opts.items, opts.latent_dim);
    let mut rng = stream(opts.seed, &format!("world/user/{u}"));
    // Preference: a mix of 1-3 topics plus a little personal noise.
    let k = rng.gen_range(1..=3.min(opts.topics));
    let mut pref = noise(&mut rng, d, 0.3);
    for _ in 0..k {
        let c = &centres[rng.gen_range(0..opts.topics)];
        let w: f64 = rng.gen_range(0.5..1.5);
        pref.iter_mut().zip(c).for_each(|(x, c)| *x += w * c);
    }
    normalize(&mut pref);
    let extra = opts.mean_history - opts.min_history as f64;
    let extra = if extra > 0.0 { Poisson::new(extra).map(|po| po.sample(&mut rng) as usize).unwrap_or(0) } else { 0 };
    let len = (opts.min_history + extra).min(n / 2).max(opts.min_history);
    let mut seen = choice.new_seen();
    let mut rows = Vec::with_capacity(len);
    let mut now = BASE_TIME + rng.gen_range(0..START_SPREAD);
    let mut sessions = 0;
    while rows.len() < len {
        if sessions > 0 {
            // Preference drift and the gap between sessions.
            for (x, e) in pref.iter_mut().zip(noise(&mut rng, d, p.drift)) {
                *x += e;
            }
            normalize(&mut pref);
            now += rng.gen_range(2 * 3600..36 * 3600);
        }
        sessions += 1;
        let s_len = rng.gen_range(opts.session_min..=opts.session_max).min(len - rows.len());
        for i in choice.draw(&pref, s_len, &mut seen, &mut rng) {
            let s = super::dot(&pref, &latent[i * d..(i + 1) * d]);
            let f = sigmoid(p.watch_aff * s + quality[i] + p.watch_bias);
            let watch = (f * duration[i] + p.watch_noise * duration[i] * gauss(&mut rng)).clamp(0.0, duration[i]);
            let watch = (watch * 10.0).round() / 10.0;
            let like = rng.gen_bool(sigmoid(p.like_aff * s + quality[i] + p.like_bias));
            rows.push(Row { item: i, timestamp: now, watch_time: watch, like });
            now += watch.ceil() as i64 + rng.gen_range(3..=30);
        }
    }
    (pref, rows, sessions)
}

/// Item embeddings of one modality: its own random projection of the latent plus its own
/// nuisance factors (text: log-duration; image: clickbait thumbnail) and noise.
fn modality(opts: &SynthOptions, world: &World, name: &str, dim: usize) -> Embeddings {
    let (n, d, m) = (opts.items, opts.latent_dim, opts.nuisance_dim);
    let mut rng = stream(opts.seed, &format!("world/modality/{name}"));
    let a: Vec<f64> = (0..dim * d).map(|_| 0.5 * gauss(&mut rng)).collect();
    let b: Vec<f64> = (0..dim * m).map(|_| gauss(&mut rng) * 0.5 / (m.max(1) as f64).sqrt()).collect();
    let mut data = Vec::with_capacity(n * dim);
    for i in 0..n {
        let mut nuis: Vec<f64> = (0..m).map(|_| gauss(&mut rng)).collect();
        if let Some(first) = nuis.first_mut() {
            *first = if name == "image" {
                world.item_attract[i]
            } else {
                (world.item_duration[i].ln() - 30.0f64.ln()) / 0.5
            };
        }
        let v = &world.item_latent[i * d..(i + 1) * d];
        for r in 0..dim {
            let x = super::dot(&a[r * d..(r + 1) * d], v)
                + super::dot(&b[r * m..(r + 1) * m], &nuis)
                + 0.3 * gauss(&mut rng);
            data.push(x as f32);
        }
    }
    Embeddings { item_ids: world.item_ids.clone(), data, n, d: dim }
}
