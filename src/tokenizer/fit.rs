//! The tokenizer's library API: options, [`fit`] (fusion -> optional alignment ->
//! quantizer -> unique paths -> metrics), [`write_artifact`] and [`tokenize_files`].

use super::align::{align, AlignOptions, AlignReport};
use super::fuse::{fuse, Part};
use super::kmeans::{reconstruct, rq_kmeans, Residual, DEFAULT_FIT_SAMPLE};
use super::paths::{metrics, resolve, Collisions, Metrics};
use super::rqvae::{self, RqVaeOptions};
use super::SemanticIds;
use crate::data::{Dataset, Embeddings};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The quantizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Residual k-means (k-means++ init).
    RqKmeans,
    /// Residual k-means whose every level is an exactly balanced k-means.
    BalancedRqKmeans,
    /// Residual-quantized VAE trained in candle.
    RqVae,
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::RqKmeans => "rq-kmeans",
            Method::BalancedRqKmeans => "balanced-rq-kmeans",
            Method::RqVae => "rq-vae",
        }
    }
}

/// Everything `fit` needs besides the data (recorded in the manifest).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenizeOptions {
    pub method: Method,
    pub levels: usize,
    /// One size for every level, or one per level.
    pub codebook_sizes: Vec<usize>,
    pub seed: u64,
    /// Lloyd iterations per level (k-means methods).
    pub iters: usize,
    /// k-means methods: levels of more items than this fit their centroids on a seeded
    /// sample of this many (at least 32 per centroid), then assign every item (0 = never
    /// sample). Absent from manifests while it has its default.
    #[serde(default = "default_kmeans_sample", skip_serializing_if = "is_default_kmeans_sample")]
    pub kmeans_sample: usize,
    pub collisions: Collisions,
    /// PCA width per modality (name, width).
    pub pca: Vec<(String, usize)>,
    /// PCA width for modalities without their own entry.
    pub pca_all: Option<usize>,
    /// Weight per modality (default 1).
    pub weights: Vec<(String, f32)>,
    pub align: AlignOptions,
    pub rqvae: RqVaeOptions,
}

impl Default for TokenizeOptions {
    fn default() -> Self {
        TokenizeOptions {
            method: Method::BalancedRqKmeans,
            levels: 3,
            codebook_sizes: vec![256],
            seed: 42,
            iters: 20,
            kmeans_sample: DEFAULT_FIT_SAMPLE,
            collisions: Collisions::Disambiguate,
            pca: vec![],
            pca_all: None,
            weights: vec![],
            align: AlignOptions::default(),
            rqvae: RqVaeOptions::default(),
        }
    }
}

pub(crate) fn default_kmeans_sample() -> usize {
    DEFAULT_FIT_SAMPLE
}

pub(crate) fn is_default_kmeans_sample(v: &usize) -> bool {
    *v == DEFAULT_FIT_SAMPLE
}

impl TokenizeOptions {
    /// Codebook size of each quantizer level.
    pub fn sizes(&self) -> Result<Vec<usize>> {
        if self.levels == 0 {
            bail!("--levels must be at least 1");
        }
        let s = match self.codebook_sizes.len() {
            1 => vec![self.codebook_sizes[0]; self.levels],
            l if l == self.levels => self.codebook_sizes.clone(),
            l => {
                bail!("--codebook-size has {l} values but --levels is {}; give one size or one per level", self.levels)
            }
        };
        if s.contains(&0) {
            bail!("--codebook-size: sizes must be at least 1");
        }
        Ok(s)
    }
}

/// A fitted tokenizer: the artifact, its tensors and metrics.
pub struct TokenizerFit {
    pub ids: SemanticIds,
    /// (tensor name, shape, data) for codebooks.safetensors.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub metrics: Metrics,
    /// (stage, seconds)
    pub timings: Vec<(String, f64)>,
    pub fusion: Vec<Part>,
    pub fused_dim: usize,
    pub align: Option<AlignReport>,
    /// Extra facts of the quantizer (losses, reseeds).
    pub quantizer: serde_json::Value,
}

