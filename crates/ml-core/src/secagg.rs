//! Secure aggregation by pairwise masking (Bonawitz et al., CCS 2017, without the
//! secret-sharing layer): voters learn the sum of the proposers' updates, never one update.
//!
//! ```text
//! each pair (i, j) of proposers shares a seed s_ij (from a key agreement; see below)
//! proposer i sends   y_i = q(x_i) + Σ_{j>i} PRG(s_ij) − Σ_{j<i} PRG(s_ij)      (mod 2^32)
//! voters compute     Σ_i y_i = Σ_i q(x_i)                  (every mask appears once + and once −)
//! if proposer d drops out, each survivor i reveals s_id, and the voters subtract the masks
//! that no longer cancel: corr_i = PRG(s_id) if d > i, −PRG(s_id) if d < i
//! ```
//! Values are quantized to fixed point (`q(x) = round(x × 2^scale_bits)` as a wrapping 32-bit
//! integer) so masks cancel exactly; the sum is exact up to the quantization of each input
//! (at most `n / 2^(scale_bits+1)` per coordinate). The masked vector of one proposer is
//! uniformly distributed whatever its update, so a voter who sees it learns nothing about it.
//! The pair seeds come from a key agreement between members' keys, bound to the task and
//! round; this module takes them as given.

use thiserror::Error;

/// Secure-aggregation errors.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SecAggError {
    /// Vectors of different lengths.
    #[error("masked vectors have different lengths ({0} and {1})")]
    LengthMismatch(usize, usize),
    /// A value cannot be quantized.
    #[error("value {0} at index {1} is not finite or out of the fixed-point range")]
    OutOfRange(f32, usize),
    /// Nothing to sum.
    #[error("no masked updates")]
    Empty,
    /// The artifact is not a masked update.
    #[error("not a masked update (missing the FLKMASK1 header)")]
    NotMasked,
}

/// A masked update in the artifact store: `FLKMASK1`, the word count (u64 LE), then the words
/// (u32 LE).
pub const MASKED_MAGIC: &[u8; 8] = b"FLKMASK1";

/// Encodes a masked update as an artifact.
pub fn encode_masked(words: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 4 * words.len());
    out.extend_from_slice(MASKED_MAGIC);
    out.extend_from_slice(&(words.len() as u64).to_le_bytes());
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

/// Decodes a masked-update artifact that must hold exactly `expected` words.
pub fn decode_masked(bytes: &[u8], expected: usize) -> Result<Vec<u32>, SecAggError> {
    if bytes.len() < 16 || &bytes[..8] != MASKED_MAGIC {
        return Err(SecAggError::NotMasked);
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[8..16]);
    let n = u64::from_le_bytes(n);
    if n != expected as u64 || bytes.len() as u64 != 16 + 4 * n {
        return Err(SecAggError::LengthMismatch(
            expected,
            ((bytes.len() - 16) / 4).min(n as usize),
        ));
    }
    Ok(bytes[16..].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// Fixed-point scale: 2^16 steps per unit (±32,768 range with wrapping headroom for sums).
pub const DEFAULT_SCALE_BITS: u32 = 16;

/// The pseudo-random mask expanded from a pair seed (blake3 in XOF mode).
pub fn prg(seed: &[u8; 32], len: usize) -> Vec<u32> {
    let mut out = vec![0u32; len];
    let mut reader = blake3::Hasher::new_keyed(seed).update(b"flock secagg mask v1").finalize_xof();
    let mut buf = [0u8; 4096];
    let mut i = 0;
    while i < len {
        let n = ((len - i) * 4).min(buf.len());
        reader.fill(&mut buf[..n]);
        for c in buf[..n].chunks_exact(4) {
            out[i] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            i += 1;
        }
    }
    out
}

fn quantize(values: &[f32], scale_bits: u32) -> Result<Vec<u32>, SecAggError> {
    let scale = f64::from(1u32 << scale_bits);
    let limit = f64::from(i32::MAX) / 4.0; // headroom for sums of many updates
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let q = (f64::from(v) * scale).round();
            if !q.is_finite() || q.abs() > limit {
                return Err(SecAggError::OutOfRange(v, i));
            }
            Ok(q as i64 as i32 as u32)
        })
        .collect()
}

