//! Decoding throughput (users/s) at beam 10 for one item and for sessions of 5 items,
//! and the per-step cost profile (must stay flat as tokens accumulate: KV cache).
//!
//! Runs the real `OneRecModel` with the built-in `small` config (random weights: the
//! cost of decoding does not depend on what was learned) over a 12,000-item catalogue
//! of 3 x 256 codes, with the KV cache and without it (`model::uncached`, which re-runs
//! the decoder over the whole prefix every step), and the hash mock model as the
//! cost floor of the search itself.
//!
//! `score/...`: teacher-forced scoring of 100 candidate items for each of 8 users, as
//! `onerec score` and fused ranking do, once pair by pair (one encoding and one decoder
//! row per pair, the cost before scoring grouped pairs by user) and once grouped (one
//! encoding per user, shared code prefixes: [`teacher_forced_logprob_rows`]).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use onerec::config::Config;
use onerec::generate::mock::HashLm;
use onerec::generate::{
    beam_search_with, teacher_forced_logprob, teacher_forced_logprob_rows, BeamOptions, DecodeIndex, StepModel,
};
use onerec::model::uncached::Uncached;
use onerec::model::{OneRecModel, Vocab};
use onerec::tokenizer::SemanticIds;
use rand::Rng;
use std::time::Instant;

fn catalogue(sizes: &[usize], n: usize) -> SemanticIds {
    onerec::generate::mock::random_catalogue(sizes, n, 7).expect("distinct paths")
}

fn histories(users: usize, items: usize) -> Vec<Vec<u32>> {
    let mut rng = onerec::util::rng::stream(8, "bench-hist");
    (0..users).map(|_| (0..20).map(|_| rng.gen_range(0..items as u32)).collect()).collect()
}

/// Users/s of beam search at beam 10 for sessions of 1 and 5 items.
fn bench_model<M: StepModel>(c: &mut Criterion, name: &str, model: &M, ids: &SemanticIds, vocab: &Vocab, users: usize) {
    let index = DecodeIndex::new(ids).expect("index");
    let hist = histories(users, ids.n_items());
    let h: Vec<&[u32]> = hist.iter().map(|x| &x[..]).collect();
    let mut g = c.benchmark_group(format!("generate/{name}"));
    g.sample_size(10);
    g.throughput(Throughput::Elements(h.len() as u64));
    for session_len in [1usize, 5] {
        let opts = BeamOptions { beam: 10, session_len, top: 10, exclude_history: true };
        g.bench_with_input(BenchmarkId::new("beam10_items", session_len), &opts, |b, o| {
            b.iter(|| beam_search_with(model, ids, &index, vocab, &h, o).expect("beam"))
        });
    }
    g.finish();
}

/// Seconds per `step` call at each position of a long teacher-forced sequence
/// (`rows` rows, e.g. 32 users x beam 10). The minimum over 5 repetitions per position
/// (this machine is noisy). With a KV cache the last steps cost about the same as the
/// first; prints every step, first/last quarter means and their ratio.
fn step_profile<M: StepModel>(name: &str, model: &M, vocab: &Vocab, steps: usize, rows: usize) {
    let hist = histories(rows, 100);
    let h: Vec<&[u32]> = hist.iter().map(|x| &x[..]).collect();
    let mut times = vec![f64::INFINITY; steps];
    for _rep in 0..5 {
        let mut state = model.encode(&h).expect("encode");
        let mut tokens = vec![Vocab::BOS; h.len()];
        for (t, best) in times.iter_mut().enumerate() {
            let t0 = Instant::now();
            let lp = model.step(&mut state, &tokens).expect("step");
            *best = best.min(t0.elapsed().as_secs_f64());
            let level = t % vocab.levels();
            let r = vocab.level_range(level);
            tokens = (0..h.len()).map(|i| r.start + ((i + t) as u32 % (r.end - r.start))).collect();
            std::hint::black_box(lp);
        }
    }
    let q = (steps / 4).max(1);
    let first: f64 = times[..q].iter().sum::<f64>() / q as f64;
    let last: f64 = times[steps - q..].iter().sum::<f64>() / q as f64;
    let per: Vec<String> = times.iter().map(|t| format!("{:.1}", t * 1e3)).collect();
    println!("step_profile/{name}: ms per step (min of 5): {}", per.join(" "));
    println!(
        "step_profile/{name}: {steps} steps, first-quarter {:.3} ms/step, last-quarter {:.3} ms/step, ratio {:.2}",
        first * 1e3,
        last * 1e3,
        last / first
    );
}

/// Pairs/s of teacher-forced scoring, `cands` candidates for each of `users` users:
/// pair by pair versus grouped by user.
fn bench_score<M: StepModel>(c: &mut Criterion, name: &str, model: &M, ids: &SemanticIds, vocab: &Vocab) {
    let (users, cands) = (8usize, 100usize);
    let hist = histories(users, ids.n_items());
    let mut rng = onerec::util::rng::stream(9, "bench-cands");
    let items: Vec<u32> = (0..users * cands).map(|_| rng.gen_range(0..ids.n_items() as u32)).collect();
    let sessions: Vec<&[u32]> = items.iter().map(std::slice::from_ref).collect();
    let rows: Vec<u32> = (0..users * cands).map(|p| (p / cands) as u32).collect();
    let per_pair_hist: Vec<&[u32]> = rows.iter().map(|&r| &hist[r as usize][..]).collect();
    let user_hist: Vec<&[u32]> = hist.iter().map(|x| &x[..]).collect();
    let mut g = c.benchmark_group(format!("score/{name}"));
    g.sample_size(10);
    g.throughput(Throughput::Elements(sessions.len() as u64));
    g.bench_function("pair_by_pair", |b| {
        b.iter(|| teacher_forced_logprob(model, vocab, ids, &per_pair_hist, &sessions).expect("score"))
    });
    g.bench_function("grouped_by_user", |b| {
        b.iter(|| teacher_forced_logprob_rows(model, vocab, ids, &user_hist, &rows, &sessions).expect("score"))
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    // Stand-in search cost: 20k items, 3 x 64 codes, hash "model".
    let sizes = [64usize, 64, 64];
    let ids = catalogue(&sizes, 20_000);
    let vocab = Vocab::new(sizes.to_vec());
    let mock = HashLm::new(vocab.size(), 1);
    step_profile("mock", &mock, &vocab, 30, 320);
    bench_model(c, "mock", &mock, &ids, &vocab, 32);

    // The real model, small config, 12k items x 3 x 256 codes (Amazon Beauty's shape).
    let sizes = [256usize, 256, 256];
    let ids = catalogue(&sizes, 12_000);
    let vocab = Vocab::new(sizes.to_vec());
    let cfg = Config::load("small", &[]).expect("small config");
    let codes: Vec<u32> = (0..ids.n_items() as u32).flat_map(|i| ids.codes(i).to_vec()).collect();
    let (model, _vars) = OneRecModel::build(&cfg.model, vocab.clone(), codes, 1).expect("model");
    // 32 users x beam 10 = 320 rows; 15 steps = a 5-item session.
    step_profile("small/kv-cache", &model, &vocab, 15, 320);
    step_profile("small/no-cache", &Uncached(&model), &vocab, 15, 320);
    bench_score(c, "small", &model, &ids, &vocab);
    bench_model(c, "small-kv-cache", &model, &ids, &vocab, 32);
    bench_model(c, "small-no-cache", &Uncached(&model), &ids, &vocab, 32);
}
criterion_group!(generate, benches);
criterion_main!(generate);
