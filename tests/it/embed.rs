//! Tests of `onerec embed`: templates, item tables, the BERT encoder and the resumable
//! pipeline on a tiny random BERT written here (always run), plus parity with the reference
//! Python embeddings and with the shipped MovieLens embeddings (need all-MiniLM-L6-v2 in
//! `ONEREC_MINILM_DIR` or ./models/all-MiniLM-L6-v2, fetched with scripts/fetch-minilm.sh; skipped otherwise).

use candle_core::{DType, Device, Tensor};
use onerec::data::embeddings::Embeddings;
use onerec::embed::bert::{Bert, BertConfig};
use onerec::embed::{
    embed_items, read_table, render_items, ColumnReplace, EmbedOptions, SentenceEncoder, TableFormat, Template,
};
use rand::Rng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

// ---------- helpers ----------

fn minilm_dir() -> Option<PathBuf> {
    // ONEREC_MINILM_DIR, else where scripts/fetch-minilm.sh puts it by default.
    let d = match std::env::var_os("ONEREC_MINILM_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2"),
    };
    if !d.exists() {
        eprintln!("SKIP: no model at {} (set ONEREC_MINILM_DIR or run scripts/fetch-minilm.sh)", d.display());
        return None;
    }
    if !d.join("model.safetensors").is_file() {
        eprintln!("SKIP: {} has no model.safetensors", d.display());
        return None;
    }
    Some(d)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}

const WORDS: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "nail", "polish", "toy", "story", "genres", "comedy", "drama",
    "the", "a", "of", "##s", "##ing", ".", ",", ":", "(", ")", "1995", "blue", "lamp",
];

/// Writes a tiny random BERT (hidden 8, 2 layers, 2 heads) with a WordPiece tokenizer.json
/// shaped like all-MiniLM's, into `dir`. `prefixed` stores weights as `bert.*`.
fn write_tiny_bert(dir: &Path, prefixed: bool, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let (h, inter, layers, vocab, max_pos) = (8usize, 16usize, 2usize, WORDS.len(), 32usize);
    let config = serde_json::json!({
        "architectures": ["BertModel"], "hidden_act": "gelu", "hidden_size": h,
        "intermediate_size": inter, "layer_norm_eps": 1e-12, "max_position_embeddings": max_pos,
        "model_type": "bert", "num_attention_heads": 2, "num_hidden_layers": layers,
        "type_vocab_size": 2, "vocab_size": vocab, "position_embedding_type": "absolute"
    });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let vocab_map: serde_json::Map<String, serde_json::Value> =
        WORDS.iter().enumerate().map(|(i, w)| (w.to_string(), serde_json::json!(i))).collect();
    let added: Vec<_> = (0..5)
        .map(|i| {
            serde_json::json!({"id": i, "content": WORDS[i], "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let tok = serde_json::json!({
        "version": "1.0",
        "truncation": {"max_length": 128, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null,
            "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
            "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                               "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": vocab_map}
    });
    std::fs::write(dir.join("tokenizer.json"), serde_json::to_vec(&tok).unwrap()).unwrap();

    let mut rng = onerec::util::rng::stream(seed, "tiny-bert");
    let mut t = |shape: &[usize], scale: f32| -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0f32..1.0) * scale).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    };
    let p = if prefixed { "bert." } else { "" };
    let mut w: HashMap<String, Tensor> = HashMap::new();
    w.insert(format!("{p}embeddings.word_embeddings.weight"), t(&[vocab, h], 1.0));
    w.insert(format!("{p}embeddings.position_embeddings.weight"), t(&[max_pos, h], 0.5));
    w.insert(format!("{p}embeddings.token_type_embeddings.weight"), t(&[2, h], 0.5));
    w.insert(format!("{p}embeddings.LayerNorm.weight"), (t(&[h], 0.1) + 1.0).unwrap());
    w.insert(format!("{p}embeddings.LayerNorm.bias"), t(&[h], 0.1));
    let pos_ids: Vec<i64> = (0..max_pos as i64).collect();
    w.insert(format!("{p}embeddings.position_ids"), Tensor::from_vec(pos_ids, (1, max_pos), &Device::Cpu).unwrap());
    for l in 0..layers {
        let q = format!("{p}encoder.layer.{l}");
        for (name, o, i) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", inter, h),
            ("output.dense", h, inter),
        ] {
            w.insert(format!("{q}.{name}.weight"), t(&[o, i], 0.5));
            w.insert(format!("{q}.{name}.bias"), t(&[o], 0.1));
        }
        for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
            w.insert(format!("{q}.{name}.weight"), (t(&[h], 0.1) + 1.0).unwrap());
            w.insert(format!("{q}.{name}.bias"), t(&[h], 0.1));
        }
    }
    w.insert(format!("{p}pooler.dense.weight"), t(&[h, h], 0.5));
    candle_core::safetensors::save(&w, dir.join("model.safetensors")).unwrap();
}

