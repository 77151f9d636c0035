//! Readers: good inputs, and every kind of bad line gives an error naming file and line,
//! with no output directory created (library and CLI).

use onerec::data::items::read_items;
use onerec::data::prepare::{prepare_interactions, prepare_sequences, write_dataset, PrepareOptions};
use onerec::data::readers::{read_interactions, read_sequences, TableOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn gz(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    let mut e = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap();
    p
}

fn table(user: &str, item: &str, time: &str) -> TableOptions {
    TableOptions { user_col: user.into(), item_col: item.into(), time_col: time.into(), ..Default::default() }
}

#[test]
fn sequences_plain_and_gz() {
    let d = tempfile::tempdir().unwrap();
    let text = "1 10 11 12\n2 11 13\r\n\n3 5\n";
    for p in [write(d.path(), "s.txt", text), gz(d.path(), "s.txt.gz", text)] {
        let log = read_sequences(&p, false).unwrap();
        assert_eq!(log.user_ids, ["1", "2", "3"]);
        assert_eq!(log.item_ids, ["10", "11", "12", "13", "5"]);
        assert_eq!(log.user, [0, 0, 0, 1, 1, 2]);
        assert_eq!(log.item, [0, 1, 2, 1, 3, 4]);
        assert_eq!(log.time, [0, 1, 2, 0, 1, 0]);
    }
}

#[test]
fn interactions_csv_tsv_quoting_and_auto_features() {
    let d = tempfile::tempdir().unwrap();
    let csv = "u,i,t,rating,comment\n1,7,100,4.5,\"nice, really\"\n1,3,50,2,ok\n2,7,10,1,\"x\"\n";
    let log = read_interactions(&write(d.path(), "r.csv", csv), &table("u", "i", "t")).unwrap();
    assert_eq!(log.feature_names, ["rating"], "comment is not numeric, so not a feature");
    assert_eq!(log.features[0], [4.5, 2.0, 1.0]);
    assert_eq!(log.time, [100, 50, 10]);
    // Sniffed tab delimiter (no extension), explicit feature list, session column.
    let tsv = "user\titem\tts\treq\tlike\twatch\n5\t1\t1\ta\t0\t3\n5\t2\t2\ta\t1\t4\n5\t3\t9\tb\t0\t1\n";
    let mut opts = table("user", "item", "ts");
    opts.feature_cols = Some(vec!["watch".into()]);
    opts.session_col = Some("req".into());
    let log = read_interactions(&gz(d.path(), "log.gz", tsv), &opts).unwrap();
    assert_eq!(log.feature_names, ["watch"]);
    assert_eq!(log.session, Some(vec![0, 0, 1]));
}

#[test]
fn item_table() {
    let d = tempfile::tempdir().unwrap();
    let p = gz(
        d.path(),
        "items.tsv.gz",
        "item_id\tasin\tphrase\n2\tB01\tred lipstick\n1\tB02\t\n3\tB03\t12\" mirror, \"big\n",
    );
    let t = read_items(&p, "item_id").unwrap();
    assert_eq!(t.ids, ["2", "1", "3"]);
    assert_eq!(t.get("3", "phrase"), Some("12\" mirror, \"big"), "TSV quotes are plain characters");
    assert_eq!(t.columns, ["asin", "phrase"]);
    assert_eq!(t.get("2", "phrase"), Some("red lipstick"));
    assert_eq!(t.get("1", "phrase"), Some(""));
    let e = read_items(&p, "id").unwrap_err().to_string();
    assert!(e.contains("unknown column `id`") && e.contains("item_id, asin, phrase"), "{e}");
    let dup = write(d.path(), "dup.csv", "id,t\n1,a\n1,b\n");
    let e = read_items(&dup, "id").unwrap_err().to_string();
    assert!(e.contains("dup.csv:3") && e.contains("already listed at line 2"), "{e}");
    let bad = write(d.path(), "bad.csv", "id,t\n1,a,extra\n");
    assert!(read_items(&bad, "id").unwrap_err().to_string().contains("bad.csv:2: wrong column count"));
}

/// A gzip file cut short in the middle of its compressed stream.
fn truncated_gz(dir: &Path) -> PathBuf {
    let text: String = (0..5000).map(|u| format!("{u} {} {} {}\n", u * 3 + 1, u * 7 + 2, u % 91 + 3)).collect();
    let full = gz(dir, "full.txt.gz", &text);
    let bytes = std::fs::read(&full).unwrap();
    let p = dir.join("cut.txt.gz");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    p
}

/// Each bad input: (file name, content, expected substrings of the error).
fn bad_sequence_cases() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        ("empty.txt", "", vec!["empty.txt", "empty file"]),
        ("noitems.txt", "1 2 3\n2\n", vec!["noitems.txt:2", "wrong column count"]),
        ("nonnum.txt", "1 2 3\n2 4 x5\n", vec!["nonnum.txt:2", "item id `x5`", "--string-ids"]),
        ("dupuser.txt", "1 2\n2 3\n1 4\n", vec!["dupuser.txt:3", "user `1`", "dupuser.txt:1"]),
    ]
}

