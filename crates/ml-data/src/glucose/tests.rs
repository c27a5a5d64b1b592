use super::*;

fn calm(seed: u64) -> VirtualPatient {
    let mut patient = VirtualPatient::from_seed(seed);
    patient.params.dawn = 0.0;
    patient
}

fn meals(meals: Vec<Meal>) -> Schedule {
    Schedule { meals, ..Schedule::default() }
}

fn quiet() -> SimOptions {
    SimOptions { sensor_noise: false, corrections: false, rescue_carbs: false, basal: true }
}

fn max_after(trace: &Trace, from_minute: u32) -> f32 {
    trace
        .minutes
        .iter()
        .zip(&trace.plasma_glucose_mg_dl)
        .filter(|(m, _)| **m >= from_minute)
        .map(|(_, g)| *g)
        .fold(f32::MIN, f32::max)
}

fn min_after(trace: &Trace, from_minute: u32) -> f32 {
    trace
        .minutes
        .iter()
        .zip(&trace.plasma_glucose_mg_dl)
        .filter(|(m, _)| **m >= from_minute)
        .map(|(_, g)| *g)
        .fold(f32::MAX, f32::min)
}

#[test]
fn steady_state_is_flat_without_meals() {
    let trace = simulate_patient(&calm(3), &Schedule::default(), 1440, &quiet());
    let g0 = trace.plasma_glucose_mg_dl[0];
    assert!(trace.plasma_glucose_mg_dl.iter().all(|g| (g - g0).abs() < 0.01), "{g0}");
    assert!((70.0..200.0).contains(&g0), "{g0}");
}

#[test]
fn meal_without_insulin_raises_glucose() {
    for seed in 0..10 {
        let meal = Meal { minute: 60, carbs_g: 50.0, bolus: None };
        let trace = simulate_patient(&calm(seed), &meals(vec![meal]), 600, &quiet());
        let g0 = trace.plasma_glucose_mg_dl[0];
        let peak = max_after(&trace, 60);
        assert!(peak > g0 + 25.0, "patient {seed}: {g0} -> {peak}");
        // And the rise starts only after the meal.
        assert!((trace.plasma_glucose_mg_dl[12] - g0).abs() < 0.01);
    }
}

#[test]
fn insulin_without_meal_lowers_glucose() {
    for seed in 0..10 {
        let schedule = Schedule { boluses: vec![(60, 3.0)], ..Schedule::default() };
        let trace = simulate_patient(&calm(seed), &schedule, 600, &quiet());
        let g0 = trace.plasma_glucose_mg_dl[0];
        let low = min_after(&trace, 60);
        assert!(low < g0 - 15.0, "patient {seed}: {g0} -> {low}");
    }
}

#[test]
fn bolus_blunts_the_meal_peak() {
    let patient = calm(1);
    let bolus = BolusPlan { delay_min: 0, carb_estimate_factor: 1.0 };
    let bare = Meal { minute: 60, carbs_g: 60.0, bolus: None };
    let covered = Meal { bolus: Some(bolus), ..bare };
    let a = simulate_patient(&patient, &meals(vec![bare]), 720, &quiet());
    let b = simulate_patient(&patient, &meals(vec![covered]), 720, &quiet());
    assert!(max_after(&b, 0) < max_after(&a, 0));
    assert!(b.insulin.iter().sum::<f32>() > a.insulin.iter().sum::<f32>() + 1.0);
}

#[test]
fn traces_stay_in_physiological_range() {
    for seed in 0..40 {
        let trace = simulate(seed, 3);
        assert_eq!(trace.minutes.len(), 3 * 288);
        for (i, (&cgm, &g)) in
            trace.glucose_mg_dl.iter().zip(&trace.plasma_glucose_mg_dl).enumerate()
        {
            assert!((40.0..=400.0).contains(&cgm), "patient {seed} sample {i}: cgm {cgm}");
            assert!((30.0..=500.0).contains(&g), "patient {seed} sample {i}: plasma {g}");
        }
        let meals = trace.carbs.iter().filter(|c| **c > 0.0).count();
        assert!(meals >= 9, "patient {seed}: {meals} carb samples");
    }
}

#[test]
fn same_seed_same_trace_different_patients_differ() {
    let a = simulate(7, 2);
    assert_eq!(a, simulate(7, 2));
    let b = simulate(8, 2);
    assert_ne!(a.glucose_mg_dl, b.glucose_mg_dl);
    assert_ne!(VirtualPatient::from_seed(7).params, VirtualPatient::from_seed(8).params);
}

#[test]
fn cgm_tracks_plasma_glucose() {
    let trace = simulate(11, 2);
    let n = trace.glucose_mg_dl.len() as f32;
    let mard = trace
        .glucose_mg_dl
        .iter()
        .zip(&trace.plasma_glucose_mg_dl)
        .map(|(c, g)| (c - g).abs() / g)
        .sum::<f32>()
        / n;
    assert!(mard < 0.2, "MARD {mard}");
}

