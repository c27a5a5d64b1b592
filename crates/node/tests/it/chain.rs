//! The block path: apply_finalized, restart, and refusals that leave state untouched.

use crate::common::*;
use flock_ledger::{SeedProof, TxKind};
use flock_node::{Chain, ChainError};
use flock_primitives::{Amount, Hash, Keypair};
use flock_storage::{MemStore, RedbStore};

#[test]
fn restart_resumes_with_the_same_state_and_root() {
    let dir = tempfile::tempdir().unwrap();
    let (g, keys) = genesis();
    let (node, seq, _) = {
        let store = RedbStore::open(dir.path().join("c.redb")).unwrap();
        let chain = Chain::open(Box::new(store), g.clone()).unwrap();
        let node = flock_node::Node::new(chain, Default::default());
        let k = seq_key();
        (
            node,
            flock_node::SoloSequencer::new(
                k.vrf(),
                k.account().address(),
                std::time::Duration::ZERO,
            ),
            (),
        )
    };
    for i in 0..7u64 {
        node.submit(tx(
            &keys[0],
            i,
            TxKind::Transfer { to: keys[1].address(), amount: Amount::flock(1) },
        ))
        .unwrap();
        produce(&node, &seq);
    }
    let (info, digest) = node.with_chain(|c| (c.info(), c.ledger().state().digest()));
    drop(node);
    let store = RedbStore::open(dir.path().join("c.redb")).unwrap();
    let chain = Chain::open(Box::new(store), g.clone()).unwrap();
    assert_eq!(chain.info(), info);
    assert_eq!(chain.ledger().state().digest(), digest);
    assert_eq!(chain.ledger().state().balance(&keys[1].address()), Amount::flock(10_007));

    // Another genesis on the same data dir is refused.
    drop(chain);
    let mut other = g;
    other.chain_id = "other-chain".into();
    let store = RedbStore::open(dir.path().join("c.redb")).unwrap();
    assert!(matches!(Chain::open(Box::new(store), other), Err(ChainError::GenesisMismatch { .. })));
}

#[test]
fn memory_and_redb_chains_agree_on_every_root() {
    let dir = tempfile::tempdir().unwrap();
    let (g, keys) = genesis();
    let mut a = Chain::open(Box::new(MemStore::new()), g.clone()).unwrap();
    let mut b =
        Chain::open(Box::new(RedbStore::open(dir.path().join("c.redb")).unwrap()), g).unwrap();
    assert_eq!(a.info(), b.info());
    let (node, seq, _) = node();
    for i in 0..12u64 {
        node.submit(tx(
            &keys[i as usize % 4],
            i / 4,
            TxKind::Burn { amount: Amount::flock(i + 1) },
        ))
        .unwrap();
        let block = seq.build(&node);
        node.apply_finalized(&block).unwrap();
        let ra = a.apply_finalized(&block).unwrap();
        let rb = b.apply_finalized(&block).unwrap();
        assert_eq!(ra.info, rb.info, "height {}", i + 1);
        assert_eq!(ra.info, node.with_chain(|c| c.info()));
    }
    assert_eq!(b.store().latest().unwrap().unwrap().height.0, 12);
}

#[test]
fn blocks_with_a_wrong_parent_root_or_seed_are_refused_untouched() {
    let (node, seq, keys) = node();
    node.submit(tx(&keys[0], 0, TxKind::Burn { amount: Amount::flock(1) })).unwrap();
    let block = seq.build(&node);
    let before = node.with_chain(|c| (c.info(), c.ledger().state().digest()));

    let mut bad = block.clone();
    bad.header.parent_state_root = Hash::of(b"lies");
    assert!(matches!(node.apply_finalized(&bad), Err(ChainError::ParentRootMismatch { .. })));

    let mut bad = block.clone();
    bad.header.seed = Hash::of(b"chosen by the proposer");
    assert!(matches!(node.apply_finalized(&bad), Err(ChainError::BadSeed { .. })));

    let mut bad = block.clone();
    bad.header.seed_proof = SeedProof::None;
    assert!(matches!(node.apply_finalized(&bad), Err(ChainError::BadSeed { .. })));

    let mut bad = block.clone();
    bad.txs[0].signature.0[0] ^= 1;
    bad.header.tx_root = flock_ledger::Block::compute_tx_root(&bad.txs);
    assert!(matches!(node.apply_finalized(&bad), Err(ChainError::Block(_))));

    assert_eq!(node.with_chain(|c| (c.info(), c.ledger().state().digest())), before);
    node.apply_finalized(&block).unwrap();
}

