//! Model tests: shapes, masks, gradients to every parameter, MoE routing, KV-cached
//! decoding equal to the teacher-forced forward, sequence log-probs, config errors.

use candle_core::{Tensor, D};
use onerec::generate::StepModel;
use onerec::model::{moe, ModelConfig, OneRecModel, Vocab};

fn small_cfg(experts: usize) -> ModelConfig {
    let mut c = ModelConfig {
        d_model: 32,
        heads: 4,
        enc_layers: 2,
        dec_layers: 2,
        ffn_hidden: 48,
        history_len: 6,
        max_session_items: 3,
        ..Default::default()
    };
    c.moe.experts = experts;
    c.moe.top_k = 2.min(experts.max(1));
    c.moe.expert_hidden = 24;
    c
}

/// 20 items with unique 3-level paths over codebooks [4,4,3].
fn codes() -> Vec<u32> {
    (0..20u32).flat_map(|i| [i % 4, (i / 4) % 4, (i / 16) % 3]).collect()
}

fn model(experts: usize) -> OneRecModel {
    OneRecModel::build(&small_cfg(experts), Vocab::new(vec![4, 4, 3]), codes(), 7).unwrap().0
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn forward_shapes() {
    let m = model(4);
    let h: Vec<&[u32]> = vec![&[1, 2, 3], &[4], &[]];
    let s: Vec<&[u32]> = vec![&[5, 6], &[7], &[8, 9, 10]];
    let b = m.session_batch(&h, &s, true).unwrap();
    assert_eq!(b.len, 10);
    let out = m.forward(&b).unwrap();
    assert_eq!(out.logits.dims(), &[3, 10, m.vocab.size()]);
    assert!(out.aux_loss.is_some());
    assert_eq!(m.sequence_logprob(&h, &s).unwrap().dims(), &[3]);
}

#[test]
fn padded_history_position_changes_nothing() {
    let m = model(4);
    // Row 0 is padded up to row 1's length; the padded slots' content must not matter,
    // and the result must equal encoding row 0 alone (no padding).
    let s: Vec<&[u32]> = vec![&[5, 6]];
    let alone = m.sequence_logprob(&[&[1, 2]], &s).unwrap();
    let h: Vec<&[u32]> = vec![&[1, 2], &[3, 4, 5, 6, 7]];
    let s2: Vec<&[u32]> = vec![&[5, 6], &[5, 6]];
    let padded = m.sequence_logprob(&h, &s2).unwrap().narrow(0, 0, 1).unwrap();
    assert!(max_abs_diff(&alone, &padded) < 1e-4, "{alone} vs {padded}");
    // History longer than history_len: only the last 6 items count.
    let a = m.sequence_logprob(&[&[9, 9, 1, 2, 3, 4, 5, 6]], &s).unwrap();
    let b = m.sequence_logprob(&[&[0, 1, 2, 3, 4, 5, 6]], &s).unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-5);
    let c = m.sequence_logprob(&[&[9, 9, 0, 2, 3, 4, 5, 6]], &s).unwrap();
    assert!(max_abs_diff(&a, &c) > 1e-6, "a visible item must matter");
}

#[test]
fn causal_decoder_future_token_does_not_change_past_logits() {
    let m = model(4);
    let h: Vec<&[u32]> = vec![&[1, 2, 3]];
    let mut b = m.session_batch(&h, &[&[5, 6]], true).unwrap();
    let l1 = m.forward(&b).unwrap().logits;
    let t = 3;
    b.inputs[t + 1] = if b.inputs[t + 1] == 4 { 5 } else { 4 };
    let l2 = m.forward(&b).unwrap().logits;
    let past = |l: &Tensor| l.narrow(1, 0, t + 1).unwrap();
    assert!(max_abs_diff(&past(&l1), &past(&l2)) < 1e-5);
    let fut = |l: &Tensor| l.narrow(1, t + 1, 1).unwrap();
    assert!(max_abs_diff(&fut(&l1), &fut(&l2)) > 1e-6);
}

