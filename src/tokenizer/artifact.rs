//! The tokenizer artifact: every item's unique code path, the per-level codebook
//! sizes, and the prefix trie of valid paths.
//!
//! On disk (a directory): `manifest.json` (method, levels, sizes, inputs with sha256,
//! seed, metrics), `codes.tsv` (`item_id<TAB>c1,c2,c3[,c4]`, human-readable and the
//! source of truth for loading), `codebooks.safetensors` (centroids per level).

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

    /// Writes `codes.tsv` into `dir` (atomically).
    pub fn save_codes(&self, dir: &Path) -> Result<()> {
        crate::util::io::atomic_write_with(&dir.join("codes.tsv"), |w| {
            use std::io::Write;
            writeln!(w, "# levels={}", self.codebook_sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(","))?;
            for (i, id) in self.item_ids.iter().enumerate() {
                let path: Vec<String> = self.codes(i as u32).iter().map(|c| c.to_string()).collect();
                writeln!(w, "{id}\t{}", path.join(","))?;
            }
            Ok(())
        })
    }

    /// Loads a tokenizer directory (reads `codes.tsv`).
    pub fn load(dir: &Path) -> Result<SemanticIds> {
        let path = dir.join("codes.tsv");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {} (is {} a tokenizer directory?)", path.display(), dir.display()))?;
        let mut lines = text.lines().enumerate();
        let sizes: Vec<usize> = match lines.next() {
            Some((_, h)) if h.starts_with("# levels=") => h["# levels=".len()..]
                .split(',')
                .map(|s| s.trim().parse::<usize>())
                .collect::<Result<_, _>>()
                .with_context(|| format!("{}:1: bad header `{h}`", path.display()))?,
            _ => bail!("{}:1: expected header `# levels=K1,K2,...`", path.display()),
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

    /// sha256 of the `codes.tsv` that defines this artifact (checkpoints record it).
    pub fn fingerprint(dir: &Path) -> Result<String> {
        crate::util::io::sha256_file(&dir.join("codes.tsv"))
    }
}
