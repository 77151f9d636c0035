//! One training step (forward + backward + clip + AdamW) of the tiny and small
//! configs: examples/s, tokens/s and achieved GFLOP/s next to a plain candle matmul
//! of comparable shape in the same run; MoE vs dense FFN at equal active params.
//! `cargo bench --bench train_step` (add `-- --quick` style criterion args as usual).

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use onerec::config::Config;
use onerec::model::{Batch, Loss, ModelConfig, OneRecModel, Vocab};
use onerec::nn::optim::{clip_global_norm, AdamW};
use onerec::nn::params::sorted_vars;
use rand::Rng;
use std::collections::HashMap;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LEVELS: [usize; 3] = [8, 8, 8];

struct Setup {
    model: OneRecModel,
    opt: AdamW,
    vars: Vec<(String, candle_core::Var)>,
    batch: Batch,
}

fn setup(mc: &ModelConfig, bs: usize) -> Setup {
    let items = 512u32;
    let codes: Vec<u32> = (0..items).flat_map(|i| [i % 8, (i / 8) % 8, i / 64]).collect();
    let (model, vm) = OneRecModel::build(mc, Vocab::new(LEVELS.to_vec()), codes, 1).unwrap();
    let mut rng = onerec::util::rng::stream(1, "bench");
    let hs: Vec<Vec<u32>> = (0..bs).map(|_| (0..mc.history_len).map(|_| rng.gen_range(0..items)).collect()).collect();
    let ss: Vec<Vec<u32>> = (0..bs).map(|_| vec![rng.gen_range(0..items)]).collect();
    let h: Vec<&[u32]> = hs.iter().map(|v| v.as_slice()).collect();
    let s: Vec<&[u32]> = ss.iter().map(|v| v.as_slice()).collect();
    let batch = model.session_batch(&h, &s, true).unwrap();
    let vars = sorted_vars(&vm);
    let opt = AdamW::new(vars.clone(), 0.9, 0.98, 1e-8, 0.01).unwrap();
    Setup { model, opt, vars, batch }
}

fn step(s: &mut Setup) {
    let Loss { ce, aux, .. } = s.model.loss(&s.batch).unwrap();
    let loss = match aux {
        Some(a) => (ce + a).unwrap(),
        None => ce,
    };
    let gs = loss.backward().unwrap();
    let mut grads: HashMap<String, Tensor> = HashMap::new();
    for (n, v) in &s.vars {
        if let Some(g) = gs.get(v.as_tensor()) {
            grads.insert(n.clone(), g.clone());
        }
    }
    clip_global_norm(&mut grads, 1.0).unwrap();
    s.opt.step(&grads, 1e-3).unwrap();
}

/// Matmul FLOPs of one training step (forward x 3 for forward + backward).
fn step_flops(mc: &ModelConfig, bs: usize, dec_len: usize, vocab: usize) -> f64 {
    let d = mc.d_model as f64;
    let te = (bs * (mc.history_len + 1)) as f64;
    let td = (bs * dec_len) as f64;
    let (n, s) = ((mc.history_len + 1) as f64, dec_len as f64);
    let enc = mc.enc_layers as f64 * te * (8.0 * d * d + 4.0 * n * d + 6.0 * d * mc.ffn_hidden as f64);
    let ffn = if mc.moe.experts > 0 {
        let mut a = mc.moe.top_k as f64 * 6.0 * d * mc.moe.expert_hidden as f64 + 2.0 * d * mc.moe.experts as f64;
        if mc.moe.shared_expert {
            a += 6.0 * d * mc.moe.expert_hidden as f64;
        }
        a
    } else {
        6.0 * d * mc.ffn_hidden as f64
    };
    let dec =
        mc.dec_layers as f64 * (td * (8.0 * d * d + 4.0 * s * d + 4.0 * d * d + 4.0 * n * d + ffn) + te * 4.0 * d * d);
    3.0 * (enc + dec + td * 2.0 * d * vocab as f64)
}

fn time<F: FnMut()>(mut f: F, reps: usize) -> f64 {
    f();
    let mut ts: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    ts[reps / 2]
}

