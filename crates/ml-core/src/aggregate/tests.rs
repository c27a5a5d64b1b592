use super::*;
use crate::update::{Layout, ParamSpec, Update};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn set<'a>(rows: &'a [Vec<f32>], weights: Option<&[f64]>) -> UpdateSet<'a> {
    let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
    UpdateSet::from_slices(&refs, weights, None).unwrap()
}

/// Values spread over many magnitudes, so that f64 accumulation order changes the bits.
fn wide_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        (-20i32..20, any::<bool>(), 1u32..1000).prop_map(|(e, neg, m)| {
            let v = m as f32 * 10f32.powi(e);
            if neg {
                -v
            } else {
                v
            }
        }),
        Just(0.0f32),
        Just(-0.0f32),
    ]
}

/// 3..9 rows of one dimension, some rows duplicated, with weights.
fn inputs() -> impl Strategy<Value = (Vec<Vec<f32>>, Vec<f64>)> {
    (3usize..9, 1usize..24).prop_flat_map(|(n, d)| {
        (
            proptest::collection::vec(proptest::collection::vec(wide_value(), d), n),
            proptest::collection::vec((1u32..1000).prop_map(|w| f64::from(w) * 0.1), n),
            proptest::collection::vec(any::<bool>(), n),
        )
            .prop_map(|(mut rows, weights, dup)| {
                for i in 1..rows.len() {
                    if dup[i] {
                        rows[i] = rows[i - 1].clone();
                    }
                }
                (rows, weights)
            })
    })
}

