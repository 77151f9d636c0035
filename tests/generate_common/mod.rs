// Shared fixtures for the generate/eval tests (included with `mod`).
#![allow(dead_code)]

use onerec::generate::mock::HashLm;
use onerec::model::Vocab;
use onerec::tokenizer::SemanticIds;
use rand::Rng;

/// `n` items with distinct random paths over `sizes` (seeded), item ids "0".."n-1".
pub fn random_ids(sizes: &[usize], n: usize, seed: u64) -> SemanticIds {
    onerec::generate::mock::random_catalogue(sizes, n, seed).unwrap()
}

pub fn setup(sizes: &[usize], n: usize, seed: u64) -> (SemanticIds, Vocab, HashLm) {
    let ids = random_ids(sizes, n, seed);
    let vocab = Vocab::new(sizes.to_vec());
    let model = HashLm::new(vocab.size(), seed);
    (ids, vocab, model)
}

pub fn random_histories(n_users: usize, n_items: usize, max_len: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = onerec::util::rng::stream(seed, "test-hist");
    (0..n_users)
        .map(|_| {
            let len = rng.gen_range(3..=max_len);
            (0..len).map(|_| rng.gen_range(0..n_items as u32)).collect()
        })
        .collect()
}
