//! Pretraining tests on a toy world: overfitting, outputs, determinism, resume,
//! mismatched tokenizers, train/valid separation.

use onerec::config::Config;
use onerec::data::Dataset;
use onerec::model::checkpoint;
use onerec::tokenizer::SemanticIds;
use onerec::train::{self, data, Hooks};
use std::path::Path;

const ITEMS: u32 = 40;

/// 32 users; the next item is a fixed function of the previous one, so the task is
/// learnable to near-zero loss.
fn toy() -> (Dataset, SemanticIds) {
    let hs: Vec<Vec<u32>> = (0..32u32)
        .map(|u| {
            let mut h = vec![u % ITEMS];
            for _ in 0..7 {
                let last = *h.last().unwrap();
                h.push((last * 7 + 3) % ITEMS);
            }
            h
        })
        .collect();
    let ds = Dataset::from_histories(&hs, ITEMS as usize);
    // Tokenizer rows in reverse order of the dataset's, to exercise re-indexing.
    let ids: Vec<String> = (0..ITEMS).rev().map(|i| i.to_string()).collect();
    let codes = (0..ITEMS).rev().flat_map(|i| [i % 4, (i / 4) % 4, i / 16]).collect();
    (ds, SemanticIds::new(ids, vec![4, 4, 3], codes).unwrap())
}

