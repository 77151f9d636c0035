//! What the server loads once at start: the model, its semantic ids and decode index,
//! and the known users' histories (from the checkpoint's dataset).

use super::request::Catalogue;
use crate::data::Dataset;
use crate::generate::users::{align_dataset, users_from_split, SplitSel};
use crate::generate::DecodeIndex;
use crate::model::checkpoint::{dataset_dir, load, Checkpoint};
use crate::model::Vocab;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The loaded model and everything a request needs to be decoded.
pub struct ModelState {
    pub ckpt: Checkpoint,
    pub vocab: Vocab,
    pub index: DecodeIndex,
    /// Known users: original id -> dense item ids, oldest first (up to `split`).
    pub users: HashMap<String, Vec<u32>>,
    /// The dataset the histories came from.
    pub data_dir: PathBuf,
    pub split: SplitSel,
}

impl ModelState {
    /// Loads the checkpoint and the dataset (`data`, or the one the checkpoint records);
    /// a user's history ends before `split`'s target (`all`: the whole history).
    pub fn load(checkpoint: &Path, data: Option<&Path>, split: SplitSel) -> Result<ModelState> {
        let ckpt = load(checkpoint)?;
        let data_dir = dataset_dir(data, &ckpt.dir, &ckpt.meta)?;
        let ds = Dataset::load(&data_dir).with_context(|| format!("loading dataset {}", data_dir.display()))?;
        let ds = align_dataset(&ds, &ckpt.semantic_ids)?;
        let users = users_from_split(&ds, split)
            .into_iter()
            .filter(|u| !u.history.is_empty())
            .map(|u| (u.user_id, u.history))
            .collect();
        let vocab = Vocab::new(ckpt.semantic_ids.codebook_sizes.clone());
        let index = DecodeIndex::new(&ckpt.semantic_ids)?;
        Ok(ModelState { ckpt, vocab, index, users, data_dir, split })
    }

    /// What requests are checked against.
    pub fn catalogue(&self) -> Catalogue<'_> {
        Catalogue {
            ids: &self.ckpt.semantic_ids,
            users: &self.users,
            max_session_items: self.ckpt.meta.model.max_session_items,
            item_head: self.has_item_head(),
        }
    }

    /// Whether the model has the full-item head fused ranking needs.
    pub fn has_item_head(&self) -> bool {
        self.ckpt.meta.model.item_id_embedding
    }

    /// `GET /v1/model`: what is being served.
    pub fn describe(&self) -> serde_json::Value {
        let m = &self.ckpt.meta;
        serde_json::json!({
            "checkpoint": self.ckpt.dir,
            "step": m.step,
            "seed": m.seed,
            "config": m.model,
            "vocab": m.vocab,
            "items": m.n_items,
            "item_head": self.has_item_head(),
            "dataset": {"dir": self.data_dir, "users": self.users.len(), "split": self.split},
        })
    }
}
