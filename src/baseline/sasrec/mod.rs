//! CE-SASRec: causal self-attention over item-id embeddings trained with full-softmax
//! cross-entropy over all items (the setup of the CE-SASRec / eSASRec papers), in the
//! same harness as the generative model: its rankings are scored by
//! [`crate::eval::ranking_metrics`] and `onerec eval` reads its checkpoints.

pub mod ce;
pub mod checkpoint;
pub mod config;
pub mod model;
pub mod rank;
pub mod train;

pub use checkpoint::{load, SasrecCheckpoint, SasrecMeta};
pub use config::SasrecConfig;
pub use model::Sasrec;
pub use rank::evaluate_sasrec;
pub use train::{train_sasrec, train_sasrec_on, train_sasrec_with, SasrecSummary};
