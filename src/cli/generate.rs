//! `onerec generate`: constrained beam search for users of a dataset split or a
//! histories file; one JSON line per user (see [`crate::generate::batch::generate_json`]).

use crate::data::Dataset;
use crate::generate::users::{align_dataset, users_from_histories_file, users_from_split, SplitSel};
use crate::generate::{rank_batched, write_generate_jsonl, BeamOptions, DecodeIndex};
use crate::model::checkpoint::dataset_dir;
use crate::shard::ShardSpec;
use crate::tokenizer::Vocab;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, serde::Serialize)]
pub struct GenerateArgs {
    /// Checkpoint directory (or a pretrain/align output directory).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Prepared dataset directory: users and histories of `--split` (default, without
    /// --histories: the dataset recorded in the checkpoint).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// valid | test | all: the history ends before that target (`all`: whole history).
    #[arg(long, default_value = "test")]
    pub split: SplitSel,
    /// Instead of --data: lines `user_id item_id ...` (original ids, oldest first).
    #[arg(long, conflicts_with = "data")]
    pub histories: Option<PathBuf>,
    #[arg(long, default_value_t = 20)]
    pub beam: usize,
    /// Items per generated session.
    #[arg(long, default_value_t = 1)]
    pub session_len: usize,
    /// Hypotheses written per user (<= beam).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Never recommend items from the user's history.
    #[arg(long)]
    pub exclude_history: bool,
    /// With --session-len 1: rank by `log p_gen + W * log p_head` over the beam's and
    /// the item head's candidates, as `onerec eval --item-head-weight` (0 = beam only;
    /// `scores` are then the fused scores).
    #[arg(long, default_value_t = 0.0)]
    pub item_head_weight: f64,
    /// Item-head candidates added to the beam's when fusing (0 = the beam width).
    #[arg(long, default_value_t = 0)]
    pub item_head_candidates: usize,
    /// Users decoded together in one batch.
    #[arg(long, default_value_t = 64)]
    pub batch_users: usize,
    /// Only shard i of n (contiguous whole batches of users; concatenated shards =
    /// the unsharded output, byte for byte, at the same --batch-users), or `auto`: i and n
    /// from a Slurm job array or a Kubernetes Indexed Job, output named by shard
    /// (`recs.jsonl` -> `recs.shard-0003-of-0008.jsonl`; `onerec merge` joins them).
    #[arg(long, default_value = "0/1")]
    pub shard: ShardSpec,
    /// The shard count with `--shard auto` in a Kubernetes Indexed Job (its
    /// spec.completions; Kubernetes exports only the index).
    #[arg(long)]
    pub shard_count: Option<usize>,
    /// Output JSONL file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// With --histories: skip (and count) lines with unknown items or an empty history.
    #[arg(long)]
    pub skip_bad_lines: bool,
}

pub fn run(a: GenerateArgs) -> Result<()> {
    let t0 = std::time::Instant::now();
    let fusion = crate::eval::config::fusion_flags(a.item_head_weight, a.item_head_candidates, a.beam)?;
    if fusion.is_some() && a.session_len != 1 {
        anyhow::bail!("--item-head-weight ranks single items: use it with --session-len 1");
    }
    let job = crate::shard::resolve(a.shard, a.shard_count, &a.out)?;
    let ckpt = crate::model::checkpoint::load(&a.checkpoint)?;
    let ids = &ckpt.semantic_ids;
    let vocab = Vocab::new(ids.codebook_sizes.clone());
    let (users, data, skipped) = match &a.histories {
        Some(h) => {
            let (users, skipped) = users_from_histories_file(h, ids, a.skip_bad_lines)?;
            if skipped > 0 {
                eprintln!("skipped {skipped} bad lines of {}", h.display());
            }
            (users, None, skipped)
        }
        None => {
            let d = dataset_dir(a.data.as_deref(), &ckpt.dir, &ckpt.meta)?;
            let ds = Dataset::load(&d).with_context(|| format!("loading dataset {}", d.display()))?;
            (users_from_split(&align_dataset(&ds, ids)?, a.split), Some(d), 0)
        }
    };
    let users = &users[job.shard.range_in_blocks(users.len(), a.batch_users)];
    tracing::info!(
        "generating for {} users (shard {}/{}), beam {}, session {}",
        users.len(),
        job.shard.index,
        job.shard.count,
        a.beam,
        a.session_len
    );
    let opts = BeamOptions {
        beam: a.beam,
        session_len: a.session_len,
        top: a.top.min(a.beam),
        exclude_history: a.exclude_history,
    };
    let index = DecodeIndex::new(ids)?;
    let hist: Vec<&[u32]> = users.iter().map(|u| &u.history[..]).collect();
    let (res, stats) = rank_batched(&ckpt.model, ids, &index, &vocab, &hist, &opts, a.batch_users, fusion.as_ref())?;
    write_generate_jsonl(&job.out, users, &res, ids, a.session_len)?;
    let mut facts =
        serde_json::json!({"users": users.len(), "skipped_lines": skipped, "invalid_paths": stats.invalid_items});
    merge_facts(&mut facts, job.facts());
    super::record::write(&job.out, "generate", &a, &ckpt.dir, &ckpt.meta, data.as_deref(), facts)?;
    tracing::info!(
        "wrote {} ({} users) in {:.2}s; invalid_paths {}, invalid_paths_before_masking {:.4}",
        job.out.display(),
        users.len(),
        t0.elapsed().as_secs_f64(),
        stats.invalid_items,
        stats.invalid_fraction_before_masking()
    );
    Ok(())
}

/// Adds the object `extra`'s keys to the object `facts`.
pub(super) fn merge_facts(facts: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(f), serde_json::Value::Object(e)) = (facts.as_object_mut(), extra) {
        f.extend(e);
    }
}
