//! Seeded initialisation of every variable of a `VarMap`, in sorted name order.
//!
//! candle's CPU RNG cannot be seeded, so every model is built through a `VarMap` (its
//! initialisers' values are thrown away) and then re-initialised here from named
//! `util::rng` streams.

use super::params::sorted_vars;
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand_distr::{Distribution, Normal};

/// The one init policy. Each variable is drawn from its own stream `PREFIX/NAME`
/// (adding a variable leaves the others' values unchanged), by name and shape:
/// - norm scales (`*norm*.weight`): 1; biases (`*bias`): 0;
/// - embeddings (`*emb*`) and other vectors: N(0, 0.02^2);
/// - matrices [out, in]: N(0, 1/in), the std halved for the projections that write
///   into a residual stream (attention `o`, FFN `down`).
pub fn seeded(varmap: &VarMap, seed: u64, prefix: &str) -> Result<()> {
    for (name, var) in sorted_vars(varmap) {
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let data: Vec<f32> = match std_of(&name, &dims) {
            Err(constant) => vec![constant; n],
            Ok(std) => {
                let mut rng = crate::util::rng::stream(seed, &format!("{prefix}/{name}"));
                let normal = Normal::new(0.0f64, std).context("init distribution")?;
                (0..n).map(|_| normal.sample(&mut rng) as f32).collect()
            }
        };
        var.set(&Tensor::from_vec(data, dims, &Device::Cpu)?)?;
    }
    Ok(())
}

/// The std of a random variable, or `Err(value)` for a constant one.
fn std_of(name: &str, dims: &[usize]) -> std::result::Result<f64, f32> {
    if name.contains("norm") && name.ends_with("weight") {
        return Err(1.0);
    }
    if name.ends_with("bias") {
        return Err(0.0);
    }
    if name.contains("emb") || dims.len() < 2 {
        return Ok(0.02);
    }
    let fan_in = *dims.last().unwrap_or(&1) as f64;
    let std = (1.0 / fan_in).sqrt();
    Ok(if name.ends_with(".o.weight") || name.ends_with(".down.weight") { std / 2.0 } else { std })
}
