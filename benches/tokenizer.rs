//! Tokenizer benchmarks: the nearest-centroid assignment pass against a plain candle
//! matmul of the same shapes (both reported in GFLOP/s as "elem/s" of 2*N*K*d flops),
//! the balanced assignment, a whole fit (criterion), and one timed Beauty fit when the
//! data is present.
//! `ONEREC_BENCH_LARGE=rq-kmeans|balanced-rq-kmeans|all` also times 200,000 x 256,
//! 3 x 1024 fits once (uniform random data: no structure, the slow case).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use onerec::tokenizer::kernel::nearest;
use onerec::tokenizer::kmeans::balanced_assign;
use rand::Rng;
use std::time::Instant;

fn data(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = onerec::util::rng::stream(seed, "bench");
    (0..n * d).map(|_| rng.gen::<f32>() - 0.5).collect()
}

fn assignment(c: &mut Criterion) {
    let (n, d, k) = (16_384, 256, 1024);
    let x = data(n, d, 1);
    let cent = data(k, d, 2);
    let mut g = c.benchmark_group("assign_16384x256_k1024");
    g.sample_size(10);
    g.throughput(Throughput::Elements((2 * n * k * d) as u64));
    let dev = candle_core::Device::Cpu;
    let xt = candle_core::Tensor::from_slice(&x, (n, d), &dev).unwrap();
    let ct = candle_core::Tensor::from_slice(&cent, (k, d), &dev).unwrap().t().unwrap().contiguous().unwrap();
    g.bench_function("candle_matmul", |b| b.iter(|| xt.matmul(&ct).unwrap()));
    g.bench_function("nearest_pass", |b| b.iter(|| nearest(&x, d, &cent, k)));
    g.bench_function("balanced_assign", |b| b.iter(|| balanced_assign(&x, d, &cent, k).0));
    g.finish();
}

/// A whole fit (all levels, collision resolution, metrics) at a size criterion can
/// repeat: 8,192 x 64 random vectors, 3 x 64 codes, plain and balanced.
fn whole_fit(c: &mut Criterion) {
    use onerec::tokenizer::{fit, Method, TokenizeOptions};
    let (n, d) = (8_192, 64);
    let e = onerec::data::Embeddings { item_ids: (0..n).map(|i| i.to_string()).collect(), data: data(n, d, 4), n, d };
    let mut g = c.benchmark_group("fit_8192x64_3x64");
    g.sample_size(10);
    for method in [Method::RqKmeans, Method::BalancedRqKmeans] {
        let o = TokenizeOptions { method, levels: 3, codebook_sizes: vec![64], ..Default::default() };
        g.bench_function(method.name(), |b| b.iter(|| fit(&o, &[("x".into(), e.clone())], None).unwrap()));
    }
    g.finish();
}

fn fits(_c: &mut Criterion) {
    use onerec::tokenizer::{fit, Method, TokenizeOptions};
    let shared =
        std::env::var("ONEREC_SHARED").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared").into());
    let path = std::path::Path::new(&shared).join("data/amazon-beauty/item_text_embeddings.safetensors");
    if std::env::var_os("ONEREC_BENCH_SKIP_FIT").is_some() {
        println!("beauty fit skipped: ONEREC_BENCH_SKIP_FIT");
    } else if path.exists() {
        let e = onerec::data::Embeddings::load(&path).unwrap();
        let o = TokenizeOptions {
            method: Method::BalancedRqKmeans,
            levels: 3,
            codebook_sizes: vec![256],
            ..Default::default()
        };
        let t = Instant::now();
        let f = fit(&o, &[("text".into(), e)], None).unwrap();
        println!("beauty balanced 3x256 fit: {:.2}s, metrics {:?}", t.elapsed().as_secs_f64(), f.metrics);
    } else {
        println!("beauty fit skipped: {} not found", path.display());
    }
    if let Ok(which) = std::env::var("ONEREC_BENCH_LARGE") {
        let (n, d) = (200_000, 256);
        let e =
            onerec::data::Embeddings { item_ids: (0..n).map(|i| i.to_string()).collect(), data: data(n, d, 3), n, d };
        for method in [Method::RqKmeans, Method::BalancedRqKmeans] {
            if which != "all" && which != method.name() {
                continue;
            }
            let o = TokenizeOptions { method, levels: 3, codebook_sizes: vec![1024], ..Default::default() };
            let t = Instant::now();
            let f = fit(&o, &[("x".into(), e.clone())], None).unwrap();
            println!(
                "synthetic 200000x256 {method:?} 3x1024 fit: {:.1}s timings {:?}",
                t.elapsed().as_secs_f64(),
                f.timings
            );
        }
    }
}

criterion_group!(benches, assignment, whole_fit, fits);
criterion_main!(benches);
