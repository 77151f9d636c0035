//! The alignment loop end to end on a toy world with a bigram policy: it raises the true
//! reward, writes per-iteration checkpoints with reference identities, resumes to the
//! same bytes, and rejects bad settings with errors naming the key.

use onerec::align::iterate::{align, iter_dir, AlignState};
use onerec::align::toy::{BigramPolicy, ToyWorld};
use onerec::align::{AlignConfig, Objective};
use onerec::util::rng::Rng;
use std::collections::BTreeMap;

const WORLD: ToyWorld = ToyWorld { users: 24, items: 16, topics: 4 };

fn histories() -> Vec<Vec<u32>> {
    let ds = WORLD.dataset(8, 4, false, 11);
    (0..ds.n_users()).map(|u| ds.history(u).to_vec()).collect()
}

/// Exact expected true reward of sessions of `len` items sampled from the policy,
/// averaged over users (Markov chain over the bigram table).
fn expected_reward(p: &BigramPolicy, hs: &[Vec<u32>], len: usize) -> f64 {
    let probs = p.next_probs().unwrap();
    let n = p.n_items;
    let mut total = 0.0;
    for h in hs {
        let t = WORLD.history_topic(h);
        let mut dist = probs[*h.last().unwrap() as usize].clone();
        let mut on = 0.0;
        for step in 0..len {
            on += (0..n).filter(|&i| WORLD.topic(i as u32) == t).map(|i| dist[i] as f64).sum::<f64>();
            if step + 1 < len {
                let mut next = vec![0f32; n];
                for (i, &pi) in dist.iter().enumerate() {
                    for (j, q) in probs[i].iter().enumerate() {
                        next[j] += pi * q;
                    }
                }
                dist = next;
            }
        }
        total += on / len as f64;
    }
    total / hs.len() as f64
}

fn gen(p: &BigramPolicy, h: &[&[u32]], n: usize, len: usize, rng: &mut Rng) -> anyhow::Result<Vec<Vec<Vec<u32>>>> {
    p.sample(h, n, len, rng)
}

fn scorer(h: &[&[u32]], s: &[&[u32]]) -> anyhow::Result<Vec<f32>> {
    Ok(h.iter().zip(s).map(|(h, s)| WORLD.reward(h, s)).collect())
}

fn cfg() -> AlignConfig {
    AlignConfig {
        iterations: 3,
        user_fraction: 1.0,
        candidates: 8,
        session_len: 3,
        beta: 1.0,
        steps: 30,
        batch_size: 8,
        lr: 0.1,
        ..Default::default()
    }
}

fn run(cfg: &AlignConfig, out: Option<&std::path::Path>) -> (BigramPolicy, AlignState) {
    let hs = histories();
    let mut pol = BigramPolicy::new(WORLD.items, 1).unwrap();
    let mut hook = |p: &BigramPolicy| -> anyhow::Result<BTreeMap<String, f64>> {
        Ok(BTreeMap::from([("true_reward".to_string(), expected_reward(p, &hs, cfg.session_len))]))
    };
    let outcome = align(&mut pol, &mut gen, &scorer, &hs, cfg, 42, out, Some(&mut hook)).unwrap();
    (pol, outcome.state)
}

#[test]
fn alignment_raises_true_reward() {
    let (_, st) = run(&cfg(), None);
    let r0 = st.initial_eval["true_reward"];
    let rs: Vec<f64> = st.iterations.iter().map(|l| l.eval["true_reward"]).collect();
    eprintln!(
        "true reward {r0:.3} -> {rs:?}; logs {:?}",
        st.iterations
            .iter()
            .map(|l| (l.pairs, l.mean_reward, l.train.pref_loss, l.train.accuracy, l.train.margin))
            .collect::<Vec<_>>()
    );
    assert!((r0 - 0.25).abs() < 0.1, "a near-uniform start is ~1/topics: {r0}");
    assert!(*rs.last().unwrap() > r0 + 0.15, "alignment did not raise the true reward: {r0} -> {rs:?}");
    assert!(rs.windows(2).all(|w| w[1] > w[0] - 0.02), "reward fell: {rs:?}");
    // Generated sessions' reward (logged before each iteration's training) rises too.
    assert!(st.iterations[2].mean_reward > st.iterations[0].mean_reward);
    assert!(st.iterations.iter().all(|l| l.pairs > 0 && l.train.accuracy > 0.0 && l.train.pref_loss.is_finite()));
}

