//! Run configuration: one TOML file with a section per stage, validated on load with
//! errors that name the bad key. Built-in configs (`tiny`, `small`, `beauty`, `amazon`) are
//! embedded so `--config tiny` works from anywhere; `--set key=value` overrides, and
//! `extends = "beauty"` starts a file from a built-in one.
//!
//! One file is a whole recipe: `[data]` (prepare), `[embed]` (item text embeddings when
//! the data has none), `[tokenizer]`, `[model]`, `[train]`, `[reward]`, `[align]` and
//! `[eval]`. Each stage's library call takes only its own section and the seed.

use anyhow::{bail, ensure, Context, Result};
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
    pub data: crate::data::DataConfig,
    #[serde(default)]
    pub embed: crate::embed::EmbedConfig,
    #[serde(default)]
    pub tokenizer: crate::tokenizer::TokenizerConfig,
    #[serde(default)]
    pub model: crate::model::ModelConfig,
    #[serde(default)]
    pub train: crate::train::TrainConfig,
    #[serde(default)]
    pub reward: crate::align::RewardConfig,
    #[serde(default)]
    pub align: crate::align::AlignConfig,
    #[serde(default)]
    pub eval: crate::eval::EvalConfig,
}

fn default_seed() -> u64 {
    42
}

impl Default for Config {
    /// Every section at its default, seed 42 (what an empty TOML file gives).
    fn default() -> Self {
        Config {
            name: String::new(),
            seed: default_seed(),
            data: Default::default(),
            embed: Default::default(),
            tokenizer: Default::default(),
            model: Default::default(),
            train: Default::default(),
            reward: Default::default(),
            align: Default::default(),
            eval: Default::default(),
        }
    }
}

/// The embedded configs, by name.
pub const BUILTIN: &[(&str, &str)] = &[
    ("tiny", include_str!("../configs/tiny.toml")),
    ("small", include_str!("../configs/small.toml")),
    ("beauty", include_str!("../configs/beauty.toml")),
    ("amazon", include_str!("../configs/amazon.toml")),
];

