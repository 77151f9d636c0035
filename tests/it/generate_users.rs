//! User selection: dataset splits, histories files, dataset/checkpoint id alignment.

use crate::common::*;

use onerec::data::Dataset;
use onerec::generate::users::{align_dataset, users_from_histories_file, users_from_split, SplitSel};

#[test]
fn splits_histories_files_and_alignment() {
    let ids = random_ids(&[4, 4], 6, 3);
    let ds = Dataset::from_histories(&[vec![0, 1, 2, 3], vec![5, 4], vec![2, 2, 1]], 6);
    let t = users_from_split(&ds, SplitSel::Test);
    assert_eq!(t.len(), 2); // user 1 is too short for a target
    assert_eq!((t[0].history.clone(), t[0].target), (vec![0, 1, 2], Some(3)));
    let v = users_from_split(&ds, SplitSel::Valid);
    assert_eq!((v[1].history.clone(), v[1].target), (vec![2], Some(2)));
    let a = users_from_split(&ds, SplitSel::All);
    assert_eq!(a.len(), 3);
    assert_eq!(a[1].history, vec![5, 4]);

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("h.txt");
    std::fs::write(&f, "alice 3 1 5\n\n# c\nbob 2\n").unwrap();
    let (u, skipped) = users_from_histories_file(&f, &ids, false).unwrap();
    assert_eq!((u.len(), skipped), (2, 0));
    assert_eq!((u[0].user_id.as_str(), u[0].history.clone()), ("alice", vec![3, 1, 5]));
    // Unknown items and empty histories: named by file:line, or skipped and counted.
    std::fs::write(&f, "alice 3\nbob 1 zz\ncarol\ndave 4 0\n").unwrap();
    let err = format!("{:#}", users_from_histories_file(&f, &ids, false).unwrap_err());
    assert!(err.contains("h.txt:2") && err.contains("`zz`"), "{err}");
    std::fs::write(&f, "alice 3\ncarol\n").unwrap();
    let err = format!("{:#}", users_from_histories_file(&f, &ids, false).unwrap_err());
    assert!(err.contains("h.txt:2") && err.contains("empty history"), "{err}");
    std::fs::write(&f, "alice 3\nbob 1 zz\ncarol\ndave 4 0\n").unwrap();
    let (u, skipped) = users_from_histories_file(&f, &ids, true).unwrap();
    assert_eq!(skipped, 2);
    assert_eq!(u.iter().map(|q| q.user_id.as_str()).collect::<Vec<_>>(), vec!["alice", "dave"]);
    assert_eq!(u[1].history, vec![4, 0]);

    // A dataset whose dense ids differ from the checkpoint's rows is renumbered by id.
    let mut other = ds.clone();
    other.item_ids = vec!["5", "4", "3", "2", "1", "0"].into_iter().map(String::from).collect();
    let al = align_dataset(&other, &ids).unwrap();
    assert_eq!(al.history(0), &[5, 4, 3, 2]);
    assert_eq!(al.item_ids, ids.item_ids);
    other.item_ids[0] = "nope".into();
    assert!(format!("{:#}", align_dataset(&other, &ids).unwrap_err()).contains("nope"));
}
