//! A BERT encoder (inference only) on candle: embeddings + post-LN transformer layers, as in
//! Hugging Face `BertModel`. Written here rather than taken from candle-transformers to keep
//! the dependency tree light; only what sentence encoders need (no pooler, no cross-attention).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// The fields of a Hugging Face `config.json` this encoder uses.
#[derive(Clone, Debug, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_pos_type")]
    pub position_embedding_type: String,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_pos_type() -> String {
    "absolute".into()
}

impl BertConfig {
    pub fn load(path: &Path) -> Result<BertConfig> {
        let cfg: BertConfig =
            crate::util::io::read_json(path).with_context(|| format!("{}: not a BERT config.json", path.display()))?;
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            bail!(
                "{}: hidden_size {} is not a multiple of num_attention_heads {}",
                path.display(),
                cfg.hidden_size,
                cfg.num_attention_heads
            );
        }
        if cfg.position_embedding_type != "absolute" {
            bail!(
                "{}: position_embedding_type `{}` is not supported (only `absolute`)",
                path.display(),
                cfg.position_embedding_type
            );
        }
        Activation::parse(&cfg.hidden_act).with_context(|| format!("{}: key hidden_act", path.display()))?;
        Ok(cfg)
    }
}

#[derive(Clone, Copy, Debug)]
enum Activation {
    /// Exact (erf) GELU: Hugging Face's "gelu".
    Gelu,
    /// tanh-approximated GELU: "gelu_new" / "gelu_pytorch_tanh".
    GeluTanh,
    Relu,
    Silu,
}

impl Activation {
    fn parse(s: &str) -> Result<Activation> {
        Ok(match s {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            other => bail!("activation `{other}` is not supported (gelu, gelu_new, relu, silu)"),
        })
    }

    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Gelu => x.gelu_erf(),
            Activation::GeluTanh => x.gelu(),
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
        }
    }
}

/// y = x W^T + b over the last dim; flattens leading dims so it is one 2-D matmul.
struct Linear {
    w_t: Tensor,
    b: Tensor,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims().to_vec();
        let k = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let y = x.reshape((rows, k))?.matmul(&self.w_t)?.broadcast_add(&self.b)?;
        let mut out = dims;
        let last = out.len() - 1;
        out[last] = self.b.dim(0)?;
        y.reshape(out)
    }
}

struct LayerNorm {
    w: Tensor,
    b: Tensor,
    eps: f32,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.w, &self.b, self.eps)
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    attn_out: Linear,
    attn_ln: LayerNorm,
    inter: Linear,
    out: Linear,
    out_ln: LayerNorm,
}

/// A loaded BERT encoder.
pub struct Bert {
    pub config: BertConfig,
    word: Tensor,
    pos: Tensor,
    token_type0: Tensor,
    emb_ln: LayerNorm,
    layers: Vec<Layer>,
    act: Activation,
    device: Device,
}

/// Weight names as stored, normalised: an optional `bert.` prefix dropped (BertModel saved
/// standalone vs inside BertFor*), and old TF-style LayerNorm `gamma`/`beta` renamed.
fn normalise_names(raw: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    let prefixed = raw.keys().any(|k| k.starts_with("bert.embeddings."));
    raw.into_iter()
        .filter_map(|(k, t)| {
            let k = if prefixed { k.strip_prefix("bert.")?.to_string() } else { k };
            let k = if let Some(s) = k.strip_suffix(".gamma") {
                format!("{s}.weight")
            } else if let Some(s) = k.strip_suffix(".beta") {
                format!("{s}.bias")
            } else {
                k
            };
            Some((k, t))
        })
        .collect()
}

impl Bert {
    /// Loads `config.json` and `model.safetensors` from `dir` onto `device` (weights as f32).
    pub fn load(dir: &Path, device: &Device) -> Result<Bert> {
        let config = BertConfig::load(&dir.join("config.json"))?;
        let wpath = dir.join("model.safetensors");
        let raw = candle_core::safetensors::load(&wpath, device)
            .with_context(|| format!("cannot read BERT weights {}", wpath.display()))?;
        Bert::from_tensors(config, raw, device).with_context(|| format!("loading {}", wpath.display()))
    }

