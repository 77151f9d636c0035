//! What pretraining accumulates between two log lines and between two evals.

use super::run::MicroBatchStats;
use crate::model::moe::{Moe, MoeStats};
use std::time::Instant;
use tracing::info;

/// A running mean, emptied by [`Mean::take`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Mean {
    sum: f64,
    n: usize,
}

impl Mean {
    pub fn add(&mut self, v: f64) {
        self.sum += v;
        self.n += 1;
    }

    /// The mean so far (0 if empty), and start again.
    pub fn take(&mut self) -> f64 {
        let m = self.sum / self.n.max(1) as f64;
        *self = Mean::default();
        m
    }
}

/// Losses, throughput and MoE routing since the last `train` log line.
pub struct LogWindow {
    ce: f64,
    aux: f64,
    /// The item head's cross-entropy, summed over the micro-batches that had one.
    item_ce: Mean,
    micro_batches: usize,
    tokens: f64,
    examples: usize,
    /// Token-slots per expert, per MoE layer.
    load: Vec<Vec<u64>>,
    /// Router entropy summed over tokens, and the token count.
    entropy: (f64, u64),
    started: Instant,
}

impl LogWindow {
    pub fn new(moes: &[&Moe]) -> LogWindow {
        LogWindow {
            ce: 0.0,
            aux: 0.0,
            item_ce: Mean::default(),
            micro_batches: 0,
            tokens: 0.0,
            examples: 0,
            load: moes.iter().map(|m| vec![0; m.n_experts()]).collect(),
            entropy: (0.0, 0),
            started: Instant::now(),
        }
    }

    pub fn add(&mut self, m: &MicroBatchStats) {
        if let Some(a) = m.aux {
            self.aux += a;
        }
        if let Some(c) = m.item_ce {
            self.item_ce.add(c);
        }
        self.ce += m.ce;
        self.micro_batches += 1;
        self.tokens += m.tokens;
        self.examples += m.examples;
    }

    /// Routing statistics of one optimizer step, one entry per MoE layer.
    pub fn add_routing(&mut self, stats: &[MoeStats]) {
        for (acc, st) in self.load.iter_mut().zip(stats) {
            for (a, b) in acc.iter_mut().zip(&st.load) {
                *a += b;
            }
            self.entropy.0 += st.entropy_sum;
            self.entropy.1 += st.tokens;
        }
    }

    /// Logs the window's means and rates at `step`, then starts a new window.
    pub fn report(&mut self, step: usize, lr: f64) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let load: Vec<String> = self
            .load
            .iter()
            .map(|l| {
                let s = l.iter().sum::<u64>().max(1) as f64;
                l.iter().map(|&x| format!("{:.2}", x as f64 / s)).collect::<Vec<_>>().join("/")
            })
            .collect();
        let n = self.micro_batches.max(1) as f64;
        let item_ce = match self.item_ce.n {
            0 => "-".to_string(),
            _ => format!("{:.4}", self.item_ce.take()),
        };
        info!(
            step,
            loss = format!("{:.4}", self.ce / n),
            aux = format!("{:.4}", self.aux / n),
            item_ce,
            lr = format!("{lr:.2e}"),
            tok_per_s = format!("{:.0}", self.tokens / secs),
            ex_per_s = format!("{:.0}", self.examples as f64 / secs),
            expert_load = load.join(" | "),
            router_entropy = format!("{:.3}", self.entropy.0 / self.entropy.1.max(1) as f64),
            "train"
        );
        (self.ce, self.aux, self.micro_batches, self.tokens, self.examples) = (0.0, 0.0, 0, 0.0, 0);
        self.load.iter_mut().for_each(|l| l.iter_mut().for_each(|x| *x = 0));
        self.entropy = (0.0, 0);
        self.started = Instant::now();
    }
}
