//! `onerec report`: a self-contained HTML report of a run directory (see [`crate::report`]).

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A quickstart run directory (pretrain/, aligned/, tokenizer/, ...) or a single
    /// pretrain or align output directory.
    pub run_dir: PathBuf,
    /// Output HTML file (default: RUN_DIR/report.html).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(a: ReportArgs) -> Result<()> {
    let out = a.out.unwrap_or_else(|| a.run_dir.join("report.html"));
    let r = crate::report::write_report(&a.run_dir, &out)?;
    if !r.empty_sections.is_empty() {
        tracing::warn!("sections without charts (see their notes): {}", r.empty_sections.join(", "));
    }
    tracing::info!("wrote {} ({} charts)", r.out.display(), r.figures);
    Ok(())
}
