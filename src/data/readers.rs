//! Readers for raw interaction data: sequence files (`user item item ...` per line) and
//! interaction tables (CSV/TSV with a header). Both yield an [`Interactions`] log in
//! input order; `data::prepare` turns it into a `Dataset`. `.gz` is read transparently.
//! Every bad line is an error naming the file and line; nothing is half-read.

use crate::util::io::open_text;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

/// Interactions in input order, with ids interned in order of first appearance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Interactions {
    /// Original user ids, by first appearance.
    pub user_ids: Vec<String>,
    /// Original item ids, by first appearance.
    pub item_ids: Vec<String>,
    /// Per interaction: index into `user_ids`.
    pub user: Vec<u32>,
    /// Per interaction: index into `item_ids`.
    pub item: Vec<u32>,
    /// Per interaction: timestamp (source units; sequence files: position in the line).
    pub time: Vec<i64>,
    /// Names of the engagement feature columns kept.
    pub feature_names: Vec<String>,
    /// Per feature, one value per interaction.
    pub features: Vec<Vec<f32>>,
    /// Per interaction: interned value of the session column, when one was named.
    pub session: Option<Vec<u32>>,
}

impl Interactions {
    /// Drops the spare capacity of the per-interaction columns (they grew by doubling).
    fn shrink_to_fit(&mut self) {
        self.user.shrink_to_fit();
        self.item.shrink_to_fit();
        self.time.shrink_to_fit();
        self.features.iter_mut().for_each(Vec::shrink_to_fit);
        if let Some(s) = &mut self.session {
            s.shrink_to_fit();
        }
    }
}

/// Interns strings to dense indices in order of first appearance.
#[derive(Default)]
struct Interner {
    map: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn get(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.map.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.map.insert(s.to_string(), i);
        self.names.push(s.to_string());
        i
    }
}

/// Checks an id token: non-empty, and a non-negative integer unless `string_ids`.
fn check_id<'a>(tok: &'a str, string_ids: bool, what: &str, at: &dyn Fn() -> String) -> Result<&'a str> {
    if tok.is_empty() {
        bail!("{}: empty {what}", at());
    }
    if !string_ids && tok.parse::<u64>().is_err() {
        bail!("{}: {what} `{tok}` is not a non-negative integer (pass --string-ids to accept any text id)", at());
    }
    Ok(tok)
}

/// Parses a timestamp: an integer, or a decimal number (floored to an integer).
fn parse_time(tok: &str, at: &dyn Fn() -> String) -> Result<i64> {
    if let Ok(t) = tok.parse::<i64>() {
        return Ok(t);
    }
    match tok.parse::<f64>() {
        Ok(t) if t.is_finite() && t.abs() < 9.0e18 => Ok(t.floor() as i64),
        _ => bail!("{}: timestamp `{tok}` is not a number", at()),
    }
}

fn parse_feature(tok: &str) -> Option<f32> {
    tok.trim().parse::<f32>().ok().filter(|v| v.is_finite())
}

/// Reads a sequence file: one line per user, `user_id item_id item_id ...` (whitespace
/// separated, oldest first). Timestamps are positions 0, 1, ... Blank lines are skipped;
/// a user on two lines, a line without items and an empty file are errors.
pub fn read_sequences(path: &Path, string_ids: bool) -> Result<Interactions> {
    let reader = open_text(path)?;
    let file = path.display().to_string();
    let mut users = Interner::default();
    let mut items = Interner::default();
    let mut out = Interactions::default();
    let mut first_line: HashMap<u32, usize> = HashMap::new();
    for (i, line) in reader.lines().enumerate() {
        let lineno = i + 1;
        let at = || format!("{file}:{lineno}");
        let line = line.with_context(|| format!("{}: read error (truncated or corrupt gzip?)", at()))?;
        let mut toks = line.split_whitespace();
        let Some(user) = toks.next() else { continue };
        let user = check_id(user, string_ids, "user id", &at)?;
        let n_before = users.names.len();
        let u = users.get(user);
        if users.names.len() == n_before {
            bail!(
                "{}: user `{user}` already had a line ({file}:{}); a sequence file needs one line per user",
                at(),
                first_line[&u]
            );
        }
        first_line.insert(u, lineno);
        let mut pos = 0i64;
        for tok in toks {
            let it = items.get(check_id(tok, string_ids, "item id", &at)?);
            out.user.push(u);
            out.item.push(it);
            out.time.push(pos);
            pos += 1;
        }
        if pos == 0 {
            bail!("{}: wrong column count: user `{user}` has no items (expected `user_id item_id item_id ...`)", at());
        }
    }
    if out.user.is_empty() {
        bail!("{file}: empty file (no sequences); expected lines `user_id item_id item_id ...`");
    }
    out.shrink_to_fit();
    out.user_ids = users.names;
    out.item_ids = items.names;
    tracing::info!(
        "read {file}: {} users, {} items, {} interactions",
        out.user_ids.len(),
        out.item_ids.len(),
        out.user.len()
    );
    Ok(out)
}