/// Every rule's output bits, with Krum's selection mapped back to row contents.
fn run_all(rows: &[Vec<f32>], weights: &[f64]) -> Vec<Vec<u32>> {
    let s = set(rows, Some(weights));
    let n = rows.len();
    let mut out = vec![bits(&fedavg(&s)), bits(&median(&s))];
    out.push(bits(&trimmed_mean(&s, (n - 1) / 2).unwrap()));
    let f = (n - 3) / 2;
    let (k, sel) = multi_krum(&s, f, n - f).unwrap();
    out.push(bits(&k));
    let mut kept: Vec<Vec<u32>> = sel.selected.iter().map(|&i| bits(&rows[i])).collect();
    kept.sort();
    out.extend(kept);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn permutation_gives_bit_identical_output_for_every_rule(
        (rows, weights) in inputs(),
        perm_seed in any::<u64>(),
    ) {
        let mut idx: Vec<usize> = (0..rows.len()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(perm_seed);
        for i in (1..idx.len()).rev() {
            idx.swap(i, rng.gen_range(0..=i));
        }
        let prow: Vec<Vec<f32>> = idx.iter().map(|&i| rows[i].clone()).collect();
        let pw: Vec<f64> = idx.iter().map(|&i| weights[i]).collect();
        prop_assert_eq!(run_all(&rows, &weights), run_all(&prow, &pw));
    }

    #[test]
    fn fedavg_of_identical_updates_is_that_update(
        row in proptest::collection::vec(
            any::<f32>().prop_filter("finite", |v| v.is_finite() && v.abs() < 1e30),
            1..50,
        ),
        weights in proptest::collection::vec(1u64..1_000_000, 1..12),
    ) {
        let rows = vec![row.clone(); weights.len()];
        let w = weights_from_counts(&weights);
        prop_assert_eq!(bits(&fedavg(&set(&rows, Some(&w)))), bits(&row));
        prop_assert_eq!(bits(&median(&set(&rows, None))), bits(&row));
        prop_assert_eq!(bits(&trimmed_mean(&set(&rows, None), 0).unwrap()), bits(&row));
    }

    #[test]
    fn median_stays_within_honest_range_under_minority_outliers(
        honest in proptest::collection::vec(proptest::collection::vec(-10.0f32..10.0, 6), 3..10),
        outliers_frac in 0.0f64..1.0,
        huge in prop_oneof![Just(1e30f32), Just(-1e30f32), Just(f32::MAX), Just(-3e38f32)],
    ) {
        let h = honest.len();
        let f = ((h - 1) as f64 * outliers_frac) as usize; // f < h, so f < n/2
        let mut rows = honest.clone();
        rows.extend((0..f).map(|i| vec![if i % 3 == 2 { -huge } else { huge }; 6]));
        let m = median(&set(&rows, None));
        check_within(&honest, &m)?;
    }

    #[test]
    fn trimmed_mean_stays_within_honest_range_when_outliers_at_most_trim(
        honest in proptest::collection::vec(proptest::collection::vec(-10.0f32..10.0, 5), 1..8),
        trim in 0usize..4,
        f_frac in 0.0f64..=1.0,
        huge in prop_oneof![Just(1e30f32), Just(-1e30f32), Just(3e38f32)],
    ) {
        let f = (trim as f64 * f_frac) as usize;
        let mut rows = honest.clone();
        rows.extend((0..f).map(|i| vec![if i % 2 == 1 { -huge } else { huge }; 5]));
        // Pad with honest copies so n > 2·trim.
        while rows.len() <= 2 * trim {
            rows.push(honest[0].clone());
        }
        let t = trimmed_mean(&set(&rows, None), trim).unwrap();
        check_within(&honest, &t)?;
    }

    #[test]
    fn clipping_bounds_norm_and_leaves_small_updates_untouched(
        row in proptest::collection::vec(-1e6f32..1e6, 1..300),
        c in 1e-3f64..1e4,
    ) {
        let norm = l2_norm(&row);
        let mut v = row.clone();
        let out = clip_l2(&mut v, c).unwrap();
        prop_assert_eq!(out.norm.to_bits(), norm.to_bits());
        prop_assert!(l2_norm(&v) <= c, "{} > {}", l2_norm(&v), c);
        if norm <= c {
            prop_assert!(!out.clipped);
            prop_assert_eq!(bits(&v), bits(&row));
        } else {
            prop_assert!(out.clipped);
            prop_assert!(l2_norm(&v) >= c * 0.9999);
        }
    }
}

fn check_within(honest: &[Vec<f32>], agg: &[f32]) -> Result<(), TestCaseError> {
    for (j, &a) in agg.iter().enumerate() {
        let lo = honest.iter().map(|r| r[j]).fold(f32::INFINITY, f32::min);
        let hi = honest.iter().map(|r| r[j]).fold(f32::NEG_INFINITY, f32::max);
        prop_assert!(lo <= a && a <= hi, "coordinate {j}: {a} not in [{lo}, {hi}]");
    }
    Ok(())
}

#[test]
fn accumulation_order_matters_so_canonical_order_is_needed() {
    // The reason for the canonical order: the same three values summed in f64 in two orders.
    let (a, b, c) = (1e30f64, -1e30f64, 1e-10f64);
    assert_ne!(((a + b) + c).to_bits(), ((a + c) + b).to_bits());
    let rows = vec![vec![1e30f32], vec![-1e30f32], vec![1e-10f32]];
    let rev: Vec<Vec<f32>> = rows.iter().rev().cloned().collect();
    assert_eq!(bits(&fedavg(&set(&rows, None))), bits(&fedavg(&set(&rev, None))));
}

#[test]
fn fedavg_hand_computed() {
    let rows = vec![vec![1.0, 2.0, 3.0], vec![3.0, 4.0, 5.0]];
    assert_eq!(fedavg(&set(&rows, Some(&[1.0, 3.0]))), vec![2.5, 3.5, 4.5]);
    let w = weights_from_counts(&[10, 30]);
    assert_eq!(fedavg(&set(&rows, Some(&w))), vec![2.5, 3.5, 4.5]);
    assert_eq!(fedavg(&set(&rows, None)), vec![2.0, 3.0, 4.0]);
    // 1/3 is rounded once from f64.
    let rows = vec![vec![1.0f32], vec![0.0], vec![0.0]];
    assert_eq!(fedavg(&set(&rows, None)), vec![(1.0f64 / 3.0) as f32]);
}

#[test]
fn median_and_trimmed_mean_hand_computed() {
    let rows = vec![vec![5.0, -1.0], vec![1.0, 100.0], vec![3.0, 2.0], vec![1e9, 4.0]];
    assert_eq!(median(&set(&rows, None)), vec![4.0, 3.0]);
    assert_eq!(trimmed_mean(&set(&rows, None), 1).unwrap(), vec![4.0, 3.0]);
    assert_eq!(trimmed_mean(&set(&rows[..3], None), 0).unwrap(), vec![3.0, 101.0 / 3.0]);
    assert_eq!(median(&set(&rows[..3], None)), vec![3.0, 2.0]);
}

#[test]
fn multi_krum_drops_planted_outliers() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let d = 64;
    let center: Vec<f32> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let mut rows: Vec<Vec<f32>> =
        (0..10).map(|_| center.iter().map(|c| c + rng.gen_range(-0.01..0.01)).collect()).collect();
    // Three attackers, planted at scattered positions; two of them collude (near each other).
    let far: Vec<f32> = center.iter().map(|c| c + 5.0).collect();
    rows.insert(2, far.clone());
    rows.insert(7, far.iter().map(|x| x + 0.001).collect());
    rows.insert(12, center.iter().map(|c| -c * 10.0).collect());
    let bad = [2, 7, 12];
    let s = set(&rows, None);
    let (agg, sel) = multi_krum(&s, 3, 10).unwrap();
    assert_eq!(sel.rejected, bad.to_vec());
    assert!(sel.selected.iter().all(|i| !bad.contains(i)));
    assert_eq!(sel.selected.len() + sel.rejected.len(), 13);
    for (a, c) in agg.iter().zip(&center) {
        assert!((a - c).abs() < 0.01);
    }
    // Keeping fewer still never picks an attacker.
    let (_, sel) = multi_krum(&s, 3, 4).unwrap();
    assert!(sel.selected.iter().all(|i| !bad.contains(i)));
    let out = aggregate(AggregationRule::MultiKrum { f: 3, m: 10 }, &s).unwrap();
    assert_eq!(out.dropped, bad.to_vec());
}

