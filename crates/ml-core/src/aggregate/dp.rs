//! The Gaussian mechanism for the differential-privacy mode: calibration and seeded noise.
//!
//! The noise must be bit-reproducible from its seed on every machine, so nothing here calls the
//! platform `libm` (whose `ln`, `sin`, `cos` may differ in the last bit between systems):
//!
//! * the RNG is ChaCha20 keyed by `blake3("flock-ml-core/dp-noise/v1", seed)`;
//! * uniforms are built by hand from 53 random bits;
//! * normals come from the Marsaglia polar method, which needs only `+ − × ÷`, `sqrt`
//!   (correctly rounded by IEEE 754) and a logarithm, implemented here ([`det_ln`]) with a fixed
//!   sequence of basic operations;
//! * the vector is split into fixed chunks of 2¹⁴ coordinates; chunk `c` draws from ChaCha stream
//!   `c`, so chunks can be filled in parallel with the same bits as a serial run.

use super::{set::CHUNK, AggregateError};
use flock_primitives::Hash;
use rand::RngCore;
use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// A calibrated Gaussian mechanism: noise of standard deviation `sigma` gives
/// (`epsilon`, `delta`)-differential privacy for a query of L2 sensitivity `sensitivity`.
///
/// Uses the classical bound σ = Δ·√(2 ln(1.25/δ))/ε (Dwork & Roth, Theorem A.1), which is
/// proven for ε < 1; for larger ε it is the conventional calibration, not a proof.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GaussianMechanism {
    /// L2 sensitivity Δ of the released quantity (the clip norm C for a sum of clipped updates;
    /// C/n for a mean of n).
    pub sensitivity: f64,
    /// The privacy loss ε.
    pub epsilon: f64,
    /// The failure probability δ.
    pub delta: f64,
    /// The noise standard deviation σ.
    pub sigma: f64,
}

impl GaussianMechanism {
    /// Calibrates σ for (ε, δ) and sensitivity Δ: `σ = Δ·√(2 ln(1.25/δ))/ε`.
    pub fn calibrate(sensitivity: f64, epsilon: f64, delta: f64) -> Result<Self, AggregateError> {
        positive("sensitivity", sensitivity)?;
        positive("epsilon", epsilon)?;
        check_delta(delta)?;
        let sigma = sensitivity * (2.0 * det_ln(1.25 / delta)).sqrt() / epsilon;
        Ok(Self { sensitivity, epsilon, delta, sigma })
    }

    /// The ε that noise of standard deviation σ buys for sensitivity Δ and δ (the inverse of
    /// [`GaussianMechanism::calibrate`]).
    pub fn for_sigma(sensitivity: f64, sigma: f64, delta: f64) -> Result<Self, AggregateError> {
        positive("sensitivity", sensitivity)?;
        positive("sigma", sigma)?;
        check_delta(delta)?;
        let epsilon = sensitivity * (2.0 * det_ln(1.25 / delta)).sqrt() / sigma;
        Ok(Self { sensitivity, epsilon, delta, sigma })
    }

    /// Whether ε < 1, the range where the classical bound is a theorem.
    pub fn is_classical(&self) -> bool {
        self.epsilon < 1.0
    }
}

fn positive(what: &'static str, value: f64) -> Result<(), AggregateError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(AggregateError::InvalidParameter { what, value })
    }
}

fn check_delta(delta: f64) -> Result<(), AggregateError> {
    if delta > 0.0 && delta < 1.0 {
        Ok(())
    } else {
        Err(AggregateError::InvalidParameter { what: "delta (in (0, 1))", value: delta })
    }
}

/// Adds N(0, σ²) noise to every value (in f64, rounded once per value), drawn from `seed`.
/// The same (`values`, `sigma`, `seed`) gives the same bits on every machine and thread count.
pub fn add_gaussian_noise(values: &mut [f32], sigma: f64, seed: u64) -> Result<(), AggregateError> {
    positive("sigma", sigma)?;
    let key = Hash::of_parts("flock-ml-core/dp-noise/v1", &[&seed.to_le_bytes()]).0;
    values.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
        let mut rng = ChaCha20Rng::from_seed(key);
        rng.set_stream(c as u64);
        let mut pending: Option<f64> = None;
        for v in chunk {
            let z = match pending.take() {
                Some(z) => z,
                None => {
                    let (a, b) = polar_pair(&mut rng);
                    pending = Some(b);
                    a
                }
            };
            *v = (f64::from(*v) + sigma * z) as f32;
        }
    });
    Ok(())
}

/// A uniform f64 in [0, 1) from the top 53 bits of one RNG word.
fn uniform(rng: &mut ChaCha20Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Two independent standard normals (Marsaglia polar method).
fn polar_pair(rng: &mut ChaCha20Rng) -> (f64, f64) {
    loop {
        let u = 2.0 * uniform(rng) - 1.0;
        let v = 2.0 * uniform(rng) - 1.0;
        let s = u * u + v * v;
        if s > 0.0 && s < 1.0 {
            let f = (-2.0 * det_ln(s) / s).sqrt();
            return (u * f, v * f);
        }
    }
}

/// Natural logarithm of a positive finite `x` using only IEEE basic operations, so it gives the
/// same bits everywhere (within about 1 ulp of the true value). Returns NaN for `x ≤ 0`, NaN or
/// infinity.
pub fn det_ln(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return f64::NAN;
    }
    // x = m · 2^k with m in [1, 2); subnormals are first scaled into the normal range.
    let (x, bias) = if x < f64::MIN_POSITIVE { (x * (1u64 << 54) as f64, -54i64) } else { (x, 0) };
    let bits = x.to_bits();
    let mut k = ((bits >> 52) & 0x7ff) as i64 - 1023 + bias;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        k += 1;
    }
    // ln m = 2·atanh(s), s = (m − 1)/(m + 1), |s| ≤ 0.1716: the odd series to s²⁷ is exact to
    // well below f64 precision.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut p = 1.0 / 27.0;
    for j in (1..13).rev() {
        p = 1.0 / (2 * j + 1) as f64 + s2 * p;
    }
    let ln_m = 2.0 * s + 2.0 * s * s2 * p;
    k as f64 * std::f64::consts::LN_2 + ln_m
}
