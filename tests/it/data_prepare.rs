//! Prepared datasets: id order, time ordering, splits, sessions and the quality filter,
//! save/load round trip and byte-identical output for the same input.

use onerec::data::prepare::{prepare_interactions, prepare_sequences, write_dataset, PrepareOptions, TimeUnit};
use onerec::data::{Dataset, Split};
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn orig_history(ds: &Dataset, u: usize) -> Vec<&str> {
    ds.history(u).iter().map(|&i| ds.item_ids[i as usize].as_str()).collect()
}

/// A Kuaishou-style log: two users, requests, play time, likes (times in ms).
const KUAI: &str = "user_id,video_id,time_ms,play_time_ms,duration_ms,is_like,request_id\n\
9,500,1000,30000,60000,0,r1\n\
9,20,2000,50000,60000,1,r1\n\
9,7,3000,1000,60000,0,r1\n\
4,20,5000,10000,20000,0,r7\n\
9,100,4000000,20000,30000,0,r2\n\
9,500,4001000,15000,30000,0,r2\n\
4,7,9000000,5000,20000,1,r8\n\
4,100,9000500,5000,20000,0,r8\n";

#[test]
fn ids_order_and_time_sorting() {
    let d = tempfile::tempdir().unwrap();
    // Ties at t=5 keep input order; items sorted numerically (100 after 20).
    let p = write(d.path(), "log.csv", "user_id,item_id,timestamp\n30,100,5\n30,20,5\n7,3,1\n30,9,2\n30,4,9\n");
    let ds = prepare_interactions(&p, &PrepareOptions::default()).unwrap();
    assert_eq!(ds.user_ids, ["30", "7"], "users in order of first appearance");
    assert_eq!(ds.item_ids, ["3", "4", "9", "20", "100"], "items by numeric original id");
    assert_eq!(orig_history(&ds, 0), ["9", "100", "20", "4"]);
    assert_eq!(ds.timestamps[ds.range(0)], [2, 5, 5, 9]);
    assert_eq!(orig_history(&ds, 1), ["3"]);
    assert_eq!(ds.split(0), Split { train: 0..2, valid: Some(2), test: Some(3) });
    assert_eq!(ds.split(1), Split { train: 0..1, valid: None, test: None });
    // String ids sort as strings.
    let p = write(d.path(), "s.txt", "a B x A\nb A\n");
    let mut o = PrepareOptions::default();
    o.table.string_ids = true;
    let ds = prepare_sequences(&p, &o).unwrap();
    assert_eq!(ds.item_ids, ["A", "B", "x"]);
    assert_eq!(orig_history(&ds, 0), ["B", "x", "A"]);
}

#[test]
fn kuaishou_log_gap_sessions_and_quality() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "kuai.csv", KUAI);
    let mut o = PrepareOptions::default();
    o.table.item_col = "video_id".into();
    o.table.time_col = "time_ms".into();
    o.session_gap = Some(1800.0); // seconds; time_ms => unit ms automatically
    o.min_session_items = 2;
    o.min_watch_time = Some(60000.0);
    o.watch_col = Some("play_time_ms".into());
    o.require_positive = true;
    o.positive_col = Some("is_like".into());
    let ds = prepare_interactions(&p, &o).unwrap();
    assert_eq!(ds.manifest.features, ["play_time_ms", "duration_ms", "is_like"], "request_id is text");
    assert_eq!(ds.manifest.sessions, "gap:1800");
    assert_eq!(ds.user_ids, ["9", "4"]);
    assert_eq!(ds.sessions(0), vec![0..3, 3..5]);
    assert_eq!(ds.sessions(1), vec![0..1, 1..3]);
    // u9 s0: 3 items, 81 s watched, a like => good; u9 s1: no like; u4 s0: 1 item; u4 s1: 10 s.
    assert_eq!(ds.session_quality, [true, false, false, false]);
    assert_eq!(ds.high_quality_sessions(), vec![(0, 0..3)]);
    assert_eq!(ds.feature(0, "is_like").unwrap(), [0.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(ds.session_target(0, 0), 0..3, "shorter than session_len 5");
    // Without the watch filter user 4's second session passes (2 items, a like).
    o.min_watch_time = None;
    let ds = prepare_interactions(&p, &o).unwrap();
    assert_eq!(ds.session_quality, [true, false, false, true]);
    // Explicit seconds unit: gap 1800 s = 1800 ms-values apart, so every gap > 1800 splits.
    o.time_unit = Some(TimeUnit::Seconds);
    let ds = prepare_interactions(&p, &o).unwrap();
    assert_eq!(ds.sessions(0).len(), 2, "1000-unit steps are within 1800");
    o.session_gap = Some(0.5);
    let ds = prepare_interactions(&p, &o).unwrap();
    assert_eq!(ds.sessions(0).len(), 5);
}

#[test]
fn session_column_and_default_quality_columns() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "kuai.csv", KUAI);
    let mut o = PrepareOptions::default();
    o.table.item_col = "video_id".into();
    o.table.time_col = "time_ms".into();
    o.table.session_col = Some("request_id".into());
    o.session_len = 2;
    let ds = prepare_interactions(&p, &o).unwrap();
    assert_eq!(ds.manifest.sessions, "column:request_id");
    assert_eq!(ds.sessions(0), vec![0..3, 3..5]);
    assert_eq!(ds.sessions(1), vec![0..1, 1..3]);
    assert_eq!(ds.session_target(0, 0), 0..2);
    assert_eq!(ds.manifest.extra["session_len"], 2);
    // Default quality columns (watch_time, like) are absent: only min items applies.
    o.min_session_items = 2;
    o.require_positive = true;
    o.min_watch_time = Some(1e9);
    let ds = prepare_interactions(&p, &o).unwrap();
    assert_eq!(ds.session_quality, [true, true, false, true]);
    // A named quality column that is not a feature is an error; so is gap + column.
    o.watch_col = Some("watch".into());
    assert!(format!("{:#}", prepare_interactions(&p, &o).unwrap_err()).contains("--watch-col `watch`"));
    o.watch_col = None;
    o.session_gap = Some(10.0);
    assert!(prepare_interactions(&p, &o).is_err());
}

