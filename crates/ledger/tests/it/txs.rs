//! Every transaction kind: its success path and each error path, with state untouched on error.

use crate::common::*;
use flock_ledger::{
    test_utils::{apply, next_block, sign},
    BlockError, ClaimFrom, Ledger, SignedTx, StakeTarget, TxError, TxKind, TxStatus,
};
use flock_primitives::{Amount, Keypair, Ppm};

/// Submits through the pending path (mempool admission) and asserts that an error leaves the
/// state bit-for-bit unchanged.
fn reject(l: &mut Ledger, k: &Keypair, kind: TxKind) -> TxError {
    let tx = send(l, k, kind);
    reject_tx(l, tx)
}

fn reject_tx(l: &mut Ledger, tx: SignedTx) -> TxError {
    let before = l.state().digest();
    let err = l.apply_pending_tx(&tx).expect_err("transaction should be rejected");
    assert_eq!(l.state().digest(), before, "state changed by a rejected tx ({err})");
    err
}

fn ok(l: &mut Ledger, k: &Keypair, kind: TxKind) {
    let tx = send(l, k, kind);
    ok_tx(l, tx)
}

fn ok_tx(l: &mut Ledger, tx: SignedTx) {
    let r = apply(l, vec![tx]).unwrap();
    assert_eq!(r.txs[0].status, TxStatus::Ok, "{:?}", r.txs[0]);
    assert_conserved(l);
}

fn nonce(l: &Ledger, k: &Keypair) -> u64 {
    l.state().account(&k.address()).nonce
}

fn send(l: &Ledger, k: &Keypair, kind: TxKind) -> SignedTx {
    sign(k, nonce(l, k), kind)
}

#[test]
fn transfer_moves_funds_and_rejects_overdraft() {
    let (mut l, k) = fresh();
    let (a, b) = (&k[0], &k[1]);
    ok(&mut l, a, TxKind::Transfer { to: b.address(), amount: flock(250) });
    assert_eq!(l.state().balance(&a.address()), flock(99_750));
    assert_eq!(l.state().balance(&b.address()), flock(100_250));

    let err = reject(&mut l, a, TxKind::Transfer { to: b.address(), amount: flock(1_000_000) });
    assert_eq!(err, TxError::InsufficientBalance { need: flock(1_000_000), have: flock(99_750) });
    assert!(err.to_string().contains("insufficient balance"));

    // In a block, a failing transaction consumes its nonce and nothing else.
    let before_a = l.state().balance(&a.address());
    let tx = send(&l, a, TxKind::Transfer { to: b.address(), amount: flock(1_000_000) });
    let r = apply(&mut l, vec![tx]).unwrap();
    assert!(
        matches!(&r.txs[0].status, TxStatus::Failed { code, .. } if code == "insufficient_balance")
    );
    assert!(r.txs[0].events.is_empty());
    assert_eq!(l.state().balance(&a.address()), before_a);
    assert_eq!(nonce(&l, a), 2);
    assert_conserved(&l);
}

#[test]
fn zero_amounts_are_refused() {
    let (mut l, k) = fresh();
    let err = reject(&mut l, &k[0], TxKind::Transfer { to: k[1].address(), amount: Amount::ZERO });
    assert_eq!(err, TxError::ZeroAmount);
}

#[test]
fn burn_destroys_and_counts() {
    let (mut l, k) = fresh();
    ok(&mut l, &k[0], TxKind::Burn { amount: flock(40) });
    assert_eq!(l.state().balance(&k[0].address()), flock(99_960));
    assert_eq!(l.globals().burned, flock(40));
    assert_eq!(l.globals().minted, flock(600_000));
    let err = reject(&mut l, &k[0], TxKind::Burn { amount: flock(200_000) });
    assert!(matches!(err, TxError::InsufficientBalance { .. }));
}

#[test]
fn signature_chain_id_nonce_and_size_are_checked() {
    let (mut l, k) = fresh();
    let good = send(&l, &k[0], TxKind::Transfer { to: k[1].address(), amount: flock(1) });

    let mut forged = good.clone();
    forged.tx.kind = TxKind::Transfer { to: k[1].address(), amount: flock(2) };
    assert_eq!(reject_tx(&mut l, forged.clone()), TxError::BadSignature);
    // A proposer including it makes the whole block invalid, and the state is untouched.
    let before = l.state().digest();
    let b = next_block(&l, vec![good.clone(), forged]);
    assert_eq!(
        l.apply_block(&b),
        Err(BlockError::InvalidTx { index: 1, error: TxError::BadSignature })
    );
    assert_eq!(l.state().digest(), before);

    let mut other_chain = good.tx.clone();
    other_chain.chain_id = "other".into();
    let err = reject_tx(&mut l, other_chain.sign(&k[0]));
    assert!(matches!(err, TxError::WrongChainId { .. }), "{err}");

    let gap = sign(&k[0], 5, TxKind::Transfer { to: k[1].address(), amount: flock(1) });
    assert!(matches!(reject_tx(&mut l, gap), TxError::NonceGap { expected: 0, got: 5, .. }));
    ok_tx(&mut l, good.clone());
    let err = reject_tx(&mut l, good.clone());
    assert!(matches!(err, TxError::NonceReplayed { expected: 1, got: 0, .. }), "{err}");
    let before = l.state().digest();
    assert!(matches!(
        l.apply_block(&next_block(&l, vec![good])),
        Err(BlockError::InvalidTx { index: 0, error: TxError::NonceReplayed { .. } })
    ));
    assert_eq!(l.state().digest(), before);

    let mut huge = send(&l, &k[0], TxKind::Burn { amount: flock(1) }).tx;
    huge.chain_id = "x".repeat(70_000);
    let err = reject_tx(&mut l, huge.sign(&k[0]));
    assert!(matches!(err, TxError::TooLarge { .. }), "{err}");

    assert!(matches!(SignedTx::decode(&[1, 2, 3], l.params()), Err(TxError::Malformed(_))));
    assert!(matches!(
        SignedTx::decode(&vec![0; 70_000], l.params()),
        Err(TxError::TooLarge { .. })
    ));
}

