//! Reliability (issue 19): inputs that used to crash (panic, abort, OOM kill) now give
//! one clear error; the `--out` lock refuses a second writer.

use std::path::Path;
use std::process::{Command, Output};

fn onerec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_onerec"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit status 1 (a reported error), not 101 (panic) or a signal (abort / OOM kill).
fn assert_clean_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected a clean error, got {:?}: {err}",
        o.status
    );
    assert!(
        err.contains(needle),
        "error should mention `{needle}`: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// A v1 `.npy` file with `header` (padded with spaces and a newline) and `data`.
fn npy(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = header.to_vec();
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((h.len() as u16).to_le_bytes());
    out.extend(h);
    out.extend(data);
    out
}

fn header(shape: &str) -> Vec<u8> {
    format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}").into_bytes()
}

#[test]
fn npy_bad_headers_are_errors_not_panics() {
    use onerec::data::embeddings::parse_npy;
    let data = [0u8; 16];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (header(")"), "bad shape"),
        (header("(\u{e9}, 2)"), "not ASCII"),
        (
            "{'descr': '<f4', 'shape': \u{e9}(2, 2), }"
                .as_bytes()
                .to_vec(),
            "not ASCII",
        ),
        (header("(2,"), "bad shape"),
        (header("(-1, 2)"), "bad shape"),
        (header("(4611686018427387904, 4)"), "needs more than"),
        (
            header("(1000000000000, 1000000)"),
            "needs 4000000000000000000",
        ),
        (header("(1000000000000000, 0)"), "empty"),
        (header("(2, 3)"), "needs 24"),
    ];
    for (h, needle) in cases {
        let err = parse_npy(&npy(&h, &data)).unwrap_err();
        assert!(
            format!("{err:#}").contains(needle),
            "{}: {err:#}",
            String::from_utf8_lossy(&h)
        );
    }
    let ok = parse_npy(&npy(&header("(2, 2)"), &data)).unwrap();
    assert_eq!((ok.n, ok.d), (2, 2));
    // Header length pointing past the end of the file.
    let mut trunc = npy(&header("(2, 2)"), &[]);
    trunc[8] = 0xff;
    trunc[9] = 0xff;
    assert!(format!("{:#}", parse_npy(&trunc).unwrap_err()).contains("truncated"));
}

