//! One full AI Arena round through the HTTP API with the real ML engine: a tiny base model,
//! trainers fine-tuning LoRA adapters on the simulated Text2SQL corpus, validators scoring
//! them in bits per byte on the hidden set. Seconds, not minutes.

mod common;

use flock_agents::{
    engine::{prepare_text2sql, EngineMl, BASE_FILES},
    scenario::{print_outcome, run_arena_scenario, ArenaScenario},
    TrainPlan,
};
use flock_ledger::arena::Phases;
use std::{sync::Arc, time::Duration};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_round_ranks_trainers_by_validation_bpb() {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    let task = prepare_text2sql(&base_dir, 11, 160, 24, 60).unwrap();
    let keys = common::keys("engine", 12);
    let node = common::start_node(dir.path(), "flock-engine", &keys, 40, 30, 64 << 20).await;
    let plan = |p: u32, steps: usize| TrainPlan { data_percent: p, steps, seed: 3 };
    let scenario = ArenaScenario {
        url: node.url(),
        urls: vec![],
        keys,
        base_dir,
        base_files: BASE_FILES.iter().map(|s| (*s).to_owned()).collect(),
        training_jsonl: task.training_jsonl,
        validation_jsonl: task.validation_jsonl,
        plans: [plan(100, 60), plan(60, 30), plan(30, 12), plan(10, 4)],
        phases: Phases { train: 600, reveal: 40, validate_commit: 300, validate_reveal: 40 },
        work_dir: dir.path().join("agents"),
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(300),
        run_arena_scenario(scenario, Arc::new(EngineMl::default())),
    )
    .await
    .expect("the round finished in time")
    .unwrap();
    let table = print_outcome(&outcome);
    println!("base model BPB {:.4}{table}", task.base_bpb);
    for (check, ok) in &outcome.checks {
        assert!(ok, "{check}\n{table}");
    }
    // Fine-tuning beat the base model.
    let best = outcome.lines.iter().find(|l| l.role == "trainer").unwrap();
    let best_bpb: f64 = best.metric.trim_end_matches(" BPB").parse().unwrap();
    assert!(best_bpb < task.base_bpb, "{best_bpb} vs base {}", task.base_bpb);
    node.shutdown().await.unwrap();
}
