//! Whole runs as library calls, shared by the CLI and the tests:
//! - [`synthetic`]: a fresh synthetic world through every stage, alignment included
//!   (`onerec quickstart`, and the pipeline test that checks it against the truth);
//! - [`recipe`]: a real dataset directory through prepare -> embed (when it ships no
//!   embeddings) -> tokenize -> pretrain -> eval, every setting from one config file
//!   (`onerec recipe`);
//! - [`summary`]: several recipe runs (seeds) as one mean ± std table (`onerec summarize`).

pub mod recipe;
pub mod summary;
pub mod synthetic;

use serde_json::{Map, Value};
use std::time::Instant;

/// Wall time of each stage, logged as it ends and kept for the run's summary.
#[derive(Default)]
pub struct StageClock {
    secs: Map<String, Value>,
}

impl StageClock {
    /// Logs that `name`, started at `t`, is done, and returns its seconds.
    pub fn done(&mut self, name: &str, t: Instant) -> f64 {
        let secs = t.elapsed().as_secs_f64();
        tracing::info!("{name} done in {secs:.1}s");
        self.secs.insert(name.to_string(), Value::from(secs));
        secs
    }

    /// Seconds per stage, in the order they ran (a JSON object).
    pub fn to_json(&self) -> Value {
        Value::Object(self.secs.clone())
    }
}
