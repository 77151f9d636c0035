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

/// The transformer policy ([`crate::model`]), each variable from its own stream
/// `init/NAME` (adding a variable leaves the others' values unchanged): norm scales 1,
/// embeddings (`*_emb`) N(0, 0.02^2), linear weights N(0, 1/fan_in), halved (std / 2) for
/// the projections that write into the residual stream (attention `o`, FFN `down`).
pub fn transformer(varmap: &VarMap, seed: u64) -> Result<()> {
    for (name, var) in sorted_vars(varmap) {
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let data: Vec<f32> = if name.ends_with("norm1.weight")
            || name.ends_with("norm2.weight")
            || name.ends_with("norm3.weight")
            || name.ends_with("final_norm.weight")
        {
            vec![1.0; n]
        } else {
            let std = if name.ends_with("_emb") {
                0.02
            } else {
                let fan_in = *dims.last().unwrap_or(&1) as f64;
                let mut s = (1.0 / fan_in).sqrt();
                if name.ends_with(".o.weight") || name.ends_with(".down.weight") {
                    s /= 2.0;
                }
                s
            };
            let mut rng = crate::util::rng::stream(seed, &format!("init/{name}"));
            let normal = Normal::new(0.0f64, std).context("init distribution")?;
            (0..n).map(|_| normal.sample(&mut rng) as f32).collect()
        };
        var.set(&Tensor::from_vec(data, dims, &Device::Cpu)?)?;
    }
    Ok(())
}

/// The small-model policy (reward model, toy policies), all variables drawn in name
/// order from the one stream `stream(seed, stream_name)`: biases zero, embeddings and
/// vectors N(0, 0.1^2), other matrices N(0, 1/fan_in).
pub fn one_stream(vm: &VarMap, seed: u64, stream_name: &str) -> Result<()> {
    let mut rng = crate::util::rng::stream(seed, stream_name);
    for (name, var) in sorted_vars(vm) {
        let shape = var.shape().clone();
        let n = shape.elem_count();
        let std = if name.ends_with("bias") {
            0.0
        } else if name.contains("emb") || shape.rank() < 2 {
            0.1
        } else {
            1.0 / (shape.dims()[shape.rank() - 1] as f64).sqrt()
        };
        let vals: Vec<f32> = if std == 0.0 {
            vec![0.0; n]
        } else {
            let d = Normal::new(0.0, std).context("normal distribution")?;
            (0..n).map(|_| d.sample(&mut rng) as f32).collect()
        };
        var.set(&Tensor::from_vec(vals, shape, var.device())?)?;
    }
    Ok(())
}
