//! `onerec serve`: a real server on 127.0.0.1 (port 0) over a small trained checkpoint,
//! driven by a real HTTP client. Answers are checked against the `onerec generate` and
//! `onerec score` command lines; bad inputs, backpressure, concurrency and shutdown are
//! checked by status, JSON error and /metrics.

use onerec::generate::users::{align_dataset, users_from_split};
use onerec::generate::SplitSel;
use onerec::serve::bench::{client, request, HttpClient};
use onerec::serve::{ServeOptions, Server};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// One tiny trained checkpoint shared by every test here (trained once).
struct Fixture {
    _dir: tempfile::TempDir,
    ckpt: PathBuf,
    data: PathBuf,
}

impl Fixture {
    /// `onerec CMD --checkpoint .. --data .. --split test`: the offline side of a comparison.
    fn cli_on_test_split<'a>(&'a self, cmd: &'a str) -> Vec<&'a str> {
        let (ckpt, data) = (self.ckpt.to_str().unwrap(), self.data.to_str().unwrap());
        vec![cmd, "--checkpoint", ckpt, "--data", data, "--split", "test"]
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let (dir, ckpt, data) = crate::common::tiny_checkpoint(5);
        Fixture { _dir: dir, ckpt: ckpt.into(), data: data.into() }
    })
}

fn split_test() -> SplitSel {
    "test".parse().unwrap()
}

/// Server options on port 0 with the test split's histories (as `generate --split test`).
fn options() -> ServeOptions {
    let f = fixture();
    let mut o = ServeOptions::new(f.ckpt.clone());
    o.data = Some(f.data.clone());
    o.split = split_test();
    o.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    o
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// POSTs `body` (or GETs without one) and parses the JSON answer.
async fn call(c: &HttpClient, addr: SocketAddr, path: &str, body: Option<&Value>) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string().into_bytes());
    let (status, text) = request(c, addr, path, bytes.as_deref()).await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: answer {status} is not JSON ({e}): {text}"));
    (status, v)
}

/// Sends every body at once; the answers in the same order.
async fn call_all(c: &HttpClient, addr: SocketAddr, path: &str, bodies: &[Value]) -> Vec<(u16, Value)> {
    let mut set = tokio::task::JoinSet::new();
    for (i, b) in bodies.iter().enumerate() {
        let (c, b, path) = (c.clone(), b.clone(), path.to_string());
        set.spawn(async move { (i, call(&c, addr, &path, Some(&b)).await) });
    }
    let mut out = vec![None; bodies.len()];
    while let Some(r) = set.join_next().await {
        let (i, a) = r.unwrap();
        out[i] = Some(a);
    }
    out.into_iter().map(Option::unwrap).collect()
}

fn onerec(args: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_onerec")).args(args).env("RAYON_NUM_THREADS", "1").output().unwrap();
    assert!(o.status.success(), "onerec {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `onerec generate --split test` with these settings: user id -> its output line.
fn generate_cli(out: &Path, beam: usize, top: usize, session_len: usize, exclude: bool) -> Vec<Value> {
    let f = fixture();
    let (beam, top, sl) = (beam.to_string(), top.to_string(), session_len.to_string());
    let mut args = f.cli_on_test_split("generate");
    args.extend(["--beam", &beam, "--top", &top, "--session-len", &sl, "--out", out.to_str().unwrap()]);
    if exclude {
        args.push("--exclude-history");
    }
    onerec(&args);
    read_jsonl(out)
}

/// Log-probabilities from batches of different make-up differ in the last float bits
/// (histories are padded to the batch's longest and matmul shapes change the summation
/// order; `onerec generate --batch-users 1` and `64` differ the same way), so answers
/// are compared as: the same fields, strings and item order exactly, numbers to 1e-4.
fn assert_same_answer(got: &Value, want: &Value, what: &str) {
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() <= 1e-4,
            (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same(a, b)))
            }
            _ => a == b,
        }
    }
    assert!(same(got, want), "{what}:\n got  {got}\n want {want}");
}

