//! Precomputed trie facts for exclusion masking: the trie node of every item at every
//! depth and the number of items under every node. With them, "can this prefix still
//! lead to an item that is not excluded?" is a count comparison, so beams never
//! survive on prefixes whose whole subtree is excluded.

use crate::tokenizer::{PrefixTrie, SemanticIds};
use anyhow::{Context, Result};
use std::collections::{HashMap, HashSet};

/// Built once per semantic-id artifact (O(items x levels)), shared by all batches.
#[derive(Clone, Debug)]
pub struct DecodeIndex {
    levels: usize,
    /// Node of item `i` at depth `d + 1`: `item_nodes[i * levels + d]`.
    item_nodes: Vec<u32>,
    /// Items under each node.
    subtree: Vec<u32>,
}

impl DecodeIndex {
    pub fn new(ids: &SemanticIds) -> Result<DecodeIndex> {
        let trie = ids.trie();
        let levels = ids.levels();
        let mut item_nodes = Vec::with_capacity(ids.n_items() * levels);
        let mut subtree = vec![0u32; trie.n_nodes()];
        subtree[PrefixTrie::ROOT as usize] = ids.n_items() as u32;
        for i in 0..ids.n_items() as u32 {
            let mut node = PrefixTrie::ROOT;
            for &c in ids.codes(i) {
                node = trie.step(node, c).with_context(|| format!("item {i}: path not in its own trie"))?;
                item_nodes.push(node);
                subtree[node as usize] += 1;
            }
        }
        Ok(DecodeIndex { levels, item_nodes, subtree })
    }
    /// Node of `item` at `depth` (1..=levels).
    fn node_at(&self, item: u32, depth: usize) -> u32 {
        self.item_nodes[item as usize * self.levels + depth - 1]
    }
}

/// One user's excluded history items, with per-node counts of them.
#[derive(Clone, Debug, Default)]
pub struct Exclusion {
    items: HashSet<u32>,
    per_node: HashMap<u32, u32>,
}

impl Exclusion {
    /// Exclusions for a history (empty slice = nothing excluded but the session).
    pub fn new(index: &DecodeIndex, history: &[u32]) -> Exclusion {
        let items: HashSet<u32> = history.iter().copied().collect();
        let mut per_node = HashMap::new();
        for &i in &items {
            for d in 1..=index.levels {
                *per_node.entry(index.node_at(i, d)).or_insert(0) += 1;
            }
        }
        Exclusion { items, per_node }
    }

    /// Whether extending to `node` is pointless: every item under it is either
    /// excluded by history or already in `session`.
    pub fn excluded(&self, index: &DecodeIndex, trie: &PrefixTrie, node: u32, session: &[u32]) -> bool {
        let depth = trie.depth(node);
        if depth == index.levels {
            return trie.item(node).is_some_and(|i| self.items.contains(&i) || session.contains(&i));
        }
        let mut n = self.per_node.get(&node).copied().unwrap_or(0);
        for &s in session {
            if !self.items.contains(&s) && index.node_at(s, depth) == node {
                n += 1;
            }
        }
        n >= index.subtree[node as usize]
    }
}
