//! The ledger replicated by commonware simplex, on commonware's deterministic runtime and
//! simulated network: validators finalize blocks with transactions and agree on every state
//! root; a crashed validator (f < n/3) does not stop the rest; a seed replays bit for bit.
#![cfg(feature = "bft")]
#![allow(missing_docs)]

use commonware_p2p::simulated::{Config as NetConfig, Link, Network};
use commonware_runtime::{deterministic, Clock, Quota, Runner, Supervisor};
use commonware_utils::probability;
use flock_ledger::{
    test_utils::{sign, test_genesis, TEST_CHAIN},
    Params, SeedProof, TxKind,
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
}

/// Runs `n` validators (those in `offline` never start) until every online one has committed
/// `blocks` blocks. Each online validator `i` gets `txs_each` transfers from account `i`.
fn run(seed: u64, n: u32, blocks: u64, offline: &[usize], txs_each: u64) -> Outcome {
    run_with(seed, n, blocks, offline, txs_each, &[])
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
    let byzantine = byzantine.to_vec();
    let _ = Mempool::new; // (keeps the import list honest across features)
    let cfg = deterministic::Config::new()
        .with_seed(seed)
        .with_start_time(UNIX_EPOCH + Duration::from_millis(GENESIS_MS))
        .with_timeout(Some(Duration::from_secs(600)));
    let runner = deterministic::Runner::new(cfg);
    let offline = offline.to_vec();
    runner.start(|mut context| async move {
        let (genesis, keys) = test_genesis(n as usize, Amount(1_000 * FLOCK.0), Params::default(), vec![]);
        let namespace = bft::namespace(TEST_CHAIN);
        let fixture = bft::deal_committee(&mut context, &namespace, n);

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
        let link = Link {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            success_rate: probability!(1.0),
        };
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
        for (i, pk) in fixture.participants.iter().enumerate() {
            let control = oracle.control(pk.clone());
            let mut channels = Vec::new();
            for ch in [
                bft::VOTE_CHANNEL,
                bft::CERTIFICATE_CHANNEL,
                bft::RESOLVER_CHANNEL,
                bft::BLOCK_CHANNEL,
            ] {
                channels.push(control.register(ch, quota).await.unwrap());
            }
            if offline.contains(&i) {
                nodes.push(None);
                continue;
            }
            let chain = Chain::open(Box::new(MemStore::new()), genesis.clone()).unwrap();
            let node = Node::new(chain, MempoolLimits::default());
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
            bft::start_validator(
                ctx,
                node.clone(),
                fixture.schemes[i].clone(),
                pk.clone(),
                oracle.control(pk.clone()),
                settings,
                channels,
            );
            nodes.push(Some(node));
        }

        let started = context.current();
        loop {
            context.sleep(Duration::from_millis(100)).await;
            let done = nodes.iter().flatten().all(|node| node.tip().height.0 >= blocks);
            if done {
                break;
            }
        }
        let elapsed_virtual = context.current().duration_since(started).unwrap();

        let chains = nodes
            .iter()
            .map(|node| {
                node.as_ref().map(|node| {
                    node.with_chain(|c| {
                        (1..=blocks)
                            .map(|h| {
                                let s = c.store();
                                (
                                    s.block_hash(Height(h)).unwrap().unwrap(),
                                    s.state_root(Height(h)).unwrap().unwrap(),
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                })
            })
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
        Outcome { chains, txs_landed, vrf_seeds, elapsed_virtual, proposers, addresses, rejections }
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
    // Every block after the first carries the engine's threshold-VRF seed.
    assert_eq!(o.vrf_seeds as usize, o.chains.iter().flatten().next().unwrap().len() - 1);
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
    // The honest validators' transfers landed; the byzantine one's never did (it only
    // proposed them in spoiled blocks, and they live only in its own mempool).
    assert_eq!(o.txs_landed, 15);
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
