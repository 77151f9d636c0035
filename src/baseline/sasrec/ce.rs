//! Full-softmax cross-entropy over all items as one CPU op with a hand-written
//! backward: per row one pass for the log-sum-exp and, in the backward, one pass for
//! `softmax - onehot`. Built from candle ops it would take ~10 passes (and as many
//! [positions x items] buffers) over the largest tensor of the step.

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

struct CrossEntropyOp {
    targets: Vec<u32>,
    /// Per row, classes left out of its softmax (empty: none; else one list per row).
    excluded: Vec<Vec<u32>>,
    /// Per-row log-sum-exp saved by the forward for the backward.
    lse: Mutex<Vec<f32>>,
}

/// e^x to a relative error below 1e-7 (3 + |x|) (2^round(x log2 e) times a degree-6
/// polynomial of the remainder; the error grows with |x| through the f32 product x log2 e);
/// branch-free so the row loops vectorise, unlike libm's `expf`.
#[inline(always)]
fn exp_fast(x: f32) -> f32 {
    let t = x.clamp(-87.0, 88.0) * std::f32::consts::LOG2_E;
    let n = (t + 12_582_912.0) - 12_582_912.0; // round to nearest (1.5 * 2^23)
    let f = (t - n) * std::f32::consts::LN_2; // |f| <= ln2 / 2
    let p = 1.0 + f * (1.0 + f * (0.5 + f * (1.0 / 6.0 + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0))))));
    f32::from_bits(((n as i32 + 127) << 23) as u32) * p
}

fn row_lse(row: &[f32]) -> f32 {
    let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let s: f32 = row.iter().map(|&v| exp_fast(v - mx)).sum();
    mx + s.ln()
}

impl CustomOp1 for CrossEntropyOp {
    fn name(&self) -> &'static str {
        "onerec-sasrec-ce"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(v) = s else { bail!("cross-entropy: logits must be f32") };
        let Some((a, b)) = l.contiguous_offsets() else { bail!("cross-entropy: logits must be contiguous") };
        let (n, c) = l.shape().dims2()?;
        if self.targets.len() != n {
            bail!("cross-entropy: {} targets for {n} rows", self.targets.len());
        }
        if let Some(t) = self.targets.iter().find(|&&t| t as usize >= c) {
            bail!("cross-entropy: target {t} out of range ({c} classes)");
        }
        let lse: Vec<f32> = if self.excluded.is_empty() {
            v[a..b].par_chunks(c).map(row_lse).collect()
        } else {
            if self.excluded.len() != n {
                bail!("cross-entropy: {} exclusion lists for {n} rows", self.excluded.len());
            }
            for (ex, &t) in self.excluded.iter().zip(&self.targets) {
                if let Some(e) = ex.iter().find(|&&e| e as usize >= c || e == t) {
                    bail!("cross-entropy: excluded class {e} is the target or out of range ({c} classes)");
                }
            }
            v[a..b]
                .par_chunks(c)
                .zip(self.excluded.par_iter())
                .map_init(Vec::new, |buf: &mut Vec<f32>, (row, ex)| {
                    buf.clear();
                    buf.extend_from_slice(row);
                    for &e in ex {
                        buf[e as usize] = f32::NEG_INFINITY;
                    }
                    row_lse(buf)
                })
                .collect()
        };
        let out: Vec<f32> =
            v[a..b].chunks(c).zip(&self.targets).zip(&lse).map(|((row, &t), &l)| l - row[t as usize]).collect();
        *self.lse.lock().map_err(|_| candle_core::Error::Msg("cross-entropy: lock poisoned".into()))? = lse;
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    /// d logits = (softmax(row) - onehot(target)) * d loss[row].
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (n, c) = arg.dims2()?;
        let arg = arg.contiguous()?;
        let g = grad_res.contiguous()?.to_vec1::<f32>()?;
        let lse = self.lse.lock().map_err(|_| candle_core::Error::Msg("cross-entropy: lock poisoned".into()))?;
        if lse.len() != n {
            bail!("cross-entropy backward before forward");
        }
        let (s, l) = arg.storage_and_layout();
        let Storage::Cpu(CpuStorage::F32(v)) = &*s else { bail!("cross-entropy backward: expected CPU f32 logits") };
        let Some((a, b)) = l.contiguous_offsets() else { bail!("cross-entropy backward: expected contiguous logits") };
        let mut d = vec![0f32; n * c];
        d.par_chunks_mut(c)
            .zip(v[a..b].par_chunks(c))
            .zip(self.targets.par_iter().zip(g.par_iter()).zip(lse.par_iter()))
            .for_each(|((drow, row), ((&t, &gr), &lse))| {
                for (o, &v) in drow.iter_mut().zip(row) {
                    *o = exp_fast(v - lse) * gr;
                }
                drow[t as usize] -= gr;
            });
        for (drow, ex) in d.chunks_mut(c).zip(&self.excluded) {
            for &e in ex {
                drow[e as usize] = 0.0;
            }
        }
        drop(s);
        Ok(Some(Tensor::from_vec(d, (n, c), arg.device())?))
    }
}

