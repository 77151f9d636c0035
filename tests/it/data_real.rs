//! Real datasets (skipped with a printed reason when the shared data is absent):
//! Amazon Beauty counts and popularity baseline, MovieLens from ratings.csv via column
//! flags, both against the numbers in the data READMEs.

use onerec::data::prepare::{prepare_interactions, prepare_sequences, write_dataset, PrepareOptions};
use onerec::data::stats::{popularity_baseline, stats};
use onerec::data::Dataset;
use std::path::PathBuf;

fn shared(rel: &str) -> Option<PathBuf> {
    crate::common::shared_data(rel, "data_real")
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

#[test]
fn amazon_beauty_counts_and_popularity() {
    let Some(path) = shared("amazon-beauty/sequences.txt.gz") else { return };
    let ds = prepare_sequences(&path, &PrepareOptions::default()).unwrap();
    assert_eq!((ds.n_users(), ds.n_items(), ds.items.len()), (22_363, 12_101, 198_502));
    // Items 1..12101 sort numerically, so dense id = original id - 1.
    assert!(ds.item_ids.iter().enumerate().all(|(i, s)| s == &(i + 1).to_string()));
    let s = stats(&ds);
    assert_eq!(s.train_interactions, 153_776);
    assert_eq!((s.history_length.min, s.history_length.median, s.history_length.max), (5, 6.0, 204));
    assert_eq!((s.history_length.mean * 100.0).round(), 888.0);
    let p = popularity_baseline(&ds);
    assert_eq!((p.test.n, p.validation.n), (22_363, 22_363));
    assert_eq!((round4(p.test.recall_at_10), round4(p.test.ndcg_at_10)), (0.0114, 0.0053));
    assert_eq!((round4(p.validation.recall_at_10), round4(p.validation.ndcg_at_10)), (0.0163, 0.0078));
    // The written directory loads back to the same baseline.
    let d = tempfile::tempdir().unwrap();
    write_dataset(&ds, &d.path().join("beauty")).unwrap();
    let back = Dataset::load(&d.path().join("beauty")).unwrap();
    assert_eq!(popularity_baseline(&back), p);
}

#[test]
fn movielens_ratings_csv_matches_sequences_and_readme() {
    let (Some(ratings), Some(seqs)) =
        (shared("movielens-latest-small/ratings.csv.gz"), shared("movielens-latest-small/sequences.txt.gz"))
    else {
        return;
    };
    let mut o = PrepareOptions::default();
    o.table.user_col = "userId".into();
    o.table.item_col = "movieId".into();
    o.table.time_col = "timestamp".into();
    let ds = prepare_interactions(&ratings, &o).unwrap();
    assert_eq!((ds.n_users(), ds.n_items(), ds.items.len()), (610, 9_724, 100_836));
    assert_eq!(ds.manifest.features, ["rating"]);
    // ratings.csv is ordered by (userId, movieId): a stable sort by timestamp gives the
    // README's (timestamp, movieId) order, i.e. exactly sequences.txt.gz.
    let seq = prepare_sequences(&seqs, &PrepareOptions::default()).unwrap();
    assert_eq!(seq.user_ids, ds.user_ids);
    assert_eq!(seq.item_ids, ds.item_ids);
    assert_eq!((&seq.offsets, &seq.items), (&ds.offsets, &ds.items));
    let s = stats(&ds);
    assert_eq!(s.train_interactions, 99_616);
    assert_eq!((s.history_length.min, s.history_length.median, s.history_length.max), (20, 70.5, 2_698));
    let p = s.popularity;
    assert_eq!((round4(p.validation.recall_at_10), round4(p.validation.ndcg_at_10)), (0.0197, 0.0113));
    assert_eq!((round4(p.test.recall_at_10), round4(p.test.ndcg_at_10)), (0.0197, 0.0092));
}

#[test]
fn amazon_sports_and_toys_popularity() {
    // (dir, users, items, interactions, valid R@10, valid N@10, test R@10, test N@10) from the READMEs.
    for (dir, u, i, n, vr, vn, tr, tn) in [
        ("amazon-sports", 35_598, 18_357, 296_337, 0.0124, 0.0067, 0.0090, 0.0051),
        ("amazon-toys", 19_412, 11_924, 167_597, 0.0123, 0.0064, 0.0089, 0.0049),
    ] {
        let Some(path) = shared(&format!("{dir}/sequences.txt.gz")) else { continue };
        let ds = prepare_sequences(&path, &PrepareOptions::default()).unwrap();
        assert_eq!((ds.n_users(), ds.n_items(), ds.items.len()), (u, i, n), "{dir}");
        let p = popularity_baseline(&ds);
        assert_eq!((round4(p.validation.recall_at_10), round4(p.validation.ndcg_at_10)), (vr, vn), "{dir}");
        assert_eq!((round4(p.test.recall_at_10), round4(p.test.ndcg_at_10)), (tr, tn), "{dir}");
    }
}

#[test]
fn real_item_tables() {
    use onerec::data::items::read_items;
    if let Some(p) = shared("amazon-beauty/items.tsv.gz") {
        let t = read_items(&p, "item_id").unwrap();
        assert_eq!(t.ids.len(), 12_101);
        assert_eq!(t.get("1", "asin"), Some("B004756YJA"));
        assert_eq!(t.get("10205", "generated_phrase"), Some(""));
    }
    if let Some(p) = shared("movielens-latest-small/movies.csv.gz") {
        let t = read_items(&p, "movieId").unwrap();
        assert_eq!(t.ids.len(), 9_742);
        assert_eq!(t.get("1", "title"), Some("Toy Story (1995)"));
        // Quoted titles with commas stay one field.
        assert!(t.rows.values().any(|r| r["title"].contains(", ")));
    }
}
