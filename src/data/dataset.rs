//! The prepared dataset: what `onerec data prepare` writes and every later stage reads.
//!
//! Users and items get dense ids (`0..n`) with a mapping back to the original ids.
//! Histories are stored CSR-style: user `u` owns interactions `offsets[u]..offsets[u+1]`,
//! oldest first, each with an item, a timestamp and named engagement features.
//!
//! On disk (a directory): `dataset.json` (the [`DatasetManifest`]), `histories.safetensors`
//! (`offsets` i64 [users+1], `items` u32 [n], `timestamps` i64 [n], `feature.<name>` f32 [n],
//! `session_offsets` i64 [users+1], `session_starts` i64 [sessions] and
//! `session_quality` u8 [sessions], 1 = passes the high-quality filter),
//! `user_ids.txt` and `item_ids.txt` (original ids, one per line, in dense order).
//!
//! Dense ids: users in order of first appearance (sequence files: line order); items
//! sorted by original id (numerically when every id is an integer, else by string), so
//! "smaller dense id" and "smaller original id" agree for tie-breaking.

use anyhow::{bail, Result};
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
    /// Per session (parallel to `session_starts`): passes the high-quality filter
    /// (minimum items, watch time, a positive engagement; see `data::sessions`).
    pub session_quality: Vec<bool>,
    /// The directory it was loaded from (canonical), None when built in memory:
    /// checkpoints record it so `score`/`generate`/`eval` can find it without `--data`.
    pub dir: Option<std::path::PathBuf>,
}

impl Dataset {
    /// Checks the internal invariants (lengths, offsets, ids in range); `what` names
    /// the source in the error.
    pub fn validate(&self, what: &str) -> Result<()> {
        let (u, n, s) = (self.user_ids.len(), self.items.len(), self.session_starts.len());
        let m = &self.manifest;
        if m.users != u || m.items != self.item_ids.len() || m.interactions != n {
            bail!(
                "{what}: manifest counts (users {}, items {}, interactions {}) disagree with the data ({u}, {}, {n})",
                m.users,
                m.items,
                m.interactions,
                self.item_ids.len()
            );
        }
        if self.offsets.len() != u + 1 || self.offsets[0] != 0 || self.offsets[u] != n {
            bail!("{what}: `offsets` must have users+1 = {} entries from 0 to {n}", u + 1);
        }
        if self.offsets.windows(2).any(|w| w[0] > w[1]) {
            bail!("{what}: `offsets` must be non-decreasing");
        }
        if self.timestamps.len() != n {
            bail!("{what}: `timestamps` has {} entries, expected {n}", self.timestamps.len());
        }
        if let Some(bad) = self.items.iter().find(|&&i| i as usize >= self.item_ids.len()) {
            bail!("{what}: item id {bad} out of range (items: {})", self.item_ids.len());
        }
        if self.features.len() != m.features.len() || self.features.iter().any(|f| f.len() != n) {
            bail!("{what}: features must be {} columns of {n} values", m.features.len());
        }
        if self.session_offsets.len() != u + 1
            || self.session_offsets[0] != 0
            || self.session_offsets[u] != s
            || self.session_offsets.windows(2).any(|w| w[0] > w[1])
            || self.session_quality.len() != s
        {
            bail!("{what}: session tables are inconsistent (session_offsets/starts/quality)");
        }
        for user in 0..u {
            let len = self.offsets[user + 1] - self.offsets[user];
            let st = &self.session_starts[self.session_offsets[user]..self.session_offsets[user + 1]];
            let ok = if len == 0 {
                st.is_empty() || st == [0]
            } else {
                st.first() == Some(&0) && st.windows(2).all(|w| w[0] < w[1]) && st.iter().all(|&x| x < len)
            };
            if !ok {
                bail!("{what}: user {user}'s session starts {st:?} are invalid for a history of {len}");
            }
        }
        Ok(())
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
        starts.iter().enumerate().map(|(k, &s)| s..starts.get(k + 1).copied().unwrap_or(n)).collect()
    }
    /// Number of sessions of user `u`.
    pub fn n_sessions(&self, u: usize) -> usize {
        self.session_offsets[u + 1] - self.session_offsets[u]
    }
    /// Whether user `u`'s `k`-th session passed the high-quality filter.
    pub fn session_is_high_quality(&self, u: usize, k: usize) -> bool {
        self.session_quality[self.session_offsets[u] + k]
    }
    /// Every high-quality session as (user, history index range), users in dense order.
    pub fn high_quality_sessions(&self) -> Vec<(usize, Range<usize>)> {
        (0..self.n_users())
            .flat_map(|u| {
                let base = self.session_offsets[u];
                self.sessions(u)
                    .into_iter()
                    .enumerate()
                    .filter(move |(k, _)| self.session_quality[base + k])
                    .map(move |(_, r)| (u, r))
            })
            .collect()
    }
    /// Items per session target (`--session-len`, manifest `extra.session_len`; 5 if absent).
    pub fn session_len(&self) -> usize {
        self.manifest.extra.get("session_len").and_then(|v| v.as_u64()).map_or(5, |v| v as usize)
    }
    /// The target of user `u`'s `k`-th session: its first `session_len()` items
    /// (fewer when the session is shorter), as history indices.
    pub fn session_target(&self, u: usize, k: usize) -> Range<usize> {
        let r = self.sessions(u)[k].clone();
        r.start..r.end.min(r.start + self.session_len())
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
            session_quality: vec![true; users],
            dir: None,
        }
    }
}