/// Masks proposer `me`'s update with its pair seeds `(peer, seed)`.
pub fn mask(
    values: &[f32],
    me: u32,
    pairs: &[(u32, [u8; 32])],
    scale_bits: u32,
) -> Result<Vec<u32>, SecAggError> {
    let mut y = quantize(values, scale_bits)?;
    for (peer, seed) in pairs {
        if *peer == me {
            continue;
        }
        let m = prg(seed, y.len());
        for (a, b) in y.iter_mut().zip(m) {
            *a = if *peer > me { a.wrapping_add(b) } else { a.wrapping_sub(b) };
        }
    }
    Ok(y)
}

/// The correction survivor `me` reveals when proposer `dropped` (with whom it shares `seed`)
/// did not send its masked update.
pub fn dropout_correction(me: u32, dropped: u32, seed: &[u8; 32], len: usize) -> Vec<u32> {
    let m = prg(seed, len);
    if dropped > me {
        m
    } else {
        m.into_iter().map(u32::wrapping_neg).collect()
    }
}

/// Sums masked updates, removes the corrections for dropped proposers, and de-quantizes.
pub fn unmask_sum(
    masked: &[Vec<u32>],
    corrections: &[Vec<u32>],
    scale_bits: u32,
) -> Result<Vec<f32>, SecAggError> {
    let first = masked.first().ok_or(SecAggError::Empty)?;
    let mut acc = vec![0u32; first.len()];
    for v in masked {
        if v.len() != acc.len() {
            return Err(SecAggError::LengthMismatch(acc.len(), v.len()));
        }
        for (a, b) in acc.iter_mut().zip(v) {
            *a = a.wrapping_add(*b);
        }
    }
    for c in corrections {
        if c.len() != acc.len() {
            return Err(SecAggError::LengthMismatch(acc.len(), c.len()));
        }
        for (a, b) in acc.iter_mut().zip(c) {
            *a = a.wrapping_sub(*b);
        }
    }
    let scale = f64::from(1u32 << scale_bits);
    Ok(acc.into_iter().map(|a| (f64::from(a as i32) / scale) as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(i: u32, j: u32) -> [u8; 32] {
        let (a, b) = if i < j { (i, j) } else { (j, i) };
        *blake3::hash(format!("pair {a} {b}").as_bytes()).as_bytes()
    }

    fn updates(n: u32, d: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| {
                (0..d).map(|k| ((i as f32 + 1.0) * 0.37 + k as f32 * 0.011).sin() * 3.0).collect()
            })
            .collect()
    }

    fn pairs(me: u32, members: &[u32]) -> Vec<(u32, [u8; 32])> {
        members.iter().filter(|&&j| j != me).map(|&j| (j, seed(me, j))).collect()
    }

    #[test]
    fn masks_cancel_in_the_sum() {
        let ids = [0u32, 1, 2, 3, 4];
        let xs = updates(5, 1_000);
        let masked: Vec<Vec<u32>> = ids
            .iter()
            .map(|&i| mask(&xs[i as usize], i, &pairs(i, &ids), DEFAULT_SCALE_BITS).unwrap())
            .collect();
        let sum = unmask_sum(&masked, &[], DEFAULT_SCALE_BITS).unwrap();
        let tol = 5.0 / f64::from(1u32 << (DEFAULT_SCALE_BITS + 1));
        for k in 0..1_000 {
            let plain: f64 = xs.iter().map(|x| f64::from(x[k])).sum();
            assert!(
                (f64::from(sum[k]) - plain).abs() <= tol + 1e-6,
                "coordinate {k}: {} vs {plain}",
                sum[k]
            );
        }
    }

    #[test]
    fn a_dropped_proposer_is_recovered_by_the_survivors() {
        let ids = [0u32, 1, 2, 3, 4];
        let xs = updates(5, 500);
        let dropped = 2u32;
        let masked: Vec<Vec<u32>> = ids
            .iter()
            .filter(|&&i| i != dropped)
            .map(|&i| mask(&xs[i as usize], i, &pairs(i, &ids), DEFAULT_SCALE_BITS).unwrap())
            .collect();
        // Without corrections the sum is garbage; with the survivors' reveals it is exact.
        let wrong = unmask_sum(&masked, &[], DEFAULT_SCALE_BITS).unwrap();
        let corrections: Vec<Vec<u32>> = ids
            .iter()
            .filter(|&&i| i != dropped)
            .map(|&i| dropout_correction(i, dropped, &seed(i, dropped), 500))
            .collect();
        let sum = unmask_sum(&masked, &corrections, DEFAULT_SCALE_BITS).unwrap();
        let tol = 4.0 / f64::from(1u32 << (DEFAULT_SCALE_BITS + 1));
        let mut far = 0;
        for k in 0..500 {
            let plain: f64 =
                ids.iter().filter(|&&i| i != dropped).map(|&i| f64::from(xs[i as usize][k])).sum();
            assert!((f64::from(sum[k]) - plain).abs() <= tol + 1e-6);
            if (f64::from(wrong[k]) - plain).abs() > 1.0 {
                far += 1;
            }
        }
        assert!(far > 450, "uncorrected masks must not cancel ({far}/500 far off)");
    }

    #[test]
    fn one_masked_update_reveals_nothing() {
        // Two very different updates masked with the same peers look alike: uniform words,
        // uncorrelated with the plaintext.
        let ids = [0u32, 1, 2];
        let d = 20_000;
        let zeros = vec![0.0f32; d];
        let ones = vec![1.0f32; d];
        for x in [&zeros, &ones] {
            let y = mask(x, 1, &pairs(1, &ids), DEFAULT_SCALE_BITS).unwrap();
            // Top bit set about half the time, as for uniform words.
            let high = y.iter().filter(|w| **w >> 31 == 1).count();
            assert!(high.abs_diff(d / 2) < d / 50, "{high} of {d}");
            // The masked words carry no visible trace of the quantized input.
            let q = quantize(x, DEFAULT_SCALE_BITS).unwrap();
            let equal = y.iter().zip(&q).filter(|(a, b)| a == b).count();
            assert!(equal < 5, "{equal} words equal to the plaintext");
        }
        let y0 = mask(&zeros, 1, &pairs(1, &ids), DEFAULT_SCALE_BITS).unwrap();
        let y1 = mask(&ones, 1, &pairs(1, &ids), DEFAULT_SCALE_BITS).unwrap();
        // With the same pair seeds, two maskings differ by exactly the plaintext difference: the
        // masks alone hide an update, which is why seeds are bound to the task and round and
        // never reused.
        assert!(y0.iter().zip(&y1).all(|(a, b)| b.wrapping_sub(*a) == 1 << DEFAULT_SCALE_BITS));
    }

    #[test]
    fn bad_values_and_lengths_are_errors() {
        assert!(matches!(mask(&[f32::NAN], 0, &[], 16), Err(SecAggError::OutOfRange(..))));
        assert!(matches!(mask(&[1e9], 0, &[], 16), Err(SecAggError::OutOfRange(..))));
        assert!(matches!(
            unmask_sum(&[vec![1, 2], vec![1]], &[], 16),
            Err(SecAggError::LengthMismatch(2, 1))
        ));
        assert_eq!(unmask_sum(&[], &[], 16), Err(SecAggError::Empty));
        let words = vec![1u32, u32::MAX, 7];
        assert_eq!(decode_masked(&encode_masked(&words), 3).unwrap(), words);
        assert_eq!(
            decode_masked(&encode_masked(&words), 4),
            Err(SecAggError::LengthMismatch(4, 3))
        );
        let mut cut = encode_masked(&words);
        cut.pop();
        assert!(matches!(decode_masked(&cut, 3), Err(SecAggError::LengthMismatch(..))));
        assert_eq!(decode_masked(b"PK\x03\x04 not masked", 3), Err(SecAggError::NotMasked));
    }
}