#[test]
fn mismatched_inputs_are_rejected_with_typed_errors() {
    let a = Arc::new(Layout::new(vec![ParamSpec::new("w", [2, 2])]).unwrap());
    let b = Arc::new(Layout::new(vec![ParamSpec::new("w", [4])]).unwrap());
    let ups = vec![Update::zeros(a.clone()), Update::zeros(a.clone()), Update::zeros(b.clone())];
    let err = UpdateSet::from_updates(&ups, None, None).unwrap_err();
    assert_eq!(
        err,
        AggregateError::LayoutMismatch {
            index: 2,
            expected: a.fingerprint(),
            found: b.fingerprint()
        }
    );
    assert_eq!(err.code(), "layout_mismatch");
    let err = aggregate_updates(AggregationRule::FedAvg, &ups, None).unwrap_err();
    assert_eq!(err.code(), "layout_mismatch");

    let r1 = [1.0f32, 2.0];
    let r2 = [1.0f32];
    let err = UpdateSet::from_slices(&[&r1, &r2], None, None).unwrap_err();
    assert_eq!(err, AggregateError::LengthMismatch { index: 1, expected: 2, found: 1 });
    let two: [&[f32]; 2] = [&r1, &r1];
    let cases = [
        (UpdateSet::from_slices(&[], None, None).unwrap_err(), "no_updates"),
        (UpdateSet::from_slices(&two, Some(&[1.0]), None).unwrap_err(), "weight_count"),
        (UpdateSet::from_slices(&two, Some(&[1.0, -1.0]), None).unwrap_err(), "invalid_weight"),
        (UpdateSet::from_slices(&two, Some(&[1.0, f64::NAN]), None).unwrap_err(), "invalid_weight"),
        (UpdateSet::from_slices(&two, Some(&[0.0, 0.0]), None).unwrap_err(), "zero_total_weight"),
        (UpdateSet::from_slices(&two, None, Some(&[])).unwrap_err(), "key_count"),
    ];
    for (err, code) in cases {
        assert_eq!(err.code(), code, "{err}");
    }
    let s = UpdateSet::from_slices(&two, None, None).unwrap();
    assert_eq!(trimmed_mean(&s, 1).unwrap_err(), AggregateError::TrimTooLarge { trim: 1, n: 2 });
    assert_eq!(multi_krum(&s, 0, 1).unwrap_err(), AggregateError::KrumTooFew { f: 0, n: 2 });
    let three: [&[f32]; 3] = [&r1, &r1, &r1];
    let s = UpdateSet::from_slices(&three, None, None).unwrap();
    assert_eq!(multi_krum(&s, 0, 4).unwrap_err(), AggregateError::KrumSelect { m: 4, n: 3 });
    assert_eq!(clip_l2(&mut [1.0], 0.0).unwrap_err().code(), "invalid_parameter");
}