fn write(path: &Path, s: &str) {
    std::fs::write(path, s).unwrap();
}

// ---------- templates and tables ----------

#[test]
fn template_renders_fields_filters_and_escapes() {
    let t = Template::parse("{title}. Genres: {genres|replace:|:, } {{x}} {title|upper}").unwrap();
    assert_eq!(t.columns(), vec!["title", "genres"]);
    let cols = vec!["id".to_string(), "title".to_string(), "genres".to_string()];
    let b = t.bind(&cols).unwrap();
    let row = vec!["1".to_string(), "Toy Story".to_string(), "Animation|Comedy".to_string()];
    assert_eq!(b.render(&row), "Toy Story. Genres: Animation, Comedy {x} TOY STORY");
    // prefix/suffix only for non-empty values.
    let t = Template::parse("{title|suffix:. }{genres|prefix:Genres: }").unwrap().bind(&cols).unwrap();
    assert_eq!(t.render(&row), "Toy Story. Genres: Animation|Comedy");
    assert_eq!(t.render(&["2".into(), "".into(), "".into()]), "");
    // Literal-only and empty templates.
    assert_eq!(Template::parse("plain").unwrap().bind(&cols).unwrap().render(&row), "plain");
    assert_eq!(Template::parse("").unwrap().bind(&cols).unwrap().render(&row), "");
}

#[test]
fn template_errors_name_the_problem() {
    let cols = vec!["id".to_string(), "title".to_string()];
    let e = Template::parse("{title}, {brand}").unwrap().bind(&cols).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("`brand`") && msg.contains("title"), "{msg}");
    for bad in ["{title", "title}", "{}", "{title|frobnicate}", "{title|replace:x}"] {
        assert!(Template::parse(bad).is_err(), "{bad} should not parse");
    }
    let r: ColumnReplace = "genres=|=, ".parse().unwrap();
    assert_eq!((r.col.as_str(), r.from.as_str(), r.to.as_str()), ("genres", "|", ", "));
    assert!("genres".parse::<ColumnReplace>().is_err());
    assert!("=a=b".parse::<ColumnReplace>().is_err());
}

