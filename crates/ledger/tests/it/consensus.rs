//! Consensus evidence (slash and tombstone a network validator) and validator sets recorded at
//! epoch boundaries from the network stakes.

use crate::common::*;
use flock_ledger::{
    consensus::{ConsensusFault, FaultKind, MAX_FAULT_PROOF_BYTES},
    test_utils::{apply, sign},
    Event, Ledger, Params, SignedTx, StakeTarget, TxError, TxKind, TxStatus,
};
use flock_primitives::{Amount, Keypair, Ppm};

const NET: StakeTarget = StakeTarget::NETWORK;

fn send(l: &Ledger, k: &Keypair, kind: TxKind) -> SignedTx {
    sign(k, l.state().account(&k.address()).nonce, kind)
}

fn run(l: &mut Ledger, k: &Keypair, kind: TxKind) -> Vec<Event> {
    let tx = send(l, k, kind);
    let r = apply(l, vec![tx]).unwrap();
    assert_eq!(r.txs[0].status, TxStatus::Ok, "{:?}", r.txs[0].status);
    assert_conserved(l);
    r.txs[0].events.clone()
}

fn reject(l: &mut Ledger, k: &Keypair, kind: TxKind) -> TxError {
    let tx = send(l, k, kind);
    let before = l.state().digest();
    let err = l.apply_pending_tx(&tx).expect_err("transaction should be rejected");
    assert_eq!(l.state().digest(), before, "state changed by a rejected tx ({err})");
    err
}

fn fault(offender: &Keypair, view: u64) -> TxKind {
    TxKind::ConsensusEvidence {
        fault: Box::new(ConsensusFault {
            offender: offender.public(),
            kind: FaultKind::ConflictingNotarize,
            epoch: 0,
            view,
            proof: vec![0xab; 264],
        }),
    }
}

#[test]
fn evidence_slashes_stake_unbonding_and_delegators_once_and_tombstones() {
    let (mut l, k) = fresh();
    let (val, reporter, delegator) = (&k[0], &k[1], &k[2]);
    run(&mut l, val, TxKind::Stake { target: NET, amount: flock(10_000) });
    run(&mut l, val, TxKind::SetShare { share: Ppm::percent(20).unwrap() });
    run(&mut l, delegator, TxKind::Delegate { operator: val.address(), amount: flock(2_000) });
    // Part of the stake is unbonding when the evidence lands: it is slashed too.
    run(&mut l, val, TxKind::Unstake { target: NET, amount: flock(4_000) });
    let reporter_before = l.state().balance(&reporter.address());
    let burned_before = l.globals().burned;

    let events = run(&mut l, reporter, fault(val, 17));
    let slashed = events
        .iter()
        .find_map(|e| match e {
            Event::Slashed { from_stake, from_unbonding, from_delegators, to_reporter, .. } => {
                Some((*from_stake, *from_unbonding, *from_delegators, *to_reporter))
            }
            _ => None,
        })
        .expect("a Slashed event");
    // consensus_fault_slash 5%: 6,000 bonded, 4,000 unbonding, 2,000 delegated.
    assert_eq!(slashed.0, flock(300));
    assert_eq!(slashed.1, flock(200));
    assert_eq!(slashed.2, flock(100));
    // The reporter gets slash_reporter = 10% of the 600 taken.
    assert_eq!(slashed.3, flock(60));
    assert_eq!(l.state().balance(&reporter.address()), Amount(reporter_before.0 + flock(60).0));
    // slash_pool 50% goes to the community pool; the rest (40%) is burned.
    assert_eq!(l.globals().burned, Amount(burned_before.0 + flock(240).0));
    assert_eq!(l.state().own_stake(&val.address(), &NET), flock(5_700));
    let t = l.state().tombstone(&val.address()).expect("tombstoned");
    assert_eq!((t.view, t.reporter, t.slashed), (17, reporter.address(), flock(600)));

    // Later evidence (another view, another reporter) is refused: slashed once.
    let err = reject(&mut l, &k[3], fault(val, 18));
    assert!(matches!(err, TxError::Tombstoned { .. }), "{err}");
    assert_eq!(err.code(), "tombstoned");
    // It can never bond network stake again (other roles stay open).
    let err = reject(&mut l, val, TxKind::Stake { target: NET, amount: flock(1_000) });
    assert_eq!(err.code(), "tombstoned");
    run(&mut l, val, TxKind::Stake { target: TASK, amount: flock(100) });
    // It drops out of the staked validator set.
    assert!(l.state().network_validators(l.params()).iter().all(|m| m.address != val.address()));
}

