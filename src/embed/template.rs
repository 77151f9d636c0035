//! Item text templates: `"{title}. Genres: {genres|replace:|:, }"`.
//!
//! Syntax: `{col}` inserts column `col`; `{col|FILTER}` applies one filter to it; `{{` and
//! `}}` are literal braces. Filters: `replace:FROM:TO` (FROM has no `:`, TO is the rest, may
//! be empty), `prefix:TEXT` / `suffix:TEXT` (added only when the value is not empty, e.g.
//! `{phrase|suffix:. }{tags}` has no dangling ". " for an empty phrase), `lower`, `upper`, `trim`. One filter per placeholder (its arguments may contain
//! `|`); chain more with `--replace col=FROM=TO`, which applies before the template.

use anyhow::{bail, Context, Result};

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Replace { from: String, to: String },
    Prefix(String),
    Suffix(String),
    Lower,
    Upper,
    Trim,
}

impl Filter {
    fn parse(spec: &str) -> Result<Filter> {
        if let Some(args) = spec.strip_prefix("replace:") {
            let (from, to) =
                args.split_once(':').with_context(|| format!("filter `{spec}`: write `replace:FROM:TO`"))?;
            if from.is_empty() {
                bail!("filter `{spec}`: FROM must not be empty");
            }
            return Ok(Filter::Replace { from: from.into(), to: to.into() });
        }
        if let Some(text) = spec.strip_prefix("prefix:") {
            return Ok(Filter::Prefix(text.into()));
        }
        if let Some(text) = spec.strip_prefix("suffix:") {
            return Ok(Filter::Suffix(text.into()));
        }
        Ok(match spec {
            "lower" => Filter::Lower,
            "upper" => Filter::Upper,
            "trim" => Filter::Trim,
            other => {
                bail!("unknown filter `{other}` (known: replace:FROM:TO, prefix:TEXT, suffix:TEXT, lower, upper, trim)")
            }
        })
    }

    pub fn apply(&self, s: &str) -> String {
        match self {
            Filter::Replace { from, to } => s.replace(from.as_str(), to),
            Filter::Prefix(_) | Filter::Suffix(_) if s.is_empty() => String::new(),
            Filter::Prefix(p) => format!("{p}{s}"),
            Filter::Suffix(x) => format!("{s}{x}"),
            Filter::Lower => s.to_lowercase(),
            Filter::Upper => s.to_uppercase(),
            Filter::Trim => s.trim().to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Lit(String),
    Field { col: String, filter: Option<Filter> },
}

/// A parsed template, not yet tied to a table's columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A template whose columns were resolved to indices of one table.
#[derive(Clone, Debug)]
pub struct BoundTemplate {
    parts: Vec<(Option<usize>, String, Option<Filter>)>,
}

impl Template {
    pub fn parse(src: &str) -> Result<Template> {
        let ctx = || format!("template {src:?}");
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = src.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => bail!("{}: unmatched `}}` at byte {i}; write `}}}}` for a literal brace", ctx()),
                '{' => {
                    let rest = &src[i + 1..];
                    let end = rest.find('}').with_context(|| format!("{}: `{{` at byte {i} is never closed", ctx()))?;
                    let inner = &rest[..end];
                    // Skip the placeholder's characters.
                    while chars.peek().is_some_and(|p| p.0 <= i + 1 + end) {
                        chars.next();
                    }
                    let (col, filter) = match inner.split_once('|') {
                        Some((col, f)) => (col, Some(Filter::parse(f).with_context(ctx)?)),
                        None => (inner, None),
                    };
                    let col = col.trim();
                    if col.is_empty() {
                        bail!("{}: empty placeholder at byte {i}; write {{column}}", ctx());
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Field { col: col.to_string(), filter });
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// Column names the template reads, in order of first use.
    pub fn columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.parts {
            if let Part::Field { col, .. } = p {
                if !out.contains(&col.as_str()) {
                    out.push(col);
                }
            }
        }
        out
    }

    /// Resolves column names against `columns` (a table header); a missing column is an
    /// error naming it and listing the available ones.
    pub fn bind(&self, columns: &[String]) -> Result<BoundTemplate> {
        let mut parts = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            match p {
                Part::Lit(s) => parts.push((None, s.clone(), None)),
                Part::Field { col, filter } => {
                    let idx = columns.iter().position(|c| c == col).with_context(|| {
                        format!("template column `{col}` is not in the item table (columns: {columns:?})")
                    })?;
                    parts.push((Some(idx), String::new(), filter.clone()));
                }
            }
        }
        Ok(BoundTemplate { parts })
    }
}

impl BoundTemplate {
    /// Renders one row (cells indexed like the header passed to `bind`).
    pub fn render(&self, row: &[String]) -> String {
        let mut out = String::new();
        for (idx, lit, filter) in &self.parts {
            match idx {
                None => out.push_str(lit),
                Some(i) => {
                    let v = row.get(*i).map(String::as_str).unwrap_or("");
                    match filter {
                        Some(f) => out.push_str(&f.apply(v)),
                        None => out.push_str(v),
                    }
                }
            }
        }
        out
    }
}

/// A `--replace col=FROM=TO` rule, applied to a column before templating.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ColumnReplace {
    pub col: String,
    pub from: String,
    pub to: String,
}

impl std::str::FromStr for ColumnReplace {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<ColumnReplace> {
        let (col, rest) = s.split_once('=').with_context(|| format!("--replace {s:?}: write COL=FROM=TO"))?;
        let (from, to) = rest.split_once('=').with_context(|| format!("--replace {s:?}: write COL=FROM=TO"))?;
        if col.is_empty() || from.is_empty() {
            bail!("--replace {s:?}: COL and FROM must not be empty (write COL=FROM=TO)");
        }
        Ok(ColumnReplace { col: col.into(), from: from.into(), to: to.into() })
    }
}
