//! Request bodies: parsed by hand from JSON so every error names its field, checked
//! against the model (known items, k <= beam, session length the model allows).

use crate::generate::fused::Fusion;
use crate::generate::BeamOptions;
use crate::tokenizer::SemanticIds;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// An error answered to the client: HTTP status, the field at fault, a message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub field: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn bad(field: &str, message: impl Into<String>) -> ApiError {
        ApiError { status: 400, field: Some(field.to_string()), message: message.into() }
    }
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError { status, field: None, message: message.into() }
    }
    /// The response body: `{"error": message, "field": field}`.
    pub fn body(&self) -> Value {
        serde_json::json!({"error": self.message, "field": self.field})
    }
}

/// Limits on what one request may ask for, and the server's defaults for what it omits.
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    pub max_beam: usize,
    pub max_items: usize,
    /// Fused ranking weight for single-item requests that give no `item_head_weight`
    /// (`--item-head-weight`; 0 = the beam alone).
    pub item_head_weight: f64,
    /// The item head's candidates when a request gives none (0 = the request's beam).
    pub item_head_candidates: usize,
}

impl RequestLimits {
    /// The given limits, fused ranking off by default.
    pub fn new(max_beam: usize, max_items: usize) -> RequestLimits {
        RequestLimits { max_beam, max_items, item_head_weight: 0.0, item_head_candidates: 0 }
    }
}

/// What a request is checked against: the catalogue, the known users and the model's
/// session limit (a view of the served model, so the parser can be fuzzed without one).
#[derive(Clone, Copy)]
pub struct Catalogue<'a> {
    pub ids: &'a SemanticIds,
    /// Known users: original id -> dense item ids, oldest first.
    pub users: &'a HashMap<String, Vec<u32>>,
    pub max_session_items: usize,
    /// Whether the model has the full-item head that fused ranking needs.
    pub item_head: bool,
}

/// Whose recommendations: a known user, or an explicit history (dense item ids).
pub struct Who {
    /// The user id given, if any (echoed back).
    pub user_id: Option<String>,
    pub history: Vec<u32>,
}

pub struct RecommendRequest {
    pub who: Who,
    pub opts: BeamOptions,
    /// Rank by fused beam + item-head scores (single items only).
    pub fusion: Option<Fusion>,
}

pub struct ScoreRequest {
    pub who: Who,
    pub item_ids: Vec<String>,
    pub items: Vec<u32>,
}

const RECOMMEND_FIELDS: &[&str] =
    &["user_id", "history", "k", "beam", "session_len", "exclude_history", "item_head_weight", "item_head_candidates"];
const SCORE_FIELDS: &[&str] = &["user_id", "history", "items"];

/// Parses and checks a `POST /v1/recommend` body.
pub fn parse_recommend(body: &[u8], cat: &Catalogue, limits: &RequestLimits) -> Result<RecommendRequest, ApiError> {
    let obj = object(body, RECOMMEND_FIELDS)?;
    let who = who(&obj, cat)?;
    let k = uint(&obj, "k", 10)?;
    let beam = uint(&obj, "beam", 20)?;
    let session_len = uint(&obj, "session_len", 1)?;
    let exclude_history = match obj.get("exclude_history") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad("exclude_history", "`exclude_history` must be true or false")),
    };
    if beam > limits.max_beam {
        return Err(ApiError::bad(
            "beam",
            format!("`beam` {beam} exceeds this server's limit of {} (--max-beam)", limits.max_beam),
        ));
    }
    if k > beam {
        return Err(ApiError::bad(
            "k",
            format!("`k` {k} exceeds `beam` {beam}: at most `beam` results exist; raise `beam` or lower `k`"),
        ));
    }
    let max_session = cat.max_session_items;
    if session_len > max_session {
        return Err(ApiError::bad(
            "session_len",
            format!("`session_len` {session_len} exceeds the model's max_session_items {max_session}"),
        ));
    }
    let fusion = fusion(&obj, beam, session_len, cat, limits)?;
    Ok(RecommendRequest { who, opts: BeamOptions { beam, session_len, top: k, exclude_history }, fusion })
}

