//! Several recipe runs of one recipe (one per seed) as one table: mean ± std over the
//! runs of every ranking metric, per model (the generative model and the run's own
//! CE-SASRec), split and history protocol, and the generative model's gap to the
//! baseline. `onerec summarize OUT...`; what the results docs are written from.

use super::recipe::MODEL_SASREC;
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The evaluation files a recipe run may hold, in table order.
const FILES: [&str; 4] = ["valid.json", "test.json", "test-history-excluded.json", "test-history-allowed.json"];

/// One evaluation file of one run.
#[derive(Debug, Clone)]
pub struct RunEval {
    pub seed: u64,
    pub dir: PathBuf,
    /// `onerec` or `sasrec`.
    pub model: String,
    pub split: String,
    pub exclude_history: bool,
    /// The ranking metrics (`recall@10`, `ndcg@10`, ...).
    pub metrics: BTreeMap<String, f64>,
}

/// All evaluations of a set of runs of one recipe.
#[derive(Debug)]
pub struct Summary {
    pub config: String,
    pub evals: Vec<RunEval>,
}

/// Reads every run directory (`recipe.json` and its evaluation files). Fails naming the
/// directory when one is not a finished recipe run, or when the runs differ in config or
/// data (their mean would mix recipes).
pub fn summarize(dirs: &[PathBuf]) -> Result<Summary> {
    ensure!(!dirs.is_empty(), "no run directories given");
    let mut evals = Vec::new();
    let mut recipe_of: Option<(String, Value, PathBuf)> = None;
    for dir in dirs {
        let rec_path = dir.join("recipe.json");
        let rec: Value = crate::util::io::read_json(&rec_path)
            .with_context(|| format!("{}: not a finished `onerec recipe` run", dir.display()))?;
        let seed = rec["seed"].as_u64().with_context(|| format!("{}: no seed", rec_path.display()))?;
        let config = rec["config"].as_str().unwrap_or("?").to_string();
        let data = rec["data_dir"].clone();
        match &recipe_of {
            None => recipe_of = Some((config.clone(), data, dir.clone())),
            Some((c, d, first)) => ensure!(
                *c == config && *d == data,
                "{} ran config {config} on {data}, but {} ran {c} on {d}: summarize the runs of one recipe at a time",
                dir.display(),
                first.display()
            ),
        }
        let before = evals.len();
        for prefix in ["", "sasrec-"] {
            for name in FILES {
                let path = dir.join(format!("{prefix}{name}"));
                if path.exists() {
                    evals.push(read_eval(
                        &path,
                        seed,
                        dir,
                        if prefix.is_empty() { "onerec" } else { MODEL_SASREC },
                        name,
                    )?);
                }
            }
        }
        ensure!(evals.len() > before, "{}: no evaluation files ({})", dir.display(), FILES.join(", "));
    }
    let config = recipe_of.map(|r| r.0).unwrap_or_default();
    Ok(Summary { config, evals })
}

fn read_eval(path: &Path, seed: u64, dir: &Path, model: &str, name: &str) -> Result<RunEval> {
    let v: Value = crate::util::io::read_json(path)?;
    let obj = v.as_object().with_context(|| format!("{}: not a JSON object", path.display()))?;
    let metrics: BTreeMap<String, f64> =
        obj.iter().filter(|(k, _)| k.contains('@')).filter_map(|(k, x)| Some((k.clone(), x.as_f64()?))).collect();
    ensure!(!metrics.is_empty(), "{}: no ranking metrics (recall@K, ndcg@K)", path.display());
    let split = if name.starts_with("valid") { "valid" } else { "test" };
    Ok(RunEval {
        seed,
        dir: dir.to_path_buf(),
        model: model.to_string(),
        split: split.to_string(),
        exclude_history: protocol(path, name)?,
        metrics,
    })
}

/// The history protocol of an evaluation file: its run record's `args.exclude_history`,
/// else what its name says.
fn protocol(path: &Path, name: &str) -> Result<bool> {
    let record = PathBuf::from(format!("{}.run.json", path.display()));
    if let Ok(r) = crate::util::io::read_json::<Value>(&record) {
        if let Some(b) = r["args"]["exclude_history"].as_bool() {
            return Ok(b);
        }
    }
    match name {
        "test-history-excluded.json" => Ok(true),
        "test-history-allowed.json" => Ok(false),
        _ => bail!(
            "{}: cannot tell its history protocol (no {} with args.exclude_history)",
            path.display(),
            record.display()
        ),
    }
}

/// Mean and population standard deviation.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// One row of the summary: a model under one split and protocol, over its runs.
#[derive(Debug)]
pub struct Row {
    pub model: String,
    pub split: String,
    pub exclude_history: bool,
    pub seeds: Vec<u64>,
    /// Metric -> (mean, std).
    pub stats: BTreeMap<String, (f64, f64)>,
}

