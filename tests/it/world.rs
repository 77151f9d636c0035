//! The synthetic world: determinism, file contract, ground-truth reward, and the
//! imitation-vs-reward gap that alignment has to close.

use onerec::data::embeddings::Embeddings;
use onerec::world::{synth, SynthOptions, World, SESSION_GAP_S};
use rand::seq::SliceRandom;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Row {
    user: String,
    item: String,
    ts: i64,
    watch: f64,
    duration: f64,
    like: u8,
}

fn read_csv(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("user_id,item_id,timestamp,watch_time,duration,like"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 6, "bad row {l}");
            Row {
                user: f[0].to_string(),
                item: f[1].to_string(),
                ts: f[2].parse().unwrap(),
                watch: f[3].parse().unwrap(),
                duration: f[4].parse().unwrap(),
                like: f[5].parse().unwrap(),
            }
        })
        .collect()
}

/// One default-sized (but fewer users) world shared by the tests that only read it.
fn shared() -> &'static (PathBuf, World, Vec<Row>) {
    static W: OnceLock<(PathBuf, World, Vec<Row>)> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let opts = SynthOptions { users: 600, seed: 11, ..SynthOptions::default() };
        let out = synth(&opts, &dir).unwrap();
        let rows = read_csv(&dir.join("interactions.csv"));
        assert_eq!(rows.len(), out.interactions);
        (dir, out.world, rows)
    })
}

/// Rows grouped per user (in file order) and split into sessions by the time gap.
fn sessions(rows: &[Row]) -> Vec<(String, Vec<Vec<&Row>>)> {
    let mut out: Vec<(String, Vec<Vec<&Row>>)> = Vec::new();
    for r in rows {
        let new_user = out.last().is_none_or(|(u, _)| *u != r.user);
        if new_user {
            out.push((r.user.clone(), vec![vec![r]]));
            continue;
        }
        let (_, ss) = out.last_mut().unwrap();
        let prev = ss.last().unwrap().last().unwrap().ts;
        if r.ts - prev > SESSION_GAP_S {
            ss.push(vec![r]);
        } else {
            ss.last_mut().unwrap().push(r);
        }
    }
    out
}

fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn world_same_seed_same_bytes_any_threads_and_different_seed_differs() {
    let opts = SynthOptions { users: 150, items: 200, topics: 8, seed: 5, ..SynthOptions::default() };
    let run = |threads: usize, opts: &SynthOptions| {
        let dir = tempfile::tempdir().unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| synth(opts, dir.path())).unwrap();
        all_bytes(dir.path())
    };
    let a = run(1, &opts);
    let b = run(3, &opts);
    let names: Vec<&str> = a.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["image.safetensors", "interactions.csv", "text.safetensors", "world.json", "world.safetensors"]);
    assert!(a == b, "same seed must give byte-identical files regardless of threads");
    let c = run(2, &SynthOptions { seed: 6, ..opts.clone() });
    for ((name, x), (_, y)) in a.iter().zip(&c) {
        assert_ne!(x, y, "{name} did not change with the seed");
    }
}

#[test]
fn world_csv_contract_order_sessions_and_engagement() {
    let (_, world, rows) = shared();
    let ids: HashSet<String> = (1..=world.item_count()).map(|i| i.to_string()).collect();
    let mut users_seen = Vec::new();
    for (user, ss) in sessions(rows) {
        users_seen.push(user.clone());
        let flat: Vec<&Row> = ss.iter().flatten().copied().collect();
        assert!(flat.len() >= 5, "user {user} has {} interactions < min_history", flat.len());
        assert!(flat.windows(2).all(|w| w[1].ts > w[0].ts), "timestamps must increase for user {user}");
        let distinct: HashSet<&str> = flat.iter().map(|r| r.item.as_str()).collect();
        assert_eq!(distinct.len(), flat.len(), "user {user} repeats an item");
        // Separable: gaps are either intra-session (< 30 min) or >= 2 h, nothing between.
        for w in flat.windows(2) {
            let gap = w[1].ts - w[0].ts;
            assert!(gap <= SESSION_GAP_S || gap >= 7200, "ambiguous gap {gap}s for user {user}");
        }
        for s in &ss {
            assert!(s.len() <= 7, "session of {} items > session_max", s.len());
        }
        for r in &flat {
            assert!(ids.contains(&r.item), "unknown item {}", r.item);
            assert!(r.watch >= 0.0 && r.watch <= r.duration && r.duration >= 5.0);
            assert!(r.like <= 1);
            assert_eq!(world.item_duration[world.item_index(&r.item).unwrap()], r.duration);
        }
    }
    let expected: Vec<String> = (1..=world.user_count()).map(|u| u.to_string()).collect();
    assert_eq!(users_seen, expected, "rows must be ordered by user, one block per user");
    let mean = rows.len() as f64 / world.user_count() as f64;
    assert!((17.0..23.0).contains(&mean), "mean history {mean} not ~20");
    let n_sessions: usize = sessions(rows).iter().map(|(_, s)| s.len()).sum();
    assert!(n_sessions as f64 > 3.0 * world.user_count() as f64, "too few sessions: {n_sessions}");
}

