//! A trained baseline's item table as item embeddings: the behaviour-learned modality
//! that `onerec tokenize` can fuse with text (issue 16: OneRec aligns its tokenizer to
//! behaviour, and tokenizer alignment was our largest measured factor).

use crate::baseline::sasrec::checkpoint;
use crate::data::embeddings::Embeddings;
use crate::data::Dataset;
use anyhow::{ensure, Result};
use std::path::Path;

/// The item embeddings of SASRec checkpoint `ckpt` (or its `best/`): one row per item of
/// `ds` (which must be the catalogue it was trained on), keyed by the original item ids.
pub fn sasrec_item_embeddings(ckpt: &Path, ds: &Dataset) -> Result<Embeddings> {
    let c = checkpoint::load(ckpt)?;
    checkpoint::check_dataset(&c.meta, &c.dir, ds)?;
    let table = c.model.item_table()?;
    let (n, d) = table.dims2()?;
    ensure!(n == ds.n_items(), "{}: item table has {n} rows for {} items", c.dir.display(), ds.n_items());
    let data = table.flatten_all()?.to_vec1::<f32>()?;
    Ok(Embeddings { item_ids: ds.item_ids.clone(), data, n, d })
}
