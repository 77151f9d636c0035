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

/// A tiny trained checkpoint (4 steps) on a small synthetic world made with `seed`:
/// (tempdir, checkpoint dir, dataset dir). The dataset is loaded from disk first, so the
/// checkpoint records where it is.
pub fn tiny_checkpoint(seed: u64) -> (tempfile::TempDir, String, String) {
    tiny_checkpoint_with(seed, &[])
}

/// [`tiny_checkpoint`] with extra config overrides (`key=value`, as `--set`).
pub fn tiny_checkpoint_with(seed: u64, extra: &[&str]) -> (tempfile::TempDir, String, String) {
    use onerec::data::prepare::{prepare_interactions, write_dataset, PrepareOptions};
    use onerec::tokenizer::{tokenize_files, Collisions, TokenizeOptions};
    use onerec::world::{synth, SynthOptions};
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let (world, data, tok, pre) = (root.join("world"), root.join("data"), root.join("tok"), root.join("pre"));
    synth(&SynthOptions { users: 60, items: 80, topics: 4, seed, ..SynthOptions::default() }, &world).unwrap();
    let ds = prepare_interactions(&world.join("interactions.csv"), &PrepareOptions::default()).unwrap();
    write_dataset(&ds, &data).unwrap();
    let ds = onerec::data::Dataset::load(&data).unwrap();
    let topts = TokenizeOptions {
        codebook_sizes: vec![4, 4, 8],
        collisions: Collisions::Reassign,
        seed,
        ..TokenizeOptions::default()
    };
    tokenize_files(&topts, &[("text".to_string(), world.join("text.safetensors"))], None, &tok).unwrap();
    let sids = onerec::tokenizer::SemanticIds::load(&tok).unwrap();
    let ov: Vec<String> =
        ["train.max_steps=4", "train.eval_every=4", "train.rank_users=0", "train.select_metric=\"valid_loss\""]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
    let cfg = onerec::config::Config::load("tiny", &ov).unwrap();
    onerec::train::pretrain(&cfg.pretrain_spec().unwrap(), &ds, &sids, &pre, false).unwrap();
    (t, pre.to_str().unwrap().to_string(), data.to_str().unwrap().to_string())
}

/// Writes a SASRec checkpoint of `varmap` (built for `ds`'s catalogue with `model`) into
/// `dir`, as `onerec baseline sasrec` would after one epoch.
pub fn write_sasrec_checkpoint(
    dir: &Path,
    ds: &onerec::data::Dataset,
    model: &onerec::baseline::sasrec::config::SasrecModelConfig,
    varmap: &candle_nn::VarMap,
) {
    use onerec::baseline::sasrec::checkpoint as ck;
    let meta = ck::SasrecMeta {
        format: ck::FORMAT,
        kind: "sasrec".into(),
        model: model.clone(),
        n_items: ds.n_items(),
        items_sha256: ck::items_sha256(ds),
        epoch: 1,
        seed: 0,
        data_dir: None,
        extra: serde_json::Value::Null,
    };
    std::fs::create_dir_all(dir).unwrap();
    ck::write_model(dir, varmap, &meta).unwrap();
}