fn cfg(steps: usize, eval_every: usize, extra: &[&str]) -> Config {
    let mut ov: Vec<String> = [
        "model.d_model=32",
        "model.heads=4",
        "model.enc_layers=1",
        "model.dec_layers=2",
        "model.ffn_hidden=64",
        "model.history_len=4",
        "model.moe.experts=4",
        "model.moe.top_k=2",
        "model.moe.expert_hidden=32",
        "train.batch_size=32",
        "train.lr=0.01",
        "train.warmup_steps=10",
        "train.log_every=1000",
        // These tests are about the loss-driven loop; the ranking eval has its own test.
        "train.select_metric=\"valid_loss\"",
        "train.rank_users=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ov.push(format!("train.max_steps={steps}"));
    ov.push(format!("train.eval_every={eval_every}"));
    ov.extend(extra.iter().map(|s| s.to_string()));
    Config::load("tiny", &ov).unwrap()
}

fn rows(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn train_loss_of(out: &Path, ds: &Dataset) -> f32 {
    let ck = checkpoint::load(&out.join("last")).unwrap();
    let ex = data::train_examples(ds, 1);
    let b = data::train_batch(&ck.model, ds, &ex, 1).unwrap();
    ck.model.loss(&b).unwrap().ce.to_scalar::<f32>().unwrap()
}

#[test]
fn tiny_model_overfits_toy_set_and_writes_outputs() {
    let (ds, sids) = toy();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let s = train::pretrain(&(cfg(150, 50, &[])).pretrain_spec().unwrap(), &ds, &sids, &out, false).unwrap();
    assert_eq!(s.steps, 150);
    let loss = train_loss_of(&out, &ds);
    assert!(loss < 0.05, "training loss {loss} not near zero");
    let r = rows(&out);
    assert_eq!(r.len(), 3);
    for (i, row) in r.iter().enumerate() {
        assert_eq!(row["step"].as_u64(), Some(50 * (i as u64 + 1)));
        assert!(row["train_loss"].as_f64().unwrap().is_finite());
        assert!(row["valid_loss"].as_f64().unwrap().is_finite());
    }
    assert!(r[2]["train_loss"].as_f64().unwrap() < r[0]["train_loss"].as_f64().unwrap());
    assert!(out.join("config.toml").exists());
    // The saved best checkpoint is self-contained and matches the dataset's dense ids.
    let ck = checkpoint::load(&out).unwrap();
    assert_eq!(ck.semantic_ids.item_ids, ds.item_ids);
    assert_eq!(ck.semantic_ids.codes(5), &[1, 1, 0]);
    assert!(ck.dir.ends_with("best"));
    // A second run without --resume refuses to clobber the first.
    let e = format!(
        "{:#}",
        train::pretrain(&(cfg(150, 50, &[])).pretrain_spec().unwrap(), &ds, &sids, &out, false).unwrap_err()
    );
    assert!(e.contains("--resume"), "{e}");
}

#[test]
fn resume_matches_uninterrupted_run_and_is_deterministic() {
    let (ds, sids) = toy();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    let cf =
        cfg(40, 20, &["model.moe.balance=\"bias\"", "model.dropout=0.1", "train.grad_accum=2", "train.batch_size=16"]);
    train::pretrain(&cf.pretrain_spec().unwrap(), &ds, &sids, &a, false).unwrap();
    let hooks = Hooks { stop_after: Some(20), ..Default::default() };
    let s = train::pretrain_with(&cf.pretrain_spec().unwrap(), &ds, &sids, &b, false, &hooks).unwrap();
    assert_eq!(s.steps, 20);
    assert_eq!(rows(&b).len(), 1);
    train::pretrain(&cf.pretrain_spec().unwrap(), &ds, &sids, &b, true).unwrap();
    let (ra, rb) = (rows(&a), rows(&b));
    assert_eq!(ra.len(), 2);
    assert_eq!(rb.len(), 2);
    for k in ["train_loss", "valid_loss"] {
        let (x, y) = (ra[1][k].as_f64().unwrap(), rb[1][k].as_f64().unwrap());
        assert!((x - y).abs() < 1e-4, "{k}: {x} vs {y}");
    }
    // Same seed, same bytes.
    train::pretrain(&cf.pretrain_spec().unwrap(), &ds, &sids, &c, false).unwrap();
    let read = |p: &Path| std::fs::read(p.join("last/model.safetensors")).unwrap();
    assert_eq!(read(&a), read(&c));
    assert_eq!(std::fs::read(a.join("metrics.jsonl")).unwrap(), std::fs::read(c.join("metrics.jsonl")).unwrap());
}

#[test]
fn mismatched_tokenizer_and_bad_config_are_refused() {
    let (ds, sids) = toy();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let cf = cfg(4, 2, &[]);
    let hooks = Hooks { stop_after: Some(2), ..Default::default() };
    train::pretrain_with(&cf.pretrain_spec().unwrap(), &ds, &sids, &out, false, &hooks).unwrap();
    // Another tokenizer: two items swap paths.
    let mut codes = sids.codes.clone();
    codes.swap(0, 3);
    let other = SemanticIds::new(sids.item_ids.clone(), sids.codebook_sizes.clone(), codes).unwrap();
    let e = format!("{:#}", train::pretrain(&cf.pretrain_spec().unwrap(), &ds, &other, &out, true).unwrap_err());
    assert!(e.contains("tokenizer mismatch"), "{e}");
    let ck = checkpoint::load(&out.join("last")).unwrap();
    assert!(checkpoint::check_tokenizer(&ck.meta, &ck.dir, &sids).is_ok());
    // A different architecture cannot resume.
    let e = format!(
        "{:#}",
        train::pretrain(&(cfg(4, 2, &["model.d_model=64"])).pretrain_spec().unwrap(), &ds, &sids, &out, true)
            .unwrap_err()
    );
    assert!(e.contains("[model]"), "{e}");
    // Session longer than the decoder has positions for.
    let e = format!(
        "{:#}",
        train::pretrain(
            &(cfg(4, 2, &["train.session_len=9"])).pretrain_spec().unwrap(),
            &ds,
            &sids,
            &dir.path().join("x"),
            false
        )
        .unwrap_err()
    );
    assert!(e.contains("max_session_items"), "{e}");
    let e = format!("{:#}", Config::load("tiny", &["model.moe.top_k=9".into()]).unwrap_err());
    assert!(e.contains("top_k"), "{e}");
}

#[test]
fn training_examples_stay_inside_the_training_part() {
    let (ds, _) = toy();
    let (_, sids) = toy();
    let dense = sids.reindexed(&ds.item_ids).unwrap();
    let mc = cfg(1, 1, &[]).model;
    let (m, _) =
        onerec::model::OneRecModel::build(&mc, onerec::model::Vocab::new(vec![4, 4, 3]), dense.codes.clone(), 1)
            .unwrap();
    let ex = data::train_examples(&ds, 1);
    assert_eq!(ex.len(), 32 * 5); // histories of 8: train part 6, positions 1..6
    for e in &ex {
        let sp = ds.split(e.user as usize);
        assert!((e.pos as usize) < sp.train.end);
        // session_len 3: at most up to the end of the training part, then EOS.
        let b = data::train_batch(&m, &ds, &[*e], 3).unwrap();
        let n_items = (sp.train.end - e.pos as usize).min(3);
        assert_eq!(b.tokens() as usize, n_items * 3 + 1);
        assert_eq!(b.targets[n_items * 3], onerec::model::Vocab::EOS);
        let h = ds.history(e.user as usize);
        let want: Vec<u32> =
            h[e.pos as usize..e.pos as usize + n_items].iter().flat_map(|&i| m.item_tokens(i).unwrap()).collect();
        assert_eq!(&b.targets[..n_items * 3], want.as_slice());
    }
    assert_eq!(data::valid_examples(&ds, 0).len(), 32);
    assert!(data::valid_examples(&ds, 0).iter().all(|&(u, v)| v as usize == ds.split(u as usize).valid.unwrap()));
}

#[test]
fn cli_parses_contract_flags_and_reports_missing_data() {
    use clap::Parser;
    let cli = onerec::cli::Cli::try_parse_from([
        "onerec",
        "pretrain",
        "--config",
        "tiny",
        "--data",
        "/nonexistent/ds",
        "--tokenizer",
        "/nonexistent/tok",
        "--out",
        "/tmp/x",
        "--resume",
        "--set",
        "train.lr=1e-3",
        "--set",
        "model.d_model=32",
    ])
    .unwrap();
    match cli.command {
        onerec::cli::Command::Pretrain(a) => {
            assert!(a.resume);
            assert_eq!(a.set.len(), 2);
            let e = format!("{:#}", onerec::cli::pretrain::run(a).unwrap_err());
            assert!(e.contains("/nonexistent/ds"), "{e}");
        }
        _ => panic!("not pretrain"),
    }
}

#[test]
fn eval_hook_metric_selects_best() {
    let (ds, sids) = toy();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // A made-up metric that peaks at the second eval (step 4): best/ must be that step.
    let calls = std::cell::Cell::new(0);
    let hook = |_: &onerec::model::OneRecModel| {
        calls.set(calls.get() + 1);
        let mut m = serde_json::Map::new();
        m.insert("recall@10".into(), serde_json::json!(if calls.get() == 2 { 0.9 } else { 0.1 }));
        Ok(m)
    };
    let hooks = Hooks { eval: Some(&hook), ..Default::default() };
    let s = train::pretrain_with(
        &(cfg(6, 2, &["train.select_metric=\"recall@10\""])).pretrain_spec().unwrap(),
        &ds,
        &sids,
        &out,
        false,
        &hooks,
    )
    .unwrap();
    assert_eq!(s.best_step, 4);
    assert_eq!(checkpoint::load(&out).unwrap().meta.step, 4);
    assert_eq!(rows(&out)[1]["recall@10"].as_f64(), Some(0.9));
    // An unknown metric is refused when the config loads, naming the key and the choices.
    let e = format!("{:#}", Config::load("tiny", &["train.select_metric=\"ndcg\"".into()]).unwrap_err());
    assert!(e.contains("train.select_metric") && e.contains("\"ndcg\"") && e.contains("\"valid_loss\""), "{e}");
    assert!(e.contains("\"ndcg@10\"") && e.contains("\"recall@10\"") && e.contains("\"train_loss\""), "{e}");
    // Ranking metric without the ranking eval: refused before any training, not after.
    let e = format!(
        "{:#}",
        train::pretrain(
            &(cfg(2, 2, &["train.select_metric=\"ndcg@10\""])).pretrain_spec().unwrap(),
            &ds,
            &sids,
            &dir.path().join("z"),
            false
        )
        .unwrap_err()
    );
    assert!(e.contains("rank_users"), "{e}");
    assert!(!dir.path().join("z").join("best").exists());
}

#[test]
fn length_bucketed_order_is_a_seeded_permutation_with_less_padding() {
    use onerec::train::data::{epoch_order, epoch_order_bucketed};
    let lens: Vec<u32> = (0..1003u32).map(|i| (i * 7919) % 20 + 1).collect();
    let (batch, window) = (32, 8);
    let a = epoch_order_bucketed(&lens, batch, window, 5, 0);
    assert_eq!(a, epoch_order_bucketed(&lens, batch, window, 5, 0), "same seed, same order");
    assert_ne!(a, epoch_order_bucketed(&lens, batch, window, 5, 1), "epochs differ");
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..1003u32).collect::<Vec<_>>(), "a permutation");
    // Padded encoder positions: sum over batches of (batch size x longest history).
    let padded = |o: &[u32]| -> u64 {
        o.chunks(batch).map(|c| c.len() as u64 * c.iter().map(|&i| lens[i as usize] as u64).max().unwrap()).sum()
    };
    let plain = epoch_order(lens.len(), 5, 0);
    assert!(padded(&a) * 3 < padded(&plain) * 2, "bucketed {} vs plain {}", padded(&a), padded(&plain));
    // The partial batch (1003 = 31 x 32 + 11) stays last.
    assert_eq!(a.len() % batch, 11);
}