#[test]
fn world_engagement_follows_affinity() {
    let (_, world, rows) = shared();
    // Likes and watch fraction rise with the (final-state) affinity of the logged item.
    let mut pairs: Vec<(f64, &Row)> = rows
        .iter()
        .map(|r| (world.affinity_idx(world.user_index(&r.user).unwrap(), world.item_index(&r.item).unwrap()), r))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let q = pairs.len() / 4;
    let stats = |s: &[(f64, &Row)]| {
        let like = s.iter().map(|(_, r)| r.like as f64).sum::<f64>() / s.len() as f64;
        let frac = s.iter().map(|(_, r)| r.watch / r.duration).sum::<f64>() / s.len() as f64;
        (like, frac)
    };
    let (lo_like, lo_frac) = stats(&pairs[..q]);
    let (hi_like, hi_frac) = stats(&pairs[pairs.len() - q..]);
    println!("like {lo_like:.3} -> {hi_like:.3}, watch fraction {lo_frac:.3} -> {hi_frac:.3}");
    assert!(hi_like > lo_like + 0.1, "like rate {lo_like} -> {hi_like}");
    assert!(hi_frac > lo_frac + 0.15, "watch fraction {lo_frac} -> {hi_frac}");
}

#[test]
fn world_reward_prefers_liked_items_and_has_imitation_gap() {
    let (_, world, rows) = shared();
    let mut rng = onerec::util::rng::stream(3, "test");
    let all: Vec<String> = world.item_ids.clone();
    let (mut wins, mut users) = (0, 0);
    let (mut logged_sum, mut best_sum, mut random_sum, mut clicked_sum) = (0.0, 0.0, 0.0, 0.0);
    let (mut logged_attract, mut logged_n) = (0.0, 0);
    let (mut best_attract, mut best_n) = (0.0, 0);
    for (user, ss) in sessions(rows) {
        let last: Vec<&str> = ss.last().unwrap().iter().map(|r| r.item.as_str()).collect();
        let k = last.len();
        let best = world.best_items(&user, k).unwrap();
        let best_refs: Vec<&str> = best.iter().map(String::as_str).collect();
        let random: Vec<&str> = all.choose_multiple(&mut rng, k).map(String::as_str).collect();
        let r_best = world.expected_session_reward(&user, &best_refs).unwrap();
        let r_rand = world.expected_session_reward(&user, &random).unwrap();
        let greedy = world.best_session(&user, k).unwrap();
        let greedy: Vec<&str> = greedy.iter().map(String::as_str).collect();
        let r_greedy = world.expected_session_reward(&user, &greedy).unwrap();
        assert!(r_greedy >= r_best - 1e-9, "greedy session {r_greedy} < top-k session {r_best}");
        wins += (r_best > r_rand) as usize;
        users += 1;
        logged_sum += world.expected_session_reward(&user, &last).unwrap();
        best_sum += r_greedy;
        random_sum += r_rand;
        let clicked = world.most_clicked_items(&user, k).unwrap();
        let clicked: Vec<&str> = clicked.iter().map(String::as_str).collect();
        clicked_sum += world.expected_session_reward(&user, &clicked).unwrap();
        for r in ss.iter().flatten() {
            logged_attract += world.item_attractiveness(&r.item).unwrap();
            logged_n += 1;
        }
        for i in &greedy {
            best_attract += world.item_attractiveness(i).unwrap();
            best_n += 1;
        }
    }
    let n = users as f64;
    let (logged, best, random, clicked) = (logged_sum / n, best_sum / n, random_sum / n, clicked_sum / n);
    let (la, ba) = (logged_attract / logged_n as f64, best_attract / best_n as f64);
    println!(
        "mean session reward: random {random:.3}, logged last {logged:.3}, most clicked {clicked:.3}, best {best:.3}; \
         attractiveness logged {la:.3} best {ba:.3}; top-k beats random for {wins}/{users}"
    );
    assert!(wins as f64 >= 0.98 * n, "best items beat random only for {wins}/{users} users");
    // Logged behaviour carries signal (beats random) but is far from reward-optimal.
    assert!(logged > random * 1.3, "logged {logged} vs random {random}");
    assert!(logged < 0.7 * best, "logged {logged} vs best {best}: no imitation gap");
    // Even the mode of the logging policy (a perfect imitator's beam search) leaves room.
    assert!(clicked < 0.8 * best, "most clicked {clicked} vs best {best}: no imitation gap");
    // Clickbait is chosen more than its reward warrants.
    assert!(la > 0.5, "logged items' mean attractiveness {la} (items' mean is ~0)");
    assert!(ba < la - 0.5, "reward-optimal items' attractiveness {ba} vs logged {la}");
}

