//! Batch scoring of (user, item) pairs: parsing errors name the line, skipping counts.

use crate::common::*;

use onerec::data::Dataset;
use onerec::generate::score::{read_pairs, score_pairs, shard_pairs, write_scores};
use onerec::generate::teacher_forced_logprob;
use onerec::generate::users::{Shard, SplitSel};

#[test]
fn bad_lines_are_named_or_skipped_and_scores_match_teacher_forcing() {
    let (ids, vocab, model) = setup(&[4, 4], 12, 41);
    let mut hist = random_histories(5, 12, 7, 42);
    hist.push(vec![1, 2]); // user 5: too short for a test target
    let ds = Dataset::from_histories(&hist, 12);
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.tsv");
    std::fs::write(&good, "0\t3\n# comment\n1\t0\n4\t11\n2\t5\n").unwrap();
    let bad = dir.path().join("bad.tsv");
    std::fs::write(&bad, "0\t3\n1\t0\t7\n9\t1\n2\t99\n3\t4\n").unwrap();
    let err = format!("{:#}", read_pairs(&bad, &ds, &ids, SplitSel::Test, false).unwrap_err());
    assert!(err.contains("bad.tsv:2") && err.contains("columns"), "{err}");
    let p = read_pairs(&bad, &ds, &ids, SplitSel::Test, true).unwrap();
    assert_eq!(p.skipped, 3);
    assert_eq!(p.pairs.iter().map(|x| x.line).collect::<Vec<_>>(), vec![1, 5]);
    std::fs::write(&bad, "0\t3\n9\t1\n").unwrap();
    let err = format!("{:#}", read_pairs(&bad, &ds, &ids, SplitSel::Test, false).unwrap_err());
    assert!(err.contains("bad.tsv:2") && err.contains("unknown user id `9`"), "{err}");

    // A user with nothing before the split's target: named, or skipped and counted;
    // with split `all` the same line is fine.
    std::fs::write(&bad, "0\t3\n5\t1\n2\t5\n").unwrap();
    let err = format!("{:#}", read_pairs(&bad, &ds, &ids, SplitSel::Test, false).unwrap_err());
    assert!(err.contains("bad.tsv:2") && err.contains("user `5` has no history before the test target"), "{err}");
    let p = read_pairs(&bad, &ds, &ids, SplitSel::Test, true).unwrap();
    assert_eq!((p.skipped, p.pairs.iter().map(|x| x.line).collect::<Vec<_>>()), (1, vec![1, 3]));
    assert_eq!(read_pairs(&bad, &ds, &ids, SplitSel::All, false).unwrap().pairs.len(), 3);

    // A first line of non-ids is a header, not a bad line; later such lines are bad.
    std::fs::write(&bad, "user_id\titem_id\n0\t3\nuser_id\titem_id\n").unwrap();
    let p = read_pairs(&bad, &ds, &ids, SplitSel::Test, true).unwrap();
    assert!(p.header);
    assert_eq!((p.skipped, p.pairs.len()), (1, 1));
    let p = read_pairs(&good, &ds, &ids, SplitSel::Test, false).unwrap();
    assert!(!p.header);

    let pairs = read_pairs(&good, &ds, &ids, SplitSel::Test, false).unwrap().pairs;
    assert_eq!(pairs.len(), 4);
    let scores = score_pairs(&model, &vocab, &ids, &ds, SplitSel::Test, &pairs, 3).unwrap();
    for (p, s) in pairs.iter().zip(&scores) {
        let h = &hist[p.user][..hist[p.user].len() - 1];
        let tf = teacher_forced_logprob(&model, &vocab, &ids, &[h], &[&[p.item][..]]).unwrap();
        assert_eq!(tf[0], *s);
        assert!(*s < 0.0);
    }
    // Scores depend on the split (the history differs).
    let all = score_pairs(&model, &vocab, &ids, &ds, SplitSel::All, &pairs, 3).unwrap();
    assert_ne!(all, scores);
    // Shards concatenate to the whole; TSV and JSONL by extension.
    let out = dir.path().join("s.tsv");
    write_scores(&out, &pairs, &scores).unwrap();
    let full = std::fs::read_to_string(&out).unwrap();
    let mut cat = String::new();
    for i in 0..3 {
        let sh = shard_pairs(&pairs, Shard { index: i, count: 3 }, 2);
        let sc = score_pairs(&model, &vocab, &ids, &ds, SplitSel::Test, sh, 1).unwrap();
        write_scores(&out, sh, &sc).unwrap();
        cat.push_str(&std::fs::read_to_string(&out).unwrap());
    }
    assert_eq!(full, cat);
    assert!(full.starts_with("0\t3\t-"));
    let js = dir.path().join("s.jsonl");
    write_scores(&js, &pairs, &scores).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&js).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(v["user"], "0");
    assert_eq!(v["item"], "3");
}

/// [`HashLm`] that counts the histories it encodes.
struct CountingEncodes(onerec::generate::mock::HashLm, std::sync::atomic::AtomicUsize);

impl onerec::generate::StepModel for CountingEncodes {
    type State = onerec::generate::mock::HashLmState;
    fn encode(&self, h: &[&[u32]]) -> anyhow::Result<Self::State> {
        self.1.fetch_add(h.len(), std::sync::atomic::Ordering::Relaxed);
        self.0.encode(h)
    }
    fn step(&self, s: &mut Self::State, t: &[u32]) -> anyhow::Result<Vec<f32>> {
        self.0.step(s, t)
    }
    fn reorder(&self, s: &mut Self::State, r: &[u32]) -> anyhow::Result<()> {
        self.0.reorder(s, r)
    }
    fn vocab_size(&self) -> usize {
        self.0.vocab_size
    }
}

#[test]
fn many_candidates_per_user_are_scored_with_one_encoding_per_user_and_batch() {
    let (ids, vocab, model) = setup(&[3, 4], 12, 43);
    let model = CountingEncodes(model, Default::default());
    let hist = random_histories(3, 12, 7, 44);
    let ds = Dataset::from_histories(&hist, 12);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pairs.tsv");
    // Every item for every user, users interleaved line by line.
    let lines: String = (0..12).flat_map(|i| (0..3).map(move |u| format!("{u}\t{i}\n"))).collect();
    std::fs::write(&file, lines).unwrap();
    let pairs = read_pairs(&file, &ds, &ids, SplitSel::Test, false).unwrap().pairs;
    assert_eq!(pairs.len(), 36);
    let mut by_batch = Vec::new();
    for (batch, encodes) in [(100, 3), (12, 3), (5, 10)] {
        model.1.store(0, std::sync::atomic::Ordering::Relaxed);
        by_batch.push(score_pairs(&model, &vocab, &ids, &ds, SplitSel::Test, &pairs, batch).unwrap());
        // Pairs are grouped by user before batching: 8 batches of 5, two of them
        // spanning two users.
        let n = model.1.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(n, encodes, "batch {batch}: histories encoded for 3 users");
    }
    assert_eq!(by_batch[0], by_batch[1]);
    assert_eq!(by_batch[0], by_batch[2]);
    for (p, s) in pairs.iter().zip(&by_batch[0]) {
        let h = &hist[p.user][..hist[p.user].len() - 1];
        let tf = teacher_forced_logprob(&model.0, &vocab, &ids, &[h], &[&[p.item][..]]).unwrap();
        assert_eq!(tf[0], *s, "line {}", p.line);
    }
}