fn bad_table_cases() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        ("empty.csv", "", vec!["empty.csv", "empty file"]),
        ("header_only.csv", "user_id,item_id,timestamp\n", vec!["header_only.csv", "empty file"]),
        ("cols.csv", "user_id,item_id,timestamp\n1,2,3\n1,2\n", vec!["cols.csv:3", "wrong column count", "2 fields"]),
        ("id.csv", "user_id,item_id,timestamp\n1,2,3\nabc,2,3\n", vec!["id.csv:3", "user id `abc`"]),
        ("time.csv", "user_id,item_id,timestamp\n1,2,3\n1,2,yesterday\n", vec!["time.csv:3", "timestamp `yesterday`"]),
        ("dupcol.csv", "user_id,item_id,timestamp,item_id\n1,2,3,4\n", vec!["dupcol.csv:1", "`item_id` appears twice"]),
        (
            "unknown.csv",
            "userId,item_id,timestamp\n1,2,3\n",
            vec!["unknown.csv:1", "unknown column `user_id`", "userId, item_id, timestamp"],
        ),
    ]
}

#[test]
fn bad_inputs_name_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let opts = PrepareOptions::default();
    for (name, text, want) in bad_sequence_cases() {
        let e = format!("{:#}", prepare_sequences(&write(d.path(), name, text), &opts).unwrap_err());
        for w in want {
            assert!(e.contains(w), "{name}: `{e}` lacks `{w}`");
        }
    }
    for (name, text, want) in bad_table_cases() {
        let e = format!("{:#}", prepare_interactions(&write(d.path(), name, text), &opts).unwrap_err());
        for w in want {
            assert!(e.contains(w), "{name}: `{e}` lacks `{w}`");
        }
    }
    // Explicit feature column with a non-numeric value.
    let p = write(d.path(), "feat.csv", "user_id,item_id,timestamp,w\n1,2,3,0.5\n1,3,4,n/a\n");
    let mut o = PrepareOptions::default();
    o.table.feature_cols = Some(vec!["w".into()]);
    let e = format!("{:#}", prepare_interactions(&p, &o).unwrap_err());
    assert!(e.contains("feat.csv:3") && e.contains("`w`") && e.contains("n/a"), "{e}");
    // Truncated gzip.
    let e = format!("{:#}", prepare_sequences(&truncated_gz(d.path()), &opts).unwrap_err());
    assert!(e.contains("cut.txt.gz:") && e.contains("truncated"), "{e}");
    // Truncated gzip table.
    let body: String = (0..5000).map(|u| format!("{u},{},{}\n", u * 3 + 1, u * 7)).collect();
    let full = gz(d.path(), "t.csv.gz", &format!("user_id,item_id,timestamp\n{body}"));
    let bytes = std::fs::read(&full).unwrap();
    let cut = d.path().join("tcut.csv.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = format!("{:#}", prepare_interactions(&cut, &opts).unwrap_err());
    let line: u64 = e.split("tcut.csv.gz:").nth(1).and_then(|r| r.split(':').next()).unwrap().parse().unwrap();
    assert!(line > 100 && e.contains("truncated"), "{e}");
    // A UTF-8 BOM before the header is ignored.
    let bom = write(d.path(), "bom.csv", "\u{feff}user_id,item_id,timestamp\n1,2,3\n");
    assert_eq!(prepare_interactions(&bom, &opts).unwrap().n_users(), 1);
    // A good file still works, and the whole directory appears at once.
    let ds = prepare_sequences(&write(d.path(), "ok.txt", "1 2 3 4\n"), &opts).unwrap();
    let out = d.path().join("out");
    write_dataset(&ds, &out).unwrap();
    assert!(out.join("dataset.json").exists() && out.join("histories.safetensors").exists());
}

#[test]
fn cli_bad_input_fails_with_one_error_line_and_no_output() {
    let d = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_onerec");
    let mut cases: Vec<(PathBuf, Vec<&str>, &str)> = Vec::new();
    for (name, text, _) in bad_sequence_cases() {
        cases.push((write(d.path(), name, text), vec!["--sequences"], name));
    }
    for (name, text, _) in bad_table_cases() {
        cases.push((write(d.path(), name, text), vec!["--interactions"], name));
    }
    cases.push((truncated_gz(d.path()), vec!["--sequences"], "cut.txt.gz"));
    for (k, (path, flag, name)) in cases.iter().enumerate() {
        let out = d.path().join(format!("out{k}"));
        let o = Command::new(bin)
            .args(["-q", "data", "prepare", flag[0]])
            .arg(path)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name}: should fail");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}: expected one error line, got {stderr}");
        assert!(lines[0].starts_with("error: ") && lines[0].contains(name), "{name}: {stderr}");
        assert!(!out.exists(), "{name}: output dir must not be created");
        let leftovers: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("out{k}")))
            .collect();
        assert!(leftovers.is_empty(), "{name}: temp dir left behind");
    }
    // A good run via the CLI succeeds and `stats --json` prints one JSON object.
    let good = write(d.path(), "good.txt", "1 1 2 3\n2 2 3 1\n3 3 1 2\n");
    let out = d.path().join("good");
    let o = Command::new(bin)
        .args(["-q", "data", "prepare", "--sequences"])
        .arg(&good)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(bin).args(["-q", "data", "stats", "--json"]).arg(&out).output().unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["users"], 3);
    assert_eq!(v["items"], 3);
    assert_eq!(v["interactions"], 9);
    assert!(v["popularity"]["test"]["recall@10"].as_f64().is_some());
    assert!(v["popularity"]["validation"]["ndcg@10"].as_f64().is_some());
}

