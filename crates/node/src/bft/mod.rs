//! Multi-machine mode: the ledger replicated by commonware's simplex BFT consensus.
//!
//! This module is the only place in flock that knows commonware. The engine orders block
//! digests; this adapter is its application:
//!
//! ```text
//!   simplex engine ──propose(ctx)──► Application: mempool → Block (parent's state root, seed) ─► relay
//!   (one per epoch) ──verify(ctx,d)─► Application: fetch the block and its unfinalized ancestors,
//!                                    check header, seed, and a dry run of every transaction
//!                  ──report(Finalization)─► Application: parent chain → Node::apply_finalized
//! ```
//!
//! * **Deferred execution**: a header carries the state root after its parent. Leaders and
//!   verifiers build on notarized parents before they are final: the blocks between the
//!   committed tip and the parent run on a copy of the committed ledger, their roots computed
//!   without writing, so every `parent_state_root` is checked against a locally executed one
//!   and a finalized block always applies.
//! * **Seed**: the header's seed is the engine's threshold-BLS VRF output (the `Seed` of the
//!   parent's view, recovered from its notarization or finalization certificate), carried as
//!   [`flock_ledger::SeedProof::Threshold`] and checked against the group key. An epoch's first block
//!   (parent = the engine's genesis, view 0, which has no certificate) carries a seed derived
//!   from the chain id (epoch 0) or from the previous block's seed ([`epoch::epoch_seed`]).
//! * **Epochs** ([`epoch`]): every ledger epoch, the committee reshares its threshold key to
//!   the staked validators that registered an endpoint; the next epoch runs a fresh engine
//!   with the new committee under the same group key.
//! * **Wire** ([`BLOCK_CHANNEL`]): full blocks (a node missing one asks its peers by hash),
//!   resharing dealings and acks, gossiped client transactions, and finalizations for nodes
//!   that fell behind by whole epochs.

mod app;
pub mod epoch;
mod evidence;
mod net;

pub use app::{Application, Mailbox, PeersHook, StartEngine};
pub use evidence::{fault_of, flock_key, verify_fault};
pub use net::{
    deal_files, reporter_keypair, run_validator, CommitteeFile, ValidatorKeyFile, ValidatorProcess,
};

use commonware_consensus::{simplex::scheme::bls12381_threshold::vrf, types::Epoch};
use commonware_cryptography::bls12381::primitives::variant::MinSig;
use flock_ledger::Block;
use flock_primitives::{Address, Hash, PublicKey};

/// A validator's identity key on the consensus network (ed25519).
pub type ValidatorKey = commonware_cryptography::ed25519::PublicKey;
/// The signing scheme of votes and certificates: BLS12-381 threshold with an embedded VRF.
pub type Scheme = vrf::Scheme<ValidatorKey, MinSig>;
/// The engine's per-view randomness.
pub type Seed = vrf::Seed<MinSig>;
/// What the engine orders: a block hash.
pub type Digest = commonware_cryptography::sha256::Digest;

/// p2p channel of consensus votes.
pub const VOTE_CHANNEL: u64 = 0;
/// p2p channel of consensus certificates.
pub const CERTIFICATE_CHANNEL: u64 = 1;
/// p2p channel of the engine's certificate fetches.
pub const RESOLVER_CHANNEL: u64 = 2;
/// p2p channel of full blocks (proposals and fetches).
pub const BLOCK_CHANNEL: u64 = 3;

/// The namespace every signature of the engine is bound to.
pub fn namespace(chain_id: &str) -> Vec<u8> {
    let mut v = b"flock-bft-v1:".to_vec();
    v.extend_from_slice(chain_id.as_bytes());
    v
}

/// The engine digest of a block (its hash).
pub fn digest_of(hash: &Hash) -> Digest {
    commonware_cryptography::sha256::Digest(hash.0)
}

/// The flock hash of an engine digest.
pub fn hash_of(digest: &Digest) -> Hash {
    Hash(digest.0)
}

/// The flock address that proposes under a validator key (the header's `proposer`).
pub fn proposer_address(key: &ValidatorKey) -> Address {
    let mut pk = [0u8; 32];
    pk.copy_from_slice(key.as_ref());
    Address::from_public_key(&PublicKey(pk))
}

/// The seed of the first block (its parent, the genesis, has no certificate).
pub fn genesis_seed(chain_id: &str) -> Hash {
    Hash::of_parts("flock bft genesis seed v1", &[chain_id.as_bytes()])
}

