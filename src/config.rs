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

fn apply_override(root: &mut toml::Value, ov: &str) -> Result<()> {
    let (key, raw) = ov.split_once('=').with_context(|| format!("--set {ov}: expected key=value"))?;
    let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.trim().split('.').collect();
    let mut cur = root;
    for (i, p) in parts.iter().enumerate() {
        let table = cur.as_table_mut().with_context(|| format!("--set {ov}: `{}` is not a table", parts[..i].join(".")))?;
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
    fn override_sets_value() {
        let cfg = Config::from_toml("seed = 1\n", &["seed=7".into()]).unwrap();
        assert_eq!(cfg.seed, 7);
    }
}