/// Column choices for an interaction table.
#[derive(Clone, Debug)]
pub struct TableOptions {
    pub user_col: String,
    pub item_col: String,
    pub time_col: String,
    /// Optional request/session id column.
    pub session_col: Option<String>,
    /// Feature columns to keep; `None` = every other column whose values are all numeric.
    pub feature_cols: Option<Vec<String>>,
    /// Field delimiter; `None` = by extension (.csv `,`, .tsv/.tab tab), else sniffed.
    pub delimiter: Option<u8>,
    /// Accept any non-empty text as a user/item id (default: non-negative integers).
    pub string_ids: bool,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            user_col: "user_id".into(),
            item_col: "item_id".into(),
            time_col: "timestamp".into(),
            session_col: None,
            feature_cols: None,
            delimiter: None,
            string_ids: false,
        }
    }
}

/// The delimiter of a table: by extension (ignoring `.gz`), else sniffed from the header
/// line (tab, then `;` when there is no comma, else comma).
pub fn table_delimiter(path: &Path) -> Result<u8> {
    let name = path.to_string_lossy().to_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".csv") {
        return Ok(b',');
    }
    if name.ends_with(".tsv") || name.ends_with(".tab") {
        return Ok(b'\t');
    }
    let mut first = String::new();
    open_text(path)?
        .read_line(&mut first)
        .with_context(|| format!("{}:1: read error (truncated or corrupt gzip?)", path.display()))?;
    Ok(if first.contains('\t') {
        b'\t'
    } else if first.contains(';') && !first.contains(',') {
        b';'
    } else {
        b','
    })
}

/// Where a csv error happened, for messages.
/// `next_line` is the line being read, for errors (I/O ones) that carry no position.
pub(crate) fn csv_err(file: &str, e: csv::Error, next_line: u64) -> anyhow::Error {
    let line = e.position().map_or(next_line, |p| p.line());
    let loc = format!("{file}:{line}");
    match e.kind() {
        csv::ErrorKind::Io(_) => anyhow!("{loc}: read error (truncated or corrupt gzip?): {e}"),
        _ => anyhow!("{loc}: {e}"),
    }
}

/// Reads and checks a header line: not empty, no duplicate names, a UTF-8 BOM dropped.
pub(crate) fn read_header<R: std::io::Read>(rdr: &mut csv::Reader<R>, file: &str) -> Result<Vec<String>> {
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| csv_err(file, e, 1))?
        .iter()
        .enumerate()
        .map(|(i, h)| if i == 0 { h.trim_start_matches('\u{feff}') } else { h }.trim().to_string())
        .collect();
    if header.iter().all(|h| h.is_empty()) {
        bail!("{file}: empty file (expected a header line naming the columns)");
    }
    for (i, h) in header.iter().enumerate() {
        if header[..i].contains(h) {
            bail!("{file}:1: column `{h}` appears twice in the header; rename one");
        }
    }
    Ok(header)
}

