//! `onerec baseline sasrec-embeddings`: a trained SASRec's item table as a tokenizer modality.

use onerec::baseline::sasrec::{Sasrec, SasrecConfig};
use onerec::data::embeddings::Embeddings;
use onerec::data::Dataset;
use std::process::Command;

fn onerec_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_onerec")).args(args).env("RAYON_NUM_THREADS", "1").output().unwrap()
}

#[test]
fn sasrec_item_table_becomes_embeddings_keyed_by_item_id_and_tokenizes() {
    let t = tempfile::tempdir().unwrap();
    let hs = vec![vec![0, 1, 2, 3], vec![4, 3, 0, 1], vec![1, 2, 4, 0], vec![2, 3, 4, 1]];
    let ds = Dataset::from_histories(&hs, 5);
    let data = t.path().join("data");
    ds.save(&data).unwrap();
    let cfg = SasrecConfig::load("sasrec", &["model.d_model=4".into(), "model.ffn_hidden=4".into()]).unwrap();
    let (_, varmap) = Sasrec::build(&cfg.model, 5, 7).unwrap();
    // A known item table: row 0 is padding, row i + 1 is item i.
    let table: Vec<f32> = (0..6 * 4).map(|v| v as f32 * 0.5 - 3.0).collect();
    for (name, var) in onerec::nn::params::sorted_vars(&varmap) {
        if name == "item_emb" {
            var.set(&candle_core::Tensor::from_vec(table.clone(), (6, 4), &candle_core::Device::Cpu).unwrap()).unwrap();
        }
    }
    let ck = t.path().join("run/best");
    crate::common::write_sasrec_checkpoint(&ck, &ds, &cfg.model, &varmap);

    let out = t.path().join("collab.safetensors");
    let (run, d, o) = (t.path().join("run"), data.to_str().unwrap(), out.to_str().unwrap());
    let r =
        onerec_cli(&["baseline", "sasrec-embeddings", "--checkpoint", run.to_str().unwrap(), "--data", d, "--out", o]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let emb = Embeddings::load(&out).unwrap();
    assert_eq!((emb.n, emb.d), (5, 4));
    assert_eq!(emb.item_ids, ds.item_ids);
    assert_eq!(emb.data, table[4..].to_vec(), "rows are the table without its padding row");
    assert!(out.with_file_name("collab.safetensors.run.json").is_file());

    // The tokenizer takes it as a modality.
    let tok = t.path().join("tok");
    let r = onerec_cli(&[
        "tokenize",
        "--embeddings",
        &format!("collab={o}"),
        "--levels",
        "1",
        "--codebook-size",
        "2",
        "--out",
        tok.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(tok.join("codes.tsv").is_file());

    // Another catalogue is refused with a message that says so.
    let other = t.path().join("other");
    Dataset::from_histories(&hs, 6).save(&other).unwrap();
    let o2 = t.path().join("x.safetensors");
    let r = onerec_cli(&[
        "baseline",
        "sasrec-embeddings",
        "--checkpoint",
        run.to_str().unwrap(),
        "--data",
        other.to_str().unwrap(),
        "--out",
        o2.to_str().unwrap(),
    ]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("catalogue"), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(!o2.exists());
}
