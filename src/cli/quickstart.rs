//! `onerec quickstart`: every stage on a fresh synthetic world with the tiny config.
//! Each stage goes through the same library calls the individual commands use.

use crate::data::prepare::{prepare_interactions, write_dataset, PrepareOptions};
use crate::eval::checkpoint::evaluate_checkpoint;
use crate::eval::EvalOptions;
use crate::generate::SplitSel;
use crate::tokenizer::{tokenize_files, AlignOptions, TokenizeOptions};
use crate::world::{synth, SynthOptions};
use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct QuickstartArgs {
    /// Output directory (world/, data/, tokenizer/, pretrain/, reward/, aligned/, summary.json).
    #[arg(long, default_value = "runs/quickstart")]
    pub out: PathBuf,
    /// Seed for the world and every stage.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Config (a path or built-in name).
    #[arg(long, default_value = "tiny")]
    pub config: String,
    /// Config overrides, e.g. --set align.lambda=0 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Synthetic users (smaller is faster).
    #[arg(long, default_value_t = 2000)]
    pub users: usize,
    /// Synthetic items.
    #[arg(long, default_value_t = 1000)]
    pub items: usize,
}

pub fn run(a: QuickstartArgs) -> Result<()> {
    let started = Instant::now();
    let out = &a.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut summary = Map::new();
    let stage = |name: &str, t: Instant| {
        let secs = t.elapsed().as_secs_f64();
        tracing::info!("quickstart: {name} done in {secs:.1}s");
        secs
    };

    let t = Instant::now();
    let world_dir = out.join("world");
    let opts = SynthOptions { users: a.users, items: a.items, seed: a.seed, ..SynthOptions::default() };
    crate::util::io::atomic_dir(&world_dir, |tmp| synth(&opts, tmp).map(|_| ()))?;
    summary.insert("world".into(), json!({ "users": a.users, "items": a.items, "secs": stage("world", t) }));

    let t = Instant::now();
    let data_dir = out.join("data");
    let prep = PrepareOptions { session_gap: Some(1800.0), ..PrepareOptions::default() };
    let ds = prepare_interactions(&world_dir.join("interactions.csv"), &prep)?;
    write_dataset(&ds, &data_dir)?;
    summary.insert(
        "data".into(),
        json!({ "users": ds.n_users(), "items": ds.n_items(), "interactions": ds.items.len(), "secs": stage("data", t) }),
    );

    let t = Instant::now();
    let tok_dir = out.join("tokenizer");
    let tok_opts = TokenizeOptions {
        codebook_sizes: vec![16],
        seed: a.seed,
        collisions: crate::tokenizer::Collisions::Reassign,
        align: AlignOptions::default(),
        ..TokenizeOptions::default()
    };
    let inputs = [
        ("text".to_string(), world_dir.join("text.safetensors")),
        ("image".to_string(), world_dir.join("image.safetensors")),
    ];
    let fit = tokenize_files(&tok_opts, &inputs, Some(&data_dir), &tok_dir)?;
    summary.insert(
        "tokenizer".into(),
        json!({ "metrics": serde_json::to_value(&fit.metrics)?, "secs": stage("tokenizer", t) }),
    );

    let mut overrides = vec![format!("seed={}", a.seed)];
    overrides.extend(a.set.iter().cloned());
    let cfg = crate::config::Config::load(&a.config, &overrides)?;
    cfg.save(out)?;

    let t = Instant::now();
    let pre_dir = out.join("pretrain");
    let sids = crate::tokenizer::SemanticIds::load(&tok_dir)?;
    if pre_dir.exists() {
        std::fs::remove_dir_all(&pre_dir).with_context(|| format!("cannot replace {}", pre_dir.display()))?;
    }
    let pre = crate::train::pretrain(&cfg, &ds, &sids, &pre_dir, false)?;
    summary
        .insert("pretrain_run".into(), json!({ "summary": serde_json::to_value(&pre)?, "secs": stage("pretrain", t) }));

    let t = Instant::now();
    let rm_dir = out.join("reward");
    let rm = crate::align::train_reward_model(&cfg, &ds, &tok_dir, &rm_dir)?;
    summary.insert("reward".into(), json!({ "report": serde_json::to_value(&rm)?, "secs": stage("reward", t) }));

    let t = Instant::now();
    let al_dir = out.join("aligned");
    let al = crate::align::onerec::run(&cfg, &pre_dir, &rm_dir, &data_dir, &al_dir, Some(&world_dir))?;
    summary.insert(
        "align_run".into(),
        json!({ "iterations": serde_json::to_value(&al.state.iterations)?, "secs": stage("align", t) }),
    );

    // Before/after on the test split of every user: ranking metrics, and the true and
    // reward-model rewards of each user's best generated session.
    let t = Instant::now();
    let opts = EvalOptions { session_len: cfg.align.session_len, ..EvalOptions::default() };
    let mut rows = Vec::new();
    for (name, dir) in [("pretrain", &pre_dir), ("aligned", &al_dir)] {
        let r = evaluate_checkpoint(dir, &data_dir, SplitSel::Test, &opts, Some(&world_dir), Some(&rm_dir))?;
        let v = serde_json::to_value(&r)?;
        summary.insert(name.into(), v.clone());
        rows.push((name, v));
    }
    stage("eval", t);
    println!("\n{:<10} {:>12} {:>12} {:>10} {:>10}", "model", "true_reward", "rm_reward", "recall@10", "ndcg@10");
    for (name, v) in &rows {
        let g = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
        println!(
            "{name:<10} {:>12.4} {:>12.4} {:>10.4} {:>10.4}",
            g("true_reward"),
            g("rm_reward"),
            g("recall@10"),
            g("ndcg@10")
        );
    }

    summary.insert("seed".into(), json!(a.seed));
    summary.insert("config".into(), json!(a.config));
    summary.insert("overrides".into(), json!(a.set));
    summary.insert("total_secs".into(), json!(started.elapsed().as_secs_f64()));
    crate::util::io::write_json(&out.join("summary.json"), &Value::Object(summary))?;
    let report = crate::report::write_report(out, &out.join("report.html"))?;
    tracing::info!("wrote {} ({} charts)", report.out.display(), report.figures);
    println!("quickstart finished in {:.1}s; outputs in {}", started.elapsed().as_secs_f64(), out.display());
    Ok(())
}
