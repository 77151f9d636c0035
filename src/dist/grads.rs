//! Gradients by parameter name through a [`GradSync`]: one flat buffer in parameter order,
//! one all-reduce per optimizer step.

use super::GradSync;
use anyhow::Result;
use candle_core::{Tensor, Var};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Sums `grads` over ranks, in place. `vars` (name, parameter), in the same order on every
/// rank, fixes the layout; a parameter without a gradient here (an expert no token of this
/// rank's slice chose) sends zeros, and every parameter has a gradient afterwards, which
/// the optimizer treats exactly like a missing one when it is zero.
pub fn all_reduce_grads(
    sync: &dyn GradSync,
    vars: &[(String, Var)],
    grads: &mut HashMap<String, Tensor>,
) -> Result<()> {
    let total: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    let mut flat = Vec::with_capacity(total);
    for (name, v) in vars {
        match grads.get(name) {
            Some(g) => flat.extend(g.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?),
            None => flat.resize(flat.len() + v.elem_count(), 0.0),
        }
    }
    sync.all_reduce_f32(&mut flat)?;
    let mut off = 0;
    for (name, v) in vars {
        let n = v.elem_count();
        let g = Tensor::from_slice(&flat[off..off + n], v.dims(), v.device())?.to_dtype(v.dtype())?;
        grads.insert(name.clone(), g);
        off += n;
    }
    Ok(())
}

/// A fingerprint of the parameters' exact bits (sha256 of names and values, first 48 bits,
/// so it travels exactly as an f64): ranks that applied the same updates agree on it.
pub fn params_checksum(vars: &[(String, Var)]) -> Result<u64> {
    let mut h = Sha256::new();
    for (name, v) in vars {
        h.update(name.as_bytes());
        for x in v.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()? {
            h.update(x.to_bits().to_le_bytes());
        }
    }
    let d = h.finalize();
    Ok(d[..6].iter().fold(0u64, |acc, &b| (acc << 8) | b as u64))
}

/// Fails on every rank unless all ranks hold bit-identical parameters (a checksum compared
/// with rank 0's): the data-parallel invariant. `at` says when, for the error ("epoch 3").
/// Returns the checksum.
pub fn check_in_sync(sync: &dyn GradSync, vars: &[(String, Var)], at: &str) -> Result<u64> {
    let mine = params_checksum(vars)?;
    let mut leader = [mine as f64];
    sync.broadcast_f64(&mut leader)?;
    let mut differ = [(leader[0] != mine as f64) as u8 as f64];
    sync.all_reduce_f64(&mut differ)?;
    anyhow::ensure!(
        differ[0] == 0.0,
        "data-parallel ranks diverged at {at}: {} of {} ranks hold parameters that differ from rank 0's",
        differ[0],
        sync.world_size()
    );
    Ok(mine)
}
