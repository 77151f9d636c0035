//! Constrained beam search over the semantic-ID trie with a KV cache; batch scoring.
