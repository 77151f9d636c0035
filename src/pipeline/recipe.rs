//! A real dataset directory through the whole recipe, every setting from one config:
//! prepare (`[data]`) -> item text embeddings (shipped ones, else `[embed]` with a local
//! sentence model) -> with `tokenizer.collab = "sasrec"`, a CE-SASRec whose item table
//! is fused as a collaborative modality -> tokenize (`[tokenizer]`) -> pretrain (`[model]`, `[train]`) ->
//! evaluate (`[eval]`) on validation and test. The same call works unchanged for any
//! Amazon 5-core directory of `../shared/data` (Beauty ships embeddings; Sports and Toys
//! get theirs from `items.tsv.gz`'s `generated_phrase`).
//!
//! `OUT/`: data/, embeddings/ (when made here), sasrec/ (with `collab`), tok/, pre/, config.toml, valid.json,
//! test.json (+ test-<other protocol>.json), the same files prefixed `sasrec-` for the
//! run's own CE-SASRec (with `collab`: the baseline beside the model, same users, same
//! metric code, same protocols), each report's per-user ranks (`test.users.tsv`, ...,
//! for `onerec compare`), results.md, recipe.json (what ran, seed, ranks, stage times).
//!
//! Under `mpirun -np N` (feature `mpi`, [`run_on`]) the two training stages run
//! data-parallel over the ranks; everything else runs on rank 0.

use super::StageClock;
use crate::baseline::sasrec::{train_sasrec_on, SasrecConfig};
use crate::config::Config;
use crate::data::prepare::{prepare_sequences, write_dataset};
use crate::dist::{self, GradSync};
use crate::embed::{embed_items, EmbedOptions};
use crate::eval::checkpoint::evaluate_checkpoint;
use crate::eval::EvalReport;
use crate::generate::SplitSel;
use crate::tokenizer::{tokenize_files, Collab, SemanticIds};
use crate::util::record::RunRecord;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// [`RecipeEval::model`] of the generative model; its files are `valid.json`, `test.json`, ...
pub const MODEL_ONEREC: &str = "onerec";
/// [`RecipeEval::model`] of the run's CE-SASRec; its files carry this prefix and a dash.
pub const MODEL_SASREC: &str = "sasrec";

/// Embeddings a data directory may ship (the layout of `../shared/data/amazon-*`).
pub const SHIPPED_TEXT_EMBEDDINGS: &str = "item_text_embeddings.safetensors";

/// A recipe run.
pub struct RecipeRun<'a> {
    pub config: &'a Config,
    /// Raw data directory: `sequences.txt.gz` (or `sequences.txt`), and either
    /// `item_text_embeddings.safetensors` or the `[embed]` item table.
    pub data_dir: &'a Path,
    pub out: &'a Path,
    /// Continue a killed run: pretraining resumes from `OUT/pre/last`; the earlier
    /// stages are deterministic and rerun (embeddings reuse their finished chunks).
    pub resume: bool,
    /// Skip the training stages and only evaluate an existing `OUT/pre`.
    pub eval_only: bool,
}

/// One evaluation a recipe wrote.
#[derive(Debug)]
pub struct RecipeEval {
    /// Which model: [`MODEL_ONEREC`] (the generative model) or [`MODEL_SASREC`].
    pub model: &'static str,
    /// File name under OUT (e.g. `test.json`, `sasrec-test.json`).
    pub file: String,
    pub split: SplitSel,
    pub exclude_history: bool,
    pub report: EvalReport,
}

#[derive(Debug)]
pub struct RecipeOutcome {
    pub pretrain: Option<crate::train::Summary>,
    pub evals: Vec<RecipeEval>,
}

/// Runs the recipe in one process; see the module doc for what it writes.
pub fn run(r: &RecipeRun) -> Result<RecipeOutcome> {
    run_on(r, &dist::Single)
}

