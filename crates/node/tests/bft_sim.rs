//! The ledger replicated by commonware simplex, on commonware's deterministic runtime and
//! simulated network: validators finalize blocks with transactions and agree on every state
//! root; a crashed validator (f < n/3) does not stop the rest; a seed replays bit for bit.
#![cfg(feature = "bft")]
#![allow(missing_docs)]

use commonware_p2p::simulated::{Config as NetConfig, Link, Network};
use commonware_runtime::{deterministic, Clock, Quota, Runner, Spawner, Supervisor};
use commonware_utils::probability;
use flock_ledger::{
    test_utils::{sign, test_genesis, TEST_CHAIN},
    Params, SeedProof, StakeTarget, TxKind,
};
use flock_node::{
    bft::{self, EngineSettings},
    chain::Chain,
    Mempool, MempoolLimits, Node,
};
use flock_primitives::{Amount, Hash, Height};
use flock_storage::MemStore;
use std::{
    num::{NonZeroU32, NonZeroUsize},
    time::{Duration, UNIX_EPOCH},
};

const FLOCK: Amount = Amount(1_000_000_000_000_000_000);
const GENESIS_MS: u64 = 1_700_000_000_000;

/// What one run produced: per validator, the (block hash, state root) at every height 1..=n.
struct Outcome {
    chains: Vec<Option<Vec<(Hash, Hash)>>>,
    txs_landed: usize,
    /// Blocks whose seed is a verified threshold-VRF seed (all but the first).
    vrf_seeds: u64,
    elapsed_virtual: Duration,
    /// Per validator, the proposer address of every committed block 1..=n.
    proposers: Vec<Option<Vec<flock_primitives::Address>>>,
    /// Proposer address of each validator (committee order).
    addresses: Vec<flock_primitives::Address>,
    /// Per validator, why it rejected proposals.
    rejections: Vec<Vec<String>>,
    /// The online validators' nodes (their ledgers, after the run).
    nodes: Vec<Option<Node>>,
    /// Each validator's identity key as a flock account key.
    identities: Vec<flock_primitives::Keypair>,
    /// With a partition: the cut-off validator's tip when it was reconnected, and the lowest
    /// tip of the others at that moment.
    partitioned_tips: Option<(u64, u64)>,
    /// Blocks per epoch.
    epoch_length: u64,
}

/// What a simulation runs.
#[derive(Clone, Default)]
struct Scenario {
    seed: u64,
    n: u32,
    /// Run until every online validator committed this many blocks...
    blocks: u64,
    /// Validators that never start.
    offline: Vec<usize>,
    /// Transfers each online validator `i` gets from test account `i`.
    txs_each: u64,
    /// Byzantine proposers.
    byzantine: Vec<(usize, bft::Byzantine)>,
    /// A validator that runs no engine, only signs two conflicting votes for every vote it
    /// sees...
    equivocator: Option<usize>,
    /// ...and until every online validator's ledger has tombstoned it.
    until_tombstoned: bool,
    /// Fund every validator's identity account and bond 1,000 FLOCK of network stake from it
    /// (each validator's own node gets its stake transaction; the equivocator's goes to
    /// validator 0).
    stake_validators: bool,
    /// Cut one validator off the network mid-run, then heal it.
    partition: Option<Partition>,
    /// Every link's latency, jitter and delivery rate (default: 20 ± 5 ms, lossless).
    link: Option<Link>,
    /// A validator that joins late: it starts, with an empty store and no engine journal,
    /// once the others have committed this many blocks.
    late: Option<(usize, u64)>,
    /// Blocks per ledger (and consensus) epoch (default: the ledger's default).
    epoch_length: Option<u64>,
}

/// One validator cut off from every peer (both directions) once the others reach `at`, and
/// reconnected once they reach `heal_at`.
#[derive(Clone, Copy)]
struct Partition {
    validator: usize,
    at: u64,
    heal_at: u64,
}

/// Network stake each validator bonds with [`Scenario::stake_validators`].
const VALIDATOR_STAKE: Amount = Amount(1_000 * FLOCK.0);

