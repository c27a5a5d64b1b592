//! Per-update L2 norm clipping (a robustness rule on its own, and the first half of the
//! differential-privacy mode).

use super::{set::CHUNK, AggregateError};
use crate::{aggregate::l2_norm, update::Update};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Relative safety margin applied to the scale factor, so that after each value is rounded to
/// f32 (relative error ≤ 2⁻²⁴ per value, hence on the norm) the clipped norm is still ≤ the bound.
const MARGIN: f64 = 1.0 - 1.0 / (1u64 << 22) as f64;

/// The outcome of clipping one vector.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Clipped {
    /// The L2 norm before clipping.
    pub norm: f64,
    /// Whether the vector was scaled down.
    pub clipped: bool,
}

/// Which updates [`clip_updates`] scaled down, and every original norm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipReport {
    /// Indices of the updates that were scaled down (ascending).
    pub clipped: Vec<usize>,
    /// The L2 norm of each update before clipping.
    pub norms: Vec<f64>,
}

/// Scales `values` so its L2 norm is at most `max_norm`. A vector already within the bound is
/// left bit-for-bit untouched; a longer one is multiplied (in f64, rounded once per value) by
/// `max_norm / norm` times a margin of 1 − 2⁻²², which guarantees the rounded result's norm is
/// ≤ `max_norm`. The norm is computed deterministically ([`l2_norm`]).
pub fn clip_l2(values: &mut [f32], max_norm: f64) -> Result<Clipped, AggregateError> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(AggregateError::InvalidParameter { what: "clip norm", value: max_norm });
    }
    let norm = l2_norm(values);
    if norm <= max_norm {
        return Ok(Clipped { norm, clipped: false });
    }
    let scale = max_norm / norm * MARGIN;
    values.par_chunks_mut(CHUNK).for_each(|c| {
        for v in c {
            *v = (f64::from(*v) * scale) as f32;
        }
    });
    Ok(Clipped { norm, clipped: true })
}

/// [`clip_l2`] applied to each update in place.
pub fn clip_updates(updates: &mut [Update], max_norm: f64) -> Result<ClipReport, AggregateError> {
    let mut report = ClipReport { clipped: Vec::new(), norms: Vec::with_capacity(updates.len()) };
    for (i, u) in updates.iter_mut().enumerate() {
        let c = clip_l2(u.values_mut(), max_norm)?;
        report.norms.push(c.norm);
        if c.clipped {
            report.clipped.push(i);
        }
    }
    Ok(report)
}
