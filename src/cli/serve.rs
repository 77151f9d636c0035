//! `onerec serve`: the online recommendation server (see [`crate::serve`]).

use crate::generate::users::SplitSel;
use crate::serve::ServeOptions;
use anyhow::Result;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Checkpoint directory (or a pretrain/align output directory).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Prepared dataset with the known users' histories (default: the dataset recorded
    /// in the checkpoint).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where a known user's history ends: all (the whole history) | valid | test.
    #[arg(long, default_value = "all")]
    pub split: SplitSel,
    /// Address to listen on (port 0: any free port; the log says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Most requests decoded together in one batched beam search.
    #[arg(long, default_value_t = 64)]
    pub max_batch: usize,
    /// Longest a request waits for others to join its batch, milliseconds.
    #[arg(long, default_value_t = 5)]
    pub max_wait_ms: u64,
    /// Requests that may wait for the model; beyond that the server answers 503.
    #[arg(long, default_value_t = 1024)]
    pub queue: usize,
    /// Threads gathering and decoding batches; with more than one, a batch gathers while
    /// another decodes (0: one per rayon thread, see --threads). A single worker's matmuls
    /// still use every rayon thread.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Largest request body in bytes (larger: 400).
    #[arg(long, default_value_t = 65536)]
    pub body_limit: usize,
    /// Largest `beam` a request may ask for.
    #[arg(long, default_value_t = 256)]
    pub max_beam: usize,
    /// Most candidate items in one /v1/score request.
    #[arg(long, default_value_t = 1000)]
    pub max_score_items: usize,
    /// Rank single-item recommendations by `log p_gen + W * log p_head` (fused ranking,
    /// as `onerec eval --item-head-weight`; 0 = the beam alone). Needs a checkpoint with
    /// the item head; a request's `item_head_weight` overrides it.
    #[arg(long, default_value_t = 0.0)]
    pub item_head_weight: f64,
    /// The item head's best items that join the beam's candidates (0 = the request's beam).
    #[arg(long, default_value_t = 0)]
    pub item_head_candidates: usize,
}

pub fn run(a: ServeArgs) -> Result<()> {
    tracing::info!("serve: {a:?}");
    let mut o = ServeOptions::new(a.checkpoint);
    o.data = a.data;
    o.split = a.split;
    o.addr = a.addr;
    o.max_batch = a.max_batch;
    o.max_wait = Duration::from_millis(a.max_wait_ms);
    o.queue = a.queue;
    o.workers = a.workers;
    o.body_limit = a.body_limit;
    o.max_beam = a.max_beam;
    o.max_score_items = a.max_score_items;
    o.item_head_weight = a.item_head_weight;
    o.item_head_candidates = a.item_head_candidates;
    crate::serve::run(o)
}