/// A byzantine validator that equivocates: when it sees the first vote of a view, it signs two
/// notarize votes for two made-up proposals of the next view and sends both (ahead of the
/// honest votes, so the engines still hold its first vote in full when the second arrives).
async fn equivocate<S, R>(scheme: bft::Scheme, (mut sender, mut receiver): (S, R))
where
    S: commonware_p2p::Sender<PublicKey = bft::ValidatorKey>,
    R: commonware_p2p::Receiver<PublicKey = bft::ValidatorKey>,
{
    use commonware_codec::{DecodeExt, Encode};
    use commonware_consensus::{
        simplex::types::{Notarize, Proposal, Vote},
        types::{Round, View},
        Epochable, Viewable,
    };
    use commonware_p2p::Recipients;
    let mut last = 0u64;
    while let Ok((_, msg)) = receiver.recv().await {
        let Ok(vote) = Vote::<bft::Scheme, bft::Digest>::decode(msg) else { continue };
        let view = vote.view().get();
        if view <= last {
            continue;
        }
        last = view;
        let round = Round::new(vote.epoch(), View::new(view + 1));
        for side in [&b"left"[..], &b"right"[..]] {
            let payload = bft::digest_of(&Hash::of_parts("made up", &[&view.to_le_bytes(), side]));
            let proposal = Proposal::new(round, View::new(view), payload);
            let msg = Vote::Notarize(Notarize::sign(&scheme, proposal).unwrap());
            let _ = sender.send(Recipients::All, msg.encode(), true);
        }
    }
}

/// Runs `n` validators (those in `offline` never start) until every online one has committed
/// `blocks` blocks. Each online validator `i` gets `txs_each` transfers from account `i`.
fn run(seed: u64, n: u32, blocks: u64, offline: &[usize], txs_each: u64) -> Outcome {
    simulate(Scenario {
        seed,
        n,
        blocks,
        offline: offline.to_vec(),
        txs_each,
        ..Scenario::default()
    })
}

/// [`run`] with byzantine proposers (`(validator index, fault)`).
fn run_with(
    seed: u64,
    n: u32,
    blocks: u64,
    offline: &[usize],
    txs_each: u64,
    byzantine: &[(usize, bft::Byzantine)],
) -> Outcome {
    simulate(Scenario {
        seed,
        n,
        blocks,
        offline: offline.to_vec(),
        txs_each,
        byzantine: byzantine.to_vec(),
        ..Scenario::default()
    })
}

