//! Checkpoints: weights (and MoE router-bias buffers) in `model.safetensors`, the
//! architecture and provenance in `checkpoint.json`, and a copy of the semantic ids
//! (`codes.tsv`, re-indexed to the dataset's dense item ids) so a checkpoint is
//! self-contained. Training checkpoints add optimizer state (written by `train`).

use super::{ModelConfig, OneRecModel, Vocab};
use crate::nn::params::sorted_vars;
use crate::tokenizer::SemanticIds;
use anyhow::{bail, ensure, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const FORMAT: u32 = 1;

/// `checkpoint.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format: u32,
    pub model: ModelConfig,
    pub vocab: Vocab,
    pub n_items: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// sha256 of the tokenizer's codes (its `codes.tsv` content, tokenizer row order).
    pub tokenizer_sha256: String,
    /// sha256 of the `codes.tsv` copied into this checkpoint (dense dataset order).
    pub codes_sha256: String,
    pub seed: u64,
    /// The prepared dataset it was trained on (canonical path), so later commands can
    /// default `--data` to it. Absent in older checkpoints and for in-memory datasets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Free-form extra facts (metrics at save time, ...).
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// A loaded checkpoint: the model and the semantic ids it was trained with, re-indexed
/// to the training dataset's dense item ids.
pub struct Checkpoint {
    pub model: OneRecModel,
    pub semantic_ids: SemanticIds,
    pub dir: PathBuf,
    /// The model's parameters (for further training, e.g. alignment).
    pub varmap: VarMap,
    pub meta: CheckpointMeta,
}

/// Content fingerprint of semantic ids: the sha256 of their `codes.tsv` text, i.e. what
/// [`SemanticIds::fingerprint`] gives for the tokenizer directory they came from.
pub fn fingerprint(sids: &SemanticIds) -> String {
    sids.content_sha256()
}

/// Refuses a tokenizer other than the one the checkpoint was trained with (checkpoints
/// from builds that hashed a `# levels=` header line still match their tokenizer).
pub fn check_tokenizer(meta: &CheckpointMeta, ckpt_dir: &Path, tokenizer: &SemanticIds) -> Result<()> {
    let fp = fingerprint(tokenizer);
    if fp != meta.tokenizer_sha256 && tokenizer.legacy_sha256() != meta.tokenizer_sha256 {
        bail!(
            "tokenizer mismatch: checkpoint {} was trained with tokenizer codes sha256 {} but the given tokenizer has {}; \
             pass the tokenizer directory used for pretraining (or start a fresh --out)",
            ckpt_dir.display(),
            meta.tokenizer_sha256,
            fp
        );
    }
    ensure!(
        tokenizer.codebook_sizes == meta.vocab.codebook_sizes,
        "tokenizer mismatch: checkpoint {} has codebook sizes {:?}, the given tokenizer {:?}",
        ckpt_dir.display(),
        meta.vocab.codebook_sizes,
        tokenizer.codebook_sizes
    );
    Ok(())
}

/// Writes the model part of a checkpoint into `dir` (an already-created directory,
/// normally the temp dir of [`crate::util::io::atomic_dir`]).
pub fn write_model(
    dir: &Path,
    model: &OneRecModel,
    varmap: &VarMap,
    sids_dense: &SemanticIds,
    meta: &CheckpointMeta,
) -> Result<()> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, v) in sorted_vars(varmap) {
        tensors.insert(name, v.as_tensor().clone());
    }
    for (name, t) in model.buffers()? {
        tensors.insert(name, t);
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).context("writing model.safetensors")?;
    // codes.tsv only: the sizes are in checkpoint.json (`vocab`).
    sids_dense.write_codes(dir)?;
    let mut meta = meta.clone();
    meta.codes_sha256 = crate::util::io::sha256_file(&dir.join("codes.tsv"))?;
    crate::util::io::write_json(&dir.join("checkpoint.json"), &meta)
}

/// Resolves a checkpoint dir: itself, or `best/` of a pretrain/align output dir.
pub fn resolve(dir: &Path) -> Result<PathBuf> {
    if dir.join("checkpoint.json").exists() {
        Ok(dir.to_path_buf())
    } else if dir.join("best").join("checkpoint.json").exists() {
        Ok(dir.join("best"))
    } else {
        bail!("{} is not a checkpoint (no checkpoint.json, nor best/checkpoint.json); pass a pretrain --out dir or one of its best/ last/ dirs", dir.display())
    }
}

/// The resolved checkpoint dir (see [`resolve`]) and its `checkpoint.json`, without
/// loading the weights.
pub fn read_meta(dir: &Path) -> Result<(PathBuf, CheckpointMeta)> {
    let dir = resolve(dir)?;
    let path = dir.join("checkpoint.json");
    let meta: CheckpointMeta = crate::util::io::read_json(&path)?;
    validate_meta(&meta).with_context(|| format!("{}: invalid checkpoint metadata", path.display()))?;
    Ok((dir, meta))
}