/// [`run`] on the ranks of `sync` (`mpirun -np N onerec recipe ...`; every rank calls it
/// with the same arguments, and `OUT` must be on a filesystem every rank sees). The
/// training stages (CE-SASRec, pretraining) are data-parallel; preparing the data,
/// embedding, tokenizing and evaluating run on rank 0 while the other ranks wait, so the
/// files are the ones a single process writes (up to the float summation order of
/// data-parallel gradients). Rank 0 returns the evaluations; the other ranks none.
pub fn run_on(r: &RecipeRun, sync: &dyn GradSync) -> Result<RecipeOutcome> {
    let (cfg, out) = (r.config, r.out);
    let leader = sync.is_leader();
    let started = Instant::now();
    if leader {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    }
    let (data_dir, tok_dir, pre_dir) = (out.join("data"), out.join("tok"), out.join("pre"));
    let mut clock = StageClock::default();
    let mut pretrain = None;
    if !r.eval_only {
        let t = Instant::now();
        // Every rank prepares the same dataset in memory (deterministic, seconds); rank 0 writes it.
        let mut ds = prepare_sequences(&sequences_file(r.data_dir)?, &cfg.data.prepare_options())?;
        if leader {
            write_dataset(&ds, &data_dir)?;
        }
        // Checkpoints record it, so `onerec eval --checkpoint OUT/pre` needs no `--data`.
        ds.dir = Some(data_dir.clone());
        clock.done("prepare", t);

        let t = Instant::now();
        let text = if leader { Some(text_embeddings(cfg, r.data_dir, out)?) } else { None };
        clock.done("embed", t);

        let mut collab = None;
        if cfg.tokenizer.collab == Collab::Sasrec {
            let t = Instant::now();
            collab = sasrec_collab(cfg, &ds, out, r.resume, sync)?;
            clock.done("sasrec", t);
        }

        let t = Instant::now();
        if let Some(text) = text {
            let mut inputs = vec![("text".to_string(), text)];
            inputs.extend(collab.map(|c| ("collab".to_string(), c)));
            let align_with = cfg.tokenizer.align.then_some(data_dir.as_path());
            tokenize_files(&cfg.tokenizer.options(cfg.seed), &inputs, align_with, &tok_dir)?;
            cfg.save(out)?;
        }
        // The other ranks read the tokenizer rank 0 has just written.
        sync.barrier()?;
        clock.done("tokenize", t);

        let t = Instant::now();
        let sids = SemanticIds::load(&tok_dir)?;
        pretrain = Some(crate::train::pretrain_on(&cfg.pretrain_spec()?, &ds, &sids, &pre_dir, r.resume, sync)?);
        clock.done("pretrain", t);
    } else if !pre_dir.join("best").exists() {
        bail!("eval only: {} holds no pretrained model (best/); run the recipe first", pre_dir.display());
    }
    if !leader {
        return Ok(RecipeOutcome { pretrain, evals: Vec::new() });
    }

    let t = Instant::now();
    let evals = evaluate_all(cfg, &pre_dir, &data_dir, out)?;
    clock.done("eval", t);
    let table = results_table(&evals, started.elapsed().as_secs_f64());
    crate::util::io::atomic_write(&out.join("results.md"), table.as_bytes())?;

    let record = json!({
        "command": "recipe",
        "version": env!("CARGO_PKG_VERSION"),
        "config": cfg.name,
        "seed": cfg.seed,
        "threads": crate::util::threads::compute_threads(),
        "ranks": sync.world_size(),
        "data_dir": r.data_dir,
        "resume": r.resume,
        "eval_only": r.eval_only,
        "evaluations": evals.iter().map(|e| json!({
            "model": e.model, "file": e.file, "split": split_name(e.split), "exclude_history": e.exclude_history,
        })).collect::<Vec<_>>(),
        "stage_secs": clock.to_json(),
        "total_secs": started.elapsed().as_secs_f64(),
    });
    crate::util::io::write_json(&out.join("recipe.json"), &record)?;
    Ok(RecipeOutcome { pretrain, evals })
}