#[test]
fn save_load_round_trip_and_byte_identical_output() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "kuai.csv", KUAI);
    let mut o = PrepareOptions::default();
    o.table.item_col = "video_id".into();
    o.table.time_col = "time_ms".into();
    o.session_gap = Some(1800.0);
    o.require_positive = true;
    o.positive_col = Some("is_like".into());
    let ds = prepare_interactions(&p, &o).unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    write_dataset(&ds, &a).unwrap();
    let back = Dataset::load(&a).unwrap();
    assert_eq!(back.manifest, ds.manifest);
    assert_eq!(
        (&back.user_ids, &back.item_ids, &back.offsets, &back.items, &back.timestamps),
        (&ds.user_ids, &ds.item_ids, &ds.offsets, &ds.items, &ds.timestamps)
    );
    assert_eq!(back.features, ds.features);
    assert_eq!(
        (&back.session_offsets, &back.session_starts, &back.session_quality),
        (&ds.session_offsets, &ds.session_starts, &ds.session_quality)
    );
    // Same input, prepared again => identical bytes in every file.
    write_dataset(&prepare_interactions(&p, &o).unwrap(), &b).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&a).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names.len(), 4);
    for n in names {
        assert_eq!(std::fs::read(a.join(&n)).unwrap(), std::fs::read(b.join(&n)).unwrap(), "{n:?} differs");
    }
    // Rewriting over an existing directory replaces it whole.
    write_dataset(&Dataset::from_histories(&[vec![0, 1, 2]], 3), &a).unwrap();
    assert_eq!(Dataset::load(&a).unwrap().n_users(), 1);
    // A damaged directory is a clear error.
    std::fs::write(a.join("item_ids.txt"), "0\n").unwrap();
    let e = format!("{:#}", Dataset::load(&a).unwrap_err());
    assert!(e.contains("manifest counts"), "{e}");
}

#[test]
fn cli_kuaishou_log_with_flags_only() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "kuai.tsv", &KUAI.replace(',', "\t"));
    let out = d.path().join("ds");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_onerec"))
        .args(["-q", "data", "prepare", "--interactions"])
        .arg(&p)
        .args(["--user-col", "user_id", "--item-col", "video_id", "--time-col", "time_ms"])
        .args(["--session-gap", "1800", "--session-len", "3", "--min-session-items", "2"])
        .args(["--min-watch-time", "60000", "--watch-col", "play_time_ms"])
        .args(["--require-positive", "--positive-col", "is_like", "--feature-cols", "play_time_ms,is_like"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ds = Dataset::load(&out).unwrap();
    assert_eq!(ds.manifest.features, ["play_time_ms", "is_like"]);
    assert_eq!(ds.session_quality, [true, false, false, false]);
    assert_eq!(ds.session_target(0, 0), 0..3);
    assert_eq!(ds.manifest.extra["time_unit"], "ms");
    assert_eq!(ds.manifest.extra["quality"]["watch_col"], "play_time_ms");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_onerec"))
        .args(["-q", "data", "stats"])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("sessions      4 (1 high-quality; rule gap:1800)"), "{text}");
}

/// `data synth` then `data prepare` (the README's commands), twice: every prepared file
/// is byte-identical, and dataset.json records the source table's sha256.
#[test]
fn cli_synth_then_prepare_is_byte_identical() {
    let d = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_onerec");
    let run = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(bin).arg("-q").args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let world = d.path().join("w");
    run(&["data".as_ref(), "synth".as_ref(), "--out".as_ref(), world.as_os_str(), "--seed".as_ref(), "3".as_ref()]);
    let csv = world.join("interactions.csv");
    let prepare = |out: &Path| {
        let mut args: Vec<&std::ffi::OsStr> =
            ["data", "prepare", "--interactions"].iter().map(|s| s.as_ref()).collect();
        args.push(csv.as_os_str());
        for s in [
            "--user-col",
            "user_id",
            "--item-col",
            "item_id",
            "--time-col",
            "timestamp",
            "--session-gap",
            "1800",
            "--out",
        ] {
            args.push(s.as_ref());
        }
        args.push(out.as_os_str());
        run(&args);
    };
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    prepare(&a);
    prepare(&b);
    let names = |p: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    assert!(names(&a).len() >= 4, "{:?}", names(&a));
    assert_eq!(names(&a), names(&b));
    for n in names(&a) {
        assert_eq!(std::fs::read(a.join(&n)).unwrap(), std::fs::read(b.join(&n)).unwrap(), "{n:?} differs");
    }
    let ds = Dataset::load(&a).unwrap();
    assert!(ds.n_users() > 100 && ds.n_items() > 100, "{} users, {} items", ds.n_users(), ds.n_items());
    assert_eq!(ds.manifest.sources.len(), 1);
    assert_eq!(ds.manifest.sources[0].sha256, onerec::util::io::sha256_file(&csv).unwrap());
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(json["sources"][0]["sha256"].as_str(), Some(ds.manifest.sources[0].sha256.as_str()));
}
