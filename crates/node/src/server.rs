//! Starting and stopping a node: open the store, open the chain, serve the API, run the
//! block source on its own thread.

use crate::{
    api,
    artifacts::ArtifactStore,
    chain::{Chain, ChainError},
    mempool::MempoolLimits,
    node::{drive, Node},
    sequencer::SoloSequencer,
};
use anyhow::{bail, Context};
use flock_ledger::Genesis;
use flock_primitives::{Keypair, VrfKeypair};
use flock_storage::{RedbStore, StoreConfig};
use std::{
    fmt,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};
use tokio::{net::TcpListener, sync::oneshot};

/// The sequencer's secret: one seed for its account key and its VRF key.
#[derive(Debug, Clone)]
pub struct SequencerKey {
    seed: [u8; 32],
}

impl SequencerKey {
    /// A fresh key.
    pub fn generate() -> Self {
        Self { seed: Keypair::generate().secret_bytes() }
    }

    /// A key from a seed (dev networks).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self { seed }
    }

    /// The account key (the block proposer's address).
    pub fn account(&self) -> Keypair {
        Keypair::from_seed(self.seed)
    }

    /// The VRF key.
    pub fn vrf(&self) -> VrfKeypair {
        VrfKeypair::from_seed(*blake3_derive(&self.seed).as_bytes())
    }

    /// The genesis entry naming this sequencer.
    pub fn genesis_entry(&self) -> flock_ledger::Sequencer {
        flock_ledger::Sequencer { address: self.account().address(), vrf_key: self.vrf().public() }
    }

    /// Loads a key file (64 hex characters).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading sequencer key {}", path.display()))?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).with_context(|| {
            format!("sequencer key {} is not 64 hex characters", path.display())
        })?;
        Ok(Self { seed })
    }

    /// Writes the key file with owner-only permissions.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(path, hex::encode(self.seed))
            .with_context(|| format!("writing sequencer key {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }
}

fn blake3_derive(seed: &[u8; 32]) -> flock_primitives::Hash {
    flock_primitives::Hash::of_parts("flock sequencer vrf seed v1", &[seed])
}

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// The chain's genesis.
    pub genesis: Genesis,
    /// API listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Block interval of the solo sequencer.
    pub block_interval: Duration,
    /// The sequencer key (required for solo block production).
    pub sequencer: Option<SequencerKey>,
    /// Mempool limits.
    pub mempool: MempoolLimits,
    /// fsync every block (turn off only for benchmarks).
    pub fsync: bool,
    /// Largest artifact the store accepts.
    pub max_artifact_bytes: u64,
    /// Other nodes' API base URLs: a `GET /v1/artifacts/{hash}` this node misses is fetched
    /// from the first of them that has it (verified, resumed with range requests).
    pub artifact_peers: Vec<String>,
}

/// A future run when the node shuts down.
pub type ShutdownFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

type RoutesFn = dyn Fn(Node) -> anyhow::Result<axum::Router> + Send + Sync;
type ShutdownFn = dyn Fn() -> ShutdownFuture + Send + Sync;

/// Routes another crate adds to the node's API (model serving, `flock-serve`), with an optional
/// step run at shutdown. The node knows nothing of what they do; it builds them with its
/// [`Node`] handle when it starts and merges them into its router.
///
/// Shutdown order: the API stops taking requests (in-flight ones finish), then the shutdown
/// step runs while blocks are still produced (so it can still get transactions into a block),
/// then block production stops.
#[derive(Clone)]
pub struct ApiExtension {
    routes: Arc<RoutesFn>,
    shutdown: Option<Arc<ShutdownFn>>,
}

impl ApiExtension {
    /// An extension whose routes `build` makes from the node handle; an error stops the start.
    pub fn new(
        build: impl Fn(Node) -> anyhow::Result<axum::Router> + Send + Sync + 'static,
    ) -> Self {
        Self { routes: Arc::new(build), shutdown: None }
    }

    /// Adds a step run at shutdown, before block production stops.
    pub fn on_shutdown(mut self, f: impl Fn() -> ShutdownFuture + Send + Sync + 'static) -> Self {
        self.shutdown = Some(Arc::new(f));
        self
    }
}

impl fmt::Debug for ApiExtension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiExtension").field("on_shutdown", &self.shutdown.is_some()).finish()
    }
}