#[test]
fn tables_csv_tsv_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("items.csv");
    write(&csv, "movieId,title,genres\n1,\"Toy Story, The (1995)\",Animation|Comedy\n2,Heat (1995),Action\n");
    let t = read_table(&csv, None).unwrap();
    assert_eq!(t.columns, ["movieId", "title", "genres"]);
    assert_eq!(t.rows[0][1], "Toy Story, The (1995)");
    let reps: Vec<ColumnReplace> = vec!["genres=|=, ".parse().unwrap()];
    let (ids, texts) = render_items(&t, None, "{title}: {genres}", &reps, &csv).unwrap();
    assert_eq!(ids, ["1", "2"]);
    assert_eq!(texts[0], "Toy Story, The (1995): Animation, Comedy");

    // gzip TSV, id column chosen by name.
    let tsv = dir.path().join("items.tsv.gz");
    onerec::embed::write_texts(&tsv, &["a".into(), "b".into()], &["x y".into(), "z".into()]).unwrap();
    let t = read_table(&tsv, None).unwrap();
    assert_eq!(t.columns, ["item_id", "text"]);
    let (ids, texts) = render_items(&t, Some("item_id"), "<{text}>", &[], &tsv).unwrap();
    assert_eq!((ids, texts), (vec!["a".to_string(), "b".into()], vec!["<x y>".to_string(), "<z>".into()]));

    // JSONL: key order kept, missing keys empty, arrays joined.
    let jl = dir.path().join("meta.jsonl");
    write(&jl, "{\"asin\":\"B01\",\"title\":\"Lamp\",\"cats\":[\"Home\",\"Light\"]}\n\n{\"title\":\"Pen\",\"asin\":\"B02\",\"brand\":null}\n");
    let t = read_table(&jl, None).unwrap();
    assert_eq!(t.columns, ["asin", "title", "cats", "brand"]);
    let (ids, texts) = render_items(&t, None, "{title} [{cats}] {brand}", &[], &jl).unwrap();
    assert_eq!(ids, ["B01", "B02"]);
    assert_eq!(texts, ["Lamp [Home, Light] ", "Pen [] "]);

    // Errors: duplicate id, missing id column, ragged CSV, bad extension, bad JSON.
    let dup = dir.path().join("dup.csv");
    write(&dup, "id,t\n1,a\n1,b\n");
    let e = render_items(&read_table(&dup, None).unwrap(), None, "{t}", &[], &dup).unwrap_err();
    assert!(format!("{e:#}").contains("appears twice"), "{e:#}");
    let e = render_items(&read_table(&dup, None).unwrap(), Some("item"), "{t}", &[], &dup).unwrap_err();
    assert!(format!("{e:#}").contains("`item`"), "{e:#}");
    let ragged = dir.path().join("r.csv");
    write(&ragged, "id,t\n1,a,extra\n");
    assert!(read_table(&ragged, None).is_err());
    assert!(read_table(&dir.path().join("x.parquet"), None).is_err());
    let badjl = dir.path().join("b.jsonl");
    write(&badjl, "{\"a\":1}\n[1,2]\n");
    let e = read_table(&badjl, Some(TableFormat::Jsonl)).unwrap_err();
    assert!(format!("{e:#}").contains("line 2"), "{e:#}");
}

// ---------- the encoder on a tiny random BERT ----------

#[test]
fn bert_prefix_layouts_and_padding_invariance() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("plain"), dir.path().join("prefixed"));
    write_tiny_bert(&a, false, 7);
    write_tiny_bert(&b, true, 7);
    let ea = SentenceEncoder::load(&a, 256, &Device::Cpu).unwrap();
    let eb = SentenceEncoder::load(&b, 256, &Device::Cpu).unwrap();
    assert_eq!(ea.max_tokens, 32, "capped at max_position_embeddings");
    let texts: Vec<String> =
        ["Red nail polish", "", "Toy Story (1995). Genres: comedy, drama", "the blue lamp", "zzz unknown"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let tok = ea.tokenize(&texts).unwrap();
    assert_eq!(tok[0], [2, 5, 6, 7, 3], "lowercased WordPiece with [CLS]/[SEP]");
    assert_eq!(tok[1], [2, 3], "empty string is [CLS] [SEP]");
    assert_eq!(tok[4], [2, 1, 1, 3], "unknown words are [UNK]");
    let va = ea.embed(&texts).unwrap();
    let vb = eb.embed(&texts).unwrap();
    assert_eq!(va, vb, "bert.-prefixed and plain weights give the same model");
    // One at a time (no padding) equals batched (padded to the longest).
    for (i, t) in tok.iter().enumerate() {
        let single = ea.embed_tokens(&[t.as_slice()]).unwrap();
        let diff = single[0].iter().zip(&va[i]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "text {i}: padding changed the embedding by {diff}");
        let norm: f32 = va[i].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "row {i} norm {norm}");
    }
    // Distinct texts give distinct embeddings.
    assert!(cosine(&va[0], &va[3]) < 0.999);
    // Truncation keeps [CLS] ... [SEP] at max_tokens.
    let long = vec!["red ".repeat(100)];
    let t = ea.tokenize(&long).unwrap();
    assert_eq!(t[0].len(), 32);
    assert_eq!((t[0][0], t[0][31]), (2, 3));
    let tiny = SentenceEncoder::load(&a, 8, &Device::Cpu).unwrap();
    assert_eq!(tiny.tokenize(&long).unwrap()[0].len(), 8);
}

