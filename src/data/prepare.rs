//! `onerec data prepare`: raw interactions -> a prepared [`Dataset`].
//!
//! Rules (recorded in the manifest): users get dense ids in order of first appearance;
//! items are sorted by original id (numerically when all ids are integers); each user's
//! history is stably sorted by timestamp, so ties keep input order; split is
//! leave-one-out; sessions by time gap, by a session column, or one per user.

use super::dataset::{Dataset, DatasetManifest, SourceFile};
use super::readers::{self, Interactions, TableOptions};
use super::sessions::{self, QualityRule};
use anyhow::{bail, Result};
use serde_json::json;
use std::path::Path;

/// Units of the timestamp column, used to convert `session_gap` (seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUnit {
    Seconds,
    Millis,
}

/// Everything `prepare` can be told besides the input path.
#[derive(Clone, Debug)]
pub struct PrepareOptions {
    /// Column choices for interaction tables (ignored for sequence files except `string_ids`).
    pub table: TableOptions,
    /// New session after a gap greater than this many seconds (sequence files: positions).
    pub session_gap: Option<f64>,
    /// Timestamp units; `None` = milliseconds when the time column ends in `_ms`, else seconds.
    pub time_unit: Option<TimeUnit>,
    /// Items in a session target (recorded in the manifest as `session_len`).
    pub session_len: usize,
    /// High-quality filter: minimum items per session.
    pub min_session_items: usize,
    /// High-quality filter: minimum total watch time per session.
    pub min_watch_time: Option<f32>,
    /// Watch-time feature; `None` = `watch_time` if the data has it.
    pub watch_col: Option<String>,
    /// High-quality filter: at least one positive engagement.
    pub require_positive: bool,
    /// Positive-engagement feature; `None` = `like` if the data has it.
    pub positive_col: Option<String>,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            table: TableOptions::default(),
            session_gap: None,
            time_unit: None,
            session_len: 5,
            min_session_items: 1,
            min_watch_time: None,
            watch_col: None,
            require_positive: false,
            positive_col: None,
        }
    }
}

/// Reads a sequence file and builds the dataset.
pub fn prepare_sequences(path: &Path, opts: &PrepareOptions) -> Result<Dataset> {
    if opts.table.session_col.is_some() {
        bail!("--session-col needs an interaction table (--interactions); a sequence file has no columns");
    }
    let log = readers::read_sequences(path, opts.table.string_ids)?;
    build(log, path, "sequences", opts, None)
}

/// Reads an interaction table and builds the dataset.
pub fn prepare_interactions(path: &Path, opts: &PrepareOptions) -> Result<Dataset> {
    let log = readers::read_interactions(path, &opts.table)?;
    let unit = opts.time_unit.unwrap_or(if opts.table.time_col.ends_with("_ms") {
        TimeUnit::Millis
    } else {
        TimeUnit::Seconds
    });
    build(log, path, "interactions", opts, Some(unit))
}

/// Writes `ds` as a complete directory `out`, atomically (all files or none).
pub fn write_dataset(ds: &Dataset, out: &Path) -> Result<()> {
    crate::util::io::atomic_dir(out, |tmp| ds.save(tmp))
}

/// Sort key of original ids: numeric when every id is an integer.
fn item_order(ids: &[String]) -> (Vec<usize>, &'static str) {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    let nums: Option<Vec<u64>> = ids.iter().map(|s| s.parse::<u64>().ok()).collect();
    match nums {
        Some(n) => {
            order.sort_by(|&a, &b| n[a].cmp(&n[b]).then_with(|| ids[a].cmp(&ids[b])));
            (order, "sorted by original id (numeric)")
        }
        None => {
            order.sort_by(|&a, &b| ids[a].cmp(&ids[b]));
            (order, "sorted by original id (string)")
        }
    }
}

/// Resolves a feature column for a quality test: an explicit name must exist; the
/// default name is used only when present.
fn quality_col(log: &Interactions, given: &Option<String>, default: &str, flag: &str) -> Result<Option<usize>> {
    match given {
        Some(name) => match log.feature_names.iter().position(|f| f == name) {
            Some(i) => Ok(Some(i)),
            None => bail!("{flag} `{name}` is not a feature column; features: {:?}", log.feature_names),
        },
        None => Ok(log.feature_names.iter().position(|f| f == default)),
    }
}

