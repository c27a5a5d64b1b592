//! An FL Alliance task end to end over HTTP: six hospitals with simulated glucose patients (one
//! poisoning its updates), ten rounds, real MLP training and deterministic aggregation.

use flock_agents::fl_scenario::{print_alliance, run_alliance_scenario, AllianceScenario};
use flock_ledger::{alliance::AlliancePhases, Allocation, Genesis, Params};
use flock_node::{MempoolLimits, NodeConfig, SequencerKey};
use flock_primitives::{Amount, Keypair};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glucose_alliance_contains_the_poisoner() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<Keypair> = (0..7).map(|i| Keypair::dev(&format!("fl-{i}"))).collect();
    let seq = SequencerKey::from_seed([8; 32]);
    let genesis = Genesis {
        chain_id: "flock-fl".into(),
        genesis_time_ms: 1_700_000_000_000,
        params: Params { epoch_length: 50, ..Params::default() },
        allocations: keys
            .iter()
            .map(|k| Allocation { address: k.address(), amount: Amount::flock(100_000) })
            .collect(),
        targets: vec![],
        sequencer: Some(seq.genesis_entry()),
    };
    let node = flock_node::start(NodeConfig {
        data_dir: dir.path().join("node"),
        genesis,
        listen: "127.0.0.1:0".parse().unwrap(),
        block_interval: Duration::from_millis(30),
        sequencer: Some(seq),
        mempool: MempoolLimits::default(),
        fsync: false,
        max_artifact_bytes: 16 << 20,
    })
    .await
    .unwrap();
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
