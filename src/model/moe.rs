//! Sparse Mixture-of-Experts feed-forward: a router picks the top-k experts per token
//! on the host, each expert runs only on its own tokens (index_select -> SwiGLU ->
//! index_add), and the gates are gathered from the router's probability tensor so the
//! router is trained. Load balancing: Switch-style aux loss, or DeepSeek-style
//! loss-free bias (added to the scores for selection only, nudged after each step).

use super::{Balance, MoeConfig};
use crate::nn::{Linear, SwiGlu};
use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use std::sync::Mutex;

/// Routing statistics of one or more forward passes of an MoE layer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MoeStats {
    /// Token-slots dispatched to each expert.
    pub load: Vec<u64>,
    /// Sum over tokens of the router's entropy (nats).
    pub entropy_sum: f64,
    pub tokens: u64,
}

impl MoeStats {
    /// No tokens routed yet, over `experts` experts.
    pub fn empty(experts: usize) -> MoeStats {
        MoeStats { load: vec![0; experts], ..Default::default() }
    }

    /// Adds the statistics of another pass.
    pub fn add(&mut self, other: &MoeStats) {
        for (a, b) in self.load.iter_mut().zip(&other.load) {
            *a += b;
        }
        self.entropy_sum += other.entropy_sum;
        self.tokens += other.tokens;
    }
}

/// What one MoE forward pass returns.
pub struct MoeOutput {
    /// Same shape as the input.
    pub out: Tensor,
    /// The Switch aux loss (scalar) when that balancing mode is on.
    pub aux_loss: Option<Tensor>,
    /// The router's probabilities [n, E] when the aux loss is on: data-parallel training
    /// rebuilds each rank's part of the global aux loss from them ([`Moe::aux_loss`]).
    pub router_probs: Option<Tensor>,
    pub stats: MoeStats,
}

pub struct Moe {
    router: Linear,
    experts: Vec<SwiGlu>,
    shared: Option<SwiGlu>,
    top_k: usize,
    /// Selection bias per expert (loss-free balancing); all zero otherwise. A buffer
    /// saved with checkpoints, nudged by [`Moe::update_bias`] after each training step.
    pub bias: Mutex<Vec<f32>>,
    cfg: MoeConfig,
}

/// Top-k experts per token by `probs + bias`; returns indices row-major [n, k].
pub fn route(probs: &[f32], n_experts: usize, bias: &[f32], k: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(probs.len() / n_experts * k);
    let mut idx: Vec<u32> = Vec::with_capacity(n_experts);
    for row in probs.chunks_exact(n_experts) {
        idx.clear();
        idx.extend(0..n_experts as u32);
        let score = |e: u32| row[e as usize] + bias[e as usize];
        // Stable: ties go to the lower expert index.
        idx.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
        out.extend_from_slice(&idx[..k]);
    }
    out
}

impl Moe {
    pub fn new(d: usize, cfg: &MoeConfig, vb: VarBuilder) -> Result<Moe> {
        let experts = (0..cfg.experts)
            .map(|e| SwiGlu::new(d, cfg.expert_hidden, vb.pp(format!("expert{e}"))))
            .collect::<Result<Vec<_>>>()?;
        let shared = if cfg.shared_expert { Some(SwiGlu::new(d, cfg.expert_hidden, vb.pp("shared"))?) } else { None };
        Ok(Moe {
            router: Linear::new(d, cfg.experts, vb.pp("router"))?,
            experts,
            shared,
            top_k: cfg.top_k,
            bias: Mutex::new(vec![0.0; cfg.experts]),
            cfg: cfg.clone(),
        })
    }

