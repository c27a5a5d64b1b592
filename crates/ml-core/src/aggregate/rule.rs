//! [`AggregationRule`]: the per-task choice of rule, and one entry point that runs it.

use super::{
    fedavg, median, multi_krum, trimmed_mean_with_report, AggregateError, TrimReport, UpdateSet,
};
use crate::update::Update;
use serde::{Deserialize, Serialize};

/// An FL task's aggregation rule (serialized as `{"rule": "trimmed_mean", "trim": 2}` etc.).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum AggregationRule {
    /// Weighted FedAvg ([`fedavg`]).
    FedAvg,
    /// Coordinate-wise median ([`median`]); weights are ignored.
    Median,
    /// Coordinate-wise trimmed mean ([`trimmed_mean`]); weights are ignored.
    TrimmedMean {
        /// Values trimmed from each end, per coordinate.
        trim: usize,
    },
    /// Multi-Krum ([`multi_krum`]); weights are ignored.
    MultiKrum {
        /// Tolerated Byzantine updates.
        f: usize,
        /// Updates kept and averaged.
        m: usize,
    },
}

/// The result of [`aggregate`]: the aggregated values and which inputs were kept whole.
///
/// Coordinate-wise rules (median, trimmed mean) and FedAvg keep every update (no update is
/// dropped as a whole); multi-Krum reports its selection; trimmed mean also reports, per update,
/// how many coordinates were trimmed.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregated {
    /// The aggregate, flat, in the inputs' order of coordinates.
    pub values: Vec<f32>,
    /// The caller's indices of the updates kept (ascending).
    pub kept: Vec<usize>,
    /// The caller's indices of the updates dropped (ascending).
    pub dropped: Vec<usize>,
    /// For trimmed mean: how often each update was trimmed.
    pub trim_report: Option<TrimReport>,
}

/// Runs `rule` over `set`.
pub fn aggregate(rule: AggregationRule, set: &UpdateSet<'_>) -> Result<Aggregated, AggregateError> {
    let all = || (0..set.len()).collect::<Vec<_>>();
    let whole = |values| Aggregated { values, kept: all(), dropped: vec![], trim_report: None };
    Ok(match rule {
        AggregationRule::FedAvg => whole(fedavg(set)),
        AggregationRule::Median => whole(median(set)),
        AggregationRule::TrimmedMean { trim } => {
            let (values, report) = trimmed_mean_with_report(set, trim)?;
            Aggregated { trim_report: Some(report), ..whole(values) }
        }
        AggregationRule::MultiKrum { f, m } => {
            let (values, sel) = multi_krum(set, f, m)?;
            Aggregated { values, kept: sel.selected, dropped: sel.rejected, trim_report: None }
        }
    })
}

/// One call from [`Update`]s to an aggregated [`Update`]: builds the [`UpdateSet`] (layout and
/// weight checks, canonical order keyed by [`super::values_digest`]) and runs `rule`.
pub fn aggregate_updates(
    rule: AggregationRule,
    updates: &[Update],
    weights: Option<&[f64]>,
) -> Result<(Update, Aggregated), AggregateError> {
    let set = UpdateSet::from_updates(updates, weights, None)?;
    let out = aggregate(rule, &set)?;
    // `from_updates` always records the layout and every rule returns `dim` values.
    let layout = set.layout().cloned().unwrap_or_else(|| unreachable!("layout recorded"));
    let update = Update::new(layout, out.values.clone()).unwrap_or_else(|e| unreachable!("{e}"));
    Ok((update, out))
}
