//! The data layer: readers for sequence files, interaction tables, item tables and
//! embedding files; the prepared dataset (dense ids, CSR histories, splits, sessions)
//! every later stage reads; statistics and the popularity baseline.

pub mod config;
pub mod dataset;
pub mod embeddings;
pub mod items;
pub mod prepare;
pub mod readers;
pub mod sessions;
pub mod stats;
pub mod store;

pub use config::DataConfig;
pub use dataset::{Dataset, DatasetManifest, Split};
pub use embeddings::Embeddings;
