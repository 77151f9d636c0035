//! HTTP endpoints (axum). Handlers parse and check the request on the async runtime,
//! queue the model work on the [`Batcher`] and await its answer; every response,
//! error or not, is JSON (except `/metrics`) and is counted in the metrics.

use super::batcher::{Batcher, Job, Refused};
use super::metrics::Metrics;
use super::request::{parse_recommend, parse_score, ApiError, RequestLimits};
use super::state::ModelState;
use crate::generate::batch::generate_json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// What every handler shares.
pub struct App {
    pub state: Arc<ModelState>,
    pub batcher: Batcher,
    pub metrics: Arc<Metrics>,
    pub limits: RequestLimits,
    pub body_limit: usize,
}

/// The router with all endpoints.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.body_limit;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/model", get(model))
        .route("/metrics", get(metrics))
        .route("/v1/recommend", post(recommend))
        .route("/v1/score", post(score))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

fn json_response(status: u16, v: &Value) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

/// Counts the request and builds its response.
fn finish(app: &App, endpoint: &'static str, t0: Instant, r: Result<Value, ApiError>) -> Response {
    let (status, body) = match r {
        Ok(v) => (200, v),
        Err(e) => {
            if e.status >= 500 {
                tracing::warn!("{endpoint}: {} {}", e.status, e.message);
            } else {
                tracing::debug!("{endpoint}: {} {}", e.status, e.message);
            }
            (e.status, e.body())
        }
    };
    app.metrics.observe_request(endpoint, status, t0.elapsed().as_secs_f64());
    json_response(status, &body)
}

/// The body bytes, or a 400 JSON error naming `body` when it cannot be read: too large
/// (axum's limit answers 413; the API answers every bad body 400 with the field at fault,
/// as for malformed JSON), or cut off.
fn body_bytes(app: &App, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::bad("body", format!("request body is larger than {} bytes (--body-limit)", app.body_limit))
        } else {
            ApiError::bad("body", format!("cannot read the request body: {e}"))
        }
    })
}

/// Queues `job` and awaits the worker's answer.
async fn run_job<T>(app: &App, job: Job, rx: oneshot::Receiver<anyhow::Result<T>>) -> Result<T, ApiError> {
    match app.batcher.submit(job) {
        Ok(()) => {}
        Err(Refused::Full) => {
            return Err(ApiError::new(503, "the server is at capacity (request queue full); retry later"))
        }
        Err(Refused::Closed) => return Err(ApiError::new(503, "the server is shutting down")),
    }
    match rx.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::new(500, format!("model error: {e:#}"))),
        Err(_) => Err(ApiError::new(500, "the model worker dropped the request")),
    }
}

async fn recommend(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    let t0 = Instant::now();
    let r = async {
        let body = body_bytes(&app, body)?;
        let req = parse_recommend(&body, &app.state.catalogue(), &app.limits)?;
        let (reply, rx) = oneshot::channel();
        let session_len = req.opts.session_len;
        let job = Job::Recommend { history: req.who.history, opts: req.opts, fusion: req.fusion, reply };
        let hyps = run_job(&app, job, rx).await?;
        // Exactly the fields `onerec generate` writes, less `user` for a bare history.
        let mut v =
            generate_json(req.who.user_id.as_deref().unwrap_or(""), &hyps, &app.state.ckpt.semantic_ids, session_len);
        if let (None, Some(o)) = (&req.who.user_id, v.as_object_mut()) {
            o.remove("user");
        }
        Ok(v)
    }
    .await;
    finish(&app, "recommend", t0, r)
}

async fn score(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    let t0 = Instant::now();
    let r = async {
        let body = body_bytes(&app, body)?;
        let req = parse_score(&body, &app.state.catalogue(), &app.limits)?;
        let (reply, rx) = oneshot::channel();
        let lp = run_job(&app, Job::Score { history: req.who.history, items: req.items, reply }, rx).await?;
        let mut v = json!({"items": req.item_ids, "logprobs": lp});
        if let (Some(u), Some(o)) = (req.who.user_id, v.as_object_mut()) {
            o.insert("user".into(), Value::String(u));
        }
        Ok(v)
    }
    .await;
    finish(&app, "score", t0, r)
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    finish(&app, "healthz", Instant::now(), Ok(json!({"status": "ok"})))
}

async fn model(State(app): State<Arc<App>>) -> Response {
    finish(&app, "model", Instant::now(), Ok(app.state.describe()))
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    app.metrics.observe_request("metrics", 200, 0.0);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render()).into_response()
}

async fn not_found(State(app): State<Arc<App>>, uri: axum::http::Uri) -> Response {
    let e = ApiError::new(
        404,
        format!("no endpoint {uri}; see GET /healthz, GET /v1/model, GET /metrics, POST /v1/recommend, POST /v1/score"),
    );
    finish(&app, "other", Instant::now(), Err(e))
}
