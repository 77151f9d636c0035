//! Tokenizer tests: unique paths, round trips, balanced sizes, cluster quality,
//! determinism, bad inputs, alignment, RQ-VAE, and a Beauty run when the data exists.

use onerec::data::embeddings::save_safetensors;
use onerec::data::{Dataset, Embeddings};
use onerec::tokenizer::{fit, tokenize_files, Collisions, Method, SemanticIds, TokenizeOptions};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use std::path::{Path, PathBuf};

/// Gaussian clusters in a latent space, embedded into `d` dims by a random linear map.
/// Returns the embeddings and each item's latent vector.
fn clusters(n: usize, centres: usize, latent: usize, d: usize, seed: u64) -> (Embeddings, Vec<Vec<f32>>) {
    let mut rng = onerec::util::rng::stream(seed, "test.clusters");
    let unit = Normal::new(0.0f32, 1.0).unwrap();
    let c: Vec<Vec<f32>> = (0..centres).map(|_| (0..latent).map(|_| unit.sample(&mut rng) * 3.0).collect()).collect();
    let map: Vec<f32> = (0..latent * d).map(|_| unit.sample(&mut rng)).collect();
    let mut lat = Vec::new();
    let mut data = Vec::with_capacity(n * d);
    for _ in 0..n {
        let k = rng.gen_range(0..centres);
        let z: Vec<f32> = c[k].iter().map(|v| v + unit.sample(&mut rng) * 0.3).collect();
        for j in 0..d {
            let mut s = 0.0;
            for (t, zv) in z.iter().enumerate() {
                s += zv * map[t * d + j];
            }
            data.push(s + unit.sample(&mut rng) * 0.05);
        }
        lat.push(z);
    }
    (Embeddings { item_ids: (0..n).map(|i| (1000 + i).to_string()).collect(), data, n, d }, lat)
}

fn opts(method: Method, levels: usize, sizes: Vec<usize>) -> TokenizeOptions {
    TokenizeOptions { method, levels, codebook_sizes: sizes, seed: 7, iters: 10, ..Default::default() }
}

fn assert_roundtrip(ids: &SemanticIds) {
    let mut seen = std::collections::HashSet::new();
    for i in 0..ids.n_items() as u32 {
        assert!(seen.insert(ids.codes(i).to_vec()), "item {i} shares its path");
        assert_eq!(ids.item(ids.codes(i)), Some(i), "item(codes({i}))");
    }
}

#[test]
fn unique_paths_roundtrip_and_invalid_paths() {
    let (e, _) = clusters(600, 10, 6, 24, 1);
    // 8^3 = 512 cells < 600 items: collisions are certain, disambiguation resolves them.
    let f = fit(&opts(Method::RqKmeans, 3, vec![8]), &[("text".into(), e)], None).unwrap();
    assert!(f.metrics.collisions_before > 0);
    assert!(f.metrics.unique_paths);
    assert_eq!(f.ids.levels(), 4, "a disambiguation level is added");
    assert_eq!(f.ids.codebook_sizes[3], f.metrics.longest_chain);
    assert_roundtrip(&f.ids);
    assert_eq!(f.ids.item(&[0, 0]), None, "wrong length");
    assert_eq!(f.ids.item(&[8, 0, 0, 0]), None, "code out of range");
    let sizes = &f.ids.codebook_sizes;
    let all: std::collections::HashSet<Vec<u32>> = (0..600).map(|i| f.ids.codes(i).to_vec()).collect();
    let missing = (0..sizes[0] as u32)
        .flat_map(|a| (0..8).map(move |b| vec![a, b, 0, 0]))
        .find(|p| !all.contains(p))
        .expect("some path is unused");
    assert_eq!(f.ids.item(&missing), None, "unused path");
    assert_eq!(f.metrics.utilization.len(), 4);
    assert_eq!(f.metrics.n_items, 600);
}

#[test]
fn reassign_avoids_extra_level_when_room() {
    let (e, _) = clusters(300, 6, 5, 16, 2);
    let mut o = opts(Method::RqKmeans, 2, vec![16, 64]);
    o.collisions = Collisions::Reassign;
    let f = fit(&o, &[("text".into(), e)], None).unwrap();
    assert!(f.metrics.collisions_before > 0, "test needs collisions");
    assert_eq!(f.metrics.reassigned, f.metrics.collisions_before);
    assert_eq!(f.ids.levels(), 2, "no disambiguation level needed");
    assert_roundtrip(&f.ids);
}

