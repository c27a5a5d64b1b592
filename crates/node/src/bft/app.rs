//! The application the simplex engine drives: proposes, verifies, relays and applies blocks.

use super::{
    digest_of, genesis_seed, hash_of, proposer_address, seed_hash, Digest, Scheme, Seed,
    ValidatorKey, Wire,
};
use crate::node::Node;
use commonware_actor::Feedback;
use commonware_codec::{DecodeExt, Encode};
use commonware_consensus::{
    simplex::{types::Activity, types::Context, Plan},
    types::{Epoch, Round, View},
    Automaton, CertifiableAutomaton, Epochable, Relay, Reporter,
};
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{Clock, Spawner, Supervisor};
use flock_ledger::{Block, Header, SeedProof};
use flock_primitives::{codec, Hash, Height};
use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::sync::{mpsc, oneshot};

/// How far ahead of the local clock a block time may be before its verification waits.
const MAX_CLOCK_SKEW_MS: u64 = 5_000;
/// How often pending work is re-checked when nothing arrives.
const TICK: Duration = Duration::from_millis(50);
/// How long before a missing block is asked for again.
const REQUEST_RETRY: Duration = Duration::from_millis(500);
/// Unfinalized blocks held at most (a peer cannot make a node hold more).
const MAX_PENDING_BLOCKS: usize = 4_096;
/// Stored blocks indexed by hash at startup (served to peers that catch up).
const MAX_INDEXED_BLOCKS: u64 = 200_000;
/// Blocks held while catching up (each one asked for by hash on a finalized chain).
const MAX_CATCH_UP_BLOCKS: usize = 1_000_000;
/// Offenders with a fault waiting to be reported, at most.
const MAX_PENDING_FAULTS: usize = 1_024;
/// Blocks between two attempts to report a fault that has not landed.
const FAULT_RETRY_BLOCKS: u64 = 10;
/// Blocks after which a fault whose evidence never lands is dropped.
const FAULT_GIVE_UP_BLOCKS: u64 = 10_000;
/// Most transactions in one gossip message.
const MAX_GOSSIP_TXS: usize = 1_024;
/// Nothing committed for this long: ask peers for their latest finalization.
const TIP_SYNC_AFTER: Duration = Duration::from_secs(3);
/// Largest finalization certificate accepted from a peer.
const MAX_PROOF_BYTES: usize = 64 * 1024;
/// Largest block message accepted from a peer.
const MAX_BLOCK_BYTES: usize = 64 << 20;

type Ctx = Context<Digest, ValidatorKey>;

/// What the engine (and the reporter) ask of the application.
enum Message {
    Propose { context: Ctx, response: oneshot::Sender<Digest> },
    Verify { context: Ctx, payload: Digest, response: oneshot::Sender<bool> },
    Broadcast { payload: Digest, plan: Plan<ValidatorKey> },
    Finalized { round: Round, payload: Digest, seed: Option<Seed>, proof: Vec<u8> },
    Seed { round: Round, seed: Seed },
    Fault(Box<Activity<Scheme, Digest>>),
}

/// The engine's handle on the application: [`Automaton`], [`Relay`] and [`Reporter`] at once.
#[derive(Clone, Debug)]
pub struct Mailbox {
    sender: mpsc::UnboundedSender<Message>,
}

impl Mailbox {
    fn send(&self, m: Message) -> Feedback {
        if self.sender.send(m).is_ok() {
            Feedback::Ok
        } else {
            Feedback::Closed
        }
    }
}

impl Automaton for Mailbox {
    type Context = Ctx;
    type Digest = Digest;

    async fn propose(&mut self, context: Ctx) -> oneshot::Receiver<Digest> {
        let (response, rx) = oneshot::channel();
        self.send(Message::Propose { context, response });
        rx
    }

    async fn verify(&mut self, context: Ctx, payload: Digest) -> oneshot::Receiver<bool> {
        let (response, rx) = oneshot::channel();
        self.send(Message::Verify { context, payload, response });
        rx
    }
}

// Certification: the default (certify every notarized payload). Execution is deferred to
// finalization, and verification already dry-ran the block on its committed parent.
impl CertifiableAutomaton for Mailbox {}

impl Relay for Mailbox {
    type Digest = Digest;
    type PublicKey = ValidatorKey;
    type Plan = Plan<ValidatorKey>;

    fn broadcast(&mut self, payload: Digest, plan: Plan<ValidatorKey>) -> Feedback {
        self.send(Message::Broadcast { payload, plan })
    }
}

impl Reporter for Mailbox {
    type Activity = Activity<Scheme, Digest>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        match activity {
            Activity::Finalization(f) => {
                let seed =
                    f.certificate.get().map(|c| Seed::new(f.proposal.round, c.seed_signature));
                self.send(Message::Finalized {
                    round: f.proposal.round,
                    payload: f.proposal.payload,
                    seed,
                    proof: f.encode().to_vec(),
                })
            }
            Activity::Notarization(n) | Activity::Certification(n) => {
                match n.certificate.get().map(|c| Seed::new(n.proposal.round, c.seed_signature)) {
                    Some(seed) => self.send(Message::Seed { round: n.proposal.round, seed }),
                    None => Feedback::Ok,
                }
            }
            a @ (Activity::ConflictingNotarize(_)
            | Activity::ConflictingFinalize(_)
            | Activity::NullifyFinalize(_)) => self.send(Message::Fault(Box::new(a))),
            _ => Feedback::Ok,
        }
    }
}