/// The header seed derived from an engine seed (a hash of its threshold signature).
pub fn seed_hash(seed_bytes: &[u8]) -> Hash {
    Hash::of_parts("flock bft seed v1", &[seed_bytes])
}

/// Messages on [`BLOCK_CHANNEL`].
#[derive(Debug, Clone, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub(crate) enum Wire {
    /// A full block.
    Block(Box<Block>),
    /// A request for the block with this hash.
    Request(Hash),
    /// A dealer's dealing to one player in a resharing round: its public commitment and the
    /// player's private share (the p2p channel is authenticated and encrypted).
    Deal {
        /// The round.
        round: u64,
        /// The public commitment (commonware encoding).
        public: Vec<u8>,
        /// The player's share of the dealing (commonware encoding).
        private: Vec<u8>,
    },
    /// A player's acknowledgement of a dealing.
    Ack {
        /// The round.
        round: u64,
        /// The signed acknowledgement (commonware encoding).
        ack: Vec<u8>,
    },
    /// Transactions a client sent to the sender (gossiped so any leader can include them).
    Txs(Vec<flock_ledger::SignedTx>),
    /// A request for the peer's latest finalization (sent by a node that stopped committing).
    TipRequest,
    /// A finalization certificate (commonware encoding).
    Finalization {
        /// The encoded finalization.
        proof: Vec<u8>,
    },
}

/// Timeouts and storage settings of one validator's engine.
#[derive(Clone)]
pub struct EngineSettings {
    /// The engine's journal partition (unique per validator on shared storage).
    pub partition: String,
    /// How long to wait for the leader's proposal.
    pub leader_timeout: std::time::Duration,
    /// How long to wait for a notarization to certify.
    pub certification_timeout: std::time::Duration,
    /// How often to rebroadcast a nullify vote.
    pub timeout_retry: std::time::Duration,
    /// With an empty mempool, a leader waits this long after its parent's block time before it
    /// proposes (an empty block); a transaction arriving meanwhile is proposed at once. Keep
    /// it well under `leader_timeout`. Zero: propose at once.
    pub empty_block_delay: std::time::Duration,
    /// Where to record why this validator rejected a proposal (none: logged only).
    pub rejections: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
    /// The key that signs the consensus evidence this validator reports (its identity key as
    /// a flock account; none: faults are only logged).
    pub reporter: Option<flock_primitives::Keypair>,
    /// Fault injection for tests: this validator proposes invalid blocks.
    #[doc(hidden)]
    pub byzantine: Option<Byzantine>,
    /// This validator's identity key: it deals and plays in the resharing rounds that make
    /// the committee follow staking (none: it only follows the committees others deal).
    pub identity: Option<commonware_cryptography::ed25519::PrivateKey>,
    /// Where the threshold shares it receives are kept (none: in memory only; a restart then
    /// leaves it without a share until the next round deals it one).
    pub share_dir: Option<std::path::PathBuf>,
    /// Told the peers to reach at every epoch (see [`app::PeersHook`]).
    pub peers_hook: Option<app::PeersHook>,
}

impl std::fmt::Debug for EngineSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSettings")
            .field("partition", &self.partition)
            .field("leader_timeout", &self.leader_timeout)
            .field("identity", &self.identity.is_some())
            .field("share_dir", &self.share_dir)
            .finish_non_exhaustive()
    }
}

/// How a byzantine proposer (fault injection, tests only) spoils its blocks.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Byzantine {
    /// The block carries a transaction whose signature does not verify.
    BadSignature,
    /// The header's parent state root is not the parent's executed root.
    WrongParentRoot,
    /// The block carries consensus evidence against an honest validator with a forged proof.
    ForgedEvidence,
}

impl EngineSettings {
    /// Defaults for a validator with this journal partition.
    pub fn new(partition: impl Into<String>) -> Self {
        Self {
            partition: partition.into(),
            leader_timeout: std::time::Duration::from_secs(1),
            certification_timeout: std::time::Duration::from_secs(2),
            timeout_retry: std::time::Duration::from_secs(5),
            empty_block_delay: std::time::Duration::ZERO,
            rejections: None,
            reporter: None,
            byzantine: None,
            identity: None,
            share_dir: None,
            peers_hook: None,
        }
    }
}

/// One p2p channel: a sender and its receiver.
pub type Channel<S, R> = (S, R);

