//! The tokenizer artifact: every item's unique code path, the per-level codebook
//! sizes, and the prefix trie of valid paths.
//!
//! On disk (a directory): `manifest.json` (method, levels, sizes, inputs with sha256,
//! seed, metrics), `codes.tsv` (exactly `item_id<TAB>c1,c2,c3[,c4]` per line,
//! human-readable and, with the manifest's `sizes`, the source of truth for loading),
//! `codebooks.safetensors` (centroids per level) and `timings.json` (wall-clock seconds
//! per stage, kept apart so the rest is byte-identical for the same inputs and seed).

use super::trie::PrefixTrie;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;

/// Items <-> semantic-ID paths. All paths have the same length (`levels`).
#[derive(Clone, Debug)]
pub struct SemanticIds {
    /// Codebook size of each level (including a disambiguation level, if any).
    pub codebook_sizes: Vec<usize>,
    /// Original item id per row.
    pub item_ids: Vec<String>,
    /// Codes, row-major [n_items, levels].
    pub codes: Vec<u32>,
    trie: PrefixTrie,
    index: HashMap<String, u32>,
}

impl SemanticIds {
    /// Builds the artifact from per-item paths; fails if any two items share a path
    /// or a code is outside its level's codebook.
    pub fn new(item_ids: Vec<String>, codebook_sizes: Vec<usize>, codes: Vec<u32>) -> Result<SemanticIds> {
        check_codebook_sizes(&codebook_sizes)?;
        let levels = codebook_sizes.len();
        if levels == 0 || codes.len() != item_ids.len() * levels {
            bail!("semantic ids: {} codes for {} items x {} levels", codes.len(), item_ids.len(), levels);
        }
        for (i, path) in codes.chunks_exact(levels).enumerate() {
            for (l, &c) in path.iter().enumerate() {
                if c as usize >= codebook_sizes[l] {
                    bail!("item {}: code {c} at level {l} exceeds codebook size {}", item_ids[i], codebook_sizes[l]);
                }
            }
        }
        let trie = PrefixTrie::build(codes.chunks_exact(levels));
        for (i, path) in codes.chunks_exact(levels).enumerate() {
            if trie.lookup(path) != Some(i as u32) {
                bail!("item {} shares its path {:?} with another item; paths must be unique", item_ids[i], path);
            }
        }
        let mut index = HashMap::with_capacity(item_ids.len());
        for (i, id) in item_ids.iter().enumerate() {
            if index.insert(id.clone(), i as u32).is_some() {
                bail!("item id {id} appears twice");
            }
        }
        Ok(SemanticIds { codebook_sizes, item_ids, codes, trie, index })
    }

