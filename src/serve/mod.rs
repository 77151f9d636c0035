//! `onerec serve`: an HTTP recommendation server with dynamic batching.
//!
//! [`Server::start`] loads the model once, binds the address (port 0 picks a free one;
//! [`Server::addr`] says which) and serves on its own tokio runtime thread; model work
//! runs on worker threads ([`batcher`]) through the same library calls as
//! `onerec generate` and `onerec score`. [`Server::shutdown`] (or SIGTERM / Ctrl-C with
//! [`ServeOptions::handle_signals`]) stops accepting, finishes in-flight requests and
//! drains the queue. See docs/usage.md (serve) for the API.

pub mod batcher;
pub mod bench;
pub mod handlers;
pub mod metrics;
pub mod request;
pub mod state;

use crate::generate::users::SplitSel;
use anyhow::{Context, Result};
use batcher::{BatchConfig, Batcher};
use handlers::App;
use request::RequestLimits;
use state::ModelState;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Server settings (the `onerec serve` flags).
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub checkpoint: PathBuf,
    /// Dataset of the known users (default: the one the checkpoint records).
    pub data: Option<PathBuf>,
    /// Where known users' histories end (`all`: the whole history).
    pub split: SplitSel,
    pub addr: SocketAddr,
    /// Most requests decoded in one batch.
    pub max_batch: usize,
    /// Longest a request waits for others to join its batch.
    pub max_wait: Duration,
    /// Requests that may wait for the model; more get 503.
    pub queue: usize,
    /// Threads gathering and decoding batches (0: one per rayon thread). One by default:
    /// on 2 shared cores a second worker cost more CPU per request and doubled the tail
    /// latency at half load (docs/performance.md, "Serving").
    pub workers: usize,
    /// Largest request body, bytes (larger: 400).
    pub body_limit: usize,
    /// Largest `beam` a request may ask for.
    pub max_beam: usize,
    /// Most candidate items in one `/v1/score` request.
    pub max_score_items: usize,
    /// Fused ranking by default for single-item recommend requests (`log p_gen + w log
    /// p_head`, as `onerec eval --item-head-weight`; 0 = the beam alone). Needs a model
    /// with the item head; a request's own `item_head_weight` overrides it.
    pub item_head_weight: f64,
    /// The item head's candidates by default (0 = the request's beam).
    pub item_head_candidates: usize,
    /// Shut down gracefully on SIGTERM / Ctrl-C.
    pub handle_signals: bool,
}

impl ServeOptions {
    /// Defaults for everything but the checkpoint.
    pub fn new(checkpoint: PathBuf) -> ServeOptions {
        ServeOptions {
            checkpoint,
            data: None,
            split: SplitSel::All,
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_batch: 64,
            max_wait: Duration::from_millis(5),
            queue: 1024,
            workers: 1,
            body_limit: 64 * 1024,
            max_beam: 256,
            max_score_items: 1000,
            item_head_weight: 0.0,
            item_head_candidates: 0,
            handle_signals: false,
        }
    }
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Server {
    /// Loads the model, binds `opts.addr` and starts serving in the background.
    pub fn start(opts: ServeOptions) -> Result<Server> {
        anyhow::ensure!(opts.max_batch >= 1, "--max-batch must be >= 1");
        let w = opts.item_head_weight;
        anyhow::ensure!(w.is_finite() && w >= 0.0, "--item-head-weight {w} must be a finite number >= 0");
        let t0 = std::time::Instant::now();
        let state = Arc::new(ModelState::load(&opts.checkpoint, opts.data.as_deref(), opts.split)?);
        anyhow::ensure!(
            w == 0.0 || state.has_item_head(),
            "--item-head-weight {w}: {} has no item head (trained without model.item_id_embedding = true); fused ranking needs one",
            state.ckpt.dir.display()
        );
        tracing::info!(
            "loaded checkpoint {} (step {}), {} items, {} known users from {} (split {}) in {:.1}s",
            state.ckpt.dir.display(),
            state.ckpt.meta.step,
            state.ckpt.semantic_ids.n_items(),
            state.users.len(),
            state.data_dir.display(),
            state.split,
            t0.elapsed().as_secs_f64()
        );
        let listener =
            std::net::TcpListener::bind(opts.addr).with_context(|| format!("cannot listen on {}", opts.addr))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("onerec-serve".into())
            .spawn(move || serve(opts, state, listener, stopped))?;
        tracing::info!("serving on http://{addr}");
        Ok(Server { addr, stop: Some(stop), thread: Some(thread) })
    }

    /// The bound address (the real port when started with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, finishes in-flight requests, drains the queue and
    /// waits for the worker.
    pub fn shutdown(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.join()
    }

    /// Waits until the server stops (with `handle_signals`: on SIGTERM / Ctrl-C).
    pub fn wait(mut self) -> Result<()> {
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| anyhow::anyhow!("the server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.join();
    }
}

/// Starts a server and serves until SIGTERM / Ctrl-C (`onerec serve`).
pub fn run(mut opts: ServeOptions) -> Result<()> {
    opts.handle_signals = true;
    crate::util::alloc::keep_freed_memory();
    Server::start(opts)?.wait()
}

/// The server thread: a tokio runtime running axum until stopped, then the drain.
fn serve(
    opts: ServeOptions,
    state: Arc<ModelState>,
    listener: std::net::TcpListener,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("onerec-http")
        .enable_all()
        .build()?;
    let metrics = Arc::new(metrics::Metrics::default());
    let workers = if opts.workers == 0 { rayon::current_num_threads() } else { opts.workers };
    let cfg = BatchConfig { max_batch: opts.max_batch, max_wait: opts.max_wait, queue: opts.queue, workers };
    let (batcher, workers) = Batcher::start(state.clone(), cfg, metrics.clone())?;
    tracing::info!(
        "{} batch workers, batches of <= {} gathered for <= {:?}",
        workers.len(),
        cfg.max_batch,
        cfg.max_wait
    );
    let limits = RequestLimits {
        item_head_weight: opts.item_head_weight,
        item_head_candidates: opts.item_head_candidates,
        ..RequestLimits::new(opts.max_beam, opts.max_score_items)
    };
    let app = Arc::new(App { state, batcher, metrics, limits, body_limit: opts.body_limit });
    let signals = opts.handle_signals;
    let res = rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let shutdown = async move {
            if signals {
                tokio::select! {
                    _ = stopped => {}
                    _ = shutdown_signal() => tracing::info!("signal received: finishing in-flight requests"),
                }
            } else {
                let _ = stopped.await;
            }
        };
        axum::serve(listener, handlers::router(app))
            .with_graceful_shutdown(shutdown)
            .await
            .context("HTTP server failed")
    });
    // The router (and with it the last queue sender) is gone: the workers drain and stop.
    let joined = workers
        .into_iter()
        .map(|w| w.join().map_err(|_| anyhow::anyhow!("a batch worker panicked")))
        .collect::<Result<Vec<()>>>();
    rt.shutdown_timeout(Duration::from_secs(1));
    res?;
    joined?;
    tracing::info!("server stopped");
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
