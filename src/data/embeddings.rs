//! Item embedding files: safetensors (tensor `embeddings` [n, d] f16/f32/bf16/f64 and
//! optional `item_ids` i64 [n]) and NumPy `.npy` ([n, d] float, row r = item r).
//!
//! Ids that are not integers (e.g. Amazon ASINs) cannot live in an i64 tensor, so
//! `onerec embed` writes them one per line, in row order, to `FILE.item_ids.txt` beside
//! the file; the loader reads that sidecar when the file itself has no `item_ids`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// A dense matrix of item embeddings, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    /// Original item id of each row (row index as a string when the file has none).
    pub item_ids: Vec<String>,
    pub data: Vec<f32>,
    pub n: usize,
    pub d: usize,
}

impl Embeddings {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.d..(i + 1) * self.d]
    }

    /// Loads a `.safetensors` or `.npy` file (row ids from `item_ids`, else from the
    /// `FILE.item_ids.txt` sidecar, else 0..n); checks shapes and finiteness.
    pub fn load(path: &Path) -> Result<Embeddings> {
        let name = path.to_string_lossy();
        let (mut emb, has_ids) = if name.ends_with(".npy") || name.ends_with(".npy.gz") {
            (load_npy(path)?, false)
        } else {
            load_safetensors(path)?
        };
        let sidecar = ids_sidecar(path);
        if !has_ids && sidecar.is_file() {
            emb.item_ids = read_ids_file(&sidecar, emb.n)?;
        }
        if emb.n == 0 || emb.d == 0 {
            bail!("{}: empty embedding matrix [{}, {}]", path.display(), emb.n, emb.d);
        }
        if let Some(bad) = emb.data.iter().position(|v| !v.is_finite()) {
            bail!(
                "{}: row {} (item {}) has a NaN or infinite value; clean the file first",
                path.display(),
                bad / emb.d,
                emb.item_ids[bad / emb.d]
            );
        }
        Ok(emb)
    }
}

/// `FILE.item_ids.txt`: the row ids of `FILE` when they are not all integers.
pub fn ids_sidecar(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".item_ids.txt");
    path.with_file_name(name)
}

/// One id per line, exactly `n` non-empty, unique lines.
fn read_ids_file(path: &Path, n: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let ids: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    if ids.len() != n {
        bail!("{}: {} ids for {n} embedding rows", path.display(), ids.len());
    }
    let mut seen = std::collections::HashSet::with_capacity(n);
    for (i, id) in ids.iter().enumerate() {
        if id.is_empty() {
            bail!("{}:{}: empty item id", path.display(), i + 1);
        }
        if !seen.insert(id.as_str()) {
            bail!("{}:{}: item id `{id}` appears twice", path.display(), i + 1);
        }
    }
    Ok(ids)
}

/// The embeddings, and whether the file carried its own `item_ids`.
fn load_safetensors(path: &Path) -> Result<(Embeddings, bool)> {
    let bytes = crate::util::io::read_bytes(path)?;
    parse_safetensors(&bytes, path)
}

/// Parses safetensors bytes (`path` only names the file in errors); the safetensors crate
/// checks every tensor's shape against its byte range, and an empty matrix is refused
/// before the row ids are built.
pub fn parse_safetensors(bytes: &[u8], path: &Path) -> Result<(Embeddings, bool)> {
    use safetensors::{Dtype, SafeTensors};
    let st =
        SafeTensors::deserialize(bytes).with_context(|| format!("{}: not a valid safetensors file", path.display()))?;
    let t = st.tensor("embeddings").with_context(|| {
        format!(
            "{}: no tensor named `embeddings` (found: {:?}); the file must hold `embeddings` [n, d]",
            path.display(),
            st.names()
        )
    })?;
    let shape = t.shape().to_vec();
    if shape.len() != 2 {
        bail!("{}: `embeddings` must be 2-D [n, d], found shape {:?}", path.display(), shape);
    }
    let (n, d) = (shape[0], shape[1]);
    if n == 0 || d == 0 {
        bail!("{}: empty embedding matrix [{n}, {d}]", path.display());
    }
    let raw = t.data();
    let data: Vec<f32> = match t.dtype() {
        Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F64 => {
            raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f32).collect()
        }
        other => bail!("{}: `embeddings` has dtype {:?}; expected f16, bf16, f32 or f64", path.display(), other),
    };
    let (item_ids, has_ids) = match st.tensor("item_ids") {
        Ok(ids) => {
            if ids.dtype() != Dtype::I64 || ids.shape() != [n] {
                bail!("{}: `item_ids` must be i64 [{n}], found {:?} {:?}", path.display(), ids.dtype(), ids.shape());
            }
            let ids = ids
                .data()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8-byte chunk")).to_string())
                .collect();
            (ids, true)
        }
        Err(_) => ((0..n).map(|i| i.to_string()).collect(), false),
    };
    Ok((Embeddings { item_ids, data, n, d }, has_ids))
}