/// Test-split histories as original item ids, by user id.
fn histories() -> HashMap<String, Vec<String>> {
    let f = fixture();
    let ids = onerec::model::checkpoint::load(&f.ckpt).unwrap().semantic_ids;
    let ds = align_dataset(&onerec::data::Dataset::load(&f.data).unwrap(), &ids).unwrap();
    users_from_split(&ds, split_test())
        .into_iter()
        .map(|u| (u.user_id, u.history.iter().map(|&i| ids.item_ids[i as usize].clone()).collect()))
        .collect()
}

/// Recommendations by user id and by explicit history equal `onerec generate`'s lines,
/// for single items and for sessions, with every request sent at once (so the server
/// batches users that `generate` batched differently).
#[test]
fn recommend_equals_generate() {
    let server =
        Server::start(ServeOptions { max_batch: 8, max_wait: Duration::from_millis(20), ..options() }).unwrap();
    let addr = server.addr();
    let t = tempfile::tempdir().unwrap();
    let hist = histories();
    let rt = runtime();
    let c = client();
    for (n, (beam, top, sl, exclude)) in [(5, 5, 1, false), (6, 3, 3, true), (4, 4, 2, false)].into_iter().enumerate() {
        let want = generate_cli(&t.path().join(format!("g{n}.jsonl")), beam, top, sl, exclude);
        assert!(want.len() >= 20, "only {} users generated", want.len());
        let settings = json!({"k": top, "beam": beam, "session_len": sl, "exclude_history": exclude});
        let with = |mut b: Value| {
            b.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
            b
        };
        let by_user: Vec<Value> = want.iter().map(|w| with(json!({"user_id": w["user"]}))).collect();
        let by_hist: Vec<Value> =
            want.iter().map(|w| with(json!({"history": hist[w["user"].as_str().unwrap()]}))).collect();
        let got_user = rt.block_on(call_all(&c, addr, "/v1/recommend", &by_user));
        let got_hist = rt.block_on(call_all(&c, addr, "/v1/recommend", &by_hist));
        for ((w, (s1, a1)), (s2, a2)) in want.iter().zip(got_user).zip(got_hist) {
            assert_eq!((s1, s2), (200, 200), "{a1} {a2}");
            assert_same_answer(&a1, w, &format!("by user_id, settings {settings}"));
            let mut w = w.clone();
            w.as_object_mut().unwrap().remove("user");
            assert_same_answer(&a2, &w, &format!("by history, settings {settings}"));
            if sl > 1 {
                let s = a1["sessions"].as_array().unwrap();
                assert_eq!(s.len(), top);
                assert!(s.iter().all(|h| h["items"].as_array().unwrap().len() == sl), "{a1}");
            }
        }
    }
    server.shutdown().unwrap();
}

