//! Deterministic aggregation of updates.
//!
//! # Flow
//!
//! ```text
//!  updates (any arrival order) ──► UpdateSet::from_updates / from_slices
//!      │   checks: same layout / length, weights finite ≥ 0, total > 0
//!      │   canonical order: sort by (content key, weight bits, value bits)
//!      ▼
//!  rule: fedavg · median · trimmed_mean · multi_krum      (aggregate(rule, &set))
//!      │   parallel over fixed coordinate chunks only
//!      ▼
//!  Vec<f32> aggregate  (+ kept / dropped indices in the caller's numbering)
//! ```
//!
//! Optional steps around it: [`clip_l2`]/[`clip_updates`] before (robustness, and DP
//! sensitivity), [`add_gaussian_noise`] after (DP), with σ from [`GaussianMechanism`].
//!
//! # Design decisions
//!
//! * **Bit-identical on every honest voter.** f64 addition is not associative, so the order of
//!   accumulation is part of the result. Inputs are sorted into a canonical order first, each
//!   coordinate is accumulated in f64 over the updates in that order, and rounded to f32 once.
//!   Median and trimmed mean sort each column by the IEEE total order, which is order-free by
//!   construction. Reductions over coordinates (norms, Krum distances) use fixed chunk sizes and
//!   fixed lane orders, never the thread count. No FMA is used (Rust never contracts `a*b+c`).
//! * **Parallel over coordinates, never over updates**, so rayon's scheduling cannot change any
//!   coordinate's arithmetic.
//! * **Errors are typed** ([`AggregateError`]); mismatched inputs are rejected, never padded.

mod clip;
mod dp;
mod error;
mod rule;
mod rules;
mod set;

pub use clip::{clip_l2, clip_updates, ClipReport, Clipped};
pub use dp::{add_gaussian_noise, det_ln, GaussianMechanism};
pub use error::AggregateError;
pub use rule::{aggregate, aggregate_updates, Aggregated, AggregationRule};
pub use rules::{
    fedavg, median, multi_krum, trimmed_mean, trimmed_mean_with_report, KrumSelection, TrimReport,
};
pub use set::{l2_norm, values_digest, weights_from_counts, UpdateSet};

#[cfg(test)]
mod tests;