    /// Routes every token of `x` ([..., d]) to its top-k experts.
    pub fn forward(&self, x: &Tensor) -> Result<MoeOutput> {
        let dims = x.dims().to_vec();
        let d = dims[dims.len() - 1];
        let n = x.elem_count() / d;
        let x2 = x.reshape((n, d))?;
        let e_n = self.experts.len();
        let probs = candle_nn::ops::softmax(&self.router.forward(&x2)?, D::Minus1)?;
        let host: Vec<f32> = probs.flatten_all()?.to_vec1()?;
        let bias = self.bias.lock().map_err(|_| candle_core::Error::Msg("moe bias lock poisoned".into()))?.clone();
        let k = self.top_k;
        let chosen = route(&host, e_n, &bias, k);
        // Gates: the chosen probabilities, renormalised over the k choices.
        let dev = x.device();
        let flat_idx: Vec<u32> = chosen.iter().enumerate().map(|(s, &e)| ((s / k) * e_n) as u32 + e).collect();
        let picked = probs.flatten_all()?.index_select(&Tensor::from_vec(flat_idx, n * k, dev)?, 0)?.reshape((n, k))?;
        let gates = picked.broadcast_div(&picked.sum_keepdim(D::Minus1)?)?.flatten_all()?;
        let mut per_tok: Vec<Vec<u32>> = vec![Vec::new(); e_n];
        let mut per_slot: Vec<Vec<u32>> = vec![Vec::new(); e_n];
        for (s, &e) in chosen.iter().enumerate() {
            per_tok[e as usize].push((s / k) as u32);
            per_slot[e as usize].push(s as u32);
        }
        let mut out = match &self.shared {
            Some(sh) => sh.forward(&x2)?,
            None => Tensor::zeros((n, d), x.dtype(), dev)?,
        };
        for (e, expert) in self.experts.iter().enumerate() {
            let m = per_tok[e].len();
            if m == 0 {
                continue;
            }
            let toks = Tensor::from_vec(per_tok[e].clone(), m, dev)?;
            let slots = Tensor::from_vec(per_slot[e].clone(), m, dev)?;
            let g = gates.index_select(&slots, 0)?.reshape((m, 1))?;
            let y = expert.forward(&x2.index_select(&toks, 0)?)?.broadcast_mul(&g)?;
            out = out.index_add(&toks, &y, 0)?;
        }
        let stats = self.stats(&host, &per_tok);
        let router_probs = (self.aux_balancing() && n > 0).then_some(probs);
        let aux_loss = match &router_probs {
            Some(p) => Some(self.aux_loss(p, &stats.load, stats.tokens)?),
            None => None,
        };
        Ok(MoeOutput { out: out.reshape(dims)?, aux_loss, router_probs, stats })
    }

    /// Whether this layer trains with the Switch aux loss (a config fact: every rank agrees).
    pub fn aux_balancing(&self) -> bool {
        self.cfg.balance == Balance::Aux && self.cfg.aux_coef > 0.0
    }

    /// The Switch aux loss `coef * E * sum_e f_e * P_e` of router probabilities `probs`
    /// [n, E], with the dispatch fractions `f_e = load_e / (tokens * k)` (constants) and
    /// `P_e` the probabilities' column sums over `tokens`. With `load`/`tokens` of this
    /// pass it is the layer's aux loss; with those summed over data-parallel ranks it is
    /// this rank's part of the global one (the parts add up to the one-process loss).
    pub fn aux_loss(&self, probs: &Tensor, load: &[u64], tokens: u64) -> Result<Tensor> {
        let (e_n, k) = (self.experts.len(), self.top_k);
        let n = tokens.max(1) as usize;
        // Written as a matmul to keep reductions last-dim.
        let f: Vec<f32> = load.iter().map(|&l| l as f32 / (n * k) as f32).collect();
        let f = Tensor::from_vec(f, (e_n, 1), probs.device())?;
        probs.matmul(&f)?.sum_all()? * (e_n as f64 / n as f64 * self.cfg.aux_coef)
    }

    /// Load and router entropy of one pass (router probabilities `probs` [n, E]).
    fn stats(&self, probs: &[f32], per_tok: &[Vec<u32>]) -> MoeStats {
        let e_n = self.experts.len();
        let entropy_sum: f64 = probs
            .chunks_exact(e_n)
            .map(|r| r.iter().map(|&p| if p > 0.0 { -(p as f64) * (p as f64).ln() } else { 0.0 }).sum::<f64>())
            .sum();
        MoeStats {
            load: per_tok.iter().map(|t| t.len() as u64).collect(),
            entropy_sum,
            tokens: (probs.len() / e_n) as u64,
        }
    }

    /// Loss-free balancing: raise the bias of under-loaded experts, lower overloaded.
    pub fn update_bias(&self, load: &[u64]) {
        if self.cfg.balance != Balance::Bias || load.is_empty() {
            return;
        }
        let mean = load.iter().sum::<u64>() as f64 / load.len() as f64;
        if let Ok(mut b) = self.bias.lock() {
            for (bi, &l) in b.iter_mut().zip(load) {
                let sign = if (l as f64) < mean {
                    1.0
                } else if (l as f64) > mean {
                    -1.0
                } else {
                    0.0
                };
                *bi += (self.cfg.bias_rate * sign) as f32;
            }
        }
    }

    pub fn n_experts(&self) -> usize {
        self.experts.len()
    }
}

/// The FFN of a decoder layer: dense SwiGLU or sparse MoE.
pub enum Ffn {
    Dense(SwiGlu),
    Moe(Moe),
}

impl Ffn {
    /// The output, plus the MoE pass's routing (aux loss, router probabilities,
    /// statistics) when sparse.
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Option<MoeOutput>)> {
        match self {
            Ffn::Dense(f) => Ok((f.forward(x)?, None)),
            Ffn::Moe(m) => {
                let o = m.forward(x)?;
                Ok((o.out.clone(), Some(o)))
            }
        }
    }
}