fn simulate(sc: Scenario) -> Outcome {
    let Scenario { seed, n, blocks, txs_each, .. } = sc;
    let byzantine = sc.byzantine.clone();
    let _ = Mempool::new; // (keeps the import list honest across features)
    let cfg = deterministic::Config::new()
        .with_seed(seed)
        .with_start_time(UNIX_EPOCH + Duration::from_millis(GENESIS_MS))
        .with_timeout(Some(Duration::from_secs(600)));
    let runner = deterministic::Runner::new(cfg);
    let offline = sc.offline.clone();
    let mut params = Params::default();
    if let Some(l) = sc.epoch_length {
        params.epoch_length = l;
    }
    runner.start(|mut context| async move {
        let namespace = bft::namespace(TEST_CHAIN);
        let fixture = bft::deal_committee(&mut context, &namespace, n);
        let (mut genesis, keys) =
            test_genesis(n as usize, Amount(1_000 * FLOCK.0), params.clone(), vec![]);
        let identities: Vec<flock_primitives::Keypair> =
            fixture.keys.iter().map(|k| bft::reporter_keypair(k).unwrap()).collect();
        if sc.stake_validators {
            for k in &identities {
                genesis.allocations.push(flock_ledger::Allocation {
                    address: k.address(),
                    amount: Amount(2 * VALIDATOR_STAKE.0),
                });
            }
        }

        let (network, oracle) = Network::new_with_peers(
            context.child("network"),
            NetConfig {
                max_size: 8 << 20,
                max_peers_per_set: NonZeroUsize::new(n as usize).unwrap(),
                disconnect_on_block: true,
                tracked_peer_sets: NonZeroUsize::new(1).unwrap(),
            },
            fixture.participants.clone(),
        )
        .await;
        network.start();
        let link = sc.link.clone().unwrap_or(Link {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            success_rate: probability!(1.0),
        });
        for a in &fixture.participants {
            for b in &fixture.participants {
                if a != b {
                    oracle.add_link(a.clone(), b.clone(), link.clone()).await.unwrap();
                }
            }
        }

        let quota = Quota::per_second(NonZeroU32::new(10_000).unwrap());
        let mut nodes = Vec::new();
        let sinks: Vec<_> =
            (0..n).map(|_| std::sync::Arc::new(std::sync::Mutex::new(Vec::new()))).collect();
        // Starts validator `i` on its channels, on a fresh in-memory store.
        let start_one = |i: usize, channels: Vec<_>| -> Node {
            let pk = &fixture.participants[i];
            let chain = Chain::open(Box::new(MemStore::new()), genesis.clone()).unwrap();
            let node = Node::new(chain, MempoolLimits::default());
            if sc.stake_validators {
                let stake = TxKind::Stake { target: StakeTarget::NETWORK, amount: VALIDATOR_STAKE };
                node.submit(sign(&identities[i], 0, stake.clone())).unwrap();
                if i == 0 {
                    if let Some(e) = sc.equivocator {
                        // (The evidence check is not installed yet; a stake needs none.)
                        node.submit(sign(&identities[e], 0, stake)).unwrap();
                    }
                }
            }
            for nonce in 0..txs_each {
                let to = keys[(i + 1) % keys.len()].address();
                let tx = sign(&keys[i], nonce, TxKind::Transfer { to, amount: FLOCK });
                node.submit(tx).unwrap();
            }
            let channels: [_; 4] = channels.try_into().unwrap_or_else(|_| unreachable!());
            let ctx = context.child("validator").with_attribute("index", i);
            let mut settings = EngineSettings::new(format!("validator-{i}"));
            settings.rejections = Some(sinks[i].clone());
            settings.byzantine = byzantine.iter().find(|(b, _)| *b == i).map(|(_, f)| *f);
            settings.reporter = Some(identities[i].clone());
            settings.identity = Some(fixture.keys[i].clone());
            bft::start_validator(
                ctx,
                node.clone(),
                fixture.member(i),
                pk.clone(),
                oracle.control(pk.clone()),
                settings,
                channels,
            );
            node
        };
        let mut late_channels = None;
        for (i, pk) in fixture.participants.iter().enumerate() {
            let control = oracle.control(pk.clone());
            let channels = register_channels(&control, quota).await;
            if offline.contains(&i) {
                nodes.push(None);
                continue;
            }
            if sc.equivocator == Some(i) {
                let [votes, ..]: [_; 4] = channels.try_into().unwrap_or_else(|_| unreachable!());
                let scheme = fixture.schemes[i].clone();
                // Votes travel on the epoch's subchannel (epoch 0 here).
                let (mux, mut handle) = commonware_p2p::utils::mux::Muxer::new(
                    context.child("equivocator_mux"),
                    votes.0,
                    votes.1,
                );
                mux.start();
                let votes = handle.register(0).await.unwrap();
                context.child("equivocator").spawn(move |_| equivocate(scheme, votes));
                nodes.push(None);
                continue;
            }
            if sc.late.is_some_and(|(l, _)| l == i) {
                late_channels = Some(channels);
                nodes.push(None);
                continue;
            }
            nodes.push(Some(start_one(i, channels)));
        }

        let started = context.current();
        let mut partitioned_tips = None;
        let mut cut = false;
        loop {
            context.sleep(Duration::from_millis(100)).await;
            if let Some(p) = sc.partition {
                let others = nodes
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != p.validator)
                    .filter_map(|(_, n)| n.as_ref())
                    .map(|n| n.tip().height.0)
                    .min()
                    .unwrap_or(0);
                let me = fixture.participants[p.validator].clone();
                let peers = fixture.participants.iter().filter(|q| **q != me);
                if !cut && partitioned_tips.is_none() && others >= p.at {
                    for q in peers {
                        oracle.remove_link(me.clone(), q.clone()).await.unwrap();
                        oracle.remove_link(q.clone(), me.clone()).await.unwrap();
                    }
                    cut = true;
                } else if cut && others >= p.heal_at {
                    for q in peers {
                        oracle.add_link(me.clone(), q.clone(), link.clone()).await.unwrap();
                        oracle.add_link(q.clone(), me.clone(), link.clone()).await.unwrap();
                    }
                    cut = false;
                    let mine = nodes[p.validator].as_ref().map_or(0, |n| n.tip().height.0);
                    partitioned_tips = Some((mine, others));
                }
            }
            if cut || (sc.partition.is_some() && partitioned_tips.is_none()) {
                continue;
            }
            if let Some((late, at)) = sc.late {
                if nodes[late].is_none() {
                    let others = nodes.iter().flatten().map(|n| n.tip().height.0).min();
                    if others.unwrap_or(0) >= at {
                        let channels = late_channels.take().expect("the late validator's channels");
                        nodes[late] = Some(start_one(late, channels));
                    }
                    continue;
                }
            }
            let tombstoned = |node: &Node| match sc.equivocator {
                Some(e) if sc.until_tombstoned => node.with_chain(|c| {
                    c.ledger().state().tombstone(&identities[e].address()).is_some()
                }),
                _ => true,
            };
            let done = nodes
                .iter()
                .flatten()
                .all(|node| node.tip().height.0 >= blocks && tombstoned(node));
            if done {
                break;
            }
        }
        let elapsed_virtual = context.current().duration_since(started).unwrap();

        // Every online node reached `blocks`; compare up to the lowest tip.
        let blocks = nodes.iter().flatten().map(|n| n.tip().height.0).min().unwrap_or(blocks);
        let chains = nodes
            .iter()
            .map(|node| node.as_ref().map(|node| chain_of(node, blocks)))
            .collect::<Vec<_>>();
        let txs_landed = nodes
            .iter()
            .flatten()
            .next()
            .map(|node| {
                node.with_chain(|c| {
                    (1..=blocks).map(|h| c.block(Height(h)).unwrap().unwrap().txs.len()).sum()
                })
            })
            .unwrap_or(0);
        let vrf_seeds = nodes
            .iter()
            .flatten()
            .next()
            .map(|node| {
                node.with_chain(|c| {
                    (1..=blocks)
                        .filter(|h| {
                            let b = c.block(Height(*h)).unwrap().unwrap();
                            matches!(b.header.seed_proof, SeedProof::Threshold { signature: ref p } if !p.is_empty())
                        })
                        .count() as u64
                })
            })
            .unwrap_or(0);
        let proposers = nodes
            .iter()
            .map(|node| {
                node.as_ref().map(|node| {
                    node.with_chain(|c| {
                        (1..=blocks)
                            .map(|h| c.block(Height(h)).unwrap().unwrap().header.proposer)
                            .collect::<Vec<_>>()
                    })
                })
            })
            .collect();
        let addresses = fixture.participants.iter().map(bft::proposer_address).collect();
        let rejections = sinks.iter().map(|s| s.lock().unwrap().clone()).collect();
        Outcome {
            chains,
            txs_landed,
            vrf_seeds,
            elapsed_virtual,
            proposers,
            addresses,
            rejections,
            epoch_length: params.epoch_length,
            nodes,
            identities,
            partitioned_tips,
        }
    })
}

