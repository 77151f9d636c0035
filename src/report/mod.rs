//! `onerec report`: one self-contained HTML file (inline SVG charts, no scripts, no
//! external resources) of a run: pretraining loss, ranking metrics and learning rate,
//! MoE expert load and router entropy per layer, alignment reward and preference
//! accuracy per iteration, and tokenizer code utilisation. Works on a quickstart run
//! directory (`pretrain/`, `aligned/`, `tokenizer/`, `data/`, ...) or on a single
//! pretrain or align output directory; a section whose inputs are missing is kept
//! with a note saying why it is empty.

mod html;
pub mod plot;
mod sections;

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// Where a run directory keeps each stage's outputs (None: absent).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunLayout {
    pub root: PathBuf,
    /// A pretrain output dir (`metrics.jsonl`, `best/`).
    pub pretrain: Option<PathBuf>,
    /// An align output dir (`state.json`).
    pub aligned: Option<PathBuf>,
    /// A tokenizer artifact dir (`manifest.json`, `codes.tsv`).
    pub tokenizer: Option<PathBuf>,
    /// A prepared dataset dir (`dataset.json`), for checkpoints that do not record theirs.
    pub data: Option<PathBuf>,
    /// A quickstart `summary.json`.
    pub summary: Option<PathBuf>,
}

impl RunLayout {
    /// Finds the stages in `dir`: itself a pretrain / align output, or a quickstart-style
    /// directory holding `pretrain/`, `aligned/`, `tokenizer/`.
    pub fn find(dir: &Path) -> Result<RunLayout> {
        if !dir.is_dir() {
            bail!("run directory {} does not exist", dir.display());
        }
        let first = |cands: &[PathBuf], marker: &str| cands.iter().find(|d| d.join(marker).is_file()).cloned();
        let l = RunLayout {
            root: dir.to_path_buf(),
            pretrain: first(&[dir.to_path_buf(), dir.join("pretrain")], "metrics.jsonl"),
            aligned: first(&[dir.to_path_buf(), dir.join("aligned")], "state.json"),
            tokenizer: first(&[dir.to_path_buf(), dir.join("tokenizer")], "manifest.json"),
            data: first(&[dir.join("data"), dir.join("../data")], "dataset.json"),
            summary: Some(dir.join("summary.json")).filter(|p| p.is_file()),
        };
        if l.pretrain.is_none() && l.aligned.is_none() && l.tokenizer.is_none() {
            bail!(
                "{} is not a run directory: no metrics.jsonl (pretrain), state.json (align) or manifest.json \
                 (tokenizer) in it or in its pretrain/, aligned/, tokenizer/ subdirectories",
                dir.display()
            );
        }
        Ok(l)
    }
}

/// One chart and what it shows.
#[derive(Clone, Debug)]
pub struct Figure {
    pub svg: String,
    pub caption: String,
}

/// A report section: its charts, and notes (why it is empty, where numbers come from).
#[derive(Clone, Debug)]
pub struct Section {
    /// HTML id, stable (tests and links use it).
    pub id: &'static str,
    pub title: &'static str,
    pub figures: Vec<Figure>,
    /// Small tables: rows of (label, value).
    pub table: Vec<(String, String)>,
    pub notes: Vec<String>,
}

impl Section {
    fn new(id: &'static str, title: &'static str) -> Section {
        Section { id, title, figures: vec![], table: vec![], notes: vec![] }
    }

    /// A section with no charts, and why.
    fn skipped(id: &'static str, title: &'static str, why: impl Into<String>) -> Section {
        Section { notes: vec![why.into()], ..Section::new(id, title) }
    }
}

/// The ids of every section, in report order.
pub const SECTION_IDS: &[&str] = &["loss", "ranking", "lr", "moe", "alignment", "tokenizer"];

/// All sections of the run in `dir`, in [`SECTION_IDS`] order. A section that fails to
/// read its inputs becomes a note with the error, so one bad file does not lose the rest.
pub fn build(dir: &Path) -> Result<(RunLayout, Vec<Section>)> {
    let layout = RunLayout::find(dir)?;
    let rows = layout.pretrain.as_deref().map(sections::read_metrics).transpose();
    let mut out = Vec::new();
    match rows {
        Ok(rows) => {
            let rows = rows.unwrap_or_default();
            out.push(sections::loss(&layout, &rows));
            out.push(sections::ranking(&layout, &rows));
            out.push(sections::learning_rate(&layout, &rows));
        }
        Err(e) => {
            for (id, title) in [("loss", sections::LOSS), ("ranking", sections::RANKING), ("lr", sections::LR)] {
                out.push(Section::skipped(id, title, format!("cannot read the training metrics: {e:#}")));
            }
        }
    }
    out.push(sections::moe(&layout));
    out.push(sections::alignment(&layout));
    out.push(sections::tokenizer(&layout));
    Ok((layout, out))
}

/// What [`write_report`] wrote.
#[derive(Clone, Debug)]
pub struct ReportSummary {
    pub out: PathBuf,
    pub figures: usize,
    /// Ids of the sections without any chart.
    pub empty_sections: Vec<&'static str>,
}

/// Builds the report of `dir` and writes it to `out` (atomically).
pub fn write_report(dir: &Path, out: &Path) -> Result<ReportSummary> {
    let (layout, sections) = build(dir)?;
    let page = html::render(&layout, &sections);
    crate::util::io::atomic_write(out, page.as_bytes())?;
    Ok(ReportSummary {
        out: out.to_path_buf(),
        figures: sections.iter().map(|s| s.figures.len()).sum(),
        empty_sections: sections.iter().filter(|s| s.figures.is_empty()).map(|s| s.id).collect(),
    })
}
