//! `onerec eval`: leave-one-out Recall@K / NDCG@K and friends (see [`crate::eval`]).

use crate::eval::checkpoint::{evaluate_checkpoint, evaluate_sasrec_checkpoint};
use crate::eval::EvalOptions;
use crate::generate::users::SplitSel;
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, serde::Serialize)]
pub struct EvalArgs {
    /// Checkpoint directory (or a pretrain/align output directory).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Prepared dataset directory (default: the one recorded in the checkpoint).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// valid | test.
    #[arg(long, default_value = "test")]
    pub split: SplitSel,
    /// Cut-offs, comma separated.
    #[arg(long, default_value = "5,10,20", value_delimiter = ',')]
    pub k: Vec<usize>,
    /// Beam width for ranking (raised to the largest K).
    #[arg(long, default_value_t = 20)]
    pub beam: usize,
    /// Session length for diversity and rewards (0 skips that pass).
    #[arg(long, default_value_t = 5)]
    pub session_len: usize,
    /// Beam width when generating those sessions.
    #[arg(long, default_value_t = 10)]
    pub session_beam: usize,
    /// Rank by `log p_gen + W * log p_head` over the beam's and the item head's
    /// candidates (0 = beam only; needs a model with `model.item_id_embedding`).
    #[arg(long, default_value_t = 0.0)]
    pub item_head_weight: f64,
    /// Item-head candidates added to the beam's when fusing (0 = the beam width).
    #[arg(long, default_value_t = 0)]
    pub item_head_candidates: usize,
    /// Never recommend items from the user's history.
    #[arg(long)]
    pub exclude_history: bool,
    /// Users decoded together in one batch (batches run in parallel).
    #[arg(long, default_value_t = 64)]
    pub batch_users: usize,
    /// Evaluate an evenly spaced deterministic subset of at most N users.
    #[arg(long)]
    pub max_users: Option<usize>,
    /// Synthetic world directory: adds `true_reward`.
    #[arg(long)]
    pub world: Option<PathBuf>,
    /// Reward model directory: adds `rm_reward`.
    #[arg(long)]
    pub reward: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report here (atomically), with `<out>.run.json` beside it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write each user's target and its rank here (TSV), for `onerec compare`.
    #[arg(long)]
    pub per_user: Option<PathBuf>,
}

pub fn run(a: EvalArgs) -> Result<()> {
    if let Some(dir) = crate::baseline::sasrec::checkpoint::find(&a.checkpoint) {
        return run_sasrec(&a, &dir);
    }
    let opts = EvalOptions {
        ks: a.k.clone(),
        beam: a.beam,
        session_len: a.session_len,
        session_beam: a.session_beam,
        exclude_history: a.exclude_history,
        batch_users: a.batch_users,
        max_users: a.max_users,
        fusion: crate::eval::config::fusion_flags(a.item_head_weight, a.item_head_candidates, a.beam)?,
        ..EvalOptions::default()
    };
    let (ckpt_dir, meta) = crate::model::checkpoint::read_meta(&a.checkpoint)?;
    let data = crate::model::checkpoint::dataset_dir(a.data.as_deref(), &ckpt_dir, &meta)?;
    let report = evaluate_checkpoint(&ckpt_dir, &data, a.split, &opts, a.world.as_deref(), a.reward.as_deref())?;
    let mut json = serde_json::to_value(&report)?;
    let refs = match (&a.world, report.true_reward) {
        (Some(w), Some(_)) => Some(references(w, &data, a.split, &opts)?),
        _ => None,
    };
    if let (Some(r), Some(o)) = (&refs, json.as_object_mut()) {
        o.insert("oracle_reward".into(), r.oracle_reward.into());
        o.insert("imitator_reward".into(), r.imitator_reward.into());
    }
    if a.json {
        println!("{json}");
    } else {
        print!("{}", report.table());
        if let (Some(r), Some(model)) = (&refs, report.true_reward) {
            print!("{}", reference_table(r, model));
        }
    }
    if let Some(out) = &a.out {
        crate::util::io::write_json(out, &json)?;
        tracing::info!("wrote {}", out.display());
        super::record::write(out, "eval", &a, &ckpt_dir, &meta, Some(&data), serde_json::json!({}))?;
    }
    write_per_user(&a, &report)
}

/// `--per-user FILE`: the report's per-user ranks as TSV.
fn write_per_user(a: &EvalArgs, report: &crate::eval::EvalReport) -> Result<()> {
    if let Some(path) = &a.per_user {
        crate::eval::per_user::write_tsv(path, &report.per_user)?;
        tracing::info!("wrote {} ({} users)", path.display(), report.per_user.len());
    }
    Ok(())
}

/// The synthetic world's reference rows over the evaluated users.
fn references(
    world: &std::path::Path,
    data: &std::path::Path,
    split: SplitSel,
    opts: &EvalOptions,
) -> Result<crate::world::ReferenceRewards> {
    let w = crate::world::World::load(world)?;
    let ds = crate::data::Dataset::load(data)?;
    crate::eval::world_references(&w, &ds, split, opts)
}

/// The model's true reward beside the oracle and imitator rows.
fn reference_table(r: &crate::world::ReferenceRewards, model: f64) -> String {
    let pos = r.position(model).map_or("n/a".to_string(), |p| format!("{p:.3}"));
    format!(
        "\ntrue reward of a {}-item session, mean over the same {} users:\n\
         {:<32} {:.4}\n{:<32} {:.4}\n{:<32} {model:.4}  (imitator = 0, oracle = 1: {pos})\n",
        r.session_len,
        r.users,
        "oracle (world best_session)",
        r.oracle_reward,
        "imitator (most_clicked_items)",
        r.imitator_reward,
        "this model"
    )
}

/// `onerec eval` of a SASRec checkpoint (recognised by its `sasrec.json`): the same
/// metric code, keys and protocol flags; beam and session options do not apply.
fn run_sasrec(a: &EvalArgs, dir: &std::path::Path) -> Result<()> {
    if a.world.is_some() || a.reward.is_some() {
        bail!(
            "--world and --reward score generated sessions; a SASRec checkpoint ({}) only ranks items",
            dir.display()
        );
    }
    if a.item_head_weight > 0.0 {
        bail!(
            "--item-head-weight fuses a generative model's two scores; a SASRec checkpoint ({}) has one",
            dir.display()
        );
    }
    let meta = crate::baseline::sasrec::checkpoint::read_meta(dir)?;
    let data = match (&a.data, &meta.data_dir) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) if d.join("dataset.json").exists() => d.clone(),
        (None, Some(d)) => bail!(
            "checkpoint {} was trained on dataset {}, which no longer exists; pass --data DIR",
            dir.display(),
            d.display()
        ),
        (None, None) => bail!("checkpoint {} does not record its dataset; pass --data DIR", dir.display()),
    };
    let opts = EvalOptions {
        ks: a.k.clone(),
        exclude_history: a.exclude_history,
        batch_users: a.batch_users,
        max_users: a.max_users,
        ..EvalOptions::default()
    };
    let report = evaluate_sasrec_checkpoint(dir, &data, a.split, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    if let Some(out) = &a.out {
        crate::util::io::write_json(out, &report)?;
        tracing::info!("wrote {}", out.display());
        crate::util::record::RunRecord::new("eval")
            .set("args", a)?
            .set("checkpoint", dir)?
            .set("model", "sasrec")?
            .set("checkpoint_epoch", meta.epoch)?
            .set("seed", meta.seed)?
            .set("data", &data)?
            .write_beside(out)?;
    }
    write_per_user(a, &report)
}