    /// Builds the encoder from named tensors (either naming layout, see `normalise_names`).
    pub fn from_tensors(config: BertConfig, raw: HashMap<String, Tensor>, device: &Device) -> Result<Bert> {
        let w = normalise_names(raw);
        let h = config.hidden_size;
        let get = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = w.get(name).with_context(|| {
                format!("missing tensor `{name}` (with or without a `bert.` prefix); is this a BERT checkpoint?")
            })?;
            if t.dims() != shape {
                bail!("tensor `{name}` has shape {:?}, config.json implies {:?}", t.dims(), shape);
            }
            Ok(t.to_dtype(DType::F32)?)
        };
        let linear = |p: &str, out: usize, inp: usize| -> Result<Linear> {
            Ok(Linear { w_t: get(&format!("{p}.weight"), &[out, inp])?.t()?, b: get(&format!("{p}.bias"), &[out])? })
        };
        let eps = config.layer_norm_eps as f32;
        let ln = |p: &str| -> Result<LayerNorm> {
            Ok(LayerNorm { w: get(&format!("{p}.weight"), &[h])?, b: get(&format!("{p}.bias"), &[h])?, eps })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let inter = config.intermediate_size;
            layers.push(Layer {
                q: linear(&format!("{p}.attention.self.query"), h, h)?,
                k: linear(&format!("{p}.attention.self.key"), h, h)?,
                v: linear(&format!("{p}.attention.self.value"), h, h)?,
                attn_out: linear(&format!("{p}.attention.output.dense"), h, h)?,
                attn_ln: ln(&format!("{p}.attention.output.LayerNorm"))?,
                inter: linear(&format!("{p}.intermediate.dense"), inter, h)?,
                out: linear(&format!("{p}.output.dense"), h, inter)?,
                out_ln: ln(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let types = get("embeddings.token_type_embeddings.weight", &[config.type_vocab_size, h])?;
        Ok(Bert {
            word: get("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
            pos: get("embeddings.position_embeddings.weight", &[config.max_position_embeddings, h])?,
            token_type0: types.get(0)?,
            emb_ln: ln("embeddings.LayerNorm")?,
            layers,
            act: Activation::parse(&config.hidden_act)?,
            device: device.clone(),
            config,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Last hidden state [b, s, h] for token ids `ids` [b, s] (u32) and a 0/1 attention
    /// mask `mask` [b, s] (f32). Token type ids are all 0 (single sentences).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        if s > self.config.max_position_embeddings {
            bail!("sequence of {s} tokens exceeds max_position_embeddings {}", self.config.max_position_embeddings);
        }
        let h = self.config.hidden_size;
        let words = self.word.index_select(&ids.flatten_all()?, 0)?.reshape((b, s, h))?;
        let pos = self.pos.narrow(0, 0, s)?;
        let x = words.broadcast_add(&pos)?.broadcast_add(&self.token_type0)?;
        let mut x = self.emb_ln.forward(&x)?;
        // Additive key mask [b, 1, 1, s]: 0 for tokens, a large negative for padding
        // (Hugging Face uses the dtype minimum; any value that underflows exp() is the same).
        let bias = ((mask.ones_like()? - mask)? * -1e30f64)?.reshape((b, 1, 1, s))?;
        for layer in &self.layers {
            x = self.layer_forward(layer, &x, &bias)?;
        }
        Ok(x)
    }

    fn layer_forward(&self, l: &Layer, x: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
        let (b, s, h) = x.dims3()?;
        let nh = self.config.num_attention_heads;
        let dh = h / nh;
        let heads =
            |t: Tensor| -> candle_core::Result<Tensor> { t.reshape((b, s, nh, dh))?.transpose(1, 2)?.contiguous() };
        let q = heads((l.q.forward(x)? * (1.0 / (dh as f64).sqrt()))?)?;
        let k = heads(l.k.forward(x)?)?;
        let v = heads(l.v.forward(x)?)?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, h))?;
        let x = l.attn_ln.forward(&(l.attn_out.forward(&ctx)? + x)?)?;
        let inner = self.act.apply(&l.inter.forward(&x)?)?;
        l.out_ln.forward(&(l.out.forward(&inner)? + x)?)
    }
}

/// Mean of `hidden` [b, s, h] over positions where `mask` [b, s] is 1, then L2-normalised
/// (eps 1e-12 as torch's F.normalize): sentence-transformers' Pooling(mean) + Normalize.
pub fn mean_pool_normalise(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&m)?.sum(1)?;
    let counts = m.sum(1)?.clamp(1e-9f64, f64::INFINITY)?;
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12f64, f64::INFINITY)?;
    Ok(mean.broadcast_div(&norm)?)
}