/// Default artifact size limit: 2 GiB.
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 2 << 30;

/// A running node.
#[derive(Debug)]
pub struct RunningNode {
    /// The node handle.
    pub node: Node,
    /// The API's bound address.
    pub addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    producer: Option<std::thread::JoinHandle<Result<(), ChainError>>>,
    server: tokio::task::JoinHandle<()>,
    shutdown: Option<oneshot::Sender<()>>,
    extension: Option<ApiExtension>,
}

/// Opens the chain in `config.data_dir` and starts producing blocks and serving the API.
pub async fn start(config: NodeConfig) -> anyhow::Result<RunningNode> {
    start_with(config, None).await
}

/// [`start`] with routes added to the API by another crate (see [`ApiExtension`]).
pub async fn start_with(
    config: NodeConfig,
    extension: Option<ApiExtension>,
) -> anyhow::Result<RunningNode> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let db = config.data_dir.join("chain.redb");
    let store = RedbStore::open_with(&db, StoreConfig::default().with_fsync(config.fsync))
        .with_context(|| format!("opening store {}", db.display()))?;
    let chain = Chain::open(Box::new(store), config.genesis.clone())?;
    tracing::info!(height = chain.info().height.0, root = %chain.info().state_root, "chain opened");
    let artifacts =
        ArtifactStore::open(&config.data_dir.join("artifacts"), config.max_artifact_bytes)
            .with_context(|| {
                format!("opening the artifact store in {}", config.data_dir.display())
            })?
            .with_peers(config.artifact_peers.clone());
    let node = Node::with_artifacts(chain, config.mempool, artifacts);

    let Some(key) = config.sequencer.clone() else {
        bail!("no sequencer key: a solo node needs the key named in the genesis (--sequencer-key)");
    };
    match &config.genesis.sequencer {
        Some(s) if *s == key.genesis_entry() => {}
        Some(s) => bail!(
            "the sequencer key ({}) is not the genesis sequencer ({})",
            key.account().address(),
            s.address
        ),
        None => bail!("the genesis names no sequencer, so a solo node cannot produce blocks"),
    }
    // Built before block production starts, so a failing extension leaves nothing running.
    let extra = match &extension {
        Some(e) => Some((e.routes)(node.clone()).context("starting the API extension")?),
        None => None,
    };
    let mut sequencer =
        SoloSequencer::new(key.vrf(), key.account().address(), config.block_interval);
    let stop = sequencer.stop_flag();
    let producer_node = node.clone();
    let producer = std::thread::Builder::new().name("flock-sequencer".into()).spawn(move || {
        let r = drive(&producer_node, &mut sequencer);
        if let Err(e) = &r {
            tracing::error!(error = %e, "block production stopped");
        }
        r
    })?;

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the API to {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let mut app = api::router(node.clone());
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    let server = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "API server stopped");
        }
    });
    tracing::info!(%addr, "API listening");
    Ok(RunningNode {
        node,
        addr,
        stop,
        producer: Some(producer),
        server,
        shutdown: Some(tx),
        extension,
    })
}

impl RunningNode {
    /// The API base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether block production has stopped (a storage failure or an invalid block).
    pub fn producer_stopped(&self) -> bool {
        self.producer.as_ref().is_none_or(std::thread::JoinHandle::is_finished)
    }

    /// Stops the API (in-flight requests finish), runs the extension's shutdown step while
    /// blocks are still produced, then stops block production; waits for all of it.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.server).await;
        if let Some(f) = self.extension.as_ref().and_then(|e| e.shutdown.clone()) {
            if !self.producer_stopped() {
                f().await;
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(p) = self.producer.take() {
            let r = tokio::task::spawn_blocking(move || p.join()).await?;
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => bail!("the sequencer thread panicked"),
            }
        }
        Ok(())
    }

    /// Runs until Ctrl-C (or SIGTERM), or until block production stops; then shuts down.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        let mut check = tokio::time::interval(Duration::from_millis(500));
        let stop = shutdown_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = check.tick() => {
                    if self.producer_stopped() {
                        break;
                    }
                }
            }
        }
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

/// Completes on Ctrl-C or (on Unix) SIGTERM: the signals every long-running `flockd` command
/// stops on.
pub async fn shutdown_signal() {
    let term = async {
        #[cfg(unix)]
        {
            if let Ok(mut s) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                s.recv().await;
                return;
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
