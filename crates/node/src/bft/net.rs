//! A validator process on a real network: commonware's tokio runtime and authenticated p2p
//! (`lookup` flavor: every validator's address is known), the node's store and HTTP API.

use super::{
    deal_committee, namespace, start_validator, Committee, EngineSettings, Scheme, ValidatorKey,
    BLOCK_CHANNEL, CERTIFICATE_CHANNEL, RESOLVER_CHANNEL, VOTE_CHANNEL,
};
use crate::{api, artifacts::ArtifactStore, chain::Chain, mempool::MempoolLimits, node::Node};
use anyhow::{bail, Context as _};
use commonware_codec::{Decode as _, Encode};
use commonware_cryptography::{
    bls12381::primitives::{
        group::Share,
        sharing::{ModeVersion, Sharing},
        variant::MinSig,
    },
    ed25519, ChaCha20Poly1305, Signer as _,
};
use commonware_p2p::{authenticated::lookup, AddressableManager as _};
use commonware_runtime::{Quota, Runner as _, Supervisor as _};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::ordered::{Map, Set};
use flock_ledger::Genesis;
use flock_storage::{RedbStore, StoreConfig};
use serde::{Deserialize, Serialize};
use std::{
    net::SocketAddr,
    num::{NonZeroU32, NonZeroUsize},
    path::{Path, PathBuf},
    time::Duration,
};

/// Largest p2p message (a block with its transactions).
const MAX_MESSAGE: u32 = 16 << 20;
/// Largest committee a committee file may describe.
const MAX_VALIDATORS: u32 = 1_024;

/// What every validator of a committee knows: the identity keys (committee order) and the
/// group's public polynomial. JSON, hex-encoded commonware values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitteeFile {
    /// The chain the committee signs for (part of every signature's namespace).
    pub chain_id: String,
    /// Validators' ed25519 identity public keys, hex, in committee order.
    pub validators: Vec<String>,
    /// The threshold-BLS public polynomial (commonware encoding), hex.
    pub polynomial: String,
    /// The dealing's public output (commonware encoding), hex: what the first resharing
    /// round starts from.
    pub output: String,
}

/// One validator's secrets: its identity key and its share of the group key. JSON, hex.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorKeyFile {
    /// The ed25519 identity private key (32 bytes), hex.
    pub identity: String,
    /// The BLS12-381 share (commonware encoding), hex.
    pub share: String,
}

impl Committee {
    /// The committee file and each validator's key file (committee order).
    pub fn files(&self, chain_id: &str) -> (CommitteeFile, Vec<ValidatorKeyFile>) {
        let committee = CommitteeFile {
            chain_id: chain_id.to_string(),
            validators: self.participants.iter().map(|p| hex::encode(p.encode())).collect(),
            polynomial: hex::encode(self.polynomial.encode()),
            output: hex::encode(self.output.encode()),
        };
        let keys = self
            .keys
            .iter()
            .zip(&self.shares)
            .map(|(k, s)| ValidatorKeyFile {
                identity: hex::encode(k.encode()),
                share: hex::encode(s.encode()),
            })
            .collect();
        (committee, keys)
    }
}

/// Deals a committee of `n` and returns its files (see [`deal_committee`]).
pub fn deal_files(chain_id: &str, n: u32) -> (CommitteeFile, Vec<ValidatorKeyFile>) {
    let committee = deal_committee(commonware_utils::sys_rng(), &namespace(chain_id), n);
    committee.files(chain_id)
}

fn decode_hex<T: commonware_codec::Read>(what: &str, s: &str, cfg: &T::Cfg) -> anyhow::Result<T> {
    let bytes = hex::decode(s.trim()).with_context(|| format!("{what} is not hex"))?;
    T::decode_cfg(commonware_codec::Copying(bytes.as_slice()), cfg)
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

impl CommitteeFile {
    /// Reads a committee file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading committee {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing committee {}", path.display()))
    }

    /// Writes it as JSON.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The validators' identity keys, in committee order.
    pub fn participants(&self) -> anyhow::Result<Vec<ValidatorKey>> {
        self.validators
            .iter()
            .enumerate()
            .map(|(i, v)| decode_hex::<ValidatorKey>(&format!("validator {i}"), v, &()))
            .collect()
    }

    /// The dealing's public output.
    pub fn output(&self) -> anyhow::Result<super::epoch::Output> {
        let bytes = hex::decode(self.output.trim()).context("the committee's output is not hex")?;
        let output = super::epoch::decode_output(&bytes)
            .map_err(|e| anyhow::anyhow!("the committee's output: {e}"))?;
        if output.players().iter().cloned().collect::<Vec<_>>() != self.participants()? {
            bail!("the committee's output is for other validators");
        }
        if output.public() != &self.polynomial()? {
            bail!("the committee's output is not its polynomial's");
        }
        Ok(output)
    }

    /// The group's public polynomial.
    pub fn polynomial(&self) -> anyhow::Result<Sharing<MinSig>> {
        let max = NonZeroU32::new(MAX_VALIDATORS).expect("nonzero");
        decode_hex::<Sharing<MinSig>>("polynomial", &self.polynomial, &(max, ModeVersion::v0()))
    }
}