#[test]
fn aggregate_updates_returns_an_update_with_the_layout() {
    let l =
        Arc::new(Layout::new(vec![ParamSpec::new("w", [2]), ParamSpec::new("b", [1])]).unwrap());
    let ups = vec![
        Update::new(l.clone(), vec![1.0, 2.0, 3.0]).unwrap(),
        Update::new(l.clone(), vec![3.0, 2.0, 1.0]).unwrap(),
    ];
    let (u, out) = aggregate_updates(AggregationRule::FedAvg, &ups, Some(&[1.0, 1.0])).unwrap();
    assert_eq!(u.values(), &[2.0, 2.0, 2.0]);
    assert_eq!(**u.layout(), *l);
    assert_eq!(out.kept, vec![0, 1]);
    let json = serde_json::to_string(&AggregationRule::TrimmedMean { trim: 2 }).unwrap();
    assert_eq!(json, r#"{"rule":"trimmed_mean","trim":2}"#);
    let back: AggregationRule =
        serde_json::from_str(r#"{"rule":"multi_krum","f":1,"m":3}"#).unwrap();
    assert_eq!(back, AggregationRule::MultiKrum { f: 1, m: 3 });
}

#[test]
fn caller_keys_order_like_digests_would_for_distinct_rows() {
    // With caller-provided keys the order follows the keys; the result is still a function of
    // the (values, weight) multiset when the keys are content hashes.
    let rows = [vec![1e30f32, 1.0], vec![-1e30f32, 2.0], vec![1e-10f32, 3.0]];
    let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
    let keys: Vec<_> = rows
        .iter()
        .map(|r| {
            Update::new(Arc::new(Layout::new(vec![ParamSpec::new("x", [2])]).unwrap()), r.clone())
                .unwrap()
                .content_hash()
        })
        .collect();
    let a = UpdateSet::from_slices(&refs, None, Some(&keys)).unwrap();
    let rev_refs: Vec<&[f32]> = refs.iter().rev().copied().collect();
    let rev_keys: Vec<_> = keys.iter().rev().copied().collect();
    let b = UpdateSet::from_slices(&rev_refs, None, Some(&rev_keys)).unwrap();
    assert_eq!(bits(&fedavg(&a)), bits(&fedavg(&b)));
    let canon: Vec<_> = a.origin().iter().map(|&i| keys[i]).collect();
    assert!(canon.windows(2).all(|w| w[0] <= w[1]));
}

/// Bit-identical results for 1 thread and several, on vectors spanning many chunks.
#[test]
fn results_do_not_depend_on_thread_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let d = 3 * (1 << 14) + 1001;
    let rows: Vec<Vec<f32>> =
        (0..7).map(|_| (0..d).map(|_| rng.gen_range(-1.0f32..1.0) * 1e3).collect()).collect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut out = run_all(&rows, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.5]);
            let mut noisy = rows[0].clone();
            add_gaussian_noise(&mut noisy, 0.5, 9).unwrap();
            out.push(bits(&noisy));
            let mut clipped = rows[1].clone();
            clip_l2(&mut clipped, 10.0).unwrap();
            out.push(bits(&clipped));
            out.push(vec![l2_norm(&rows[2]).to_bits() as u32]);
            out
        })
    };
    assert_eq!(run(1), run(4));
}