/// Reads a CSV/TSV interaction table with a header line. Ids and timestamps must be
/// numeric (see [`TableOptions::string_ids`]); named features must be numeric on every
/// line; auto-detected features are the other columns numeric on every line.
pub fn read_interactions(path: &Path, opts: &TableOptions) -> Result<Interactions> {
    let file = path.display().to_string();
    let delim = match opts.delimiter {
        Some(d) => d,
        None => table_delimiter(path)?,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .quoting(delim != b'\t') // TSV has no quoting: a `"` is an ordinary character
        .flexible(true)
        .has_headers(true)
        .from_reader(open_text(path)?);
    let header = read_header(&mut rdr, &file)?;
    let col = |name: &str, flag: &str| -> Result<usize> {
        header.iter().position(|h| h == name).ok_or_else(|| {
            anyhow!("{file}:1: unknown column `{name}` (flag {flag}); the header's columns are: {}", header.join(", "))
        })
    };
    let ucol = col(&opts.user_col, "--user-col")?;
    let icol = col(&opts.item_col, "--item-col")?;
    let tcol = col(&opts.time_col, "--time-col")?;
    let scol = opts.session_col.as_deref().map(|s| col(s, "--session-col")).transpose()?;
    let taken = [Some(ucol), Some(icol), Some(tcol), scol];
    let explicit = opts.feature_cols.is_some();
    let fcols: Vec<usize> = match &opts.feature_cols {
        Some(names) => names.iter().map(|n| col(n, "--feature-cols")).collect::<Result<_>>()?,
        None => (0..header.len()).filter(|c| !taken.contains(&Some(*c))).collect(),
    };
    // Auto-detected columns drop out (alive = false) at their first non-numeric value.
    let mut alive = vec![true; fcols.len()];
    let mut fvals: Vec<Vec<f32>> = vec![Vec::new(); fcols.len()];
    let mut users = Interner::default();
    let mut items = Interner::default();
    let mut sessions = Interner::default();
    let mut out = Interactions::default();
    let mut sess = Vec::new();
    let mut rec = csv::StringRecord::new();
    let mut lineno = 1;
    loop {
        match rdr.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_err(&file, e, lineno + 1)),
        }
        lineno = rec.position().map_or(lineno + 1, |p| p.line());
        let at = || format!("{file}:{lineno}");
        if rec.len() == 1 && rec[0].trim().is_empty() {
            continue; // blank line
        }
        if rec.len() != header.len() {
            bail!(
                "{}: wrong column count: {} fields, the header has {} ({})",
                at(),
                rec.len(),
                header.len(),
                header.join(", ")
            );
        }
        let u = users.get(check_id(rec[ucol].trim(), opts.string_ids, "user id", &at)?);
        let it = items.get(check_id(rec[icol].trim(), opts.string_ids, "item id", &at)?);
        let t = parse_time(rec[tcol].trim(), &at)?;
        out.user.push(u);
        out.item.push(it);
        out.time.push(t);
        if let Some(sc) = scol {
            let v = rec[sc].trim();
            if v.is_empty() {
                bail!("{}: empty session id in column `{}`", at(), header[sc]);
            }
            sess.push(sessions.get(v));
        }
        for (k, &c) in fcols.iter().enumerate() {
            if !alive[k] {
                continue;
            }
            match parse_feature(&rec[c]) {
                Some(v) => fvals[k].push(v),
                None if explicit => bail!(
                    "{}: feature column `{}` has non-numeric value `{}` (features must be finite numbers)",
                    at(),
                    header[c],
                    &rec[c]
                ),
                None => {
                    tracing::info!("{}: column `{}` is not numeric; not kept as a feature", at(), header[c]);
                    alive[k] = false;
                    fvals[k] = Vec::new();
                }
            }
        }
    }
    if out.user.is_empty() {
        bail!("{file}: empty file (a header but no data lines)");
    }
    for (k, &c) in fcols.iter().enumerate() {
        if alive[k] {
            out.feature_names.push(header[c].clone());
            out.features.push(std::mem::take(&mut fvals[k]));
        }
    }
    out.session = scol.map(|_| sess);
    out.shrink_to_fit();
    out.user_ids = users.names;
    out.item_ids = items.names;
    tracing::info!(
        "read {file}: {} users, {} items, {} interactions, features {:?}",
        out.user_ids.len(),
        out.item_ids.len(),
        out.user.len(),
        out.feature_names
    );
    Ok(out)
}