/// A validator's four channels on the simulated network (votes, certificates, resolver,
/// blocks).
async fn register_channels(
    control: &commonware_p2p::simulated::Control<bft::ValidatorKey, deterministic::Context>,
    quota: Quota,
) -> Vec<(
    commonware_p2p::simulated::Sender<bft::ValidatorKey, deterministic::Context>,
    commonware_p2p::simulated::Receiver<bft::ValidatorKey>,
)> {
    let mut channels = Vec::new();
    for ch in
        [bft::VOTE_CHANNEL, bft::CERTIFICATE_CHANNEL, bft::RESOLVER_CHANNEL, bft::BLOCK_CHANNEL]
    {
        channels.push(control.register(ch, quota).await.unwrap());
    }
    channels
}

/// A node's (block hash, state root) at every height `1..=blocks`.
fn chain_of(node: &Node, blocks: u64) -> Vec<(Hash, Hash)> {
    node.with_chain(|c| {
        let s = c.store();
        (1..=blocks)
            .map(|h| {
                (
                    s.block_hash(Height(h)).unwrap().unwrap(),
                    s.state_root(Height(h)).unwrap().unwrap(),
                )
            })
            .collect()
    })
}

/// Every online validator has the same block and state root at every height.
fn assert_agree(o: &Outcome) {
    let online: Vec<_> = o.chains.iter().flatten().collect();
    assert!(!online.is_empty());
    for (i, c) in online.iter().enumerate() {
        assert_eq!(*c, online[0], "validator {i} disagrees");
    }
    // Roots change as transactions land: the chain is not empty blocks only.
    assert!(o.txs_landed > 0);
    // Every block but an epoch's first (whose parent is the engine's genesis) carries the
    // engine's threshold-VRF seed.
    let len = o.chains.iter().flatten().next().unwrap().len() as u64;
    assert_eq!(o.vrf_seeds, len - len.div_ceil(o.epoch_length));
}

fn digest(o: &Outcome) -> Hash {
    let mut parts = Vec::new();
    for c in o.chains.iter().flatten() {
        for (b, r) in c {
            parts.extend_from_slice(&b.0);
            parts.extend_from_slice(&r.0);
        }
    }
    Hash::of(&parts)
}

#[test]
fn four_validators_finalize_and_agree() {
    let t = std::time::Instant::now();
    let o = run(1, 4, 20, &[], 10);
    assert_agree(&o);
    assert_eq!(o.txs_landed, 40, "every submitted transfer landed");
    eprintln!(
        "4 validators: 20 blocks, {} txs, virtual {:?}, wall {:?}",
        o.txs_landed,
        o.elapsed_virtual,
        t.elapsed()
    );
}

#[test]
fn seven_validators_finalize_and_agree() {
    let t = std::time::Instant::now();
    let o = run(2, 7, 15, &[], 5);
    assert_agree(&o);
    assert_eq!(o.txs_landed, 35);
    eprintln!("7 validators: 15 blocks, virtual {:?}, wall {:?}", o.elapsed_virtual, t.elapsed());
}

#[test]
fn one_crashed_of_four_the_rest_continue() {
    let t = std::time::Instant::now();
    let o = run(3, 4, 15, &[2], 5);
    assert!(o.chains[2].is_none());
    assert_agree(&o);
    assert_eq!(o.txs_landed, 15, "the three live validators' transfers landed");
    eprintln!(
        "4 validators, 1 down: 15 blocks, virtual {:?}, wall {:?}",
        o.elapsed_virtual,
        t.elapsed()
    );
}

