//! The SASRec run configuration (`configs/sasrec.toml`, built in as `sasrec`): its own
//! small TOML schema (`seed`, `[model]`, `[train]`), validated with errors naming the key.

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The embedded default config.
pub const BUILTIN: &str = include_str!("../../../configs/sasrec.toml");

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SasrecConfig {
    #[serde(default)]
    pub name: String,
    /// The run seed every random stream (init, shuffle, dropout) derives from.
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub model: SasrecModelConfig,
    #[serde(default)]
    pub train: SasrecTrainConfig,
}

fn default_seed() -> u64 {
    42
}

/// Block layout: `pre` = x + f(norm(x)) with a final norm; `post` = norm(x + f(x)).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    Pre,
    Post,
}

/// Feed-forward activation.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    Gelu,
    Swiglu,
}

/// `[model]`: the architecture (recorded in every checkpoint).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SasrecModelConfig {
    pub d_model: usize,
    pub heads: usize,
    /// Transformer blocks.
    pub layers: usize,
    pub ffn_hidden: usize,
    /// Most recent items the model reads (longer histories are cut from the left).
    pub max_len: usize,
    /// Dropout on embeddings, attention and feed-forward outputs.
    pub dropout: f64,
    pub norm: Norm,
    pub activation: Activation,
}

impl Default for SasrecModelConfig {
    fn default() -> Self {
        SasrecModelConfig {
            d_model: 64,
            heads: 1,
            layers: 2,
            ffn_hidden: 64,
            max_len: 50,
            dropout: 0.5,
            norm: Norm::Pre,
            activation: Activation::Relu,
        }
    }
}

/// `[train]`: optimisation and early stopping.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SasrecTrainConfig {
    /// Users (whole training sequences) per batch.
    pub batch_size: usize,
    /// Most epochs; early stopping usually ends the run before.
    pub epochs: usize,
    /// Constant AdamW learning rate.
    pub lr: f64,
    /// Decoupled weight decay of linear weights (never embeddings or norms).
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Max global gradient norm (0 = no clipping).
    pub grad_clip: f64,
    /// Validate (full validation NDCG@10) every this many epochs.
    pub eval_every: usize,
    /// Stop after this many validations without a better NDCG@10.
    pub patience: usize,
    /// Validate with history items excluded (the protocol the results are reported in).
    pub valid_exclude_history: bool,
    /// Leave the items a position has already read out of its training softmax (they
    /// are never its negatives), as the history-excluded protocol never ranks them.
    pub mask_history: bool,
    /// If > 0, batches hold users of similar length (windows of this many batches are
    /// sorted by length), so little padding is computed; 0 = plain shuffle.
    pub length_buckets: usize,
    /// Users scored together during validation.
    pub eval_batch: usize,
    /// Validation users (0 = all; an evenly spaced subset otherwise).
    pub valid_users: usize,
}

impl Default for SasrecTrainConfig {
    fn default() -> Self {
        SasrecTrainConfig {
            batch_size: 64,
            epochs: 200,
            lr: 2e-3,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            grad_clip: 0.0,
            eval_every: 1,
            patience: 20,
            valid_exclude_history: true,
            mask_history: false,
            length_buckets: 16,
            eval_batch: 512,
            valid_users: 0,
        }
    }
}

/// Upper bounds of the size keys (far above any sensible run; they keep a typo from
/// sizing an allocation that aborts the process).
const LIMITS: [(&str, usize); 7] = [
    ("model.d_model", 16_384),
    ("model.heads", 1_024),
    ("model.layers", 256),
    ("model.ffn_hidden", 262_144),
    ("model.max_len", 65_536),
    ("train.batch_size", 1 << 20),
    ("train.eval_batch", 1 << 20),
];

