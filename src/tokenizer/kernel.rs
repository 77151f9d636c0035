//! The hot loop of every quantizer: squared distances from a block of rows to all
//! centroids, computed as ||x||^2 - 2 x.c + ||c||^2 with a real matmul kernel
//! (`gemm`, the one candle uses) per block of rows, blocks spread over rayon.

use rayon::prelude::*;

/// Rows per block: big enough for gemm to reach its peak, small enough that the
/// [block, k] score buffer stays in cache-friendly sizes.
pub const BLOCK: usize = 256;

/// Squared L2 norm of each row of `x` ([n, d], row-major).
pub fn row_norms(x: &[f32], d: usize) -> Vec<f32> {
    x.par_chunks(d.max(1)).map(|r| dot(r, r)).collect()
}

/// Dot product with 8 independent accumulators (vectorises well).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Squared distance between two vectors.
#[inline]
pub fn sqdist(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            let t = x[i] - y[i];
            acc[i] += t * t;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        let t = x - y;
        s += t * t;
    }
    s
}

/// `out[b, k] = x_block[b, :] . c[k, :]` for a row-major block `x` [m, d] and
/// centroids `c` [k, d]; `out` is [m, k] row-major.
pub fn block_dot(x: &[f32], m: usize, d: usize, c: &[f32], k: usize, out: &mut [f32]) {
    assert!(x.len() >= m * d && c.len() >= k * d && out.len() >= m * k);
    if m == 0 || k == 0 {
        return;
    }
    if d == 0 {
        out[..m * k].fill(0.0);
        return;
    }
    // SAFETY: the asserts above bound every index the strides below reach:
    // dst (i, j) at i*k + j, lhs (i, t) at i*d + t, rhs (t, j) = c[j, t] at j*d + t.
    unsafe {
        gemm::gemm(
            m,
            k,
            d,
            out.as_mut_ptr(),
            1,
            k as isize,
            false,
            x.as_ptr(),
            1,
            d as isize,
            c.as_ptr(),
            d as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// For every row of `x` ([n, d]), calls `f(row_index, scores, out_row)` where
/// `scores[j] = ||c_j||^2 - 2 x.c_j` (add ||x||^2 for the squared distance) and
/// `out_row` is that row's `per_row` slots of `out`. Blocks run in parallel.
#[allow(clippy::too_many_arguments)]
pub fn scan<T: Send, F>(x: &[f32], d: usize, c: &[f32], k: usize, c_norms: &[f32], out: &mut [T], per_row: usize, f: F)
where
    F: Fn(usize, &[f32], &mut [T]) + Sync,
{
    let n = x.len().checked_div(d).unwrap_or(0);
    assert_eq!(out.len(), n * per_row, "scan: output size");
    assert_eq!(c_norms.len(), k);
    out.par_chunks_mut(BLOCK * per_row.max(1)).enumerate().for_each_init(
        || vec![0f32; BLOCK * k],
        |buf, (b, out_block)| {
            let start = b * BLOCK;
            let m = (n - start).min(BLOCK);
            let xb = &x[start * d..(start + m) * d];
            block_dot(xb, m, d, c, k, buf);
            for r in 0..m {
                let row = &mut buf[r * k..(r + 1) * k];
                for (s, cn) in row.iter_mut().zip(c_norms) {
                    *s = cn - 2.0 * *s;
                }
                f(start + r, row, &mut out_block[r * per_row..(r + 1) * per_row]);
            }
        },
    );
}

/// Nearest centroid of every row and its squared distance.
pub fn nearest(x: &[f32], d: usize, c: &[f32], k: usize) -> (Vec<u32>, Vec<f32>) {
    let xn = row_norms(x, d);
    let cn = row_norms(c, d);
    let n = xn.len();
    let mut out = vec![(0u32, 0f32); n];
    scan(x, d, c, k, &cn, &mut out, 1, |i, s, o| {
        let (mut bj, mut bs) = (0usize, f32::INFINITY);
        for (j, &v) in s.iter().enumerate() {
            if v < bs {
                bs = v;
                bj = j;
            }
        }
        o[0] = (bj as u32, (bs + xn[i]).max(0.0));
    });
    out.into_iter().unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_dot_matches_naive() {
        let (m, d, k) = (7, 13, 5);
        let x: Vec<f32> = (0..m * d).map(|i| ((i * 37 % 11) as f32) - 5.0).collect();
        let c: Vec<f32> = (0..k * d).map(|i| ((i * 17 % 7) as f32) * 0.5 - 1.0).collect();
        let mut out = vec![0f32; m * k];
        block_dot(&x, m, d, &c, k, &mut out);
        for i in 0..m {
            for j in 0..k {
                let want = dot(&x[i * d..(i + 1) * d], &c[j * d..(j + 1) * d]);
                assert!((out[i * k + j] - want).abs() < 1e-3, "{i},{j}: {} vs {want}", out[i * k + j]);
            }
        }
    }

    #[test]
    fn nearest_matches_brute_force() {
        let (n, d, k) = (600, 9, 17);
        let x: Vec<f32> = (0..n * d).map(|i| ((i * 7919 % 101) as f32) / 50.0 - 1.0).collect();
        let c: Vec<f32> = (0..k * d).map(|i| ((i * 104729 % 97) as f32) / 48.0 - 1.0).collect();
        let (idx, dist) = nearest(&x, d, &c, k);
        for i in 0..n {
            let xi = &x[i * d..(i + 1) * d];
            let best = (0..k).map(|j| sqdist(xi, &c[j * d..(j + 1) * d])).fold(f32::INFINITY, f32::min);
            let got = sqdist(xi, &c[idx[i] as usize * d..(idx[i] as usize + 1) * d]);
            assert!(got <= best + 1e-4, "row {i}");
            assert!((dist[i] - got).abs() < 1e-3);
        }
    }
}
