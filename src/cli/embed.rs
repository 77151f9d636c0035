//! `onerec embed`: item text embeddings with a local BERT sentence model (see `crate::embed`).

use crate::embed::{embed_items, ColumnReplace, EmbedOptions, TableFormat, DEFAULT_MAX_TOKENS};
use anyhow::Result;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutDtype {
    F16,
    F32,
}

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Local model directory with config.json, tokenizer.json, model.safetensors
    /// (get all-MiniLM-L6-v2 with scripts/fetch-minilm.sh DIR).
    #[arg(long)]
    pub model_dir: PathBuf,
    /// Item table: .csv, .tsv or .jsonl, optionally .gz, with a header / JSON keys.
    #[arg(long)]
    pub items: PathBuf,
    /// Table format (default: from the file extension).
    #[arg(long, value_enum)]
    pub format: Option<TableFormat>,
    /// Item-id column (default: the first column).
    #[arg(long)]
    pub id_col: Option<String>,
    /// Text template: {col}, {col|replace:FROM:TO}, {col|suffix:TEXT} (only if non-empty),
    /// {col|prefix:TEXT}, {col|lower}, {{ and }} for braces.
    #[arg(long)]
    pub text: String,
    /// Replace FROM by TO in column COL before templating (COL=FROM=TO, repeatable).
    #[arg(long = "replace", value_name = "COL=FROM=TO")]
    pub replace: Vec<ColumnReplace>,
    /// Output safetensors file (`embeddings` [n, d], `item_ids` i64 [n]).
    #[arg(long)]
    pub out: PathBuf,
    /// Stored dtype of the embeddings.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: OutDtype,
    /// Texts per forward pass (texts are sorted by length first).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Truncate texts to this many tokens ([CLS] and [SEP] included).
    #[arg(long, default_value_t = DEFAULT_MAX_TOKENS)]
    pub max_tokens: usize,
    /// Items per resumable chunk in OUT.chunks/.
    #[arg(long, default_value_t = 4096)]
    pub chunk_size: usize,
    /// Keep OUT.chunks/ after merging.
    #[arg(long)]
    pub keep_chunks: bool,
    /// Also write the embedded texts as `item_id<TAB>text` lines (.gz compresses).
    #[arg(long)]
    pub texts_out: Option<PathBuf>,
    /// Embed only the first N items.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Run on the first CUDA GPU (needs the `cuda` feature).
    #[arg(long)]
    pub cuda: bool,
}

pub fn run(a: EmbedArgs) -> Result<()> {
    let opts = EmbedOptions {
        model_dir: a.model_dir,
        items: a.items,
        format: a.format,
        id_col: a.id_col,
        template: a.text,
        replaces: a.replace,
        out: a.out,
        f16: a.dtype == OutDtype::F16,
        batch_size: a.batch_size,
        max_tokens: a.max_tokens,
        chunk_size: a.chunk_size,
        keep_chunks: a.keep_chunks,
        texts_out: a.texts_out,
        limit: a.limit,
        cuda: a.cuda,
    };
    let report = embed_items(&opts)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