#[test]
fn grpo_objective_raises_true_reward() {
    let c = AlignConfig { objective: Objective::Grpo, iterations: 2, ..cfg() };
    let (_, st) = run(&c, None);
    let r0 = st.initial_eval["true_reward"];
    let r = st.iterations.last().unwrap().eval["true_reward"];
    assert!(r > r0 + 0.1, "GRPO did not raise the true reward: {r0} -> {r}");
}

#[test]
fn checkpoints_record_reference_and_resume_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let c = AlignConfig { iterations: 2, steps: 5, ..cfg() };
    let (pa, sa) = run(&c, Some(&a_dir));
    for it in 0..=2 {
        assert!(iter_dir(&a_dir, it).join("weights.safetensors").exists(), "iter {it} checkpoint missing");
    }
    assert_eq!(sa.iterations[0].reference_sha256, sa.initial_sha256);
    assert_eq!(sa.iterations[1].reference_sha256, sa.iterations[0].policy_sha256);
    assert_ne!(sa.iterations[1].policy_sha256, sa.iterations[0].policy_sha256);
    let sha = onerec::util::io::sha256_file(&iter_dir(&a_dir, 2).join("weights.safetensors")).unwrap();
    assert_eq!(Some(sha), sa.iterations[1].policy_sha256);

    // Interrupted after one iteration, then resumed: same weights, same logs.
    run(&AlignConfig { iterations: 1, ..c.clone() }, Some(&b_dir));
    let hs = histories();
    let mut pb = BigramPolicy::new(WORLD.items, 999).unwrap(); // different init: resume must load weights
    let out = align(&mut pb, &mut gen, &scorer, &hs, &c, 42, Some(&b_dir), None).unwrap();
    assert_eq!(out.resumed_after, 1);
    assert_eq!(pa.next_probs().unwrap(), pb.next_probs().unwrap());
    let strip = |s: &AlignState| {
        s.iterations
            .iter()
            .map(|l| (l.pairs, l.mean_reward, l.train.pref_loss, l.policy_sha256.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&sa), strip(&out.state));

    // Resuming with another config is refused, naming the fix.
    let other = AlignConfig { beta: 0.9, ..c.clone() };
    let err = align(&mut pb, &mut gen, &scorer, &hs, &other, 42, Some(&b_dir), None).unwrap_err();
    assert!(format!("{err:#}").contains("fresh --out"), "{err:#}");
}

#[test]
fn bad_settings_are_named() {
    for (toml, key) in [
        ("[align]\nuser_fraction = 0.0\n", "user_fraction"),
        ("[align]\nuser_fraction = 1.5\n", "user_fraction"),
        ("[align]\ncandidates = 1\n", "candidates"),
        ("[align]\nbeta = -1.0\n", "beta"),
        ("[align]\nobjective = \"ppo\"\n", "ppo"),
        ("[align]\nbogus = 1\n", "bogus"),
        ("[reward]\ntower_weights = { dwell = 1.0 }\n", "dwell"),
        ("[reward]\nholdout_users = 1.0\n", "holdout_users"),
    ] {
        let err = onerec::config::Config::from_toml(toml, &[]).unwrap_err();
        assert!(format!("{err:#}").contains(key), "{toml}: {err:#}");
    }
    onerec::config::Config::from_toml("[align]\nuser_fraction = 1.0\ncandidates = 2\n", &[]).unwrap();
    // The loop validates too (callers building configs in code).
    let hs = histories();
    let mut pol = BigramPolicy::new(WORLD.items, 1).unwrap();
    let c = AlignConfig { candidates: 1, ..cfg() };
    assert!(align(&mut pol, &mut gen, &scorer, &hs, &c, 1, None, None).is_err());
    // A scorer returning the wrong count is an error, not a panic.
    let short = |_: &[&[u32]], _: &[&[u32]]| -> anyhow::Result<Vec<f32>> { Ok(vec![1.0]) };
    let err = align(&mut pol, &mut gen, &short, &hs, &cfg(), 1, None, None).unwrap_err();
    assert!(format!("{err:#}").contains("scores"), "{err:#}");
}
