//! Seeded randomness shared by the generators: ChaCha8 with a stream per purpose, and the few
//! distributions `rand` 0.8 lacks without `rand_distr` (normal, gamma), written in plain `f64`
//! arithmetic in a fixed order so a seed always gives the same numbers.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A ChaCha8 generator for `seed`, on a separate stream per `purpose`, so two uses of one seed
/// (say a patient's parameters and its sensor noise) never share numbers.
pub(crate) fn seeded(seed: u64, purpose: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(purpose);
    rng
}

/// A standard normal draw (Box–Muller; one of the pair is discarded to keep the stream simple).
pub(crate) fn normal<R: Rng>(rng: &mut R) -> f64 {
    // 1 - u is in (0, 1], so the log is finite.
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A Gamma(shape, 1) draw by Marsaglia & Tsang (2000), with the `U^(1/shape)` boost for
/// shape < 1. `shape` must be positive and finite.
pub(crate) fn gamma<R: Rng>(rng: &mut R, shape: f64) -> f64 {
    if shape < 1.0 {
        let u: f64 = 1.0 - rng.gen::<f64>();
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u: f64 = 1.0 - rng.gen::<f64>();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A log-normal multiplier with median 1 and coefficient of variation ≈ `cv`, clamped to
/// `[lo, hi]` so a tail draw never leaves the published range.
pub(crate) fn lognormal_factor<R: Rng>(rng: &mut R, cv: f64, lo: f64, hi: f64) -> f64 {
    let sigma = (1.0 + cv * cv).ln().sqrt();
    (sigma * normal(rng)).exp().clamp(lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_and_repeat() {
        let draw = |seed, purpose| -> Vec<u64> {
            let mut rng = seeded(seed, purpose);
            (0..4).map(|_| rng.gen()).collect()
        };
        assert_eq!(draw(7, 1), draw(7, 1));
        assert_ne!(draw(7, 1), draw(7, 2));
        assert_ne!(draw(7, 1), draw(8, 1));
    }

    #[test]
    fn normal_and_gamma_moments() {
        let mut rng = seeded(1, 0);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| normal(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{mean} {var}");
        for shape in [0.3, 1.0, 4.0] {
            let gs: Vec<f64> = (0..n).map(|_| gamma(&mut rng, shape)).collect();
            let mean = gs.iter().sum::<f64>() / n as f64;
            assert!((mean - shape).abs() < 0.05 * shape.max(1.0), "{shape}: {mean}");
            assert!(gs.iter().all(|g| g.is_finite() && *g >= 0.0));
        }
    }
}