#[test]
fn gradients_reach_every_parameter() {
    for experts in [0usize, 4] {
        let mut cfg = small_cfg(experts);
        cfg.moe.shared_expert = experts > 0;
        let (m, vm) = OneRecModel::build(&cfg, Vocab::new(vec![4, 4, 3]), codes(), 3).unwrap();
        // Enough tokens that every expert is chosen at least once.
        let hs: Vec<Vec<u32>> = (0..12u32).map(|i| (0..(i % 6)).map(|j| (i + j) % 20).collect()).collect();
        let ss: Vec<Vec<u32>> = (0..12u32).map(|i| vec![i % 20, (i * 7 + 3) % 20]).collect();
        let h: Vec<&[u32]> = hs.iter().map(|v| v.as_slice()).collect();
        let s: Vec<&[u32]> = ss.iter().map(|v| v.as_slice()).collect();
        let b = m.session_batch(&h, &s, true).unwrap();
        let onerec::model::Loss { ce, aux, .. } = m.loss(&b).unwrap();
        let loss = match aux {
            Some(a) => (ce + a).unwrap(),
            None => ce,
        };
        let grads = loss.backward().unwrap();
        let vars = onerec::nn::params::sorted_vars(&vm);
        assert!(vars.len() > 20);
        for (name, v) in vars {
            let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("experts={experts}: no gradient for {name}"));
            let n = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(n > 0.0 && n.is_finite(), "experts={experts}: zero gradient for {name}");
        }
    }
}

#[test]
fn router_top_k_picks_highest_gates_and_bias_shifts_choice() {
    let probs = [0.1, 0.5, 0.3, 0.1, 0.4, 0.05, 0.05, 0.5];
    assert_eq!(moe::route(&probs, 4, &[0.0; 4], 2), vec![1, 2, 3, 0]);
    assert_eq!(moe::route(&probs, 4, &[0.0, 0.0, 0.0, 0.0], 1), vec![1, 3]);
    assert_eq!(moe::route(&probs, 4, &[0.0, 0.0, 0.3, 0.0], 1), vec![2, 3]);
}

#[test]
fn expert_without_tokens_is_fine() {
    let mut cfg = small_cfg(4);
    cfg.moe.top_k = 1;
    let (m, _) = OneRecModel::build(&cfg, Vocab::new(vec![4, 4, 3]), codes(), 5).unwrap();
    // Force all tokens to expert 0 via the selection bias.
    for l in m.moe_layers() {
        *l.bias.lock().unwrap() = vec![10.0, 0.0, 0.0, 0.0];
    }
    let b = m.session_batch(&[&[1, 2]], &[&[3]], true).unwrap();
    let loss = m.loss(&b).unwrap();
    assert!(loss.ce.to_scalar::<f32>().unwrap().is_finite());
    // One stats entry per MoE layer, each counting this batch's 4 target tokens.
    assert_eq!(loss.moe_stats.len(), 2);
    for st in &loss.moe_stats {
        assert_eq!(st.load[1..], [0, 0, 0]);
        assert_eq!(st.load[0], 4);
        assert_eq!(st.tokens, 4);
    }
}

