//! [`UpdateSet`]: checked aggregation inputs in one canonical order.

use super::AggregateError;
use crate::update::{Layout, Update};
use flock_primitives::Hash;
use rayon::prelude::*;
use std::{cmp::Ordering, sync::Arc};

/// Coordinates per parallel work item. Fixed (never derived from the thread count), so every
/// chunked reduction adds the same partial sums in the same order on every machine.
pub(crate) const CHUNK: usize = 1 << 14;

const DIGEST_DOMAIN: &str = "flock-ml-core/update-values/v1";

/// blake3 of the values' little-endian bytes (domain-separated): a content key for
/// [`UpdateSet`]'s canonical order when the caller has no content hash of its own.
pub fn values_digest(values: &[f32]) -> Hash {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: `values` is a valid, initialized `&[f32]`; `f32` has no padding, so its
        // `size_of_val(values)` bytes are initialized `u8`s (alignment 1) borrowed for the
        // same lifetime. On little-endian targets they are exactly the LE encoding.
        let bytes = unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
        };
        Hash::of_parts(DIGEST_DOMAIN, &[bytes])
    }
    #[cfg(not(target_endian = "little"))]
    {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Hash::of_parts(DIGEST_DOMAIN, &[&bytes])
    }
}

/// Aggregation inputs, checked (same length or layout, valid weights) and sorted once into a
/// canonical order that does not depend on the order the caller supplied them in.
///
/// The canonical order sorts by `(key, weight bits, value bits lexicographically)`. The key is
/// the caller's content hash of each update (e.g. its artifact hash, which the ledger commits
/// to) or, when none is given, [`values_digest`]. The last component makes the order a total
/// order on the inputs themselves even if keys were wrong, so the output is always a function of
/// the multiset of (values, weight) pairs; it is only reached for equal keys.
#[derive(Clone, Debug)]
pub struct UpdateSet<'a> {
    layout: Option<Arc<Layout>>,
    rows: Vec<&'a [f32]>,
    weights: Vec<f64>,
    origin: Vec<usize>,
    total_weight: f64,
    dim: usize,
}

impl<'a> UpdateSet<'a> {
    /// A set over [`Update`]s, which must all share one layout. `weights` default to 1 each
    /// (e.g. pass sample counts through [`weights_from_counts`]); `keys` default to
    /// [`values_digest`] of each update.
    pub fn from_updates(
        updates: &'a [Update],
        weights: Option<&[f64]>,
        keys: Option<&[Hash]>,
    ) -> Result<Self, AggregateError> {
        let first = updates.first().ok_or(AggregateError::NoUpdates)?.layout();
        for (index, u) in updates.iter().enumerate() {
            let l = u.layout();
            if !Arc::ptr_eq(l, first) && l.fingerprint() != first.fingerprint() {
                return Err(AggregateError::LayoutMismatch {
                    index,
                    expected: first.fingerprint(),
                    found: l.fingerprint(),
                });
            }
        }
        let rows: Vec<&[f32]> = updates.iter().map(Update::values).collect();
        let mut set = Self::from_slices(&rows, weights, keys)?;
        set.layout = Some(first.clone());
        Ok(set)
    }

