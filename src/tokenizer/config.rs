//! The `[tokenizer]` config section: the semantic-ID recipe (`onerec tokenize`'s flags),
//! so one TOML file is a whole recipe. Which embedding files to fuse is an input, not
//! config: the pipeline finds them in the data directory.

use super::{AlignOptions, Collisions, Method, TokenizeOptions};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerConfig {
    /// "balanced-rq-kmeans" | "rq-kmeans" | "rq-vae".
    pub method: Method,
    /// Quantizer levels (a disambiguation level may be added).
    pub levels: usize,
    /// One codebook size for every level, or one per level.
    pub codebook_size: Vec<usize>,
    /// Lloyd iterations per level (k-means methods).
    pub iters: usize,
    /// Levels of more items than this fit their k-means centroids on a seeded sample of
    /// this many (at least 32 per centroid), then assign every item; 0 = never sample.
    #[serde(skip_serializing_if = "super::fit::is_default_kmeans_sample")]
    pub kmeans_sample: usize,
    /// "disambiguate" | "reassign": how items sharing a full path are told apart.
    pub collisions: Collisions,
    /// Align the fused vectors with co-occurrences in the training histories before
    /// quantizing (behavioural alignment: the largest single factor measured on Beauty).
    pub align: bool,
    /// Co-occurrence window (positions) of that alignment.
    pub align_window: usize,
    /// Epochs of the alignment projection.
    pub align_epochs: usize,
    /// PCA width for every modality (absent = no PCA).
    pub pca: Option<usize>,
    /// A collaborative modality fused with the text (`onerec recipe`): "none", or
    /// "sasrec" = the item table of a CE-SASRec trained on the training part first.
    #[serde(skip_serializing_if = "Collab::is_none")]
    pub collab: Collab,
}

/// Where the recipe's collaborative item modality comes from (`tokenizer.collab`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Collab {
    /// Text only.
    #[default]
    None,
    /// The item-embedding table of CE-SASRec (built-in `sasrec` config, the run's seed)
    /// trained on the same training histories, early-stopped on validation.
    Sasrec,
}

impl Collab {
    pub fn is_none(&self) -> bool {
        *self == Collab::None
    }
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        let o = TokenizeOptions::default();
        TokenizerConfig {
            method: o.method,
            levels: o.levels,
            codebook_size: o.codebook_sizes,
            iters: o.iters,
            kmeans_sample: o.kmeans_sample,
            collisions: o.collisions,
            align: true,
            align_window: o.align.window,
            align_epochs: o.align.epochs,
            pca: o.pca_all,
            collab: Collab::None,
        }
    }
}

impl TokenizerConfig {
    pub fn validate(&self) -> Result<()> {
        if self.levels == 0 {
            bail!("levels must be at least 1");
        }
        if self.codebook_size.is_empty() || self.codebook_size.contains(&0) {
            bail!("codebook_size = {:?}: give one size >= 1, or one per level", self.codebook_size);
        }
        if self.codebook_size.len() != 1 && self.codebook_size.len() != self.levels {
            bail!(
                "codebook_size has {} entries for {} levels: give one, or one per level",
                self.codebook_size.len(),
                self.levels
            );
        }
        if self.iters == 0 {
            bail!("iters must be at least 1");
        }
        Ok(())
    }

    /// The library options this section stands for, with the run's seed.
    pub fn options(&self, seed: u64) -> TokenizeOptions {
        TokenizeOptions {
            method: self.method,
            levels: self.levels,
            codebook_sizes: self.codebook_size.clone(),
            seed,
            iters: self.iters,
            kmeans_sample: self.kmeans_sample,
            collisions: self.collisions,
            pca_all: self.pca,
            align: AlignOptions { window: self.align_window, epochs: self.align_epochs, ..AlignOptions::default() },
            ..TokenizeOptions::default()
        }
    }
}
