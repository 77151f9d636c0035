//! The OneRec model: an encoder over the user's history (items as sums of their
//! semantic-ID token embeddings) and a decoder with sparse Mixture-of-Experts
//! feed-forward layers that generates a session token by token.

pub mod checkpoint;
pub mod decoder;
pub mod encoder;
pub mod limits;
pub mod moe;
pub mod uncached;

/// The decoder vocabulary lives with the tokenizer whose codes it numbers.
pub use crate::tokenizer::Vocab;

use crate::generate::StepModel;
use crate::nn::{Dropout, DropoutGuard};
use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use moe::MoeStats;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How the MoE router's load is balanced (`moe.balance`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Switch-style auxiliary loss, weighted by `aux_coef`.
    Aux,
    /// DeepSeek-style loss-free bias on the selection scores, moved by `bias_rate`.
    Bias,
    /// No balancing.
    None,
}

/// Sparse MoE settings (the `[model.moe]` config section).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoeConfig {
    /// Number of experts; 0 = dense SwiGLU FFN in the decoder.
    pub experts: usize,
    /// Experts per token.
    pub top_k: usize,
    /// Hidden size of each expert's SwiGLU.
    pub expert_hidden: usize,
    /// Add an always-on shared expert.
    pub shared_expert: bool,
    /// "aux" (Switch-style loss), "bias" (DeepSeek-style loss-free bias) or "none".
    pub balance: Balance,
    /// Coefficient of the aux loss.
    pub aux_coef: f64,
    /// Step size of the loss-free bias update.
    pub bias_rate: f64,
}

impl Default for MoeConfig {
    fn default() -> Self {
        MoeConfig {
            experts: 4,
            top_k: 2,
            expert_hidden: 128,
            shared_expert: false,
            balance: Balance::Aux,
            aux_coef: 0.01,
            bias_rate: 0.001,
        }
    }
}

/// Model architecture (the `[model]` config section).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub d_model: usize,
    pub heads: usize,
    pub enc_layers: usize,
    pub dec_layers: usize,
    /// Hidden size of the encoder SwiGLU (and of the decoder's when `moe.experts = 0`).
    pub ffn_hidden: usize,
    /// History items the encoder sees (the most recent ones).
    pub history_len: usize,
    /// Longest session (in items) the decoder has positions for.
    pub max_session_items: usize,
    /// Fused CPU attention kernel instead of candle matmul/softmax ops (same
    /// results; fewer tiny gemm calls, but our crate builds at opt-level 1 in dev).
    pub fused_attention: bool,
    /// Dropout on embeddings and on every residual branch (attention, FFN) during
    /// pretraining; 0 = none. Never applied in eval, generation or alignment.
    pub dropout: f64,
    /// Hybrid input: add a learned item-id embedding to each history item's code-token
    /// sum (costs `n_items x d_model` parameters).
    pub item_id_embedding: bool,
    /// Weight of the auxiliary full-item softmax loss on the encoder's summary slot
    /// (tied to the item-id table, as in CE-SASRec); 0 = off. Training only: generation
    /// still decodes semantic ids. Needs `item_id_embedding`.
    pub item_head_weight: f64,
    pub moe: MoeConfig,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            d_model: 64,
            heads: 4,
            enc_layers: 2,
            dec_layers: 2,
            ffn_hidden: 256,
            history_len: 20,
            max_session_items: 5,
            fused_attention: false,
            dropout: 0.0,
            item_id_embedding: false,
            item_head_weight: 0.0,
            moe: MoeConfig::default(),
        }
    }
}