impl ValidatorKeyFile {
    /// Reads a key file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading validator key {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("parsing validator key {}", path.display()))
    }

    /// Writes it as JSON (owner-only permissions on unix).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }

    /// The identity key and the signing scheme for `committee`, and the share.
    pub fn open(
        &self,
        committee: &CommitteeFile,
    ) -> anyhow::Result<(ed25519::PrivateKey, Scheme, Share)> {
        let identity = decode_hex::<ed25519::PrivateKey>("identity key", &self.identity, &())?;
        let share = decode_hex::<Share>("share", &self.share, &())?;
        let participants = committee.participants()?;
        let me = identity.public_key();
        if !participants.contains(&me) {
            bail!("this validator key is not in the committee");
        }
        let set = Set::from_iter_dedup(participants.iter().cloned());
        if set.len() != participants.len() {
            bail!("the committee names a validator twice");
        }
        let polynomial = committee.polynomial()?;
        if polynomial.total().get() as usize != participants.len() {
            bail!("the committee's polynomial is not for {} validators", participants.len());
        }
        let scheme = std::panic::catch_unwind(|| {
            Scheme::signer(&namespace(&committee.chain_id), set, polynomial, share.clone())
        })
        .map_err(|_| anyhow::anyhow!("the committee's polynomial does not fit the committee"))?
        .context("the share does not match the committee's polynomial")?;
        Ok((identity, scheme, share))
    }
}

/// The flock account key of a validator's identity key (the same ed25519 secret): it holds
/// the validator's network stake and signs the consensus evidence it reports.
pub fn reporter_keypair(
    identity: &ed25519::PrivateKey,
) -> anyhow::Result<flock_primitives::Keypair> {
    let bytes = identity.encode();
    let seed: [u8; 32] =
        bytes.as_ref().try_into().map_err(|_| anyhow::anyhow!("an identity key is 32 bytes"))?;
    let key = flock_primitives::Keypair::from_seed(seed);
    if key.public() != super::evidence::flock_key(&identity.public_key()) {
        bail!("the identity key does not map to a flock account key");
    }
    Ok(key)
}

/// How to run one validator process.
#[derive(Debug, Clone)]
pub struct ValidatorProcess {
    /// Where the chain store, artifacts and the engine's journal live.
    pub data_dir: PathBuf,
    /// The chain's genesis (its chain id must be the committee's).
    pub genesis: Genesis,
    /// The HTTP API's listen address.
    pub api_listen: SocketAddr,
    /// The committee.
    pub committee: CommitteeFile,
    /// This validator's keys.
    pub key: ValidatorKeyFile,
    /// Every validator's p2p address, in committee order (this one's is where it listens).
    pub peers: Vec<SocketAddr>,
    /// Mempool limits.
    pub mempool: MempoolLimits,
    /// fsync every block.
    pub fsync: bool,
    /// Largest artifact the store accepts.
    pub max_artifact_bytes: u64,
    /// Other nodes' API base URLs to fetch missing artifacts from.
    pub artifact_peers: Vec<String>,
    /// Called once the API is listening, with its address.
    pub on_ready: Option<fn(SocketAddr)>,
}

