//! The synthetic world: determinism, a reward that follows the latent truth, and the
//! built-in gap between logged (clicked) behaviour and true enjoyment.

use onerec::data::Embeddings;
use onerec::world::{synth, SynthOptions, World};
use rand::{Rng, SeedableRng};
use std::path::Path;

fn small(seed: u64) -> SynthOptions {
    SynthOptions { users: 300, items: 300, topics: 10, seed, ..SynthOptions::default() }
}

fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.into_iter().map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())).collect()
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    synth(&small(5), &a).unwrap();
    synth(&small(5), &b).unwrap();
    synth(&small(6), &c).unwrap();
    let (fa, fb, fc) = (read_all(&a), read_all(&b), read_all(&c));
    assert_eq!(fa.len(), 5, "{:?}", fa.iter().map(|f| &f.0).collect::<Vec<_>>());
    assert_eq!(fa, fb);
    assert_ne!(fa[1].1, fc[1].1, "interactions.csv should differ across seeds");
}

struct Log {
    rows: Vec<(usize, usize, i64, f64, f64, u8)>,
}

fn read_log(dir: &Path) -> Log {
    let text = std::fs::read_to_string(dir.join("interactions.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "user_id,item_id,timestamp,watch_time,duration,like");
    let rows = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse::<usize>().unwrap() - 1, f[1].parse::<usize>().unwrap() - 1, f[2].parse().unwrap(), f[3].parse().unwrap(), f[4].parse().unwrap(), f[5].parse().unwrap())
        })
        .collect();
    Log { rows }
}

#[test]
fn truth_prefers_liked_items_and_logs_leave_room_to_improve() {
    let t = tempfile::tempdir().unwrap();
    let world = synth(&small(7), t.path()).unwrap();
    let loaded = World::load(t.path()).unwrap();
    assert_eq!(loaded.item_latent, world.item_latent);
    let log = read_log(t.path());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (mut best_wins, mut best_sum, mut rand_sum, mut logged_sum) = (0, 0.0, 0.0, 0.0);
    let users = world.user_count();
    for u in 0..users {
        let best = world.best_items(u, 5);
        let random: Vec<usize> = (0..5).map(|_| rng.gen_range(0..world.item_count())).collect();
        let logged: Vec<usize> = log.rows.iter().filter(|r| r.0 == u).map(|r| r.1).collect();
        let last5 = &logged[logged.len() - 5..];
        let (b, r, l) = (world.session_reward_idx(u, &best), world.session_reward_idx(u, &random), world.session_reward_idx(u, last5));
        best_wins += (b > r) as usize;
        best_sum += b;
        rand_sum += r;
        logged_sum += l;
    }
    assert!(best_wins as f64 > 0.95 * users as f64, "best beat random for only {best_wins}/{users}");
    let (b, r, l) = (best_sum / users as f64, rand_sum / users as f64, logged_sum / users as f64);
    eprintln!("mean true session reward: best {b:.3}, logged {l:.3}, random {r:.3}");
    assert!(l > r * 1.1, "logs should beat random: {l} vs {r}");
    assert!(b > l * 1.2, "logs must leave clear room above imitation: best {b} vs logged {l}");
    // String API agrees with the index API.
    let ids: Vec<String> = world.best_items(0, 3).iter().map(|&i| World::item_id(i)).collect();
    let refs: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
    let v = world.expected_session_reward("1", &refs).unwrap();
    assert!((v - world.session_reward_idx(0, &world.best_items(0, 3))).abs() < 1e-12);
    assert!(world.expected_session_reward("999999", &refs).is_err());
    // Clickbait is clicked more than its share: logged items' attractiveness is above the catalogue's.
    let mean_attract_logged = log.rows.iter().map(|r| world.item_attract[r.1]).sum::<f64>() / log.rows.len() as f64;
    let mean_attract = world.item_attract.iter().sum::<f64>() / world.item_count() as f64;
    assert!(mean_attract_logged > mean_attract + 0.3, "{mean_attract_logged} vs {mean_attract}");
}

#[test]
fn timestamps_increase_and_sessions_separate_by_gap() {
    let t = tempfile::tempdir().unwrap();
    synth(&small(8), t.path()).unwrap();
    let log = read_log(t.path());
    let (mut within, mut between) = (0, 0);
    for w in log.rows.windows(2) {
        if w[0].0 == w[1].0 {
            let gap = w[1].2 - w[0].2;
            assert!(gap > 0);
            assert!(gap < 100 || gap >= 7200, "ambiguous gap {gap}");
            if gap < 100 { within += 1 } else { between += 1 }
        }
    }
    assert!(within > 2 * between && between > 0);
    for r in &log.rows {
        assert!(r.3 >= 0.0 && r.3 <= r.4 && r.5 <= 1);
    }
}

#[test]
fn modalities_carry_the_topic() {
    let t = tempfile::tempdir().unwrap();
    let world = synth(&small(9), t.path()).unwrap();
    for m in ["text", "image"] {
        let e = Embeddings::load(&t.path().join(format!("{m}.safetensors"))).unwrap();
        assert_eq!(e.n, world.item_count());
        let norm = |i: usize| e.row(i).iter().map(|x| x * x).sum::<f32>().sqrt();
        let mut same = 0;
        for i in 0..e.n {
            let best = (0..e.n)
                .filter(|&j| j != i)
                .max_by(|&a, &b| {
                    let ca = e.row(i).iter().zip(e.row(a)).map(|(x, y)| x * y).sum::<f32>() / norm(a);
                    let cb = e.row(i).iter().zip(e.row(b)).map(|(x, y)| x * y).sum::<f32>() / norm(b);
                    ca.total_cmp(&cb)
                })
                .unwrap();
            same += (world.item_topic[best] == world.item_topic[i]) as usize;
        }
        let frac = same as f64 / e.n as f64;
        assert!(frac > 0.5, "{m}: nearest neighbour shares the topic for only {frac:.2} (chance 0.1)");
    }
}

#[test]
fn bad_options_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let err = synth(&SynthOptions { min_history: 2, ..small(1) }, &t.path().join("x")).unwrap_err();
    assert!(format!("{err:#}").contains("min-history"));
    assert!(!t.path().join("x").exists());
}
