//! The decoder vocabulary: PAD, BOS, end-of-session, then one id range per
//! semantic-ID level (level-specific ranges, so code 5 of level 0 and code 5 of
//! level 1 are different tokens).

use std::ops::Range;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vocab {
    /// Codebook size per level, from the tokenizer artifact.
    pub codebook_sizes: Vec<usize>,
}

impl Vocab {
    pub const PAD: u32 = 0;
    pub const BOS: u32 = 1;
    /// End of session.
    pub const EOS: u32 = 2;
    pub const N_SPECIAL: u32 = 3;

    pub fn new(codebook_sizes: Vec<usize>) -> Vocab {
        Vocab { codebook_sizes }
    }
    pub fn levels(&self) -> usize {
        self.codebook_sizes.len()
    }
    /// Total number of tokens.
    pub fn size(&self) -> usize {
        Self::N_SPECIAL as usize + self.codebook_sizes.iter().sum::<usize>()
    }
    fn offset(&self, level: usize) -> u32 {
        Self::N_SPECIAL + self.codebook_sizes[..level].iter().sum::<usize>() as u32
    }
    /// Token id of `code` at `level`.
    pub fn token(&self, level: usize, code: u32) -> u32 {
        self.offset(level) + code
    }
    /// Token ids of level `level`.
    pub fn level_range(&self, level: usize) -> Range<u32> {
        let o = self.offset(level);
        o..o + self.codebook_sizes[level] as u32
    }
    /// (level, code) of a code token; None for special tokens or out of range.
    pub fn decode(&self, token: u32) -> Option<(usize, u32)> {
        (0..self.levels()).find_map(|l| {
            let r = self.level_range(l);
            r.contains(&token).then(|| (l, token - r.start))
        })
    }
    /// Tokens of a whole item path.
    pub fn item_tokens(&self, codes: &[u32]) -> Vec<u32> {
        codes.iter().enumerate().map(|(l, &c)| self.token(l, c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn token_roundtrip() {
        let v = Vocab::new(vec![4, 3, 2]);
        assert_eq!(v.size(), 3 + 9);
        for l in 0..3 {
            for c in 0..v.codebook_sizes[l] as u32 {
                assert_eq!(v.decode(v.token(l, c)), Some((l, c)));
            }
        }
        assert_eq!(v.decode(Vocab::BOS), None);
        assert_eq!(v.decode(12), None);
    }
}
