//! A node for the agent tests: one sequencer, the given funded keys, no fsync.

use flock_ledger::{Allocation, Genesis, Params};
use flock_node::{MempoolLimits, NodeConfig, RunningNode, SequencerKey};
use flock_primitives::{Amount, Keypair};
use std::{path::Path, time::Duration};

/// `n` deterministic keys labeled `label-i`.
pub(crate) fn keys(label: &str, n: usize) -> Vec<Keypair> {
    (0..n).map(|i| Keypair::dev(&format!("{label}-{i}"))).collect()
}

/// Starts a node on a free port whose genesis funds `keys` with 100,000 FLOCK each.
pub(crate) async fn start_node(
    dir: &Path,
    chain: &str,
    keys: &[Keypair],
    epoch_length: u64,
    block_ms: u64,
    max_artifact_bytes: u64,
) -> RunningNode {
    let seq = SequencerKey::from_seed(*flock_primitives::Hash::of(chain.as_bytes()).as_bytes());
    let genesis = Genesis {
        chain_id: chain.into(),
        genesis_time_ms: 1_700_000_000_000,
        params: Params { epoch_length, ..Params::default() },
        allocations: keys
            .iter()
            .map(|k| Allocation { address: k.address(), amount: Amount::flock(100_000) })
            .collect(),
        targets: vec![],
        sequencer: Some(seq.genesis_entry()),
    };
    flock_node::start(NodeConfig {
        data_dir: dir.join("node"),
        genesis,
        listen: "127.0.0.1:0".parse().unwrap(),
        block_interval: Duration::from_millis(block_ms),
        sequencer: Some(seq),
        mempool: MempoolLimits::default(),
        fsync: false,
        max_artifact_bytes,
        artifact_peers: vec![],
    })
    .await
    .unwrap()
}
