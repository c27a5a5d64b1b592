//! Federated averaging on scikit-learn's digits with flock's engine: the flock side of
//! `bench/flower/flower_digits.py` (which prepares the same CSV splits and runs Flower).
//!
//! Run: `cargo run --release -p flock-ml --example fl_digits -- DIR ROUNDS LOCAL_EPOCHS`
//! where DIR holds `client_*.csv` and `test.csv` (64 feature columns and a `label` column).
//! Prints one JSON line per round: `{"round", "secs", "accuracy"}`.
//!
//! Model and training match the Flower side: a 64-128-10 MLP (ReLU), Adam at lr 1e-2, batches
//! of 32, a fresh optimizer each round, one pass over the local data per local epoch, FedAvg
//! weighted by client sample counts (flock-ml-core's deterministic aggregation).

use flock_ml::{
    cpu,
    mlp::{evaluate_mlp, train_mlp, Mlp, MlpTask, TabularData},
    train_device, TrainConfig,
};
use flock_ml_core::aggregate::{aggregate_updates, AggregationRule};
use flock_ml_data::{from_csv, CsvLimits, Tabular};
use std::{path::Path, time::Instant};

fn load(path: &Path) -> Result<TabularData, Box<dyn std::error::Error>> {
    let t: Tabular = from_csv(std::fs::File::open(path)?, "label", &CsvLimits::default())?;
    Ok(TabularData {
        n_features: t.feature_names.len(),
        features: t.features.concat(),
        targets: t.labels.clone(),
        n_targets: 1,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(args.get(1).map(String::as_str).unwrap_or("bench/flower/out"));
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let local_epochs: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut clients = Vec::new();
    for i in 0.. {
        let p = dir.join(format!("client_{i}.csv"));
        if !p.exists() {
            break;
        }
        clients.push(load(&p)?);
    }
    if clients.is_empty() {
        return Err(format!("no client_*.csv in {}", dir.display()).into());
    }
    let test = load(&dir.join("test.csv"))?;
    let task = MlpTask::Classification { classes: 10 };
    let mut global = Mlp::new(64, &[128], task, 0, &train_device()).to_update()?;
    for round in 1..=rounds {
        let started = Instant::now();
        let mut updates = Vec::with_capacity(clients.len());
        let mut weights = Vec::with_capacity(clients.len());
        for (c, data) in clients.iter().enumerate() {
            let model = Mlp::new(64, &[128], task, 0, &train_device()).load_update(&global)?;
            let cfg = TrainConfig {
                steps: local_epochs * data.rows().div_ceil(32),
                batch_size: 32,
                lr: 1e-2,
                warmup_steps: 0,
                min_lr_ratio: 1.0,
                weight_decay: 0.0,
                max_grad_norm: None,
                seed: (round * 1_000 + c) as u64,
                quiet: true,
            };
            let (trained, _) = train_mlp(model, data, task, &cfg)?;
            updates.push(trained.to_update()?);
            weights.push(data.rows() as f64);
        }
        let (next, _) = aggregate_updates(AggregationRule::FedAvg, &updates, Some(&weights))?;
        global = next;
        let eval_model = Mlp::new(64, &[128], task, 0, &cpu()).load_update(&global)?;
        let acc = evaluate_mlp(&eval_model, &test, task)?.accuracy.unwrap_or(0.0);
        println!(
            "{{\"round\": {round}, \"secs\": {:.6}, \"accuracy\": {acc:.6}}}",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