/// Times one step of each model, interleaved so machine-load drift hits both alike;
/// prints throughput and returns the median step seconds of each. The plain matmul that
/// the achieved rate is compared with is timed inside the same loop, right after each
/// step, so a load change on this shared machine moves both numbers together.
fn compare(name: &str, models: &[(&str, &ModelConfig)], bs: usize) -> Vec<f64> {
    let mut setups: Vec<Setup> = models.iter().map(|(_, mc)| setup(mc, bs)).collect();
    // A plain matmul shaped like the encoder FFN input projection, per model.
    let mats: Vec<(Tensor, Tensor)> = models
        .iter()
        .map(|(_, mc)| {
            let te = bs * (mc.history_len + 1);
            let a = Tensor::randn(0f32, 1.0, (te, mc.d_model), &Device::Cpu).unwrap();
            let w = Tensor::randn(0f32, 1.0, (mc.d_model, mc.ffn_hidden), &Device::Cpu).unwrap();
            (a, w)
        })
        .collect();
    let reps = 7;
    let mut ts = vec![Vec::new(); setups.len()];
    let mut mm = vec![Vec::new(); setups.len()];
    for r in 0..=reps {
        for (i, s) in setups.iter_mut().enumerate() {
            let t = Instant::now();
            step(s);
            if r > 0 {
                ts[i].push(t.elapsed().as_secs_f64());
                let (a, w) = &mats[i];
                mm[i].push(time(|| drop(a.matmul(w).unwrap()), 5));
            }
        }
    }
    let mut out = Vec::new();
    for (i, (label, mc)) in models.iter().enumerate() {
        ts[i].sort_by(f64::total_cmp);
        mm[i].sort_by(f64::total_cmp);
        let secs = ts[i][reps / 2];
        let s = &setups[i];
        let flops = step_flops(mc, bs, s.batch.len, s.model.vocab.size());
        let te = bs * (mc.history_len + 1);
        let mm_gflops = 2.0 * (te * mc.d_model * mc.ffn_hidden) as f64 / mm[i][reps / 2] / 1e9;
        let achieved = flops / secs / 1e9;
        println!(
            "{name} {label:>6}: step {:.1} ms | {:.0} examples/s | {:.0} tokens/s (decoder targets) | {achieved:.2} GFLOP/s achieved vs plain matmul [{te}x{}]@[{}x{}] {mm_gflops:.1} GFLOP/s ({:.0}%)",
            secs * 1e3,
            bs as f64 / secs,
            s.batch.tokens() as f64 / secs,
            mc.d_model,
            mc.d_model,
            mc.ffn_hidden,
            100.0 * achieved / mm_gflops
        );
        out.push(secs);
    }
    out
}

/// `VmHWM` / `VmRSS` of this process in MiB (Linux; None elsewhere).
fn proc_mem(key: &str) -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Peak resident memory while training `mc` alone for a few steps: resets the
/// kernel's high-water mark (`/proc/self/clear_refs` = 5), trains, reads `VmHWM`.
fn peak_memory(name: &str, mc: &ModelConfig, bs: usize) {
    let before = proc_mem("VmRSS:");
    if std::fs::write("/proc/self/clear_refs", "5").is_err() || before.is_none() {
        println!("{name}: peak memory not measured (needs Linux /proc)");
        return;
    }
    let mut s = setup(mc, bs);
    for _ in 0..3 {
        step(&mut s);
    }
    let peak = proc_mem("VmHWM:").unwrap_or(f64::NAN);
    println!(
        "{name}: peak RSS while training (batch {bs}) {peak:.0} MiB; process RSS before building the model {:.0} MiB",
        before.unwrap_or(f64::NAN)
    );
}

fn benches(c: &mut Criterion) {
    for name in ["tiny", "small"] {
        let cfg = Config::load(name, &[]).unwrap();
        let mc = cfg.model.clone();
        let bs = cfg.train.batch_size;
        // Dense at equal active params: decoder FFN hidden = top_k (+ shared) x expert
        // hidden; the encoder FFN gets the same hidden in both so only the decoder differs.
        let mut dec_hidden = mc.moe.top_k * mc.moe.expert_hidden;
        if mc.moe.shared_expert {
            dec_hidden += mc.moe.expert_hidden;
        }
        let mut moe = mc.clone();
        moe.ffn_hidden = dec_hidden;
        let mut dense = moe.clone();
        dense.moe.experts = 0;
        let mut fused = moe.clone();
        fused.fused_attention = true;
        let t = compare(name, &[("moe", &moe), ("dense", &dense), ("fused", &fused)], bs);
        println!(
            "{name}: MoE / dense step time at equal active params = {:.2}; fused / unfused attention = {:.2}",
            t[0] / t[1],
            t[2] / t[0]
        );
        peak_memory(name, &mc, bs);
        let mut s = setup(&mc, bs);
        c.bench_function(&format!("train_step/{name}"), |b| b.iter(|| step(&mut s)));
    }
}

criterion_group! {
    name = g;
    config = Criterion::default().sample_size(10).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(5));
    targets = benches
}
criterion_main!(g);
