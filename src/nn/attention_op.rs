//! Fused scaled-dot-product attention as a candle CustomOp3 with a hand-written
//! backward. candle's batched matmul calls gemm once per (batch, head) pair, which
//! for short sequences (history 20, a few heads) is dominated by per-call overhead
//! (and, with 2 threads, a rayon dispatch per tiny gemm); here one parallel loop
//! covers all (batch, head) pairs. Probabilities are recomputed in the backward.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// softmax(scale * q k^T + mask) v over q [BH,Tq,dh], k/v [BH,Tk,dh].
pub struct Sdpa {
    pub heads: usize,
    pub scale: f32,
    /// Additive mask [mb, 1, mq, tk] with mb in {1, B}, mq in {1, Tq}; empty = none.
    pub mask: Vec<f32>,
    pub mb: usize,
    pub mq: usize,
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("sdpa: {what} must be f32") };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("sdpa: {what} must be contiguous"),
    }
}

impl Sdpa {
    fn mask_row(&self, bh: usize, i: usize, tk: usize) -> Option<&[f32]> {
        if self.mask.is_empty() {
            return None;
        }
        let b = if self.mb > 1 { bh / self.heads } else { 0 };
        let q = if self.mq > 1 { i } else { 0 };
        let o = (b * self.mq + q) * tk;
        Some(&self.mask[o..o + tk])
    }

    /// Softmax probabilities of one (batch, head): [tq, tk].
    #[allow(clippy::too_many_arguments)]
    fn probs(&self, bh: usize, q: &[f32], k: &[f32], tq: usize, tk: usize, dh: usize, p: &mut [f32]) {
        for i in 0..tq {
            let qi = &q[i * dh..(i + 1) * dh];
            let row = &mut p[i * tk..(i + 1) * tk];
            for (j, r) in row.iter_mut().enumerate() {
                let kj = &k[j * dh..(j + 1) * dh];
                *r = self.scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>();
            }
            if let Some(m) = self.mask_row(bh, i, tk) {
                row.iter_mut().zip(m).for_each(|(r, m)| *r += m);
            }
            let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let mut s = 0.0;
            for r in row.iter_mut() {
                *r = (*r - mx).exp();
                s += *r;
            }
            let inv = 1.0 / s;
            row.iter_mut().for_each(|r| *r *= inv);
        }
    }
}

