//! Run records: how an output was made (the command, its resolved arguments, the
//! checkpoint/data/seed it used, counts), written as `<out>.run.json` beside it so any
//! result can be traced back and re-run. Every command that writes a result file writes
//! one of these; recipes read them back to label rows (e.g. which history protocol an
//! evaluation used) instead of assuming.

use anyhow::Result;
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// A run record: a flat JSON object with at least `command`, `version` and `threads`. No timings,
/// so identical runs write identical bytes.
#[derive(Clone, Debug)]
pub struct RunRecord(Map<String, Value>);

impl RunRecord {
    pub fn new(command: &str) -> RunRecord {
        let mut m = Map::new();
        m.insert("command".into(), Value::from(command));
        m.insert("version".into(), Value::from(env!("CARGO_PKG_VERSION")));
        m.insert("threads".into(), Value::from(crate::util::threads::compute_threads()));
        RunRecord(m)
    }

    /// Sets `key` (e.g. `args`: the command's resolved arguments).
    pub fn set(mut self, key: &str, value: impl Serialize) -> Result<RunRecord> {
        self.0.insert(key.to_string(), serde_json::to_value(value)?);
        Ok(self)
    }

    /// Adds every key of `facts` (a JSON object; anything else is ignored).
    pub fn extend(mut self, facts: Value) -> RunRecord {
        if let Value::Object(f) = facts {
            self.0.extend(f);
        }
        self
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Writes `<out>.run.json` atomically and returns its path.
    pub fn write_beside(&self, out: &Path) -> Result<PathBuf> {
        let path = path_for(out);
        crate::util::io::write_json(&path, &Value::Object(self.0.clone()))?;
        tracing::info!("wrote {}", path.display());
        Ok(path)
    }
}

/// `<out>.run.json` (e.g. `scores.tsv.run.json`).
pub fn path_for(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".run.json");
    out.with_file_name(name)
}