#[test]
fn two_crashed_of_seven_the_rest_continue() {
    let o = run(4, 7, 10, &[1, 5], 3);
    assert_agree(&o);
}

/// A validator cut off from the network mid-run falls behind while the other three keep
/// finalizing (f = 1 of 4); once reconnected it fetches the blocks it missed from its peers and
/// ends with the same block and state root at every height.
#[test]
fn a_partitioned_validator_falls_behind_then_catches_up() {
    let t = std::time::Instant::now();
    let o = simulate(Scenario {
        seed: 10,
        n: 4,
        blocks: 40,
        txs_each: 5,
        partition: Some(Partition { validator: 3, at: 5, heal_at: 25 }),
        ..Scenario::default()
    });
    let (mine, others) = o.partitioned_tips.expect("the partition healed");
    // Cut off, it could not finalize what the others did (a view or two in flight at the cut
    // may still complete).
    assert!(others >= 25, "the other three kept finalizing: {others}");
    assert!(mine + 15 <= others, "the cut-off validator fell behind: {mine} vs {others}");
    // After healing, every validator, the cut-off one included, holds 40 identical blocks.
    assert!(o.chains.iter().all(Option::is_some));
    assert!(o.chains[3].as_ref().unwrap().len() >= 40);
    assert_agree(&o);
    assert_eq!(o.txs_landed, 20, "every validator's transfers landed, the cut-off one's too");
    eprintln!(
        "partition: validator 3 at {mine} when the others were at {others}; caught up; virtual {:?}, wall {:?}",
        o.elapsed_virtual,
        t.elapsed()
    );
}

/// A slow, lossy network (one message in five lost, 80 ± 60 ms): views time out, some are
/// nullified, blocks are fetched again, and the validators still finalize every transfer and
/// agree on every root. Seed 13 notarizes a view that is never finalized (two validators
/// nullified it first): the next leaders must build on it before it is final, which stalled
/// the chain for good while proposals and verifications waited for their parent's
/// finalization.
#[test]
fn a_lossy_slow_network_still_finalizes_and_agrees() {
    // FLOCK_SIM_SEEDS=A..B sweeps more seeds.
    let seeds: Vec<u64> = std::env::var("FLOCK_SIM_SEEDS")
        .ok()
        .and_then(|v| {
            let (a, b) = v.split_once("..")?;
            Some((a.parse().ok()?..b.parse().ok()?).collect())
        })
        .unwrap_or_else(|| vec![11, 12, 13]);
    for seed in seeds {
        let t = std::time::Instant::now();
        let o = simulate(Scenario {
            seed,
            n: 4,
            blocks: 25,
            txs_each: 5,
            link: Some(Link {
                latency: Duration::from_millis(80),
                jitter: Duration::from_millis(60),
                success_rate: probability!(4, 5),
            }),
            ..Scenario::default()
        });
        assert_agree(&o);
        assert_eq!(o.txs_landed, 20, "seed {seed}: every transfer landed");
        eprintln!(
            "lossy seed {seed}: 25 blocks, virtual {:?}, wall {:?}",
            o.elapsed_virtual,
            t.elapsed()
        );
    }
}

/// A validator that joins after the others finalized 30 blocks, from an empty store and no
/// consensus journal (a new machine with its key): it fetches the whole chain from its peers,
/// replays it to the same state root at every height, and takes part from then on (its own
/// transfers land).
/// Runs 4 validators where validator 2 starts late, with an empty store and no engine
/// journal, once the others committed `at` blocks; checks it reached `blocks` with the same
/// chain, that every transfer landed, and returns the height of its first proposal.
fn late_joiner(seed: u64, at: u64, blocks: u64, epoch_length: Option<u64>) -> u64 {
    let t = std::time::Instant::now();
    let o = simulate(Scenario {
        seed,
        n: 4,
        blocks,
        txs_each: 5,
        late: Some((2, at)),
        epoch_length,
        ..Scenario::default()
    });
    assert!(o.chains[2].as_ref().is_some_and(|c| c.len() as u64 >= blocks));
    assert_agree(&o);
    assert_eq!(o.txs_landed, 20, "the late validator's transfers landed too");
    let late = o.addresses[2];
    let proposers = o.proposers[2].as_ref().unwrap();
    let first = proposers.iter().position(|p| *p == late).expect("it proposed after joining");
    let first = first as u64 + 1;
    assert!(first > at, "it could not propose before it started: block {first}");
    eprintln!(
        "late joiner (epoch length {epoch_length:?}): started at height {at}, first proposal at \
         height {first}; virtual {:?}, wall {:?}",
        o.elapsed_virtual,
        t.elapsed()
    );
    first
}

#[test]
fn a_new_validator_joins_late_and_syncs_from_peers() {
    late_joiner(14, 30, 45, None);
}

