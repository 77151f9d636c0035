//! Seeded inverted dropout.

use candle_core::{Result, Tensor};

/// Inverted dropout whose masks are drawn on the host from a seeded stream (candle's
/// CPU `rand` cannot be seeded), so a training run is reproducible. Off (identity)
/// unless a training pass has switched it on with [`Dropout::training`]; eval,
/// generation and alignment never drop.
#[derive(Debug)]
pub struct Dropout {
    p: f32,
    rng: std::sync::Mutex<Option<crate::util::rng::Rng>>,
}

/// Switches dropout off again when dropped (see [`Dropout::training`]).
pub struct DropoutGuard<'a>(&'a Dropout);

impl Drop for DropoutGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut g) = self.0.rng.lock() {
            *g = None;
        }
    }
}

impl Dropout {
    pub fn new(p: f64) -> Dropout {
        Dropout { p: p as f32, rng: std::sync::Mutex::new(None) }
    }

    pub fn p(&self) -> f32 {
        self.p
    }

    /// Turns dropout on, drawing masks from `rng`, until the guard is dropped.
    pub fn training(&self, rng: crate::util::rng::Rng) -> DropoutGuard<'_> {
        if let Ok(mut g) = self.rng.lock() {
            *g = Some(rng);
        }
        DropoutGuard(self)
    }

    /// `x` with each element zeroed with probability p and the rest scaled by
    /// 1/(1-p); `x` itself when off or p = 0.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.p <= 0.0 {
            return Ok(x.clone());
        }
        let mut guard = self.rng.lock().map_err(|_| candle_core::Error::Msg("dropout rng lock poisoned".into()))?;
        let Some(rng) = guard.as_mut() else { return Ok(x.clone()) };
        let n = x.elem_count();
        let keep = 1.0 / (1.0 - self.p);
        // 16 random bits per element: p is resolved to 1/65536.
        let threshold = (self.p as f64 * 65536.0).round() as u64;
        let mut mask = Vec::with_capacity(n + 3);
        while mask.len() < n {
            let r = rand::RngCore::next_u64(rng);
            for s in 0..4 {
                mask.push(if (r >> (16 * s)) & 0xffff < threshold { 0.0f32 } else { keep });
            }
        }
        mask.truncate(n);
        x.mul(&Tensor::from_vec(mask, x.dims(), x.device())?.to_dtype(x.dtype())?)
    }
}
