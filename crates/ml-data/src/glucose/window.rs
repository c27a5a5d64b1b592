//! Forecasting windows over simulated traces: "predict glucose 30 minutes ahead".

use super::{simulate, Trace, CONTEXT_STEPS, HORIZON_STEPS, SIMULATED_LABEL};
use crate::tabular::Tabular;

/// Names of the columns [`windows`] produces for window length `w`: `glucose_t-{k}` (oldest
/// first, ending with `glucose_t-0`), then `carbs_last_hour_g`, `insulin_last_hour_u`.
pub fn feature_names(w: usize) -> Vec<String> {
    let mut names: Vec<String> = (0..w).rev().map(|k| format!("glucose_t-{k}")).collect();
    names.push("carbs_last_hour_g".into());
    names.push("insulin_last_hour_u".into());
    names
}

/// Name of the label column: the CGM reading 30 minutes ahead.
pub const LABEL_NAME: &str = "glucose_t+30min";

/// Sliding windows for "predict glucose 30 minutes ahead". For each sample `t` with `w` readings
/// up to and including `t` and a reading [`HORIZON_STEPS`] later: features are those `w` CGM
/// readings (mg/dL, oldest first), carbs eaten and insulin delivered over the last
/// [`CONTEXT_STEPS`] samples (1 hour, up to `t`); the target is the CGM reading at
/// `t + 30 min`. Nothing after `t` leaks into the features. `w == 0` gives no windows.
pub fn windows(trace: &Trace, w: usize) -> (Vec<Vec<f32>>, Vec<f32>) {
    let len = trace.glucose_mg_dl.len();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    if w == 0 || len < w + HORIZON_STEPS {
        return (xs, ys);
    }
    for t in (w - 1)..(len - HORIZON_STEPS) {
        let mut x = trace.glucose_mg_dl[t + 1 - w..=t].to_vec();
        let from = (t + 1).saturating_sub(CONTEXT_STEPS);
        x.push(trace.carbs[from..=t].iter().sum());
        x.push(trace.insulin[from..=t].iter().sum());
        xs.push(x);
        ys.push(trace.glucose_mg_dl[t + HORIZON_STEPS]);
    }
    (xs, ys)
}

/// [`windows`] of one trace as a labelled [`Tabular`] whose comments carry the simulated-data
/// label, the patient seed and the window.
pub fn window_dataset(trace: &Trace, w: usize) -> Tabular {
    let (features, labels) = windows(trace, w);
    Tabular {
        feature_names: feature_names(w),
        label_name: LABEL_NAME.to_owned(),
        features,
        labels,
        comments: vec![
            SIMULATED_LABEL.to_owned(),
            format!(
                "patients: {}; window: {w} samples of 5 min; target: 30 min ahead",
                trace.patient_seed
            ),
        ],
    }
}

/// Windows from several patients (`days` each) in one table, with each row's patient seed in
/// the second vector: the group ids for [`crate::partition::by_group`] (one patient per
/// hospital).
pub fn cohort_dataset(patient_seeds: &[u64], days: u32, w: usize) -> (Tabular, Vec<u64>) {
    let mut data = Tabular {
        feature_names: feature_names(w),
        label_name: LABEL_NAME.to_owned(),
        ..Tabular::default()
    };
    let mut groups = Vec::new();
    for &seed in patient_seeds {
        let (features, labels) = windows(&simulate(seed, days), w);
        groups.extend(std::iter::repeat_n(seed, labels.len()));
        data.features.extend(features);
        data.labels.extend(labels);
    }
    let seeds: Vec<String> = patient_seeds.iter().map(u64::to_string).collect();
    data.comments = vec![
        SIMULATED_LABEL.to_owned(),
        format!(
            "patients: {}; {days} days each; window: {w} samples of 5 min; target: 30 min ahead",
            seeds.join(" ")
        ),
    ];
    (data, groups)
}