#[test]
fn balanced_levels_have_exact_sizes() {
    let (e, _) = clusters(503, 4, 5, 16, 3);
    let sizes = vec![7, 5, 6];
    let f = fit(&opts(Method::BalancedRqKmeans, 3, sizes.clone()), &[("text".into(), e)], None).unwrap();
    for (l, &k) in sizes.iter().enumerate() {
        let mut c = vec![0usize; k];
        for i in 0..503u32 {
            c[f.ids.codes(i)[l] as usize] += 1;
        }
        let (lo, hi) = (503 / k, 503_usize.div_ceil(k));
        assert!(c.iter().all(|&v| v == lo || v == hi), "level {l}: sizes {c:?} not in {{{lo}, {hi}}}");
        assert_eq!(f.metrics.utilization[l], 1.0);
    }
    assert_roundtrip(&f.ids);
}

#[test]
fn first_level_codes_group_latent_neighbours() {
    let (e, lat) = clusters(800, 12, 8, 32, 4);
    for method in [Method::RqKmeans, Method::BalancedRqKmeans] {
        let f = fit(&opts(method, 2, vec![12, 8]), &[("text".into(), e.clone())], None).unwrap();
        let dist = |a: usize, b: usize| lat[a].iter().zip(&lat[b]).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt();
        let (mut same, mut ns, mut rand_sum, mut nr) = (0f32, 0, 0f32, 0);
        for a in 0..800 {
            for b in (a + 1..800).step_by(7) {
                if f.ids.codes(a as u32)[0] == f.ids.codes(b as u32)[0] {
                    same += dist(a, b);
                    ns += 1;
                }
                rand_sum += dist(a, b);
                nr += 1;
            }
        }
        let (same, rnd) = (same / ns as f32, rand_sum / nr as f32);
        assert!(same < 0.5 * rnd, "{method:?}: same-code pairs {same:.3} vs random {rnd:.3}");
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn write_emb(dir: &Path, name: &str, e: &Embeddings) -> PathBuf {
    let p = dir.join(name);
    save_safetensors(&p, e, false).unwrap();
    p
}

#[test]
fn same_inputs_and_seed_give_identical_artifacts() {
    let t = tmp();
    let (e, _) = clusters(400, 8, 6, 20, 5);
    let (img, _) = clusters(400, 5, 4, 12, 6);
    let p1 = write_emb(t.path(), "text.safetensors", &e);
    let p2 = write_emb(t.path(), "image.safetensors", &img);
    let mut o = opts(Method::BalancedRqKmeans, 3, vec![8, 8, 4]);
    o.pca.push(("text".into(), 10));
    o.weights.push(("image".into(), 0.5));
    let inputs = vec![("text".to_string(), p1), ("image".to_string(), p2)];
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    tokenize_files(&o, &inputs, None, &a).unwrap();
    let fb = tokenize_files(&o, &inputs, None, &b).unwrap();
    assert_eq!(fb.fused_dim, 10 + 12);
    // Every file byte for byte, except the wall-clock timings.
    let names = |p: &Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&a), ["codebooks.safetensors", "codes.tsv", "manifest.json", "timings.json"]);
    assert_eq!(names(&a), names(&b));
    for f in names(&a).iter().filter(|f| *f != "timings.json") {
        assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap(), "{f} differs");
    }
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("manifest.json")).unwrap()).unwrap();
    assert!(m.get("timings").is_none(), "timings belong in timings.json");
    let timings: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("timings.json")).unwrap()).unwrap();
    assert!(timings["total"].as_f64().is_some(), "{timings}");
    // codes.tsv is exactly `item_id<TAB>c1,c2,...` per line (no header).
    let codes = std::fs::read_to_string(a.join("codes.tsv")).unwrap();
    assert_eq!(codes.lines().count(), 400);
    for line in codes.lines() {
        let (id, path) = line.split_once('\t').unwrap();
        assert!(!id.is_empty() && !id.starts_with('#'), "{line}");
        assert!(path.split(',').all(|c| c.parse::<u32>().is_ok()), "{line}");
    }
    assert_eq!(m["codes_sha256"].as_str().unwrap(), SemanticIds::fingerprint(&a).unwrap());
    for key in ["utilization", "entropy_bits", "collisions_before", "unique_paths", "n_items"] {
        assert!(m["metrics"].get(key).is_some(), "manifest metrics lacks {key}");
    }
    assert_eq!(m["inputs"][0]["sha256"].as_str().unwrap().len(), 64);
    let ids = SemanticIds::load(&a).unwrap();
    assert_eq!(ids.codes, fb.ids.codes);
    assert_roundtrip(&ids);
    // A different seed gives different codebooks.
    let mut o2 = o.clone();
    o2.seed = 8;
    let c = t.path().join("c");
    tokenize_files(&o2, &inputs, None, &c).unwrap();
    assert_ne!(
        std::fs::read(a.join("codebooks.safetensors")).unwrap(),
        std::fs::read(c.join("codebooks.safetensors")).unwrap()
    );
}

