//! The load generator behind `onerec serve-bench`: closed loop (N clients, each sends
//! its next request when the last is answered) or open loop (`rate` requests/s),
//! optionally mixing malformed requests in; reports throughput and latency quantiles
//! of the valid requests, and checks every valid request got 2xx and every bad one 4xx.

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Per request: (sent a valid body, HTTP status if any, latency in seconds).
type Results = Arc<Mutex<Vec<(bool, Option<u16>, f64)>>>;

/// A plain-http JSON client (keep-alive pool).
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A new client; one per process is enough (it pools connections).
pub fn client() -> HttpClient {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build(c)
}

/// Sends `body` to `http://addr{path}` (POST when given, else GET): (status, body text).
pub async fn request(client: &HttpClient, addr: SocketAddr, path: &str, body: Option<&[u8]>) -> Result<(u16, String)> {
    let uri = format!("http://{addr}{path}");
    let req = hyper::Request::builder()
        .method(if body.is_some() { "POST" } else { "GET" })
        .uri(&uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))?;
    let resp = client.request(req).await.with_context(|| format!("request to {uri} failed"))?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.with_context(|| format!("reading the answer of {uri}"))?.to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// One request body and whether the server must accept it.
#[derive(Clone, Debug)]
pub struct BenchBody {
    pub path: String,
    pub body: Vec<u8>,
    pub valid: bool,
}

/// Load-generator settings.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub addr: SocketAddr,
    /// Clients (closed loop) or most requests in flight (open loop).
    pub concurrency: usize,
    pub requests: usize,
    /// Open loop: requests started per second; None: closed loop.
    pub rate: Option<f64>,
}

/// What a run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BenchReport {
    pub requests: usize,
    pub seconds: f64,
    /// Valid requests answered 2xx per second of wall time.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub valid: usize,
    pub valid_ok: usize,
    /// Valid requests answered 503 (queue full).
    pub valid_503: usize,
    /// Valid requests answered with another non-2xx status, or not answered.
    pub valid_failed: usize,
    pub bad: usize,
    pub bad_4xx: usize,
    /// Bad requests answered other than 4xx (a server bug).
    pub bad_not_4xx: usize,
    pub transport_errors: usize,
}

/// The requests of a benchmark: recommend for `users` round-robin, with `beam`/`k`;
/// a `malformed` fraction (seeded) replaced by bad requests of several kinds.
pub fn bodies(users: &[String], n: usize, beam: usize, k: usize, malformed: f64, seed: u64) -> Vec<BenchBody> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut bad_kind = 0usize;
    (0..n)
        .map(|i| {
            let path = "/v1/recommend".to_string();
            if rng.gen::<f64>() < malformed || users.is_empty() {
                bad_kind += 1;
                let body = match bad_kind % 6 {
                    0 => "{\"user_id\": ".to_string(),
                    1 => r#"{"history": ["no-such-item-xyz"]}"#.to_string(),
                    2 => r#"{"history": []}"#.to_string(),
                    3 => format!(
                        r#"{{"user_id": {:?}, "k": 50, "beam": 5}}"#,
                        users.first().map(String::as_str).unwrap_or("u")
                    ),
                    4 => r#"{"user": "typo"}"#.to_string(),
                    _ => r#"{"user_id": "no-such-user-xyz"}"#.to_string(),
                };
                BenchBody { path, body: body.into_bytes(), valid: false }
            } else {
                let u = &users[i % users.len()];
                let body = serde_json::json!({"user_id": u, "beam": beam, "k": k}).to_string();
                BenchBody { path, body: body.into_bytes(), valid: true }
            }
        })
        .collect()
}

/// Runs the benchmark over `bodies` (cycled to `opts.requests`).
pub async fn run(opts: &BenchOptions, bodies: Arc<Vec<BenchBody>>) -> Result<BenchReport> {
    anyhow::ensure!(
        !bodies.is_empty() && opts.concurrency >= 1,
        "need at least one request body and --concurrency >= 1"
    );
    let client = client();
    let next = Arc::new(AtomicUsize::new(0));
    let results: Results = Arc::new(Mutex::new(Vec::with_capacity(opts.requests)));
    let t0 = Instant::now();
    let permits = Arc::new(tokio::sync::Semaphore::new(opts.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let ctx = Ctx { client, addr: opts.addr, bodies, results: results.clone() };
    match opts.rate {
        None => {
            for _ in 0..opts.concurrency {
                let (next, n, ctx) = (next.clone(), opts.requests, ctx.clone());
                tasks.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        ctx.one(i).await;
                    }
                });
            }
        }
        Some(rate) => {
            anyhow::ensure!(rate > 0.0, "--rate must be > 0");
            for i in 0..opts.requests {
                tokio::time::sleep_until((t0 + Duration::from_secs_f64(i as f64 / rate)).into()).await;
                let permit = permits.clone().acquire_owned().await?;
                let ctx = ctx.clone();
                tasks.spawn(async move {
                    ctx.one(i).await;
                    drop(permit);
                });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let seconds = t0.elapsed().as_secs_f64();
    let results = results.lock().map(|r| r.clone()).unwrap_or_default();
    Ok(summarize(&results, seconds))
}

/// What each request task needs.
#[derive(Clone)]
struct Ctx {
    client: HttpClient,
    addr: SocketAddr,
    bodies: Arc<Vec<BenchBody>>,
    results: Results,
}

impl Ctx {
    /// Sends request `i` and records (valid, status or None on a transport error, ms).
    async fn one(&self, i: usize) {
        let b = &self.bodies[i % self.bodies.len()];
        let t = Instant::now();
        let status = request(&self.client, self.addr, &b.path, Some(&b.body)).await.ok().map(|(s, _)| s);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if let Ok(mut r) = self.results.lock() {
            r.push((b.valid, status, ms));
        }
    }
}

fn summarize(results: &[(bool, Option<u16>, f64)], seconds: f64) -> BenchReport {
    let mut r = BenchReport { requests: results.len(), seconds, ..BenchReport::default() };
    let mut lat = Vec::new();
    for &(valid, status, ms) in results {
        match (valid, status) {
            (_, None) => r.transport_errors += 1,
            (true, Some(s)) => {
                r.valid += 1;
                if (200..300).contains(&s) {
                    r.valid_ok += 1;
                    lat.push(ms);
                } else if s == 503 {
                    r.valid_503 += 1;
                } else {
                    r.valid_failed += 1;
                }
            }
            (false, Some(s)) => {
                r.bad += 1;
                if (400..500).contains(&s) {
                    r.bad_4xx += 1;
                } else {
                    r.bad_not_4xx += 1;
                }
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| if lat.is_empty() { 0.0 } else { lat[((lat.len() - 1) as f64 * p).round() as usize] };
    r.p50_ms = q(0.5);
    r.p90_ms = q(0.9);
    r.p99_ms = q(0.99);
    r.max_ms = lat.last().copied().unwrap_or(0.0);
    r.throughput = if seconds > 0.0 { r.valid_ok as f64 / seconds } else { 0.0 };
    r
}