#[test]
fn ranking_eval_options_follow_the_train_config() {
    let c = cfg(2, 2, &["train.rank_users=300", "train.rank_beam=30", "train.rank_exclude_history=true"]);
    let o = train::rank_eval_options(&c.train);
    assert!(o.exclude_history, "best/ selection under the --exclude-history protocol");
    assert_eq!((o.max_users, o.beam, o.ks.clone(), o.session_len), (Some(300), 30, vec![10], 0));
    // Off by default, like `onerec eval`.
    assert!(!train::rank_eval_options(&cfg(2, 2, &[]).train).exclude_history);
}

#[test]
fn fused_ranking_eval_selects_best_and_needs_the_item_head() {
    let (ds, sids) = toy();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let head = ["model.item_id_embedding=true", "model.item_head_weight=1"];
    let rank = ["train.rank_users=32", "train.select_metric=\"ndcg@10\"", "train.rank_item_head_weight=3"];
    let c = cfg(6, 6, &[&head[..], &rank[..]].concat());
    let o = train::rank_eval_options(&c.train);
    assert_eq!(o.fusion, Some(onerec::generate::fused::Fusion { weight: 3.0, candidates: c.train.rank_beam }));
    train::pretrain(&c.pretrain_spec().unwrap(), &ds, &sids, &out, false).unwrap();
    // The one eval row's NDCG@10 is the fused ranking of the saved best/ model.
    let row = &rows(&out)[0];
    let ck = checkpoint::load(&out).unwrap();
    let vocab = onerec::model::Vocab::new(ck.semantic_ids.codebook_sizes.clone());
    let rep = onerec::eval::evaluate(&ck.model, &ck.semantic_ids, &vocab, &ds, onerec::generate::SplitSel::Valid, &o)
        .unwrap();
    let ndcg = row["ndcg@10"].as_f64().unwrap();
    assert!((ndcg - rep.metrics["ndcg@10"]).abs() < 1e-9, "row {ndcg} vs fused eval {}", rep.metrics["ndcg@10"]);
    // Without the item head there is nothing to fuse: a clear error before training.
    let e = format!(
        "{:#}",
        cfg(6, 6, &rank)
            .pretrain_spec()
            .and_then(|s| { train::pretrain(&s, &ds, &sids, &dir.path().join("x"), false).map(|_| ()) })
            .unwrap_err()
    );
    assert!(e.contains("rank_item_head_weight") && e.contains("item_id_embedding"), "{e}");
    assert!(!dir.path().join("x").join("last").exists());
    let e = format!("{:#}", Config::load("tiny", &["train.rank_item_head_weight=-1".into()]).unwrap_err());
    assert!(e.contains("rank_item_head_weight"), "{e}");
}
