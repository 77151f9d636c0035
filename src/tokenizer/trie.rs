//! Prefix trie over valid semantic-ID paths: constrained decoding asks, for the
//! node reached by the codes generated so far, which next codes are allowed.

/// A trie whose nodes are numbered; node 0 is the root (empty prefix).
#[derive(Clone, Debug, Default)]
pub struct PrefixTrie {
    /// Per node: (code, child node) sorted by code.
    children: Vec<Vec<(u32, u32)>>,
    /// Per node: the item whose full path ends here (leaves only).
    items: Vec<Option<u32>>,
    /// Per node: depth (number of codes in the prefix).
    depth: Vec<u8>,
}

impl PrefixTrie {
    pub const ROOT: u32 = 0;

    /// Builds the trie from `paths[i]` = codes of item `i`. Paths must be unique
    /// (the caller guarantees it); a duplicate keeps the first item.
    pub fn build<'a, I: IntoIterator<Item = &'a [u32]>>(paths: I) -> PrefixTrie {
        let mut t = PrefixTrie { children: vec![vec![]], items: vec![None], depth: vec![0] };
        for (item, path) in paths.into_iter().enumerate() {
            let mut node = 0usize;
            for &code in path {
                node = match t.children[node].binary_search_by_key(&code, |c| c.0) {
                    Ok(k) => t.children[node][k].1 as usize,
                    Err(k) => {
                        let child = t.children.len();
                        let d = t.depth[node] + 1;
                        t.children.push(vec![]);
                        t.items.push(None);
                        t.depth.push(d);
                        t.children[node].insert(k, (code, child as u32));
                        child
                    }
                };
            }
            if t.items[node].is_none() {
                t.items[node] = Some(item as u32);
            }
        }
        t
    }

    /// Allowed (code, child) pairs after the prefix ending at `node`.
    pub fn children(&self, node: u32) -> &[(u32, u32)] {
        &self.children[node as usize]
    }

    /// The child reached by `code` from `node`, if that extension is valid.
    pub fn step(&self, node: u32, code: u32) -> Option<u32> {
        let c = &self.children[node as usize];
        c.binary_search_by_key(&code, |x| x.0).ok().map(|k| c[k].1)
    }

    /// The item whose full path ends at `node`, if any.
    pub fn item(&self, node: u32) -> Option<u32> {
        self.items[node as usize]
    }

    pub fn depth(&self, node: u32) -> usize {
        self.depth[node as usize] as usize
    }

    pub fn n_nodes(&self) -> usize {
        self.children.len()
    }

    /// Walks a whole path from the root.
    pub fn lookup(&self, path: &[u32]) -> Option<u32> {
        let mut node = Self::ROOT;
        for &c in path {
            node = self.step(node, c)?;
        }
        self.item(node)
    }
}
