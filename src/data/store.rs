//! Reading and writing the prepared dataset directory (layout in `data::dataset`):
//! `Dataset::load` / `Dataset::save` live here, so `dataset` (the in-memory type) does not
//! depend on its file format.

use super::dataset::{Dataset, DatasetManifest};
use crate::util::io;
use anyhow::{bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::io::Write;
use std::path::Path;

pub const MANIFEST: &str = "dataset.json";
pub const HISTORIES: &str = "histories.safetensors";
pub const USER_IDS: &str = "user_ids.txt";
pub const ITEM_IDS: &str = "item_ids.txt";

fn i64_bytes(v: impl Iterator<Item = i64>) -> Vec<u8> {
    v.flat_map(|x| x.to_le_bytes()).collect()
}

impl Dataset {
    /// Loads and validates a prepared dataset directory.
    pub fn load(dir: &Path) -> Result<Dataset> {
        load(dir)
    }

    /// Writes the dataset into `dir` (each file atomically). To build a whole directory
    /// atomically use `data::prepare::write_dataset`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        save(self, dir)
    }
}

/// Writes every file of `ds` into `dir` (created if missing), each atomically.
fn save(ds: &Dataset, dir: &Path) -> Result<()> {
    ds.validate("dataset to save")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = vec![
        ("offsets".into(), Dtype::I64, vec![ds.offsets.len()], i64_bytes(ds.offsets.iter().map(|&x| x as i64))),
        ("items".into(), Dtype::U32, vec![ds.items.len()], ds.items.iter().flat_map(|x| x.to_le_bytes()).collect()),
        ("timestamps".into(), Dtype::I64, vec![ds.timestamps.len()], i64_bytes(ds.timestamps.iter().copied())),
        (
            "session_offsets".into(),
            Dtype::I64,
            vec![ds.session_offsets.len()],
            i64_bytes(ds.session_offsets.iter().map(|&x| x as i64)),
        ),
        (
            "session_starts".into(),
            Dtype::I64,
            vec![ds.session_starts.len()],
            i64_bytes(ds.session_starts.iter().map(|&x| x as i64)),
        ),
        (
            "session_quality".into(),
            Dtype::U8,
            vec![ds.session_quality.len()],
            ds.session_quality.iter().map(|&q| q as u8).collect(),
        ),
    ];
    for (name, col) in ds.manifest.features.iter().zip(&ds.features) {
        tensors.push((
            format!("feature.{name}"),
            Dtype::F32,
            vec![col.len()],
            col.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ));
    }
    let views = tensors
        .iter()
        .map(|(n, dt, shape, bytes)| Ok((n.clone(), safetensors::tensor::TensorView::new(*dt, shape.clone(), bytes)?)))
        .collect::<Result<Vec<_>>>()?;
    // Straight to a temp file and renamed (no second in-memory copy of every tensor).
    let path = dir.join(HISTORIES);
    let tmp = dir.join(format!("{HISTORIES}.tmp{}", std::process::id()));
    safetensors::serialize_to_file(views, None, &tmp)
        .with_context(|| format!("writing {}", tmp.display()))
        .and_then(|()| std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display())))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
    drop(tensors);
    write_lines(&dir.join(USER_IDS), &ds.user_ids)?;
    write_lines(&dir.join(ITEM_IDS), &ds.item_ids)?;
    io::write_json(&dir.join(MANIFEST), &ds.manifest)?;
    tracing::info!(
        "wrote dataset {} ({} users, {} items, {} interactions)",
        dir.display(),
        ds.n_users(),
        ds.n_items(),
        ds.items.len()
    );
    Ok(())
}

fn write_lines(path: &Path, lines: &[String]) -> Result<()> {
    io::atomic_write_with(path, |w| {
        for l in lines {
            w.write_all(l.as_bytes())?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// Reads one 1-D tensor as raw bytes, checking its dtype.
fn tensor<'a>(st: &'a SafeTensors, path: &Path, name: &str, dtype: Dtype) -> Result<&'a [u8]> {
    let t = st.tensor(name).with_context(|| {
        format!("{}: missing tensor `{name}` (found {:?}); re-run `onerec data prepare`", path.display(), st.names())
    })?;
    if t.dtype() != dtype || t.shape().len() != 1 {
        bail!("{}: tensor `{name}` must be 1-D {dtype:?}, found {:?} {:?}", path.display(), t.dtype(), t.shape());
    }
    Ok(t.data())
}

fn as_usize(bytes: &[u8], path: &Path, name: &str) -> Result<Vec<usize>> {
    bytes
        .chunks_exact(8)
        .map(|c| {
            let v = i64::from_le_bytes(c.try_into().expect("8-byte chunk"));
            usize::try_from(v).map_err(|_| anyhow::anyhow!("{}: `{name}` has negative value {v}", path.display()))
        })
        .collect()
}

fn load(dir: &Path) -> Result<Dataset> {
    let manifest: DatasetManifest = io::read_json(&dir.join(MANIFEST))
        .with_context(|| format!("{} is not a prepared dataset (run `onerec data prepare`)", dir.display()))?;
    let hpath = dir.join(HISTORIES);
    let bytes = std::fs::read(&hpath).with_context(|| format!("cannot read {}", hpath.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a valid safetensors file", hpath.display()))?;
    let offsets = as_usize(tensor(&st, &hpath, "offsets", Dtype::I64)?, &hpath, "offsets")?;
    let items = tensor(&st, &hpath, "items", Dtype::U32)?
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4-byte chunk")))
        .collect();
    let timestamps = tensor(&st, &hpath, "timestamps", Dtype::I64)?
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8-byte chunk")))
        .collect();
    let session_offsets = as_usize(tensor(&st, &hpath, "session_offsets", Dtype::I64)?, &hpath, "session_offsets")?;
    let session_starts = as_usize(tensor(&st, &hpath, "session_starts", Dtype::I64)?, &hpath, "session_starts")?;
    let session_quality = tensor(&st, &hpath, "session_quality", Dtype::U8)?.iter().map(|&b| b != 0).collect();
    let features = manifest
        .features
        .iter()
        .map(|f| {
            Ok(tensor(&st, &hpath, &format!("feature.{f}"), Dtype::F32)?
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4-byte chunk")))
                .collect())
        })
        .collect::<Result<Vec<Vec<f32>>>>()?;
    let ds = Dataset {
        user_ids: read_lines(&dir.join(USER_IDS))?,
        item_ids: read_lines(&dir.join(ITEM_IDS))?,
        manifest,
        offsets,
        items,
        timestamps,
        features,
        session_offsets,
        session_starts,
        session_quality,
        dir: std::fs::canonicalize(dir).ok(),
    };
    ds.validate(&dir.display().to_string())?;
    tracing::info!(
        "loaded dataset {} ({} users, {} items, {} interactions)",
        dir.display(),
        ds.n_users(),
        ds.n_items(),
        ds.items.len()
    );
    Ok(ds)
}