#[test]
fn tokenize_cli_reports_bad_npy_headers() {
    let t = tempfile::tempdir().unwrap();
    for (i, shape) in [
        ")",
        "(\u{e9}, 2)",
        "(1000000000000, 1000000)",
        "(1000000000000000, 0)",
    ]
    .iter()
    .enumerate()
    {
        let f = t.path().join(format!("e{i}.npy"));
        std::fs::write(&f, npy(&header(shape), &[0u8; 16])).unwrap();
        let arg = format!("text={}", f.display());
        let out = t.path().join(format!("tok{i}"));
        let o = onerec(&[
            "tokenize",
            "--embeddings",
            &arg,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_clean_error(&o, "not a valid .npy file");
    }
}

#[test]
fn shard_arithmetic_does_not_overflow() {
    use onerec::generate::Shard;
    let s: Shard = "6148914691236517205/6148914691236517206".parse().unwrap();
    for (n, block) in [
        (100, 1),
        (usize::MAX, 1),
        (usize::MAX, 7),
        (0, 1),
        (5, usize::MAX),
    ] {
        let r = s.range_in_blocks(n, block);
        assert!(r.start <= r.end && r.end <= n, "{n} {block}: {r:?}");
    }
    // Shards still tile 0..n exactly.
    for count in [1usize, 3, 7, usize::MAX] {
        let n = 10usize;
        let mut next = 0;
        for index in [0, 1, 2].into_iter().filter(|&i| i < count) {
            let r = Shard { index, count }.range(n);
            assert_eq!(r.start, next);
            next = r.end;
        }
        if count <= 3 {
            assert_eq!(next, n);
        }
    }
    let last = Shard {
        index: usize::MAX - 1,
        count: usize::MAX,
    }
    .range(usize::MAX);
    assert_eq!(last.end, usize::MAX);
}

#[test]
fn huge_config_sizes_are_clean_errors() {
    let t = tempfile::tempdir().unwrap();
    for set in [
        "model.ffn_hidden=4000000000",
        "model.history_len=100000000",
        "model.d_model=1000000000",
    ] {
        let out = t.path().join("pre");
        let o = onerec(&[
            "pretrain",
            "--config",
            "tiny",
            "--set",
            set,
            "--data",
            "nodata",
            "--tokenizer",
            "notok",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_clean_error(&o, "limit");
        assert!(
            stderr(&o).contains(set.split('=').next().unwrap().trim_start_matches("model.")),
            "{}",
            stderr(&o)
        );
    }
}

/// A `checkpoint.json` (from a valid tiny config) with `codebook_sizes` replaced.
fn write_checkpoint(dir: &Path, sizes: &str, n_items: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let model =
        serde_json::to_value(onerec::config::Config::load("tiny", &[]).unwrap().model).unwrap();
    let json = format!(
        r#"{{"format": 1, "model": {model}, "vocab": {{"codebook_sizes": {sizes}}}, "n_items": {n_items}, "step": 0,
            "tokenizer_sha256": "x", "codes_sha256": "y", "seed": 1}}"#
    );
    std::fs::write(dir.join("checkpoint.json"), json).unwrap();
    std::fs::write(dir.join("codes.tsv"), "").unwrap();
}

#[test]
fn huge_checkpoint_vocabulary_is_a_clean_error() {
    let t = tempfile::tempdir().unwrap();
    let cases = [
        ("[4000000000, 4000000000]", "3", "codebook size"),
        ("[18446744073709551615, 2]", "3", "codebook size"),
        ("[1000000, 1000000, 1000000, 1000000, 1000000, 1000000, 1000000, 1000000, 1000000, 1000000, 1000000, 1000000, 1000000, 1000000, 1000000, 1000000, 1000000, 1000000]", "3", "limit"),
        ("[]", "3", "levels"),
        ("[4, 4]", "18446744073709551615", "n_items"),
    ];
    for (i, (sizes, n, needle)) in cases.iter().enumerate() {
        let dir = t.path().join(format!("ck{i}"));
        write_checkpoint(&dir, sizes, n);
        let err = onerec::model::checkpoint::read_meta(&dir)
            .err()
            .expect("must fail");
        assert!(format!("{err:#}").contains(needle), "{sizes}: {err:#}");
        let d = dir.to_str().unwrap();
        let data = t.path().join("nodata");
        for cmd in ["eval", "generate"] {
            let out = t.path().join(format!("o{i}{cmd}"));
            let o = onerec(&[
                cmd,
                "--checkpoint",
                d,
                "--data",
                data.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ]);
            assert_clean_error(&o, needle);
        }
    }
}

/// A second writer on the same `--out` is refused while the first is alive; a lock left
/// by a dead process (kill -9) is taken over.
#[test]
fn out_lock_refuses_a_live_holder_and_takes_over_a_stale_one() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("tok");
    let lock = t.path().join("tok.lock");
    let missing = format!("text={}", t.path().join("missing.npy").display());
    let args = ["tokenize", "--embeddings", &missing, "--out", out.to_str().unwrap()];
    // This test process is alive: the lock is honoured.
    std::fs::write(&lock, format!("{}\n", std::process::id())).unwrap();
    let o = onerec(&args);
    assert_clean_error(&o, "in use by another onerec process");
    assert!(lock.exists(), "the holder's lock must stay");
    // A pid that is not running: stale, taken over; the run then fails on its input only.
    std::fs::write(&lock, "4194999\n").unwrap();
    let o = onerec(&args);
    assert_clean_error(&o, "missing.npy");
    assert!(!stderr(&o).contains("in use"), "{}", stderr(&o));
    assert!(!lock.exists(), "the lock is removed when the run ends");
}