impl CustomOp3 for Sdpa {
    fn name(&self) -> &'static str {
        "onerec-sdpa"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (bh, tq, dh) = l1.shape().dims3()?;
        let (_, tk, _) = l2.shape().dims3()?;
        let (q, k, v) = (slice(s1, l1, "q")?, slice(s2, l2, "k")?, slice(s3, l3, "v")?);
        let mut out = vec![0f32; bh * tq * dh];
        out.par_chunks_mut(tq * dh).enumerate().for_each(|(n, o)| {
            let mut p = vec![0f32; tq * tk];
            let (qn, kn, vn) = (
                &q[n * tq * dh..(n + 1) * tq * dh],
                &k[n * tk * dh..(n + 1) * tk * dh],
                &v[n * tk * dh..(n + 1) * tk * dh],
            );
            self.probs(n, qn, kn, tq, tk, dh, &mut p);
            for i in 0..tq {
                let oi = &mut o[i * dh..(i + 1) * dh];
                for j in 0..tk {
                    let pij = p[i * tk + j];
                    oi.iter_mut().zip(&vn[j * dh..(j + 1) * dh]).for_each(|(a, b)| *a += pij * b);
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((bh, tq, dh))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (bh, tq, dh) = q.dims3()?;
        let tk = k.dim(1)?;
        let qv: Vec<f32> = q.flatten_all()?.to_vec1()?;
        let kv: Vec<f32> = k.flatten_all()?.to_vec1()?;
        let vv: Vec<f32> = v.flatten_all()?.to_vec1()?;
        let gv: Vec<f32> = g.flatten_all()?.to_vec1()?;
        let parts: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = (0..bh)
            .into_par_iter()
            .map(|n| {
                let qn = &qv[n * tq * dh..(n + 1) * tq * dh];
                let kn = &kv[n * tk * dh..(n + 1) * tk * dh];
                let vn = &vv[n * tk * dh..(n + 1) * tk * dh];
                let gn = &gv[n * tq * dh..(n + 1) * tq * dh];
                let mut p = vec![0f32; tq * tk];
                self.probs(n, qn, kn, tq, tk, dh, &mut p);
                let (mut dq, mut dk, mut dv) = (vec![0f32; tq * dh], vec![0f32; tk * dh], vec![0f32; tk * dh]);
                let mut ds = vec![0f32; tk];
                for i in 0..tq {
                    let gi = &gn[i * dh..(i + 1) * dh];
                    let pi = &p[i * tk..(i + 1) * tk];
                    // dP_ij = g_i . v_j ; dS = P * (dP - sum_j P dP)
                    let mut dot = 0.0;
                    for j in 0..tk {
                        let dp: f32 = gi.iter().zip(&vn[j * dh..(j + 1) * dh]).map(|(a, b)| a * b).sum();
                        ds[j] = dp;
                        dot += pi[j] * dp;
                    }
                    for j in 0..tk {
                        let pij = pi[j];
                        // dV_j += P_ij g_i
                        dv[j * dh..(j + 1) * dh].iter_mut().zip(gi).for_each(|(a, b)| *a += pij * b);
                        let s = pij * (ds[j] - dot) * self.scale;
                        if s != 0.0 {
                            let kj = &kn[j * dh..(j + 1) * dh];
                            dq[i * dh..(i + 1) * dh].iter_mut().zip(kj).for_each(|(a, b)| *a += s * b);
                            let qi = &qn[i * dh..(i + 1) * dh];
                            dk[j * dh..(j + 1) * dh].iter_mut().zip(qi).for_each(|(a, b)| *a += s * b);
                        }
                    }
                }
                (dq, dk, dv)
            })
            .collect();
        let mut dq = Vec::with_capacity(bh * tq * dh);
        let mut dk = Vec::with_capacity(bh * tk * dh);
        let mut dv = Vec::with_capacity(bh * tk * dh);
        for (a, b, c) in parts {
            dq.extend(a);
            dk.extend(b);
            dv.extend(c);
        }
        let dev = q.device();
        Ok((
            Some(Tensor::from_vec(dq, (bh, tq, dh), dev)?),
            Some(Tensor::from_vec(dk, (bh, tk, dh), dev)?),
            Some(Tensor::from_vec(dv, (bh, tk, dh), dev)?),
        ))
    }
}

/// Fused attention: q [B,H,Tq,dh], k/v [B,H,Tk,dh] (contiguous), additive mask
/// broadcastable as [B|1, 1, Tq|1, Tk]; returns [B,H,Tq,dh].
pub fn sdpa(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, scale: f32) -> Result<Tensor> {
    let (b, h, tq, dh) = q.dims4()?;
    let tk = k.dim(2)?;
    let (mask, mb, mq) = match mask {
        Some(m) => {
            let (mb, _, mq, mk) = m.dims4()?;
            if mk != tk || (mb != 1 && mb != b) || (mq != 1 && mq != tq) {
                candle_core::bail!("attention mask {:?} does not fit [{b},_,{tq},{tk}]", m.dims());
            }
            (m.flatten_all()?.to_vec1::<f32>()?, mb, mq)
        }
        None => (Vec::new(), 1, 1),
    };
    let op = Sdpa { heads: h, scale, mask, mb, mq };
    let bh = b * h;
    let q = q.contiguous()?.reshape((bh, tq, dh))?;
    let k = k.contiguous()?.reshape((bh, tk, dh))?;
    let v = v.contiguous()?.reshape((bh, tk, dh))?;
    q.apply_op3(&k, &v, op)?.reshape((b, h, tq, dh))
}

/// The same attention from candle ops: the default (at history 20 and 4 heads, batched
/// gemm beats the fused kernel), the reference in tests, and the path on other devices.
pub fn sdpa_reference(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, scale: f32) -> Result<Tensor> {
    // k^T as a strided view: gemm reads it transposed, no copy.
    let mut s = (q * scale as f64)?.matmul(&k.contiguous()?.t()?)?;
    if let Some(m) = mask {
        s = s.broadcast_add(m)?;
    }
    candle_nn::ops::softmax(&s, D::Minus1)?.matmul(&v.contiguous()?)
}
