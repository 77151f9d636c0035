//! `onerec serve-bench`: load generator for `onerec serve` (see [`crate::serve::bench`]).

use crate::data::Dataset;
use crate::serve::bench::{bodies, BenchOptions};
use anyhow::{Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct ServeBenchArgs {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Prepared dataset whose users are requested, round-robin (the served one).
    #[arg(long)]
    pub data: PathBuf,
    /// Concurrent clients (closed loop), or most requests in flight with --rate.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Requests sent in all.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Open loop: start this many requests per second (default: closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, default_value_t = 20)]
    pub beam: usize,
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Fraction of requests replaced by malformed ones (bad JSON, unknown item or user,
    /// empty history, k > beam, unknown field); each must get a 4xx.
    #[arg(long, default_value_t = 0.0)]
    pub malformed: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(a: ServeBenchArgs) -> Result<()> {
    let ds = Dataset::load(&a.data).with_context(|| format!("loading dataset {}", a.data.display()))?;
    let b = Arc::new(bodies(&ds.user_ids, a.requests, a.beam, a.k, a.malformed, a.seed));
    let opts = BenchOptions { addr: a.addr, concurrency: a.concurrency, requests: a.requests, rate: a.rate };
    tracing::info!("serve-bench: {a:?}");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let r = rt.block_on(crate::serve::bench::run(&opts, b))?;
    println!(
        "{} requests in {:.2}s: {:.1} ok/s; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        r.requests, r.seconds, r.throughput, r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms
    );
    println!(
        "valid {}: ok {}, 503 {}, other failures {}; malformed {}: 4xx {}, not 4xx {}; transport errors {}",
        r.valid, r.valid_ok, r.valid_503, r.valid_failed, r.bad, r.bad_4xx, r.bad_not_4xx, r.transport_errors
    );
    if let Some(p) = &a.json {
        crate::util::io::write_json(p, &r)?;
        tracing::info!("wrote {}", p.display());
    }
    Ok(())
}
