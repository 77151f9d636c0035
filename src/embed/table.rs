//! A small item-table reader for `onerec embed`: CSV, TSV or JSONL (each optionally
//! `.gz`), every cell as a string. (A general reader lives in `data::items`; this one only
//! needs a header and string cells.)

use anyhow::{bail, Context, Result};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    Csv,
    Tsv,
    Jsonl,
}

impl TableFormat {
    /// Guesses the format from the file name (`.csv`, `.tsv`/`.tab`/`.txt`, `.jsonl`/`.ndjson`/`.json`, each optionally `.gz`).
    pub fn from_path(path: &Path) -> Result<TableFormat> {
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        Ok(match ext {
            "csv" => TableFormat::Csv,
            "tsv" | "tab" | "txt" => TableFormat::Tsv,
            "jsonl" | "ndjson" | "json" => TableFormat::Jsonl,
            _ => bail!(
                "{}: cannot tell the table format from the extension; use .csv, .tsv or .jsonl (optionally .gz) or pass --format",
                path.display()
            ),
        })
    }
}

/// Header plus string rows; `rows[r][c]` is column `columns[c]` ("" when a JSONL row lacks it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ItemTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl ItemTable {
    pub fn column(&self, name: &str) -> Result<usize> {
        self.columns
            .iter()
            .position(|c| c == name)
            .with_context(|| format!("no column `{name}` in the item table (columns: {:?})", self.columns))
    }
}

/// Reads `path` as `format` (guessed from the name when `None`).
pub fn read_table(path: &Path, format: Option<TableFormat>) -> Result<ItemTable> {
    let format = match format {
        Some(f) => f,
        None => TableFormat::from_path(path)?,
    };
    let reader = crate::util::io::open_text(path)?;
    let table = match format {
        TableFormat::Csv => read_delimited(reader, b',', true, path)?,
        TableFormat::Tsv => read_delimited(reader, b'\t', false, path)?,
        TableFormat::Jsonl => read_jsonl(reader, path)?,
    };
    if table.columns.is_empty() {
        bail!("{}: empty item table (no header)", path.display());
    }
    Ok(table)
}

fn read_delimited(reader: Box<dyn BufRead>, delim: u8, quoting: bool, path: &Path) -> Result<ItemTable> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .quoting(quoting)
        .has_headers(true)
        .flexible(false)
        .from_reader(reader);
    let columns: Vec<String> = rdr
        .headers()
        .with_context(|| format!("{}: cannot read the header line", path.display()))?
        .iter()
        .map(|s| s.trim_start_matches('\u{feff}').to_string())
        .collect();
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.with_context(|| {
            format!("{}: bad row (every row needs {} fields like the header)", path.display(), columns.len())
        })?;
        if rec.len() == 1 && rec[0].is_empty() {
            continue;
        }
        rows.push(rec.iter().map(str::to_string).collect());
    }
    Ok(ItemTable { columns, rows })
}

/// A JSON object's entries in file order (serde_json's Map would sort them).
struct Ordered(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = m.next_entry::<String, Value>()? {
                    v.push(e);
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON value as template text: strings as is, null as "", arrays joined with ", ".
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(cell).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn read_jsonl(reader: Box<dyn BufRead>, path: &Path) -> Result<ItemTable> {
    let mut columns: Vec<String> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{}: cannot read line {}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let obj: Ordered = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {} is not a JSON object", path.display(), i + 1))?;
        let mut row = vec![String::new(); columns.len()];
        for (k, v) in obj.0 {
            let c = *index.entry(k.clone()).or_insert_with(|| {
                columns.push(k);
                columns.len() - 1
            });
            if row.len() <= c {
                row.resize(c + 1, String::new());
            }
            row[c] = cell(&v);
        }
        rows.push(row);
    }
    for r in &mut rows {
        r.resize(columns.len(), String::new());
    }
    Ok(ItemTable { columns, rows })
}
