//! An FL Alliance task end to end over HTTP: six hospitals with simulated glucose patients (one
//! poisoning its updates), ten rounds, real MLP training and deterministic aggregation.

mod common;

use flock_agents::fl_scenario::{print_alliance, run_alliance_scenario, AllianceScenario};
use flock_ledger::alliance::AlliancePhases;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glucose_alliance_contains_the_poisoner() {
    let dir = tempfile::tempdir().unwrap();
    let keys = common::keys("fl", 7);
    let node = common::start_node(dir.path(), "flock-fl", &keys, 50, 30, 16 << 20).await;
    let s = AllianceScenario {
        url: node.url(),
        keys,
        rounds: 10,
        patients: 2,
        days: 2,
        phases: AlliancePhases { join: 20, propose: 60, vote_commit: 60, vote_reveal: 30 },
        work_dir: dir.path().join("agents"),
    };
    let o = tokio::time::timeout(Duration::from_secs(300), run_alliance_scenario(s))
        .await
        .expect("in time")
        .unwrap();
    let table = print_alliance(&o);
    println!("{table}");
    for (c, ok) in &o.checks {
        assert!(ok, "{c}\n{table}");
    }
    assert!(o.federated_rmse < o.initial_rmse, "{table}");
    let sup = flock_node::Client::new(&node.url()).get("/v1/supply").await.unwrap();
    assert_eq!(sup["conserved"], true);
    node.shutdown().await.unwrap();
}
