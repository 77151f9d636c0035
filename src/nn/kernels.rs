//! Fused CPU kernels, with hand-written backward passes, for the two element-wise blocks
//! that dominated the non-matmul time of a training step: RMSNorm (6 candle ops forward,
//! ~15 backward, and a reduction over rows for the scale's gradient) and SwiGLU's
//! `silu(gate) * up` (candle's silu backward alone is 8 passes). Each becomes one pass
//! forward and one backward. Rows go in fixed chunks and the scale gradient's partial
//! sums are added in chunk order, so results do not depend on the thread count.
//! Other devices and dtypes use the composed ops ([`rms_norm_reference`], [`swiglu_reference`]).

use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Storage, Tensor, D};
use rayon::prelude::*;

/// Rows per parallel chunk (and per partial sum of the RMSNorm scale gradient).
const ROWS: usize = 64;

/// Elements per parallel chunk of SwiGLU, which is element-wise (rows do not matter).
const CHUNK: usize = 1 << 14;

/// Whether `x` can take the fused path.
fn fusable(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { bail!("{what}: expected f32") };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{what}: expected a contiguous tensor"),
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor (no copy when contiguous).
fn with_data<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*s else { bail!("{what}: expected a CPU tensor") };
    f(slice(cpu, l, what)?)
}

/// Runs `f` on the data of three CPU tensors (the two inputs and the output gradient).
fn with_data3<R>(ts: [&Tensor; 3], what: &str, f: impl FnOnce(&[f32], &[f32], &[f32]) -> Result<R>) -> Result<R> {
    with_data(ts[0], what, |a| with_data(ts[1], what, |b| with_data(ts[2], what, |c| f(a, b, c))))
}

/// The two input gradients of a binary op as tensors shaped like its inputs.
fn input_grads(a: &Tensor, da: Vec<f32>, b: &Tensor, db: Vec<f32>) -> Result<(Option<Tensor>, Option<Tensor>)> {
    Ok((Some(Tensor::from_vec(da, a.shape(), a.device())?), Some(Tensor::from_vec(db, b.shape(), b.device())?)))
}

/// `x * w / sqrt(mean(x^2) + eps)` over the last dim.
struct RmsNormOp {
    eps: f32,
}

fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let ms = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
    1.0 / (ms + eps).sqrt()
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "onerec-rms-norm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (slice(s1, l1, "rms_norm x")?, slice(s2, l2, "rms_norm weight")?);
        let d = w.len();
        if d == 0 || l1.dims().last() != Some(&d) {
            bail!("rms_norm: weight of {d} does not match input {:?}", l1.dims());
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(ROWS * d).zip(x.par_chunks(ROWS * d)).for_each(|(o, x)| {
            for (o, x) in o.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                let r = inv_rms(x, self.eps);
                o.iter_mut().zip(x).zip(w).for_each(|((o, x), w)| *o = x * r * w);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    /// With r = 1/rms(x) and g = w * dy: dx = r g - x r^3 mean(g x); dw = sum_rows dy x r.
    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = w.elem_count();
        let (dx, dw) = with_data3([x, w, dy], "rms_norm backward", |x, w, dy| {
            let mut dx = vec![0f32; x.len()];
            let parts: Vec<Vec<f32>> = dx
                .par_chunks_mut(ROWS * d)
                .zip(x.par_chunks(ROWS * d).zip(dy.par_chunks(ROWS * d)))
                .map(|(dx, (x, dy))| {
                    let mut dw = vec![0f32; d];
                    for ((dx, x), dy) in dx.chunks_exact_mut(d).zip(x.chunks_exact(d)).zip(dy.chunks_exact(d)) {
                        let r = inv_rms(x, self.eps);
                        let mean_gx = x.iter().zip(dy).zip(w).map(|((x, dy), w)| w * dy * x).sum::<f32>() / d as f32;
                        let c = mean_gx * r * r * r;
                        for j in 0..d {
                            dx[j] = r * w[j] * dy[j] - x[j] * c;
                            dw[j] += dy[j] * x[j] * r;
                        }
                    }
                    dw
                })
                .collect();
            let mut dw = vec![0f32; d];
            for p in parts {
                dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
            }
            Ok((dx, dw))
        })?;
        input_grads(x, dx, w, dw)
    }
}

/// RMSNorm over the last dim with scale `w`; fused on CPU f32.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if fusable(x) && w.dtype() == DType::F32 {
        x.contiguous()?.apply_op2(&w.contiguous()?, RmsNormOp { eps: eps as f32 })
    } else {
        rms_norm_reference(x, w, eps)
    }
}

/// RMSNorm from differentiable candle ops (candle's fused norm has no backward).
pub fn rms_norm_reference(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
}

/// `silu(g) * u`, element-wise.
struct SwiGluOp;

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

impl CustomOp2 for SwiGluOp {
    fn name(&self) -> &'static str {
        "onerec-swiglu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (g, u) = (slice(s1, l1, "swiglu gate")?, slice(s2, l2, "swiglu up")?);
        if l1.dims() != l2.dims() {
            bail!("swiglu: gate {:?} and up {:?} differ in shape", l1.dims(), l2.dims());
        }
        let (mut out, n) = (vec![0f32; g.len()], CHUNK);
        out.par_chunks_mut(n).zip(g.par_chunks(n).zip(u.par_chunks(n))).for_each(|(o, (g, u))| {
            o.iter_mut().zip(g).zip(u).for_each(|((o, g), u)| *o = g * sigmoid(*g) * u);
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    /// dg = dh u s (1 + g (1 - s)) with s = sigmoid(g); du = dh g s.
    fn bwd(&self, g: &Tensor, u: &Tensor, _res: &Tensor, dh: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let n = CHUNK;
        let (dg, du) = with_data3([g, u, dh], "swiglu backward", |g, u, dh| {
            let (mut dg, mut du) = (vec![0f32; g.len()], vec![0f32; g.len()]);
            dg.par_chunks_mut(n)
                .zip(du.par_chunks_mut(n))
                .zip(g.par_chunks(n).zip(u.par_chunks(n)).zip(dh.par_chunks(n)))
                .for_each(|((dg, du), ((g, u), dh))| {
                    for i in 0..g.len() {
                        let s = sigmoid(g[i]);
                        let silu = g[i] * s;
                        du[i] = dh[i] * silu;
                        dg[i] = dh[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
                    }
                });
            Ok((dg, du))
        })?;
        input_grads(g, dg, u, du)
    }
}

/// `silu(g) * u`; fused on CPU f32.
pub fn swiglu(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    if fusable(g) && u.dtype() == DType::F32 {
        g.contiguous()?.apply_op2(&u.contiguous()?, SwiGluOp)
    } else {
        swiglu_reference(g, u)
    }
}

/// `silu(g) * u` from candle ops.
pub fn swiglu_reference(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    g.silu()? * u
}