/// codes.tsv holds only `item_id<TAB>codes` lines; the sizes come from manifest.json.
/// Directories written with the old `# levels=` header still load and fingerprint the same.
#[test]
fn codes_tsv_has_no_header_and_legacy_headers_still_load() {
    let t = tmp();
    let ids = SemanticIds::new(vec!["a".into(), "b9".into(), "c".into()], vec![4, 3], vec![0, 0, 3, 2, 1, 0]).unwrap();
    let dir = t.path().join("tok");
    std::fs::create_dir_all(&dir).unwrap();
    ids.save_codes(&dir).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("codes.tsv")).unwrap(), "a\t0,0\nb9\t3,2\nc\t1,0\n");
    let back = SemanticIds::load(&dir).unwrap();
    assert_eq!((back.codebook_sizes.clone(), back.codes.clone()), (vec![4, 3], ids.codes.clone()));
    let fp = SemanticIds::fingerprint(&dir).unwrap();
    assert_eq!(fp, onerec::util::io::sha256_file(&dir.join("codes.tsv")).unwrap());
    assert_eq!(fp, onerec::model::checkpoint::fingerprint(&ids));
    // Without the manifest the sizes are unknown: a clear error.
    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    let e = format!("{:#}", SemanticIds::load(&dir).unwrap_err());
    assert!(e.contains("codebook sizes"), "{e}");
    // An old file with a header line: loads, same fingerprint as the new format.
    std::fs::write(dir.join("codes.tsv"), "# levels=4,3\na\t0,0\nb9\t3,2\nc\t1,0\n").unwrap();
    let old = SemanticIds::load(&dir).unwrap();
    assert_eq!((old.codebook_sizes, old.codes), (vec![4, 3], ids.codes.clone()));
    assert_eq!(SemanticIds::fingerprint(&dir).unwrap(), fp);
    // A header that disagrees with the manifest is refused.
    std::fs::write(dir.join("manifest.json"), r#"{"sizes": [5, 3]}"#).unwrap();
    let e = format!("{:#}", SemanticIds::load(&dir).unwrap_err());
    assert!(e.contains("disagree"), "{e}");
}

#[test]
fn modalities_are_matched_by_item_id() {
    let (e, _) = clusters(200, 5, 4, 12, 9);
    let (img, _) = clusters(200, 4, 4, 8, 10);
    // The second modality stored in reverse row order must fuse identically.
    let mut rev = img.clone();
    rev.item_ids.reverse();
    rev.data = (0..200).rev().flat_map(|i| img.row(i).to_vec()).collect();
    let o = opts(Method::RqKmeans, 2, vec![6, 6]);
    let f1 = fit(&o, &[("t".into(), e.clone()), ("i".into(), img)], None).unwrap();
    let f2 = fit(&o, &[("t".into(), e.clone()), ("i".into(), rev.clone())], None).unwrap();
    assert_eq!(f1.ids.codes, f2.ids.codes);
    // Same row count but a different item set is an error naming the item.
    rev.item_ids[5] = "no-such-item".into();
    let err = fit(&o, &[("t".into(), e), ("i".into(), rev)], None).err().expect("mismatched item sets");
    assert!(format!("{err:#}").contains("no-such-item"), "{err:#}");
}

fn expect_err(o: &TokenizeOptions, inputs: &[(String, PathBuf)], out: &Path, want: &str) {
    let err =
        tokenize_files(o, inputs, None, out).err().unwrap_or_else(|| panic!("expected an error mentioning {want}"));
    let msg = format!("{err:#}");
    assert!(msg.contains(want), "error `{msg}` does not mention `{want}`");
    assert!(!out.exists(), "artifact dir written despite error");
}