impl SasrecModelConfig {
    pub fn validate(&self) -> Result<()> {
        let values = [self.d_model, self.heads, self.layers, self.ffn_hidden, self.max_len];
        for ((key, max), v) in LIMITS.iter().zip(values) {
            ensure!(v > 0, "{key} must be > 0");
            ensure!(v <= *max, "{key} = {v} is above the limit {max}");
        }
        ensure!(
            self.d_model.is_multiple_of(self.heads),
            "model.d_model = {} must be divisible by model.heads = {}",
            self.d_model,
            self.heads
        );
        ensure!((0.0..1.0).contains(&self.dropout), "model.dropout = {} must be in [0, 1)", self.dropout);
        Ok(())
    }
}

impl SasrecTrainConfig {
    pub fn validate(&self) -> Result<()> {
        ensure!(self.batch_size > 0, "train.batch_size must be > 0");
        ensure!(
            self.batch_size <= LIMITS[5].1,
            "train.batch_size = {} is above the limit {}",
            self.batch_size,
            LIMITS[5].1
        );
        ensure!(self.eval_batch > 0, "train.eval_batch must be > 0");
        ensure!(
            self.eval_batch <= LIMITS[6].1,
            "train.eval_batch = {} is above the limit {}",
            self.eval_batch,
            LIMITS[6].1
        );
        ensure!(self.epochs > 0, "train.epochs must be > 0");
        ensure!(self.lr > 0.0 && self.lr.is_finite(), "train.lr = {} must be > 0", self.lr);
        ensure!(self.weight_decay >= 0.0, "train.weight_decay must be >= 0");
        ensure!((0.0..1.0).contains(&self.beta1), "train.beta1 must be in [0, 1)");
        ensure!((0.0..1.0).contains(&self.beta2), "train.beta2 must be in [0, 1)");
        ensure!(self.eps > 0.0, "train.eps must be > 0");
        ensure!(self.grad_clip >= 0.0, "train.grad_clip must be >= 0");
        ensure!(self.eval_every > 0, "train.eval_every must be > 0");
        ensure!(self.patience > 0, "train.patience must be > 0");
        Ok(())
    }
}

impl SasrecConfig {
    /// Loads `spec` (a TOML file, or the built-in name `sasrec`) and applies `overrides`
    /// (`key.sub=value`), then validates.
    pub fn load(spec: &str, overrides: &[String]) -> Result<SasrecConfig> {
        let (origin, text) = if Path::new(spec).exists() {
            (spec.to_string(), std::fs::read_to_string(spec).with_context(|| format!("cannot read config {spec}"))?)
        } else if spec == "sasrec" {
            ("built-in config `sasrec`".to_string(), BUILTIN.to_string())
        } else {
            bail!("config {spec}: no such file and not the built-in name `sasrec`");
        };
        Self::from_toml(&text, overrides).with_context(|| format!("in {origin}"))
    }

    pub fn from_toml(text: &str, overrides: &[String]) -> Result<SasrecConfig> {
        let mut value: toml::Value = toml::from_str(text)?;
        for ov in overrides {
            crate::config::apply_override(&mut value, ov)?;
        }
        let cfg: SasrecConfig = value.try_into().map_err(|e: toml::de::Error| anyhow::anyhow!("{}", e.message()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.train.validate()
    }

    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_parses_and_bad_keys_are_named() {
        let c = SasrecConfig::load("sasrec", &[]).unwrap();
        assert_eq!(c.model.d_model, 64);
        let e = SasrecConfig::from_toml(BUILTIN, &["model.bogus=1".into()]).unwrap_err();
        assert!(format!("{e:#}").contains("bogus"), "{e:#}");
        let e = SasrecConfig::from_toml(BUILTIN, &["model.heads=3".into()]).unwrap_err();
        assert!(format!("{e:#}").contains("model.heads"), "{e:#}");
        let e = SasrecConfig::from_toml(BUILTIN, &["model.dropout=1.5".into()]).unwrap_err();
        assert!(format!("{e:#}").contains("model.dropout"), "{e:#}");
        let c = SasrecConfig::from_toml(BUILTIN, &["model.norm=\"post\"".into()]).unwrap();
        assert_eq!(c.model.norm, Norm::Post);
    }
}