#[test]
fn bert_rejects_bad_models() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    write_tiny_bert(&m, false, 1);
    // Missing directory names the fetch script.
    let e = SentenceEncoder::load(&dir.path().join("nope"), 256, &Device::Cpu).err().unwrap();
    assert!(format!("{e:#}").contains("fetch-minilm.sh"), "{e:#}");
    // A weight missing.
    let mut w = candle_core::safetensors::load(m.join("model.safetensors"), &Device::Cpu).unwrap();
    w.remove("encoder.layer.1.output.dense.weight");
    let cfg = BertConfig::load(&m.join("config.json")).unwrap();
    let e = Bert::from_tensors(cfg.clone(), w.clone(), &Device::Cpu).err().unwrap();
    assert!(format!("{e:#}").contains("encoder.layer.1.output.dense.weight"), "{e:#}");
    // A shape that disagrees with config.json.
    w.insert("encoder.layer.1.output.dense.weight".into(), Tensor::zeros((8, 8), DType::F32, &Device::Cpu).unwrap());
    let e = Bert::from_tensors(cfg, w, &Device::Cpu).err().unwrap();
    assert!(format!("{e:#}").contains("shape"), "{e:#}");
    // Unsupported activation.
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(m.join("config.json")).unwrap()).unwrap();
    c["hidden_act"] = "mish".into();
    std::fs::write(m.join("config.json"), c.to_string()).unwrap();
    let e = SentenceEncoder::load(&m, 256, &Device::Cpu).err().unwrap();
    assert!(format!("{e:#}").contains("hidden_act"), "{e:#}");
}

// ---------- the resumable pipeline ----------