#[test]
fn bad_evidence_is_refused_with_state_untouched() {
    let (mut l, k) = fresh();
    let (val, reporter) = (&k[0], &k[1]);
    // No network stake: nothing to slash, and no tombstone.
    let err = reject(&mut l, reporter, fault(val, 1));
    assert_eq!(err.code(), "bad_evidence");
    assert!(err.to_string().contains("no network stake"), "{err}");
    run(&mut l, val, TxKind::Stake { target: NET, amount: flock(1_000) });
    // A validator cannot report itself (and collect the reporter's share).
    assert_eq!(reject(&mut l, val, fault(val, 1)).code(), "bad_evidence");
    // Proofs must be bounded and non-empty (checked before any state is read).
    for len in [0, MAX_FAULT_PROOF_BYTES + 1] {
        let mut kind = fault(val, 1);
        if let TxKind::ConsensusEvidence { fault } = &mut kind {
            fault.proof = vec![1; len];
        }
        let tx = send(&l, reporter, kind);
        let err = tx.check_stateless(&l.globals().chain_id, l.params()).unwrap_err();
        assert_eq!(err.code(), "bad_evidence", "{len} bytes");
    }
    // In a block, refused evidence is a failed receipt with no effect but the nonce.
    let before = l.state().own_stake(&val.address(), &NET);
    let tx = send(&l, val, fault(val, 2));
    let r = apply(&mut l, vec![tx]).unwrap();
    assert!(matches!(r.txs[0].status, TxStatus::Failed { ref code, .. } if code == "bad_evidence"));
    assert_eq!(l.state().own_stake(&val.address(), &NET), before);
    assert!(l.state().tombstone(&val.address()).is_none());
    assert_conserved(&l);
}

#[test]
fn validator_sets_follow_network_stakes_at_epoch_boundaries() {
    let p = Params { max_network_validators: 3, ..params() };
    let (mut l, k) = fresh_with(p);
    assert_eq!(l.state().validator_set(1), None, "no epoch has ended");
    // k0..k4 bond 500, 300, 300, 50 (below min 100), 200; k5 delegates 150 to k4.
    for (i, amount) in [(0, 500), (1, 300), (2, 300), (3, 50), (4, 200)] {
        if amount >= 100 {
            run(&mut l, &k[i], TxKind::Stake { target: NET, amount: flock(amount) });
        } else {
            let err = reject(&mut l, &k[i], TxKind::Stake { target: NET, amount: flock(amount) });
            assert_eq!(err.code(), "below_minimum");
        }
    }
    run(&mut l, &k[4], TxKind::SetShare { share: Ppm::percent(10).unwrap() });
    run(&mut l, &k[5], TxKind::Delegate { operator: k[4].address(), amount: flock(150) });
    // Epoch 0 ends at height 10: the set of epoch 1 is recorded.
    let h = l.height().0;
    advance(&mut l, 10 - h);
    let set = l.state().validator_set(1).expect("recorded at the boundary");
    let got: Vec<_> = set.iter().map(|m| (m.address, m.weight())).collect();
    // By weight (own + delegated), ties by address, at most 3.
    let (a1, a2) = if k[1].address() < k[2].address() { (1, 2) } else { (2, 1) };
    assert_eq!(
        got,
        vec![
            (k[0].address(), flock(500)),
            (k[4].address(), flock(350)),
            (k[a1].address(), flock(300)),
        ]
    );
    assert_eq!(set, l.state().network_validators(l.params()));
    // k0 unbonds everything: it is out of the next epoch's set; k[a2] moves in.
    run(&mut l, &k[0], TxKind::Unstake { target: NET, amount: flock(500) });
    let h = l.height().0;
    advance(&mut l, 20 - h);
    let next: Vec<_> = l.state().validator_set(2).unwrap().iter().map(|m| m.address).collect();
    assert_eq!(next, vec![k[4].address(), k[a1].address(), k[a2].address()]);
    // Epoch 1's record is kept.
    assert_eq!(l.state().validator_set(1).unwrap(), set);
}

