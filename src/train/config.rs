//! The `[train]` config section: the pretraining schedule and how `best/` is selected.

use anyhow::ensure;
use serde::{Deserialize, Deserializer, Serialize};

/// Training schedule (the `[train]` config section).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    pub epochs: usize,
    /// If > 0, the number of optimizer steps (overrides `epochs`).
    pub max_steps: usize,
    pub lr: f64,
    /// Final learning rate as a fraction of `lr` (cosine decay).
    pub min_lr_ratio: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Max global gradient norm (0 = no clipping).
    pub grad_clip: f64,
    /// Items per target session (1 = point-wise next item).
    pub session_len: usize,
    /// Shortest history a training example may have.
    pub min_history: usize,
    pub eval_every: usize,
    pub log_every: usize,
    /// Validation users per eval (0 = all).
    pub valid_users: usize,
    pub valid_batch: usize,
    /// The eval-row metric that selects `best/`.
    pub select_metric: SelectMetric,
    /// Users for validation Recall@10 / NDCG@10 by constrained beam search at every
    /// eval (0 = no ranking eval; only `valid_loss` is then available).
    pub rank_users: usize,
    /// Beam width of that ranking eval.
    pub rank_beam: usize,
    /// Rank with the user's history items excluded, as `onerec eval --exclude-history`
    /// does, so `best/` is picked under the protocol the final numbers are reported in.
    pub rank_exclude_history: bool,
    /// Rank that eval by the fused generative + item-head score (as `onerec eval
    /// --item-head-weight`), so `best/` is picked by the ranking the recipe reports;
    /// 0 = the beam alone. Needs `model.item_id_embedding`.
    pub rank_item_head_weight: f64,
    /// The item head's candidates for that fused ranking (0 = `rank_beam`).
    pub rank_item_head_candidates: usize,
    /// Length bucketing: if > 0, each window of this many batches is sorted by history
    /// length before batching (less encoder padding, faster steps); 0 = plain shuffle.
    pub length_buckets: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch_size: 64,
            grad_accum: 1,
            epochs: 3,
            max_steps: 0,
            lr: 2e-3,
            min_lr_ratio: 0.1,
            warmup_steps: 50,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            grad_clip: 1.0,
            session_len: 1,
            min_history: 1,
            eval_every: 200,
            log_every: 50,
            valid_users: 0,
            valid_batch: 256,
            select_metric: SelectMetric::ValidLoss,
            rank_users: 500,
            rank_beam: 20,
            rank_exclude_history: false,
            rank_item_head_weight: 0.0,
            rank_item_head_candidates: 0,
            length_buckets: 0,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.batch_size > 0, "batch_size must be > 0");
        ensure!(self.grad_accum > 0, "grad_accum must be > 0");
        ensure!(self.epochs > 0 || self.max_steps > 0, "set epochs or max_steps > 0");
        ensure!(self.lr > 0.0 && self.lr.is_finite(), "lr must be > 0");
        ensure!((0.0..=1.0).contains(&self.min_lr_ratio), "min_lr_ratio must be in [0, 1]");
        ensure!(
            (0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2),
            "beta1 and beta2 must be in [0, 1)"
        );
        ensure!(
            self.eps > 0.0 && self.weight_decay >= 0.0 && self.grad_clip >= 0.0,
            "eps > 0, weight_decay >= 0, grad_clip >= 0"
        );
        ensure!(self.session_len > 0, "session_len must be > 0");
        ensure!(
            self.eval_every > 0 && self.log_every > 0 && self.valid_batch > 0,
            "eval_every, log_every and valid_batch must be > 0"
        );
        ensure!(self.rank_beam >= 10, "rank_beam must be >= 10 (Recall@10 needs 10 ranked items)");
        ensure!(
            self.rank_item_head_weight.is_finite() && self.rank_item_head_weight >= 0.0,
            "rank_item_head_weight = {} must be a finite number >= 0 (0 = rank by the beam alone)",
            self.rank_item_head_weight
        );
        Ok(())
    }

    /// Optimizer steps of the whole run, given the micro-batches in one epoch.
    pub fn total_steps(&self, batches_per_epoch: usize) -> usize {
        if self.max_steps > 0 {
            self.max_steps
        } else {
            (self.epochs * batches_per_epoch).div_ceil(self.grad_accum)
        }
    }
}

/// The eval-row metric that selects the best checkpoint (`train.select_metric`); in TOML
/// the row key itself, e.g. `"ndcg@10"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SelectMetric {
    #[serde(rename = "valid_loss")]
    ValidLoss,
    #[serde(rename = "train_loss")]
    TrainLoss,
    /// Needs the in-training ranking eval (`train.rank_users > 0`) or an eval hook.
    #[serde(rename = "recall@10")]
    Recall10,
    /// Needs the in-training ranking eval (`train.rank_users > 0`) or an eval hook.
    #[serde(rename = "ndcg@10")]
    Ndcg10,
}

impl SelectMetric {
    pub const ALL: [SelectMetric; 4] =
        [SelectMetric::ValidLoss, SelectMetric::TrainLoss, SelectMetric::Recall10, SelectMetric::Ndcg10];

    /// Its key in an eval row (`metrics.jsonl`) and in TOML.
    pub fn key(self) -> &'static str {
        match self {
            SelectMetric::ValidLoss => "valid_loss",
            SelectMetric::TrainLoss => "train_loss",
            SelectMetric::Recall10 => "recall@10",
            SelectMetric::Ndcg10 => "ndcg@10",
        }
    }

    /// Whether the value comes from the validation ranking eval.
    pub fn is_ranking(self) -> bool {
        matches!(self, SelectMetric::Recall10 | SelectMetric::Ndcg10)
    }

    /// Whether `a` is better than `b` under this metric (losses: lower).
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            SelectMetric::ValidLoss | SelectMetric::TrainLoss => a < b,
            SelectMetric::Recall10 | SelectMetric::Ndcg10 => a > b,
        }
    }
}

impl std::fmt::Display for SelectMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// By hand rather than derived, so a bad value names the key and every allowed value.
impl<'de> Deserialize<'de> for SelectMetric {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let s = String::deserialize(d).map_err(|e| D::Error::custom(format!("train.select_metric: {e}")))?;
        SelectMetric::ALL.into_iter().find(|m| m.key() == s).ok_or_else(|| {
            let allowed: Vec<String> = SelectMetric::ALL.iter().map(|m| format!("{:?}", m.key())).collect();
            D::Error::custom(format!("train.select_metric = {s:?}: expected one of {}", allowed.join(", ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Row {
        select_metric: SelectMetric,
    }

    #[test]
    fn select_metric_keeps_its_toml_strings() {
        for m in SelectMetric::ALL {
            let text = format!("select_metric = {:?}\n", m.key());
            assert_eq!(toml::from_str::<Row>(&text).unwrap().select_metric, m);
            let written = toml::to_string(&TrainConfig { select_metric: m, ..TrainConfig::default() }).unwrap();
            assert!(written.contains(&text), "{written}");
        }
        let e = toml::from_str::<Row>("select_metric = 3\n").unwrap_err().to_string();
        assert!(e.contains("train.select_metric"), "{e}");
    }
}