#[test]
fn pipeline_chunks_resume_and_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    write_tiny_bert(&model, true, 3);
    let items = dir.path().join("items.csv");
    let rows = [
        (10, "Toy Story (1995)", "comedy|drama"),
        (11, "Red nail polish", "a"),
        (12, "The blue lamp", ""),
        (13, "", ""),
        (14, "Story of the toys", "comedy"),
        (15, "Blue red blue red blue", "drama|comedy|drama"),
        (16, "lamp", "the"),
    ];
    let mut csv = String::from("id,title,genres\n");
    for (id, t, g) in rows {
        csv.push_str(&format!("{id},{t},{g}\n"));
    }
    write(&items, &csv);
    let out = dir.path().join("out/emb.safetensors");
    let mut opts = EmbedOptions::new(&model, &items, "{title}. Genres: {genres|replace:|:, }", &out);
    opts.chunk_size = 3;
    opts.batch_size = 2;
    opts.keep_chunks = true;
    let r1 = embed_items(&opts).unwrap();
    assert_eq!((r1.n, r1.dim, r1.chunks_computed, r1.chunks_reused), (7, 8, 3, 0));
    let bytes1 = std::fs::read(&out).unwrap();
    let emb = Embeddings::load(&out).unwrap();
    assert_eq!(emb.item_ids, ["10", "11", "12", "13", "14", "15", "16"]);
    for i in 0..emb.n {
        let norm: f32 = emb.row(i).iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    // Same rows as embedding the texts directly.
    let enc = SentenceEncoder::load(&model, 256, &Device::Cpu).unwrap();
    let direct = enc.embed(&["Toy Story (1995). Genres: comedy, drama".to_string()]).unwrap();
    assert!(cosine(&direct[0], emb.row(0)) > 0.99999);

    // A fresh run elsewhere (no chunks to reuse) recomputes the same bytes.
    let mut fresh = opts.clone();
    fresh.out = dir.path().join("fresh/emb.safetensors");
    fresh.keep_chunks = false;
    assert_eq!(embed_items(&fresh).unwrap().chunks_computed, 3);
    assert_eq!(std::fs::read(&fresh.out).unwrap(), bytes1, "same inputs => same bytes");

    // Second run reuses every chunk and writes identical bytes.
    let r2 = embed_items(&opts).unwrap();
    assert_eq!((r2.chunks_computed, r2.chunks_reused), (0, 3));
    assert_eq!(std::fs::read(&out).unwrap(), bytes1);

    // A changed item recomputes only its chunk; a corrupt chunk file is recomputed.
    write(&items, &csv.replace("Red nail polish", "Blue nail polish"));
    let chunk2 = onerec::embed::chunks_dir(&out).join("chunk-000002.safetensors");
    std::fs::write(&chunk2, b"garbage").unwrap();
    let r3 = embed_items(&opts).unwrap();
    assert_eq!((r3.chunks_computed, r3.chunks_reused), (2, 1));
    let emb3 = Embeddings::load(&out).unwrap();
    assert_ne!(emb3.row(1), emb.row(1));
    assert_eq!(emb3.row(6), emb.row(6), "recomputed chunk gives the same values");

    // Without keep_chunks the chunk dir is removed; f16 output stays close.
    opts.keep_chunks = false;
    opts.f16 = true;
    embed_items(&opts).unwrap();
    assert!(!onerec::embed::chunks_dir(&out).exists());
    let emb16 = Embeddings::load(&out).unwrap();
    for i in 0..7 {
        assert!(cosine(emb16.row(i), emb3.row(i)) > 0.9999);
    }

    // Non-integer ids: no item_ids tensor, ids in OUT.item_ids.txt.
    write(&items, &csv.replace("\n10,", "\nten,"));
    opts.f16 = false;
    let r = embed_items(&opts).unwrap();
    let ids_file = r.ids_file.unwrap();
    let listed = std::fs::read_to_string(&ids_file).unwrap();
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["ten", "11", "12", "13", "14", "15", "16"]);
    assert_eq!(ids_file, onerec::data::embeddings::ids_sidecar(&out));
    assert_eq!(Embeddings::load(&out).unwrap().item_ids, ["ten", "11", "12", "13", "14", "15", "16"]);

    // A template column missing from the table is a clear error and writes nothing new.
    let mut bad = opts.clone();
    bad.template = "{title} by {brand}".into();
    bad.out = dir.path().join("bad.safetensors");
    let e = embed_items(&bad).unwrap_err();
    assert!(format!("{e:#}").contains("`brand`"), "{e:#}");
    assert!(!bad.out.exists());
}

// ---------- parity with the real model (skipped without it) ----------

