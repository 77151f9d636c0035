//! Prometheus text metrics, kept with atomics (no registry crate): requests and
//! errors per endpoint and status, a latency histogram, batch sizes, queue depth.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// Latency bucket upper bounds, seconds.
const LATENCY_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Batch size bucket upper bounds.
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A cumulative histogram.
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum of observations, in micro-units (so it fits an atomic integer).
    sum_micro: AtomicU64,
    n: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            n: AtomicU64::new(0),
        }
    }
    fn observe(&self, x: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| x <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micro.fetch_add((x * 1e6) as u64, Ordering::Relaxed);
        self.n.fetch_add(1, Ordering::Relaxed);
    }
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cum}");
        }
        let n = self.n.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {n}");
        let l = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{l} {}", self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{l} {n}");
    }
}

/// All server metrics.
pub struct Metrics {
    /// (endpoint, status) -> count.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Histogram,
    batch: Histogram,
    /// Jobs queued and not yet taken by the worker.
    pub queue_depth: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            latency: Histogram::new(&LATENCY_BUCKETS),
            batch: Histogram::new(&BATCH_BUCKETS),
            queue_depth: AtomicI64::new(0),
        }
    }
}

impl Metrics {
    /// Counts a finished request and its latency.
    pub fn observe_request(&self, endpoint: &'static str, status: u16, seconds: f64) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((endpoint, status)).or_default() += 1;
        }
        if matches!(endpoint, "recommend" | "score") {
            self.latency.observe(seconds);
        }
    }
    /// Counts a batch the worker ran.
    pub fn observe_batch(&self, size: usize) {
        self.batch.observe(size as f64);
    }
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let reqs = self.requests.lock().map(|r| r.clone()).unwrap_or_default();
        out.push_str("# HELP onerec_requests_total Requests by endpoint and HTTP status.\n# TYPE onerec_requests_total counter\n");
        for ((ep, st), n) in &reqs {
            let _ = writeln!(out, "onerec_requests_total{{endpoint=\"{ep}\",status=\"{st}\"}} {n}");
        }
        out.push_str("# HELP onerec_errors_total Requests answered with a 4xx or 5xx status.\n# TYPE onerec_errors_total counter\n");
        let mut errs: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for ((ep, st), n) in &reqs {
            if *st >= 400 {
                *errs.entry((ep, if *st >= 500 { "5xx" } else { "4xx" })).or_default() += n;
            }
        }
        for ((ep, class), n) in &errs {
            let _ = writeln!(out, "onerec_errors_total{{endpoint=\"{ep}\",class=\"{class}\"}} {n}");
        }
        out.push_str("# HELP onerec_request_duration_seconds Latency of /v1/recommend and /v1/score requests.\n# TYPE onerec_request_duration_seconds histogram\n");
        self.latency.render(&mut out, "onerec_request_duration_seconds", "");
        out.push_str("# HELP onerec_batch_size Jobs per model batch.\n# TYPE onerec_batch_size histogram\n");
        self.batch.render(&mut out, "onerec_batch_size", "");
        out.push_str("# HELP onerec_queue_depth Jobs waiting for the model worker.\n# TYPE onerec_queue_depth gauge\n");
        let _ = writeln!(out, "onerec_queue_depth {}", self.queue_depth.load(Ordering::Relaxed).max(0));
        out
    }
}
