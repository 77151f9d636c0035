//! SASRec checkpoints: `sasrec.json` (architecture, item catalogue fingerprint,
//! provenance) and `model.safetensors`. The meta file's name is what `onerec eval`
//! recognises a SASRec checkpoint by. Training checkpoints (`last/`) add
//! `optimizer.safetensors` and `train_state.json`.

use super::config::SasrecModelConfig;
use super::model::Sasrec;
use crate::data::Dataset;
use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const META_FILE: &str = "sasrec.json";
pub const FORMAT: u32 = 1;
/// Most items a checkpoint may claim (embedding rows; keeps a corrupt file from sizing a huge table).
pub const MAX_ITEMS: usize = 1 << 26;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SasrecMeta {
    pub format: u32,
    /// Always "sasrec".
    pub kind: String,
    pub model: SasrecModelConfig,
    pub n_items: usize,
    /// sha256 of the dataset's item ids (one per line, dense order): scores are only
    /// meaningful on a dataset with the same catalogue.
    pub items_sha256: String,
    /// Training epochs completed.
    pub epoch: usize,
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Metrics at save time.
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// The fingerprint of a dataset's item catalogue.
pub fn items_sha256(ds: &Dataset) -> String {
    let mut text = String::new();
    for id in &ds.item_ids {
        text.push_str(id);
        text.push('\n');
    }
    crate::util::io::sha256_bytes(text.as_bytes())
}

/// The SASRec checkpoint directory `dir` names: itself or its `best/`; None if neither
/// holds `sasrec.json` (so it is not a SASRec checkpoint).
pub fn find(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("best")].into_iter().find(|d| d.join(META_FILE).is_file())
}

/// Reads and bounds-checks `sasrec.json` of checkpoint dir `dir`.
pub fn read_meta(dir: &Path) -> Result<SasrecMeta> {
    let path = dir.join(META_FILE);
    let meta: SasrecMeta = crate::util::io::read_json(&path)?;
    (|| -> Result<()> {
        ensure!(meta.kind == "sasrec", "kind = {:?}, expected \"sasrec\"", meta.kind);
        ensure!(meta.format == FORMAT, "format {} (this build reads {FORMAT})", meta.format);
        ensure!(meta.n_items > 0 && meta.n_items <= MAX_ITEMS, "n_items = {} must be in 1..={MAX_ITEMS}", meta.n_items);
        meta.model.validate()?;
        let table = (meta.n_items as u128 + 1) * meta.model.d_model as u128;
        ensure!(table <= crate::model::limits::MAX_MODEL_PARAMS, "item table of {table} values is above the limit");
        Ok(())
    })()
    .with_context(|| format!("{}: invalid SASRec checkpoint metadata", path.display()))?;
    Ok(meta)
}

/// Writes the model part of a checkpoint into `dir` (normally an atomic temp dir).
pub fn write_model(dir: &Path, varmap: &VarMap, meta: &SasrecMeta) -> Result<()> {
    let tensors: HashMap<String, Tensor> =
        crate::nn::params::sorted_vars(varmap).into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).context("writing model.safetensors")?;
    crate::util::io::write_json(&dir.join(META_FILE), meta)
}

/// A loaded SASRec checkpoint.
pub struct SasrecCheckpoint {
    pub model: Sasrec,
    pub varmap: VarMap,
    pub meta: SasrecMeta,
    pub dir: PathBuf,
}

/// Loads checkpoint `dir` (or its `best/`).
pub fn load(dir: &Path) -> Result<SasrecCheckpoint> {
    let Some(dir) = find(dir) else {
        bail!("{} is not a SASRec checkpoint (no {META_FILE}, nor best/{META_FILE})", dir.display())
    };
    let meta = read_meta(&dir)?;
    let varmap = VarMap::new();
    let model = Sasrec::new(&meta.model, meta.n_items, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
    let path = dir.join("model.safetensors");
    let tensors =
        candle_core::safetensors::load(&path, &Device::Cpu).with_context(|| format!("reading {}", path.display()))?;
    for (name, var) in crate::nn::params::sorted_vars(&varmap) {
        let t = tensors.get(&name).with_context(|| format!("{}: missing tensor {name}", path.display()))?;
        ensure!(
            t.dims() == var.dims() && t.dtype() == DType::F32,
            "{}: {name} is {:?} {:?}, expected f32 {:?}",
            path.display(),
            t.dtype(),
            t.dims(),
            var.dims()
        );
        var.set(t)?;
    }
    Ok(SasrecCheckpoint { model, varmap, meta, dir })
}

/// Refuses a dataset whose item catalogue differs from the checkpoint's.
pub fn check_dataset(meta: &SasrecMeta, dir: &Path, ds: &Dataset) -> Result<()> {
    ensure!(
        meta.n_items == ds.n_items() && meta.items_sha256 == items_sha256(ds),
        "checkpoint {} was trained on a catalogue of {} items (sha256 {}) but the dataset has {} items (sha256 {}); \
         evaluate it on the dataset it was trained on",
        dir.display(),
        meta.n_items,
        meta.items_sha256,
        ds.n_items(),
        items_sha256(ds)
    );
    Ok(())
}