#[test]
fn dp_noise_is_seeded_reproducible_and_has_the_right_scale() {
    let n = 100_000;
    let sigma = 2.5;
    let mut a = vec![0.0f32; n];
    let mut b = vec![0.0f32; n];
    let mut c = vec![0.0f32; n];
    add_gaussian_noise(&mut a, sigma, 42).unwrap();
    add_gaussian_noise(&mut b, sigma, 42).unwrap();
    add_gaussian_noise(&mut c, sigma, 43).unwrap();
    assert_eq!(bits(&a), bits(&b));
    assert_ne!(bits(&a), bits(&c));
    assert!(a.iter().zip(&c).filter(|(x, y)| x == y).count() < 10);
    let mean = a.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
    let var = a.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    assert!(mean.abs() < 0.05, "mean {mean}");
    assert!((var.sqrt() / sigma - 1.0).abs() < 0.02, "std {} vs {sigma}", var.sqrt());
    // Roughly normal: about 68.3% within one σ, 95.4% within two.
    let within =
        |k: f64| a.iter().filter(|&&x| f64::from(x).abs() < k * sigma).count() as f64 / n as f64;
    assert!((within(1.0) - 0.6827).abs() < 0.01);
    assert!((within(2.0) - 0.9545).abs() < 0.005);
    assert_eq!(add_gaussian_noise(&mut a, 0.0, 1).unwrap_err().code(), "invalid_parameter");
}

#[test]
fn dp_noise_golden_bits() {
    // Pins the sampler (key derivation, ChaCha20 streams, polar method, det_ln): any change to
    // them changes every voter's aggregate hash, so it must be deliberate.
    let mut v = vec![0.0f32; (1 << 14) + 5];
    add_gaussian_noise(&mut v, 1.0, 2024).unwrap();
    assert_eq!(v[..4], [2.4327683, 0.5082458, 0.20281573, 0.5412704]);
    assert_eq!(values_digest(&v).to_string(), GOLDEN_NOISE);
}

const GOLDEN_NOISE: &str = "4fc64d0500b0b80fdf43e840689ce83048a6efdf5a3a4f105482863a900db339";

#[test]
fn det_ln_matches_std_ln() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut xs = vec![1.0, 2.0, 0.5, 1.25 / 1e-5, f64::MIN_POSITIVE, 5e-324, f64::MAX, 1e-300];
    xs.extend((0..10_000).map(|_| rng.gen_range(1e-9f64..1.0)));
    xs.extend((0..1000).map(|_| rng.gen_range(1.0f64..1e12)));
    for x in xs {
        let (mine, std) = (det_ln(x), x.ln());
        assert!(
            (mine - std).abs() <= 4.0 * f64::EPSILON * std.abs().max(1e-300) + 1e-300,
            "{x}: {mine} vs {std}"
        );
    }
    assert_eq!(det_ln(1.0), 0.0);
    assert!(det_ln(0.0).is_nan() && det_ln(-1.0).is_nan() && det_ln(f64::NAN).is_nan());
}

#[test]
fn gaussian_mechanism_calibration() {
    let g = GaussianMechanism::calibrate(1.0, 0.5, 1e-5).unwrap();
    let expect = (2.0 * (1.25f64 / 1e-5).ln()).sqrt() / 0.5;
    assert!((g.sigma - expect).abs() < 1e-12 * expect);
    assert!(g.is_classical());
    let back = GaussianMechanism::for_sigma(1.0, g.sigma, 1e-5).unwrap();
    assert!((back.epsilon - 0.5).abs() < 1e-12);
    // σ scales linearly with the clip norm.
    let g2 = GaussianMechanism::calibrate(3.0, 0.5, 1e-5).unwrap();
    assert!((g2.sigma - 3.0 * g.sigma).abs() < 1e-12);
    assert!(!GaussianMechanism::calibrate(1.0, 2.0, 1e-5).unwrap().is_classical());
    for (c, e, d) in
        [(0.0, 1.0, 1e-5), (1.0, 0.0, 1e-5), (1.0, 1.0, 0.0), (1.0, 1.0, 1.0), (f64::NAN, 1.0, 0.1)]
    {
        assert_eq!(GaussianMechanism::calibrate(c, e, d).unwrap_err().code(), "invalid_parameter");
    }
}

