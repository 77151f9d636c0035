//! `onerec score`: the model's log-probability of (user, candidate item) pairs.

use crate::data::Dataset;
use crate::generate::score::{read_pairs, score_pairs, shard_pairs, write_scores};
use crate::generate::users::{align_dataset, SplitSel};
use crate::model::checkpoint::dataset_dir;
use crate::shard::ShardSpec;
use crate::tokenizer::Vocab;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, serde::Serialize)]
pub struct ScoreArgs {
    /// Checkpoint directory (or a pretrain/align output directory).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Lines `user_id<TAB>item_id` (original ids; a header line is detected).
    #[arg(long)]
    pub pairs: PathBuf,
    /// Prepared dataset with the users' histories (default: the one the checkpoint
    /// was trained on, as recorded in it).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// History ends before this split's target: valid | test | all.
    #[arg(long, default_value = "test")]
    pub split: SplitSel,
    /// Output: `.tsv` -> `user<TAB>item<TAB>logprob`, otherwise JSONL.
    #[arg(long)]
    pub out: PathBuf,
    /// Only shard i of n (contiguous whole batches of the valid pairs, in file order), or
    /// `auto`: i and n from a Slurm job array or a Kubernetes Indexed Job, output named
    /// by shard (`scores.tsv` -> `scores.shard-0003-of-0008.tsv`; `onerec merge` joins them).
    #[arg(long, default_value = "0/1")]
    pub shard: ShardSpec,
    /// The shard count with `--shard auto` in a Kubernetes Indexed Job (its
    /// spec.completions; Kubernetes exports only the index).
    #[arg(long)]
    pub shard_count: Option<usize>,
    /// Pairs scored together in one batch.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Skip (and count) lines with unknown ids, a wrong column count, or a user with
    /// no history before the split's target.
    #[arg(long)]
    pub skip_bad_lines: bool,
}

pub fn run(a: ScoreArgs) -> Result<()> {
    let job = crate::shard::resolve(a.shard, a.shard_count, &a.out)?;
    let ckpt = crate::model::checkpoint::load(&a.checkpoint)?;
    let data = dataset_dir(a.data.as_deref(), &ckpt.dir, &ckpt.meta)?;
    let ids = &ckpt.semantic_ids;
    let vocab = Vocab::new(ids.codebook_sizes.clone());
    let ds = Dataset::load(&data).with_context(|| format!("loading dataset {}", data.display()))?;
    let ds = align_dataset(&ds, ids)?;
    let pairs = read_pairs(&a.pairs, &ds, ids, a.split, a.skip_bad_lines)?;
    let mine = shard_pairs(&pairs.pairs, job.shard, a.batch);
    let scores = score_pairs(&ckpt.model, &vocab, ids, &ds, a.split, mine, a.batch)?;
    write_scores(&job.out, mine, &scores)?;
    let mut facts =
        serde_json::json!({"pairs_scored": mine.len(), "skipped_lines": pairs.skipped, "header_line": pairs.header});
    super::generate::merge_facts(&mut facts, job.facts());
    super::record::write(&job.out, "score", &a, &ckpt.dir, &ckpt.meta, Some(&data), facts)?;
    tracing::info!(
        "scored {} pairs (shard {}/{}), skipped {} bad lines; wrote {}",
        mine.len(),
        job.shard.index,
        job.shard.count,
        pairs.skipped,
        job.out.display()
    );
    if pairs.skipped > 0 {
        eprintln!("skipped {} bad lines of {}", pairs.skipped, a.pairs.display());
    }
    Ok(())
}