impl ModelConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.d_model > 0, "d_model must be > 0");
        ensure!(self.heads > 0, "heads must be > 0");
        ensure!(
            self.d_model.is_multiple_of(self.heads),
            "heads = {} does not divide d_model = {}; pick heads among the divisors of d_model",
            self.heads,
            self.d_model
        );
        ensure!(self.dec_layers > 0, "dec_layers must be > 0");
        ensure!(self.ffn_hidden > 0, "ffn_hidden must be > 0");
        ensure!(self.history_len > 0, "history_len must be > 0");
        ensure!(self.max_session_items > 0, "max_session_items must be > 0");
        ensure!((0.0..1.0).contains(&self.dropout), "dropout = {} must be in [0, 1)", self.dropout);
        ensure!(
            self.item_head_weight >= 0.0 && self.item_head_weight.is_finite(),
            "item_head_weight = {} must be a finite number >= 0",
            self.item_head_weight
        );
        ensure!(
            self.item_head_weight == 0.0 || self.item_id_embedding,
            "item_head_weight = {} needs item_id_embedding = true (the head scores against the item-id table)",
            self.item_head_weight
        );
        let m = &self.moe;
        if m.experts > 0 {
            ensure!(
                m.top_k >= 1 && m.top_k <= m.experts,
                "moe.top_k = {} must be between 1 and moe.experts = {}",
                m.top_k,
                m.experts
            );
            ensure!(m.expert_hidden > 0, "moe.expert_hidden must be > 0");
            ensure!(m.aux_coef >= 0.0 && m.bias_rate >= 0.0, "moe.aux_coef and moe.bias_rate must be >= 0");
        }
        Ok(())
    }

    /// Decoder positions: BOS + every code token of the longest session.
    pub fn max_decoder_len(&self, levels: usize) -> usize {
        1 + self.max_session_items * levels
    }
}

/// A teacher-forced batch: histories, decoder inputs, targets and a target mask.
#[derive(Clone, Debug)]
pub struct Batch {
    pub histories: Vec<Vec<u32>>,
    /// Row-major [rows, len].
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub mask: Vec<f32>,
    pub len: usize,
    /// Each row's first target item (the auxiliary item head's label); `u32::MAX` for
    /// a row with an empty session.
    pub items: Vec<u32>,
}

impl Batch {
    pub fn rows(&self) -> usize {
        self.histories.len()
    }
    /// Number of target tokens that count.
    pub fn tokens(&self) -> f32 {
        self.mask.iter().sum()
    }
}

/// Output of a teacher-forced forward pass.
pub type Output = decoder::DecoderOutput;

/// The training objective of a batch.
pub struct Loss {
    /// Mean token cross-entropy over the unmasked targets.
    pub ce: Tensor,
    /// Sum of the MoE aux losses (when that balancing mode is on).
    pub aux: Option<Tensor>,
    /// Routing statistics of each MoE layer, in layer order.
    pub moe_stats: Vec<MoeStats>,
    /// Router probabilities of each MoE layer with the aux loss on (see
    /// [`OneRecModel::aux_loss`]), in layer order.
    pub router_probs: Vec<Option<Tensor>>,
    /// Mean full-item cross-entropy of the auxiliary item head (when
    /// `item_head_weight > 0`), not yet weighted.
    pub item_ce: Option<Tensor>,
}

/// The encoder / sparse-MoE decoder model.
pub struct OneRecModel {
    pub cfg: ModelConfig,
    pub vocab: Vocab,
    /// Code path of every dense dataset item, row-major [n_items, levels].
    pub item_codes: Vec<u32>,
    pub encoder: encoder::Encoder,
    pub decoder: decoder::Decoder,
    pub device: Device,
    /// Shared by the encoder and decoder; off unless [`OneRecModel::training`] is held.
    pub dropout: Arc<Dropout>,
}

/// Decoding state for a batch of rows: the encoder output and mask (one row per history;
/// the item head reads the output), cross K/V and self KV caches. Tensors are shared, so a
/// clone is cheap and decoding one clone leaves the other as it was.
#[derive(Clone)]
pub struct DecodeState {
    enc: encoder::Encoded,
    cache: decoder::Cache,
    pos: usize,
    rows: usize,
}

impl OneRecModel {
    /// Builds the model with parameters from `vb` (created if missing).
    pub fn new(cfg: &ModelConfig, vocab: Vocab, item_codes: Vec<u32>, vb: VarBuilder) -> Result<OneRecModel> {
        cfg.validate()?;
        ensure!(
            vocab.levels() > 0 && item_codes.len().is_multiple_of(vocab.levels()),
            "item codes do not match {} levels",
            vocab.levels()
        );
        for (i, p) in item_codes.chunks_exact(vocab.levels()).enumerate() {
            for (l, &c) in p.iter().enumerate() {
                ensure!((c as usize) < vocab.codebook_sizes[l], "item {i}: code {c} at level {l} outside codebook");
            }
        }
        let device = vb.device().clone();
        let dropout = Arc::new(Dropout::new(cfg.dropout));
        let n_items = item_codes.len() / vocab.levels();
        let encoder = encoder::Encoder::new(cfg, &vocab, n_items, dropout.clone(), vb.pp("enc"))?;
        let decoder = decoder::Decoder::new(cfg, &vocab, dropout.clone(), vb.pp("dec"))?;
        Ok(OneRecModel { cfg: cfg.clone(), vocab, item_codes, encoder, decoder, device, dropout })
    }