/// Mean cross-entropy of `logits` [N, C] against `targets` (N class ids), with the
/// gradient written by [`CrossEntropyOp::bwd`]. CPU f32 only (the model's device).
pub fn cross_entropy(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    cross_entropy_excluding(logits, targets, &[])
}

/// [`cross_entropy`] with, per row, the classes `excluded[row]` left out of the softmax
/// (as if their logits were -inf: no loss, no gradient). `excluded` is empty (none) or
/// has one list per row; a list must not hold the row's target.
pub fn cross_entropy_excluding(logits: &Tensor, targets: &[u32], excluded: &[Vec<u32>]) -> Result<Tensor> {
    let op = CrossEntropyOp { targets: targets.to_vec(), excluded: excluded.to_vec(), lse: Mutex::new(Vec::new()) };
    logits.contiguous()?.apply_op1(op)?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn exp_fast_is_accurate() {
        for i in -8000..800 {
            let x = i as f32 * 0.01;
            let (a, b) = (exp_fast(x), x.exp());
            assert!((a - b).abs() <= 1e-7 * (3.0 + x.abs()) * b + 1e-38, "exp({x}): {a} vs {b}");
        }
    }

    #[test]
    fn matches_candle_cross_entropy_value_and_gradient() {
        let dev = Device::Cpu;
        let x = (Tensor::arange(0f32, 15.0, &dev).unwrap().reshape((3, 5)).unwrap().sin().unwrap() * 3.0).unwrap();
        let targets = [4u32, 0, 2];
        let (a, b) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&x).unwrap());
        let la = cross_entropy(a.as_tensor(), &targets).unwrap();
        let t = Tensor::new(&targets, &dev).unwrap();
        let lb = candle_nn::loss::cross_entropy(b.as_tensor(), &t).unwrap();
        let (va, vb) = (la.to_scalar::<f32>().unwrap(), lb.to_scalar::<f32>().unwrap());
        assert!((va - vb).abs() < 1e-5, "{va} vs {vb}");
        let (ga, gb) = (la.backward().unwrap(), lb.backward().unwrap());
        let (ga, gb) = (ga.get(a.as_tensor()).unwrap(), gb.get(b.as_tensor()).unwrap());
        let d = (ga - gb).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-6, "gradients differ by {d}");
    }

    /// Excluding classes equals dropping their columns: same loss, same gradient on the
    /// kept columns, zero gradient on the dropped ones.
    #[test]
    fn excluded_classes_leave_the_softmax() {
        let dev = Device::Cpu;
        let x = (Tensor::arange(0f32, 10.0, &dev).unwrap().reshape((2, 5)).unwrap().cos().unwrap() * 4.0).unwrap();
        let targets = [1u32, 4];
        let excluded = vec![vec![0u32, 3], vec![2u32]];
        let a = Var::from_tensor(&x).unwrap();
        let la = cross_entropy_excluding(a.as_tensor(), &targets, &excluded).unwrap();
        let ga = la.backward().unwrap().get(a.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        let rows = x.to_vec2::<f32>().unwrap();
        let mut want = 0.0;
        for (r, (row, ex)) in rows.iter().zip(&excluded).enumerate() {
            let kept: Vec<usize> = (0..5).filter(|i| !ex.contains(&(*i as u32))).collect();
            let lse = kept.iter().map(|&i| (row[i] as f64).exp()).sum::<f64>().ln();
            want += (lse - row[targets[r] as usize] as f64) / 2.0;
            for i in 0..5 {
                let g = if kept.contains(&i) { (row[i] as f64 - lse).exp() / 2.0 } else { 0.0 };
                let g = g - if i == targets[r] as usize { 0.5 } else { 0.0 };
                assert!((ga[r][i] as f64 - g).abs() < 1e-5, "grad[{r}][{i}] = {} vs {g}", ga[r][i]);
            }
        }
        let got = la.to_scalar::<f32>().unwrap() as f64;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        let plain = cross_entropy(&x, &targets).unwrap().to_scalar::<f32>().unwrap() as f64;
        assert!(plain > got + 0.01, "excluding classes must lower the loss: {plain} vs {got}");
        let bad = cross_entropy_excluding(&x, &targets, &[vec![1], vec![]]).unwrap_err();
        assert!(bad.to_string().contains("excluded class 1"), "{bad}");
    }
}