fn build(
    mut log: Interactions,
    path: &Path,
    format: &str,
    opts: &PrepareOptions,
    unit: Option<TimeUnit>,
) -> Result<Dataset> {
    if opts.session_gap.is_some() && log.session.is_some() {
        bail!("give --session-gap or --session-col, not both");
    }
    if opts.session_len == 0 {
        bail!("--session-len must be at least 1");
    }
    let t0 = std::time::Instant::now();
    let n = log.user.len();
    let n_users = log.user_ids.len();
    // Items: dense id = rank of the original id.
    let (order, item_rule) = item_order(&log.item_ids);
    let mut remap = vec![0u32; order.len()];
    for (dense, &orig) in order.iter().enumerate() {
        remap[orig] = dense as u32;
    }
    let item_ids: Vec<String> = order.iter().map(|&o| log.item_ids[o].clone()).collect();
    // Group interactions by user (counting sort keeps input order), then stable-sort by time.
    let mut offsets = vec![0usize; n_users + 1];
    for &u in &log.user {
        offsets[u as usize + 1] += 1;
    }
    for u in 0..n_users {
        offsets[u + 1] += offsets[u];
    }
    let mut fill = offsets.clone();
    let mut perm = vec![0usize; n];
    for (i, &u) in log.user.iter().enumerate() {
        perm[fill[u as usize]] = i;
        fill[u as usize] += 1;
    }
    for u in 0..n_users {
        perm[offsets[u]..offsets[u + 1]].sort_by_key(|&i| log.time[i]);
    }
    let items: Vec<u32> = perm.iter().map(|&i| remap[log.item[i] as usize]).collect();
    let timestamps: Vec<i64> = perm.iter().map(|&i| log.time[i]).collect();
    let features: Vec<Vec<f32>> = log.features.iter().map(|f| perm.iter().map(|&i| f[i]).collect()).collect();
    let keys: Option<Vec<u32>> = log.session.as_ref().map(|s| perm.iter().map(|&i| s[i]).collect());
    // The input-order columns are no longer needed: free them before sessions and saving.
    drop(perm);
    for col in [&mut log.user, &mut log.item] {
        *col = Vec::new();
    }
    log.time = Vec::new();
    log.features = Vec::new();
    let has_session_col = log.session.take().is_some();

    // Sessions.
    let scale = match unit {
        Some(TimeUnit::Millis) => 1000.0,
        _ => 1.0,
    };
    let gap = opts.session_gap.map(|g| (g * scale).round() as i64);
    if let Some(g) = opts.session_gap {
        if !(g >= 0.0 && g.is_finite()) {
            bail!("--session-gap must be a non-negative number of seconds, got {g}");
        }
    }
    let rule_text = match (&gap, &opts.table.session_col) {
        (Some(_), _) => format!("gap:{}", opts.session_gap.unwrap_or(0.0)),
        (None, Some(c)) if has_session_col => format!("column:{c}"),
        _ => "none".to_string(),
    };
    let watch = quality_col(&log, &opts.watch_col, "watch_time", "--watch-col")?;
    let positive = quality_col(&log, &opts.positive_col, "like", "--positive-col")?;
    if opts.min_watch_time.is_some() && watch.is_none() {
        tracing::warn!("--min-watch-time given but the data has no watch_time feature: not applied");
    }
    if opts.require_positive && positive.is_none() {
        tracing::warn!("--require-positive given but the data has no like feature: not applied");
    }
    let rule = QualityRule {
        min_items: opts.min_session_items,
        min_watch_time: opts.min_watch_time,
        require_positive: opts.require_positive,
    };
    let mut session_offsets = vec![0usize];
    let mut session_starts = Vec::new();
    let mut session_quality = Vec::new();
    for u in 0..n_users {
        let r = offsets[u]..offsets[u + 1];
        let starts = match (gap, &keys) {
            (Some(g), _) => sessions::starts_by_gap(&timestamps[r.clone()], g),
            (None, Some(k)) => sessions::starts_by_key(&k[r.clone()]),
            _ => vec![0],
        };
        let w = watch.map(|i| &features[i][r.clone()]);
        let p = positive.map(|i| &features[i][r.clone()]);
        for s in sessions::ranges(&starts, r.len()) {
            session_quality.push(rule.passes(&s, w, p));
        }
        session_starts.extend(starts);
        session_offsets.push(session_starts.len());
    }
    let n_hq = session_quality.iter().filter(|&&q| q).count();
    let manifest = DatasetManifest {
        users: n_users,
        items: item_ids.len(),
        interactions: n,
        features: log.feature_names.clone(),
        sources: vec![SourceFile { path: path.display().to_string(), sha256: crate::util::io::sha256_file(path)? }],
        split: "leave-one-out".into(),
        sessions: rule_text,
        extra: json!({
            "format": format,
            "user_order": "first appearance",
            "item_order": item_rule,
            "history_order": "stable sort by timestamp; ties keep input order",
            "columns": (format == "interactions").then(|| json!({
                "user": opts.table.user_col, "item": opts.table.item_col, "time": opts.table.time_col,
                "session": opts.table.session_col,
            })),
            "time_unit": unit.map(|u| if u == TimeUnit::Millis { "ms" } else { "s" }),
            "session_gap_secs": opts.session_gap,
            "session_len": opts.session_len,
            "sessions_total": session_starts.len(),
            "sessions_high_quality": n_hq,
            "quality": {
                "min_session_items": opts.min_session_items,
                "min_watch_time": opts.min_watch_time,
                "watch_col": watch.map(|i| log.feature_names[i].clone()),
                "require_positive": opts.require_positive,
                "positive_col": positive.map(|i| log.feature_names[i].clone()),
            },
        }),
    };
    let ds = Dataset {
        manifest,
        user_ids: log.user_ids,
        item_ids,
        offsets,
        items,
        timestamps,
        features,
        session_offsets,
        session_starts,
        session_quality,
        dir: None,
    };
    ds.validate("prepared dataset")?;
    tracing::info!(
        "prepared {} users, {} items, {} interactions, {} sessions ({} high-quality) in {:.2?}",
        ds.n_users(),
        ds.n_items(),
        n,
        ds.session_starts.len(),
        n_hq,
        t0.elapsed()
    );
    Ok(ds)
}
