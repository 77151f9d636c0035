//! The semantic-ID tokenizer: fuse multimodal item embeddings, quantize them with
//! (balanced) residual k-means or an RQ-VAE into L codes per item, and make every
//! item's path unique. The artifact ([`SemanticIds`]) maps items <-> code paths and
//! holds the prefix trie constrained decoding walks.

pub mod align;
pub mod artifact;
pub mod config;
pub mod fit;
pub mod fuse;
pub mod kernel;
pub mod kmeans;
pub mod paths;
mod rows;
pub mod rqvae;
pub mod trie;
pub mod vocab;

pub use align::AlignOptions;
pub use artifact::SemanticIds;
pub use config::{Collab, TokenizerConfig};
pub use fit::{fit, tokenize_files, write_artifact, InputFile, Method, TokenizeOptions, TokenizerFit};
pub use paths::{Collisions, Metrics};
pub use rqvae::RqVaeOptions;
pub use trie::PrefixTrie;
pub use vocab::Vocab;