/// A validator that was down across several epoch boundaries: the engines of those epochs
/// are gone, so it catches up from a peer's latest finalization (checked under the group
/// key), fetching the blocks in between and deciding each epoch from the chain, then signs in
/// the current epoch again.
#[test]
fn a_validator_down_across_epochs_catches_up() {
    late_joiner(15, 35, 90, Some(10));
}

#[test]
fn same_seed_replays_bit_for_bit() {
    let a = run(42, 4, 10, &[], 5);
    let b = run(42, 4, 10, &[], 5);
    assert_agree(&a);
    assert_eq!(digest(&a), digest(&b));
    assert_eq!(a.elapsed_virtual, b.elapsed_virtual);
    let c = run(43, 4, 10, &[], 5);
    // Another seed: the same ledger transitions, but other block times and VRF seeds.
    assert_ne!(digest(&a), digest(&c));
}

/// A byzantine proposer's blocks are rejected by every honest validator, none of them commits,
/// and the chain goes on under the other leaders.
fn byzantine_proposer_is_rejected(seed: u64, fault: bft::Byzantine, reason: &str) {
    let byz = 1usize;
    let o = run_with(seed, 4, 16, &[], 5, &[(byz, fault)]);
    assert_agree(&o);
    let bad = o.addresses[byz];
    let chain = o.proposers[0].as_ref().unwrap();
    assert!(!chain.contains(&bad), "a block of the byzantine proposer was finalized");
    // Round-robin leaders: the other three proposed every block.
    for (i, a) in o.addresses.iter().enumerate() {
        if i != byz {
            assert!(chain.contains(a), "honest validator {i} proposed no finalized block");
        }
    }
    // Every honest validator saw a spoiled proposal and said why it rejected it.
    for (i, r) in o.rejections.iter().enumerate() {
        if i == byz {
            continue;
        }
        assert!(!r.is_empty(), "validator {i} rejected nothing");
        assert!(r.iter().all(|m| m.contains(reason)), "validator {i}: unexpected rejections {r:?}");
    }
    // Every transfer landed, the byzantine node's too: it gossiped them when they were sent
    // to it, and honest leaders included them.
    assert_eq!(o.txs_landed, 20);
    eprintln!(
        "byzantine {fault:?}: rejections {:?}",
        o.rejections.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

#[test]
fn byzantine_bad_signature_is_rejected() {
    byzantine_proposer_is_rejected(5, bft::Byzantine::BadSignature, "signature");
}

#[test]
fn byzantine_wrong_parent_root_is_rejected() {
    byzantine_proposer_is_rejected(6, bft::Byzantine::WrongParentRoot, "parent state root");
}

#[test]
fn byzantine_forged_evidence_is_rejected() {
    byzantine_proposer_is_rejected(8, bft::Byzantine::ForgedEvidence, "evidence");
}

/// A validator that signs conflicting votes is reported by the honest validators' engines, the
/// evidence lands in a block, and every ledger slashes it once and tombstones it.
#[test]
fn an_equivocating_validator_is_slashed_through_evidence() {
    use flock_ledger::consensus::FaultKind;
    let t = std::time::Instant::now();
    let byz = 3usize;
    let o = simulate(Scenario {
        seed: 9,
        n: 4,
        blocks: 3,
        equivocator: Some(byz),
        until_tombstoned: true,
        stake_validators: true,
        ..Scenario::default()
    });
    assert_agree(&o);
    let offender = o.identities[byz].address();
    assert_eq!(offender, o.addresses[byz], "the identity account is the proposer address");
    let slash = Amount(VALIDATOR_STAKE.0 / 20); // consensus_fault_slash: 5%
    let reporter_share = Amount(slash.0 / 10); // slash_reporter: 10%
    let mut evidence = None;
    for node in o.nodes.iter().flatten() {
        node.with_chain(|c| {
            let st = c.ledger().state();
            let t = st.tombstone(&offender).expect("tombstoned");
            assert!(matches!(
                t.kind,
                FaultKind::ConflictingNotarize | FaultKind::ConflictingFinalize
            ));
            assert_eq!(t.slashed, slash);
            assert_ne!(t.reporter, offender);
            assert!(o.addresses.contains(&t.reporter));
            assert_eq!(
                st.own_stake(&offender, &StakeTarget::NETWORK),
                Amount(VALIDATOR_STAKE.0 - slash.0),
                "slashed exactly once"
            );
            // The reporter's balance: its genesis funds, less its own stake, plus its share.
            assert_eq!(
                st.balance(&t.reporter),
                Amount(2 * VALIDATOR_STAKE.0 - VALIDATOR_STAKE.0 + reporter_share.0)
            );
            let tip = c.info().height.0;
            let found = (1..=tip).find_map(|h| {
                let b = c.block(Height(h)).unwrap().unwrap();
                b.txs.into_iter().find_map(|tx| match tx.tx.kind {
                    TxKind::ConsensusEvidence { fault } => Some(fault),
                    _ => None,
                })
            });
            evidence = Some(found.expect("an evidence transaction on chain"));
        });
    }
    let fault = evidence.unwrap();
    assert_eq!(fault.offender, o.identities[byz].public());

    // The node (with its engine's check installed) refuses what comes after.
    let node = o.nodes[0].clone().unwrap();
    let key = &o.identities[1];
    let nonce = node.with_mempool(|mp| mp.next_nonce(&key.address()));
    let code = |kind: TxKind| node.submit(sign(key, nonce, kind)).unwrap_err().code();
    // The same evidence again: the offender is tombstoned.
    assert_eq!(code(TxKind::ConsensusEvidence { fault: fault.clone() }), "tombstoned");
    // The same proof naming another validator, or tampered with: the proof does not hold.
    let mut framed = fault.clone();
    framed.offender = o.identities[2].public();
    assert_eq!(code(TxKind::ConsensusEvidence { fault: framed }), "bad_evidence");
    let mut tampered = fault.clone();
    let last = tampered.proof.len() - 1;
    tampered.proof[last] ^= 1;
    assert_eq!(code(TxKind::ConsensusEvidence { fault: tampered }), "bad_evidence");
    let mut other_view = fault.clone();
    other_view.view += 1;
    assert_eq!(code(TxKind::ConsensusEvidence { fault: other_view }), "bad_evidence");
    // A tombstoned validator can never bond network stake again.
    let again = TxKind::Stake { target: StakeTarget::NETWORK, amount: VALIDATOR_STAKE };
    let offender_key = &o.identities[byz];
    let n = node.with_mempool(|mp| mp.next_nonce(&offender_key.address()));
    assert_eq!(node.submit(sign(offender_key, n, again)).unwrap_err().code(), "tombstoned");
    eprintln!(
        "equivocation: slashed {} at view {} (evidence {} bytes), virtual {:?}, wall {:?}",
        slash,
        fault.view,
        fault.proof.len(),
        o.elapsed_virtual,
        t.elapsed()
    );
}

/// The committee follows staking: 4 genesis validators and a fifth node that starts as an
/// observer (no share). All five stake and register an endpoint in epoch 0, so the ledger
/// records the five of them as epoch 1's set; round 1 (in epoch 1) reshares the threshold key
/// from the genesis four to the five, and from epoch 2 the fifth signs and leads. Validator 3
/// then unstakes: round 3 deals it out, and from epoch 4 it only observes. Every node keeps
/// identical blocks and state roots throughout, and every seed verifies under the one group
/// key the genesis dealing made.
#[test]
fn the_committee_follows_staking_across_epochs() {
    const L: u64 = 10;
    const BLOCKS: u64 = 5 * L + 5;
    let cfg = deterministic::Config::new()
        .with_seed(21)
        .with_start_time(UNIX_EPOCH + Duration::from_millis(GENESIS_MS))
        .with_timeout(Some(Duration::from_secs(900)));
    deterministic::Runner::new(cfg).start(|mut context| async move {
        use commonware_cryptography::Signer as _;
        let namespace = bft::namespace(TEST_CHAIN);
        let fixture = bft::deal_committee(&mut context, &namespace, 4);
        let newcomer = commonware_cryptography::ed25519::PrivateKey::from_seed(4_242);
        let mut keys = fixture.keys.clone();
        keys.push(newcomer.clone());
        let identities: Vec<_> = keys.iter().map(|k| bft::reporter_keypair(k).unwrap()).collect();
        let params = Params { epoch_length: L, ..Params::default() };
        let (mut genesis, _) = test_genesis(1, Amount(1_000 * FLOCK.0), params, vec![]);
        for k in &identities {
            genesis.allocations.push(flock_ledger::Allocation {
                address: k.address(),
                amount: Amount(2 * VALIDATOR_STAKE.0),
            });
        }
        let all: Vec<_> = keys.iter().map(|k| k.public_key()).collect();
        let (network, oracle) = Network::new_with_peers(
            context.child("network"),
            NetConfig {
                max_size: 8 << 20,
                max_peers_per_set: NonZeroUsize::new(all.len()).unwrap(),
                disconnect_on_block: true,
                tracked_peer_sets: NonZeroUsize::new(1).unwrap(),
            },
            all.clone(),
        )
        .await;
        network.start();
        let link = Link {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            success_rate: probability!(1.0),
        };
        for a in &all {
            for b in &all {
                if a != b {
                    oracle.add_link(a.clone(), b.clone(), link.clone()).await.unwrap();
                }
            }
        }
        let quota = Quota::per_second(NonZeroU32::new(10_000).unwrap());
        let mut nodes = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let pk = key.public_key();
            let control = oracle.control(pk.clone());
            let channels = register_channels(&control, quota).await;
            let chain = Chain::open(Box::new(MemStore::new()), genesis.clone()).unwrap();
            let node = Node::new(chain, MempoolLimits::default());
            let mut settings = EngineSettings::new(format!("validator-{i}"));
            settings.reporter = Some(identities[i].clone());
            settings.identity = Some(key.clone());
            let committee = if i < 4 {
                fixture.member(i)
            } else {
                bft::epoch::EpochCommittee {
                    round: None,
                    output: fixture.output.clone(),
                    share: None,
                }
            };
            bft::start_validator(
                context.child("validator").with_attribute("index", i),
                node.clone(),
                committee,
                pk,
                control,
                settings,
                channels.try_into().unwrap_or_else(|_| unreachable!()),
            );
            nodes.push(node);
        }
        // Everyone stakes and registers; the observer's transactions go through validator 0.
        for (i, id) in identities.iter().enumerate() {
            let via = if i < 4 { &nodes[i] } else { &nodes[0] };
            let stake = TxKind::Stake { target: StakeTarget::NETWORK, amount: VALIDATOR_STAKE };
            via.submit(sign(id, 0, stake)).unwrap();
            let register = TxKind::ConsensusRegister { endpoint: format!("10.0.0.{i}:7000") };
            via.submit(sign(id, 1, register)).unwrap();
        }
        let mut unstaked = false;
        loop {
            context.sleep(Duration::from_millis(100)).await;
            let low = nodes.iter().map(|n| n.tip().height.0).min().unwrap();
            if !unstaked && low > 2 * L {
                let unstake =
                    TxKind::Unstake { target: StakeTarget::NETWORK, amount: VALIDATOR_STAKE };
                let nonce = nodes[3].with_mempool(|mp| mp.next_nonce(&identities[3].address()));
                nodes[3].submit(sign(&identities[3], nonce, unstake)).unwrap();
                unstaked = true;
            }
            if low >= BLOCKS {
                break;
            }
        }

        // Identical chains.
        let first = chain_of(&nodes[0], BLOCKS);
        for (i, n) in nodes.iter().enumerate() {
            assert_eq!(chain_of(n, BLOCKS), first, "node {i} diverged");
        }
        // The ledger's sets: all five from epoch 1, validator 3 gone from epoch 3.
        let state = nodes[4].with_chain(|c| c.ledger().state().clone());
        let set = |e: u64| -> Vec<_> {
            let mut v: Vec<_> = state.validator_set(e).unwrap().iter().map(|m| m.address).collect();
            v.sort();
            v
        };
        let mut five: Vec<_> = identities.iter().map(|k| k.address()).collect();
        five.sort();
        assert_eq!(set(1), five);
        assert!(!set(3).contains(&identities[3].address()));
        assert!(state.validator_set(1).unwrap().iter().all(|m| m.key.is_some()));
        assert_eq!(state.dkg_logs(1).len(), 4, "each genesis validator dealt in round 1");
        // Who led: the newcomer never before epoch 2, and does from then on; validator 3
        // leads no block after epoch 3.
        let blocks: Vec<_> = nodes[0]
            .with_chain(|c| (1..=BLOCKS).map(|h| c.block(Height(h)).unwrap().unwrap()).collect());
        let epoch_of = |h: u64| (h - 1) / L;
        let led = |who: usize, pred: &dyn Fn(u64) -> bool| {
            blocks
                .iter()
                .filter(|b| {
                    pred(epoch_of(b.header.height.0))
                        && b.header.proposer == identities[who].address()
                })
                .count()
        };
        assert_eq!(led(4, &|e| e < 2), 0, "the observer led a block before it had a share");
        assert!(led(4, &|e| e >= 2) > 0, "the newcomer never led a block once in the committee");
        assert!(led(3, &|e| (1..3).contains(&e)) > 0, "validator 3 led nothing while a member");
        assert_eq!(led(3, &|e| e >= 4), 0, "validator 3 led a block after it left the committee");
        // Every threshold seed verifies under the genesis group key.
        let verifier = bft::Scheme::certificate_verifier(&namespace, *fixture.polynomial.public());
        let mut verified = 0;
        for b in &blocks {
            if let SeedProof::Threshold { signature } = &b.header.seed_proof {
                if signature.is_empty() {
                    continue;
                }
                let seed = <bft::Seed as commonware_codec::DecodeExt<_>>::decode(
                    commonware_codec::Copying(signature.as_slice()),
                )
                .unwrap();
                assert!(
                    seed.verify(&verifier),
                    "seed at height {} does not verify",
                    b.header.height.0
                );
                verified += 1;
            }
        }
        assert!(verified as u64 >= BLOCKS - 6, "only {verified} threshold seeds");
    });
}