#[test]
fn a_block_carries_a_bounded_amount_of_evidence() {
    use flock_ledger::{consensus::MAX_EVIDENCE_PER_BLOCK, test_utils::next_block, BlockError};
    let (mut l, k) = fresh();
    let txs: Vec<SignedTx> = (0..=MAX_EVIDENCE_PER_BLOCK as u64)
        .map(|i| sign(&Keypair::dev(&format!("r{i}")), 0, fault(&k[0], i)))
        .collect();
    let before = l.state().digest();
    let block = next_block(&l, txs.clone());
    let err = l.apply_block(&block).unwrap_err();
    assert!(matches!(err, BlockError::TooMuchEvidence { got, max } if got == max + 1), "{err}");
    assert_eq!(l.state().digest(), before);
    // At the limit the block is valid (the evidence fails: nothing at stake).
    let block = next_block(&l, txs[..MAX_EVIDENCE_PER_BLOCK].to_vec());
    let r = l.apply_block(&block).unwrap();
    assert!(r.txs.iter().all(|t| matches!(t.status, TxStatus::Failed { .. })));
}

#[test]
fn consensus_endpoints_are_validated_and_recorded_in_validator_sets() {
    let (mut l, k) = fresh_with(params());
    for bad in ["", "localhost:80", "10.0.0.1", "10.0.0.1:99999", &"1".repeat(65)] {
        let err = reject(&mut l, &k[0], TxKind::ConsensusRegister { endpoint: bad.into() });
        assert_eq!(err.code(), "malformed", "{bad:?}");
    }
    run(&mut l, &k[0], TxKind::Stake { target: NET, amount: flock(500) });
    run(&mut l, &k[1], TxKind::Stake { target: NET, amount: flock(300) });
    run(&mut l, &k[0], TxKind::ConsensusRegister { endpoint: "10.0.0.1:7000".into() });
    // Moving: the latest endpoint counts.
    run(&mut l, &k[0], TxKind::ConsensusRegister { endpoint: "[::1]:7001".into() });
    let e = l.state().consensus_endpoint(&k[0].address()).unwrap();
    assert_eq!((e.key, e.endpoint.as_str()), (k[0].public(), "[::1]:7001"));
    let h = l.height().0;
    advance(&mut l, 10 - h);
    let set = l.state().validator_set(1).unwrap();
    let keys: Vec<_> = set.iter().map(|m| (m.address, m.key)).collect();
    // k1 staked but registered no endpoint: in the set, without a consensus key.
    assert_eq!(keys, vec![(k[0].address(), Some(k[0].public())), (k[1].address(), None)]);
}

#[test]
fn dealer_logs_are_bounded_one_per_dealer_and_only_in_their_epoch() {
    let (mut l, k) = fresh_with(params());
    let log = |round: u64, len: usize| TxKind::DkgLog { round, log: vec![7; len] };
    let too_big = flock_ledger::consensus::MAX_DKG_LOG_BYTES + 1;
    assert_eq!(reject(&mut l, &k[0], log(0, 0)).code(), "malformed");
    assert_eq!(reject(&mut l, &k[0], log(0, too_big)).code(), "malformed");
    // Height 1..=10 is epoch 0: a log for round 1 is early.
    assert_eq!(reject(&mut l, &k[0], log(1, 100)).code(), "malformed");
    run(&mut l, &k[0], log(0, 100));
    assert_eq!(reject(&mut l, &k[0], log(0, 50)).code(), "malformed", "a second log");
    run(&mut l, &k[1], log(0, 60));
    let logs = l.state().dkg_logs(0);
    assert_eq!(logs.len(), 2);
    assert!(logs.contains(&(k[0].address(), vec![7; 100])));
    assert!(l.state().has_dkg_log(0, &k[0].address()));
    assert!(!l.state().has_dkg_log(0, &k[2].address()));
    assert!(!l.state().has_dkg_log(1, &k[0].address()));
    let h = l.height().0;
    advance(&mut l, 10 - h);
    // Round 0 is decided: a late log is refused; round 1 takes logs now.
    assert_eq!(reject(&mut l, &k[2], log(0, 10)).code(), "malformed");
    run(&mut l, &k[2], log(1, 10));
    assert_eq!(l.state().dkg_logs(0).len(), 2);
    assert_eq!(l.state().dkg_logs(1), vec![(k[2].address(), vec![7; 10])]);
}