/// The text of built-in config `name`.
fn builtin(name: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

fn builtin_names() -> String {
    BUILTIN.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")
}

/// `extends = "NAME"` (a built-in config): NAME's keys, then this file's over them, table
/// by table, so a variant recipe states only what it changes.
fn with_base(value: toml::Value, depth: usize) -> Result<toml::Value> {
    let toml::Value::Table(mut table) = value else { bail!("a config must be a TOML table") };
    let Some(base) = table.remove("extends") else { return Ok(toml::Value::Table(table)) };
    let name = base.as_str().context("extends: expected the name of a built-in config, e.g. \"beauty\"")?;
    ensure!(depth < 4, "extends = {name:?}: configs extend each other more than 4 deep (a cycle?)");
    let text =
        builtin(name).with_context(|| format!("extends = {name:?}: not a built-in config ({})", builtin_names()))?;
    let mut merged = with_base(toml::from_str(text)?, depth + 1)?;
    merge(&mut merged, toml::Value::Table(table));
    Ok(merged)
}

/// Writes `over` onto `base`: tables key by key, anything else replaced.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(bv) => merge(bv, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

impl Config {
    /// Loads `spec` (a path to a TOML file, or a built-in name) and applies `overrides`
    /// (`key.sub=value`, value parsed as a TOML literal, else taken as a string).
    pub fn load(spec: &str, overrides: &[String]) -> Result<Config> {
        let (origin, text) = if Path::new(spec).exists() {
            (spec.to_string(), std::fs::read_to_string(spec).with_context(|| format!("cannot read config {spec}"))?)
        } else if let Some(t) = builtin(spec) {
            (format!("built-in config `{spec}`"), t.to_string())
        } else {
            bail!("config {spec}: no such file and not a built-in name ({})", builtin_names());
        };
        Self::from_toml(&text, overrides).with_context(|| format!("in {origin}"))
    }

    /// Parses TOML text plus overrides, then validates. An error that only the
    /// overrides cause names the `--set` at fault.
    pub fn from_toml(text: &str, overrides: &[String]) -> Result<Config> {
        let e = match Self::parse(text, overrides) {
            Ok(cfg) => return Ok(cfg),
            Err(e) => e,
        };
        if overrides.is_empty() || Self::parse(text, &[]).is_err() || format!("{e:#}").contains("--set ") {
            return Err(e);
        }
        // The override without which the rest parses; several at fault: all of them.
        let without = |i: usize| [&overrides[..i], &overrides[i + 1..]].concat();
        match (0..overrides.len()).find(|&i| Self::parse(text, &without(i)).is_ok()) {
            Some(i) => Err(e.context(format!("--set {}", overrides[i]))),
            None => Err(e.context(format!("--set {}", overrides.join(" --set ")))),
        }
    }

    fn parse(text: &str, overrides: &[String]) -> Result<Config> {
        let mut value = with_base(toml::from_str(text)?, 0)?;
        for ov in overrides {
            apply_override(&mut value, ov)?;
        }
        let cfg: Config = value.try_into().map_err(|e: toml::de::Error| anyhow::anyhow!("{}", e.message()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that serde cannot (ranges, divisibility), naming the key.
    pub fn validate(&self) -> Result<()> {
        self.data.validate().context("[data]")?;
        self.embed.validate().context("[embed]")?;
        self.tokenizer.validate().context("[tokenizer]")?;
        self.model.validate().context("[model]")?;
        self.train.validate().context("[train]")?;
        self.reward.validate().context("[reward]")?;
        self.align.validate().context("[align]")?;
        self.eval.validate().context("[eval]")?;
        self.check_limits()
    }

    /// Bounds every size that drives an allocation (see [`LIMITS`], and
    /// `model::limits` for the `[model]` keys), so a typo such as `ffn_hidden =
    /// 4000000000` is a clear error instead of an allocation failure that aborts.
    pub fn check_limits(&self) -> Result<()> {
        self.model.check_limits()?;
        let (t, r, a) = (&self.train, &self.reward, &self.align);
        let (tk, ev, em) = (&self.tokenizer, &self.eval, &self.embed);
        let values: [usize; 18] = [
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
            tk.levels,
            tk.codebook_size.iter().copied().max().unwrap_or(0),
            ev.beam,
            ev.session_beam,
            ev.session_len,
            em.batch_size,
        ];
        for ((key, max), v) in LIMITS.iter().zip(values) {
            if v > *max {
                bail!("{key} = {v} is above the limit {max} (see LIMITS in src/config.rs); use a smaller value");
            }
        }
        Ok(())
    }

    /// The pretraining stage's part of this config (and the whole, to record).
    pub fn pretrain_spec(&self) -> Result<crate::train::PretrainSpec<'_>> {
        let toml = self.to_toml()?;
        Ok(crate::train::PretrainSpec { model: &self.model, train: &self.train, seed: self.seed, config_toml: toml })
    }

    /// The reward model stage's part of this config (and the whole, to record).
    pub fn reward_spec(&self) -> Result<crate::align::RewardSpec<'_>> {
        Ok(crate::align::RewardSpec { reward: &self.reward, seed: self.seed, config_toml: self.to_toml()? })
    }

    /// The alignment stage's part of this config (and the whole, to record).
    pub fn align_spec(&self) -> Result<crate::align::onerec::AlignSpec<'_>> {
        Ok(crate::align::onerec::AlignSpec { align: &self.align, seed: self.seed, config_toml: self.to_toml()? })
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

/// Documented upper bounds of the config's size keys outside `[model]` (those are in
/// `model::limits`), in [`Config::check_limits`] order.
/// Far above any sensible run on this project's hardware, low enough that one value
/// cannot make a single buffer exceed memory.
pub const LIMITS: [(&str, usize); 18] = [
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
    ("tokenizer.levels", 64),
    ("tokenizer.codebook_size", 1 << 20),
    ("eval.beam", 65_536),
    ("eval.session_beam", 65_536),
    ("eval.session_len", 4_096),
    ("embed.batch_size", 1 << 16),
];

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

    /// `amazon` is `beauty` with exactly the candidate recipe's levers turned on: the same
    /// config as the long `--set` list the measured runs used.
    #[test]
    fn amazon_extends_beauty_with_the_candidate_levers() {
        let amazon = Config::load("amazon", &[]).unwrap();
        let sets = [
            "name=\"amazon\"",
            "tokenizer.collab=\"sasrec\"",
            "model.item_id_embedding=true",
            "model.item_head_weight=1.0",
            "model.dropout=0.1",
            "eval.item_head_weight=3.0",
        ];
        let by_hand = Config::load("beauty", &sets.map(String::from)).unwrap();
        assert_eq!(amazon.to_toml().unwrap(), by_hand.to_toml().unwrap());
        assert_ne!(amazon.to_toml().unwrap(), Config::load("beauty", &[]).unwrap().to_toml().unwrap());
    }

    #[test]
    fn extends_merges_tables_and_names_a_bad_base() {
        let cfg = Config::from_toml("extends = \"tiny\"\n[train]\nlr = 0.5\n", &[]).unwrap();
        let tiny = Config::load("tiny", &[]).unwrap();
        assert_eq!(cfg.train.lr, 0.5);
        assert_eq!(cfg.train.batch_size, tiny.train.batch_size, "keys the file leaves alone come from the base");
        assert_eq!(cfg.model.d_model, tiny.model.d_model);
        assert!(!cfg.to_toml().unwrap().contains("extends"), "the saved config is resolved");
        let err = format!("{:#}", Config::from_toml("extends = \"huge\"\n", &[]).unwrap_err());
        assert!(err.contains("not a built-in config") && err.contains("beauty"), "{err}");
        let err = format!("{:#}", Config::from_toml("extends = 3\n", &[]).unwrap_err());
        assert!(err.contains("extends"), "{err}");
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
    fn a_bad_override_is_named_as_the_flag() {
        let sets = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let msg = |v: &[&str]| format!("{:#}", Config::load("tiny", &sets(v)).unwrap_err());
        let m = msg(&["seed=3", "model.d_modle=3"]);
        assert!(m.contains("--set model.d_modle=3") && m.contains("d_modle") && !m.contains("seed=3"), "{m}");
        let m = msg(&["model.heads=0", "seed=3"]);
        assert!(m.contains("--set model.heads=0") && m.contains("heads must be > 0"), "{m}");
        // Two at fault: both named. Syntax errors name their flag once.
        let m = msg(&["model.heads=0", "model.d_model=abc"]);
        assert!(m.contains("--set model.heads=0 --set model.d_model=abc"), "{m}");
        let m = msg(&["modeld_model"]);
        assert_eq!(m.matches("--set").count(), 1, "{m}");
        // An error in the file itself is not blamed on a valid override.
        let e = Config::from_toml("seed = 1\nbogus = 3\n", &sets(&["seed=2"])).unwrap_err();
        assert!(!format!("{e:#}").contains("--set"), "{e:#}");
    }

    #[test]
    fn override_sets_value() {
        let cfg = Config::from_toml("seed = 1\n", &["seed=7".into()]).unwrap();
        assert_eq!(cfg.seed, 7);
    }
}