#[test]
fn world_reward_formula_redundancy_and_errors() {
    let (_, world, _) = shared();
    let u = "1";
    let best = world.best_items(u, 1).unwrap();
    let i = best[0].as_str();
    let r = world.expected_item_reward(u, i).unwrap();
    assert!(r > 0.0 && r.is_finite());
    assert!((world.expected_session_reward(u, &[i]).unwrap() - r).abs() < 1e-12);
    // A repeated item is worth less the second time: 1 + 1/(1+redundancy).
    let twice = world.expected_session_reward(u, &[i, i]).unwrap();
    let red = world.params().redundancy;
    assert!((twice - r * (1.0 + 1.0 / (1.0 + red))).abs() < 1e-9, "{twice} vs {r}");
    assert_eq!(world.expected_session_reward(u, &[]).unwrap(), 0.0);
    let e = world.expected_session_reward("999999", &[i]).unwrap_err();
    assert!(format!("{e:#}").contains("unknown user id \"999999\""), "{e:#}");
    let e = world.expected_session_reward(u, &[i, "0"]).unwrap_err();
    assert!(format!("{e:#}").contains("unknown item id \"0\""), "{e:#}");
    assert!(world.expected_item_reward(u, "x").is_err());
    assert!(world.best_items("nobody", 3).is_err());
}

#[test]
fn world_load_round_trips_and_rejects_bad_paths() {
    let (dir, world, _) = shared();
    for path in [dir.clone(), dir.join("world.json"), dir.join("world.safetensors")] {
        let loaded = World::load(&path).unwrap();
        assert_eq!(loaded.user_count(), world.user_count());
        assert_eq!(loaded.item_count(), world.item_count());
        for u in ["1", "17", "600"] {
            let s: Vec<&str> = vec!["3", "99", "1000", "250"];
            assert_eq!(
                loaded.expected_session_reward(u, &s).unwrap().to_bits(),
                world.expected_session_reward(u, &s).unwrap().to_bits()
            );
            assert_eq!(loaded.best_session(u, 4).unwrap(), world.best_session(u, 4).unwrap());
        }
    }
    let e = World::load(Path::new("/nonexistent/world")).unwrap_err();
    assert!(format!("{e:#}").contains("does not exist"), "{e:#}");
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("world.json"), "{not json").unwrap();
    let e = World::load(bad.path()).unwrap_err();
    assert!(format!("{e:#}").contains("invalid JSON"), "{e:#}");
    // Truncated tensors file: clear error, no panic.
    std::fs::copy(dir.join("world.json"), bad.path().join("world.json")).unwrap();
    let t = std::fs::read(dir.join("world.safetensors")).unwrap();
    std::fs::write(bad.path().join("world.safetensors"), &t[..t.len() / 2]).unwrap();
    assert!(World::load(bad.path()).is_err());
}