#[test]
fn bad_inputs_give_clear_errors_and_no_artifact() {
    let t = tmp();
    let out = t.path().join("out");
    let o = opts(Method::RqKmeans, 2, vec![4]);
    let (e, _) = clusters(50, 3, 3, 8, 11);
    let good = write_emb(t.path(), "good.safetensors", &e);
    // Wrong tensor name.
    let bytes: Vec<u8> = e.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![50, 8], &bytes).unwrap();
    let wrong = t.path().join("wrong.safetensors");
    std::fs::write(&wrong, safetensors::serialize(vec![("vectors", view)], None).unwrap()).unwrap();
    expect_err(&o, &[("text".into(), wrong)], &out, "embeddings");
    // Mismatched row counts between modalities.
    let (small, _) = clusters(40, 3, 3, 8, 12);
    let small = write_emb(t.path(), "small.safetensors", &small);
    expect_err(&o, &[("text".into(), good.clone()), ("image".into(), small)], &out, "rows");
    // NaN and inf rows.
    let mut bad = e.clone();
    bad.data[3 * 8 + 2] = f32::NAN;
    let nan = write_emb(t.path(), "nan.safetensors", &bad);
    expect_err(&o, &[("text".into(), nan)], &out, "NaN");
    bad.data[3 * 8 + 2] = f32::INFINITY;
    let inf = write_emb(t.path(), "inf.safetensors", &bad);
    expect_err(&o, &[("text".into(), inf)], &out, "row 3");
    // K > N.
    expect_err(
        &opts(Method::BalancedRqKmeans, 2, vec![64]),
        &[("text".into(), good.clone())],
        &out,
        "exceeds the number of items",
    );
    expect_err(
        &opts(Method::RqVae, 2, vec![64]),
        &[("text".into(), good.clone())],
        &out,
        "exceeds the number of items",
    );
    // Zero-length file.
    let empty = t.path().join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    expect_err(&o, &[("text".into(), empty)], &out, "empty.safetensors");
    // Sizes that do not match the levels; unknown modality in --pca.
    expect_err(&opts(Method::RqKmeans, 3, vec![4, 4]), &[("text".into(), good.clone())], &out, "--levels");
    let mut p = o.clone();
    p.pca.push(("image".into(), 4));
    expect_err(&p, &[("text".into(), good)], &out, "image");
}

#[test]
fn alignment_uses_training_cooccurrence() {
    let (e, _) = clusters(120, 6, 4, 16, 13);
    // Histories over dense ids 0..120; the dataset's ids are the embeddings' ids.
    let mut rng = onerec::util::rng::stream(3, "test.hist");
    let hist: Vec<Vec<u32>> = (0..80).map(|_| (0..8).map(|_| rng.gen_range(0..120u32)).collect()).collect();
    let mut ds = Dataset::from_histories(&hist, 120);
    ds.item_ids = e.item_ids.clone();
    let (pairs, missing) = onerec::tokenizer::align::pairs(&ds, &e.item_ids, 2);
    assert_eq!(missing, 0);
    // Train part = first 6 of 8 items: pairs at distance 1 and 2 only within it.
    let expected: usize = hist
        .iter()
        .map(|h| (0..6).map(|i| (i + 1..6.min(i + 3)).filter(|&j| h[i] != h[j]).count()).sum::<usize>())
        .sum();
    assert_eq!(pairs.len(), expected);
    let mut o = opts(Method::RqKmeans, 2, vec![6, 6]);
    o.align.epochs = 20;
    o.align.batch = 64;
    let f = fit(&o, &[("text".into(), e)], Some(&ds)).unwrap();
    let r = f.align.as_ref().unwrap();
    assert!(r.steps > 0 && r.loss_last < r.loss_first, "InfoNCE did not decrease: {r:?}");
    assert!(f.metrics.unique_paths);
}

#[test]
fn rq_vae_trains_and_gives_unique_paths() {
    let (e, _) = clusters(300, 6, 4, 16, 14);
    let mut o = opts(Method::RqVae, 2, vec![8, 8]);
    o.rqvae.epochs = 40;
    o.rqvae.hidden = 32;
    o.rqvae.latent = 8;
    o.rqvae.batch = 64;
    let f = fit(&o, &[("text".into(), e)], None).unwrap();
    let (first, last) = (f.quantizer["loss_first"].as_f64().unwrap(), f.quantizer["loss_last"].as_f64().unwrap());
    assert!(last < first, "rq-vae loss {first} -> {last}");
    assert!(
        f.metrics.relative_reconstruction_error < 0.5,
        "rel err {} loss {first} -> {last}",
        f.metrics.relative_reconstruction_error
    );
    assert!(f.metrics.utilization[0] > 0.5, "{:?}", f.metrics.utilization);
    assert!(f.tensors.iter().any(|t| t.0 == "rqvae.decoder.1.weight"));
    assert_roundtrip(&f.ids);
}