#[test]
fn kv_cached_steps_match_teacher_forcing_and_reorder() {
    let m = model(4);
    let hs: Vec<&[u32]> = vec![&[1, 2, 3], &[4, 5]];
    let ss: Vec<&[u32]> = vec![&[5, 6], &[7, 8]];
    let b = m.session_batch(&hs, &ss, true).unwrap();
    let full = m.forward(&b).unwrap().logits;
    let full = candle_nn::ops::log_softmax(&full, D::Minus1).unwrap();
    let v = m.vocab_size();
    // Rows [1, 0, 1] (reversed and duplicated: cross-attention gathers the users' K/V per
    // row) and [0, 0, 1, 1] (beam-search layout: each user's K/V read in place by its group).
    for map in [vec![1usize, 0, 1], vec![0, 0, 1, 1]] {
        let mut st = m.encode(&hs).unwrap();
        m.reorder(&mut st, &map.iter().map(|&r| r as u32).collect::<Vec<_>>()).unwrap();
        for t in 0..b.len {
            let toks: Vec<u32> = map.iter().map(|&r| b.inputs[r * b.len + t]).collect();
            let lp = m.step(&mut st, &toks).unwrap();
            assert_eq!(lp.len(), map.len() * v);
            for (row, &r) in map.iter().enumerate() {
                let want: Vec<f32> = full.get(r).unwrap().get(t).unwrap().to_vec1().unwrap();
                for j in 0..v {
                    assert!(
                        (lp[row * v + j] - want[j]).abs() < 1e-4,
                        "map {map:?} t={t} row={row} tok={j}: {} vs {}",
                        lp[row * v + j],
                        want[j]
                    );
                }
            }
            if t == 2 {
                // Mid-sequence reorder onto the same rows keeps the caches aligned.
                m.reorder(&mut st, &(0..map.len() as u32).collect::<Vec<_>>()).unwrap();
            }
        }
        assert!(m.reorder(&mut st, &[5]).is_err());
    }
}

#[test]
fn sequence_logprob_equals_sum_of_step_logprobs() {
    let m = model(4);
    let hs: Vec<&[u32]> = vec![&[1, 2, 3], &[]];
    let ss: Vec<&[u32]> = vec![&[5, 6], &[11]];
    let seq: Vec<f32> = m.sequence_logprob(&hs, &ss).unwrap().to_vec1().unwrap();
    for r in 0..2 {
        let mut st = m.encode(&hs[r..r + 1]).unwrap();
        let toks: Vec<u32> = ss[r].iter().flat_map(|&i| m.item_tokens(i).unwrap()).collect();
        let mut prev = Vocab::BOS;
        let mut sum = 0.0f32;
        for &t in &toks {
            let lp = m.step(&mut st, &[prev]).unwrap();
            sum += lp[t as usize];
            prev = t;
        }
        assert!((sum - seq[r]).abs() < 1e-3, "row {r}: {sum} vs {}", seq[r]);
    }
}

#[test]
fn bad_configs_are_clear_errors() {
    let mut c = small_cfg(4);
    c.heads = 5;
    let e = format!("{:#}", c.validate().unwrap_err());
    assert!(e.contains("heads") && e.contains("d_model"), "{e}");
    let mut c = small_cfg(4);
    c.moe.top_k = 5;
    let e = format!("{:#}", c.validate().unwrap_err());
    assert!(e.contains("top_k") && e.contains("experts"), "{e}");
    let e = format!("{:#}", onerec::config::Config::from_toml("[model]\nheads = 7\n", &[]).unwrap_err());
    assert!(e.contains("[model]") && e.contains("heads"), "{e}");
}

#[test]
fn loss_free_bias_moves_toward_balance_and_aux_loss_is_switch_style() {
    let mut cfg = small_cfg(4);
    cfg.moe.balance = onerec::model::Balance::Bias;
    cfg.moe.bias_rate = 0.01;
    let (m, _) = OneRecModel::build(&cfg, Vocab::new(vec![4, 4, 3]), codes(), 5).unwrap();
    let l = m.moe_layers()[0];
    l.update_bias(&[10, 2, 2, 2]);
    let b = l.bias.lock().unwrap().clone();
    assert!(b[0] < 0.0 && b[1] > 0.0 && b[2] > 0.0 && b[3] > 0.0, "{b:?}");
    // Bias mode adds no aux loss; aux mode does, and it is >= coef (equality iff balanced).
    let batch = m.session_batch(&[&[1, 2]], &[&[3]], true).unwrap();
    assert!(m.forward(&batch).unwrap().aux_loss.is_none());
    let mut cfg = small_cfg(4);
    cfg.moe.aux_coef = 0.5;
    let (m, _) = OneRecModel::build(&cfg, Vocab::new(vec![4, 4, 3]), codes(), 5).unwrap();
    let aux = m.forward(&batch).unwrap().aux_loss.unwrap().to_scalar::<f32>().unwrap();
    // Two layers, each E * sum f_e P_e * coef; with top-2 over few tokens it exceeds coef.
    assert!(aux > 0.0 && aux.is_finite(), "{aux}");
}