/// Runs a validator until Ctrl-C or SIGTERM (blocking: it owns a commonware tokio runtime).
pub fn run_validator(cfg: ValidatorProcess) -> anyhow::Result<()> {
    if cfg.genesis.chain_id != cfg.committee.chain_id {
        bail!(
            "the genesis chain id {:?} is not the committee's {:?}",
            cfg.genesis.chain_id,
            cfg.committee.chain_id
        );
    }
    let participants = cfg.committee.participants()?;
    let (identity, _scheme, share) = cfg.key.open(&cfg.committee)?;
    let output = cfg.committee.output()?;
    let me = identity.public_key();
    if cfg.peers.len() != participants.len() {
        bail!(
            "--peers lists {} addresses; the committee has {} validators (one address each, in committee order)",
            cfg.peers.len(),
            participants.len()
        );
    }
    let index = participants.iter().position(|p| *p == me).expect("checked by open");
    let listen = cfg.peers[index];
    let peers: Vec<(ValidatorKey, commonware_p2p::Address)> =
        participants.iter().cloned().zip(cfg.peers.iter().map(|a| (*a).into())).collect();
    let genesis_peers: std::collections::BTreeMap<ValidatorKey, SocketAddr> =
        participants.iter().cloned().zip(cfg.peers.iter().copied()).collect();
    let peers: Map<ValidatorKey, commonware_p2p::Address> =
        peers.try_into().map_err(|_| anyhow::anyhow!("duplicate validator in the committee"))?;

    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    let db = cfg.data_dir.join("chain.redb");
    let store = RedbStore::open_with(&db, StoreConfig::default().with_fsync(cfg.fsync))
        .with_context(|| format!("opening store {}", db.display()))?;
    let chain = Chain::open(Box::new(store), cfg.genesis.clone())?;
    tracing::info!(height = chain.info().height.0, root = %chain.info().state_root, "chain opened");
    let artifacts = ArtifactStore::open(&cfg.data_dir.join("artifacts"), cfg.max_artifact_bytes)
        .with_context(|| format!("opening the artifact store in {}", cfg.data_dir.display()))?
        .with_peers(cfg.artifact_peers.clone());
    let node = Node::with_artifacts(chain, cfg.mempool, artifacts);

    let rt = commonware_runtime::tokio::Config::new()
        .with_worker_threads(2)
        .with_storage_directory(cfg.data_dir.join("consensus"))
        .with_tcp_nodelay(Some(true));
    let runner = commonware_runtime::tokio::Runner::new(rt);
    let chain_id = cfg.committee.chain_id.clone();
    let api_listen = cfg.api_listen;
    let on_ready = cfg.on_ready;
    runner.start(|context| async move {
        let listener = tokio::net::TcpListener::bind(api_listen)
            .await
            .with_context(|| format!("binding the API to {api_listen}"))?;
        let addr = listener.local_addr()?;
        let app = api::router(node.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "API server stopped");
            }
        });

        let ns = namespace(&chain_id);
        let n = NonZeroUsize::new(participants.len()).expect("non-empty committee");
        let p2p = lookup::Config::local(
            Cups::<_, ChaCha20Poly1305>::new(
                Sake {
                    signer: identity.clone(),
                    synchrony_bound: Duration::from_secs(5),
                    max_handshake_age: Duration::from_secs(10),
                    version: sake::Version::V1,
                },
                cups::Version::V1,
            ),
            &ns,
            listen,
            n,
            MAX_MESSAGE,
            NonZeroUsize::new(1_024).expect("nonzero"),
        );
        let (mut network, mut oracle) = lookup::Network::new(context.child("network"), p2p);
        let _ = oracle.track(0, peers);
        // Every epoch: the committee and the next round's players, at their registered
        // endpoints (the genesis validators at their --peers addresses until they register).
        let tracker = std::sync::Arc::new(std::sync::Mutex::new(oracle.clone()));
        let peers_hook: super::app::PeersHook =
            std::sync::Arc::new(move |epoch, keys: Vec<(ValidatorKey, Option<String>)>| {
                let mut set = std::collections::BTreeMap::new();
                for (k, endpoint) in keys {
                    let addr = endpoint
                        .and_then(|e| e.parse::<SocketAddr>().ok())
                        .or_else(|| genesis_peers.get(&k).copied());
                    match addr {
                        Some(a) => {
                            set.insert(k, commonware_p2p::Address::from(a));
                        }
                        None => tracing::warn!(epoch, "a committee member has no known address"),
                    }
                }
                let Ok(map) = Map::try_from(set.into_iter().collect::<Vec<_>>()) else { return };
                if let Ok(mut o) = tracker.lock() {
                    let _ = o.track(epoch + 1, map);
                }
            });
        let quota = Quota::per_second(NonZeroU32::new(10_000).expect("nonzero"));
        let channels = [VOTE_CHANNEL, CERTIFICATE_CHANNEL, RESOLVER_CHANNEL, BLOCK_CHANNEL]
            .map(|ch| network.register(ch, quota));
        network.start();
        let mut settings = EngineSettings::new(format!("flock-simplex-{index}"));
        settings.leader_timeout = Duration::from_secs(1);
        settings.reporter = Some(reporter_keypair(&identity)?);
        settings.identity = Some(identity.clone());
        settings.share_dir = Some(cfg.data_dir.join("shares"));
        settings.peers_hook = Some(peers_hook);
        // No empty-block delay: transactions are not gossiped between validators yet, so a
        // transaction waits for its node's turn to lead, and a delay per empty view would add
        // up (500 ms measured 1.6 s median finality instead of 0.1 s).
        let genesis = super::epoch::EpochCommittee { round: None, output, share: Some(share) };
        start_validator(
            context.child("validator"),
            node.clone(),
            genesis,
            me,
            oracle,
            settings,
            channels,
        );
        tracing::info!(%addr, p2p = %listen, index, "validator running");
        println!(
            "flockd node --bft: validator {index} API at http://{addr} p2p {listen} (height {})",
            node.tip().height
        );
        if let Some(f) = on_ready {
            f(addr);
        }
        crate::server::shutdown_signal().await;
        tracing::info!("shutting down");
        Ok::<(), anyhow::Error>(())
    })
}