    /// A set over raw flat vectors, which must all have the same length.
    pub fn from_slices(
        rows: &[&'a [f32]],
        weights: Option<&[f64]>,
        keys: Option<&[Hash]>,
    ) -> Result<Self, AggregateError> {
        let n = rows.len();
        let dim = rows.first().ok_or(AggregateError::NoUpdates)?.len();
        if let Some((index, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != dim) {
            return Err(AggregateError::LengthMismatch { index, expected: dim, found: r.len() });
        }
        let weights = match weights {
            Some(w) => {
                if w.len() != n {
                    return Err(AggregateError::WeightCount { weights: w.len(), updates: n });
                }
                if let Some((index, &weight)) =
                    w.iter().enumerate().find(|(_, w)| !(w.is_finite() && **w >= 0.0))
                {
                    return Err(AggregateError::InvalidWeight { index, weight });
                }
                w.to_vec()
            }
            None => vec![1.0; n],
        };
        let keys: Vec<Hash> = match keys {
            Some(k) if k.len() != n => {
                return Err(AggregateError::KeyCount { keys: k.len(), updates: n })
            }
            Some(k) => k.to_vec(),
            None => rows.par_iter().map(|r| values_digest(r)).collect(),
        };

        let mut origin: Vec<usize> = (0..n).collect();
        origin.sort_by(|&a, &b| {
            keys[a]
                .cmp(&keys[b])
                .then_with(|| weights[a].to_bits().cmp(&weights[b].to_bits()))
                .then_with(|| cmp_bits(rows[a], rows[b]))
        });
        let rows: Vec<&[f32]> = origin.iter().map(|&i| rows[i]).collect();
        let weights: Vec<f64> = origin.iter().map(|&i| weights[i]).collect();
        // Summed in canonical order: the same total everywhere.
        let total_weight = fsum(weights.iter().copied());
        if total_weight <= 0.0 {
            return Err(AggregateError::ZeroTotalWeight);
        }
        Ok(Self { layout: None, rows, weights, origin, total_weight, dim })
    }

    /// The number of updates.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Always false: a set has at least one update.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The length of each flat vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The shared layout, when built from [`Update`]s.
    pub fn layout(&self) -> Option<&Arc<Layout>> {
        self.layout.as_ref()
    }

    /// The rows in canonical order.
    pub fn rows(&self) -> &[&'a [f32]] {
        &self.rows
    }

    /// The weights in canonical order.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The sum of the weights (added in canonical order).
    pub fn total_weight(&self) -> f64 {
        self.total_weight
    }

    /// `origin()[c]` is the caller's index of canonical row `c`.
    pub fn origin(&self) -> &[usize] {
        &self.origin
    }
}

/// Sample counts as weights (exact below 2^53).
pub fn weights_from_counts(counts: &[u64]) -> Vec<f64> {
    counts.iter().map(|&c| c as f64).collect()
}

/// A left-to-right f64 sum starting from −0.0 (the exact additive identity, so a sum of −0.0s
/// stays −0.0). Spelled out rather than `Iterator::sum`, whose starting value has changed
/// between Rust releases: the bits must not depend on the toolchain.
pub(crate) fn fsum(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(-0.0, |a, x| a + x)
}

fn cmp_bits(a: &[f32], b: &[f32]) -> Ordering {
    a.iter().map(|x| x.to_bits()).cmp(b.iter().map(|x| x.to_bits()))
}

/// Σ (a_k − b_k)² in f64, accumulated in 8 fixed lanes (lane = k mod 8, for slices starting at
/// a multiple of 8) combined in a fixed tree: a fixed arithmetic order that still vectorizes.
pub(crate) fn dist_sq(a: &[f32], b: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            let d = f64::from(x[l]) - f64::from(y[l]);
            lanes[l] += d * d;
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        let d = f64::from(*x) - f64::from(*y);
        lanes[l] += d * d;
    }
    combine(lanes)
}

/// Σ a_k² in f64, same fixed lane order as [`dist_sq`].
pub(crate) fn sum_sq(a: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let ca = a.chunks_exact(8);
    let ra = ca.remainder();
    for x in ca {
        for l in 0..8 {
            let v = f64::from(x[l]);
            lanes[l] += v * v;
        }
    }
    for (l, x) in ra.iter().enumerate() {
        let v = f64::from(*x);
        lanes[l] += v * v;
    }
    combine(lanes)
}

fn combine(l: [f64; 8]) -> f64 {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

/// The L2 norm of `values`, computed in f64 over fixed chunks of 2¹⁴ coordinates (in parallel)
/// whose partial sums are added in chunk order: bit-identical for any thread count.
pub fn l2_norm(values: &[f32]) -> f64 {
    let partials: Vec<f64> = values.par_chunks(CHUNK).map(sum_sq).collect();
    fsum(partials.iter().copied()).sqrt()
}