fn load_npy(path: &Path) -> Result<Embeddings> {
    let bytes = crate::util::io::read_bytes(path)?;
    parse_npy(&bytes).with_context(|| format!("{}: not a valid .npy file", path.display()))
}

/// Parses a `.npy` file's bytes (2-D little-endian float, C order). Every size in the
/// header is checked against the bytes present before anything is allocated, so a
/// corrupt or hostile header is an error, never a panic or a huge allocation.
pub fn parse_npy(bytes: &[u8]) -> Result<Embeddings> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("missing magic `\\x93NUMPY`");
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => bail!("unsupported version {v}"),
    };
    let header = bytes.get(start..start.saturating_add(header_len)).context("truncated header")?;
    if !header.is_ascii() {
        bail!("header is not ASCII");
    }
    let header = std::str::from_utf8(header).context("header not UTF-8")?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        Some(header[i + key.len() + 2..].trim_start().trim_start_matches(':').trim_start())
    };
    let descr = field("descr").context("no descr")?;
    let descr = descr.trim_start_matches('\'').split('\'').next().unwrap_or("");
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        bail!("fortran_order arrays are not supported; save C-ordered");
    }
    let shape_s = field("shape").context("no shape")?;
    let shape_s = shape_s
        .strip_prefix('(')
        .and_then(|s| s.split_once(')'))
        .map(|(inner, _)| inner)
        .context("bad shape: expected a tuple like (n, d)")?;
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().with_context(|| format!("bad shape entry `{s}`")))
        .collect::<Result<_>>()?;
    if shape.len() != 2 {
        bail!("array must be 2-D [n, d], found shape {shape:?}");
    }
    let (n, d) = (shape[0], shape[1]);
    if n == 0 || d == 0 {
        bail!("empty embedding matrix [{n}, {d}]");
    }
    let raw = &bytes[start + header_len..];
    let width = match descr {
        "<f4" => 4,
        "<f2" => 2,
        "<f8" => 8,
        other => bail!("dtype {other} not supported; use float16/32/64 little-endian"),
    };
    let need = n.checked_mul(d).and_then(|v| v.checked_mul(width));
    if need != Some(raw.len()) {
        let need = need.map_or("more than usize::MAX".to_string(), |v| v.to_string());
        bail!("data is {} bytes, shape {shape:?} needs {need}", raw.len());
    }
    let data = match width {
        4 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        2 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        _ => raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
    };
    Ok(Embeddings { item_ids: (0..n).map(|i| i.to_string()).collect(), data, n, d })
}

/// Writes embeddings with their item ids: safetensors with `item_ids` when every id is an
/// integer, else the `FILE.item_ids.txt` sidecar (row order; returned) beside it, which
/// [`Embeddings::load`] reads back. A stale sidecar of an earlier file is removed.
pub fn save_with_ids(path: &Path, emb: &Embeddings, f16: bool) -> Result<Option<PathBuf>> {
    let ids_path = ids_sidecar(path);
    let sidecar = if emb.item_ids.iter().all(|s| s.parse::<i64>().is_ok()) {
        if ids_path.exists() {
            std::fs::remove_file(&ids_path).with_context(|| format!("cannot remove stale {}", ids_path.display()))?;
        }
        None
    } else {
        let mut s = emb.item_ids.join("\n");
        s.push('\n');
        crate::util::io::atomic_write(&ids_path, s.as_bytes())?;
        Some(ids_path)
    };
    save_safetensors(path, emb, f16)?;
    Ok(sidecar)
}

/// Writes embeddings as safetensors (`embeddings` f32 or f16, `item_ids` i64 when every id
/// parses as an integer), atomically.
pub fn save_safetensors(path: &Path, emb: &Embeddings, f16: bool) -> Result<()> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let data: Vec<u8> = if f16 {
        emb.data.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect()
    } else {
        emb.data.iter().flat_map(|v| v.to_le_bytes()).collect()
    };
    let dtype = if f16 { Dtype::F16 } else { Dtype::F32 };
    let mut tensors = vec![("embeddings".to_string(), TensorView::new(dtype, vec![emb.n, emb.d], &data)?)];
    let ids: Option<Vec<i64>> = emb.item_ids.iter().map(|s| s.parse::<i64>().ok()).collect();
    let id_bytes: Vec<u8> = ids.unwrap_or_default().iter().flat_map(|v| v.to_le_bytes()).collect();
    if id_bytes.len() == emb.n * 8 {
        tensors.push(("item_ids".to_string(), TensorView::new(Dtype::I64, vec![emb.n], &id_bytes)?));
    }
    let bytes = safetensors::serialize(tensors, None)?;
    crate::util::io::atomic_write(path, &bytes)
}
