//! The aggregation error type.

use flock_primitives::Hash;

/// Why an aggregation could not run. All are caller or input errors; none depends on timing or
/// on the order the updates arrived in.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AggregateError {
    /// No updates were given.
    #[error("no updates to aggregate")]
    NoUpdates,
    /// An update's layout differs from the first update's.
    #[error("update {index} has layout {found}, expected {expected} (the first update's)")]
    LayoutMismatch {
        /// The index of the offending update (in the caller's order).
        index: usize,
        /// The first update's layout fingerprint.
        expected: Hash,
        /// The offending update's layout fingerprint.
        found: Hash,
    },
    /// A flat vector's length differs from the first one's.
    #[error("update {index} has {found} values, expected {expected}")]
    LengthMismatch {
        /// The index of the offending update.
        index: usize,
        /// The first update's length.
        expected: usize,
        /// The offending length.
        found: usize,
    },
    /// The weights do not match the updates one to one.
    #[error("{weights} weights for {updates} updates")]
    WeightCount {
        /// The number of weights.
        weights: usize,
        /// The number of updates.
        updates: usize,
    },
    /// The content keys do not match the updates one to one.
    #[error("{keys} keys for {updates} updates")]
    KeyCount {
        /// The number of keys.
        keys: usize,
        /// The number of updates.
        updates: usize,
    },
    /// A weight is negative, NaN or infinite.
    #[error("weight {index} is {weight}; weights must be finite and non-negative")]
    InvalidWeight {
        /// The index of the weight.
        index: usize,
        /// The weight.
        weight: f64,
    },
    /// The weights sum to zero.
    #[error("the weights sum to zero")]
    ZeroTotalWeight,
    /// Trimmed mean: trimming `trim` from each end of `n` leaves nothing.
    #[error("cannot trim {trim} from each end of {n} updates (need n > 2·trim)")]
    TrimTooLarge {
        /// The per-end trim.
        trim: usize,
        /// The number of updates.
        n: usize,
    },
    /// Multi-Krum: too few updates to tolerate `f` Byzantine ones (Krum needs n ≥ 2f + 3).
    #[error("multi-Krum with f = {f} needs at least {} updates, got {n}", 2 * f + 3)]
    KrumTooFew {
        /// The tolerated number of Byzantine updates.
        f: usize,
        /// The number of updates.
        n: usize,
    },
    /// Multi-Krum: `m` (the number of updates kept) must be in 1..=n.
    #[error("multi-Krum cannot keep {m} of {n} updates")]
    KrumSelect {
        /// The number to keep.
        m: usize,
        /// The number of updates.
        n: usize,
    },
    /// A clipping bound or noise scale is not a finite positive number.
    #[error("{what} must be finite and positive, got {value}")]
    InvalidParameter {
        /// Which parameter.
        what: &'static str,
        /// Its value.
        value: f64,
    },
}

impl AggregateError {
    /// A stable snake_case tag for logs and API responses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoUpdates => "no_updates",
            Self::LayoutMismatch { .. } => "layout_mismatch",
            Self::LengthMismatch { .. } => "length_mismatch",
            Self::WeightCount { .. } => "weight_count",
            Self::KeyCount { .. } => "key_count",
            Self::InvalidWeight { .. } => "invalid_weight",
            Self::ZeroTotalWeight => "zero_total_weight",
            Self::TrimTooLarge { .. } => "trim_too_large",
            Self::KrumTooFew { .. } => "krum_too_few",
            Self::KrumSelect { .. } => "krum_select",
            Self::InvalidParameter { .. } => "invalid_parameter",
        }
    }
}
