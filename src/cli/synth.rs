//! `onerec data synth`: writes a synthetic world (see `crate::world`).

use crate::world::{synth, SynthOptions};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output directory (interactions.csv, text/image.safetensors, world.json/.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 2000)]
    pub users: usize,
    #[arg(long, default_value_t = 1000)]
    pub items: usize,
    #[arg(long, default_value_t = 20)]
    pub topics: usize,
    #[arg(long, default_value_t = 16)]
    pub latent_dim: usize,
    /// Mean interactions per user.
    #[arg(long, default_value_t = 20.0)]
    pub mean_history: f64,
    #[arg(long, default_value_t = 5)]
    pub min_history: usize,
    /// Fewest items per session.
    #[arg(long, default_value_t = 3)]
    pub session_min: usize,
    /// Most items per session.
    #[arg(long, default_value_t = 7)]
    pub session_max: usize,
    #[arg(long, default_value_t = 64)]
    pub text_dim: usize,
    #[arg(long, default_value_t = 48)]
    pub image_dim: usize,
    /// Weight of clickbait attractiveness in the logged choice model (0 = no clickbait gap).
    #[arg(long)]
    pub clickbait: Option<f64>,
    /// Weight of log-popularity in the logged choice model.
    #[arg(long)]
    pub popularity: Option<f64>,
}

pub fn run(a: SynthArgs) -> Result<()> {
    let mut opts = SynthOptions {
        users: a.users,
        items: a.items,
        topics: a.topics,
        latent_dim: a.latent_dim,
        mean_history: a.mean_history,
        min_history: a.min_history,
        session_min: a.session_min,
        session_max: a.session_max,
        text_dim: a.text_dim,
        image_dim: a.image_dim,
        seed: a.seed,
        ..SynthOptions::default()
    };
    if let Some(c) = a.clickbait {
        opts.params.choice_attract = c;
    }
    if let Some(p) = a.popularity {
        opts.params.choice_pop = p;
    }
    tracing::info!("synth: {:?}", opts);
    synth(&opts, &a.out)?;
    Ok(())
}
