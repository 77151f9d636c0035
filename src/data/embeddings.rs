//! Item embedding files: safetensors (tensor `embeddings` [n, d] f16/f32/bf16/f64 and
//! optional `item_ids` i64 [n]) and NumPy `.npy` ([n, d] float, row r = item r).

use anyhow::{bail, Context, Result};
use std::path::Path;

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

    /// Loads a `.safetensors` or `.npy` file; checks shapes and finiteness.
    pub fn load(path: &Path) -> Result<Embeddings> {
        let name = path.to_string_lossy();
        let emb = if name.ends_with(".npy") || name.ends_with(".npy.gz") {
            load_npy(path)?
        } else {
            load_safetensors(path)?
        };
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

fn load_safetensors(path: &Path) -> Result<Embeddings> {
    use safetensors::{Dtype, SafeTensors};
    let bytes = crate::util::io::read_bytes(path)?;
    let st = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a valid safetensors file", path.display()))?;
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
    let raw = t.data();
    let data: Vec<f32> = match t.dtype() {
        Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F64 => raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f32)
            .collect(),
        other => bail!("{}: `embeddings` has dtype {:?}; expected f16, bf16, f32 or f64", path.display(), other),
    };
    let item_ids = match st.tensor("item_ids") {
        Ok(ids) => {
            if ids.dtype() != Dtype::I64 || ids.shape() != [n] {
                bail!(
                    "{}: `item_ids` must be i64 [{n}], found {:?} {:?}",
                    path.display(),
                    ids.dtype(),
                    ids.shape()
                );
            }
            ids.data()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8-byte chunk")).to_string())
                .collect()
        }
        Err(_) => (0..n).map(|i| i.to_string()).collect(),
    };
    Ok(Embeddings { item_ids, data, n, d })
}

fn load_npy(path: &Path) -> Result<Embeddings> {
    let bytes = crate::util::io::read_bytes(path)?;
    let bad = |why: &str| anyhow::anyhow!("{}: not a valid .npy file: {why}", path.display());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        _ => return Err(bad("unsupported version")),
    };
    let header = std::str::from_utf8(bytes.get(start..start + header_len).ok_or_else(|| bad("truncated header"))?)
        .map_err(|_| bad("header not UTF-8"))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        Some(header[i + key.len() + 2..].trim_start().trim_start_matches(':').trim_start())
    };
    let descr = field("descr").ok_or_else(|| bad("no descr"))?;
    let descr = descr.trim_start_matches('\'').split('\'').next().unwrap_or("");
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(bad("fortran_order arrays are not supported; save C-ordered"));
    }
    let shape_s = field("shape").ok_or_else(|| bad("no shape"))?;
    let shape_s = &shape_s[1..shape_s.find(')').ok_or_else(|| bad("bad shape"))?];
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    if shape.len() != 2 {
        bail!("{}: array must be 2-D [n, d], found shape {:?}", path.display(), shape);
    }
    let (n, d) = (shape[0], shape[1]);
    let raw = &bytes[start + header_len..];
    let width = match descr {
        "<f4" => 4,
        "<f2" => 2,
        "<f8" => 8,
        other => bail!("{}: dtype {other} not supported; use float16/32/64 little-endian", path.display()),
    };
    if raw.len() != n * d * width {
        bail!("{}: data is {} bytes, shape {:?} needs {}", path.display(), raw.len(), shape, n * d * width);
    }
    let data = match width {
        4 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        2 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        _ => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
    };
    Ok(Embeddings { item_ids: (0..n).map(|i| i.to_string()).collect(), data, n, d })
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
