//! The semantic-ID tokenizer: fuse multimodal item embeddings, quantize them with
//! (balanced) residual k-means or an RQ-VAE into L codes per item, and make every
//! item's path unique. The artifact ([`SemanticIds`]) maps items <-> code paths and
//! holds the prefix trie constrained decoding walks.

pub mod artifact;
pub mod trie;

pub use artifact::SemanticIds;
pub use trie::PrefixTrie;
