//! Run configuration: one TOML file with a section per stage, validated on load with
//! errors that name the bad key. Built-in configs (`tiny`, `small`, `beauty`) are
//! embedded so `--config tiny` works from anywhere; `--set key=value` overrides.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A label for logs and reports.
    #[serde(default)]
    pub name: String,
    /// The run seed every random stream derives from.
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub model: crate::model::ModelConfig,
    #[serde(default)]
    pub train: crate::train::TrainConfig,
    #[serde(default)]
    pub reward: crate::align::RewardConfig,
    #[serde(default)]
    pub align: crate::align::AlignConfig,
}

fn default_seed() -> u64 {
    42
}

/// The embedded configs, by name.
pub const BUILTIN: &[(&str, &str)] = &[
    ("tiny", include_str!("../configs/tiny.toml")),
    ("small", include_str!("../configs/small.toml")),
    ("beauty", include_str!("../configs/beauty.toml")),
];

impl Config {
    /// Loads `spec` (a path to a TOML file, or a built-in name) and applies `overrides`
    /// (`key.sub=value`, value parsed as a TOML literal, else taken as a string).
    pub fn load(spec: &str, overrides: &[String]) -> Result<Config> {
        let (origin, text) = if Path::new(spec).exists() {
            (spec.to_string(), std::fs::read_to_string(spec).with_context(|| format!("cannot read config {spec}"))?)
        } else if let Some((_, t)) = BUILTIN.iter().find(|(n, _)| *n == spec) {
            (format!("built-in config `{spec}`"), t.to_string())
        } else {
            bail!(
                "config {spec}: no such file and not a built-in name ({})",
                BUILTIN.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")
            );
        };
        Self::from_toml(&text, overrides).with_context(|| format!("in {origin}"))
    }

    /// Parses TOML text plus overrides, then validates.
    pub fn from_toml(text: &str, overrides: &[String]) -> Result<Config> {
        let mut value: toml::Value = toml::from_str(text)?;
        for ov in overrides {
            apply_override(&mut value, ov)?;
        }
        let cfg: Config = value.try_into().map_err(|e: toml::de::Error| anyhow::anyhow!("{}", e.message()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that serde cannot (ranges, divisibility), naming the key.
    pub fn validate(&self) -> Result<()> {
        self.model.validate().context("[model]")?;
        self.train.validate().context("[train]")?;
        self.reward.validate().context("[reward]")?;
        self.align.validate().context("[align]")?;
        self.check_limits()
    }

    /// Bounds every size that drives an allocation (see [`LIMITS`] and
    /// [`MAX_MODEL_PARAMS`]), so a typo such as `ffn_hidden = 4000000000` is a clear
    /// error instead of an allocation failure that aborts the process.
    pub fn check_limits(&self) -> Result<()> {
        let (m, t, r, a) = (&self.model, &self.train, &self.reward, &self.align);
        let values: [usize; 22] = [
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
            t.batch_size,
            t.session_len,
            t.valid_batch,
            t.rank_beam,
            r.dim,
            r.history_len,
            r.session_len,
            r.negatives,
            r.batch_size,
            a.candidates,
            a.session_len,
            a.batch_size,
        ];
        for ((key, max), v) in LIMITS.iter().zip(values) {
            if v > *max {
                bail!("{key} = {v} is above the limit {max} (see LIMITS in src/config.rs); use a smaller value");
            }
        }
        let params = model_params_estimate(m);
        if params > MAX_MODEL_PARAMS {
            bail!(
                "[model] has about {params} parameters (d_model, ffn_hidden, layers, moe), above the limit \
                 {MAX_MODEL_PARAMS}; shrink d_model, ffn_hidden, the layer counts or moe.experts/expert_hidden"
            );
        }
        Ok(())
    }

    /// The resolved config as TOML, written beside every run's outputs.
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Writes the resolved config to `dir/config.toml` (atomically).
    pub fn save(&self, dir: &Path) -> Result<()> {
        crate::util::io::atomic_write(&dir.join("config.toml"), self.to_toml()?.as_bytes())
    }
}

/// Documented upper bounds of the config's size keys, in [`Config::check_limits`] order.
/// Far above any sensible run on this project's hardware, low enough that one value
/// cannot make a single buffer exceed memory.
pub const LIMITS: [(&str, usize); 22] = [
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
    ("train.batch_size", 1 << 20),
    ("train.session_len", 4_096),
    ("train.valid_batch", 1 << 20),
    ("train.rank_beam", 65_536),
    ("reward.dim", 16_384),
    ("reward.history_len", 65_536),
    ("reward.session_len", 4_096),
    ("reward.negatives", 4_096),
    ("reward.batch_size", 1 << 20),
    ("align.candidates", 65_536),
    ("align.session_len", 4_096),
    ("align.batch_size", 1 << 20),
];

/// Upper bound on the model's (estimated) parameter count: 2^31 f32 values = 8 GiB.
pub const MAX_MODEL_PARAMS: u128 = 1 << 31;

/// Rough parameter count of the transformer blocks and position tables, in u128 so no
/// product of config values overflows.
fn model_params_estimate(m: &crate::model::ModelConfig) -> u128 {
    let (d, f) = (m.d_model as u128, m.ffn_hidden as u128);
    let layers = (m.enc_layers + m.dec_layers) as u128;
    let attn = 4 * d * d * (layers + m.dec_layers as u128);
    let ffn = 3 * d * f * layers;
    let moe = 3 * d * m.moe.expert_hidden as u128 * (m.moe.experts as u128 + 1) * m.dec_layers as u128;
    let positions = d * (m.history_len as u128 + 1 + m.max_session_items as u128 * 64);
    attn + ffn + moe + positions
}

pub(crate) fn apply_override(root: &mut toml::Value, ov: &str) -> Result<()> {
    let (key, raw) = ov.split_once('=').with_context(|| format!("--set {ov}: expected key=value"))?;
    let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.trim().split('.').collect();
    let mut cur = root;
    for (i, p) in parts.iter().enumerate() {
        let table =
            cur.as_table_mut().with_context(|| format!("--set {ov}: `{}` is not a table", parts[..i].join(".")))?;
        if i + 1 == parts.len() {
            table.insert(p.to_string(), parsed);
            return Ok(());
        }
        cur = table.entry(p.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_configs_parse() {
        for (name, _) in BUILTIN {
            Config::load(name, &[]).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("seed = 1\nbogus = 3\n", &[]).unwrap_err();
        assert!(format!("{err:#}").contains("bogus"), "{err:#}");
    }

    #[test]
    fn huge_sizes_are_refused() {
        for set in ["model.ffn_hidden=4000000000", "model.history_len=100000000", "model.d_model=16384"] {
            let err = Config::load("tiny", &[set.into()]).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains("limit"), "{set}: {msg}");
        }
    }

    #[test]
    fn override_sets_value() {
        let cfg = Config::from_toml("seed = 1\n", &["seed=7".into()]).unwrap();
        assert_eq!(cfg.seed, 7);
    }
}
