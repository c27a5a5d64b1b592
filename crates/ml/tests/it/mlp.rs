//! MLP classifier/regressor: learning synthetic tasks, the flat update boundary.

use flock_ml::mlp::{evaluate_mlp, sliding_windows, train_mlp, Mlp, MlpTask, TabularData};
use flock_ml::train::TrainConfig;
use flock_ml::{cpu, train_device, MlError};
use flock_ml_core::{Layout, ParamSpec, Update};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Four classes by quadrant of a noisy 2-D point, plus two distractor features.
fn quadrants(n: usize, seed: u64) -> TabularData {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut features, mut targets) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (x, y): (f32, f32) = (rng.gen_range(-1.0..1.0), rng.gen_range(-1.0..1.0));
        features.extend([x, y, rng.gen_range(-1.0..1.0), rng.gen_range(-1.0..1.0)]);
        targets.push(((x > 0.0) as u8 * 2 + (y > 0.0) as u8) as f32);
    }
    TabularData { features, n_features: 4, targets, n_targets: 1 }
}

fn cfg(steps: usize) -> TrainConfig {
    TrainConfig { steps, batch_size: 32, lr: 1e-2, warmup_steps: 10, seed: 3, ..Default::default() }
}

#[test]
fn mlp_classifier_learns_quadrants() {
    let task = MlpTask::Classification { classes: 4 };
    let model = Mlp::new(4, &[32], task, 1, &train_device());
    let (train, test) = (quadrants(2000, 1), quadrants(500, 2));
    let before = evaluate_mlp(&model, &test, task).unwrap();
    let (model, m) = train_mlp(model, &train, task, &cfg(300)).unwrap();
    let after = evaluate_mlp(&model, &test, task).unwrap();
    eprintln!(
        "MLP classifier: acc {:?} -> {:?}; {:.0} samples/s",
        before.accuracy, after.accuracy, m.samples_per_sec
    );
    assert!(after.accuracy.unwrap() > 0.9, "{after:?}");
    assert!(after.loss < before.loss);
}

#[test]
fn mlp_regressor_forecasts_a_sliding_window_series() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let series: Vec<f32> = (0..1500)
        .map(|t| {
            (t as f32 * 0.07).sin()
                + 0.5 * (t as f32 * 0.013).cos()
                + 0.05 * rng.gen_range(-1.0f32..1.0)
        })
        .collect();
    let (head, tail) = series.split_at(1200);
    let (train, test) = (sliding_windows(head, 16, 1), sliding_windows(tail, 16, 1));
    assert_eq!(train.rows(), 1200 - 16);
    assert_eq!(train.targets[0], head[16]);
    let task = MlpTask::Regression { outputs: 1 };
    let model = Mlp::new(16, &[32, 32], task, 2, &train_device());
    let (model, _) = train_mlp(model, &train, task, &cfg(400)).unwrap();
    let e = evaluate_mlp(&model, &test, task).unwrap();
    // Baseline: predicting the test mean.
    let mean = test.targets.iter().sum::<f32>() / test.targets.len() as f32;
    let base = (test.targets.iter().map(|t| ((t - mean) as f64).powi(2)).sum::<f64>()
        / test.targets.len() as f64)
        .sqrt();
    eprintln!("MLP regressor: rmse {:.4} vs mean baseline {base:.4}", e.rmse.unwrap());
    assert!(e.rmse.unwrap() < 0.25 * base, "{e:?} vs {base}");
}

#[test]
fn mlp_update_round_trip_and_layout_checks() {
    let task = MlpTask::Classification { classes: 3 };
    let a = Mlp::new(5, &[7], task, 1, &cpu());
    let b = Mlp::new(5, &[7], task, 2, &cpu());
    let up = a.to_update().unwrap();
    let names: Vec<(&str, &[usize])> =
        up.layout().params().iter().map(|p| (p.name.as_str(), p.shape.as_slice())).collect();
    assert_eq!(
        names,
        vec![
            ("layers.0.weight", &[7, 5][..]),
            ("layers.0.bias", &[7][..]),
            ("layers.1.weight", &[3, 7][..]),
            ("layers.1.bias", &[3][..])
        ]
    );
    let b = b.load_update(&up).unwrap();
    assert_eq!(b.to_update().unwrap(), up);
    let x = burn::tensor::Tensor::<2>::from_data(
        burn::tensor::TensorData::new(vec![0.3f32; 10], [2, 5]),
        &cpu(),
    );
    let out = |m: &Mlp| flock_ml::model::to_vec(m.forward(x.clone())).unwrap();
    assert_eq!(out(&a), out(&b));
    // PyTorch layout: weight row o is output o's incoming weights.
    let w0 = &up.values()[..35];
    let burn_w = flock_ml::model::to_vec(a.layers[0].weight.val()).unwrap(); // [in=5, out=7]
    assert_eq!(w0[2 * 5 + 4], burn_w[4 * 7 + 2]);
    // A wrong shape is a typed error naming the tensor.
    let mut specs: Vec<ParamSpec> = up.layout().params().to_vec();
    specs[2].shape = vec![7, 3];
    let wrong = Update::new(std::sync::Arc::new(Layout::new(specs).unwrap()), up.values().to_vec())
        .unwrap();
    match Mlp::new(5, &[7], task, 1, &cpu()).load_update(&wrong) {
        Err(MlError::ShapeMismatch { name, expected, found }) => {
            assert_eq!(
                (name.as_str(), expected, found),
                ("layers.1.weight", vec![3, 7], vec![7, 3])
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // Bad data is rejected before any tensor is built.
    let bad =
        TabularData { features: vec![0.0; 5], n_features: 5, targets: vec![3.0], n_targets: 1 };
    assert!(matches!(evaluate_mlp(&a, &bad, task), Err(MlError::InvalidData(_))));
}
