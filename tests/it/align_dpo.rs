//! DPO / ECPO losses: hand-computed values, gradient directions, pi == ref gives log 2,
//! and a training step leaves the reference untouched.

use candle_core::{Device, Tensor, Var};
use onerec::align::iterate::{iteration, Policy};
use onerec::align::toy::{BigramPolicy, ToyWorld};
use onerec::align::{dpo_loss, ecpo_loss, AlignConfig};

fn t(v: &[f32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

#[test]
fn dpo_matches_hand_computation() {
    // z1 = 0.5 * ((-1 + 1.2) - (-1.5 + 1.2)) = 0.25 ; z2 = 0.5 * ((-2 + 2) - (-1 + 1.5)) = -0.25
    let out = dpo_loss(&t(&[-1.0, -2.0]), &t(&[-1.5, -1.0]), &t(&[-1.2, -2.0]), &t(&[-1.2, -1.5]), 0.5).unwrap();
    let want = ((1.0 + (-0.25f64).exp()).ln() + (1.0 + 0.25f64.exp()).ln()) / 2.0;
    let got = out.loss.to_scalar::<f32>().unwrap() as f64;
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    assert_eq!(out.accuracy, 0.5);
    assert!(out.margin.abs() < 1e-6, "{}", out.margin);
    // A single clearly-preferred pair: loss below log 2, accuracy 1, margin = z.
    let out = dpo_loss(&t(&[-1.0]), &t(&[-3.0]), &t(&[-2.0]), &t(&[-2.0]), 1.0).unwrap();
    assert!((out.loss.to_scalar::<f32>().unwrap() as f64 - (1.0 + (-2.0f64).exp()).ln()).abs() < 1e-6);
    assert_eq!(out.accuracy, 1.0);
    assert!((out.margin - 2.0).abs() < 1e-6);
}

#[test]
fn dpo_gradient_raises_chosen_and_lowers_rejected() {
    let pc = Var::new(&[-2.0f32, -1.0], &Device::Cpu).unwrap();
    let pr = Var::new(&[-1.0f32, -1.5], &Device::Cpu).unwrap();
    let rc = Var::new(&[-1.5f32, -1.2], &Device::Cpu).unwrap();
    let rr = Var::new(&[-1.5f32, -1.2], &Device::Cpu).unwrap();
    let out = dpo_loss(&pc, &pr, &rc, &rr, 0.3).unwrap();
    let g = out.loss.backward().unwrap();
    let gc = g.get(&pc).unwrap().to_vec1::<f32>().unwrap();
    let gr = g.get(&pr).unwrap().to_vec1::<f32>().unwrap();
    // Descent moves against the gradient: chosen up (grad < 0), rejected down (grad > 0).
    assert!(gc.iter().all(|&v| v < 0.0), "{gc:?}");
    assert!(gr.iter().all(|&v| v > 0.0), "{gr:?}");
    // The reference is detached: no gradient reaches it.
    assert!(g.get(&rc).is_none() && g.get(&rr).is_none());
    // One SGD step lowers the loss.
    let lr = 0.5;
    let pc2 = (pc.as_tensor() - (g.get(&pc).unwrap() * lr).unwrap()).unwrap();
    let pr2 = (pr.as_tensor() - (g.get(&pr).unwrap() * lr).unwrap()).unwrap();
    let after = dpo_loss(&pc2, &pr2, &rc, &rr, 0.3).unwrap().loss.to_scalar::<f32>().unwrap();
    assert!(after < out.loss.to_scalar::<f32>().unwrap());
}

#[test]
fn dpo_is_log2_when_policy_equals_reference() {
    let pol = BigramPolicy::new(12, 3).unwrap();
    let reference = pol.deep_copy().unwrap();
    let h: Vec<&[u32]> = vec![&[1, 2], &[5], &[]];
    let c: Vec<&[u32]> = vec![&[3, 4], &[6, 7], &[0, 11]];
    let r: Vec<&[u32]> = vec![&[9, 4], &[1, 1], &[2, 2]];
    let out = dpo_loss(
        &pol.sequence_logprob(&h, &c).unwrap(),
        &pol.sequence_logprob(&h, &r).unwrap(),
        &reference.sequence_logprob(&h, &c).unwrap(),
        &reference.sequence_logprob(&h, &r).unwrap(),
        0.7,
    )
    .unwrap();
    let l = out.loss.to_scalar::<f32>().unwrap() as f64;
    assert!((l - std::f64::consts::LN_2).abs() < 1e-6, "{l}");
    assert_eq!(out.accuracy, 0.0);
}

#[test]
fn bigram_logprob_matches_table() {
    let pol = BigramPolicy::new(5, 9).unwrap();
    let p = pol.next_probs().unwrap();
    let lp = pol.sequence_logprob(&[&[4, 2]], &[&[1, 3]]).unwrap().to_vec1::<f32>().unwrap()[0];
    let want = p[2][1].ln() + p[1][3].ln();
    assert!((lp - want).abs() < 1e-5, "{lp} vs {want}");
    let empty = pol.sequence_logprob(&[&[]], &[&[0]]).unwrap().to_vec1::<f32>().unwrap()[0];
    assert!((empty - p[5][0].ln()).abs() < 1e-5);
    assert!(pol.sequence_logprob(&[&[]], &[&[5]]).is_err(), "item 5 is out of range");
}

#[test]
fn ecpo_clips_negative_advantages_early() {
    // logp - old = 5 with A = -1: plain PPO's loss would be e^5; ECPO caps the ratio at
    // 1 + eps + delta, then the usual clipped objective gives loss = 1.3.
    let logp = Var::new(&[0.0f32], &Device::Cpu).unwrap();
    let l = ecpo_loss(&logp, &t(&[-5.0]), &[-1.0], 0.2, 0.1).unwrap();
    assert!((l.to_scalar::<f32>().unwrap() - 1.3).abs() < 1e-5, "{l}");
    // Equal log-probs: objective = mean advantage; positive advantage pushes logp up.
    let logp = Var::new(&[-1.0f32, -2.0], &Device::Cpu).unwrap();
    let l = ecpo_loss(&logp, &t(&[-1.0, -2.0]), &[1.0, -1.0], 0.2, 0.1).unwrap();
    assert!(l.to_scalar::<f32>().unwrap().abs() < 1e-6);
    let g = l.backward().unwrap().get(&logp).unwrap().to_vec1::<f32>().unwrap();
    assert!(g[0] < 0.0 && g[1] > 0.0, "{g:?}");
}

#[test]
fn training_step_leaves_reference_unchanged() {
    let world = ToyWorld { users: 8, items: 12, topics: 3 };
    let ds = world.dataset(6, 3, false, 1);
    let hs: Vec<Vec<u32>> = (0..ds.n_users()).map(|u| ds.history(u).to_vec()).collect();
    let mut pol = BigramPolicy::new(12, 5).unwrap();
    let reference = pol.deep_copy().unwrap();
    let before: Vec<Vec<f32>> =
        reference.vars().iter().map(|(_, v)| v.flatten_all().unwrap().to_vec1().unwrap()).collect();
    let pol_before = pol.next_probs().unwrap();
    let cfg = AlignConfig { steps: 3, user_fraction: 1.0, lr: 0.05, ..Default::default() };
    let mut gen = |p: &BigramPolicy, h: &[&[u32]], n: usize, len: usize, rng: &mut onerec::util::rng::Rng| {
        p.sample(h, n, len, rng)
    };
    let scorer = |h: &[&[u32]], s: &[&[u32]]| -> anyhow::Result<Vec<f32>> {
        Ok(h.iter().zip(s).map(|(h, s)| world.reward(h, s)).collect())
    };
    let log = iteration(&mut pol, &reference, &mut gen, &scorer, &hs, &cfg, 7, 1).unwrap();
    assert!(log.pairs > 0);
    assert!(
        (log.train.pref_loss_first - std::f64::consts::LN_2).abs() < 1e-5,
        "first step has pi == ref: {}",
        log.train.pref_loss_first
    );
    let after: Vec<Vec<f32>> =
        reference.vars().iter().map(|(_, v)| v.flatten_all().unwrap().to_vec1().unwrap()).collect();
    assert_eq!(before, after, "reference weights changed");
    assert_ne!(pol_before, pol.next_probs().unwrap(), "policy did not train");
}