/// Starts one validator: the application actor over `node` and, per epoch, a simplex engine,
/// on the four channels ([`VOTE_CHANNEL`], [`CERTIFICATE_CHANNEL`], [`RESOLVER_CHANNEL`],
/// [`BLOCK_CHANNEL`]; the first three are multiplexed by epoch). `genesis` is the genesis
/// committee with this validator's share (if any); `me` its identity key. The committee then
/// follows staking (see [`epoch`]) when `settings.identity` is set; without it the validator
/// only follows the committees others deal.
// The epoch-engine starter's future yields the engine's handle (a future itself, on purpose).
#[allow(clippy::too_many_arguments, clippy::async_yields_async)]
pub fn start_validator<E, B, S, R>(
    context: E,
    node: crate::Node,
    genesis: epoch::EpochCommittee,
    me: ValidatorKey,
    blocker: B,
    settings: EngineSettings,
    channels: [Channel<S, R>; 4],
) -> commonware_runtime::Handle<()>
where
    E: commonware_runtime::Clock
        + rand_core_cw::CryptoRng
        + commonware_runtime::Spawner
        + commonware_runtime::Storage
        + commonware_runtime::Metrics
        + commonware_runtime::Supervisor,
    B: commonware_p2p::Blocker<PublicKey = ValidatorKey> + Clone + Send + 'static,
    S: commonware_p2p::Sender<PublicKey = ValidatorKey>,
    R: commonware_p2p::Receiver<PublicKey = ValidatorKey>,
{
    use commonware_consensus::{
        simplex::{
            config::{Config, Floor, ForwardPolicy, SkipBudget, SkipPolicy},
            elector::RoundRobin,
            Engine,
        },
        types::ViewDelta,
    };
    use commonware_p2p::utils::mux::Muxer;
    use std::num::{NonZeroU16, NonZeroUsize};
    let [votes, certificates, resolver, blocks] = channels;
    let chain_id = node.tip().chain_id;
    let ns = namespace(&chain_id);
    let (mut app, mailbox) =
        Application::new(context.child("application"), node.clone(), genesis, me, ns, blocks);
    app.rejections = settings.rejections.clone();
    app.byzantine = settings.byzantine;
    app.empty_block_delay = settings.empty_block_delay;
    app.reporter = settings.reporter.clone();
    app.identity = settings.identity.clone();
    app.shares = epoch::ShareStore(settings.share_dir.clone());
    app.peers_hook = settings.peers_hook.clone();
    let (gossip, gossiped) = tokio::sync::mpsc::unbounded_channel();
    // What clients sent before the engine started goes out first.
    for tx in node.with_mempool(|mp| mp.pending()) {
        let _ = gossip.send(tx);
    }
    node.set_gossip(gossip);
    app.gossip = Some(gossiped);
    {
        let schemes = app.schemes.clone();
        node.set_evidence_check(crate::node::EvidenceCheck(std::sync::Arc::new(move |f| {
            let scheme = schemes.lock().ok().and_then(|m| m.get(&f.epoch).cloned());
            match scheme {
                Some(scheme) => evidence::verify_fault(&scheme, Epoch::new(f.epoch), f),
                None => Err(format!("consensus epoch {} is not known to this node", f.epoch)),
            }
        })));
    }
    let (vote_mux, votes) = Muxer::new(context.child("vote_mux"), votes.0, votes.1);
    let (cert_mux, certificates) =
        Muxer::new(context.child("certificate_mux"), certificates.0, certificates.1);
    let (resolver_mux, resolver) =
        Muxer::new(context.child("resolver_mux"), resolver.0, resolver.1);
    vote_mux.start();
    cert_mux.start();
    resolver_mux.start();
    let engines = context.child("engines");
    let nz = |n: usize| NonZeroUsize::new(n).expect("nonzero");
    app.starter = Some(Box::new(move |epoch: Epoch, scheme: Scheme, genesis: Digest| {
        let (mut votes, mut certificates, mut resolver) =
            (votes.clone(), certificates.clone(), resolver.clone());
        let context = engines.child("engine").with_attribute("epoch", epoch.get());
        let blocker = blocker.clone();
        let mailbox = mailbox.clone();
        let settings = settings.clone();
        Box::pin(async move {
            let (v, c, r) = (
                votes.register(epoch.get()).await,
                certificates.register(epoch.get()).await,
                resolver.register(epoch.get()).await,
            );
            let (Ok(v), Ok(c), Ok(r)) = (v, c, r) else {
                tracing::error!(epoch = epoch.get(), "could not open the epoch's channels");
                return context.spawn(|_| async {});
            };
            // Epoch 0 keeps the journal partition of a single-epoch engine.
            let partition = if epoch.get() == 0 {
                settings.partition.clone()
            } else {
                format!("{}-e{}", settings.partition, epoch.get())
            };
            let cfg = Config {
                scheme,
                elector: RoundRobin::<commonware_cryptography::Sha256>::default(),
                blocker,
                automaton: mailbox.clone(),
                relay: mailbox.clone(),
                reporter: mailbox,
                strategy: commonware_parallel::Sequential,
                partition,
                mailbox_size: nz(1024),
                epoch,
                floor: Floor::Genesis(genesis),
                leader_timeout: settings.leader_timeout,
                certification_timeout: settings.certification_timeout,
                timeout_retry: settings.timeout_retry,
                fetch_timeout: commonware_utils::NonZeroDuration::new(
                    std::time::Duration::from_secs(1),
                )
                .expect("nonzero"),
                fetch_retry_delay: std::time::Duration::from_millis(100),
                view_retention: ViewDelta::new(10),
                skip: SkipPolicy::Enabled {
                    timeout: settings.timeout_retry * 2,
                    budget: SkipBudget::Participants,
                },
                replay_buffer: nz(1 << 20),
                write_buffer: nz(1 << 20),
                page_cache: commonware_runtime::buffer::paged::CacheRef::new(
                    NonZeroU16::new(1024).expect("nonzero"),
                    nz(10),
                ),
                forward: ForwardPolicy::Disabled,
                track_historical_votes: false,
            };
            tracing::info!(epoch = epoch.get(), "starting the epoch's consensus engine");
            Engine::new(context.child("simplex"), cfg).start(v, c, r)
        })
    }));
    app.start()
}