/// Trains CE-SASRec (built-in `sasrec` config, the run's seed) into `OUT/sasrec` (reused
/// when finished, resumed with `resume`; data-parallel over `sync`'s ranks) and writes
/// its item table to `OUT/embeddings/collab.safetensors`, whose path rank 0 returns.
fn sasrec_collab(
    cfg: &Config,
    ds: &crate::data::Dataset,
    out: &Path,
    resume: bool,
    sync: &dyn GradSync,
) -> Result<Option<PathBuf>> {
    let dir = out.join("sasrec");
    // Rank 0 looks at the directory and tells the others, so every rank takes the same branch.
    let mut seen = [0.0; 2];
    if sync.is_leader() {
        seen = [dir.join("summary.json").exists() as u8 as f64, dir.join("last").exists() as u8 as f64];
    }
    sync.broadcast_f64(&mut seen)?;
    let (finished, has_last) = (seen[0] > 0.0, seen[1] > 0.0);
    if finished {
        tracing::info!("reusing the finished SASRec {}", dir.display());
    } else {
        let mut sc = SasrecConfig::load("sasrec", &[])?;
        sc.seed = cfg.seed;
        let s = train_sasrec_on(&sc, ds, &dir, resume && has_last, sync)?;
        tracing::info!(
            "SASRec for the collab modality: best valid NDCG@10 {:.4} at epoch {}",
            s.best_valid_ndcg10,
            s.best_epoch
        );
    }
    if !sync.is_leader() {
        return Ok(None);
    }
    let emb = crate::baseline::export::sasrec_item_embeddings(&dir, ds)?;
    let path = out.join("embeddings").join("collab.safetensors");
    std::fs::create_dir_all(out.join("embeddings"))?;
    crate::data::embeddings::save_with_ids(&path, &emb, false)?;
    Ok(Some(path))
}

/// The sequence file of a data directory.
pub fn sequences_file(dir: &Path) -> Result<PathBuf> {
    ["sequences.txt.gz", "sequences.txt"].iter().map(|n| dir.join(n)).find(|p| p.exists()).with_context(|| {
        format!("{}: no sequences.txt.gz or sequences.txt (one line per user: `user item item ...`)", dir.display())
    })
}

/// The text-embedding file: the one the data ships, else made with `[embed]` into
/// `OUT/embeddings/text.safetensors` (resumable by chunks; reused when complete).
fn text_embeddings(cfg: &Config, data: &Path, out: &Path) -> Result<PathBuf> {
    let shipped = data.join(SHIPPED_TEXT_EMBEDDINGS);
    if shipped.exists() {
        tracing::info!("using the shipped text embeddings {}", shipped.display());
        return Ok(shipped);
    }
    let made = out.join("embeddings").join("text.safetensors");
    if made.exists() {
        tracing::info!("reusing {}", made.display());
        return Ok(made);
    }
    let e = &cfg.embed;
    let items = data.join(&e.items);
    if !items.exists() {
        bail!(
            "{}: no {SHIPPED_TEXT_EMBEDDINGS} and no item table {} to embed (set embed.items)",
            data.display(),
            e.items
        );
    }
    let model = PathBuf::from(&e.model_dir);
    if !model.join("tokenizer.json").exists() {
        bail!(
            "{} ships no text embeddings, and the sentence model {} is missing: run \
             `scripts/fetch-minilm.sh {}` (or set embed.model_dir)",
            data.display(),
            model.display(),
            e.model_dir
        );
    }
    std::fs::create_dir_all(made.parent().unwrap_or(out))?;
    let mut opts = EmbedOptions::new(&model, &items, &e.text, &made);
    opts.id_col = (!e.id_col.is_empty()).then(|| e.id_col.clone());
    opts.batch_size = e.batch_size;
    opts.max_tokens = e.max_tokens;
    embed_items(&opts)?;
    Ok(made)
}