#[test]
fn minilm_matches_reference_python() {
    let Some(model) = minilm_dir() else { return };
    let ref_path = crate::common::shared_root().join("data/minilm-l6-v2-reference.json");
    if !ref_path.is_file() {
        eprintln!("SKIP: {} is missing", ref_path.display());
        return;
    }
    let reference: serde_json::Value = serde_json::from_slice(&std::fs::read(&ref_path).unwrap()).unwrap();
    let items = reference["items"].as_array().unwrap();
    let texts: Vec<String> = items.iter().map(|it| it["text"].as_str().unwrap().to_string()).collect();
    assert!(texts.iter().any(|t| t.is_empty()), "the reference includes the empty string");
    let enc = SentenceEncoder::load(&model, 256, &Device::Cpu).unwrap();
    let tokens = enc.tokenize(&texts).unwrap();
    let emb = enc.embed(&texts).unwrap();
    for (i, it) in items.iter().enumerate() {
        let want_ids: Vec<u32> =
            it["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(tokens[i], want_ids, "token ids of {:?}", texts[i]);
        let want: Vec<f32> = it["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let c = cosine(&emb[i], &want);
        let maxdiff = emb[i].iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("{:?}: cosine {c:.7}, max |diff| {maxdiff:.2e}", texts[i]);
        assert!(c >= 0.9999, "{:?}: cosine {c}", texts[i]);
    }
}

/// Embeds the first 300 items (all with ONEREC_EMBED_FULL=1) of a shared dataset and compares
/// texts and vectors with its shipped item_text_embeddings.safetensors.
fn compare_with_shipped(dataset: &str, items: &str, template: &str) {
    let Some(model) = minilm_dir() else { return };
    let ds = crate::common::shared_root().join("data").join(dataset);
    if !ds.join(items).is_file() {
        eprintln!("SKIP: {} is missing", ds.join(items).display());
        return;
    }
    let full = std::env::var("ONEREC_EMBED_FULL").is_ok_and(|v| v == "1");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("e.safetensors");
    let texts_out = dir.path().join("e.texts.tsv.gz");
    let mut opts = EmbedOptions::new(&model, ds.join(items), template, &out);
    opts.f16 = true;
    opts.texts_out = Some(texts_out.clone());
    opts.limit = if full { None } else { Some(300) };
    let report = embed_items(&opts).unwrap();
    // Texts identical to the ones the reference embedded (same rows, same order).
    let ours = read_table(&texts_out, None).unwrap();
    let shipped_texts = read_table(&ds.join("item_text_embeddings.texts.tsv.gz"), None).unwrap();
    let differ: Vec<_> = ours.rows.iter().zip(&shipped_texts.rows).filter(|(a, b)| a != b).collect();
    eprintln!("{dataset}: {} of {} texts differ: {:?}", differ.len(), ours.rows.len(), &differ[..differ.len().min(3)]);

    let mine = Embeddings::load(&out).unwrap();
    let shipped = Embeddings::load(&ds.join("item_text_embeddings.safetensors")).unwrap();
    let index: HashMap<&str, usize> = shipped.item_ids.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    let mut cos = Vec::new();
    for i in 0..mine.n {
        let j = index[mine.item_ids[i].as_str()];
        cos.push(cosine(mine.row(i), shipped.row(j)));
    }
    let mean = cos.iter().sum::<f64>() / cos.len() as f64;
    let min = cos.iter().cloned().fold(f64::INFINITY, f64::min);
    let same = (0..mine.n).filter(|&i| mine.row(i) == shipped.row(index[mine.item_ids[i].as_str()])).count();
    eprintln!(
        "{dataset}: {} items, cosine vs shipped mean {mean:.9} min {min:.9} (1-min {:.1e}); \
         {same} rows bit-identical in f16; {:.1} items/s",
        mine.n,
        1.0 - min,
        report.items_per_sec
    );
    assert!(differ.is_empty(), "rendered texts differ from the shipped ones");
    assert!(min >= 0.9999, "{dataset}: min cosine {min}");
}

#[test]
fn minilm_movielens_matches_shipped_embeddings() {
    compare_with_shipped("movielens-latest-small", "movies.csv.gz", "{title}. Genres: {genres|replace:|:, }");
}

/// Beauty's one item with an empty phrase (10205) embeds only the attribute names: the
/// `suffix:` filter drops the ". " separator for it.
#[test]
fn minilm_beauty_matches_shipped_embeddings() {
    compare_with_shipped(
        "amazon-beauty",
        "items.tsv.gz",
        "{generated_phrase|suffix:. }{attribute_names|replace: | :, }",
    );
}

#[test]
fn cli_embed_runs_on_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    write_tiny_bert(&model, false, 5);
    let items = dir.path().join("items.jsonl.gz");
    {
        use std::io::Write;
        let f = std::fs::File::create(&items).unwrap();
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        gz.write_all(b"{\"title\":\"Red lamp\",\"id\":7,\"genres\":\"comedy|drama\"}\n{\"title\":\"Blue toy\",\"id\":9,\"genres\":\"drama\"}\n")
            .unwrap();
        gz.finish().unwrap();
    }
    let out = dir.path().join("e.safetensors");
    let texts = dir.path().join("texts.tsv");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_onerec"))
            .args(["-q", "embed", "--model-dir"])
            .arg(&model)
            .arg("--items")
            .arg(&items)
            .args(["--id-col", "id", "--text", "{title}. Genres: {genres}", "--replace", "genres=|=, ", "--out"])
            .arg(&out)
            .args(["--dtype", "f16", "--texts-out"])
            .arg(&texts)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((report["n"].as_u64(), report["dim"].as_u64()), (Some(2), Some(8)));
    let emb = Embeddings::load(&out).unwrap();
    assert_eq!(emb.item_ids, ["7", "9"]);
    // The resolved settings are recorded beside the output.
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(onerec::embed::run_record_path(&out)).unwrap()).unwrap();
    assert_eq!(
        (rec["format"].as_str(), rec["dtype"].as_str(), rec["id_col"].as_str()),
        (Some("jsonl"), Some("f16"), Some("id"))
    );
    assert_eq!(rec["text"], "{title}. Genres: {genres}");
    assert_eq!(rec["replace"][0]["col"], "genres");
    assert_eq!((rec["n"].as_u64(), rec["dim"].as_u64(), rec["batch_size"].as_u64()), (Some(2), Some(8), Some(32)));
    assert_eq!(rec["items_sha256"].as_str().unwrap(), onerec::util::io::sha256_file(&items).unwrap());
    assert_eq!(rec["model_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        std::fs::read_to_string(&texts).unwrap(),
        "item_id\ttext\n7\tRed lamp. Genres: comedy, drama\n9\tBlue toy. Genres: drama\n"
    );
    // A bad flag value fails with a message, not a panic.
    let o = run(&["--replace", "nonsense"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("COL=FROM=TO"));
}

/// String ids (Amazon ASINs) survive embed -> tokenize: embed writes them to
/// `OUT.item_ids.txt`, the embedding loader reads them back, codes.tsv carries them.
#[test]
fn string_ids_flow_from_embed_into_tokenizer_codes() {
    use onerec::tokenizer::{tokenize_files, Method, SemanticIds, TokenizeOptions};
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    write_tiny_bert(&model, false, 11);
    let titles = [
        "Red nail polish",
        "Blue nail polish",
        "Toy story",
        "The blue lamp",
        "Red lamp",
        "Story of the toys",
        "Comedy of the lamp",
        "Drama",
        "Blue red blue",
        "Polish the toys",
        "A lamp",
        "Nail",
    ];
    let asins: Vec<String> =
        (0..titles.len()).map(|i| format!("B00{:05}X{}", 7 * i + 3, (b'A' + i as u8) as char)).collect();
    let mut tsv = String::from("asin\ttitle\n");
    for (a, t) in asins.iter().zip(titles) {
        tsv.push_str(&format!("{a}\t{t}\n"));
    }
    let items = dir.path().join("items.tsv");
    write(&items, &tsv);
    let out = dir.path().join("text.safetensors");
    let mut opts = EmbedOptions::new(&model, &items, "{title}", &out);
    opts.chunk_size = 5;
    let r = embed_items(&opts).unwrap();
    assert_eq!(r.ids_file.as_deref(), Some(onerec::data::embeddings::ids_sidecar(&out).as_path()));
    assert_eq!(Embeddings::load(&out).unwrap().item_ids, asins);

    let tok = dir.path().join("tok");
    let topts = TokenizeOptions {
        method: Method::RqKmeans,
        levels: 2,
        codebook_sizes: vec![3],
        seed: 1,
        ..TokenizeOptions::default()
    };
    tokenize_files(&topts, &[("text".to_string(), out.clone())], None, &tok).unwrap();
    let codes = std::fs::read_to_string(tok.join("codes.tsv")).unwrap();
    let listed: Vec<&str> = codes.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(listed, asins);
    let sids = SemanticIds::load(&tok).unwrap();
    for a in &asins {
        let row = sids.row_of(a).unwrap_or_else(|| panic!("{a} has no semantic id"));
        assert_eq!(sids.item(sids.codes(row)), Some(row));
    }
    // A sidecar that does not match the rows is a clear error naming it.
    std::fs::write(onerec::data::embeddings::ids_sidecar(&out), "B1\nB2\n").unwrap();
    let e = format!("{:#}", Embeddings::load(&out).unwrap_err());
    assert!(e.contains("item_ids.txt") && e.contains("2 ids for 12"), "{e}");
}