#[test]
fn fused_attention_matches_reference_values_and_gradients() {
    use candle_core::{Device, Var};
    use onerec::nn::attention_op::{sdpa, sdpa_reference};
    let dev = Device::Cpu;
    let (b, h, tq, tk, dh) = (3, 2, 5, 7, 4);
    let q = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, h, tq, dh), &dev).unwrap()).unwrap();
    let k = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, h, tk, dh), &dev).unwrap()).unwrap();
    let v = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, h, tk, dh), &dev).unwrap()).unwrap();
    let w = Tensor::randn(0f32, 1.0, (b, h, tq, dh), &dev).unwrap();
    let pad: Vec<f32> = (0..b * tk).map(|i| if i % tk < i / tk { -1e9 } else { 0.0 }).collect();
    let key_mask = Tensor::from_vec(pad, (b, 1, 1, tk), &dev).unwrap();
    let causal: Vec<f32> = (0..tq * tk).map(|i| if i % tk > i / tk + 2 { -1e9 } else { 0.0 }).collect();
    let causal = Tensor::from_vec(causal, (1, 1, tq, tk), &dev).unwrap();
    for mask in [None, Some(&key_mask), Some(&causal)] {
        let run = |f: &dyn Fn() -> Tensor| {
            let o = f();
            let g = (&o * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let gs: Vec<Tensor> = [&q, &k, &v].iter().map(|x| g.get(x.as_tensor()).unwrap().clone()).collect();
            (o, gs)
        };
        let (o1, g1) = run(&|| sdpa(q.as_tensor(), k.as_tensor(), v.as_tensor(), mask, 0.5).unwrap());
        let (o2, g2) = run(&|| sdpa_reference(q.as_tensor(), k.as_tensor(), v.as_tensor(), mask, 0.5).unwrap());
        assert!(max_abs_diff(&o1, &o2) < 1e-5);
        for (a, b) in g1.iter().zip(&g2) {
            assert!(max_abs_diff(a, b) < 1e-4, "gradient differs by {}", max_abs_diff(a, b));
        }
    }
}

#[test]
fn fused_attention_model_equals_unfused_and_steps_match() {
    let mut cfg = small_cfg(4);
    let (a, _) = OneRecModel::build(&cfg, Vocab::new(vec![4, 4, 3]), codes(), 9).unwrap();
    cfg.fused_attention = true;
    let (b, _) = OneRecModel::build(&cfg, Vocab::new(vec![4, 4, 3]), codes(), 9).unwrap();
    let hs: Vec<&[u32]> = vec![&[1, 2, 3], &[4], &[]];
    let ss: Vec<&[u32]> = vec![&[5, 6], &[7], &[8, 9]];
    let la = a.sequence_logprob(&hs, &ss).unwrap();
    let lb = b.sequence_logprob(&hs, &ss).unwrap();
    assert!(max_abs_diff(&la, &lb) < 1e-3, "{la} vs {lb}");
    let seq: Vec<f32> = lb.to_vec1().unwrap();
    let mut st = b.encode(&hs[..1]).unwrap();
    let mut prev = Vocab::BOS;
    let mut sum = 0.0;
    for t in [5u32, 6].iter().flat_map(|&i| b.item_tokens(i).unwrap()) {
        sum += b.decode_step(&mut st, &[prev]).unwrap()[t as usize];
        prev = t;
    }
    assert!((sum - seq[0]).abs() < 1e-3, "{sum} vs {}", seq[0]);
}

