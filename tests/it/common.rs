//! Shared fixtures: the location of the real datasets, random catalogues, histories and
//! a hash language model for the generate/eval tests.
#![allow(dead_code)]

use onerec::generate::mock::HashLm;
use onerec::tokenizer::SemanticIds;
use onerec::tokenizer::Vocab;
use rand::Rng;
use std::path::{Path, PathBuf};

/// The shared directory: `$ONEREC_SHARED`, else `../shared` beside the checkout.
pub fn shared_root() -> PathBuf {
    std::env::var_os("ONEREC_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

/// `<shared>/data/<rel>` if it exists; otherwise prints why `test` skips and returns None.
pub fn shared_data(rel: &str, test: &str) -> Option<PathBuf> {
    let p = shared_root().join("data").join(rel);
    if p.exists() {
        Some(p)
    } else {
        println!("SKIP {test}: {} not found (set ONEREC_SHARED to the shared directory)", p.display());
        None
    }
}

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

/// The pretraining stage's part of a run config (and the whole, to record).
pub fn pretrain_spec(cfg: &onerec::config::Config) -> onerec::train::PretrainSpec<'_> {
    onerec::train::PretrainSpec {
        model: &cfg.model,
        train: &cfg.train,
        seed: cfg.seed,
        config_toml: cfg.to_toml().unwrap(),
    }
}

/// The reward stage's part of a run config (and the whole, to record).
pub fn reward_spec(cfg: &onerec::config::Config) -> onerec::align::RewardSpec<'_> {
    onerec::align::RewardSpec { reward: &cfg.reward, seed: cfg.seed, config_toml: cfg.to_toml().unwrap() }
}

/// The alignment stage's part of a run config (and the whole, to record).
pub fn align_spec(cfg: &onerec::config::Config) -> onerec::align::onerec::AlignSpec<'_> {
    onerec::align::onerec::AlignSpec { align: &cfg.align, seed: cfg.seed, config_toml: cfg.to_toml().unwrap() }
}