/// Validation (for choosing recipes) and test, under `[eval]`'s protocol; the test split
/// also under the other protocol when `eval.both_protocols`. The same plan for the run's
/// CE-SASRec when it trained one (`OUT/sasrec/best`), into `sasrec-*.json`.
fn evaluate_all(cfg: &Config, pre: &Path, data: &Path, out: &Path) -> Result<Vec<RecipeEval>> {
    let primary = cfg.eval.exclude_history;
    let mut plan = vec![("test.json".to_string(), SplitSel::Test, primary)];
    if cfg.eval.validation {
        plan.insert(0, ("valid.json".into(), SplitSel::Valid, primary));
    }
    if cfg.eval.both_protocols {
        let other = if primary { "test-history-allowed.json" } else { "test-history-excluded.json" };
        plan.push((other.into(), SplitSel::Test, !primary));
    }
    let sasrec = crate::baseline::sasrec::checkpoint::find(&out.join("sasrec").join("best"));
    let mut evals = Vec::new();
    for (file, split, exclude_history) in &plan {
        let opts = crate::eval::EvalOptions { exclude_history: *exclude_history, ..cfg.eval.options() };
        let report = evaluate_checkpoint(pre, data, *split, &opts, None, None)?;
        let args = json!({
            "split": split_name(*split), "exclude_history": exclude_history, "beam": opts.beam, "ks": opts.ks,
            "session_len": opts.session_len, "max_users": opts.max_users, "fusion": opts.fusion,
        });
        let rec = RecipeEval {
            model: MODEL_ONEREC,
            file: file.clone(),
            split: *split,
            exclude_history: *exclude_history,
            report,
        };
        evals.push(write_eval(cfg, rec, pre, data, out, args)?);
    }
    if let Some(ck) = &sasrec {
        for (file, split, exclude_history) in &plan {
            // Only what ranking single items by one score uses; beam and fusion do not apply.
            let base = cfg.eval.options();
            let opts = crate::eval::EvalOptions {
                ks: base.ks.clone(),
                exclude_history: *exclude_history,
                batch_users: base.batch_users,
                max_users: base.max_users,
                ..crate::eval::EvalOptions::default()
            };
            let report = crate::eval::checkpoint::evaluate_sasrec_checkpoint(ck, data, *split, &opts)?;
            let args = json!({
                "split": split_name(*split), "exclude_history": exclude_history, "ks": opts.ks,
                "max_users": opts.max_users,
            });
            let file = format!("{MODEL_SASREC}-{file}");
            let rec =
                RecipeEval { model: MODEL_SASREC, file, split: *split, exclude_history: *exclude_history, report };
            evals.push(write_eval(cfg, rec, ck, data, out, args)?);
        }
    }
    Ok(evals)
}

/// Writes `OUT/<file>` and its run record.
fn write_eval(
    cfg: &Config,
    e: RecipeEval,
    checkpoint: &Path,
    data: &Path,
    out: &Path,
    args: serde_json::Value,
) -> Result<RecipeEval> {
    let path = out.join(&e.file);
    crate::util::io::write_json(&path, &e.report)?;
    // Per-user ranks beside it (`test.json` -> `test.users.tsv`), for `onerec compare`.
    let users = out.join(e.file.strip_suffix(".json").unwrap_or(&e.file).to_string() + ".users.tsv");
    crate::eval::per_user::write_tsv(&users, &e.report.per_user)?;
    RunRecord::new("recipe eval")
        .set("model", e.model)?
        .set("args", args)?
        .set("checkpoint", checkpoint)?
        .set("data", data)?
        .set("config", &cfg.name)?
        .set("seed", cfg.seed)?
        .write_beside(&path)?;
    tracing::info!("wrote {} ({} {:?}, exclude_history={})", path.display(), e.model, e.split, e.exclude_history);
    Ok(e)
}

/// results.md: one row per evaluation this run wrote.
fn results_table(evals: &[RecipeEval], secs: f64) -> String {
    let ks = evals.first().map(|e| e.report.metrics.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    let mut s = format!(
        "| model | split | history items | {} | users |\n|---|---|---|{}---|\n",
        ks.join(" | "),
        "---|".repeat(ks.len())
    );
    for e in evals {
        let protocol = if e.exclude_history { "excluded" } else { "allowed" };
        let vals: Vec<String> =
            ks.iter().map(|k| format!("{:.4}", e.report.metrics.get(k).copied().unwrap_or(f64::NAN))).collect();
        s += &format!("| {} | {:?} | {protocol} | {} | {} |\n", e.model, e.split, vals.join(" | "), e.report.users);
    }
    s + &format!("\nwall time {secs:.0} s\n")
}

fn split_name(s: SplitSel) -> &'static str {
    match s {
        SplitSel::Valid => "valid",
        SplitSel::Test => "test",
        SplitSel::All => "all",
    }
}
