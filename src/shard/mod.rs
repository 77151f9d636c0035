//! Batch jobs an external scheduler fans out: which shard this process is (`--shard i/n`,
//! or `--shard auto` read from a Slurm job array or a Kubernetes Indexed Job), how a
//! shard's output file is named, and [`merge`]: the shard outputs joined back into the
//! unsharded file, byte for byte.

pub mod merge;

pub use crate::generate::users::Shard;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// `--shard`: an explicit `i/n`, or `auto` (the scheduler's environment decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardSpec {
    Fixed(Shard),
    Auto,
}

impl FromStr for ShardSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<ShardSpec> {
        if s.trim() == "auto" {
            return Ok(ShardSpec::Auto);
        }
        s.parse::<Shard>().map(ShardSpec::Fixed).map_err(|e| anyhow::anyhow!("{e}, or auto"))
    }
}

/// Run records keep the old shape for an explicit shard (`{"index", "count"}`), and
/// `"auto"` otherwise (the resolved shard is recorded beside it).
impl serde::Serialize for ShardSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ShardSpec::Fixed(sh) => sh.serialize(s),
            ShardSpec::Auto => s.serialize_str("auto"),
        }
    }
}

/// Where a shard's index and count came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// `--shard i/n` on the command line.
    Flag,
    /// A Slurm job array (`SLURM_ARRAY_TASK_*`).
    Slurm,
    /// A Kubernetes Indexed Job (`JOB_COMPLETION_INDEX` + `--shard-count`).
    Kubernetes,
}

/// The shard this process runs, where it came from, and the file it writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardJob {
    pub shard: Shard,
    pub scheduler: Scheduler,
    /// `--out` for an explicit shard (as before); the shard-named file for `auto`.
    pub out: PathBuf,
}

impl ShardJob {
    /// The facts a shard's run record carries, which [`merge`] checks.
    pub fn facts(&self) -> serde_json::Value {
        serde_json::json!({"shard": self.shard, "scheduler": self.scheduler})
    }
}

/// Resolves `--shard` / `--shard-count` against the process environment.
pub fn resolve(spec: ShardSpec, count_flag: Option<usize>, out: &Path) -> Result<ShardJob> {
    resolve_with(spec, count_flag, out, |k| std::env::var(k).ok())
}