    /// Training mode (dropout on, masks drawn from `rng`) until the guard is dropped.
    pub fn training(&self, rng: crate::util::rng::Rng) -> DropoutGuard<'_> {
        self.dropout.training(rng)
    }

    /// A freshly initialised model and its parameters, deterministic in `seed`
    /// (candle's own initialisers draw from an unseeded RNG).
    pub fn build(cfg: &ModelConfig, vocab: Vocab, item_codes: Vec<u32>, seed: u64) -> Result<(OneRecModel, VarMap)> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = OneRecModel::new(cfg, vocab, item_codes, vb)?;
        crate::nn::init::seeded(&varmap, seed, "init")?;
        Ok((model, varmap))
    }

    pub fn n_items(&self) -> usize {
        self.item_codes.len() / self.vocab.levels()
    }

    /// Code tokens of item `item`.
    pub fn item_tokens(&self, item: u32) -> Result<Vec<u32>> {
        let l = self.vocab.levels();
        let codes = self
            .item_codes
            .get(item as usize * l..(item as usize + 1) * l)
            .with_context(|| format!("item {item} out of range (model knows {} items)", self.n_items()))?;
        Ok(self.vocab.item_tokens(codes))
    }

    pub fn encode_histories(&self, histories: &[&[u32]]) -> Result<encoder::Encoded> {
        Ok(self.encoder.forward(histories, &self.item_codes, &self.vocab)?)
    }

    /// Teacher-forced forward pass.
    pub fn forward(&self, batch: &Batch) -> Result<Output> {
        self.decode_batch(batch, &self.encode_batch(batch)?)
    }

    fn encode_batch(&self, batch: &Batch) -> Result<encoder::Encoded> {
        let h: Vec<&[u32]> = batch.histories.iter().map(|h| h.as_slice()).collect();
        self.encode_histories(&h)
    }

    fn decode_batch(&self, batch: &Batch, enc: &encoder::Encoded) -> Result<Output> {
        Ok(self.decoder.forward(&batch.inputs, batch.rows(), batch.len, enc)?)
    }

    /// Log-probability of each target token, [B,S] (masked positions hold 0).
    pub fn target_logprobs(&self, logits: &Tensor, batch: &Batch) -> Result<Tensor> {
        let (b, s, v) = logits.dims3()?;
        let logp = candle_nn::ops::log_softmax(&logits.reshape((b * s, v))?, D::Minus1)?;
        let t = Tensor::from_vec(batch.targets.clone(), (b * s, 1), &self.device)?;
        let m = Tensor::from_vec(batch.mask.clone(), (b, s), &self.device)?;
        Ok((logp.gather(&t, 1)?.reshape((b, s))? * m)?)
    }

    /// Mean token cross-entropy over the unmasked targets, the aux loss and the
    /// routing statistics.
    pub fn loss(&self, batch: &Batch) -> Result<Loss> {
        let enc = self.encode_batch(batch)?;
        let item_ce = match self.cfg.item_head_weight > 0.0 {
            true => self.item_head_loss(&enc, &batch.items)?,
            false => None,
        };
        let out = self.decode_batch(batch, &enc)?;
        let lp = self.target_logprobs(&out.logits, batch)?;
        let n = batch.tokens().max(1.0) as f64;
        Ok(Loss {
            ce: (lp.sum_all()? * (-1.0 / n))?,
            aux: out.aux_loss,
            moe_stats: out.moe_stats,
            router_probs: out.router_probs,
            item_ce,
        })
    }

    /// Mean full-item cross-entropy of the item head over the rows with a label.
    fn item_head_loss(&self, enc: &encoder::Encoded, items: &[u32]) -> Result<Option<Tensor>> {
        let Some(logits) = self.encoder.item_logits(enc)? else { return Ok(None) };
        let rows: Vec<u32> = (0..items.len() as u32).filter(|&r| items[r as usize] != u32::MAX).collect();
        if rows.is_empty() {
            return Ok(None);
        }
        let labels: Vec<u32> = rows.iter().map(|&r| items[r as usize]).collect();
        let n = rows.len();
        // Training rows all have a label: no copy of the [rows, n_items] logits then.
        let logits = match n == items.len() {
            true => logits,
            false => logits.index_select(&Tensor::from_vec(rows, n, &self.device)?, 0)?,
        };
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let picked = logp.gather(&Tensor::from_vec(labels, (n, 1), &self.device)?, 1)?;
        Ok(Some((picked.sum_all()? * (-1.0 / n as f64))?))
    }

    /// Teacher-forced batch scoring `sessions` (item ids) after `histories`; when
    /// `eos` the target ends with EOS.
    pub fn session_batch(&self, histories: &[&[u32]], sessions: &[&[u32]], eos: bool) -> Result<Batch> {
        ensure!(histories.len() == sessions.len(), "{} histories but {} sessions", histories.len(), sessions.len());
        let lv = self.vocab.levels();
        let len = sessions.iter().map(|s| s.len() * lv + eos as usize).max().unwrap_or(0).max(1);
        let mut b = Batch {
            histories: histories.iter().map(|h| h.to_vec()).collect(),
            inputs: vec![],
            targets: vec![],
            mask: vec![],
            len,
            items: sessions.iter().map(|s| s.first().copied().unwrap_or(u32::MAX)).collect(),
        };
        for s in sessions {
            let mut toks = Vec::with_capacity(len);
            for &it in s.iter() {
                toks.extend(self.item_tokens(it)?);
            }
            if eos {
                toks.push(Vocab::EOS);
            }
            let k = toks.len();
            let mut row = vec![Vocab::PAD; len];
            row[0] = Vocab::BOS;
            row[1..k.max(1)].copy_from_slice(&toks[..k.saturating_sub(1)]);
            b.inputs.extend(row);
            b.targets.extend_from_slice(&toks);
            b.mask.extend(std::iter::repeat_n(1.0, k));
            let pad = len - k;
            b.targets.extend(std::iter::repeat_n(Vocab::PAD, pad));
            b.mask.extend(std::iter::repeat_n(0.0, pad));
        }
        Ok(b)
    }

    /// Sum of the log-probabilities of each session's tokens (all its items' code
    /// tokens, teacher-forced) given each history: a differentiable [B] tensor.
    /// `histories` and `sessions` hold dense dataset item ids.
    pub fn sequence_logprob(&self, histories: &[&[u32]], sessions: &[&[u32]]) -> Result<Tensor> {
        let batch = self.session_batch(histories, sessions, false)?;
        let out = self.forward(&batch)?;
        Ok(self.target_logprobs(&out.logits, &batch)?.sum(D::Minus1)?)
    }

    /// The item head's log-softmax over the catalogue, row-major [rows, n_items];
    /// `None` without item-id embeddings.
    pub fn item_logprobs(&self, histories: &[&[u32]]) -> Result<Option<Vec<f32>>> {
        self.item_logprobs_of(&self.encode_histories(histories)?)
    }

    /// [`Self::item_logprobs`] of encoded histories.
    fn item_logprobs_of(&self, enc: &encoder::Encoded) -> Result<Option<Vec<f32>>> {
        let Some(logits) = self.encoder.item_logits(enc)? else { return Ok(None) };
        Ok(Some(candle_nn::ops::log_softmax(&logits, D::Minus1)?.flatten_all()?.to_vec1()?))
    }

    /// The MoE layers of the decoder.
    pub fn moe_layers(&self) -> Vec<&moe::Moe> {
        self.decoder
            .layers
            .iter()
            .filter_map(|l| match &l.ffn {
                moe::Ffn::Moe(m) => Some(m),
                moe::Ffn::Dense(_) => None,
            })
            .collect()
    }

    /// Whether the MoE layers train with the Switch aux loss (a config fact).
    pub fn aux_balancing(&self) -> bool {
        self.moe_layers().iter().any(|m| m.aux_balancing())
    }

    /// The aux loss summed over MoE layers (in layer order, as the forward pass sums it)
    /// from a pass's `router_probs` and routing statistics `stats`. With the pass's own
    /// statistics it equals [`Loss::aux`]; with statistics summed over data-parallel ranks
    /// it is this rank's part of the global aux loss, so the ranks' parts (and their
    /// gradients) add up to the one-process loss on the whole batch.
    pub fn aux_loss(&self, router_probs: &[Option<Tensor>], stats: &[MoeStats]) -> Result<Option<Tensor>> {
        let mut total: Option<Tensor> = None;
        for ((m, p), s) in self.moe_layers().into_iter().zip(router_probs).zip(stats) {
            if let Some(p) = p {
                let a = m.aux_loss(p, &s.load, s.tokens)?;
                total = Some(match total {
                    Some(t) => (t + a)?,
                    None => a,
                });
            }
        }
        Ok(total)
    }

    /// Router-bias buffers (loss-free balancing) by name, for checkpoints.
    pub fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (i, m) in self.moe_layers().iter().enumerate() {
            let b = m.bias.lock().map_err(|_| anyhow::anyhow!("router bias lock poisoned"))?.clone();
            let n = b.len();
            out.push((format!("buffer.moe{i}.router_bias"), Tensor::from_vec(b, n, &self.device)?));
        }
        Ok(out)
    }

    pub fn set_buffer(&self, name: &str, t: &Tensor) -> Result<bool> {
        for (i, m) in self.moe_layers().iter().enumerate() {
            if name == format!("buffer.moe{i}.router_bias") {
                let v: Vec<f32> = t.to_vec1()?;
                ensure!(v.len() == m.n_experts(), "{name}: {} values for {} experts", v.len(), m.n_experts());
                *m.bias.lock().map_err(|_| anyhow::anyhow!("router bias lock poisoned"))? = v;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl OneRecModel {
    /// Encodes histories for decoding (same as [`StepModel::encode`]).
    pub fn encode(&self, histories: &[&[u32]]) -> Result<DecodeState> {
        let enc = self.encode_histories(histories)?;
        let cache = self.decoder.start(&enc)?;
        Ok(DecodeState { enc, cache, pos: 0, rows: histories.len() })
    }

    /// Feeds one token per row; log-softmax [rows, vocab] row-major (same as
    /// [`StepModel::step`]).
    pub fn decode_step(&self, state: &mut DecodeState, tokens: &[u32]) -> Result<Vec<f32>> {
        check_step(tokens, state.rows, self.vocab.size())?;
        let logits = self.decoder.step(tokens, state.pos, &mut state.cache, &state.enc.mask)?;
        state.pos += 1;
        let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        Ok(lp.flatten_all()?.to_vec1()?)
    }

    /// Keeps rows `rows` of a decoding state, moving the caches with them.
    pub fn reorder_rows(&self, state: &mut DecodeState, rows: &[u32]) -> Result<()> {
        check_reorder(rows, state.rows)?;
        let idx = Tensor::from_vec(rows.to_vec(), rows.len(), &self.device)?;
        let sel = |t: &Tensor| t.index_select(&idx, 0);
        // Cross K/V and the encoder mask stay one row per user; only the map moves.
        state.cache.row_user = rows.iter().map(|&r| state.cache.row_user[r as usize]).collect();
        for kv in state.cache.self_kv.iter_mut().flatten() {
            kv.0 = sel(&kv.0)?;
            kv.1 = sel(&kv.1)?;
        }
        state.rows = rows.len();
        Ok(())
    }
}

/// A decoding step feeds one in-vocabulary token per row (shared by the cached and
/// [`uncached`] decoders).
pub(crate) fn check_step(tokens: &[u32], rows: usize, vocab_size: usize) -> Result<()> {
    if tokens.len() != rows {
        bail!("step: {} tokens for {rows} rows", tokens.len());
    }
    if let Some(t) = tokens.iter().find(|&&t| t as usize >= vocab_size) {
        bail!("step: token {t} outside the vocabulary of {vocab_size}");
    }
    Ok(())
}

/// A reorder keeps only existing rows.
pub(crate) fn check_reorder(keep: &[u32], rows: usize) -> Result<()> {
    if let Some(r) = keep.iter().find(|&&r| r as usize >= rows) {
        bail!("reorder: row {r} out of {rows} rows");
    }
    Ok(())
}

impl DecodeState {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Tokens fed so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl StepModel for OneRecModel {
    type State = DecodeState;
    fn encode(&self, histories: &[&[u32]]) -> Result<DecodeState> {
        OneRecModel::encode(self, histories)
    }
    fn step(&self, state: &mut DecodeState, tokens: &[u32]) -> Result<Vec<f32>> {
        self.decode_step(state, tokens)
    }
    fn reorder(&self, state: &mut DecodeState, rows: &[u32]) -> Result<()> {
        self.reorder_rows(state, rows)
    }
    fn vocab_size(&self) -> usize {
        self.vocab.size()
    }
    fn item_logprobs(&self, state: &DecodeState) -> Result<Option<Vec<f32>>> {
        self.item_logprobs_of(&state.enc)
    }
}