    pub fn levels(&self) -> usize {
        self.codebook_sizes.len()
    }
    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }
    /// The code path of item row `item`.
    pub fn codes(&self, item: u32) -> &[u32] {
        let l = self.levels();
        &self.codes[item as usize * l..(item as usize + 1) * l]
    }
    /// The item row whose path is `codes`, or None for an invalid path.
    pub fn item(&self, codes: &[u32]) -> Option<u32> {
        if codes.len() != self.levels() {
            return None;
        }
        self.trie.lookup(codes)
    }
    /// Row of an original item id.
    pub fn row_of(&self, item_id: &str) -> Option<u32> {
        self.index.get(item_id).copied()
    }
    pub fn trie(&self) -> &PrefixTrie {
        &self.trie
    }

    /// For each dense item of a dataset (by its original id), the tokenizer row.
    /// Fails naming the first items the tokenizer does not know.
    pub fn rows_for(&self, dataset_item_ids: &[String]) -> Result<Vec<u32>> {
        let mut missing = Vec::new();
        let rows: Vec<u32> = dataset_item_ids
            .iter()
            .map(|id| {
                self.row_of(id).unwrap_or_else(|| {
                    missing.push(id.clone());
                    0
                })
            })
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} dataset items have no semantic id (e.g. {:?}); tokenize embeddings that cover every item",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
        }
        Ok(rows)
    }

    /// The same paths re-indexed so that row `i` is dataset item `i` (dense id), for
    /// the model and decoding; fails naming items the tokenizer does not know.
    pub fn reindexed(&self, dataset_item_ids: &[String]) -> Result<SemanticIds> {
        let rows = self.rows_for(dataset_item_ids)?;
        let codes = rows.iter().flat_map(|&r| self.codes(r).iter().copied()).collect();
        SemanticIds::new(dataset_item_ids.to_vec(), self.codebook_sizes.clone(), codes)
    }

    /// The `codes.tsv` text: exactly `item_id<TAB>c1,c2,...` per line, no header (the
    /// codebook sizes live in the directory's manifest).
    pub fn codes_text(&self) -> String {
        let mut s = String::with_capacity(self.n_items() * (8 + 5 * self.levels()));
        for (i, id) in self.item_ids.iter().enumerate() {
            s.push_str(id);
            s.push('\t');
            for (l, c) in self.codes(i as u32).iter().enumerate() {
                if l > 0 {
                    s.push(',');
                }
                s.push_str(&c.to_string());
            }
            s.push('\n');
        }
        s
    }

    /// sha256 of [`Self::codes_text`]: equals the sha256 of the `codes.tsv` file this
    /// artifact writes, so in-memory and on-disk fingerprints agree.
    pub fn content_sha256(&self) -> String {
        crate::util::io::sha256_bytes(self.codes_text().as_bytes())
    }

    /// The fingerprint older builds recorded (codes.tsv with a `# levels=` header line),
    /// so checkpoints written before the header was dropped still verify.
    pub fn legacy_sha256(&self) -> String {
        let sizes: Vec<String> = self.codebook_sizes.iter().map(|s| s.to_string()).collect();
        let text = format!("{LEGACY_HEADER}{}\n{}", sizes.join(","), self.codes_text());
        crate::util::io::sha256_bytes(text.as_bytes())
    }

    /// Writes only `codes.tsv` into `dir` (atomically); the caller records the codebook
    /// sizes in its own manifest (tokenizer `manifest.json`, `checkpoint.json`).
    pub fn write_codes(&self, dir: &Path) -> Result<()> {
        crate::util::io::atomic_write(&dir.join("codes.tsv"), self.codes_text().as_bytes())
    }

    /// Writes a minimal tokenizer directory: `codes.tsv` plus a `manifest.json` holding
    /// the codebook sizes, enough for [`Self::load`] (for ids built outside `fit`).
    pub fn save_codes(&self, dir: &Path) -> Result<()> {
        self.write_codes(dir)?;
        let manifest = serde_json::json!({
            "format": "onerec-tokenizer/1",
            "levels": self.levels(),
            "sizes": self.codebook_sizes,
            "codes_sha256": self.content_sha256(),
        });
        crate::util::io::write_json(&dir.join("manifest.json"), &manifest)
    }

    /// Loads a tokenizer directory: `codes.tsv`, with the codebook sizes from
    /// `manifest.json` (`sizes`), else `checkpoint.json` (`vocab.codebook_sizes`), else
    /// a legacy `# levels=` header in `codes.tsv`.
    pub fn load(dir: &Path) -> Result<SemanticIds> {
        let path = dir.join("codes.tsv");
        if !path.is_file() {
            bail!("cannot read {} (is {} a tokenizer directory?)", path.display(), dir.display());
        }
        let sizes = recorded_sizes(dir)?;
        SemanticIds::read_codes(&path, sizes.as_deref())
    }

    /// Parses a `codes.tsv` file. `sizes` are the codebook sizes from the file's manifest;
    /// a legacy header, when present, must agree with them (or stands in for them).
    pub fn read_codes(path: &Path, sizes: Option<&[usize]>) -> Result<SemanticIds> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut lines = text.lines().enumerate().peekable();
        let header: Option<Vec<usize>> = match lines.peek() {
            Some((_, h)) if h.starts_with(LEGACY_HEADER) => {
                let h = h.to_string();
                lines.next();
                Some(
                    h[LEGACY_HEADER.len()..]
                        .split(',')
                        .map(|s| s.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .with_context(|| format!("{}:1: bad header `{h}`", path.display()))?,
                )
            }
            _ => None,
        };
        let sizes: Vec<usize> = match (sizes, header) {
            (Some(s), Some(h)) if s != h.as_slice() => {
                bail!("{}:1: header sizes {h:?} disagree with the manifest's {s:?}", path.display())
            }
            (Some(s), _) => s.to_vec(),
            (None, Some(h)) => h,
            (None, None) => bail!(
                "{}: no codebook sizes; expected `sizes` in {} (or `vocab.codebook_sizes` in checkpoint.json)",
                path.display(),
                path.with_file_name("manifest.json").display()
            ),
        };
        let mut item_ids = Vec::new();
        let mut codes = Vec::new();
        for (ln, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let (id, path_s) = line
                .split_once('\t')
                .with_context(|| format!("{}:{}: expected `item_id<TAB>c1,c2,...`", path.display(), ln + 1))?;
            let p: Vec<u32> = path_s
                .split(',')
                .map(|s| s.trim().parse::<u32>())
                .collect::<Result<_, _>>()
                .with_context(|| format!("{}:{}: non-numeric code in `{path_s}`", path.display(), ln + 1))?;
            if p.len() != sizes.len() {
                bail!("{}:{}: {} codes, expected {}", path.display(), ln + 1, p.len(), sizes.len());
            }
            item_ids.push(id.to_string());
            codes.extend(p);
        }
        SemanticIds::new(item_ids, sizes, codes).with_context(|| format!("loading {}", path.display()))
    }

    /// sha256 of the `codes.tsv` that defines this artifact (checkpoints and reward
    /// models record it). A legacy header line is not hashed, so an old directory
    /// fingerprints like its in-memory ids ([`Self::content_sha256`]).
    pub fn fingerprint(dir: &Path) -> Result<String> {
        let path = dir.join("codes.tsv");
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let body = match bytes.strip_prefix(LEGACY_HEADER.as_bytes()) {
            Some(rest) => rest.iter().position(|&b| b == b'\n').map_or(&[][..], |i| &rest[i + 1..]),
            None => &bytes[..],
        };
        Ok(crate::util::io::sha256_bytes(body))
    }
}

