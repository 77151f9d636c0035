//! Every stage on a fresh synthetic world: synth -> prepare -> tokenize (text + image,
//! aligned with the training histories) -> pretrain -> reward model -> iterative DPO ->
//! evaluation of both models against the world's ground-truth reward.

use super::StageClock;
use crate::align::iterate::AlignOutcome;
use crate::align::reward::RewardReport;
use crate::config::Config;
use crate::data::prepare::{prepare_interactions, write_dataset};
use crate::data::Dataset;
use crate::eval::checkpoint::evaluate_checkpoint;
use crate::eval::EvalReport;
use crate::generate::SplitSel;
use crate::tokenizer::{tokenize_files, SemanticIds};
use crate::world::{synth, SynthOptions};
use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A synthetic run: the world to synthesize, the recipe, where to write.
pub struct SyntheticRun<'a> {
    pub world: SynthOptions,
    pub config: &'a Config,
    /// `OUT/`: world/, data/, tokenizer/, pretrain/, reward/, aligned/, config.toml,
    /// summary.json, report.html.
    pub out: &'a Path,
    /// How the config was named on the command line, for summary.json.
    pub config_label: String,
    pub overrides: Vec<String>,
}

/// What a synthetic run produced.
pub struct SyntheticOutcome {
    pub dataset: Dataset,
    pub pretrain: crate::train::Summary,
    pub reward: RewardReport,
    pub align: AlignOutcome,
    /// Test-split evaluation of the pretrained and the aligned model.
    pub pretrained: EvalReport,
    pub aligned: EvalReport,
    pub dirs: SyntheticDirs,
}

/// The run's output directories.
pub struct SyntheticDirs {
    pub world: PathBuf,
    pub data: PathBuf,
    pub tokenizer: PathBuf,
    pub pretrain: PathBuf,
    pub reward: PathBuf,
    pub aligned: PathBuf,
}

impl SyntheticDirs {
    fn under(out: &Path) -> SyntheticDirs {
        SyntheticDirs {
            world: out.join("world"),
            data: out.join("data"),
            tokenizer: out.join("tokenizer"),
            pretrain: out.join("pretrain"),
            reward: out.join("reward"),
            aligned: out.join("aligned"),
        }
    }
}

/// Runs every stage; writes `OUT/summary.json` (every number, stage times).
pub fn run(run: &SyntheticRun) -> Result<SyntheticOutcome> {
    let (cfg, out) = (run.config, run.out);
    let started = Instant::now();
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let dirs = SyntheticDirs::under(out);
    let mut clock = StageClock::default();
    let mut summary = Map::new();

    let t = Instant::now();
    crate::util::io::atomic_dir(&dirs.world, |tmp| synth(&run.world, tmp).map(|_| ()))?;
    let (users, items) = (run.world.users, run.world.items);
    summary.insert("world".into(), json!({ "users": users, "items": items, "secs": clock.done("world", t) }));

    let t = Instant::now();
    let ds = prepare_interactions(&dirs.world.join("interactions.csv"), &cfg.data.prepare_options())?;
    write_dataset(&ds, &dirs.data)?;
    let data_row = json!({ "users": ds.n_users(), "items": ds.n_items(), "interactions": ds.items.len() });
    summary.insert("data".into(), with_secs(data_row, clock.done("data", t)));

    let t = Instant::now();
    let inputs = [
        ("text".to_string(), dirs.world.join("text.safetensors")),
        ("image".to_string(), dirs.world.join("image.safetensors")),
    ];
    let align_with = cfg.tokenizer.align.then_some(dirs.data.as_path());
    let fit = tokenize_files(&cfg.tokenizer.options(cfg.seed), &inputs, align_with, &dirs.tokenizer)?;
    let tok_row = json!({ "metrics": serde_json::to_value(&fit.metrics)? });
    summary.insert("tokenizer".into(), with_secs(tok_row, clock.done("tokenizer", t)));
    cfg.save(out)?;

    let t = Instant::now();
    let sids = SemanticIds::load(&dirs.tokenizer)?;
    if dirs.pretrain.exists() {
        std::fs::remove_dir_all(&dirs.pretrain)
            .with_context(|| format!("cannot replace {}", dirs.pretrain.display()))?;
    }
    let pretrain = crate::train::pretrain(&cfg.pretrain_spec()?, &ds, &sids, &dirs.pretrain, false)?;
    let row = json!({ "summary": serde_json::to_value(&pretrain)?, "secs": clock.done("pretrain", t) });
    summary.insert("pretrain_run".into(), row);

    let t = Instant::now();
    let reward = crate::align::train_reward_model(&cfg.reward_spec()?, &ds, &dirs.tokenizer, &dirs.reward)?;
    summary
        .insert("reward".into(), json!({ "report": serde_json::to_value(&reward)?, "secs": clock.done("reward", t) }));

    let t = Instant::now();
    let align = crate::align::onerec::run(
        &cfg.align_spec()?,
        &dirs.pretrain,
        &dirs.reward,
        &dirs.data,
        &dirs.aligned,
        Some(&dirs.world),
    )?;
    let row = json!({ "iterations": serde_json::to_value(&align.state.iterations)?, "secs": clock.done("align", t) });
    summary.insert("align_run".into(), row);

    // Before/after on the test split of every user: ranking metrics, and the true and
    // reward-model rewards of each user's best generated session.
    let t = Instant::now();
    let opts = cfg.eval.options();
    let eval =
        |dir: &Path| evaluate_checkpoint(dir, &dirs.data, SplitSel::Test, &opts, Some(&dirs.world), Some(&dirs.reward));
    let pretrained = eval(&dirs.pretrain)?;
    let aligned = eval(&dirs.aligned)?;
    summary.insert("pretrain".into(), serde_json::to_value(&pretrained)?);
    summary.insert("aligned".into(), serde_json::to_value(&aligned)?);
    clock.done("eval", t);

    summary.insert("seed".into(), json!(cfg.seed));
    summary.insert("config".into(), json!(run.config_label));
    summary.insert("overrides".into(), json!(run.overrides));
    summary.insert("total_secs".into(), json!(started.elapsed().as_secs_f64()));
    crate::util::io::write_json(&out.join("summary.json"), &Value::Object(summary))?;
    let report = crate::report::write_report(out, &out.join("report.html"))?;
    tracing::info!("wrote {} ({} charts)", report.out.display(), report.figures);
    Ok(SyntheticOutcome { dataset: ds, pretrain, reward, align, pretrained, aligned, dirs })
}

fn with_secs(mut row: Value, secs: f64) -> Value {
    if let Value::Object(m) = &mut row {
        m.insert("secs".into(), Value::from(secs));
    }
    row
}