/// `/v1/score` log-probabilities equal `onerec score` for the same (user, item) pairs.
#[test]
fn score_equals_score_cli() {
    let f = fixture();
    let server = Server::start(options()).unwrap();
    let addr = server.addr();
    let t = tempfile::tempdir().unwrap();
    let mut users: Vec<String> = histories().into_keys().collect();
    users.sort();
    users.truncate(12);
    let ckpt = onerec::model::checkpoint::load(&f.ckpt).unwrap();
    let items: Vec<&String> = ckpt.semantic_ids.item_ids.iter().step_by(7).take(9).collect();
    let pairs = t.path().join("pairs.tsv");
    let mut text = String::new();
    for u in &users {
        for i in &items {
            text.push_str(&format!("{u}\t{i}\n"));
        }
    }
    std::fs::write(&pairs, text).unwrap();
    let out = t.path().join("scores.jsonl");
    let mut args = f.cli_on_test_split("score");
    args.extend(["--pairs", pairs.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    onerec(&args);
    let want = read_jsonl(&out);
    assert_eq!(want.len(), users.len() * items.len());
    let bodies: Vec<Value> = users.iter().map(|u| json!({"user_id": u, "items": items})).collect();
    let got = runtime().block_on(call_all(&client(), addr, "/v1/score", &bodies));
    for (n, (u, (status, a))) in users.iter().zip(got).enumerate() {
        assert_eq!(status, 200, "{a}");
        assert_eq!(a["user"], json!(u));
        assert_eq!(a["items"], json!(items));
        let lp = a["logprobs"].as_array().unwrap();
        assert_eq!(lp.len(), items.len());
        for (j, l) in lp.iter().enumerate() {
            let w = &want[n * items.len() + j];
            assert_eq!((&w["user"], &w["item"]), (&json!(u), &json!(items[j])));
            assert_same_answer(l, &w["logprob"], &format!("user {u} item {}", items[j]));
            assert!(l.as_f64().unwrap() < 0.0);
        }
    }
    server.shutdown().unwrap();
}

/// Every bad input: its status and a JSON error naming the field; the server answers
/// a valid request after each.
#[test]
fn bad_inputs_get_clear_errors_and_the_server_keeps_serving() {
    let server = Server::start(ServeOptions { body_limit: 2048, ..options() }).unwrap();
    let addr = server.addr();
    let user = histories().into_keys().min().unwrap();
    let big = format!(r#"{{"history": [{}]}}"#, vec!["\"some-item\""; 400].join(","));
    // (path, body, status, field, words in the message)
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        ("/v1/recommend", r#"{"history": ["no-such-item"]}"#.into(), 400, "history", "unknown item `no-such-item`"),
        ("/v1/score", format!(r#"{{"user_id": "{user}", "items": ["nope"]}}"#), 400, "items", "unknown item `nope`"),
        ("/v1/recommend", r#"{"history": []}"#.into(), 400, "history", "`history` is empty"),
        ("/v1/recommend", format!(r#"{{"user_id": "{user}", "k": 9, "beam": 4}}"#), 400, "k", "`k` 9 exceeds `beam` 4"),
        ("/v1/recommend", r#"{"user_id": "#.into(), 400, "body", "malformed JSON"),
        ("/v1/recommend", "[1, 2]".into(), 400, "body", "must be a JSON object"),
        ("/v1/recommend", big.clone(), 400, "body", "larger than 2048 bytes"),
        ("/v1/score", big, 400, "body", "larger than 2048 bytes"),
        ("/v1/recommend", r#"{"user_id": "no-such-user"}"#.into(), 404, "user_id", "unknown user `no-such-user`"),
        ("/v1/recommend", format!(r#"{{"user_id": "{user}", "beam": 0}}"#), 400, "beam", "integer >= 1"),
        ("/v1/recommend", format!(r#"{{"user_id": "{user}", "beam": 100000}}"#), 400, "beam", "--max-beam"),
        ("/v1/recommend", format!(r#"{{"user_id": "{user}", "session_len": 99}}"#), 400, "session_len", "max_session"),
        (
            "/v1/recommend",
            format!(r#"{{"user_id": "{user}", "exclude_history": 1}}"#),
            400,
            "exclude_history",
            "true or false",
        ),
        ("/v1/recommend", r#"{"user": "x"}"#.into(), 400, "user", "unknown field `user`"),
        ("/v1/recommend", format!(r#"{{"user_id": "{user}", "history": ["a"]}}"#), 400, "history", "not both"),
        ("/v1/score", format!(r#"{{"user_id": "{user}"}}"#), 400, "items", "`items` is required"),
        ("/v1/score", format!(r#"{{"user_id": "{user}", "items": []}}"#), 400, "items", "`items` is empty"),
    ];
    let rt = runtime();
    let c = client();
    for (path, body, status, field, words) in &cases {
        let (s, v) = rt.block_on(async {
            let (s, text) = request(&c, addr, path, Some(body.as_bytes())).await.unwrap();
            (
                s,
                serde_json::from_str::<Value>(&text)
                    .unwrap_or_else(|e| panic!("{path} {body}: not JSON ({e}): {text}")),
            )
        });
        assert_eq!(s, *status, "{path} {body}: {v}");
        assert_eq!(v["field"], json!(field), "{path} {body}: {v}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(words), "{path} {body}: message {msg:?} lacks {words:?}");
        let (s, v) = rt.block_on(call(&c, addr, "/v1/recommend", Some(&json!({"user_id": user, "beam": 4, "k": 2}))));
        assert_eq!(s, 200, "after {path} {body}: {v}");
        assert_eq!(v["items"].as_array().unwrap().len(), 2);
    }
    let (s, v) = rt.block_on(call(&c, addr, "/no/such/endpoint", None));
    assert_eq!(s, 404, "{v}");
    let (s, v) = rt.block_on(call(&c, addr, "/healthz", None));
    assert_eq!((s, v), (200, json!({"status": "ok"})));
    let (s, v) = rt.block_on(call(&c, addr, "/v1/model", None));
    assert_eq!(s, 200);
    assert!(v["step"].as_u64().is_some() && v["dataset"]["users"].as_u64().unwrap() > 0, "{v}");
    let m = rt.block_on(request(&c, addr, "/metrics", None)).unwrap().1;
    assert_eq!(metric(&m, "onerec_errors_total{endpoint=\"recommend\",class=\"5xx\"}"), 0.0, "{m}");
    assert_eq!(metric(&m, "onerec_requests_total{endpoint=\"recommend\",status=\"404\"}"), 1.0, "{m}");
    server.shutdown().unwrap();
}

/// A value of the Prometheus text `m` (0 when the series is absent).
fn metric(m: &str, series: &str) -> f64 {
    m.lines().find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok())).unwrap_or(0.0)
}

/// Many clients at once each get their own answer, equal to the one it gets alone, and
/// the server did form batches of more than one request (two workers share the queue).
#[test]
fn concurrent_clients_get_their_own_answers_in_batches() {
    let server =
        Server::start(ServeOptions { max_batch: 16, max_wait: Duration::from_millis(30), workers: 2, ..options() })
            .unwrap();
    let addr = server.addr();
    let mut users: Vec<String> = histories().into_keys().collect();
    users.sort();
    users.truncate(40);
    let bodies: Vec<Value> = users.iter().map(|u| json!({"user_id": u, "beam": 6, "k": 6})).collect();
    let rt = runtime();
    let c = client();
    let alone: Vec<Value> = bodies
        .iter()
        .map(|b| {
            let (s, v) = rt.block_on(call(&c, addr, "/v1/recommend", Some(b)));
            assert_eq!(s, 200, "{v}");
            v
        })
        .collect();
    let m0 = rt.block_on(request(&c, addr, "/metrics", None)).unwrap().1;
    let singles = metric(&m0, "onerec_batch_size_bucket{le=\"1\"}");
    assert_eq!(metric(&m0, "onerec_batch_size_count"), singles, "sequential requests run alone");
    // Twice over, all at once.
    let mut twice = bodies.clone();
    twice.extend(bodies.iter().cloned());
    let together = rt.block_on(call_all(&c, addr, "/v1/recommend", &twice));
    for (i, (s, v)) in together.iter().enumerate() {
        assert_eq!(*s, 200, "{v}");
        assert_same_answer(v, &alone[i % alone.len()], &format!("client {i}"));
    }
    let distinct: std::collections::HashSet<String> = alone.iter().map(|v| v["items"].to_string()).collect();
    assert!(distinct.len() >= 5, "only {} distinct answers over {} users", distinct.len(), users.len());
    let m1 = rt.block_on(request(&c, addr, "/metrics", None)).unwrap().1;
    let batches = metric(&m1, "onerec_batch_size_count") - metric(&m0, "onerec_batch_size_count");
    let larger = batches - (metric(&m1, "onerec_batch_size_bucket{le=\"1\"}") - singles);
    assert!(larger >= 1.0, "no batch of more than one request formed in {batches} batches:\n{m1}");
    assert!(batches < twice.len() as f64, "{batches} batches for {} requests", twice.len());
    server.shutdown().unwrap();
}

/// A full queue answers 503 with a JSON error; nothing else fails and the server
/// serves again afterwards.
#[test]
fn full_queue_answers_503() {
    let server = Server::start(ServeOptions { max_batch: 1, max_wait: Duration::ZERO, queue: 1, ..options() }).unwrap();
    let addr = server.addr();
    let user = histories().into_keys().min().unwrap();
    // Slow requests (wide beam, long session), many at once: one decodes, one waits.
    let slow = json!({"user_id": user, "beam": 64, "k": 1, "session_len": 5});
    let rt = runtime();
    let c = client();
    let mut refused = 0;
    for _ in 0..5 {
        let got = rt.block_on(call_all(&c, addr, "/v1/recommend", &vec![slow.clone(); 24]));
        for (s, v) in &got {
            assert!(*s == 200 || *s == 503, "{s} {v}");
            if *s == 503 {
                assert!(v["error"].as_str().unwrap().contains("queue full"), "{v}");
                refused += 1;
            }
        }
        assert!(got.iter().any(|(s, _)| *s == 200));
        if refused > 0 {
            break;
        }
    }
    assert!(refused > 0, "no request was refused with a queue of 1");
    let (s, _) = rt.block_on(call(&c, addr, "/v1/recommend", Some(&json!({"user_id": user, "beam": 3, "k": 3}))));
    assert_eq!(s, 200);
    let m = rt.block_on(request(&c, addr, "/metrics", None)).unwrap().1;
    assert_eq!(metric(&m, "onerec_requests_total{endpoint=\"recommend\",status=\"503\"}"), refused as f64, "{m}");
    server.shutdown().unwrap();
}

/// Shutdown while requests are queued: every one of them completes with 200, then the
/// server stops accepting.
#[test]
fn shutdown_drains_in_flight_requests() {
    let server =
        Server::start(ServeOptions { max_batch: 64, max_wait: Duration::from_millis(1500), ..options() }).unwrap();
    let addr = server.addr();
    let mut users: Vec<String> = histories().into_keys().collect();
    users.sort();
    users.truncate(16);
    let bodies: Vec<Value> = users.iter().map(|u| json!({"user_id": u, "beam": 5, "k": 5})).collect();
    let rt = runtime();
    let c = client();
    let answers = rt.spawn({
        let c = c.clone();
        async move { call_all(&c, addr, "/v1/recommend", &bodies).await }
    });
    // Wait until all requests are queued (the worker is still gathering its batch).
    let t0 = std::time::Instant::now();
    loop {
        let m = rt.block_on(request(&c, addr, "/metrics", None)).unwrap().1;
        if metric(&m, "onerec_queue_depth") >= users.len() as f64 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "requests never queued:\n{m}");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.shutdown().unwrap();
    let answers = rt.block_on(answers).unwrap();
    assert_eq!(answers.len(), users.len());
    for ((s, v), u) in answers.iter().zip(&users) {
        assert_eq!(*s, 200, "{v}");
        assert_eq!(v["user"], json!(u));
    }
    let after = rt.block_on(request(&client(), addr, "/healthz", None));
    assert!(after.is_err(), "the server still answers after shutdown: {after:?}");
}

/// With `--item-head-weight`, single-item recommendations are the fused lists `onerec
/// generate --item-head-weight` writes; a request's `item_head_weight` overrides the
/// default (0: the beam alone), and fused ranking is refused where it cannot apply.
#[test]
fn fused_ranking_recommend_equals_generate() {
    let (_dir, ckpt, data) =
        crate::common::tiny_checkpoint_with(6, &["model.item_id_embedding=true", "model.item_head_weight=1"]);
    let t = tempfile::tempdir().unwrap();
    let generate = |name: &str, weight: &str| {
        let out = t.path().join(name);
        let args = ["generate", "--checkpoint", &ckpt, "--data", &data, "--split", "test", "--beam", "5", "--top", "5"];
        let mut args: Vec<&str> = args.to_vec();
        args.extend(["--session-len", "1", "--exclude-history", "--item-head-weight", weight]);
        args.extend(["--out", out.to_str().unwrap()]);
        onerec(&args);
        read_jsonl(&out)
    };
    let (fused, plain) = (generate("fused.jsonl", "3"), generate("plain.jsonl", "0"));
    assert!(fused.len() >= 20 && fused.len() == plain.len());
    assert!(fused.iter().zip(&plain).any(|(f, p)| f["items"] != p["items"]), "fusion changed no list");

    let mut o = ServeOptions::new(ckpt.clone().into());
    (o.data, o.split, o.addr) = (Some(data.clone().into()), split_test(), SocketAddr::from(([127, 0, 0, 1], 0)));
    (o.item_head_weight, o.max_batch, o.max_wait) = (3.0, 8, Duration::from_millis(20));
    let server = Server::start(o).unwrap();
    let (addr, rt, c) = (server.addr(), runtime(), client());
    let (_, model) = rt.block_on(call(&c, addr, "/v1/model", None));
    assert_eq!(model["item_head"], json!(true));
    for (want, extra) in
        [(&fused, json!({})), (&plain, json!({"item_head_weight": 0})), (&fused, json!({"item_head_weight": 3.0}))]
    {
        let bodies: Vec<Value> = want
            .iter()
            .map(|w| {
                let mut b = json!({"user_id": w["user"], "k": 5, "beam": 5, "exclude_history": true});
                b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
                b
            })
            .collect();
        for (w, (s, a)) in want.iter().zip(rt.block_on(call_all(&c, addr, "/v1/recommend", &bodies))) {
            assert_eq!(s, 200, "{a}");
            assert_same_answer(&a, w, &format!("fused ranking, request {extra}"));
        }
    }
    let user = fused[0]["user"].clone();
    // The server's default leaves sessions to the beam; asking for fusion there is a 400.
    let (s, a) = rt.block_on(call(&c, addr, "/v1/recommend", Some(&json!({"user_id": user, "session_len": 2}))));
    assert_eq!(s, 200, "{a}");
    for bad in [
        json!({"session_len": 2, "item_head_weight": 1}),
        json!({"item_head_weight": -1}),
        json!({"item_head_weight": "x"}),
    ] {
        let mut b = json!({"user_id": user});
        b.as_object_mut().unwrap().extend(bad.as_object().unwrap().clone());
        let (s, a) = rt.block_on(call(&c, addr, "/v1/recommend", Some(&b)));
        assert_eq!((s, a["field"].as_str()), (400, Some("item_head_weight")), "{b}: {a}");
    }
    server.shutdown().unwrap();

    // A model without the item head: refused at start, and per request.
    let e = Server::start(ServeOptions { item_head_weight: 3.0, ..options() }).err().expect("no item head");
    assert!(format!("{e:#}").contains("item_id_embedding"), "{e:#}");
    let server = Server::start(options()).unwrap();
    let body = json!({"history": histories().into_values().next().unwrap(), "item_head_weight": 1});
    let (s, a) = rt.block_on(call(&client(), server.addr(), "/v1/recommend", Some(&body)));
    assert_eq!(s, 400, "{a}");
    assert!(a["error"].as_str().unwrap().contains("no item head"), "{a}");
    server.shutdown().unwrap();
}