/// Fits the tokenizer on `inputs` (modality name, embeddings), optionally aligned
/// with the co-occurrences of `dataset`'s training histories.
pub fn fit(opts: &TokenizeOptions, inputs: &[(String, Embeddings)], dataset: Option<&Dataset>) -> Result<TokenizerFit> {
    let sizes = opts.sizes()?;
    let mut timings = Vec::new();
    let t = Instant::now();
    let pca_of = |name: &str| opts.pca.iter().find(|p| p.0 == name).map(|p| p.1).or(opts.pca_all);
    let weight_of = |name: &str| opts.weights.iter().find(|p| p.0 == name).map(|p| p.1).unwrap_or(1.0);
    for (name, _) in opts.pca.iter().map(|p| (&p.0, p.1)).chain(opts.weights.iter().map(|p| (&p.0, 0))) {
        if !inputs.iter().any(|i| &i.0 == name) {
            bail!(
                "--pca/--weight names modality `{name}`, but the embeddings are {:?}",
                inputs.iter().map(|i| &i.0).collect::<Vec<_>>()
            );
        }
    }
    let fused = fuse(inputs, &pca_of, &weight_of, opts.seed)?;
    let (n, d) = (fused.n, fused.d);
    if let Some(&k) = sizes.iter().find(|&&k| k > n) {
        bail!("codebook size {k} exceeds the number of items {n}; use a smaller --codebook-size");
    }
    timings.push(("fusion".to_string(), t.elapsed().as_secs_f64()));
    tracing::info!("fused {} modalities into [{n}, {d}]", fused.parts.len());
    let (x, align_report) = match dataset {
        Some(ds) => {
            let t = Instant::now();
            let (x, r) = align(&fused.data, n, d, &fused.item_ids, ds, &opts.align, opts.seed)?;
            timings.push(("alignment".to_string(), t.elapsed().as_secs_f64()));
            (x, Some(r))
        }
        None => (fused.data.clone(), None),
    };
    let t = Instant::now();
    let mut tensors = Vec::new();
    let mut quantizer = serde_json::json!({});
    let (res, vae): (Residual, Option<rqvae::VaeFit>) = match opts.method {
        Method::RqKmeans | Method::BalancedRqKmeans => (
            rq_kmeans(
                &x,
                d,
                &sizes,
                opts.iters,
                opts.method == Method::BalancedRqKmeans,
                opts.kmeans_sample,
                opts.seed,
            )?,
            None,
        ),
        Method::RqVae => {
            let v = rqvae::fit(&x, d, &sizes, &opts.rqvae, opts.seed)?;
            quantizer = serde_json::json!({"loss_first": v.loss_first, "loss_last": v.loss_last, "dead_codes_reseeded": v.reseeded});
            (v.residual.clone(), Some(v))
        }
    };
    timings.push(("quantizer".to_string(), t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let cdim = res.codebooks.first().map(|c| c.len() / sizes[0]).unwrap_or(d);
    let last_cb = res.codebooks.last().map(|c| c.as_slice()).unwrap_or(&[]);
    let resolved = resolve(&res.codes, &sizes, opts.collisions, Some((&res.last_input, last_cb, cdim)));
    // Reconstruction of the quantizer input from the final (possibly reassigned) codes.
    let levels = sizes.len();
    let qcodes: Vec<u32> =
        resolved.codes.chunks_exact(resolved.sizes.len()).flat_map(|p| p[..levels].iter().copied()).collect();
    let recon = match &vae {
        None => reconstruct(&qcodes, levels, &res.codebooks, d),
        Some(v) if resolved.reassigned == 0 => v.recon.clone(),
        Some(v) => v.decoder()?.decode(&qcodes, levels, &res.codebooks)?,
    };
    let (mut num, mut den) = (0f64, 0f64);
    for (a, b) in x.iter().zip(&recon) {
        num += ((a - b) as f64).powi(2);
        den += (*a as f64).powi(2);
    }
    let rel = if den > 0.0 { num / den } else { 0.0 };
    let m = metrics(&resolved.codes, &resolved.sizes, &resolved, rel);
    timings.push(("paths".to_string(), t.elapsed().as_secs_f64()));
    tracing::info!(
        "{} collisions before resolution (longest chain {}), {} reassigned; relative reconstruction error {rel:.4}",
        resolved.collisions_before,
        resolved.longest_chain,
        resolved.reassigned
    );
    for (l, cb) in res.codebooks.iter().enumerate() {
        tensors.push((format!("codebook.{l}"), vec![sizes[l], cdim], cb.clone()));
    }
    for p in &fused.parts {
        if let Some(pca) = &p.pca {
            tensors.push((format!("fusion.{}.pca_mean", p.name), vec![pca.mean.len()], pca.mean.clone()));
            tensors.push((
                format!("fusion.{}.pca_components", p.name),
                vec![pca.width, p.d_in],
                pca.components.clone(),
            ));
        }
    }
    if let Some(v) = vae {
        tensors.extend(v.weights);
    }
    let ids = SemanticIds::new(fused.item_ids.clone(), resolved.sizes.clone(), resolved.codes.clone())
        .context("internal error: resolved paths are not unique")?;
    Ok(TokenizerFit {
        ids,
        tensors,
        metrics: m,
        timings,
        fusion: fused.parts,
        fused_dim: d,
        align: align_report,
        quantizer,
    })
}

/// An input file recorded in the manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InputFile {
    pub name: String,
    pub path: String,
    pub sha256: String,
}

/// Writes the artifact directory atomically: codebooks.safetensors, codes.tsv,
/// manifest.json, and timings.json (the only file that differs between identical runs).
pub fn write_artifact(
    dir: &Path,
    fit: &TokenizerFit,
    opts: &TokenizeOptions,
    inputs: &[InputFile],
    dataset: Option<&InputFile>,
) -> Result<()> {
    crate::util::io::atomic_dir(dir, |tmp| {
        use safetensors::tensor::TensorView;
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = fit
            .tensors
            .iter()
            .map(|(n, s, v)| (n.clone(), s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .collect();
        let mut views = Vec::new();
        for (n, s, b) in &bytes {
            views.push((n.clone(), TensorView::new(safetensors::Dtype::F32, s.clone(), b)?));
        }
        views.sort_by(|a, b| a.0.cmp(&b.0));
        crate::util::io::atomic_write(&tmp.join("codebooks.safetensors"), &safetensors::serialize(views, None)?)?;
        fit.ids.write_codes(tmp)?;
        let manifest = serde_json::json!({
            "format": "onerec-tokenizer/1",
            "method": opts.method.name(),
            "levels": fit.ids.levels(),
            "quantizer_levels": opts.levels,
            "sizes": fit.ids.codebook_sizes,
            "disambiguation_level": fit.ids.levels() > opts.levels,
            "inputs": inputs,
            "align_with": dataset,
            "seed": opts.seed,
            "options": opts,
            "fusion": fit.fusion,
            "fused_dim": fit.fused_dim,
            "alignment": fit.align,
            "quantizer": fit.quantizer,
            "codes_sha256": crate::util::io::sha256_file(&tmp.join("codes.tsv"))?,
            "metrics": fit.metrics,
        });
        crate::util::io::write_json(&tmp.join("manifest.json"), &manifest)?;
        let timings: serde_json::Map<_, _> =
            fit.timings.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
        crate::util::io::write_json(&tmp.join("timings.json"), &timings)
    })
    .with_context(|| format!("writing tokenizer artifact {}", dir.display()))?;
    tracing::info!(
        "wrote tokenizer artifact {} ({} items, sizes {:?})",
        dir.display(),
        fit.ids.n_items(),
        fit.ids.codebook_sizes
    );
    Ok(())
}

/// Loads embedding files (name, path) and an optional dataset dir, fits, and writes
/// the artifact to `out`. Nothing is written when any step fails.
pub fn tokenize_files(
    opts: &TokenizeOptions,
    inputs: &[(String, PathBuf)],
    align_with: Option<&Path>,
    out: &Path,
) -> Result<TokenizerFit> {
    let t = Instant::now();
    let mut embs = Vec::new();
    let mut files = Vec::new();
    for (name, path) in inputs {
        let e = Embeddings::load(path).with_context(|| format!("--embeddings {name}={}", path.display()))?;
        tracing::info!("read {} ({name}): [{}, {}]", path.display(), e.n, e.d);
        files.push(InputFile {
            name: name.clone(),
            path: path.display().to_string(),
            sha256: crate::util::io::sha256_file(path)?,
        });
        embs.push((name.clone(), e));
    }
    let (ds, ds_file) = match align_with {
        Some(dir) => {
            let ds = Dataset::load(dir).with_context(|| format!("--align-with {}", dir.display()))?;
            let sha = crate::util::io::sha256_file(&dir.join("histories.safetensors")).unwrap_or_default();
            (Some(ds), Some(InputFile { name: "dataset".into(), path: dir.display().to_string(), sha256: sha }))
        }
        None => (None, None),
    };
    let load_s = t.elapsed().as_secs_f64();
    let mut fit = fit(opts, &embs, ds.as_ref())?;
    fit.timings.insert(0, ("load".to_string(), load_s));
    fit.timings.push(("total".to_string(), t.elapsed().as_secs_f64()));
    write_artifact(out, &fit, opts, &files, ds_file.as_ref())?;
    Ok(fit)
}