/// A validator committee from a trusted dealer: identity keys and threshold shares.
pub struct Committee {
    /// Identity private keys, in committee order.
    pub keys: Vec<commonware_cryptography::ed25519::PrivateKey>,
    /// Identity public keys, in committee order (sorted).
    pub participants: Vec<ValidatorKey>,
    /// Each validator's signing scheme (its share of the group key), in committee order.
    pub schemes: Vec<Scheme>,
    /// The group's public polynomial (its constant term is the group key).
    pub polynomial: commonware_cryptography::bls12381::primitives::sharing::Sharing<MinSig>,
    /// Each validator's secret share, in committee order.
    pub shares: Vec<commonware_cryptography::bls12381::primitives::group::Share>,
    /// The dealing's public output (what the first resharing round starts from).
    pub output: epoch::Output,
}

impl Committee {
    /// Validator `i`'s view of the committee (with its share).
    pub fn member(&self, i: usize) -> epoch::EpochCommittee {
        epoch::EpochCommittee {
            round: None,
            output: self.output.clone(),
            share: self.shares.get(i).cloned(),
        }
    }
}

impl std::fmt::Debug for Committee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committee").field("participants", &self.participants).finish()
    }
}

/// Deals a committee of `n` validators with a trusted dealer (`rng` is the dealer's
/// randomness): ed25519 identities and BLS12-381 threshold shares (quorum 2f+1).
/// A distributed key generation (commonware's DKG) replaces the dealer later.
pub fn deal_committee(
    mut rng: impl rand_core_cw::CryptoRng,
    namespace: &[u8],
    n: u32,
) -> Committee {
    use commonware_cryptography::{
        bls12381::{dkg::feldman_desmedt::deal, primitives::sharing::Mode},
        ed25519::PrivateKey,
        Signer,
    };
    use commonware_math::algebra::Random;
    use commonware_utils::{ordered::Set, N3f1};
    let mut keys: Vec<PrivateKey> = (0..n).map(|_| PrivateKey::random(&mut rng)).collect();
    keys.sort_by_key(|k| k.public_key());
    let participants: Vec<ValidatorKey> = keys.iter().map(|k| k.public_key()).collect();
    let set = Set::from_iter_dedup(participants.iter().cloned());
    assert_eq!(set.len(), participants.len(), "identity keys must be distinct");
    let (output, shares) = deal::<MinSig, _, N3f1>(&mut rng, Mode::NonZeroCounter, set.clone())
        .expect("dealing to a non-empty committee");
    let polynomial = output.public().clone();
    let shares: Vec<_> = participants
        .iter()
        .map(|pk| shares.get_value(pk).expect("a share per participant").clone())
        .collect();
    let schemes = shares
        .iter()
        .map(|share| {
            Scheme::signer(namespace, set.clone(), polynomial.clone(), share.clone())
                .expect("the share matches the polynomial")
        })
        .collect();
    Committee { keys, participants, schemes, polynomial, shares, output }
}
