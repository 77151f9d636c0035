//! The prepared dataset: what `onerec data prepare` writes and every later stage reads.
//!
//! Users and items get dense ids (`0..n`) with a mapping back to the original ids.
//! Histories are stored CSR-style: user `u` owns interactions `offsets[u]..offsets[u+1]`,
//! oldest first, each with an item, a timestamp and named engagement features.
//!
//! On disk (a directory): `dataset.json` (the [`DatasetManifest`]), `histories.safetensors`
//! (`offsets` i64 [users+1], `items` u32 [n], `timestamps` i64 [n], `feature.<name>` f32 [n],
//! `session_offsets` i64 [users+1] and `session_starts` i64 [sessions]),
//! `user_ids.txt` and `item_ids.txt` (original ids, one per line, in dense order).

use serde::{Deserialize, Serialize};
use std::ops::Range;

/// What a prepared dataset holds and where it came from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DatasetManifest {
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    /// Names of the per-interaction engagement features, in storage order.
    pub features: Vec<String>,
    /// Input files with their sha256.
    pub sources: Vec<SourceFile>,
    /// The split rule, e.g. "leave-one-out".
    pub split: String,
    /// How sessions were formed, e.g. "gap:1800" (seconds) or "column:session_id".
    pub sessions: String,
    /// Free-form extra facts (thresholds used, filters applied, ...).
    #[serde(default)]
    pub extra: serde_json::Value,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SourceFile {
    pub path: String,
    pub sha256: String,
}

/// Leave-one-out split of one user's history (indices into that user's history).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Training part: every prefix of it may be used for training.
    pub train: Range<usize>,
    /// Index of the validation target (history = everything before it), if any.
    pub valid: Option<usize>,
    /// Index of the test target (history = everything before it), if any.
    pub test: Option<usize>,
}

impl Split {
    /// Leave-one-out for a history of length `n`: last = test, second-to-last =
    /// validation, rest = train. Users with fewer than 3 interactions only train.
    pub fn leave_one_out(n: usize) -> Split {
        if n >= 3 {
            Split { train: 0..n - 2, valid: Some(n - 2), test: Some(n - 1) }
        } else {
            Split { train: 0..n, valid: None, test: None }
        }
    }
}

/// A prepared dataset in memory.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub manifest: DatasetManifest,
    /// Original user ids, by dense user id.
    pub user_ids: Vec<String>,
    /// Original item ids, by dense item id.
    pub item_ids: Vec<String>,
    /// CSR offsets, length users + 1.
    pub offsets: Vec<usize>,
    /// Dense item id per interaction.
    pub items: Vec<u32>,
    /// Timestamp per interaction (source units; sequence files use the position).
    pub timestamps: Vec<i64>,
    /// Engagement features per interaction, parallel to `manifest.features`.
    pub features: Vec<Vec<f32>>,
    /// Session boundaries: user `u`'s sessions start at the history indices
    /// `session_starts[session_offsets[u]..session_offsets[u+1]]` (first is always 0).
    pub session_offsets: Vec<usize>,
    pub session_starts: Vec<usize>,
}

impl Dataset {
    /// Loads a prepared dataset directory (see the module doc for the layout).
    pub fn load(dir: &std::path::Path) -> anyhow::Result<Dataset> {
        anyhow::bail!("Dataset::load({}) is not implemented yet", dir.display())
    }

    /// Writes the dataset into `dir` (each file atomically).
    pub fn save(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        anyhow::bail!("Dataset::save({}) is not implemented yet", dir.display())
    }

    pub fn n_users(&self) -> usize {
        self.user_ids.len()
    }
    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }
    /// Interaction index range of user `u`.
    pub fn range(&self, u: usize) -> Range<usize> {
        self.offsets[u]..self.offsets[u + 1]
    }
    /// User `u`'s items, oldest first.
    pub fn history(&self, u: usize) -> &[u32] {
        &self.items[self.range(u)]
    }
    /// The value of feature `name` for user `u`'s interactions, if the data has it.
    pub fn feature(&self, u: usize, name: &str) -> Option<&[f32]> {
        let i = self.manifest.features.iter().position(|f| f == name)?;
        Some(&self.features[i][self.range(u)])
    }
    /// User `u`'s leave-one-out split.
    pub fn split(&self, u: usize) -> Split {
        Split::leave_one_out(self.offsets[u + 1] - self.offsets[u])
    }
    /// User `u`'s sessions as ranges of history indices.
    pub fn sessions(&self, u: usize) -> Vec<Range<usize>> {
        let n = self.offsets[u + 1] - self.offsets[u];
        let starts = &self.session_starts[self.session_offsets[u]..self.session_offsets[u + 1]];
        starts
            .iter()
            .enumerate()
            .map(|(k, &s)| s..starts.get(k + 1).copied().unwrap_or(n))
            .collect()
    }
    /// Builds an in-memory dataset from histories of dense item ids (tests, toy data).
    /// Timestamps are positions; no features; one session per user.
    pub fn from_histories(histories: &[Vec<u32>], n_items: usize) -> Dataset {
        let mut offsets = vec![0];
        let mut items = Vec::new();
        let mut timestamps = Vec::new();
        for h in histories {
            items.extend_from_slice(h);
            timestamps.extend((0..h.len() as i64).collect::<Vec<_>>());
            offsets.push(items.len());
        }
        let users = histories.len();
        Dataset {
            manifest: DatasetManifest {
                users,
                items: n_items,
                interactions: items.len(),
                features: vec![],
                sources: vec![],
                split: "leave-one-out".into(),
                sessions: "none".into(),
                extra: serde_json::Value::Null,
            },
            user_ids: (0..users).map(|u| u.to_string()).collect(),
            item_ids: (0..n_items).map(|i| i.to_string()).collect(),
            offsets,
            items,
            timestamps,
            features: vec![],
            session_offsets: (0..=users).collect(),
            session_starts: vec![0; users],
        }
    }
}