#[test]
fn uncached_decoding_gives_the_same_beams_as_the_kv_cache() {
    use onerec::generate::{beam_search_with, BeamOptions, DecodeIndex};
    use onerec::model::uncached::Uncached;
    let m = model(4);
    let ids = onerec::tokenizer::SemanticIds::new((0..20).map(|i| format!("i{i}")).collect(), vec![4, 4, 3], codes())
        .unwrap();
    let index = DecodeIndex::new(&ids).unwrap();
    let hs: Vec<&[u32]> = vec![&[1, 2, 3], &[4, 5], &[]];
    let opts = BeamOptions { beam: 4, session_len: 2, top: 3, exclude_history: true };
    let (cached, _) = beam_search_with(&m, &ids, &index, &m.vocab, &hs, &opts).unwrap();
    let (plain, _) = beam_search_with(&Uncached(&m), &ids, &index, &m.vocab, &hs, &opts).unwrap();
    assert_eq!(cached.len(), 3);
    for (a, b) in cached.iter().zip(&plain) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.items, y.items);
            assert!((x.logprob - y.logprob).abs() < 1e-4, "{} vs {}", x.logprob, y.logprob);
        }
    }
}

#[test]
fn dropout_acts_only_in_training_mode_and_is_seeded() {
    use onerec::util::rng::stream;
    let mut cfg = small_cfg(4);
    let plain = OneRecModel::build(&cfg, Vocab::new(vec![4, 4, 3]), codes(), 7).unwrap().0;
    cfg.dropout = 0.3;
    let m = OneRecModel::build(&cfg, Vocab::new(vec![4, 4, 3]), codes(), 7).unwrap().0;
    let h: Vec<&[u32]> = vec![&[1, 2, 3], &[4, 5]];
    let b = m.session_batch(&h, &[&[5, 6], &[7]], true).unwrap();
    let logits = |m: &OneRecModel| m.forward(&b).unwrap().logits;
    // Outside training mode the dropout model is the plain model.
    assert!(max_abs_diff(&logits(&m), &logits(&plain)) < 1e-6);
    let train = |seed: u64| {
        let _g = m.training(stream(seed, "test"));
        logits(&m)
    };
    let (a, a2, c) = (train(1), train(1), train(2));
    assert!(max_abs_diff(&a, &a2) < 1e-6, "same stream, same masks");
    assert!(max_abs_diff(&a, &c) > 1e-3, "another stream, other masks");
    assert!(max_abs_diff(&a, &logits(&plain)) > 1e-3, "training mode drops");
    // The guard switched it off again.
    assert!(max_abs_diff(&logits(&m), &logits(&plain)) < 1e-6);
    // Inverted dropout: about p of the elements zeroed, the mean kept.
    let d = onerec::nn::Dropout::new(0.3);
    let x = Tensor::ones(100_000, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let _g = d.training(stream(3, "mask"));
    let y: Vec<f32> = d.forward(&x).unwrap().to_vec1().unwrap();
    let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
    let mean = y.iter().map(|&v| v as f64).sum::<f64>() / y.len() as f64;
    assert!((zeros - 0.3).abs() < 0.01, "zero fraction {zeros}");
    assert!((mean - 1.0).abs() < 0.02, "mean {mean}");
}

/// Values and gradients (x and the scale) of a fused kernel against its composed reference.
fn fused_matches(
    f: &dyn Fn(&Tensor, &Tensor) -> Tensor,
    r: &dyn Fn(&Tensor, &Tensor) -> Tensor,
    a_shape: (usize, usize, usize),
    b_shape: &[usize],
) {
    use candle_core::{Device, Var};
    let dev = Device::Cpu;
    let a = Var::from_tensor(&Tensor::randn(0f32, 1.5, a_shape, &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, b_shape, &dev).unwrap()).unwrap();
    let w = Tensor::randn(0f32, 1.0, a_shape, &dev).unwrap();
    let run = |op: &dyn Fn(&Tensor, &Tensor) -> Tensor| {
        let o = op(a.as_tensor(), b.as_tensor());
        let g = (&o * &w).unwrap().sum_all().unwrap().backward().unwrap();
        (o, g.get(a.as_tensor()).unwrap().clone(), g.get(b.as_tensor()).unwrap().clone())
    };
    let (o1, ga1, gb1) = run(f);
    let (o2, ga2, gb2) = run(r);
    assert_eq!(o1.dims(), o2.dims());
    assert!(max_abs_diff(&o1, &o2) < 1e-5, "values differ by {}", max_abs_diff(&o1, &o2));
    assert!(max_abs_diff(&ga1, &ga2) < 1e-4, "input gradient differs by {}", max_abs_diff(&ga1, &ga2));
    assert!(max_abs_diff(&gb1, &gb2) < 1e-3, "second gradient differs by {}", max_abs_diff(&gb1, &gb2));
}

#[test]
fn fused_rms_norm_and_swiglu_match_composed_ops_in_values_and_gradients() {
    use onerec::nn::kernels::{rms_norm, rms_norm_reference, swiglu, swiglu_reference};
    // 2 x 100 rows: more than one 64-row chunk, and a partial last chunk.
    fused_matches(
        &|x, w| rms_norm(x, w, 1e-6).unwrap(),
        &|x, w| rms_norm_reference(x, w, 1e-6).unwrap(),
        (2, 100, 24),
        &[24],
    );
    fused_matches(&|g, u| swiglu(g, u).unwrap(), &|g, u| swiglu_reference(g, u).unwrap(), (2, 100, 24), &[2, 100, 24]);
    // A non-contiguous input goes through the same kernel.
    let x = Tensor::randn(0f32, 1.0, (24, 6), &candle_core::Device::Cpu).unwrap().t().unwrap();
    let w = Tensor::ones(24, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    assert!(max_abs_diff(&rms_norm(&x, &w, 1e-6).unwrap(), &rms_norm_reference(&x, &w, 1e-6).unwrap()) < 1e-5);
    // A scale that does not fit the last dim is an error, not a panic.
    let bad = Tensor::ones(5, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    assert!(rms_norm(&x, &bad, 1e-6).is_err());
}

/// The vendored candle-core stores a tensor's first gradient instead of zeros + gradient
/// (vendor/candle-core/ONEREC-PATCH.md); the sums must stay those of the calculus, also
/// when the first contribution is a transposed, broadcast (stride-0) or negated view.
#[test]
fn patched_backprop_accumulates_every_contribution() {
    use candle_core::{Device, Var};
    let dev = Device::Cpu;
    let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 4), &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, 4, &dev).unwrap()).unwrap();
    let c = Tensor::new(&[[2f32, -0.5]], &dev).unwrap();
    let at = a.as_tensor();
    let zero = at.zeros_like().unwrap();
    // f = 3 sum(a^T) - sum(a) + sum(a * b) + sum(rowsum(a) @ c) + sum(a^2)
    let f = [
        (at.t().unwrap() * 3.0).unwrap().sum_all().unwrap(),
        (&zero - at).unwrap().sum_all().unwrap(),
        at.broadcast_mul(b.as_tensor()).unwrap().sum_all().unwrap(),
        at.sum_keepdim(1).unwrap().matmul(&c).unwrap().sum_all().unwrap(),
        at.sqr().unwrap().sum_all().unwrap(),
    ];
    let total = f.iter().skip(1).fold(f[0].clone(), |s, t| (s + t).unwrap());
    let g = total.backward().unwrap();
    // df/da = 3 - 1 + b + sum(c) + 2a; df/db = column sums of a.
    let want_a = ((at * 2.0).unwrap().broadcast_add(b.as_tensor()).unwrap() + (2.0 + 1.5)).unwrap();
    let want_b = at.sum(0).unwrap();
    assert!(max_abs_diff(g.get(at).unwrap(), &want_a) < 1e-5);
    assert!(max_abs_diff(g.get(b.as_tensor()).unwrap(), &want_b) < 1e-5);
    assert!(g.get(at).unwrap().is_contiguous());
    // x used twice by one op: both contributions count.
    let x = Var::from_tensor(&Tensor::new(&[1f32, 2.0, 3.0], &dev).unwrap()).unwrap();
    let g = (x.as_tensor() + x.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), vec![2.0, 2.0, 2.0]);
}