/// [`resolve`] with the environment given as a lookup (for tests).
pub fn resolve_with(
    spec: ShardSpec,
    count_flag: Option<usize>,
    out: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ShardJob> {
    match spec {
        ShardSpec::Fixed(shard) => {
            if count_flag.is_some_and(|n| n != shard.count) {
                bail!("--shard-count {} contradicts --shard {}/{}", count_flag.unwrap_or(0), shard.index, shard.count);
            }
            Ok(ShardJob { shard, scheduler: Scheduler::Flag, out: out.to_path_buf() })
        }
        ShardSpec::Auto => {
            let (shard, scheduler) = shard_from_env(count_flag, &env)?;
            Ok(ShardJob { shard, scheduler, out: shard_path(out, shard) })
        }
    }
}

fn var(env: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn parse_var(env: &impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<usize>> {
    var(env, name)
        .map(|v| v.parse::<usize>().with_context(|| format!("{name}={v:?} is not a non-negative integer")))
        .transpose()
}

/// The shard of a Slurm array task or a Kubernetes Indexed Job's pod.
///
/// Slurm: index = `SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN` (an array may start at
/// any id, e.g. `--array=1-8`), count = `SLURM_ARRAY_TASK_COUNT`; the ids must be one
/// contiguous range with step 1, or some shard would never run. Kubernetes exports only
/// the index (`JOB_COMPLETION_INDEX`); the count is `--shard-count` (the Job's
/// `spec.completions`).
pub fn shard_from_env(count_flag: Option<usize>, env: &impl Fn(&str) -> Option<String>) -> Result<(Shard, Scheduler)> {
    if let Some(id) = parse_var(env, "SLURM_ARRAY_TASK_ID")? {
        let count = parse_var(env, "SLURM_ARRAY_TASK_COUNT")?.context(
            "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: run under `sbatch --array=0-N` \
             (Slurm >= 17.11 exports it), or use --shard i/n",
        )?;
        let min = parse_var(env, "SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        if let Some(step) = parse_var(env, "SLURM_ARRAY_TASK_STEP")?.filter(|&s| s != 1) {
            bail!(
                "SLURM_ARRAY_TASK_STEP={step}: shards need a contiguous array with step 1, e.g. sbatch --array=0-{}",
                count.max(1) - 1
            );
        }
        if let Some(max) = parse_var(env, "SLURM_ARRAY_TASK_MAX")? {
            if max < min || max - min + 1 != count {
                bail!(
                    "the Slurm array is not one contiguous range (SLURM_ARRAY_TASK_MIN={min}, SLURM_ARRAY_TASK_MAX={max}, \
                     SLURM_ARRAY_TASK_COUNT={count}): use a range like sbatch --array=0-{}",
                    count.max(1) - 1
                );
            }
        }
        if count == 0 || id < min || id - min >= count {
            bail!(
                "SLURM_ARRAY_TASK_ID={id} is outside the array (SLURM_ARRAY_TASK_MIN={min}, SLURM_ARRAY_TASK_COUNT={count})"
            );
        }
        if let Some(n) = count_flag.filter(|&n| n != count) {
            bail!("--shard-count {n} contradicts SLURM_ARRAY_TASK_COUNT={count}: drop --shard-count under Slurm");
        }
        return Ok((Shard { index: id - min, count }, Scheduler::Slurm));
    }
    if let Some(index) = parse_var(env, "JOB_COMPLETION_INDEX")? {
        let count = count_flag.context(
            "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job), but Kubernetes does not export the number of \
             completions: pass --shard-count N with N = the Job's spec.completions",
        )?;
        if count == 0 || index >= count {
            bail!("JOB_COMPLETION_INDEX={index} is not below --shard-count {count}: set --shard-count to the Job's spec.completions");
        }
        return Ok((Shard { index, count }, Scheduler::Kubernetes));
    }
    bail!(
        "--shard auto found no scheduler: neither SLURM_ARRAY_TASK_ID (a Slurm job array, sbatch --array=0-N) nor \
         JOB_COMPLETION_INDEX (a Kubernetes Indexed Job, with --shard-count N) is set; outside a scheduler use --shard i/n"
    )
}

/// The file shard `shard` writes for the merged output `out`: `recs.jsonl` ->
/// `recs.shard-0003-of-0008.jsonl` (the extension stays last, so `.tsv` still selects
/// TSV; a name without one gets the suffix appended).
pub fn shard_path(out: &Path, shard: Shard) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tag = format!("shard-{:04}-of-{:04}", shard.index, shard.count);
    let named = match name.rsplit_once('.').filter(|(stem, _)| !stem.is_empty()) {
        Some((stem, ext)) => format!("{stem}.{tag}.{ext}"),
        None => format!("{name}.{tag}"),
    };
    out.with_file_name(named)
}

/// `<out>.run.json`, the run record `generate` / `score` write beside their output
/// (the same name as `cli::record::path_for`).
pub fn run_record_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".run.json");
    out.with_file_name(name)
}

/// Parses a [`shard_path`] name back: Some(shard) when `file` is a shard of `out`.
pub fn parse_shard_path(out: &Path, file: &Path) -> Option<Shard> {
    let name = out.file_name()?.to_string_lossy().into_owned();
    let file = file.file_name()?.to_string_lossy().into_owned();
    let (prefix, suffix) = match name.rsplit_once('.').filter(|(stem, _)| !stem.is_empty()) {
        Some((stem, ext)) => (format!("{stem}.shard-"), format!(".{ext}")),
        None => (format!("{name}.shard-"), String::new()),
    };
    let mid = file.strip_prefix(&prefix)?.strip_suffix(&suffix)?;
    let (i, n) = mid.split_once("-of-")?;
    let digits = |s: &str| s.len() >= 4 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(i) || !digits(n) {
        return None;
    }
    let shard = Shard { index: i.parse().ok()?, count: n.parse().ok()? };
    (shard.index < shard.count && shard_path(out, shard).file_name()? == file.as_str()).then_some(shard)
}