#[test]
fn stake_rules() {
    let (mut l, k) = fresh();
    let a = &k[0];
    let net = StakeTarget::NETWORK;
    let err = reject(&mut l, a, TxKind::Stake { target: net, amount: flock(50) });
    assert_eq!(err, TxError::BelowMinimum { target: net, min: flock(100), got: flock(50) });
    let nowhere = StakeTarget { task: 99, role: flock_ledger::Role::Validator };
    assert_eq!(
        reject(&mut l, a, TxKind::Stake { target: nowhere, amount: flock(50) }),
        TxError::UnknownTarget(nowhere)
    );
    let err = reject(&mut l, a, TxKind::Stake { target: net, amount: flock(200_000) });
    assert!(matches!(err, TxError::InsufficientBalance { .. }));

    ok(&mut l, a, TxKind::Stake { target: TASK, amount: flock(20) });
    assert_eq!(l.state().own_stake(&a.address(), &TASK), flock(20));
    assert_eq!(l.state().targets.get(&TASK).unwrap().total_stake, flock(20));
    // One role per task.
    let err = reject(&mut l, a, TxKind::Stake { target: TASK_VALIDATOR, amount: flock(20) });
    assert_eq!(err, TxError::RoleConflict { task: 7, existing: flock_ledger::Role::TrainingNode });

    // Unstake: more than staked, leaving dust below the minimum, then all of it.
    let err = reject(&mut l, a, TxKind::Unstake { target: TASK, amount: flock(21) });
    assert!(matches!(err, TxError::InsufficientStake { .. }));
    let err = reject(&mut l, a, TxKind::Unstake { target: TASK, amount: flock(15) });
    assert!(matches!(err, TxError::BelowMinimum { got, .. } if got == flock(5)));
    let before = l.state().balance(&a.address());
    ok(&mut l, a, TxKind::Unstake { target: TASK, amount: flock(20) });
    assert_eq!(l.state().own_stake(&a.address(), &TASK), Amount::ZERO);
    assert_eq!(l.state().balance(&a.address()), before, "unbonding funds are not spendable");
    assert_eq!(l.state().unbonding_of(&a.address()).len(), 1);
    advance(&mut l, 4);
    assert_eq!(l.state().balance(&a.address()), before);
    advance(&mut l, 1);
    assert_eq!(l.state().balance(&a.address()), before.checked_add(flock(20)).unwrap());
    assert!(l.state().unbonding_of(&a.address()).is_empty());
    assert_conserved(&l);

    // Locked targets refuse unstaking until they unlock.
    ok(&mut l, &k[1], TxKind::Stake { target: LOCKED, amount: flock(10) });
    let err = reject(&mut l, &k[1], TxKind::Unstake { target: LOCKED, amount: flock(10) });
    assert!(matches!(err, TxError::StakeLocked { until, .. } if until.0 == 1_000), "{err}");

    // Closed targets take no new stake.
    let mut info = l.state().targets.get(&TASK).unwrap().clone();
    info.open = false;
    l.state_mut().register_target(TASK, info);
    l.state_mut().clear_undo();
    assert_eq!(
        reject(&mut l, &k[2], TxKind::Stake { target: TASK, amount: flock(20) }),
        TxError::TargetClosed(TASK)
    );
}

