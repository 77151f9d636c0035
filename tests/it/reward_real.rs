//! The reward model on real data without engagement features (Amazon Beauty): the
//! `interact` tower must tell held-out users' real sessions from random ones.
//! Skips (with a reason) when the shared data is absent.

use onerec::align::reward::train_reward_model;
use onerec::config::Config;
use onerec::data::Dataset;
use std::io::BufRead;

#[test]
fn beauty_interaction_tower_beats_random() {
    let Some(path) = crate::common::shared_data("amazon-beauty/sequences.txt.gz", "reward_real") else { return };
    // First 4000 users; items re-indexed densely in order of appearance.
    let mut ids = std::collections::HashMap::new();
    let mut hs = Vec::new();
    for line in onerec::util::io::open_text(&path).unwrap().lines().take(4000) {
        let line = line.unwrap();
        let h: Vec<u32> = line
            .split_whitespace()
            .skip(1)
            .map(|t| {
                let n = ids.len() as u32;
                *ids.entry(t.to_string()).or_insert(n)
            })
            .collect();
        hs.push(h);
    }
    let ds = Dataset::from_histories(&hs, ids.len());
    let tmp = tempfile::tempdir().unwrap();
    let tok = tmp.path().join("tok");
    std::fs::create_dir_all(&tok).unwrap();
    let n = ds.n_items();
    onerec::tokenizer::SemanticIds::new(ds.item_ids.clone(), vec![n], (0..n as u32).collect())
        .unwrap()
        .save_codes(&tok)
        .unwrap();
    let cfg = Config::from_toml("[reward]\nsemantic_codes = false\nepochs = 3\n", &[]).unwrap();
    let t0 = std::time::Instant::now();
    let rep = train_reward_model(&cfg.reward_spec().unwrap(), &ds, &tok, &tmp.path().join("rm")).unwrap();
    eprintln!(
        "beauty (4000 users, {n} items): interact AUC {:?}, {} train / {} held-out examples, {:.1}s",
        rep.reward_auc,
        rep.train_examples,
        rep.heldout_examples,
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(rep.towers[0].name, "interact");
    assert!(rep.reward_auc.unwrap() > 0.6, "{:?}", rep.reward_auc);
}
