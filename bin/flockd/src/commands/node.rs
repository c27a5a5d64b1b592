//! `flockd node`: run a node from a genesis file.

use crate::cli::NodeArgs;
use anyhow::Context;
use flock_ledger::Genesis;
use flock_node::{MempoolLimits, NodeConfig, SequencerKey};
use std::time::Duration;

pub(crate) async fn run(a: NodeArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.genesis)
        .with_context(|| format!("reading genesis {}", a.genesis.display()))?;
    let genesis = Genesis::from_json(&text).map_err(anyhow::Error::msg)?;
    genesis.validate()?;
    let key_path = a.sequencer_key.clone().unwrap_or_else(|| a.data.data_dir.join("sequencer.key"));
    let sequencer = Some(SequencerKey::load(&key_path)?);
    let running = flock_node::start(NodeConfig {
        data_dir: a.data.data_dir.clone(),
        genesis,
        listen: a.listen,
        block_interval: Duration::from_millis(a.block_interval_ms.max(1)),
        sequencer,
        mempool: MempoolLimits::default(),
        fsync: !a.no_fsync,
        max_artifact_bytes: a.max_artifact_bytes,
    })
    .await?;
    println!("flockd node: API at {} (height {})", running.url(), running.node.tip().height);
    running.run_until_signal().await
}