#[test]
fn windows_align_features_and_target() {
    let trace = simulate(5, 1);
    let w = 12;
    let (xs, ys) = windows(&trace, w);
    let len = trace.glucose_mg_dl.len();
    assert_eq!(xs.len(), len - w + 1 - HORIZON_STEPS);
    assert_eq!(xs.len(), ys.len());
    assert_eq!(xs[0].len(), feature_names(w).len());
    // First window ends at sample w-1; its target is HORIZON_STEPS later.
    assert_eq!(&xs[0][..w], &trace.glucose_mg_dl[..w]);
    assert_eq!(ys[0], trace.glucose_mg_dl[w - 1 + HORIZON_STEPS]);
    let t = 100;
    let x = &xs[t - (w - 1)];
    assert_eq!(x[w - 1], trace.glucose_mg_dl[t]);
    assert_eq!(x[w], trace.carbs[t + 1 - CONTEXT_STEPS..=t].iter().sum::<f32>());
    assert_eq!(x[w + 1], trace.insulin[t + 1 - CONTEXT_STEPS..=t].iter().sum::<f32>());
    assert_eq!(
        feature_names(2),
        ["glucose_t-1", "glucose_t-0", "carbs_last_hour_g", "insulin_last_hour_u"]
    );
    assert!(windows(&trace, 0).0.is_empty());
    assert!(windows(&trace, len).0.is_empty());
}

#[test]
#[ignore]
fn print_extremes() {
    let (mut lo, mut hi, mut clipped, mut total, mut tir) = (f32::MAX, f32::MIN, 0, 0, 0);
    for seed in 0..200 {
        let t = simulate(seed, 7);
        for (&c, &g) in t.glucose_mg_dl.iter().zip(&t.plasma_glucose_mg_dl) {
            lo = lo.min(g);
            hi = hi.max(g);
            clipped += usize::from(c <= 40.0 || c >= 400.0);
            tir += usize::from((70.0..=180.0).contains(&g));
            total += 1;
        }
    }
    println!(
        "plasma min {lo} max {hi}; clipped {clipped}/{total}; TIR {}",
        tir as f64 / total as f64
    );
}

#[test]
#[ignore]
fn print_stats() {
    for seed in 0..20 {
        let p = VirtualPatient::from_seed(seed);
        let t = simulate(seed, 7);
        let g = &t.plasma_glucose_mg_dl;
        let n = g.len() as f32;
        let mean = g.iter().sum::<f32>() / n;
        let tir = g.iter().filter(|x| (70.0..=180.0).contains(*x)).count() as f32 / n;
        let lo = g.iter().cloned().fold(f32::MAX, f32::min);
        let hi = g.iter().cloned().fold(f32::MIN, f32::max);
        let ins: f32 = t.insulin.iter().sum::<f32>() / 7.0;
        let carbs: f32 = t.carbs.iter().sum::<f32>() / 7.0;
        println!("{seed}: bw {:.0} si {:.2e} vg {:.0} basal {:.2} icr {:.1} isf {:.0} | g0 {:.0} mean {mean:.0} tir {tir:.2} min {lo:.0} max {hi:.0} TDD {ins:.1} carbs {carbs:.0}",
            p.params.body_weight_kg, p.params.si, p.params.vg, p.therapy.basal_u_per_h, p.therapy.carb_ratio_g_per_u, p.therapy.isf_mg_dl_per_u, g[0]);
    }
}

#[test]
fn datasets_carry_the_simulated_label_through_csv() {
    let data = window_dataset(&simulate(2, 1), 6);
    let mut csv = Vec::new();
    crate::tabular::to_csv(&mut csv, &data).unwrap();
    let text = String::from_utf8(csv).unwrap();
    assert!(text.starts_with("# simulated data generated by flock-ml-data"));
    let back = crate::tabular::from_csv(text.as_bytes(), LABEL_NAME, &Default::default()).unwrap();
    assert_eq!(back, data);

    let (cohort, groups) = cohort_dataset(&[4, 9], 1, 6);
    assert_eq!(cohort.len(), groups.len());
    assert_eq!(cohort.len(), 2 * data.len());
    assert_eq!(groups.iter().filter(|g| **g == 9).count(), data.len());
}

/// Prints single-meal (50 g, no bolus) and single-bolus (3 U, no meal) responses, to compare
/// with the same scenarios on simglucose's UVA/Padova adults.
#[test]
#[ignore]
fn print_step_responses() {
    for seed in 0..10 {
        let patient = calm(seed);
        let meal = Meal { minute: 60, carbs_g: 50.0, bolus: None };
        let a = simulate_patient(&patient, &meals(vec![meal]), 600, &quiet());
        let s = Schedule { boluses: vec![(60, 3.0)], ..Schedule::default() };
        let b = simulate_patient(&patient, &s, 600, &quiet());
        let g0 = a.plasma_glucose_mg_dl[0];
        let (pk, pi) = a
            .glucose_mg_dl
            .iter()
            .enumerate()
            .skip(12)
            .fold((0.0f32, 0), |m, (i, g)| if *g > m.0 { (*g, i) } else { m });
        let (nd, ni) = b
            .glucose_mg_dl
            .iter()
            .enumerate()
            .skip(12)
            .fold((f32::MAX, 0), |m, (i, g)| if *g < m.0 { (*g, i) } else { m });
        println!(
            "patient {seed}: g0 {g0:.0} meal +{:.0} at {} min; bolus -{:.0} at {} min",
            pk - g0,
            pi * 5 - 60,
            g0 - nd,
            ni * 5 - 60
        );
    }
}