#[test]
fn clip_updates_reports_which_were_clipped() {
    let l = Arc::new(Layout::new(vec![ParamSpec::new("w", [2])]).unwrap());
    let mut ups = vec![
        Update::new(l.clone(), vec![3.0, 4.0]).unwrap(),
        Update::new(l.clone(), vec![0.3, 0.4]).unwrap(),
        Update::new(l, vec![30.0, 40.0]).unwrap(),
    ];
    let r = clip_updates(&mut ups, 1.0).unwrap();
    assert_eq!(r.clipped, vec![0, 2]);
    assert_eq!(r.norms, vec![5.0, l2_norm(&[0.3, 0.4]), 50.0]);
    assert_eq!(ups[1].values(), &[0.3, 0.4]);
    for u in &ups {
        assert!(l2_norm(u.values()) <= 1.0);
    }
    assert!((ups[0].values()[0] - 0.6).abs() < 1e-6);
}

proptest! {
    /// The 4-row folded FedAvg kernel against a plain sequential reference in canonical order.
    #[test]
    fn fedavg_matches_sequential_reference((rows, weights) in inputs(), extra in 0usize..5) {
        let mut rows = rows;
        let mut weights = weights;
        for i in 0..extra {
            rows.push(rows[i].iter().map(|x| x * 0.5).collect());
            weights.push(0.7 + i as f64);
        }
        let s = set(&rows, Some(&weights));
        let total: f64 = s.weights().iter().sum();
        let reference: Vec<f32> = (0..s.dim())
            .map(|j| {
                let mut a = -0.0f64;
                for (r, w) in s.rows().iter().zip(s.weights()) {
                    a += w * f64::from(r[j]);
                }
                (a / total) as f32
            })
            .collect();
        prop_assert_eq!(bits(&fedavg(&s)), bits(&reference));
    }

    #[test]
    fn trim_report_matches_trimmed_mean_and_is_order_free(
        (rows, _w) in inputs(),
        trim in 0usize..3,
    ) {
        prop_assume!(rows.len() > 2 * trim);
        let s = set(&rows, None);
        let (t, report) = trimmed_mean_with_report(&s, trim).unwrap();
        prop_assert_eq!(bits(&t), bits(&trimmed_mean(&s, trim).unwrap()));
        prop_assert_eq!(report.trimmed.iter().sum::<u64>(), (2 * trim * s.dim()) as u64);
        let rev: Vec<Vec<f32>> = rows.iter().rev().cloned().collect();
        let (_, r2) = trimmed_mean_with_report(&set(&rev, None), trim).unwrap();
        // Rows with equal contents may swap attributions; compare per distinct row content.
        let mut a: Vec<(Vec<u32>, u64)> =
            rows.iter().map(|r| bits(r)).zip(report.trimmed).collect();
        let mut b: Vec<(Vec<u32>, u64)> =
            rev.iter().map(|r| bits(r)).zip(r2.trimmed).collect();
        a.sort();
        b.sort();
        prop_assert_eq!(a, b);
    }
}

#[test]
fn trim_report_blames_planted_outliers() {
    let mut rows: Vec<Vec<f32>> = (0..8).map(|i| vec![i as f32 * 0.1; 50]).collect();
    rows.insert(3, vec![1e20; 50]);
    rows.insert(6, vec![-1e20; 50]);
    let (t, report) = trimmed_mean_with_report(&set(&rows, None), 1).unwrap();
    assert_eq!(report.coordinates, 50);
    assert_eq!(report.trimmed[3], 50);
    assert_eq!(report.trimmed[6], 50);
    assert_eq!(report.trimmed.iter().sum::<u64>(), 100);
    assert!(t.iter().all(|&x| (0.0..=0.7).contains(&x)));
    let out = aggregate(AggregationRule::TrimmedMean { trim: 1 }, &set(&rows, None)).unwrap();
    assert_eq!(out.trim_report, Some(report));
    assert_eq!(bits(&out.values), bits(&t));
    assert_eq!(out.kept.len(), 10);
}