/// Bounds the sizes in `checkpoint.json` (vocabulary, architecture, item count) before
/// any of them sizes an allocation: the same limits as a run config
/// ([`super::limits`]) and tokenizer ([`crate::tokenizer::artifact::check_codebook_sizes`]).
pub fn validate_meta(meta: &CheckpointMeta) -> Result<()> {
    crate::tokenizer::artifact::check_codebook_sizes(&meta.vocab.codebook_sizes).context("vocab")?;
    meta.model.validate().context("model")?;
    meta.model.check_limits()?;
    let table = meta.vocab.size() as u128 * meta.model.d_model as u128;
    ensure!(
        table <= super::limits::MAX_MODEL_PARAMS,
        "vocabulary of {} tokens x d_model {} = {table} embedding values, above the limit {}",
        meta.vocab.size(),
        meta.model.d_model,
        super::limits::MAX_MODEL_PARAMS
    );
    ensure!(meta.n_items <= MAX_ITEMS, "n_items = {} is above the limit {MAX_ITEMS}", meta.n_items);
    Ok(())
}

/// Most catalogue items a checkpoint may claim (item rows are u32).
pub const MAX_ITEMS: usize = u32::MAX as usize;

/// The dataset directory to use with checkpoint `ckpt_dir`: `explicit` (`--data`) if
/// given, else the one recorded in its metadata. An error says to pass `--data` when
/// nothing is recorded or the recorded directory is gone.
pub fn dataset_dir(explicit: Option<&Path>, ckpt_dir: &Path, meta: &CheckpointMeta) -> Result<PathBuf> {
    if let Some(d) = explicit {
        return Ok(d.to_path_buf());
    }
    match &meta.data_dir {
        Some(d) if d.join("dataset.json").exists() => {
            tracing::info!("using the dataset recorded in checkpoint {}: {}", ckpt_dir.display(), d.display());
            Ok(d.clone())
        }
        Some(d) => {
            bail!("checkpoint {} was trained on dataset {}, which no longer exists (no dataset.json there); pass --data DIR", ckpt_dir.display(), d.display())
        }
        None => {
            bail!("checkpoint {} does not record its dataset (older checkpoint); pass --data DIR", ckpt_dir.display())
        }
    }
}

/// Loads a checkpoint directory, or the best checkpoint of a pretrain/align output dir.
pub fn load(dir: &Path) -> Result<Checkpoint> {
    let (dir, meta) = read_meta(dir)?;
    ensure!(meta.format == FORMAT, "{}: checkpoint format {} (this build reads {FORMAT})", dir.display(), meta.format);
    let codes = dir.join("codes.tsv");
    let sha = crate::util::io::sha256_file(&codes)?;
    if sha != meta.codes_sha256 {
        bail!(
            "{}: sha256 {sha} differs from {} recorded in checkpoint.json (file modified or checkpoint mixed up)",
            codes.display(),
            meta.codes_sha256
        );
    }
    let sids = SemanticIds::read_codes(&codes, Some(&meta.vocab.codebook_sizes))?;
    ensure!(
        sids.codebook_sizes == meta.vocab.codebook_sizes && sids.n_items() == meta.n_items,
        "{}: codes.tsv ({} items, levels {:?}) does not match checkpoint.json ({} items, levels {:?})",
        dir.display(),
        sids.n_items(),
        sids.codebook_sizes,
        meta.n_items,
        meta.vocab.codebook_sizes
    );
    meta.model.validate().with_context(|| format!("{}: model config", dir.display()))?;
    let (model, varmap) =
        OneRecModel::build(&meta.model, Vocab::new(meta.vocab.codebook_sizes.clone()), sids.codes.clone(), meta.seed)?;
    let wpath = dir.join("model.safetensors");
    let tensors =
        candle_core::safetensors::load(&wpath, &Device::Cpu).with_context(|| format!("reading {}", wpath.display()))?;
    for (name, var) in sorted_vars(&varmap) {
        let t = tensors.get(&name).with_context(|| format!("{}: missing tensor {name}", wpath.display()))?;
        ensure!(
            t.dims() == var.dims(),
            "{}: tensor {name} has shape {:?}, model expects {:?}",
            wpath.display(),
            t.dims(),
            var.dims()
        );
        var.set(t)?;
    }
    for (name, t) in &tensors {
        if name.starts_with("buffer.") && !model.set_buffer(name, t)? {
            bail!("{}: unknown buffer {name}", wpath.display());
        }
    }
    Ok(Checkpoint { model, semantic_ids: sids, dir, varmap, meta })
}
