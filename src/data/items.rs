//! Item tables: CSV/TSV files with a header, an item id column and text/attribute
//! columns (e.g. `items.tsv.gz`, `movies.csv.gz`). Used by `onerec embed` to build texts.

use super::readers::{csv_err, read_header, table_delimiter};
use crate::util::io::open_text;
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// An item table: the columns, and each row keyed by item id, in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemTable {
    pub id_col: String,
    /// Every header column except the id column, in header order.
    pub columns: Vec<String>,
    /// Item ids in file order.
    pub ids: Vec<String>,
    /// id -> (column -> value) for the non-id columns.
    pub rows: BTreeMap<String, BTreeMap<String, String>>,
}

impl ItemTable {
    /// The value of `col` for item `id`, if both exist.
    pub fn get(&self, id: &str, col: &str) -> Option<&str> {
        self.rows.get(id)?.get(col).map(String::as_str)
    }
}

/// Reads an item table; `id_col` names the item id column. Duplicate ids, empty ids,
/// wrong column counts, an unknown id column and an empty file are errors (file:line).
pub fn read_items(path: &Path, id_col: &str) -> Result<ItemTable> {
    let file = path.display().to_string();
    let delim = table_delimiter(path)?;
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .quoting(delim != b'\t') // TSV has no quoting: a `"` is an ordinary character
        .flexible(true)
        .from_reader(open_text(path)?);
    let header = read_header(&mut rdr, &file)?;
    let idc = header.iter().position(|h| h == id_col).ok_or_else(|| {
        anyhow!("{file}:1: unknown column `{id_col}`; the header's columns are: {}", header.join(", "))
    })?;
    let columns: Vec<String> = header.iter().enumerate().filter(|(c, _)| *c != idc).map(|(_, h)| h.clone()).collect();
    let mut table = ItemTable { id_col: id_col.to_string(), columns, ids: Vec::new(), rows: BTreeMap::new() };
    let mut first_line = BTreeMap::new();
    let mut line = 1;
    for rec in rdr.records() {
        let rec = rec.map_err(|e| csv_err(&file, e, line + 1))?;
        line = rec.position().map_or(line + 1, |p| p.line());
        if rec.len() == 1 && rec[0].trim().is_empty() {
            continue;
        }
        if rec.len() != header.len() {
            bail!("{file}:{line}: wrong column count: {} fields, the header has {}", rec.len(), header.len());
        }
        let id = rec[idc].trim().to_string();
        if id.is_empty() {
            bail!("{file}:{line}: empty item id in column `{id_col}`");
        }
        if let Some(prev) = first_line.insert(id.clone(), line) {
            bail!("{file}:{line}: item `{id}` already listed at line {prev}");
        }
        let row = header
            .iter()
            .zip(rec.iter())
            .enumerate()
            .filter(|(c, _)| *c != idc)
            .map(|(_, (h, v))| (h.clone(), v.to_string()))
            .collect();
        table.ids.push(id.clone());
        table.rows.insert(id, row);
    }
    if table.ids.is_empty() {
        bail!("{file}: empty file (a header but no item lines)");
    }
    tracing::info!("read {file}: {} items, columns {:?}", table.ids.len(), table.columns);
    Ok(table)
}
