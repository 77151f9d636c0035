//! `onerec tokenize`: maps flags onto [`crate::tokenizer::TokenizeOptions`] and calls
//! [`crate::tokenizer::tokenize_files`].

use crate::tokenizer::{tokenize_files, Collisions, Method, TokenizeOptions};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// Item embeddings of one modality, NAME=PATH (.safetensors or .npy); repeat per
    /// modality. A bare PATH is named after its file stem.
    #[arg(long = "embeddings", required = true, value_name = "NAME=PATH")]
    pub embeddings: Vec<String>,
    /// Quantizer.
    #[arg(long, value_enum, default_value = "balanced-rq-kmeans")]
    pub method: Method,
    /// Quantizer levels (a disambiguation level may be added).
    #[arg(long, default_value_t = 3)]
    pub levels: usize,
    /// Codebook size: one for every level, or one per level (`256,256,128`).
    #[arg(long, default_value = "256", value_name = "K[,K...]")]
    pub codebook_size: String,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output artifact directory (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Lloyd iterations per level (k-means methods).
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// k-means methods: levels of more items than this fit their centroids on a seeded
    /// sample of this many (at least 32 per centroid), then assign every item; 0 = never.
    #[arg(long, default_value_t = crate::tokenizer::kmeans::DEFAULT_FIT_SAMPLE)]
    pub kmeans_sample: usize,
    /// How items sharing a full path are separated.
    #[arg(long, value_enum, default_value = "disambiguate")]
    pub collisions: Collisions,
    /// PCA target width: NAME=WIDTH for one modality, or WIDTH for all (repeatable).
    #[arg(long, value_name = "[NAME=]WIDTH")]
    pub pca: Vec<String>,
    /// Weight of a modality in the concatenation, NAME=W (repeatable; default 1).
    #[arg(long, value_name = "NAME=W")]
    pub weight: Vec<String>,
    /// Align the fused vectors with co-occurrences in this prepared dataset's
    /// training histories (contrastive projection) before quantizing.
    #[arg(long, value_name = "DATASET_DIR")]
    pub align_with: Option<PathBuf>,
    /// Co-occurrence window (positions) for --align-with.
    #[arg(long, default_value_t = 3)]
    pub align_window: usize,
    /// Epochs of the alignment projection.
    #[arg(long, default_value_t = 2)]
    pub align_epochs: usize,
    /// RQ-VAE training epochs.
    #[arg(long, default_value_t = 20)]
    pub vae_epochs: usize,
    /// RQ-VAE latent width.
    #[arg(long, default_value_t = 32)]
    pub vae_latent: usize,
    /// RQ-VAE hidden width.
    #[arg(long, default_value_t = 256)]
    pub vae_hidden: usize,
    /// Print the metrics table.
    #[arg(long)]
    pub report: bool,
}

fn name_value<'a>(flag: &str, s: &'a str) -> Result<(&'a str, &'a str)> {
    s.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .with_context(|| format!("--{flag} {s}: expected NAME=VALUE"))
}

/// Builds the library options from the flags.
pub fn options(a: &TokenizeArgs) -> Result<(TokenizeOptions, Vec<(String, PathBuf)>)> {
    let mut o = TokenizeOptions {
        method: a.method,
        levels: a.levels,
        seed: a.seed,
        iters: a.iters,
        kmeans_sample: a.kmeans_sample,
        collisions: a.collisions,
        ..Default::default()
    };
    o.codebook_sizes = a
        .codebook_size
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--codebook-size {}: expected K or K1,K2,...", a.codebook_size))?;
    if o.codebook_sizes.contains(&0) {
        bail!("--codebook-size {}: sizes must be at least 1", a.codebook_size);
    }
    for p in &a.pca {
        match p.split_once('=') {
            Some(_) => {
                let (k, v) = name_value("pca", p)?;
                o.pca.push((k.to_string(), v.parse().with_context(|| format!("--pca {p}: WIDTH must be an integer"))?));
            }
            None => o.pca_all = Some(p.parse().with_context(|| format!("--pca {p}: expected WIDTH or NAME=WIDTH"))?),
        }
    }
    for w in &a.weight {
        let (k, v) = name_value("weight", w)?;
        o.weights.push((k.to_string(), v.parse().with_context(|| format!("--weight {w}: W must be a number"))?));
    }
    o.align.window = a.align_window;
    o.align.epochs = a.align_epochs;
    o.rqvae.epochs = a.vae_epochs;
    o.rqvae.latent = a.vae_latent;
    o.rqvae.hidden = a.vae_hidden;
    let mut inputs = Vec::new();
    for e in &a.embeddings {
        let (name, path) = match e.split_once('=') {
            Some(_) => {
                let (k, v) = name_value("embeddings", e)?;
                (k.to_string(), PathBuf::from(v))
            }
            None => {
                let p = PathBuf::from(e);
                let stem = p
                    .file_name()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.split('.').next())
                    .unwrap_or("embeddings")
                    .to_string();
                (stem, p)
            }
        };
        inputs.push((name, path));
    }
    Ok((o, inputs))
}

pub fn run(args: TokenizeArgs) -> Result<()> {
    let (opts, inputs) = options(&args)?;
    let _lock = crate::util::lock::OutLock::acquire(&args.out)?;
    let fit = tokenize_files(&opts, &inputs, args.align_with.as_deref(), &args.out)?;
    if args.report {
        print!("{}", fit.metrics.table());
    }
    if let Some(kib) = peak_rss_kib() {
        tracing::info!("tokenize: peak memory (VmHWM) {:.0} MiB", kib as f64 / 1024.0);
    }
    Ok(())
}

/// This process's peak resident memory in KiB (Linux `/proc/self/status`), if known.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
