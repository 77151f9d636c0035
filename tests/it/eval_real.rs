//! Evaluation at real catalogue scale: Amazon Beauty sequences (12k items, 22k users)
//! with random distinct semantic ids and the hash mock model. Checks that constrained
//! decoding stays valid and fast on real histories; skips when the data is absent.

use crate::common::*;

use onerec::data::Dataset;
use onerec::eval::{evaluate, EvalOptions};
use onerec::generate::mock::HashLm;
use onerec::generate::users::SplitSel;
use onerec::tokenizer::Vocab;
use std::collections::HashMap;
use std::io::BufRead;

#[test]
fn eval_on_amazon_beauty_scale_with_mock_model() {
    let Some(path) = crate::common::shared_data("amazon-beauty/sequences.txt.gz", "eval_real") else { return };
    // Minimal reader (the dataset stage owns the real one): dense ids in first-seen order.
    let mut dense: HashMap<String, u32> = HashMap::new();
    let mut hist = Vec::new();
    for line in onerec::util::io::open_text(&path).unwrap().lines() {
        let line = line.unwrap();
        let mut f = line.split_whitespace().skip(1);
        let h: Vec<u32> = f
            .by_ref()
            .map(|it| {
                let n = dense.len() as u32;
                *dense.entry(it.to_string()).or_insert(n)
            })
            .collect();
        hist.push(h);
    }
    let n_items = dense.len();
    assert!(n_items > 10_000 && hist.len() > 20_000);
    let ds = Dataset::from_histories(&hist, n_items);
    let sizes = [64usize, 64, 16];
    let ids = random_ids(&sizes, n_items, 77);
    let vocab = Vocab::new(sizes.to_vec());
    let model = HashLm::new(vocab.size(), 5);
    let t0 = std::time::Instant::now();
    let opts = EvalOptions { max_users: Some(300), exclude_history: true, ..Default::default() };
    let rep = evaluate(&model, &ids, &vocab, &ds, SplitSel::Test, &opts).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!("amazon-beauty mock eval: {} users in {secs:.2}s: {}", rep.users, serde_json::to_string(&rep).unwrap());
    assert_eq!(rep.users, 300);
    assert_eq!(rep.invalid_paths, 0);
    assert!(rep.invalid_paths_before_masking > 0.0);
    // A random model over 12k items: recall@20 is near 20/12101, far below 0.2.
    assert!(rep.metrics["recall@20"] < 0.2);
    assert!(rep.coverage > 0.0);
}