impl Summary {
    /// Metric names, ordered by cut-off then name (`ndcg@5`, `recall@5`, `ndcg@10`, ...).
    pub fn metric_names(&self) -> Vec<String> {
        let names: BTreeSet<&String> = self.evals.iter().flat_map(|e| e.metrics.keys()).collect();
        let mut v: Vec<String> = names.into_iter().cloned().collect();
        let cut = |m: &str| m.rsplit('@').next().and_then(|k| k.parse::<usize>().ok()).unwrap_or(usize::MAX);
        v.sort_by(|a, b| cut(a).cmp(&cut(b)).then(b.cmp(a)));
        v
    }

    /// Mean ± std per (model, split, protocol): the generative model first, validation
    /// before test.
    pub fn rows(&self) -> Vec<Row> {
        // Order: model (generative first), validation before test, history excluded first.
        let mut groups: BTreeMap<(bool, bool, String, bool, String), Vec<&RunEval>> = BTreeMap::new();
        for e in &self.evals {
            let key =
                (e.model == MODEL_SASREC, e.split != "valid", e.split.clone(), !e.exclude_history, e.model.clone());
            groups.entry(key).or_default().push(e);
        }
        let names = self.metric_names();
        groups
            .into_iter()
            .map(|((_, _, split, _, model), es)| {
                let stats = names
                    .iter()
                    .filter_map(|m| {
                        let xs: Vec<f64> = es.iter().filter_map(|e| e.metrics.get(m).copied()).collect();
                        (!xs.is_empty()).then(|| (m.clone(), mean_std(&xs)))
                    })
                    .collect();
                Row {
                    model,
                    split,
                    exclude_history: es[0].exclude_history,
                    seeds: es.iter().map(|e| e.seed).collect(),
                    stats,
                }
            })
            .collect()
    }

    /// A markdown table of [`Summary::rows`]; with `per_seed`, each run's values below;
    /// then the generative model's relative gap to CE-SASRec where both were evaluated.
    pub fn markdown(&self, per_seed: bool) -> String {
        let names = self.metric_names();
        let rows = self.rows();
        let mut s = String::new();
        let _ = writeln!(s, "| model | split | history items | seeds | {} |", names.join(" | "));
        let _ = writeln!(s, "|---|---|---|---|{}", "---|".repeat(names.len()));
        let protocol = |b: bool| if b { "excluded" } else { "allowed" };
        for r in &rows {
            let cells: Vec<String> = names
                .iter()
                .map(|m| r.stats.get(m).map(|(mu, sd)| format!("{mu:.4} ± {sd:.4}")).unwrap_or_default())
                .collect();
            let seeds: Vec<String> = r.seeds.iter().map(u64::to_string).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                r.model,
                r.split,
                protocol(r.exclude_history),
                seeds.join(" "),
                cells.join(" | ")
            );
        }
        if per_seed {
            let _ = writeln!(s, "\n| model | split | history items | seed | {} | run |", names.join(" | "));
            let _ = writeln!(s, "|---|---|---|---|{}---|", "---|".repeat(names.len()));
            for e in &self.evals {
                let cells: Vec<String> =
                    names.iter().map(|m| e.metrics.get(m).map(|x| format!("{x:.4}")).unwrap_or_default()).collect();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} |",
                    e.model,
                    e.split,
                    protocol(e.exclude_history),
                    e.seed,
                    cells.join(" | "),
                    e.dir.display()
                );
            }
        }
        let mut gaps = String::new();
        for r in rows.iter().filter(|r| r.model != MODEL_SASREC) {
            let Some(b) = rows
                .iter()
                .find(|b| b.model == MODEL_SASREC && b.split == r.split && b.exclude_history == r.exclude_history)
            else {
                continue;
            };
            let cells: Vec<String> = names
                .iter()
                .map(|m| match (r.stats.get(m), b.stats.get(m)) {
                    (Some((x, _)), Some((y, _))) if *y > 0.0 => format!("{:+.1}%", 100.0 * (x / y - 1.0)),
                    _ => String::new(),
                })
                .collect();
            let _ = writeln!(gaps, "| {} | {} | {} |", r.split, protocol(r.exclude_history), cells.join(" | "));
        }
        if !gaps.is_empty() {
            let _ = writeln!(s, "\nGenerative model vs CE-SASRec (mean / mean - 1):\n");
            let _ = writeln!(s, "| split | history items | {} |", names.join(" | "));
            let _ = writeln!(s, "|---|---|{}", "---|".repeat(names.len()));
            s += &gaps;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_population_std() {
        let (m, sd) = mean_std(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12);
        assert!((sd - (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn metrics_are_ordered_by_cutoff() {
        let mut metrics = BTreeMap::new();
        for k in ["recall@20", "ndcg@5", "recall@10", "ndcg@10", "recall@5"] {
            metrics.insert(k.to_string(), 0.0);
        }
        let e = RunEval {
            seed: 1,
            dir: PathBuf::new(),
            model: "onerec".into(),
            split: "test".into(),
            exclude_history: true,
            metrics,
        };
        let s = Summary { config: "x".into(), evals: vec![e] };
        assert_eq!(s.metric_names(), ["recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20"]);
    }
}
