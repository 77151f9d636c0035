//! The `[embed]` config section: how a recipe makes item text embeddings when a data
//! directory ships none (e.g. Amazon Sports and Toys: `items.tsv.gz` with a
//! `generated_phrase` column), so one TOML file is a whole recipe.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedConfig {
    /// Local sentence-transformers model directory (`scripts/fetch-minilm.sh` fetches it).
    pub model_dir: String,
    /// Item table inside the data directory.
    pub items: String,
    /// Item-id column of that table (empty = its first column).
    pub id_col: String,
    /// Text template over the table's columns (syntax: `embed::template`).
    pub text: String,
    pub batch_size: usize,
    pub max_tokens: usize,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig {
            model_dir: "models/all-MiniLM-L6-v2".into(),
            items: "items.tsv.gz".into(),
            id_col: "item_id".into(),
            text: "{generated_phrase}".into(),
            batch_size: 32,
            max_tokens: super::DEFAULT_MAX_TOKENS,
        }
    }
}

impl EmbedConfig {
    pub fn validate(&self) -> Result<()> {
        if self.text.trim().is_empty() {
            bail!("text: give a template such as \"{{generated_phrase}}\"");
        }
        if self.batch_size == 0 || self.max_tokens == 0 {
            bail!("batch_size and max_tokens must be at least 1");
        }
        crate::embed::Template::parse(&self.text).map(|_| ())
    }
}