/// Fused ranking for a recommend request: its own `item_head_weight` (0 = off) or the
/// server's default. A default applies to single-item requests only; asking for it
/// explicitly with `session_len` > 1, or from a model without an item head, is an error.
fn fusion(
    obj: &Map<String, Value>,
    beam: usize,
    session_len: usize,
    cat: &Catalogue,
    limits: &RequestLimits,
) -> Result<Option<Fusion>, ApiError> {
    let asked = match obj.get("item_head_weight") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(w) if w.is_finite() && w >= 0.0 => Some(w),
            _ => {
                return Err(ApiError::bad(
                    "item_head_weight",
                    format!("`item_head_weight` must be a number >= 0 (0: rank by the beam alone), got {v}"),
                ))
            }
        },
    };
    let candidates = match obj.get("item_head_candidates") {
        None | Some(Value::Null) => None,
        Some(_) => Some(uint(obj, "item_head_candidates", 1)?),
    };
    if let Some(c) = candidates.filter(|&c| c > limits.max_beam) {
        return Err(ApiError::bad(
            "item_head_candidates",
            format!("`item_head_candidates` {c} exceeds this server's limit of {} (--max-beam)", limits.max_beam),
        ));
    }
    let weight = asked.unwrap_or(limits.item_head_weight);
    if weight == 0.0 {
        return Ok(None);
    }
    if asked.is_some() && !cat.item_head {
        return Err(ApiError::bad(
            "item_head_weight",
            "this model has no item head (trained without model.item_id_embedding): fused ranking is unavailable; drop `item_head_weight` or set it to 0",
        ));
    }
    if session_len != 1 {
        if asked.is_some() {
            return Err(ApiError::bad(
                "item_head_weight",
                format!("fused ranking ranks single items: `session_len` must be 1, got {session_len}"),
            ));
        }
        return Ok(None);
    }
    Ok(crate::eval::config::fusion(weight, candidates.unwrap_or(limits.item_head_candidates), beam))
}

/// Parses and checks a `POST /v1/score` body.
pub fn parse_score(body: &[u8], cat: &Catalogue, limits: &RequestLimits) -> Result<ScoreRequest, ApiError> {
    let obj = object(body, SCORE_FIELDS)?;
    let who = who(&obj, cat)?;
    let item_ids = strings(&obj, "items")?
        .ok_or_else(|| ApiError::bad("items", "`items` is required: the candidate item ids to score"))?;
    if item_ids.is_empty() {
        return Err(ApiError::bad("items", "`items` is empty: give at least one candidate item id"));
    }
    if item_ids.len() > limits.max_items {
        return Err(ApiError::bad(
            "items",
            format!("{} items exceed this server's limit of {} per request", item_ids.len(), limits.max_items),
        ));
    }
    let items = known_items(&item_ids, cat, "items")?;
    Ok(ScoreRequest { who, item_ids, items })
}

/// The body as a JSON object with only `allowed` keys.
fn object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad("body", format!("malformed JSON: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(ApiError::bad("body", "the body must be a JSON object"));
    };
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad(k, format!("unknown field `{k}`; expected one of {}", allowed.join(", "))));
    }
    Ok(obj)
}

/// Exactly one of `user_id` (a known user: else 404) and `history` (known items).
fn who(obj: &Map<String, Value>, cat: &Catalogue) -> Result<Who, ApiError> {
    let user = match obj.get("user_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad("user_id", "`user_id` must be a string")),
    };
    let history = strings(obj, "history")?;
    match (user, history) {
        (Some(_), Some(_)) => Err(ApiError::bad("history", "give either `user_id` or `history`, not both")),
        (None, None) => {
            Err(ApiError::bad("user_id", "give `user_id` (a known user) or `history` (item ids, oldest first)"))
        }
        (Some(u), None) => match cat.users.get(&u) {
            Some(h) => Ok(Who { user_id: Some(u), history: h.clone() }),
            None => Err(ApiError {
                status: 404,
                field: Some("user_id".into()),
                message: format!("unknown user `{u}` (not in the served dataset)"),
            }),
        },
        (None, Some(h)) => {
            if h.is_empty() {
                return Err(ApiError::bad("history", "`history` is empty: give at least one item id"));
            }
            Ok(Who { user_id: None, history: known_items(&h, cat, "history")? })
        }
    }
}

fn known_items(ids: &[String], cat: &Catalogue, field: &str) -> Result<Vec<u32>, ApiError> {
    ids.iter()
        .map(|it| {
            cat.ids.row_of(it).ok_or_else(|| {
                ApiError::bad(field, format!("unknown item `{it}` in `{field}` (not in the model's catalogue)"))
            })
        })
        .collect()
}

/// An optional array of strings.
fn strings(obj: &Map<String, Value>, field: &str) -> Result<Option<Vec<String>>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::bad(field, format!("`{field}` must be an array of item id strings")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::bad(field, format!("`{field}` must be an array of item id strings"))),
    }
}

/// An optional integer >= 1.
fn uint(obj: &Map<String, Value>, field: &str, default: usize) -> Result<usize, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && n <= u32::MAX as u64 => Ok(n as usize),
            _ => Err(ApiError::bad(field, format!("`{field}` must be an integer >= 1, got {v}"))),
        },
    }
}
