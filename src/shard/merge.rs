//! `onerec merge`: shard outputs of one `generate` / `score` run joined, in shard
//! order, into the file the unsharded run writes (byte for byte: shards hold whole
//! batches of the unsharded run, see [`Shard::range_in_blocks`]). Every shard's
//! `.run.json` is checked first: all N shards present once, the same count, and the
//! same run settings (command, checkpoint, data, every argument but the shard's own).

use super::{parse_shard_path, Shard};
use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Record keys that legitimately differ between the shards of one run.
const PER_SHARD: &[&str] = &["shard", "scheduler", "users", "pairs_scored", "invalid_paths"];
const PER_SHARD_ARGS: &[&str] = &["shard", "shard_count", "out"];
/// Counts summed over the shards in the merged run record.
const SUMMED: &[&str] = &["users", "pairs_scored", "invalid_paths"];

/// What a merge wrote.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MergeReport {
    pub out: PathBuf,
    pub shards: usize,
    pub lines: usize,
    pub bytes: u64,
    pub inputs: Vec<PathBuf>,
}

/// The shard files of `out` in its directory (named by [`super::shard_path`]), in
/// shard order; an error when there are none.
pub fn discover(out: &Path) -> Result<Vec<PathBuf>> {
    let dir = match out.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let mut found: Vec<(Shard, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let p = e.with_context(|| format!("cannot list {}", dir.display()))?.path();
        if let Some(s) = parse_shard_path(out, &p) {
            found.push((s, p));
        }
    }
    ensure!(
        !found.is_empty(),
        "no shard files of {} in {} (expected names like {})",
        out.display(),
        dir.display(),
        super::shard_path(out, Shard { index: 0, count: 4 }).display()
    );
    found.sort_by_key(|(s, _)| (s.count, s.index));
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// One shard file and its run record.
struct Part {
    path: PathBuf,
    record: Value,
    shard: Shard,
}

fn read_part(path: &Path) -> Result<Part> {
    let rec_path = super::run_record_path(path);
    ensure!(path.is_file(), "shard file {} does not exist", path.display());
    let record: Value = crate::util::io::read_json(&rec_path).with_context(|| {
        format!("{}: merge needs the run record each shard writes beside its output", rec_path.display())
    })?;
    // The resolved shard ("shard" fact), or an explicit --shard i/n in the arguments.
    let shard = [&record["shard"], &record["args"]["shard"]]
        .into_iter()
        .find_map(|v| Some(Shard { index: v["index"].as_u64()? as usize, count: v["count"].as_u64()? as usize }))
        .with_context(|| format!("{}: no shard index/count recorded", rec_path.display()))?;
    ensure!(
        shard.count > 0 && shard.index < shard.count,
        "{}: bad shard {}/{}",
        rec_path.display(),
        shard.index,
        shard.count
    );
    Ok(Part { path: path.to_path_buf(), record, shard })
}

/// The record with its per-shard keys removed: what every shard must share.
fn settings(record: &Value) -> Value {
    let mut r = record.clone();
    if let Some(o) = r.as_object_mut() {
        for k in PER_SHARD {
            o.remove(*k);
        }
        if let Some(a) = o.get_mut("args").and_then(Value::as_object_mut) {
            for k in PER_SHARD_ARGS {
                a.remove(*k);
            }
        }
    }
    r
}

/// The first key (dotted path) where `a` and `b` differ, with both values.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<(String, String, String)> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let (va, vb) = (x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null));
                first_difference(va, vb, &if at.is_empty() { k.clone() } else { format!("{at}.{k}") })
            })
        }
        _ if a == b => None,
        _ => Some((at.to_string(), a.to_string(), b.to_string())),
    }
}

/// Lines (newline-terminated records) in `bytes`.
fn count_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

/// Checks the shard files `inputs` (any order) and writes their concatenation in shard
/// order to `out` atomically, with a merged `out.run.json`.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<MergeReport> {
    ensure!(!inputs.is_empty(), "no shard files to merge");
    let mut parts = inputs.iter().map(|p| read_part(p)).collect::<Result<Vec<_>>>()?;
    let n = parts[0].shard.count;
    let base = settings(&parts[0].record);
    for p in &parts[1..] {
        if p.shard.count != n {
            bail!(
                "{} is shard {}/{} but {} is one of {n}: shards of one run share the count",
                p.path.display(),
                p.shard.index,
                p.shard.count,
                parts[0].path.display()
            );
        }
        if let Some((key, a, b)) = first_difference(&base, &settings(&p.record), "") {
            bail!(
                "{} and {} come from different runs: `{key}` is {a} vs {b} (every shard of one run needs the same settings)",
                parts[0].path.display(),
                p.path.display()
            );
        }
    }
    let mut by_index: BTreeMap<usize, &Part> = BTreeMap::new();
    for p in &parts {
        if let Some(prev) = by_index.insert(p.shard.index, p) {
            bail!("shard {}/{n} is given twice: {} and {}", p.shard.index, prev.path.display(), p.path.display());
        }
    }
    let missing: Vec<String> = (0..n).filter(|i| !by_index.contains_key(i)).map(|i| i.to_string()).collect();
    if !missing.is_empty() {
        let example =
            super::shard_path(out, Shard { index: (0..n).find(|i| !by_index.contains_key(i)).unwrap_or(0), count: n });
        bail!(
            "missing shard(s) {} of {n} (e.g. {}): rerun those array tasks before merging",
            missing.join(", "),
            example.display()
        );
    }
    parts.sort_by_key(|p| p.shard.index);
    let command = parts[0].record["command"].as_str().unwrap_or_default().to_string();
    let count_key = match command.as_str() {
        "generate" => Some("users"),
        "score" => Some("pairs_scored"),
        _ => None,
    };
    let (mut lines, mut bytes) = (0usize, 0u64);
    crate::util::io::atomic_write_with(out, |w| {
        for p in &parts {
            let data = std::fs::read(&p.path).with_context(|| format!("cannot read {}", p.path.display()))?;
            let got = count_lines(&data);
            if let Some(expect) = count_key.and_then(|k| p.record[k].as_u64()) {
                ensure!(
                    got as u64 == expect && (data.is_empty() || data.ends_with(b"\n")),
                    "{} has {got} lines but its run record says {expect} {}: truncated or edited? rerun that shard",
                    p.path.display(),
                    count_key.unwrap_or_default()
                );
            }
            w.write_all(&data)?;
            lines += got;
            bytes += data.len() as u64;
        }
        Ok(())
    })?;
    let mut rec = parts[0].record.clone();
    if let Some(o) = rec.as_object_mut() {
        for k in SUMMED {
            if o.contains_key(*k) {
                let total: u64 = parts.iter().map(|p| p.record[*k].as_u64().unwrap_or(0)).sum();
                o.insert(k.to_string(), json!(total));
            }
        }
        o.insert("shard".into(), json!(Shard::ALL));
        o.insert("merged_from".into(), json!(parts.iter().map(|p| &p.path).collect::<Vec<_>>()));
        o.remove("scheduler");
        if let Some(a) = o.get_mut("args").and_then(Value::as_object_mut) {
            a.insert("out".into(), json!(out));
            a.insert("shard".into(), json!(Shard::ALL));
            a.remove("shard_count");
        }
    }
    crate::util::io::write_json(&super::run_record_path(out), &rec)?;
    Ok(MergeReport {
        out: out.to_path_buf(),
        shards: n,
        lines,
        bytes,
        inputs: parts.into_iter().map(|p| p.path).collect(),
    })
}
