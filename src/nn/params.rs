//! Variables in a stable order and byte-exact weight files: sorted names, deterministic
//! safetensors bytes, atomic saves, strict loads and deep copies of a `VarMap`.

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use std::collections::HashMap;
use std::path::Path;

/// The variables of `vm`, sorted by name (VarMap order is not stable).
pub fn sorted_vars(vm: &VarMap) -> Vec<(String, Var)> {
    let data = vm.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Serialises named tensors to safetensors bytes (deterministic: sorted names).
pub fn safetensors_bytes(tensors: &[(String, Tensor)]) -> Result<Vec<u8>> {
    let mut sorted: Vec<(String, Tensor)> = tensors.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(safetensors::tensor::serialize(sorted.iter().map(|(k, t)| (k.clone(), t)), None)?)
}

/// Writes the variables of `vm` (plus `extra` tensors) to `path` atomically.
pub fn save_varmap(vm: &VarMap, extra: &[(String, Tensor)], path: &Path) -> Result<()> {
    let mut all: Vec<(String, Tensor)> = sorted_vars(vm).into_iter().map(|(k, v)| (k, v.as_tensor().clone())).collect();
    all.extend(extra.iter().cloned());
    let bytes = safetensors_bytes(&all)?;
    crate::util::io::atomic_write(path, &bytes)
}

/// Loads every tensor of a safetensors file.
pub fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .with_context(|| format!("{}: not a valid safetensors file", path.display()))
}

/// Sets every variable of `vm` from `tensors` (names and shapes must match exactly).
pub fn fill_varmap(vm: &VarMap, tensors: &HashMap<String, Tensor>, origin: &Path) -> Result<()> {
    for (name, var) in sorted_vars(vm) {
        let t = tensors
            .get(&name)
            .with_context(|| format!("{}: tensor `{name}` missing (file from another model?)", origin.display()))?;
        if t.shape() != var.shape() {
            anyhow::bail!(
                "{}: tensor `{name}` has shape {:?}, the model expects {:?} (saved with another config?)",
                origin.display(),
                t.dims(),
                var.dims()
            );
        }
        var.set(&t.to_dtype(DType::F32)?)?;
    }
    Ok(())
}

/// A deep copy of a VarMap's values into a fresh, independent VarMap.
#[cfg(any(test, feature = "testkit"))]
pub fn clone_varmap(vm: &VarMap) -> Result<VarMap> {
    let out = VarMap::new();
    {
        let mut data = out.data().lock().unwrap_or_else(|e| e.into_inner());
        for (name, var) in sorted_vars(vm) {
            data.insert(name, Var::from_tensor(&var.as_tensor().copy()?)?);
        }
    }
    Ok(out)
}