/// Starts the engine of an epoch with its scheme, on the given genesis payload.
pub type StartEngine = Box<
    dyn FnMut(
            Epoch,
            Scheme,
            Digest,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = commonware_runtime::Handle<()>> + Send>,
        > + Send,
>;

/// Told, at the start of every epoch, the identity keys the node must reach (the committee
/// and the next round's players) with their registered endpoints (if any).
pub type PeersHook = std::sync::Arc<dyn Fn(u64, Vec<(ValidatorKey, Option<String>)>) + Send + Sync>;

/// The application actor (one per validator). Start it with [`Application::start`].
pub struct Application<E, S, R> {
    context: E,
    node: Node,
    scheme: Scheme,
    epoch: Epoch,
    namespace: Vec<u8>,
    /// Blocks per epoch (the ledger's `epoch_length`).
    epoch_length: u64,
    /// This validator's identity (deals and plays in resharing rounds; none: an observer).
    pub(crate) identity: Option<commonware_cryptography::ed25519::PrivateKey>,
    /// The committee of the current epoch.
    committee: super::epoch::EpochCommittee,
    /// The running resharing round.
    dkg: Option<super::epoch::DkgRound>,
    /// Where received shares are kept.
    pub(crate) shares: super::epoch::ShareStore,
    /// The seed of the current epoch's first block.
    epoch_seed: Hash,
    /// Signing schemes by epoch (shared with the node's evidence check).
    pub(crate) schemes: std::sync::Arc<std::sync::Mutex<BTreeMap<u64, Scheme>>>,
    /// Starts an epoch's engine.
    pub(crate) starter: Option<StartEngine>,
    /// Running engines by epoch (the previous epoch's keeps running a while for laggards).
    engines: BTreeMap<u64, commonware_runtime::Handle<()>>,
    /// The current epoch's engine is to be started.
    start_pending: bool,
    /// See [`PeersHook`].
    pub(crate) peers_hook: Option<PeersHook>,
    /// Checks finalization certificates of any epoch (the group key survives every
    /// resharing).
    group: Scheme,
    /// The latest finalization seen (by (epoch, view)), served to peers that fell behind.
    latest_proof: Option<((u64, u64), Vec<u8>)>,
    /// When a block last committed here.
    last_commit: SystemTime,
    /// When peers were last asked for their latest finalization.
    tip_asked: Option<SystemTime>,
    /// Transactions clients sent to this node, to gossip.
    pub(crate) gossip: Option<mpsc::UnboundedReceiver<flock_ledger::SignedTx>>,
    me: ValidatorKey,
    mailbox: mpsc::UnboundedReceiver<Message>,
    sender: S,
    receiver: R,
    /// Blocks above the committed tip, by hash (proposed here or received).
    blocks: HashMap<Hash, Block>,
    /// Committed blocks seen by this process, hash → height (to serve and to spot stale work).
    committed: HashMap<Hash, Height>,
    /// Engine seeds by (epoch, view).
    seeds: BTreeMap<(u64, u64), Seed>,
    /// Finalized payloads not yet applied, by (epoch, view).
    finalized: BTreeMap<(u64, u64), Hash>,
    proposes: Vec<(Ctx, oneshot::Sender<Digest>)>,
    verifies: Vec<(Ctx, Digest, oneshot::Sender<bool>)>,
    /// Blocks this node proposed that are not committed yet (their transactions go back to the
    /// mempool if another block takes their height).
    own: Vec<Block>,
    requested: HashMap<Hash, SystemTime>,
    faults: u64,
    /// Where rejection reasons go (see [`super::EngineSettings::rejections`]).
    pub(crate) rejections: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
    /// Fault injection (tests): how this proposer spoils its blocks.
    pub(crate) byzantine: Option<super::Byzantine>,
    /// See [`super::EngineSettings::empty_block_delay`].
    pub(crate) empty_block_delay: Duration,
    /// An unfinished walk from a finalized block back to the committed tip.
    walk: Option<Walk>,
    /// The key that signs consensus evidence (this validator's identity, as a flock account).
    pub(crate) reporter: Option<flock_primitives::Keypair>,
    /// Verified faults to report, by offender.
    faults_pending: BTreeMap<flock_primitives::Address, PendingFault>,
}

/// A verified fault waiting for its evidence to land.
struct PendingFault {
    fault: flock_ledger::consensus::ConsensusFault,
    /// Height when it was queued.
    since: Option<u64>,
    /// Height of the last submission.
    last: Option<u64>,
}

/// What building on a block needs, and whether it can be had yet.
enum After {
    /// The ledger after the parent (the committed ledger, or a copy with the notarized but
    /// unfinalized blocks from the tip up to the parent applied) and the parent's header facts.
    Ready { ledger: Box<flock_ledger::Ledger>, root: Hash, height: Height, time_ms: u64 },
    /// A block between the tip and the parent is missing here (ask peers for it).
    Missing(Hash),
    /// The parent cannot be built on.
    Invalid(String),
}

/// A verification's verdict.
enum Check {
    Valid,
    Invalid(String),
    /// Not yet: a missing block (ask peers for it) or a block time ahead of our clock.
    Wait(Option<Hash>),
}

/// Where the walk from a finalized block back to the tip stopped for a missing block.
struct Walk {
    finalized: Hash,
    tip: Hash,
    /// Hashes from the finalized block down, all held in `blocks`.
    path: Vec<Hash>,
    /// The missing block (asked for).
    next: Hash,
}

impl<E, S, R> Application<E, S, R>
where
    E: Clock + Spawner + Supervisor + rand_core_cw::CryptoRng + Send + 'static,
    S: Sender<PublicKey = ValidatorKey>,
    R: Receiver<PublicKey = ValidatorKey>,
{
    /// An application over `node`, relaying blocks on `(sender, receiver)`
    /// ([`super::BLOCK_CHANNEL`]). `genesis` is the genesis committee (with this validator's
    /// share, if any); `me` is this validator; `namespace` the chain's signing namespace.
    pub fn new(
        context: E,
        node: Node,
        genesis: super::epoch::EpochCommittee,
        me: ValidatorKey,
        namespace: Vec<u8>,
        (sender, receiver): (S, R),
    ) -> (Self, Mailbox) {
        let epoch_length = node.with_chain(|c| c.ledger().params().epoch_length).max(1);
        let scheme = genesis.scheme(&namespace);
        let group = Scheme::certificate_verifier(&namespace, *genesis.output.public().public());
        let epoch = Epoch::new(0);
        let started = context.current();
        let (tx, rx) = mpsc::unbounded_channel();
        // Index the stored chain (the most recent heights) so this node serves blocks it
        // committed before a restart to peers catching up.
        let tip = node.tip();
        let mut committed: HashMap<Hash, Height> = node.with_chain(|c| {
            let from = tip.height.0.saturating_sub(MAX_INDEXED_BLOCKS).max(1);
            (from..=tip.height.0)
                .filter_map(|h| Some((c.store().block_hash(Height(h)).ok().flatten()?, Height(h))))
                .collect()
        });
        committed.insert(tip.block_hash, tip.height);
        let app = Self {
            context,
            node,
            scheme,
            epoch,
            namespace,
            epoch_length,
            identity: None,
            committee: genesis,
            dkg: None,
            shares: super::epoch::ShareStore(None),
            epoch_seed: Hash::ZERO,
            schemes: Default::default(),
            starter: None,
            engines: BTreeMap::new(),
            start_pending: true,
            peers_hook: None,
            group,
            latest_proof: None,
            last_commit: started,
            tip_asked: None,
            gossip: None,
            me,
            mailbox: rx,
            sender,
            receiver,
            blocks: HashMap::new(),
            committed,
            seeds: BTreeMap::new(),
            finalized: BTreeMap::new(),
            proposes: Vec::new(),
            verifies: Vec::new(),
            own: Vec::new(),
            requested: HashMap::new(),
            faults: 0,
            rejections: None,
            byzantine: None,
            empty_block_delay: Duration::ZERO,
            walk: None,
            reporter: None,
            faults_pending: BTreeMap::new(),
        };
        (app, Mailbox { sender: tx })
    }

    /// Runs the actor until the runtime stops (it starts the current epoch's engine).
    pub fn start(mut self) -> commonware_runtime::Handle<()> {
        self.init_epochs();
        let context = self.context.child("actor");
        context.spawn(move |_| self.run())
    }

    /// The epoch a block at `height` belongs to (heights `rL+1 ..= (r+1)L` are epoch `r`).
    fn epoch_of(&self, height: Height) -> u64 {
        height.0.saturating_sub(1) / self.epoch_length
    }

    /// The last height of epoch `epoch`.
    fn last_height(&self, epoch: u64) -> Height {
        Height(epoch.saturating_add(1).saturating_mul(self.epoch_length))
    }

    /// Recomputes the committee of the epoch the committed tip is in from the chain (every
    /// resharing round decided so far, from the logs and validator sets the ledger kept), and
    /// resumes the running round.
    fn init_epochs(&mut self) {
        let tip = self.node.tip();
        let current = tip.height.0 / self.epoch_length;
        for round in 0..current {
            self.decide_round(round, None);
        }
        self.enter_epoch(current);
    }

    /// Decides resharing round `round` from the logs on chain (at the last block of epoch
    /// `round`): the committee of the next epoch.
    fn decide_round(&mut self, round: u64, running: Option<super::epoch::DkgRound>) {
        let (players, logs) = self.node.with_chain(|c| {
            let s = c.ledger().state();
            (s.validator_set(round).map(|set| super::epoch::players_of(&set)), s.dkg_logs(round))
        });
        let Some(players) = players else { return };
        let Some(info) =
            super::epoch::round_info(&self.namespace, round, &self.committee.output, &players)
        else {
            return;
        };
        let player = running.filter(|r| r.round == round).and_then(|r| r.player);
        let live = player.is_some();
        // A player that missed the round (down, or restarted since) still gets its share if
        // every dealer the round selected revealed it in its log (no ack from us): a fresh
        // player finalizes from the reveals; otherwise it only observes.
        let player = player.or_else(|| {
            let id = self.identity.clone()?;
            super::epoch::Player::new(info.clone(), id).ok()
        });
        match super::epoch::decide(&mut self.context, &info, &logs, player) {
            Ok((output, share)) => {
                let me_in = output.players().position(&self.me).is_some();
                let share = match share {
                    Some(s) => {
                        self.shares.save(round, &s);
                        Some(s)
                    }
                    None if me_in => self.shares.load(round),
                    None => None,
                };
                self.shares.prune_before(round);
                if me_in && share.is_none() {
                    tracing::warn!(round, "in the new committee without a share: observing only");
                }
                tracing::info!(
                    round,
                    members = output.players().len(),
                    dealers = output.dealers().len(),
                    logs = logs.len(),
                    member = me_in,
                    live,
                    "resharing round decided: new committee"
                );
                self.committee = super::epoch::EpochCommittee { round: Some(round), output, share };
            }
            Err(reason) => {
                tracing::warn!(
                    round,
                    logs = logs.len(),
                    reason,
                    "resharing round failed; the committee stays"
                );
            }
        }
    }

    /// Enters epoch `epoch` (the committed tip is the last block of the previous one, or
    /// below it at startup): its scheme, its first seed, its resharing round, its engine.
    fn enter_epoch(&mut self, epoch: u64) {
        self.epoch = Epoch::new(epoch);
        self.scheme = self.committee.scheme(&self.namespace);
        if let Ok(mut m) = self.schemes.lock() {
            m.insert(epoch, self.scheme.clone());
            // Evidence names its epoch: keep the schemes of recent ones.
            let keep = m.split_off(&epoch.saturating_sub(16));
            *m = keep;
        }
        self.epoch_seed = if epoch == 0 {
            Hash::ZERO
        } else {
            let last = Height(epoch * self.epoch_length);
            let seed = self
                .node
                .with_chain(|c| c.block(last).ok().flatten().map(|b| b.header.seed))
                .unwrap_or(Hash::ZERO);
            super::epoch::epoch_seed(epoch, &seed)
        };
        // The running round: the current committee deals to the ledger's set of this epoch.
        let (players, dealt, endpoints) = self.node.with_chain(|c| {
            let s = c.ledger().state();
            let players = s.validator_set(epoch).map(|set| super::epoch::players_of(&set));
            let dealt = self.identity.as_ref().is_some_and(|id| {
                use commonware_cryptography::Signer as _;
                s.has_dkg_log(epoch, &proposer_address(&id.public_key()))
            });
            let keys: Vec<ValidatorKey> = self
                .committee
                .members()
                .iter()
                .cloned()
                .chain(players.iter().flatten().cloned())
                .collect();
            let endpoints: Vec<(ValidatorKey, Option<String>)> = keys
                .into_iter()
                .map(|k| {
                    let e = s.consensus_endpoint(&proposer_address(&k)).map(|e| e.endpoint);
                    (k, e)
                })
                .collect();
            (players, dealt, endpoints)
        });
        if let Some(hook) = &self.peers_hook {
            hook(epoch, endpoints);
        }
        self.dkg = None;
        if let (Some(players), Some(identity)) = (players, self.identity.clone()) {
            if let Some(info) =
                super::epoch::round_info(&self.namespace, epoch, &self.committee.output, &players)
            {
                self.dkg = Some(super::epoch::DkgRound::start(
                    epoch,
                    info,
                    &identity,
                    self.committee.share.clone(),
                    dealt,
                ));
            }
        }
        tracing::info!(
            epoch,
            members = self.committee.members().len(),
            member = self.committee.members().position(&self.me).is_some(),
            signer = self.committee.share.is_some(),
            "epoch entered"
        );
        self.start_pending = true;
    }

    /// After the last block of an epoch commits: decides the round, enters the next epoch.
    fn on_boundary(&mut self, height: Height) {
        let ended = self.epoch_of(height);
        let running = self.dkg.take();
        self.decide_round(ended, running);
        // Work of the ended epoch's engine is answered by the epoch rules from now on.
        self.enter_epoch(ended + 1);
    }

    /// Starts the current epoch's engine (and stops those two epochs old).
    async fn start_engine(&mut self) {
        self.start_pending = false;
        let epoch = self.epoch.get();
        if self.engines.contains_key(&epoch) {
            return;
        }
        let Some(starter) = self.starter.as_mut() else { return };
        let genesis = if epoch == 0 {
            self.node.with_chain(|c| c.store().block_hash(Height::GENESIS).ok().flatten())
        } else {
            let last = Height(epoch * self.epoch_length);
            self.node.with_chain(|c| c.store().block_hash(last).ok().flatten())
        };
        let genesis = digest_of(&genesis.unwrap_or(Hash::ZERO));
        let handle = starter(self.epoch, self.scheme.clone(), genesis).await;
        self.engines.insert(epoch, handle);
        let old: Vec<u64> =
            self.engines.range(..epoch.saturating_sub(1)).map(|(e, _)| *e).collect();
        for e in old {
            if let Some(h) = self.engines.remove(&e) {
                h.abort();
            }
        }
    }

    async fn run(mut self) {
        enum Event {
            Message(Message),
            Gossip(flock_ledger::SignedTx),
            Wire(ValidatorKey, Vec<u8>),
            Tick,
            Stop,
        }
        loop {
            let tick = self.context.sleep(TICK);
            let event = tokio::select! {
                biased;
                m = self.mailbox.recv() => m.map_or(Event::Stop, Event::Message),
                Some(tx) = async {
                    match self.gossip.as_mut() {
                        Some(g) => g.recv().await,
                        None => std::future::pending().await,
                    }
                } => Event::Gossip(tx),
                r = self.receiver.recv() => match r {
                    Ok((from, buf)) => Event::Wire(from, buf.as_ref().to_vec()),
                    Err(_) => Event::Stop,
                },
                _ = tick => Event::Tick,
            };
            match event {
                Event::Message(m) => self.handle(m),
                Event::Gossip(tx) => self.gossip_txs(tx),
                Event::Wire(from, bytes) => self.on_wire(from, &bytes),
                Event::Tick => {}
                Event::Stop => break,
            }
            self.progress();
            if self.start_pending {
                self.start_engine().await;
            }
        }
        tracing::debug!("bft application stopped");
    }

    fn handle(&mut self, m: Message) {
        match m {
            Message::Propose { context, response } => self.proposes.push((context, response)),
            Message::Verify { context, payload, response } => {
                self.verifies.push((context, payload, response))
            }
            Message::Broadcast { payload, plan } => {
                let recipients = match plan {
                    Plan::Prepare { .. } | Plan::Propose { .. } => Recipients::All,
                    Plan::Forward { recipients, .. } => recipients,
                };
                if let Some(b) = self.blocks.get(&hash_of(&payload)) {
                    let msg = codec::encode(&Wire::Block(Box::new(b.clone())));
                    let _ = self.sender.send(recipients, msg, false);
                }
            }
            Message::Finalized { round, payload, seed, proof } => {
                tracing::debug!(
                    epoch = round.epoch().get(),
                    view = round.view().get(),
                    "finalization reported"
                );
                let key = (round.epoch().get(), round.view().get());
                if self.latest_proof.as_ref().is_none_or(|(k, _)| *k < key) {
                    self.latest_proof = Some((key, proof));
                }
                if let Some(seed) = seed {
                    self.seeds.insert(key, seed);
                }
                self.finalized.insert(key, hash_of(&payload));
            }
            Message::Seed { round, seed } => {
                self.seeds.insert((round.epoch().get(), round.view().get()), seed);
            }
            Message::Fault(activity) => {
                self.faults += 1;
                let epoch = match activity.as_ref() {
                    Activity::ConflictingNotarize(c) => c.epoch(),
                    Activity::ConflictingFinalize(c) => c.epoch(),
                    Activity::NullifyFinalize(c) => c.epoch(),
                    _ => self.epoch,
                };
                let scheme = self.schemes.lock().ok().and_then(|m| m.get(&epoch.get()).cloned());
                let Some(scheme) = scheme else {
                    tracing::warn!(
                        epoch = epoch.get(),
                        "a consensus fault in an epoch we no longer know"
                    );
                    return;
                };
                match super::evidence::fault_of(&scheme, &activity) {
                    Some(fault) => {
                        let offender = fault.offender_address();
                        tracing::warn!(%offender, kind = %fault.kind, view = fault.view, "consensus fault");
                        // The engine reports conflicts before checking their signatures: queue
                        // only evidence that holds (a forged vote must not crowd out the real
                        // equivocation of the same validator).
                        if let Err(e) = super::evidence::verify_fault(&scheme, epoch, &fault) {
                            tracing::warn!(%offender, error = %e, "a reported fault does not verify; ignored");
                        } else if self.faults_pending.len() < MAX_PENDING_FAULTS {
                            self.faults_pending.entry(offender).or_insert(PendingFault {
                                fault,
                                since: None,
                                last: None,
                            });
                        }
                    }
                    None => tracing::warn!("a consensus fault by a signer outside the committee"),
                }
            }
        }
    }

    fn on_wire(&mut self, from: ValidatorKey, bytes: &[u8]) {
        let Ok(msg) = codec::decode_bounded::<Wire>("bft wire", bytes, MAX_BLOCK_BYTES) else {
            tracing::debug!(?from, "undecodable block message");
            return;
        };
        match msg {
            Wire::Block(b) => {
                let hash = b.hash();
                let tip = self.node.tip();
                if b.header.height <= tip.height && self.requested.remove(&hash).is_some() {
                    // A block we asked for that is already in our store: a finalization
                    // replayed from the engine's journal after a restart (applied in our
                    // previous life). Remember it as committed so it is skipped.
                    let height = b.header.height;
                    let stored =
                        self.node.with_chain(|c| c.store().block_hash(height).ok().flatten());
                    if stored == Some(hash) {
                        self.committed.insert(hash, height);
                    }
                    return;
                }
                // Unsolicited blocks are capped; blocks we asked for by hash (walking back from
                // a finalized block while catching up) only by the larger catch-up bound.
                let room = if self.requested.contains_key(&hash) {
                    self.blocks.len() < MAX_CATCH_UP_BLOCKS
                } else {
                    self.blocks.len() < MAX_PENDING_BLOCKS
                };
                if b.header.height > tip.height && room && !self.blocks.contains_key(&hash) {
                    self.requested.remove(&hash);
                    self.blocks.insert(hash, *b);
                }
            }
            Wire::Deal { round, public, private } => self.on_deal(from, round, &public, &private),
            Wire::Ack { round, ack } => {
                let Some(dkg) = self.dkg.as_mut().filter(|d| d.round == round) else { return };
                let Some(side) = dkg.dealer.as_mut() else { return };
                let (Some(dealer), Some(ack)) = (side.dealer.as_mut(), super::epoch::dec_ack(&ack))
                else {
                    return;
                };
                match dealer.receive_player_ack(from.clone(), ack) {
                    Ok(()) => {
                        side.acked.insert(from);
                    }
                    Err(e) => tracing::debug!(round, error = ?e, "ack refused"),
                }
            }
            Wire::Txs(txs) => {
                if txs.len() > MAX_GOSSIP_TXS {
                    return;
                }
                for tx in txs {
                    // Refusals are expected (already held, committed, a nonce gap here).
                    let _ = self.node.submit_from_peer(tx);
                }
            }
            Wire::TipRequest => {
                if let Some((_, proof)) = &self.latest_proof {
                    let msg = codec::encode(&Wire::Finalization { proof: proof.clone() });
                    let _ = self.sender.send(Recipients::One(from), msg, false);
                }
            }
            Wire::Finalization { proof } => self.on_finalization_proof(&proof),
            Wire::Request(hash) => {
                tracing::debug!(%hash, "block request from a peer");
                let block = match self.blocks.get(&hash) {
                    Some(b) => Some(b.clone()),
                    None => match self.committed.get(&hash) {
                        Some(h) => self.node.with_chain(|c| c.block(*h).ok().flatten()),
                        None => None,
                    },
                };
                if let Some(b) = block {
                    let msg = codec::encode(&Wire::Block(Box::new(b)));
                    let _ = self.sender.send(Recipients::One(from), msg, false);
                }
            }
        }
    }

    /// Turns pending faults into evidence transactions in the mempool: one per offender until
    /// the offender is tombstoned (the first evidence to land slashes it), tried again every
    /// [`FAULT_RETRY_BLOCKS`] blocks while it does not land (evidence stays valid: a fault seen
    /// before the offender's stake landed is reported once it has).
    fn report_faults(&mut self) {
        if self.faults_pending.is_empty() {
            return;
        }
        let Some(key) = self.reporter.clone() else {
            for offender in std::mem::take(&mut self.faults_pending).into_keys() {
                tracing::warn!(%offender, "no reporter key: the fault is not reported on chain");
            }
            return;
        };
        let tip = self.node.tip();
        let tombstoned = |a: &flock_primitives::Address| {
            self.node.with_chain(|c| c.ledger().state().tombstone(a).is_some())
        };
        let pending = std::mem::take(&mut self.faults_pending);
        for (offender, mut p) in pending {
            if tombstoned(&offender) {
                continue;
            }
            let since = *p.since.get_or_insert(tip.height.0);
            if tip.height.0 > since + FAULT_GIVE_UP_BLOCKS {
                tracing::warn!(%offender, "consensus evidence never landed; giving up");
                continue;
            }
            // Wait between attempts, and while a transaction of ours is still in the mempool.
            let ours_pending = self.node.with_mempool(|mp| mp.next_nonce(&key.address()))
                > self.node.with_chain(|c| c.ledger().state().account(&key.address()).nonce);
            if ours_pending || p.last.is_some_and(|h| tip.height.0 < h + FAULT_RETRY_BLOCKS) {
                self.faults_pending.insert(offender, p);
                continue;
            }
            let nonce = self.node.with_mempool(|mp| mp.next_nonce(&key.address()));
            let tx = flock_ledger::Transaction {
                chain_id: tip.chain_id.clone(),
                signer: key.public(),
                nonce,
                kind: flock_ledger::TxKind::ConsensusEvidence { fault: Box::new(p.fault.clone()) },
            }
            .sign(&key);
            match self.node.submit(tx) {
                Ok(hash) => tracing::info!(%offender, tx = %hash, "consensus evidence submitted"),
                Err(e) => {
                    tracing::info!(%offender, error = %e, "consensus evidence not admitted yet")
                }
            }
            p.last = Some(tip.height.0);
            self.faults_pending.insert(offender, p);
        }
    }

    fn request(&mut self, hash: Hash) {
        let now = self.context.current();
        if let Some(at) = self.requested.get(&hash) {
            if now.duration_since(*at).unwrap_or_default() < REQUEST_RETRY {
                return;
            }
        }
        self.requested.insert(hash, now);
        tracing::debug!(%hash, "block requested from peers");
        let msg = codec::encode(&Wire::Request(hash));
        let _ = self.sender.send(Recipients::All, msg, false);
    }

    fn now_ms(&self) -> u64 {
        self.context.current().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }

    /// Sends the transactions clients sent us (this one and any others waiting) to every
    /// peer, in one message.
    fn gossip_txs(&mut self, first: flock_ledger::SignedTx) {
        let mut txs = vec![first];
        if let Some(g) = self.gossip.as_mut() {
            while txs.len() < MAX_GOSSIP_TXS {
                match g.try_recv() {
                    Ok(tx) => txs.push(tx),
                    Err(_) => break,
                }
            }
        }
        let _ = self.sender.send(Recipients::All, codec::encode(&Wire::Txs(txs)), false);
    }

    /// A peer's latest finalization (asked for when nothing commits here): if it is newer
    /// than ours and its certificate holds under the group key, its block is treated as
    /// finalized, and the walk back to our tip fetches the blocks in between, across epoch
    /// boundaries (each one decided from the chain as it commits).
    fn on_finalization_proof(&mut self, proof: &[u8]) {
        use commonware_codec::Decode as _;
        type Fin = commonware_consensus::simplex::types::Finalization<Scheme, Digest>;
        if proof.len() > MAX_PROOF_BYTES {
            return;
        }
        let Ok(f) = Fin::decode_cfg(commonware_codec::Copying(proof), &()) else {
            tracing::debug!("undecodable finalization from a peer");
            return;
        };
        let key = (f.round().epoch().get(), f.round().view().get());
        let hash = hash_of(&f.proposal.payload);
        if self.latest_proof.as_ref().is_some_and(|(k, _)| *k >= key)
            || self.finalized.contains_key(&key)
            || self.committed.contains_key(&hash)
        {
            return;
        }
        if !f.verify(&mut self.context, &self.group, &commonware_parallel::Sequential) {
            tracing::warn!(epoch = key.0, view = key.1, "a peer's finalization does not verify");
            return;
        }
        tracing::info!(epoch = key.0, view = key.1, %hash, "catching up to a peer's finalization");
        self.latest_proof = Some((key, proof.to_vec()));
        self.finalized.insert(key, hash);
    }

    /// Asks peers for their latest finalization when nothing committed here for a while (a
    /// node that missed an epoch boundary gets no certificate from the new epoch's engine).
    fn ask_tip(&mut self) {
        let now = self.context.current();
        let idle = now.duration_since(self.last_commit).unwrap_or_default();
        let asked = self.tip_asked.map(|t| now.duration_since(t).unwrap_or_default());
        if idle >= TIP_SYNC_AFTER && asked.is_none_or(|a| a >= TIP_SYNC_AFTER) {
            self.tip_asked = Some(now);
            let _ = self.sender.send(Recipients::All, codec::encode(&Wire::TipRequest), false);
        }
    }

    /// A dealing for us as a player: check it, ack it (again, if the dealer repeats it).
    fn on_deal(&mut self, from: ValidatorKey, round: u64, public: &[u8], private: &[u8]) {
        let Some(dkg) = self.dkg.as_mut().filter(|d| d.round == round) else { return };
        let Some(player) = dkg.player.as_mut() else { return };
        let ack = match (super::epoch::dec_pub(public), super::epoch::dec_priv(private)) {
            (Some(public), Some(private)) => {
                match player.dealer_message::<commonware_utils::N3f1>(from.clone(), public, private)
                {
                    Ok(Some(ack)) => {
                        dkg.acks.insert(from.clone(), ack.clone());
                        Some(ack)
                    }
                    Ok(None) => dkg.acks.get(&from).cloned(),
                    Err(e) => {
                        tracing::warn!(round, dealer = %proposer_address(&from), error = ?e, "dealing refused");
                        None
                    }
                }
            }
            _ => None,
        };
        if let Some(ack) = ack {
            let msg = codec::encode(&Wire::Ack { round, ack: super::epoch::enc(&ack) });
            let _ = self.sender.send(Recipients::One(from), msg, false);
        }
    }

    /// Checks a dealer-log transaction against the running resharing round (the ledger
    /// bounds and stores logs; their signatures and dealers are checked here).
    fn check_dkg_tx(&self, tx: &flock_ledger::SignedTx) -> Result<(), String> {
        let flock_ledger::TxKind::DkgLog { round, log } = &tx.tx.kind else { return Ok(()) };
        let Some(dkg) = self.dkg.as_ref().filter(|d| d.round == *round) else {
            return Err(format!("no resharing round {round} is running"));
        };
        super::epoch::check_log(&dkg.info, &tx.tx.sender(), log)
    }

    /// Drives our dealing: sends it to the players that have not acked (again every
    /// second), signs the log once all acked or at mid-epoch, and posts it until it lands.
    fn dkg_progress(&mut self) {
        let tip = self.node.tip();
        let now = self.context.current();
        let mid = Height(self.epoch.get() * self.epoch_length + self.epoch_length / 2);
        let me = self.me.clone();
        let Some(dkg) = self.dkg.as_mut() else { return };
        let round = dkg.round;
        let Some(side) = dkg.dealer.as_mut() else { return };
        if side.dealer.is_some() {
            let resend = side.sent.is_none_or(|t| {
                now.duration_since(t).unwrap_or_default() >= Duration::from_secs(1)
            });
            if resend {
                side.sent = Some(now);
                let public = super::epoch::enc(&side.public);
                let mut mine = None;
                for (player, private) in &side.private {
                    if side.acked.contains(player) {
                        continue;
                    }
                    if *player == me {
                        mine = Some(private.clone());
                        continue;
                    }
                    let msg = codec::encode(&Wire::Deal {
                        round,
                        public: public.clone(),
                        private: super::epoch::enc(private),
                    });
                    let _ = self.sender.send(Recipients::One(player.clone()), msg, false);
                }
                if let Some(private) = mine {
                    // Our own share: played locally.
                    let private = super::epoch::enc(&private);
                    self.on_deal(me.clone(), round, &public, &private);
                    let ack = self.dkg.as_ref().and_then(|d| d.acks.get(&me).cloned());
                    let Some(side) = self.dkg.as_mut().and_then(|d| d.dealer.as_mut()) else {
                        return;
                    };
                    let side_ack = ack.and_then(|a| {
                        side.dealer.as_mut().map(|d| d.receive_player_ack(me.clone(), a).is_ok())
                    });
                    if side_ack == Some(true) {
                        side.acked.insert(me);
                    }
                }
            }
            let Some(side) = self.dkg.as_mut().and_then(|d| d.dealer.as_mut()) else { return };
            let all = side.acked.len() == side.private.len();
            if all || tip.height >= mid {
                if let Some(dealer) = side.dealer.take() {
                    let log = dealer.finalize::<commonware_utils::N3f1>();
                    side.log = Some(super::epoch::enc(&log));
                    tracing::info!(
                        round,
                        acked = side.acked.len(),
                        players = side.private.len(),
                        "dealer log signed"
                    );
                }
            }
        }
        self.submit_dkg_log();
    }

    /// Posts our signed dealer log (again every few blocks until it lands).
    fn submit_dkg_log(&mut self) {
        let Some(key) = self.reporter.clone() else { return };
        let tip = self.node.tip();
        let Some(dkg) = self.dkg.as_mut() else { return };
        let round = dkg.round;
        let Some(side) = dkg.dealer.as_mut() else { return };
        let Some(log) = side.log.clone() else { return };
        let landed =
            self.node.with_chain(|c| c.ledger().state().has_dkg_log(round, &key.address()));
        if landed {
            side.log = None;
            return;
        }
        if side.submitted.is_some_and(|h| tip.height.0 < h + FAULT_RETRY_BLOCKS) {
            return;
        }
        let ours_pending = self.node.with_mempool(|mp| mp.next_nonce(&key.address()))
            > self.node.with_chain(|c| c.ledger().state().account(&key.address()).nonce);
        if ours_pending && side.submitted.is_some() {
            return;
        }
        side.submitted = Some(tip.height.0);
        let nonce = self.node.with_mempool(|mp| mp.next_nonce(&key.address()));
        let tx = flock_ledger::Transaction {
            chain_id: tip.chain_id,
            signer: key.public(),
            nonce,
            kind: flock_ledger::TxKind::DkgLog { round, log },
        }
        .sign(&key);
        match self.node.submit(tx) {
            Ok(hash) => tracing::info!(round, tx = %hash, "dealer log submitted"),
            Err(e) => tracing::warn!(round, error = %e, "dealer log not admitted"),
        }
    }

    fn progress(&mut self) {
        self.apply_finalized();
        self.ask_tip();
        self.dkg_progress();
        self.report_faults();
        self.serve_proposes();
        self.serve_verifies();
    }

    /// Applies finalized blocks (and their not-yet-applied ancestors) in order.
    fn apply_finalized(&mut self) {
        while let Some((&view, &hash)) = self.finalized.iter().next() {
            if self.committed.contains_key(&hash) {
                self.finalized.remove(&view);
                continue;
            }
            let tip = self.node.tip();
            // Resume an unfinished walk towards the tip (catching up walks back one fetched
            // block at a time: restarting from the top each time would be quadratic).
            let (mut path, mut cur) = match self.walk.take() {
                Some(w) if w.finalized == hash && w.tip == tip.block_hash => (w.path, w.next),
                _ => (Vec::new(), hash),
            };
            while cur != tip.block_hash {
                match self.blocks.get(&cur) {
                    Some(b) if b.header.height > tip.height => {
                        path.push(cur);
                        cur = b.header.parent_hash;
                    }
                    Some(_) => {
                        tracing::error!(%hash, "finalized block does not extend the committed chain");
                        self.finalized.remove(&view);
                        return;
                    }
                    None => {
                        self.request(cur);
                        self.walk =
                            Some(Walk { finalized: hash, tip: tip.block_hash, path, next: cur });
                        return;
                    }
                }
            }
            for h in path.into_iter().rev() {
                let Some(block) = self.blocks.remove(&h) else { return };
                // The commit re-bases the mempool on the committed state, which knows nothing
                // of the transactions in our own proposals that are not committed: those of a
                // proposal for this height that lost, and those of proposals above it, still
                // in flight on unfinalized parents. They go back to the front of the mempool,
                // in height order, so their successors (admitted on top of them) are not
                // dropped as nonce gaps. One that commits later is dropped from the mempool
                // then (its nonce is used); a proposal built on it leaves it out.
                let height = block.header.height;
                let mut back: Vec<&Block> = self
                    .own
                    .iter()
                    .filter(|b| {
                        (b.header.height == height && b.hash() != h) || b.header.height > height
                    })
                    .collect();
                back.sort_by_key(|b| b.header.height);
                let back: Vec<_> = back.iter().flat_map(|b| b.txs.iter().cloned()).collect();
                self.own.retain(|b| b.header.height != height);
                if !back.is_empty() {
                    self.node.with_mempool(|mp| mp.restore(back));
                }
                match self.node.apply_finalized(&block) {
                    Ok(c) => {
                        self.committed.insert(h, c.info.height);
                        self.last_commit = self.context.current();
                        if c.info.height.0 % self.epoch_length == 0 {
                            self.on_boundary(c.info.height);
                        }
                        tracing::debug!(height = c.info.height.0, txs = c.tx_count, "finalized");
                    }
                    Err(e) => {
                        // Verification dry-ran this block; only a storage failure gets here.
                        tracing::error!(error = %e, "a finalized block failed to apply");
                        self.blocks.insert(h, block);
                        return;
                    }
                }
            }
            self.finalized.remove(&view);
            self.after_commit();
        }
    }

    /// Drops what the new tip made stale.
    fn after_commit(&mut self) {
        let tip = self.node.tip();
        self.blocks.retain(|_, b| b.header.height > tip.height);
        // (Own proposals at committed heights were settled in `apply_finalized`.)
        self.own.retain(|b| b.header.height > tip.height);
        // Seeds are read for parents only: keep a window of the current epoch.
        let epoch = self.epoch.get();
        if let Some((&(_, last), _)) = self.seeds.range((epoch, 0)..).next_back() {
            self.seeds = self.seeds.split_off(&(epoch, last.saturating_sub(1_000)));
        }
        let now = self.context.current();
        self.requested
            .retain(|_, at| now.duration_since(*at).unwrap_or_default() < REQUEST_RETRY * 20);
    }

    /// The ledger and state root after `parent`. The engine asks to build on (and to verify
    /// blocks on) any notarized parent, finalized or not: a view can be notarized and then
    /// nullified without ever being finalized, and the next leader must extend it, since
    /// only a finalized descendant finalizes it. Waiting for its own finalization would stall
    /// the chain for good. So the notarized blocks between the committed tip and `parent`
    /// are executed on a copy of the committed ledger, and their state roots computed without
    /// writing; each one's claimed parent root is checked on the way.
    fn state_after(&self, parent: Hash) -> After {
        let tip = self.node.tip();
        let mut path = Vec::new();
        let mut cur = parent;
        while cur != tip.block_hash {
            if self.committed.contains_key(&cur) {
                return After::Invalid("parent is committed below the tip (a fork)".into());
            }
            match self.blocks.get(&cur) {
                Some(b) if b.header.height > tip.height => {
                    path.push(b);
                    cur = b.header.parent_hash;
                }
                Some(_) => {
                    return After::Invalid("parent does not extend the committed chain".into())
                }
                None => return After::Missing(cur),
            }
        }
        path.reverse();
        self.node.with_chain(|c| {
            let mut ledger = c.ledger().clone();
            let _ = ledger.take_changes();
            let mut changes = Vec::with_capacity(path.len());
            for b in &path {
                if let Err(e) = ledger.apply_block(b) {
                    return After::Invalid(format!(
                        "unfinalized ancestor at height {} does not apply: {e}",
                        b.header.height.0
                    ));
                }
                changes.push(ledger.take_changes());
            }
            let refs: Vec<&[flock_ledger::StateChange]> =
                changes.iter().map(Vec::as_slice).collect();
            let roots = match c.store().speculative_roots(&refs) {
                Ok(r) => r,
                Err(e) => return After::Invalid(format!("state roots of unfinalized blocks: {e}")),
            };
            let mut root = tip.state_root;
            for (b, r) in path.iter().zip(roots) {
                if b.header.parent_state_root != root {
                    return After::Invalid(format!(
                        "unfinalized ancestor at height {} claims parent state root {}, ours is {}",
                        b.header.height.0, b.header.parent_state_root, root
                    ));
                }
                root = r;
            }
            let (height, time_ms) = path
                .last()
                .map_or((tip.height, tip.time_ms), |b| (b.header.height, b.header.time_ms));
            After::Ready { ledger: Box::new(ledger), root, height, time_ms }
        })
    }

    /// The header seed and its proof for a block whose parent is at `parent_view`.
    fn seed_for(&self, chain_id: &str, parent_view: View) -> Option<(Hash, SeedProof)> {
        if parent_view.is_zero() {
            let seed = if self.epoch.get() == 0 { genesis_seed(chain_id) } else { self.epoch_seed };
            return Some((seed, SeedProof::Threshold { signature: Vec::new() }));
        }
        let seed = self.seeds.get(&(self.epoch.get(), parent_view.get()))?;
        let bytes = seed.encode().to_vec();
        Some((seed_hash(&bytes), SeedProof::Threshold { signature: bytes }))
    }

    /// For a proposal request: `Some(true)` re-propose the parent (the last block of the
    /// context's epoch), `Some(false)` decline (an older epoch whose parent is not its last
    /// block), `None` build normally.
    fn reproposal(&self, ctx: &Ctx) -> Option<bool> {
        let epoch = ctx.epoch().get();
        let parent = hash_of(&ctx.parent.1);
        let last = self.last_height(epoch);
        let at_last = self.height_of(&parent) == Some(last);
        if epoch < self.epoch.get() {
            return Some(at_last);
        }
        (epoch == self.epoch.get() && at_last).then_some(true)
    }

    /// The height of a block held here (unfinalized) or committed.
    fn height_of(&self, hash: &Hash) -> Option<Height> {
        self.blocks.get(hash).map(|b| b.header.height).or_else(|| self.committed.get(hash).copied())
    }

    fn serve_proposes(&mut self) {
        let tip = self.node.tip();
        let pending = std::mem::take(&mut self.proposes);
        for (ctx, response) in pending {
            if response.is_closed() {
                continue;
            }
            let parent = hash_of(&ctx.parent.1);
            // Epoch rules: the last block of an epoch is proposed again (until finalized) in
            // place of a block beyond it; an older epoch's engine only does that.
            match self.reproposal(&ctx) {
                Some(true) => {
                    let _ = response.send(ctx.parent.1);
                    continue;
                }
                Some(false) => continue,
                None if ctx.epoch() > self.epoch => {
                    self.proposes.push((ctx, response));
                    continue;
                }
                None => {}
            }
            // The cheap waits first (executing the unfinalized ancestors is not).
            let Some((seed, seed_proof)) = self.seed_for(&tip.chain_id, ctx.parent.0) else {
                self.proposes.push((ctx, response));
                continue;
            };
            let delay = self.empty_block_delay.as_millis() as u64;
            if delay > 0 && self.node.with_mempool(|mp| mp.len()) == 0 {
                let parent_time = if parent == tip.block_hash {
                    Some(tip.time_ms)
                } else {
                    self.blocks.get(&parent).map(|b| b.header.time_ms)
                };
                if parent_time.is_some_and(|t| self.now_ms() < t.saturating_add(delay)) {
                    self.proposes.push((ctx, response));
                    continue;
                }
            }
            let (ledger, root, height, parent_time) = match self.state_after(parent) {
                After::Ready { ledger, root, height, time_ms } => (ledger, root, height, time_ms),
                After::Missing(h) => {
                    self.request(h);
                    self.proposes.push((ctx, response));
                    continue;
                }
                After::Invalid(reason) => {
                    // The proposal could only fork or fail; decline (the view times out).
                    tracing::warn!(%parent, reason, "cannot build on the engine's parent");
                    continue;
                }
            };
            let mut txs = self.node.with_mempool(|mp| mp.take(tip.max_block_txs));
            // Dealer logs that do not hold for the running round are dropped.
            txs.retain(|tx| self.check_dkg_tx(tx).is_ok());
            if parent != tip.block_hash {
                // Mempool transactions were admitted against the committed state: keep those
                // that still apply after the unfinalized ancestors (which may carry some).
                let mut pending_state = (*ledger).clone();
                let (keep, back): (Vec<_>, Vec<_>) =
                    txs.into_iter().partition(|tx| pending_state.apply_pending_tx(tx).is_ok());
                if !back.is_empty() {
                    self.node.with_mempool(|mp| mp.restore(back));
                }
                txs = keep;
            }
            let header = |txs: &[flock_ledger::SignedTx]| Header {
                chain_id: tip.chain_id.clone(),
                height: height.next(),
                parent_hash: parent,
                parent_state_root: root,
                time_ms: self.now_ms().max(parent_time),
                seed,
                seed_proof: seed_proof.clone(),
                proposer: proposer_address(&self.me),
                tx_root: Block::compute_tx_root(txs),
            };
            let mut block = Block { header: header(&txs), txs };
            // A dry run before anyone sees it: a block that does not apply is never proposed.
            if let Err(e) = (*ledger).clone().apply_block(&block) {
                tracing::warn!(error = %e, "own proposal does not apply; proposing an empty block");
                let txs = std::mem::take(&mut block.txs);
                self.node.with_mempool(|mp| mp.restore(txs));
                block = Block { header: header(&[]), txs: Vec::new() };
            }
            // Its transactions go back to the mempool unless this exact block commits.
            self.own.push(block.clone());
            let block = match self.byzantine {
                None => block,
                Some(fault) => self.spoil(block, fault),
            };
            let hash = block.hash();
            self.blocks.insert(hash, block);
            let _ = response.send(digest_of(&hash));
        }
    }

    /// Fault injection: a block the honest validators must reject.
    fn spoil(&self, mut block: Block, fault: super::Byzantine) -> Block {
        match fault {
            super::Byzantine::BadSignature => {
                if let Some(tx) = block.txs.first_mut() {
                    tx.signature.0[0] ^= 1;
                } else {
                    let mut signer = [0u8; 32];
                    signer.copy_from_slice(self.me.as_ref());
                    let signer = flock_primitives::PublicKey(signer);
                    block.txs.push(flock_ledger::SignedTx {
                        tx: flock_ledger::Transaction {
                            chain_id: block.header.chain_id.clone(),
                            signer,
                            nonce: 0,
                            kind: flock_ledger::TxKind::Transfer {
                                to: signer.address(),
                                amount: flock_primitives::Amount(1),
                            },
                        },
                        signature: flock_primitives::Signature([7u8; 64]),
                    });
                }
            }
            super::Byzantine::ForgedEvidence => {
                // Evidence against the first honest validator, with a made-up proof.
                let victim = self.scheme.participants().iter().find(|k| **k != self.me).cloned();
                if let Some(victim) = victim {
                    let key = flock_primitives::Keypair::from_seed([9u8; 32]);
                    let fault = flock_ledger::consensus::ConsensusFault {
                        offender: super::evidence::flock_key(&victim),
                        kind: flock_ledger::consensus::FaultKind::ConflictingNotarize,
                        epoch: self.epoch.get(),
                        view: 1,
                        proof: vec![1u8; 200],
                    };
                    let tx = flock_ledger::Transaction {
                        chain_id: block.header.chain_id.clone(),
                        signer: key.public(),
                        nonce: 0,
                        kind: flock_ledger::TxKind::ConsensusEvidence { fault: Box::new(fault) },
                    };
                    block.txs.push(tx.sign(&key));
                }
            }
            super::Byzantine::WrongParentRoot => {
                block.header.parent_state_root = Hash::of(&block.header.parent_state_root.0);
            }
        }
        block.header.tx_root = Block::compute_tx_root(&block.txs);
        block
    }

    /// Whether `block` is a valid proposal for `ctx`, or why not, or that it has to wait.
    fn check(&self, ctx: &Ctx, block: &Block) -> Check {
        match self.check_inner(ctx, block) {
            Ok(()) => Check::Valid,
            Err(verdict) => verdict,
        }
    }

    fn check_inner(&self, ctx: &Ctx, block: &Block) -> Result<(), Check> {
        let reject = |m: &str| Err(Check::Invalid(m.to_owned()));
        let h = &block.header;
        let parent = hash_of(&ctx.parent.1);
        if h.parent_hash != parent {
            return reject("parent hash differs from the engine's parent");
        }
        if h.proposer != proposer_address(&ctx.leader) {
            return reject("proposer is not the view's leader");
        }
        // The seed: the engine's VRF for the parent's view.
        match &h.seed_proof {
            SeedProof::Threshold { signature: bytes } if ctx.parent.0.is_zero() => {
                let want =
                    if self.epoch.get() == 0 { genesis_seed(&h.chain_id) } else { self.epoch_seed };
                if !bytes.is_empty() || h.seed != want {
                    return reject("an epoch's first block must carry the epoch seed");
                }
            }
            SeedProof::Threshold { signature: bytes } => {
                let Ok(seed) = Seed::decode(commonware_codec::Copying(bytes.as_slice())) else {
                    return reject("seed proof does not decode");
                };
                if seed.round != Round::new(self.epoch, ctx.parent.0) {
                    return reject("seed is not the parent view's");
                }
                if h.seed != seed_hash(bytes) {
                    return reject("seed is not the hash of its proof");
                }
                if !seed.verify(&self.scheme) {
                    return reject("seed signature is invalid");
                }
            }
            _ => return reject("a BFT block needs a threshold seed"),
        }
        if h.height > self.last_height(self.epoch.get()) {
            return reject("block is beyond its epoch's last height");
        }
        if h.time_ms > self.now_ms() + MAX_CLOCK_SKEW_MS {
            return Err(Check::Wait(None)); // from the future: wait for our clock
        }
        // The ledger after the parent (finalized or only notarized; see `state_after`).
        let (mut ledger, root) = match self.state_after(parent) {
            After::Ready { ledger, root, .. } => (ledger, root),
            After::Missing(h) => return Err(Check::Wait(Some(h))),
            After::Invalid(reason) => return Err(Check::Invalid(reason)),
        };
        if h.parent_state_root != root {
            return Err(Check::Invalid(format!(
                "parent state root {} differs from ours {}",
                h.parent_state_root, root
            )));
        }
        // Header, sizes (at most MAX_EVIDENCE_PER_BLOCK evidence), chain id and every
        // signature (Ledger::verify_block), then a dry run of the whole block on a copy of the
        // ledger after its parent: a finalized block always applies.
        if let Err(e) = ledger.apply_block(block) {
            return Err(Check::Invalid(e.to_string()));
        }
        // Consensus evidence: the engine's signatures, which the ledger cannot check.
        for (i, tx) in block.txs.iter().enumerate() {
            if let flock_ledger::TxKind::ConsensusEvidence { fault } = &tx.tx.kind {
                if let Err(e) = self.node.check_evidence(fault) {
                    return Err(Check::Invalid(format!("transaction {i}: {e}")));
                }
            }
            if let Err(e) = self.check_dkg_tx(tx) {
                return Err(Check::Invalid(format!("transaction {i}: {e}")));
            }
        }
        Ok(())
    }

    fn serve_verifies(&mut self) {
        let pending = std::mem::take(&mut self.verifies);
        for (ctx, payload, response) in pending {
            if response.is_closed() {
                continue;
            }
            let hash = hash_of(&payload);
            // Epoch rules (see `reproposal`): a re-proposal of an epoch's last block is valid,
            // of anything else is not; an older epoch's engine gets nothing else; a later
            // epoch's proposal waits until this node enters that epoch.
            if ctx.epoch() > self.epoch {
                self.verifies.push((ctx, payload, response));
                continue;
            }
            if payload == ctx.parent.1 || ctx.epoch() < self.epoch {
                match self.height_of(&hash) {
                    Some(h) => {
                        let ok =
                            payload == ctx.parent.1 && h == self.last_height(ctx.epoch().get());
                        let _ = response.send(ok);
                    }
                    None => {
                        self.request(hash);
                        self.verifies.push((ctx, payload, response));
                    }
                }
                continue;
            }
            let Some(block) = self.blocks.get(&hash) else {
                if self.committed.contains_key(&hash) {
                    let _ = response.send(true);
                } else {
                    self.request(hash);
                    self.verifies.push((ctx, payload, response));
                }
                continue;
            };
            match self.check(&ctx, block) {
                Check::Valid => {
                    let _ = response.send(true);
                }
                Check::Invalid(reason) => {
                    tracing::warn!(%hash, view = ctx.round.view().get(), reason, "block rejected");
                    if let Some(sink) = &self.rejections {
                        if let Ok(mut v) = sink.lock() {
                            v.push(reason);
                        }
                    }
                    let _ = response.send(false);
                }
                Check::Wait(missing) => {
                    if let Some(h) = missing {
                        self.request(h);
                    }
                    self.verifies.push((ctx, payload, response));
                }
            }
        }
    }
}
