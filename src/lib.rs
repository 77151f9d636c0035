//! onerec: an end-to-end generative recommender in the style of Kuaishou's OneRec.
//!
//! The pipeline, one module per stage, each reading and writing plain files:
//! - [`data`]: interaction logs -> prepared datasets (histories, splits, sessions);
//! - [`world`]: a synthetic world with a known ground-truth reward;
//! - [`embed`]: item texts -> sentence embeddings with a local BERT model;
//! - [`tokenizer`]: multimodal item embeddings -> unique semantic-ID paths;
//! - [`model`]: encoder + sparse-MoE decoder over semantic-ID tokens;
//! - [`nn`]: the layers, kernels, seeded init, parameter files and optimizer they share;
//! - [`train`]: next-token pretraining loop, checkpoints;
//! - [`dist`]: data-parallel pretraining's gradient sync (one process, MPI, NCCL);
//! - [`align`]: reward model and iterative DPO preference alignment;
//! - [`generate`]: constrained beam search with a KV cache, batch scoring;
//! - [`eval`]: Recall@K / NDCG@K, coverage, true reward;
//! - [`shard`]: scheduler-driven shards of batch jobs and their merge;
//! - [`report`]: an HTML run report with SVG charts.
//!
//! [`cli`] is a thin layer over these; everything it does is callable from Rust.

pub mod align;
pub mod baseline;
pub mod cli;
pub mod config;
pub mod data;
pub mod dist;
pub mod embed;
pub mod eval;
pub mod generate;
pub mod model;
pub mod nn;
pub mod pipeline;
pub mod report;
pub mod serve;
pub mod shard;
pub mod tokenizer;
pub mod train;
pub mod util;
pub mod world;

pub use anyhow::{Error, Result};