// ---------- item embedding files ----------

use onerec::data::embeddings::Embeddings;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// A safetensors file from (name, dtype, shape, raw little-endian bytes).
fn write_st(dir: &Path, name: &str, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> PathBuf {
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, t, s, b)| (n.to_string(), TensorView::new(*t, s.clone(), b).unwrap())).collect();
    let p = dir.join(name);
    std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
    p
}

/// A version-1 `.npy` file written by hand: magic, header dict padded to 64 bytes, data.
fn write_npy(dir: &Path, name: &str, descr: &str, shape: &str, data: &[u8]) -> PathBuf {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Values exactly representable in f16, so f16 and f32 files load to the same numbers.
const VALUES: [f32; 6] = [0.5, -1.25, 2.0, 0.0, -0.125, 3.75];

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn embeddings_safetensors_f16_f32_and_item_ids() {
    let d = tempfile::tempdir().unwrap();
    let f16: Vec<u8> = VALUES.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect();
    let ids: Vec<u8> = [40i64, -2, 7].iter().flat_map(|x| x.to_le_bytes()).collect();
    let with_ids = write_st(
        d.path(),
        "a.safetensors",
        &[("embeddings", Dtype::F16, vec![3, 2], f16), ("item_ids", Dtype::I64, vec![3], ids)],
    );
    let e = Embeddings::load(&with_ids).unwrap();
    assert_eq!((e.n, e.d), (3, 2));
    assert_eq!(e.data, VALUES);
    assert_eq!(e.item_ids, ["40", "-2", "7"]);
    assert_eq!(e.row(1), [2.0, 0.0]);
    // f32 without item_ids: rows are numbered.
    let plain = write_st(d.path(), "b.safetensors", &[("embeddings", Dtype::F32, vec![2, 3], f32_bytes(&VALUES))]);
    let e = Embeddings::load(&plain).unwrap();
    assert_eq!((e.n, e.d, e.data.as_slice()), (2, 3, &VALUES[..]));
    assert_eq!(e.item_ids, ["0", "1"]);
}

#[test]
fn embeddings_npy_f32_by_hand() {
    let d = tempfile::tempdir().unwrap();
    let p = write_npy(d.path(), "e.npy", "<f4", "(3, 2)", &f32_bytes(&VALUES));
    let e = Embeddings::load(&p).unwrap();
    assert_eq!((e.n, e.d), (3, 2));
    assert_eq!(e.data, VALUES);
    assert_eq!(e.item_ids, ["0", "1", "2"]);
}

#[test]
fn bad_embedding_files_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    let expect_err = |p: &Path, what: &str| {
        let e = format!("{:#}", Embeddings::load(p).unwrap_err());
        assert!(e.contains(&p.display().to_string()), "error does not name {}: {e}", p.display());
        assert!(e.contains(what), "expected `{what}` in: {e}");
    };
    let ints: Vec<u8> = [1i32, 2, 3, 4].iter().flat_map(|x| x.to_le_bytes()).collect();
    expect_err(&write_st(d.path(), "int.safetensors", &[("embeddings", Dtype::I32, vec![2, 2], ints)]), "dtype");
    expect_err(
        &write_st(d.path(), "name.safetensors", &[("vectors", Dtype::F32, vec![3, 2], f32_bytes(&VALUES))]),
        "no tensor named `embeddings`",
    );
    let bad_ids: Vec<u8> = [1i32, 2, 3].iter().flat_map(|x| x.to_le_bytes()).collect();
    expect_err(
        &write_st(
            d.path(),
            "ids.safetensors",
            &[("embeddings", Dtype::F32, vec![3, 2], f32_bytes(&VALUES)), ("item_ids", Dtype::I32, vec![3], bad_ids)],
        ),
        "item_ids",
    );
    // Truncated npy data, a truncated header, an unsupported dtype.
    expect_err(&write_npy(d.path(), "short.npy", "<f4", "(3, 2)", &f32_bytes(&VALUES[..5])), "bytes");
    let full = std::fs::read(write_npy(d.path(), "tmp.npy", "<f4", "(3, 2)", &f32_bytes(&VALUES))).unwrap();
    let cut = d.path().join("cut.npy");
    std::fs::write(&cut, &full[..40]).unwrap();
    expect_err(&cut, "truncated");
    expect_err(&write_npy(d.path(), "i8.npy", "<i8", "(3, 1)", &[0u8; 24]), "dtype");
}
