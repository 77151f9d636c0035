//! The whole second stage on a toy world: train the reward model on logged engagement,
//! then align a bigram policy against it; the TRUE reward (topic match) must rise.

use onerec::align::iterate::{align, train_histories};
use onerec::align::onerec::{align_dataset, eval_users, truth_hook};
use onerec::align::reward::{train_reward_model, RewardModel};
use onerec::align::toy::{BigramPolicy, ToyWorld};
use onerec::align::AlignConfig;
use onerec::config::Config;
use std::collections::BTreeMap;

const WORLD: ToyWorld = ToyWorld { users: 120, items: 24, topics: 4 };

#[test]
fn reward_model_guided_alignment_raises_true_reward() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = WORLD.dataset(26, 6, true, 8);
    let tok = tmp.path().join("tok");
    std::fs::create_dir_all(&tok).unwrap();
    WORLD.semantic_ids().unwrap().save_codes(&tok).unwrap();
    let cfg = Config::from_toml("seed = 4\n[reward]\ndim = 16\nepochs = 6\nbatch_size = 64\n", &[]).unwrap();
    train_reward_model(&cfg.reward_spec().unwrap(), &ds, &tok, &tmp.path().join("rm")).unwrap();
    let rm = RewardModel::load(&tmp.path().join("rm")).unwrap();

    let (_, hs) = train_histories(&ds);
    // True reward: mean over users of the topic-match fraction of 200 sampled sessions.
    let truth = |p: &BigramPolicy| -> anyhow::Result<BTreeMap<String, f64>> {
        let refs: Vec<&[u32]> = hs.iter().map(|h| h.as_slice()).collect();
        let mut rng = onerec::util::rng::stream(0, "eval");
        let s = p.sample(&refs, 50, 4, &mut rng)?;
        let mut tot = 0.0;
        for (h, ss) in refs.iter().zip(&s) {
            tot += ss.iter().map(|x| WORLD.reward(h, x) as f64).sum::<f64>() / ss.len() as f64;
        }
        Ok(BTreeMap::from([("true_reward".into(), tot / refs.len() as f64)]))
    };
    let mut truth = truth;
    let acfg = AlignConfig {
        iterations: 4,
        user_fraction: 0.5,
        candidates: 8,
        session_len: 4,
        beta: 1.0,
        steps: 30,
        batch_size: 16,
        lr: 0.1,
        ..Default::default()
    };
    let mut pol = BigramPolicy::new(WORLD.items, 2).unwrap();
    let mut gen = |p: &BigramPolicy, h: &[&[u32]], n: usize, len: usize, rng: &mut onerec::util::rng::Rng| {
        p.sample(h, n, len, rng)
    };
    let out = align(&mut pol, &mut gen, &rm, &hs, &acfg, 9, Some(&tmp.path().join("align")), Some(&mut truth)).unwrap();
    let st = out.state;
    let r0 = st.initial_eval["true_reward"];
    let rs: Vec<f64> = st.iterations.iter().map(|l| l.eval["true_reward"]).collect();
    let rm_means: Vec<f64> = st.iterations.iter().map(|l| l.mean_reward).collect();
    eprintln!("true reward {r0:.3} -> {rs:?}; reward-model mean of generated {rm_means:?}");
    assert!(*rs.last().unwrap() > r0 + 0.15, "{r0} -> {rs:?}");
    assert!(rm_means.last() > rm_means.first(), "{rm_means:?}");
    assert!(tmp.path().join("align/state.json").exists());

    // The dataset-level entry point with the ground-truth hook (as `onerec align` uses it).
    let mut cfg2 = cfg.clone();
    cfg2.align = AlignConfig { iterations: 3, ..acfg };
    let users = eval_users(&ds, 500, 1);
    assert_eq!(users.len(), WORLD.users);
    let truth_fn = |u: usize, s: &[u32]| -> anyhow::Result<f64> { Ok(WORLD.reward(ds.history(u), s) as f64) };
    let g2 = |p: &BigramPolicy, h: &[&[u32]], n: usize, len: usize, rng: &mut onerec::util::rng::Rng| {
        p.sample(h, n, len, rng)
    };
    let mut hook = truth_hook(&ds, users, g2, 4, 3, truth_fn, Some(&rm));
    let mut pol = BigramPolicy::new(WORLD.items, 2).unwrap();
    let out_dir = tmp.path().join("align2");
    let out =
        align_dataset(&cfg2.align_spec().unwrap(), &ds, &mut pol, &mut gen, &rm, &out_dir, Some(&mut hook)).unwrap();
    assert!(out_dir.join("config.toml").exists() && out_dir.join("iter-003").exists());
    eprintln!(
        "hook: {:?} -> {:?}",
        out.state.initial_eval,
        out.state.iterations.iter().map(|l| &l.eval).collect::<Vec<_>>()
    );
    let last = &out.state.iterations[2].eval;
    assert!(last.contains_key("true_reward") && last.contains_key("model_reward"), "{last:?}");
    assert!(
        last["true_reward"] > out.state.initial_eval["true_reward"] + 0.05,
        "{:?} vs {last:?}",
        out.state.initial_eval
    );
}