/// Most semantic-id levels a tokenizer may have.
pub const MAX_LEVELS: usize = 64;
/// Largest codebook of one level.
pub const MAX_CODEBOOK: usize = 1 << 20;
/// Most code tokens over all levels (decoder vocabulary ids are u32; the embedding
/// table is this many rows).
pub const MAX_CODE_TOKENS: usize = 1 << 24;

/// Checks codebook sizes read from a manifest, `codes.tsv` header or `checkpoint.json`
/// against [`MAX_LEVELS`], [`MAX_CODEBOOK`] and [`MAX_CODE_TOKENS`] before anything is
/// sized by them.
pub fn check_codebook_sizes(sizes: &[usize]) -> Result<()> {
    if sizes.is_empty() || sizes.len() > MAX_LEVELS {
        bail!("codebook sizes {sizes:?}: expected 1 to {MAX_LEVELS} levels");
    }
    if let Some(s) = sizes.iter().find(|&&s| s == 0 || s > MAX_CODEBOOK) {
        bail!("codebook size {s} (in {sizes:?}) must be between 1 and {MAX_CODEBOOK}");
    }
    let total: usize = sizes.iter().sum();
    if total > MAX_CODE_TOKENS {
        bail!("codebook sizes {sizes:?} total {total} code tokens, above the limit {MAX_CODE_TOKENS}");
    }
    Ok(())
}

/// First line of `codes.tsv` as written by older builds.
const LEGACY_HEADER: &str = "# levels=";

/// Codebook sizes recorded beside `codes.tsv`: `manifest.json` `sizes` (tokenizer
/// artifacts) or `checkpoint.json` `vocab.codebook_sizes` (checkpoints); None if neither
/// file exists (a legacy `codes.tsv` header may still supply them).
fn recorded_sizes(dir: &Path) -> Result<Option<Vec<usize>>> {
    let sizes_at = |file: &str, keys: &[&str]| -> Result<Option<Vec<usize>>> {
        let path = dir.join(file);
        if !path.is_file() {
            return Ok(None);
        }
        let v: serde_json::Value = crate::util::io::read_json(&path)?;
        let field = keys.iter().try_fold(&v, |v, k| v.get(k));
        let sizes = field
            .and_then(|f| f.as_array())
            .and_then(|a| a.iter().map(|x| x.as_u64().map(|n| n as usize)).collect::<Option<Vec<_>>>())
            .with_context(|| {
                format!("{}: expected `{}` as a list of codebook sizes", path.display(), keys.join("."))
            })?;
        Ok(Some(sizes))
    };
    match sizes_at("manifest.json", &["sizes"])? {
        Some(s) => Ok(Some(s)),
        None => sizes_at("checkpoint.json", &["vocab", "codebook_sizes"]),
    }
}
