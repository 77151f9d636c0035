//! Timing check of the built-in `tiny` config on a ~2000-user x ~20-item synthetic
//! world (ignored by default: run with `cargo test --test pretrain_tiny_world -- --ignored --nocapture`).

use onerec::config::Config;
use onerec::data::Dataset;
use onerec::tokenizer::SemanticIds;
use rand::Rng;

#[test]
#[ignore]
fn tiny_config_on_synthetic_world() {
    let items = 500u32;
    let mut rng = onerec::util::rng::stream(1, "world");
    let hs: Vec<Vec<u32>> = (0..2000)
        .map(|_| {
            let mut h = vec![rng.gen_range(0..items)];
            for _ in 0..19 {
                let last = *h.last().unwrap();
                h.push(if rng.gen_bool(0.6) { (last * 13 + 7) % items } else { rng.gen_range(0..items) });
            }
            h
        })
        .collect();
    let ds = Dataset::from_histories(&hs, items as usize);
    let ids = (0..items).map(|i| i.to_string()).collect();
    let codes = (0..items).flat_map(|i| [i % 8, (i / 8) % 8, i / 64]).collect();
    let sids = SemanticIds::new(ids, vec![8, 8, 8], codes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    onerec::util::logging::init(0, false);
    // Extra overrides, e.g. ONEREC_TINY_SET="train.max_steps=50,train.log_every=10".
    let ov: Vec<String> =
        std::env::var("ONEREC_TINY_SET").map(|s| s.split(',').map(String::from).collect()).unwrap_or_default();
    let cfg = Config::load("tiny", &ov).unwrap();
    let t = std::time::Instant::now();
    let s = onerec::train::pretrain(&cfg.pretrain_spec().unwrap(), &ds, &sids, dir.path(), false).unwrap();
    println!("{s:?}\nwall {:.1}s", t.elapsed().as_secs_f64());
    println!("{}", std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap());
}