/// Consensus evidence carries the engine's signatures, which only a BFT validator can check: a
/// solo node refuses it at the mempool with a clear message, and nothing is slashed.
#[test]
fn a_solo_node_refuses_consensus_evidence() {
    use flock_ledger::{consensus::*, StakeTarget};
    let (node, seq, keys) = node();
    node.submit(tx(
        &keys[0],
        0,
        TxKind::Stake { target: StakeTarget::NETWORK, amount: Amount::flock(500) },
    ))
    .unwrap();
    produce(&node, &seq);
    let fault = ConsensusFault {
        offender: keys[0].public(),
        kind: FaultKind::ConflictingFinalize,
        epoch: 0,
        view: 3,
        proof: vec![7; 300],
    };
    let err = node
        .submit(tx(&keys[1], 0, TxKind::ConsensusEvidence { fault: Box::new(fault) }))
        .unwrap_err();
    assert_eq!(err.code(), "bad_evidence");
    assert!(err.to_string().contains("no consensus engine"), "{err}");
    assert_eq!(node.with_mempool(|mp| mp.len()), 0);
    // A dealer log (threshold-key resharing) needs an engine to check it, too.
    let err =
        node.submit(tx(&keys[1], 0, TxKind::DkgLog { round: 0, log: vec![1; 100] })).unwrap_err();
    assert_eq!(err.code(), "malformed");
    assert!(err.to_string().contains("no consensus engine"), "{err}");
    assert_eq!(node.with_mempool(|mp| mp.len()), 0);
    // With a check installed (what the BFT engine does), its verdict decides.
    node.set_evidence_check(flock_node::EvidenceCheck(std::sync::Arc::new(|f| {
        if f.view == 3 {
            Ok(())
        } else {
            Err("signature does not verify".into())
        }
    })));
    let mut fault = ConsensusFault {
        offender: keys[0].public(),
        kind: FaultKind::ConflictingFinalize,
        epoch: 0,
        view: 4,
        proof: vec![7; 300],
    };
    let err = node
        .submit(tx(&keys[1], 0, TxKind::ConsensusEvidence { fault: Box::new(fault.clone()) }))
        .unwrap_err();
    assert!(err.to_string().contains("signature does not verify"), "{err}");
    fault.view = 3;
    node.submit(tx(&keys[1], 0, TxKind::ConsensusEvidence { fault: Box::new(fault) })).unwrap();
    produce(&node, &seq);
    node.with_chain(|c| {
        let st = c.ledger().state();
        assert!(st.tombstone(&keys[0].address()).is_some());
        assert_eq!(st.own_stake(&keys[0].address(), &StakeTarget::NETWORK), Amount::flock(475));
    });
}

/// A proposer takes at most MAX_EVIDENCE_PER_BLOCK evidence transactions into one block (the
/// ledger refuses blocks with more), stopping at the first one over: the queue's order, and so
/// every sender's nonce order, is kept.
#[test]
fn the_mempool_takes_a_bounded_amount_of_evidence_per_block() {
    use flock_ledger::consensus::*;
    let (node, _seq, keys) = node();
    let evidence = |i: u64| {
        let k = Keypair::dev(&format!("reporter-{i}"));
        let fault = ConsensusFault {
            offender: keys[0].public(),
            kind: FaultKind::ConflictingNotarize,
            epoch: 0,
            view: i,
            proof: vec![1; 100],
        };
        tx(&k, 0, TxKind::ConsensusEvidence { fault: Box::new(fault) })
    };
    let transfer = |n: u64| {
        tx(&keys[1], n, TxKind::Transfer { to: keys[2].address(), amount: Amount::flock(1) })
    };
    let mut queue = vec![transfer(0)];
    queue.extend((0..12).map(evidence));
    queue.push(transfer(1));
    let taken = node.with_mempool(|mp| {
        mp.restore(queue);
        mp.take(1_000)
    });
    assert_eq!(taken.len(), 1 + MAX_EVIDENCE_PER_BLOCK);
    let rest = node.with_mempool(|mp| mp.take(1_000));
    assert_eq!(rest.len(), 12 - MAX_EVIDENCE_PER_BLOCK + 1);
    assert!(matches!(rest.last().unwrap().tx.kind, TxKind::Transfer { .. }));
}
