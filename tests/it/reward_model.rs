//! The reward model on a toy world (users with topic preferences, engagement high on the
//! preferred topic): beats random by a margin, ranks better sessions higher, saves and
//! loads to the same scores with the same bytes per seed, and rejects bad input clearly.

use onerec::align::reward::{train_reward_model, RewardModel};
use onerec::align::toy::ToyWorld;
use onerec::config::Config;
use onerec::data::Dataset;
use std::path::Path;

const WORLD: ToyWorld = ToyWorld { users: 160, items: 48, topics: 4 };

fn setup(dir: &Path, engagement: bool) -> (Config, Dataset, std::path::PathBuf) {
    let ds = WORLD.dataset(26, 6, engagement, 5);
    let tok = dir.join("tok");
    std::fs::create_dir_all(&tok).unwrap();
    WORLD.semantic_ids().unwrap().save_codes(&tok).unwrap();
    let cfg = Config::from_toml(
        "seed = 3\n[reward]\ndim = 16\nepochs = 6\nbatch_size = 64\nhistory_len = 20\nholdout_users = 0.2\n",
        &[],
    )
    .unwrap();
    (cfg, ds, tok)
}

/// Sessions of 4 items all on topic `t` (varied by `k`).
fn on_topic(t: usize, k: usize) -> Vec<u32> {
    (0..4).map(|j| ((k + j * 5) % (WORLD.items / WORLD.topics) * WORLD.topics + t) as u32).collect()
}

#[test]
fn reward_model_learns_toy_preferences() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, ds, tok) = setup(tmp.path(), true);
    let out = tmp.path().join("rm");
    let report = train_reward_model(&cfg.reward_spec().unwrap(), &ds, &tok, &out).unwrap();
    eprintln!("{}", serde_json::to_string(&report).unwrap());
    let names: Vec<&str> = report.towers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["watch", "like"]);
    assert!(report.reward_auc.unwrap() > 0.8, "real vs random sessions: {:?}", report.reward_auc);
    for t in &report.towers {
        assert!(t.auc.unwrap() > 0.65, "tower {} AUC {:?}", t.name, t.auc);
    }
    assert!(report.epoch_losses.last() < report.epoch_losses.first(), "{:?}", report.epoch_losses);
    assert!(report.heldout_users >= 30 && report.heldout_examples > 0);

    // A session on the user's topic beats one off it, for most users.
    let rm = RewardModel::load(&out).unwrap();
    let (mut hs, mut good, mut bad) = (vec![], vec![], vec![]);
    for u in 0..ds.n_users() {
        let t = u % WORLD.topics;
        hs.push(ds.history(u));
        good.push(on_topic(t, u));
        bad.push(on_topic((t + 1 + u % 3) % WORLD.topics, u));
    }
    let g: Vec<&[u32]> = good.iter().map(|s| s.as_slice()).collect();
    let b: Vec<&[u32]> = bad.iter().map(|s| s.as_slice()).collect();
    let (sg, sb) = (rm.score(&hs, &g).unwrap(), rm.score(&hs, &b).unwrap());
    let wins = sg.iter().zip(&sb).filter(|(a, b)| a > b).count();
    eprintln!("better session ranked higher for {wins}/{} users", hs.len());
    assert!(wins as f64 > 0.8 * hs.len() as f64, "{wins}/{}", hs.len());
    // Scores are weighted tower sums in [0, sum of weights].
    assert!(sg.iter().all(|&s| (0.0..=2.0).contains(&s)));

    // Same seed, same bytes; the loaded model scores like the trained one (batch-size independent).
    let out2 = tmp.path().join("rm2");
    train_reward_model(&cfg.reward_spec().unwrap(), &ds, &tok, &out2).unwrap();
    let bytes = |d: &Path| std::fs::read(d.join("reward.safetensors")).unwrap();
    assert_eq!(bytes(&out), bytes(&out2), "same seed must give the same weights");
    let one = rm.score(&hs[..1], &g[..1]).unwrap();
    assert!((one[0] - sg[0]).abs() < 1e-5);

    // Compatibility checks name what differs.
    let sha = onerec::tokenizer::SemanticIds::fingerprint(&tok).unwrap();
    rm.check_compatible(&sha, &ds.manifest.features, ds.n_items()).unwrap();
    let e = rm.check_compatible("0000", &ds.manifest.features, ds.n_items()).unwrap_err();
    assert!(e.to_string().contains("tokenizer"), "{e}");
    let e = rm.check_compatible(&sha, &[], ds.n_items()).unwrap_err();
    assert!(e.to_string().contains("features"), "{e}");
    let e = rm.check_compatible(&sha, &ds.manifest.features, 7).unwrap_err();
    assert!(e.to_string().contains("items"), "{e}");
    let e = rm.score(&[&[1, 2]], &[&[999]]).unwrap_err();
    assert!(e.to_string().contains("999"), "{e}");
    assert!(rm.score(&[&[1, 2]], &[&[]]).is_err());
}

#[test]
fn no_engagement_features_uses_interaction_tower() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut cfg, ds, tok) = setup(tmp.path(), false);
    cfg.reward.epochs = 3;
    cfg.reward.semantic_codes = false;
    let report = train_reward_model(&cfg.reward_spec().unwrap(), &ds, &tok, &tmp.path().join("rm")).unwrap();
    assert_eq!(report.towers.len(), 1);
    assert_eq!(report.towers[0].name, "interact");
    assert!(report.reward_auc.unwrap() > 0.7, "{:?}", report.reward_auc);
    let rm = RewardModel::load(&tmp.path().join("rm")).unwrap();
    assert!(rm.meta.codebook_sizes.is_empty());
}

#[test]
fn bad_reward_inputs_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, ds, tok) = setup(tmp.path(), true);
    let out = tmp.path().join("rm");
    // Missing tokenizer.
    let e = train_reward_model(&cfg.reward_spec().unwrap(), &ds, &tmp.path().join("nope"), &out).unwrap_err();
    assert!(format!("{e:#}").contains("codes.tsv"), "{e:#}");
    // A tokenizer that does not cover the dataset's items.
    let small = tmp.path().join("small_tok");
    std::fs::create_dir_all(&small).unwrap();
    ToyWorld { users: 1, items: 8, topics: 4 }.semantic_ids().unwrap().save_codes(&small).unwrap();
    let e = train_reward_model(&cfg.reward_spec().unwrap(), &ds, &small, &out).unwrap_err();
    assert!(format!("{e:#}").contains("semantic id"), "{e:#}");
    // A weight for a tower the data cannot support.
    let mut c2 = cfg.clone();
    c2.reward.tower_weights.insert("interact".into(), 2.0);
    let e = train_reward_model(&c2.reward_spec().unwrap(), &ds, &tok, &out).unwrap_err();
    assert!(format!("{e:#}").contains("tower_weights.interact"), "{e:#}");
    // Sessions too short for the configured minimum.
    let mut c3 = cfg.clone();
    c3.reward.session_len = 8;
    c3.reward.min_session_len = 8;
    let e = train_reward_model(&c3.reward_spec().unwrap(), &ds, &tok, &out).unwrap_err();
    assert!(format!("{e:#}").contains("min_session_len"), "{e:#}");
    assert!(!out.exists(), "a failed run must not leave an output dir");
    // Not a reward model directory.
    let e = RewardModel::load(tmp.path()).err().unwrap();
    assert!(format!("{e:#}").contains("not a reward model directory"), "{e:#}");
}
