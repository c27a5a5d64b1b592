//! `flockd node`: run a node from a genesis file, optionally serving marketplace listings.

use crate::cli::{NodeArgs, ServeArgs};
use anyhow::{bail, Context};
use flock_ledger::Genesis;
use flock_node::{Keystore, MempoolLimits, NodeConfig, SequencerKey};
use flock_primitives::Keypair;
use std::{path::Path, time::Duration};

pub(crate) async fn run(a: NodeArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.genesis)
        .with_context(|| format!("reading genesis {}", a.genesis.display()))?;
    let genesis = Genesis::from_json(&text).map_err(anyhow::Error::msg)?;
    genesis.validate()?;
    if a.bft.enabled {
        #[cfg(feature = "bft")]
        return super::bft::node(a, genesis).await;
        #[cfg(not(feature = "bft"))]
        bail!("--bft: this flockd was built without the `bft` feature (cargo build -p flockd --features bft)");
    }
    let key_path = a.sequencer_key.clone().unwrap_or_else(|| a.data.data_dir.join("sequencer.key"));
    let sequencer = Some(SequencerKey::load(&key_path)?);
    let extension = serve_extension(&a.serve, &a.data.data_dir)?;
    let serving = a.serve.models.iter().map(|m| m.listing.clone()).collect::<Vec<_>>();
    let running = flock_node::start_with(
        NodeConfig {
            data_dir: a.data.data_dir.clone(),
            genesis,
            listen: a.listen,
            block_interval: Duration::from_millis(a.block_interval_ms.max(1)),
            sequencer,
            mempool: MempoolLimits::default(),
            fsync: !a.no_fsync,
            max_artifact_bytes: a.max_artifact_bytes,
            artifact_peers: a.artifact_peers.clone(),
        },
        extension,
    )
    .await?;
    println!("flockd node: API at {} (height {})", running.url(), running.node.tip().height);
    if !serving.is_empty() {
        println!("serving {} at {}/v1 (OpenAI-compatible)", serving.join(", "), running.url());
    }
    running.run_until_signal().await
}

/// The serve layer for `--serve`, or `None` without it.
fn serve_extension(
    a: &ServeArgs,
    data_dir: &Path,
) -> anyhow::Result<Option<flock_node::ApiExtension>> {
    if a.models.is_empty() {
        if a.server_key.is_some() {
            bail!("--server-key is only used with --serve LISTING=MODEL_DIR");
        }
        return Ok(None);
    }
    let Some(who) = &a.server_key else {
        bail!("--serve needs --server-key: the listings' server account (a keystore name or key file)");
    };
    let key = load_server_key(who, data_dir)?;
    let mut cfg = flock_serve::ServeConfig::new(a.models.clone(), key, data_dir.to_path_buf());
    cfg.settle_every = Duration::from_secs(a.settle_every_s.max(1));
    cfg.rate_limit = flock_serve::RateLimit { per_minute: a.rate_limit, burst: a.rate_burst };
    cfg.max_tokens_cap = a.max_tokens_cap;
    cfg.default_max_tokens = cfg.default_max_tokens.min(a.max_tokens_cap.max(1));
    if let Some(w) = a.serve_workers {
        cfg.workers = w;
    }
    cfg.queue = a.serve_queue;
    cfg.validate()?;
    Ok(Some(flock_serve::extension(cfg)))
}

/// A key file (64 hex characters of the secret seed) if `who` names a file, else the
/// keystore key called `who`.
fn load_server_key(who: &str, data_dir: &Path) -> anyhow::Result<Keypair> {
    let path = Path::new(who);
    if path.is_file() {
        // Same file format as the sequencer key: the 32-byte seed in hex.
        return Ok(SequencerKey::load(path)
            .with_context(|| format!("--server-key {}", path.display()))?
            .account());
    }
    Keystore::open(data_dir).get(who).with_context(|| {
        format!("--server-key {who:?} is neither a key file nor a key in the keystore")
    })
}