#[test]
fn share_rules() {
    let (mut l, k) = fresh();
    let op = &k[0];
    let err = reject(&mut l, op, TxKind::SetShare { share: Ppm::percent(10).unwrap() });
    assert_eq!(err, TxError::NotAnOperator(op.address()));
    ok(&mut l, op, TxKind::Stake { target: TASK, amount: flock(100) });
    let err = reject(&mut l, op, TxKind::SetShare { share: Ppm::percent(95).unwrap() });
    assert!(matches!(err, TxError::ShareOutOfRange { .. }));
    ok(&mut l, op, TxKind::SetShare { share: Ppm::percent(10).unwrap() });
    let opened_at = l.height();
    let err = reject(&mut l, op, TxKind::SetShare { share: Ppm::percent(20).unwrap() });
    assert_eq!(err, TxError::ShareCooldown { until: opened_at.saturating_add(20) });
    advance(&mut l, 20);
    // A freeze window around a task deadline blocks the change too.
    let mut info = l.state().targets.get(&TASK).unwrap().clone();
    let now = l.height();
    info.share_freeze = Some((now, now.saturating_add(10)));
    l.state_mut().register_target(TASK, info);
    l.state_mut().clear_undo();
    let err = reject(&mut l, op, TxKind::SetShare { share: Ppm::percent(20).unwrap() });
    assert!(matches!(err, TxError::ShareFrozen { .. }), "{err}");
    advance(&mut l, 10);
    ok(&mut l, op, TxKind::SetShare { share: Ppm::percent(20).unwrap() });
    assert_eq!(l.state().pools.get(&op.address()).unwrap().share, Ppm::percent(20).unwrap());
}

#[test]
fn delegation_rules() {
    let (mut l, k) = fresh();
    let (op, d) = (&k[0], &k[1]);
    let err = reject(&mut l, d, TxKind::Delegate { operator: op.address(), amount: flock(10) });
    assert_eq!(err, TxError::NoSuchPool(op.address()));
    ok(&mut l, op, TxKind::Stake { target: TASK, amount: flock(100) });
    ok(&mut l, op, TxKind::SetShare { share: Ppm::percent(10).unwrap() });
    let err = reject(&mut l, d, TxKind::Delegate { operator: op.address(), amount: Amount(5) });
    assert!(matches!(err, TxError::BelowMinDelegation { .. }));
    ok(&mut l, d, TxKind::Delegate { operator: op.address(), amount: flock(50) });
    assert_eq!(l.state().delegation_value(&op.address(), &d.address()), flock(50));
    assert_eq!(l.state().delegated_to(&op.address(), &TASK), flock(50));

    // Undelegating within the lock after a deposit is refused.
    let err = reject(&mut l, d, TxKind::Undelegate { operator: op.address(), amount: flock(10) });
    assert!(matches!(err, TxError::DelegationLocked { .. }), "{err}");
    advance(&mut l, 3);
    let err = reject(&mut l, d, TxKind::Undelegate { operator: op.address(), amount: flock(51) });
    assert!(matches!(err, TxError::InsufficientDelegation { .. }));
    let bal = l.state().balance(&d.address());
    // A partial withdrawal leaves exactly the rest (shares burned with exact rounding).
    ok(&mut l, d, TxKind::Undelegate { operator: op.address(), amount: flock(20) });
    assert_eq!(l.state().delegation_value(&op.address(), &d.address()), flock(30));
    ok(&mut l, d, TxKind::Undelegate { operator: op.address(), amount: flock(30) });
    assert_eq!(l.state().delegation_value(&op.address(), &d.address()), Amount::ZERO);
    assert_eq!(l.state().balance(&d.address()), bal);
    advance(&mut l, 5);
    assert_eq!(l.state().balance(&d.address()), bal.checked_add(flock(50)).unwrap());
    assert!(l.state().delegations.is_empty(), "an emptied delegation leaves no record");
    assert_conserved(&l);
}

#[test]
fn claim_with_nothing_is_refused() {
    let (mut l, k) = fresh();
    assert_eq!(
        reject(&mut l, &k[0], TxKind::Claim { from: ClaimFrom::Own }),
        TxError::NothingToClaim
    );
    let err =
        reject(&mut l, &k[0], TxKind::Claim { from: ClaimFrom::Pool { operator: k[1].address() } });
    assert_eq!(err, TxError::NoSuchPool(k[1].address()));
}

#[test]
fn invalid_blocks_are_refused_whole() {
    let (mut l, k) = fresh();
    let before = l.state().digest();
    let tx = send(&l, &k[0], TxKind::Burn { amount: flock(1) });
    let mut b = next_block(&l, vec![tx.clone()]);
    b.header.height = flock_primitives::Height(5);
    assert!(matches!(l.apply_block(&b), Err(BlockError::WrongHeight { .. })));
    let mut b = next_block(&l, vec![tx.clone()]);
    b.header.parent_hash = flock_primitives::Hash::of(b"nope");
    assert!(matches!(l.apply_block(&b), Err(BlockError::WrongParent { .. })));
    let mut b = next_block(&l, vec![tx.clone()]);
    b.header.tx_root = flock_primitives::Hash::ZERO;
    assert_eq!(l.apply_block(&b), Err(BlockError::BadTxRoot));
    let mut b = next_block(&l, vec![tx.clone()]);
    b.header.time_ms = 0;
    assert!(matches!(l.apply_block(&b), Err(BlockError::TimeWentBack { .. })));
    let mut b = next_block(&l, vec![tx]);
    b.header.chain_id = "x".into();
    assert!(matches!(l.apply_block(&b), Err(BlockError::WrongChainId { .. })));
    assert_eq!(l.state().digest(), before);
}
