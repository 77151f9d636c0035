//! Throughput of the sentence encoder: items/s for 64-token texts (MiniLM-L6 from
//! `ONEREC_MINILM_DIR`; skipped when unset). `cargo bench --bench embed`.

use candle_core::Device;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use onerec::embed::SentenceEncoder;
use std::path::PathBuf;

fn bench(c: &mut Criterion) {
    let Some(dir) = std::env::var_os("ONEREC_MINILM_DIR").map(PathBuf::from) else {
        eprintln!("SKIP: ONEREC_MINILM_DIR is unset (scripts/fetch-minilm.sh DIR)");
        return;
    };
    // Truncating at 64 tokens makes every text exactly 64 tokens ([CLS] + 62 + [SEP]).
    let enc = match SentenceEncoder::load(&dir, 64, &Device::Cpu) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("SKIP: cannot load {}: {e:#}", dir.display());
            return;
        }
    };
    let n = 128;
    let texts: Vec<String> = (0..n)
        .map(|i| format!("Item {i}: a long product description about lamps, tables, chairs and shoes. ").repeat(6))
        .collect();
    let tokens = enc.tokenize(&texts).expect("tokenize");
    assert!(tokens.iter().all(|t| t.len() == 64));
    let mut g = c.benchmark_group("embed");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    for batch in [16usize, 32, 64] {
        g.bench_function(format!("minilm_64tok_batch{batch}"), |b| {
            b.iter(|| enc.embed_sorted(&tokens, batch, |_| {}).expect("embed"))
        });
    }
    g.bench_function("tokenize_plus_embed_batch32", |b| {
        b.iter(|| {
            let t = enc.tokenize(&texts).expect("tokenize");
            enc.embed_sorted(&t, 32, |_| {}).expect("embed")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