#[test]
fn item_id_embedding_and_item_head_learn_and_reach_their_table() {
    let mut cfg = small_cfg(4);
    cfg.item_id_embedding = true;
    cfg.item_head_weight = 1.0;
    let (m, vm) = OneRecModel::build(&cfg, Vocab::new(vec![4, 4, 3]), codes(), 5).unwrap();
    let hs: Vec<Vec<u32>> = (0..8u32).map(|i| vec![i, (i + 1) % 20, (i + 2) % 20]).collect();
    let ss: Vec<Vec<u32>> = (0..8u32).map(|i| vec![(i + 3) % 20]).collect();
    let h: Vec<&[u32]> = hs.iter().map(|v| v.as_slice()).collect();
    let s: Vec<&[u32]> = ss.iter().map(|v| v.as_slice()).collect();
    let b = m.session_batch(&h, &s, true).unwrap();
    assert_eq!(b.items, (0..8u32).map(|i| (i + 3) % 20).collect::<Vec<_>>());
    // The item head's loss starts near ln(20) (uniform over the 20 items) and the id table
    // (its output table and a history input) gets a gradient from it.
    let item_ce = m.loss(&b).unwrap().item_ce.expect("item head on");
    let v = item_ce.to_scalar::<f32>().unwrap();
    assert!((v - 20f32.ln()).abs() < 0.5, "initial item ce {v}");
    let grads = item_ce.backward().unwrap();
    let table =
        onerec::nn::params::sorted_vars(&vm).into_iter().find(|(n, _)| n == "enc.item_emb").expect("enc.item_emb");
    assert_eq!(table.1.as_tensor().dims(), &[21, 32]);
    let g = grads.get(table.1.as_tensor()).expect("gradient for enc.item_emb");
    assert!(g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
    // The id input matters: zeroing the id table changes the decoder's log-probs.
    let before = m.sequence_logprob(&h, &s).unwrap();
    table.1.set(&table.1.as_tensor().zeros_like().unwrap()).unwrap();
    let after = m.sequence_logprob(&h, &s).unwrap();
    assert!(max_abs_diff(&before, &after) > 1e-6, "the item-id input must matter");
    // Without the id table the head is a config error, and a checkpoint without it is off.
    let mut bad = small_cfg(4);
    bad.item_head_weight = 0.5;
    let e = format!("{:#}", bad.validate().unwrap_err());
    assert!(e.contains("item_id_embedding"), "{e}");
    assert!(model(4).loss(&b).unwrap().item_ce.is_none());
}

/// Fused ranking: every score is exactly `log p_gen + w * log p_head` (teacher-forced and
/// the head computed independently), lists are sorted and skip history items, and a large
/// weight returns the head's own top items; a model without a head is a clear error.
#[test]
fn fused_ranking_scores_beam_and_head_candidates_exactly() {
    use onerec::generate::{fused_search, teacher_forced_logprob, BeamOptions, DecodeIndex, Fusion};
    use std::collections::HashSet;
    let mut cfg = small_cfg(4);
    cfg.item_id_embedding = true;
    cfg.item_head_weight = 1.0;
    let (m, _) = OneRecModel::build(&cfg, Vocab::new(vec![4, 4, 3]), codes(), 11).unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("i{i}")).collect();
    let ids = onerec::tokenizer::SemanticIds::new(names, vec![4, 4, 3], codes()).unwrap();
    let index = DecodeIndex::new(&ids).unwrap();
    let hs: Vec<Vec<u32>> = (0..5u32).map(|i| vec![i, (i + 7) % 20, (i + 13) % 20]).collect();
    let h: Vec<&[u32]> = hs.iter().map(|v| v.as_slice()).collect();
    let opts = BeamOptions { beam: 3, session_len: 1, top: 6, exclude_history: true };
    let head = m.item_logprobs(&h).unwrap().expect("head");
    for w in [0.5f32, 1e6] {
        let f = Fusion { weight: w, candidates: 4 };
        let (lists, _) = fused_search(&m, &ids, &index, &m.vocab, &h, &opts, &f).unwrap();
        for (u, list) in lists.iter().enumerate() {
            // 3 beam items and the head's 4 (they may overlap), cut at 6.
            assert!((4..=6).contains(&list.len()), "user {u}: {} items", list.len());
            let items: Vec<u32> = list.iter().map(|x| x.items[0]).collect();
            assert!(items.iter().all(|i| !hs[u].contains(i)), "history item ranked: {items:?}");
            assert_eq!(items.iter().collect::<HashSet<_>>().len(), items.len(), "repeat in {items:?}");
            let sessions: Vec<[u32; 1]> = items.iter().map(|&i| [i]).collect();
            let s: Vec<&[u32]> = sessions.iter().map(|x| &x[..]).collect();
            let gen = teacher_forced_logprob(&m, &m.vocab, &ids, &vec![h[u]; s.len()], &s).unwrap();
            for (x, g) in list.iter().zip(&gen) {
                let want = g + w * head[u * 20 + x.items[0] as usize];
                assert!((x.item_logprobs[0] - g).abs() < 1e-4, "gen {} vs {g}", x.item_logprobs[0]);
                assert!((x.logprob - want).abs() < 1e-3 * want.abs().max(1.0), "fused {} vs {want}", x.logprob);
            }
            assert!(list.windows(2).all(|p| p[0].logprob >= p[1].logprob), "not sorted");
            if w > 100.0 {
                let excl: HashSet<u32> = hs[u].iter().copied().collect();
                let want = onerec::generate::fused::top_items(&head[u * 20..(u + 1) * 20], 4, &excl);
                let got: HashSet<u32> = items[..4].iter().copied().collect();
                assert_eq!(got, want.into_iter().collect(), "user {u}: a large weight follows the head");
            }
        }
    }
    // One encoding serves the beam, the head and the teacher-forced candidates.
    let counting = CountingEncodes(&m, std::cell::Cell::new(0));
    let f = Fusion { weight: 2.0, candidates: 8 };
    let (want, _) = fused_search(&m, &ids, &index, &m.vocab, &h, &opts, &f).unwrap();
    let (got, _) = fused_search(&counting, &ids, &index, &m.vocab, &h, &opts, &f).unwrap();
    assert_eq!(got, want);
    assert_eq!(counting.1.get(), 1, "histories encoded {} times", counting.1.get());
    let plain = model(4);
    let f = Fusion { weight: 1.0, candidates: 4 };
    let e = format!("{:#}", fused_search(&plain, &ids, &index, &plain.vocab, &h, &opts, &f).unwrap_err());
    assert!(e.contains("item_id_embedding"), "{e}");
}

/// A [`OneRecModel`] that counts its `encode` calls.
struct CountingEncodes<'a>(&'a OneRecModel, std::cell::Cell<usize>);

impl StepModel for CountingEncodes<'_> {
    type State = onerec::model::DecodeState;
    fn encode(&self, histories: &[&[u32]]) -> anyhow::Result<Self::State> {
        self.1.set(self.1.get() + 1);
        self.0.encode(histories)
    }
    fn step(&self, state: &mut Self::State, tokens: &[u32]) -> anyhow::Result<Vec<f32>> {
        StepModel::step(self.0, state, tokens)
    }
    fn reorder(&self, state: &mut Self::State, rows: &[u32]) -> anyhow::Result<()> {
        StepModel::reorder(self.0, state, rows)
    }
    fn vocab_size(&self) -> usize {
        StepModel::vocab_size(self.0)
    }
    fn item_logprobs(&self, state: &Self::State) -> anyhow::Result<Option<Vec<f32>>> {
        StepModel::item_logprobs(self.0, state)
    }
}
