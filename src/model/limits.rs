//! Documented upper bounds of the `[model]` size keys, checked before anything is
//! allocated, both for a run config and for a `checkpoint.json` read from disk. Far above
//! any sensible run on this project's hardware, low enough that one value cannot make a
//! single buffer exceed memory.

use super::ModelConfig;
use anyhow::{bail, Result};

/// Upper bounds, in [`ModelConfig::check_limits`] order.
pub const LIMITS: [(&str, usize); 10] = [
    ("model.d_model", 16_384),
    ("model.heads", 1_024),
    ("model.enc_layers", 256),
    ("model.dec_layers", 256),
    ("model.ffn_hidden", 262_144),
    ("model.history_len", 65_536),
    ("model.max_session_items", 4_096),
    ("model.moe.experts", 1_024),
    ("model.moe.top_k", 1_024),
    ("model.moe.expert_hidden", 262_144),
];

/// Upper bound on the model's (estimated) parameter count: 2^31 f32 values = 8 GiB.
pub const MAX_MODEL_PARAMS: u128 = 1 << 31;

impl ModelConfig {
    /// Bounds every size key (see [`LIMITS`]) and the estimated parameter count (see
    /// [`MAX_MODEL_PARAMS`]).
    pub fn check_limits(&self) -> Result<()> {
        let m = self;
        let values = [
            m.d_model,
            m.heads,
            m.enc_layers,
            m.dec_layers,
            m.ffn_hidden,
            m.history_len,
            m.max_session_items,
            m.moe.experts,
            m.moe.top_k,
            m.moe.expert_hidden,
        ];
        for ((key, max), v) in LIMITS.iter().zip(values) {
            if v > *max {
                bail!("{key} = {v} is above the limit {max} (see LIMITS in src/model/limits.rs); use a smaller value");
            }
        }
        let params = params_estimate(m);
        if params > MAX_MODEL_PARAMS {
            bail!(
                "[model] has about {params} parameters (d_model, ffn_hidden, layers, moe), above the limit \
                 {MAX_MODEL_PARAMS}; shrink d_model, ffn_hidden, the layer counts or moe.experts/expert_hidden"
            );
        }
        Ok(())
    }
}

/// Rough parameter count of the transformer blocks and position tables, in u128 so no
/// product of config values overflows.
fn params_estimate(m: &ModelConfig) -> u128 {
    let (d, f) = (m.d_model as u128, m.ffn_hidden as u128);
    let layers = (m.enc_layers + m.dec_layers) as u128;
    let attn = 4 * d * d * (layers + m.dec_layers as u128);
    let ffn = 3 * d * f * layers;
    let moe = 3 * d * m.moe.expert_hidden as u128 * (m.moe.experts as u128 + 1) * m.dec_layers as u128;
    let positions = d * (m.history_len as u128 + 1 + m.max_session_items as u128 * 64);
    attn + ffn + moe + positions
}