/// Fraction of items whose nearest neighbour (cosine) shares their topic.
fn nn_topic_agreement(emb: &Embeddings, world: &World) -> f64 {
    let norm: Vec<Vec<f32>> = (0..emb.n)
        .map(|i| {
            let r = emb.row(i);
            let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            r.iter().map(|x| x / n).collect()
        })
        .collect();
    let mut agree = 0;
    for i in 0..emb.n {
        let mut best = (f32::MIN, 0);
        for j in 0..emb.n {
            if j != i {
                let s: f32 = norm[i].iter().zip(&norm[j]).map(|(a, b)| a * b).sum();
                if s > best.0 {
                    best = (s, j);
                }
            }
        }
        let ti = world.item_topic(&emb.item_ids[i]).unwrap();
        agree += (ti == world.item_topic(&emb.item_ids[best.1]).unwrap()) as usize;
    }
    agree as f64 / emb.n as f64
}

#[test]
fn world_modalities_carry_topics_with_matching_ids() {
    let (dir, world, _) = shared();
    let text = Embeddings::load(&dir.join("text.safetensors")).unwrap();
    let image = Embeddings::load(&dir.join("image.safetensors")).unwrap();
    assert_eq!((text.n, text.d), (1000, 64));
    assert_eq!((image.n, image.d), (1000, 48));
    assert_eq!(text.item_ids, world.item_ids);
    assert_eq!(image.item_ids, world.item_ids);
    let mut sizes: HashMap<usize, usize> = HashMap::new();
    for t in &world.item_topic {
        *sizes.entry(*t).or_default() += 1;
    }
    let chance: f64 = sizes.values().map(|&s| (s as f64 / 1000.0).powi(2)).sum();
    let (ta, ia) = (nn_topic_agreement(&text, world), nn_topic_agreement(&image, world));
    println!("nearest-neighbour topic agreement: text {ta:.3}, image {ia:.3}, chance {chance:.3}");
    assert!(ta > 5.0 * chance && ia > 5.0 * chance, "text {ta}, image {ia}, chance {chance}");
    // Noisy views: not perfect, and not the same projection.
    assert!(ta < 0.99 && ia < 0.99);
}

#[test]
fn world_cli_writes_the_contract_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_onerec"))
        .args(["-q", "data", "synth", "--out"])
        .arg(&out)
        .args(["--seed", "3", "--users", "40", "--items", "100", "--topics", "5"])
        .status()
        .unwrap();
    assert!(status.success());
    let world = World::load(&out).unwrap();
    assert_eq!((world.user_count(), world.item_count()), (40, 100));
    assert_eq!(world.meta.options.seed, 3);
    // Bad options: a clear error, non-zero exit, nothing written.
    let bad = dir.path().join("bad");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_onerec"))
        .args(["-q", "data", "synth", "--out"])
        .arg(&bad)
        .args(["--items", "6", "--topics", "2"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--items >="), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!bad.exists());
}

#[test]
fn world_clickbait_knob_controls_the_gap() {
    // Without clickbait in the choice model, logged items are not biased towards it.
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SynthOptions { users: 300, items: 400, topics: 10, seed: 21, ..SynthOptions::default() };
    opts.params.choice_attract = 0.0;
    let out = synth(&opts, dir.path()).unwrap();
    let rows = read_csv(&dir.path().join("interactions.csv"));
    let mean = |rows: &[Row], w: &World| {
        rows.iter().map(|r| w.item_attractiveness(&r.item).unwrap()).sum::<f64>() / rows.len() as f64
    };
    let off = mean(&rows, &out.world);
    opts.params.choice_attract = 1.2;
    let dir2 = tempfile::tempdir().unwrap();
    let out2 = synth(&opts, dir2.path()).unwrap();
    let on = mean(&read_csv(&dir2.path().join("interactions.csv")), &out2.world);
    println!("logged attractiveness: clickbait off {off:.3}, on {on:.3}");
    assert!(off.abs() < 0.25 && on > off + 0.6, "off {off}, on {on}");
}
