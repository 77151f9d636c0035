//! The project's neural-network toolkit on candle (CPU), shared by the model, the reward
//! model, alignment and the tokenizer's trained parts. Every layer here has a working
//! backward pass on CPU (candle's own fused norm and softmax helpers silently have none),
//! every random draw comes from a seeded stream, and every variable list is sorted by
//! name, so a run is reproducible byte for byte.
//!
//! - [`Linear`], [`RmsNorm`], [`SwiGlu`], [`Attention`], [`Dropout`]: the layers.
//! - [`kernels`]: fused CPU kernels (RMSNorm, SwiGLU) with hand-written backward passes.
//! - [`init`]: seeded (re-)initialisation of a `VarMap`.
//! - [`params`]: sorted variables and byte-exact safetensors save / load / clone.
//! - [`optim`]: AdamW with saveable state, global-norm clipping, the lr schedule.

pub mod attention;
pub mod attention_op;
pub mod dropout;
pub mod init;
pub mod kernels;
pub mod linear;
pub mod norm;
pub mod optim;
pub mod params;
pub mod swiglu;

pub use attention::{causal_mask, key_mask, Attention};
pub use dropout::{Dropout, DropoutGuard};
pub use linear::Linear;
pub use norm::RmsNorm;
pub use swiglu::SwiGlu;