#[test]
fn cli_contract_parses() {
    use clap::Parser;
    let cli = onerec::cli::Cli::try_parse_from([
        "onerec",
        "tokenize",
        "--embeddings",
        "text=a.safetensors",
        "--embeddings",
        "image=b.npy",
        "--method",
        "rq-kmeans",
        "--levels",
        "3",
        "--codebook-size",
        "256,256,128",
        "--seed",
        "5",
        "--out",
        "dir",
    ])
    .unwrap();
    let onerec::cli::Command::Tokenize(a) = cli.command else { panic!("not tokenize") };
    let (o, inputs) = onerec::cli::tokenize::options(&a).unwrap();
    assert_eq!(o.sizes().unwrap(), vec![256, 256, 128]);
    assert_eq!(o.method, Method::RqKmeans);
    assert_eq!(inputs[1], ("image".to_string(), PathBuf::from("b.npy")));
}

#[test]
fn beauty_balanced_full_utilization() {
    let Some(path) = crate::common::shared_data(
        "amazon-beauty/item_text_embeddings.safetensors",
        "beauty_balanced_full_utilization",
    ) else {
        return;
    };
    let e = Embeddings::load(&path).unwrap();
    let mut o = opts(Method::BalancedRqKmeans, 3, vec![256]);
    o.iters = 4;
    let f = fit(&o, &[("text".into(), e)], None).unwrap();
    assert!(f.metrics.utilization.iter().all(|&u| u == 1.0), "{:?}", f.metrics.utilization);
    assert!(f.metrics.unique_paths);
    assert_eq!(f.metrics.n_items, 12101);
    assert_eq!((f.metrics.items_per_first_code_min, f.metrics.items_per_first_code_max), (47, 48));
    assert_roundtrip(&f.ids);
}

#[test]
fn alignment_pulls_cooccurring_items_together() {
    let (e, _) = clusters(100, 5, 4, 16, 15);
    let mut x = e.data.clone();
    onerec::tokenizer::fuse::l2_normalize(&mut x, 16);
    // Items 2i and 2i+1 (i < 20) always appear next to each other; the rest are noise.
    let mut rng = onerec::util::rng::stream(5, "test.align");
    let hist: Vec<Vec<u32>> = (0..200)
        .map(|_| {
            let i = rng.gen_range(0..20u32);
            let mut h = vec![rng.gen_range(40..100u32), 2 * i, 2 * i + 1, rng.gen_range(40..100u32)];
            h.extend([0, 0]); // valid/test targets: never seen by alignment
            h
        })
        .collect();
    let mut ds = Dataset::from_histories(&hist, 100);
    ds.item_ids = e.item_ids.clone();
    let o = onerec::tokenizer::AlignOptions { window: 1, epochs: 30, batch: 64, lr: 5e-3, ..Default::default() };
    let (y, rep) = onerec::tokenizer::align::align(&x, 100, 16, &e.item_ids, &ds, &o, 1).unwrap();
    let cos = |v: &[f32], a: usize, b: usize| {
        let (p, q) = (&v[a * 16..(a + 1) * 16], &v[b * 16..(b + 1) * 16]);
        let dot: f32 = p.iter().zip(q).map(|(s, t)| s * t).sum();
        dot / (p.iter().map(|s| s * s).sum::<f32>().sqrt() * q.iter().map(|s| s * s).sum::<f32>().sqrt())
    };
    let before: f32 = (0..20).map(|i| cos(&x, 2 * i, 2 * i + 1)).sum::<f32>() / 20.0;
    let after: f32 = (0..20).map(|i| cos(&y, 2 * i, 2 * i + 1)).sum::<f32>() / 20.0;
    eprintln!("partners cosine {before:.3} -> {after:.3}");
    assert!(after > before + 0.1, "partners' cosine {before:.3} -> {after:.3} ({rep:?})");
}

#[test]
fn pca_recovers_a_low_rank_subspace() {
    // Rank-3 data in 20 dims (plus tiny noise): 3 components keep ~all the variance,
    // and pairwise distances survive the projection.
    let (e, _) = clusters(300, 6, 3, 20, 16);
    let (p, explained) = onerec::tokenizer::fuse::fit_pca(&e.data, 300, 20, 3, 1, "t");
    assert!(explained > 0.99, "explained variance {explained}");
    let y = p.apply(&e.data, 20);
    let d = |v: &[f32], w: usize, a: usize, b: usize| {
        v[a * w..(a + 1) * w].iter().zip(&v[b * w..(b + 1) * w]).map(|(s, t)| (s - t) * (s - t)).sum::<f32>().sqrt()
    };
    for (a, b) in [(0, 1), (5, 77), (120, 299)] {
        let (orig, proj) = (d(&e.data, 20, a, b), d(&y, 3, a, b));
        assert!((orig - proj).abs() < 0.02 * orig.max(1.0), "{a},{b}: {orig} vs {proj}");
    }
}
