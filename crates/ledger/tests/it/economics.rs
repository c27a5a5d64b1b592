//! Money math with hand-computed expected values.

use crate::common::*;
use flock_ledger::{
    emission::scheduled_emission,
    test_utils::{apply, sign},
    ClaimFrom, EmissionSink, Event, Ledger, Params, State, TxKind, TxStatus, Vesting,
};
use flock_primitives::{Amount, Height, Keypair, Ppm};
use std::sync::Arc;

fn run(l: &mut Ledger, k: &Keypair, kind: TxKind) -> Vec<Event> {
    let tx = sign(k, l.state().account(&k.address()).nonce, kind);
    let r = apply(l, vec![tx]).unwrap();
    assert_eq!(r.txs[0].status, TxStatus::Ok, "{:?}", r.txs[0].status);
    assert_conserved(l);
    r.txs[0].events.clone()
}

/// Funds a reward the way a product would: out of the community pool.
fn reward(l: &mut Ledger, op: &Keypair, amount: Amount, v: Vesting) {
    let now = l.height();
    let s = l.state_mut();
    s.update_globals(|g| g.community_pool = g.community_pool.checked_sub(amount).unwrap());
    s.pay_reward(&op.address(), &TASK, amount, v, now, &mut Vec::new()).unwrap();
    s.clear_undo();
    assert_conserved(l);
}

fn fund_community(l: &mut Ledger, amount: Amount) {
    // Emission fills the community pool: run whole epochs until it holds enough.
    while l.globals().community_pool < amount {
        advance(l, 1);
    }
}

/// Operator with own stake 3,000 and delegation 1,000 at one target, σ = 40%.
fn operator_with_pool() -> (Ledger, Vec<Keypair>) {
    let p = Params { reward_per_epoch: flock(100_000), ..params() };
    let (mut l, k) = fresh_with(p);
    run(&mut l, &k[0], TxKind::Stake { target: TASK, amount: flock(3_000) });
    run(&mut l, &k[0], TxKind::SetShare { share: Ppm::percent(40).unwrap() });
    run(&mut l, &k[1], TxKind::Delegate { operator: k[0].address(), amount: flock(1_000) });
    fund_community(&mut l, flock(100_000));
    (l, k)
}

#[test]
fn delegators_get_flocks_worked_example() {
    // docs.flock.io delegator example: f = 58,084; 1 − σ = 0.6; t_n = 3,000; t_d = 1,000
    // → delegators 8,712.6 FLOCK.
    let (mut l, k) = operator_with_pool();
    reward(&mut l, &k[0], flock(58_084), Vesting::NONE);
    let pool = l.state().pools.get(&k[0].address()).unwrap().clone();
    assert_eq!(pool.reward_balance, "8712.6".parse().unwrap());
    assert_eq!(l.state().claimable_own(&k[0].address(), l.height()), "49371.4".parse().unwrap());

    // Operator claims: 8% fee burned.
    let burned_before = l.globals().burned;
    let ev = run(&mut l, &k[0], TxKind::Claim { from: ClaimFrom::Own });
    let Some(Event::Claimed { gross, fee, net, .. }) = ev.last() else { panic!("{ev:?}") };
    assert_eq!(*gross, "49371.4".parse().unwrap());
    assert_eq!(*fee, "3949.712".parse().unwrap());
    assert_eq!(*net, "45421.688".parse().unwrap());
    assert_eq!(l.globals().burned, burned_before.checked_add(*fee).unwrap());

    // The only delegator claims the whole pool reward: 14.5% fee.
    let ev =
        run(&mut l, &k[1], TxKind::Claim { from: ClaimFrom::Pool { operator: k[0].address() } });
    let Some(Event::Claimed { gross, fee, net, .. }) = ev.last() else { panic!("{ev:?}") };
    assert_eq!(*gross, "8712.6".parse().unwrap());
    assert_eq!(*fee, "1263.327".parse().unwrap());
    assert_eq!(*net, "7449.273".parse().unwrap());
    assert_eq!(l.state().pools.get(&k[0].address()).unwrap().reward_balance, Amount::ZERO);
}

#[test]
fn pool_rewards_follow_amount_times_time() {
    let (mut l, k) = fresh_with(Params { reward_per_epoch: flock(100_000), ..params() });
    run(&mut l, &k[0], TxKind::Stake { target: TASK, amount: flock(1_000) });
    run(&mut l, &k[0], TxKind::SetShare { share: Ppm::ZERO });
    run(&mut l, &k[1], TxKind::Delegate { operator: k[0].address(), amount: flock(100) });
    let t1 = l.height();
    advance(&mut l, 9);
    run(&mut l, &k[2], TxKind::Delegate { operator: k[0].address(), amount: flock(100) });
    let t2 = l.height();
    assert_eq!(t2.0 - t1.0, 10);
    advance(&mut l, 9);
    // Reward at t2 + 10 = t1 + 20: delegator 1 has 100 × 20, delegator 2 has 100 × 10.
    fund_community(&mut l, flock(100_000));
    let now = l.height();
    let span1 = now.0 - t1.0;
    let span2 = now.0 - t2.0;
    reward(&mut l, &k[0], flock(1_200), Vesting::NONE);
    // σ = 0: the delegation-attributable part is 1,200 × 200 / 1,200 = 200.
    let pool = l.state().pools.get(&k[0].address()).unwrap().clone();
    assert_eq!(pool.reward_balance, flock(200));
    let c1 = l.state().claimable_pool(&k[0].address(), &k[1].address(), now);
    let c2 = l.state().claimable_pool(&k[0].address(), &k[2].address(), now);
    let expect1 = flock(200).mul_div(u128::from(span1), u128::from(span1 + span2)).unwrap();
    assert_eq!(c1, expect1);
    assert!(c2 <= Amount(flock(200).0 - expect1.0));
    assert!(Amount(flock(200).0 - c1.0 - c2.0) <= Amount(1), "dust at most one base unit");
}

#[test]
fn vesting_pays_delta_now_and_the_rest_later() {
    let (mut l, k) = operator_with_pool();
    let release = l.height().saturating_add(30);
    let v = Vesting { immediate: Ppm::percent(10).unwrap(), release_at: release };
    reward(&mut l, &k[0], flock(58_084), v);
    let me = k[0].address();
    assert_eq!(l.state().claimable_own(&me, l.height()), "4937.14".parse().unwrap());
    assert_eq!(l.state().vesting_own(&me, l.height()), "44434.26".parse().unwrap());
    run(&mut l, &k[0], TxKind::Claim { from: ClaimFrom::Own });
    let tx = sign(&k[0], l.state().account(&me).nonce, TxKind::Claim { from: ClaimFrom::Own });
    assert!(l.clone().apply_pending_tx(&tx).is_err(), "vested rewards are not claimable early");
    while l.height() < release {
        advance(&mut l, 1);
    }
    let ev = run(&mut l, &k[0], TxKind::Claim { from: ClaimFrom::Own });
    let Some(Event::Claimed { gross, .. }) = ev.last() else { panic!() };
    assert_eq!(*gross, "44434.26".parse().unwrap());
}

#[test]
fn slash_reaches_delegators_pro_rata_and_splits_proceeds() {
    let (mut l, k) = operator_with_pool();
    let (op, reporter) = (k[0].address(), k[5].address());
    let burned = l.globals().burned;
    let rep_bal = l.state().balance(&reporter);
    let p = l.params().clone();
    let out = l
        .state_mut()
        .slash(
            &op,
            &TASK,
            Ppm::percent(10).unwrap(),
            Some(&reporter),
            "missed reveal",
            &p,
            &mut Vec::new(),
        )
        .unwrap();
    l.state_mut().clear_undo();
    // Own 3,000 → 300; delegation 1,000 → 100; total 400: 10% reporter, 50% pool, 40% burn.
    assert_eq!(out.total, flock(400));
    assert_eq!(out.to_reporter, flock(40));
    assert_eq!(out.to_pool, flock(200));
    assert_eq!(out.burned, flock(160));
    assert_eq!(l.state().own_stake(&op, &TASK), flock(2_700));
    assert_eq!(l.state().delegation_value(&op, &k[1].address()), flock(900));
    assert_eq!(l.state().balance(&reporter), rep_bal.checked_add(flock(40)).unwrap());
    assert_eq!(l.state().task_pools.get(&TASK.task).copied(), Some(flock(200)));
    assert_eq!(l.globals().burned, burned.checked_add(flock(160)).unwrap());
    assert_conserved(&l);

    // Unbonding stake from the slashed target is slashable too.
    run(&mut l, &k[0], TxKind::Unstake { target: TASK, amount: flock(1_000) });
    let out = l
        .state_mut()
        .slash(&op, &TASK, Ppm::percent(50).unwrap(), None, "equivocation", &p, &mut Vec::new())
        .unwrap();
    l.state_mut().clear_undo();
    // Own 1,700 → 850; unbonding 1,000 → 500; delegation 900 → 450. No reporter: its share burns.
    assert_eq!(out.total, flock(1_800));
    assert_eq!(out.to_reporter, Amount::ZERO);
    assert_eq!(out.to_pool, flock(900));
    assert_eq!(out.burned, flock(900));
    assert_eq!(l.state().unbonding_of(&op)[0].1, flock(500));
    assert_conserved(&l);
}

#[test]
fn a_deposit_too_large_for_a_deeply_slashed_pool_fails_as_a_transaction_not_a_block() {
    // Found by the supply property test: three 99.9999% slashes leave the pool's 1,000 FLOCK of
    // shares backed by 1,000 wei, so one FLOCK buys 10^36 shares and 1,000 FLOCK would need
    // 10^39 (over u128). That deposit must fail with a typed error inside an applied block; it
    // used to fail the whole block as an internal error, which halts a chain.
    let (mut l, k) = operator_with_pool();
    let (op, delegator) = (k[0].address(), k[2].address());
    let p = l.params().clone();
    for _ in 0..3 {
        let r = Ppm::from_ppm(999_999).unwrap();
        l.state_mut().slash(&op, &TASK, r, None, "test", &p, &mut Vec::new()).unwrap();
        l.state_mut().clear_undo();
    }
    let pool = l.state().pools.get(&op).unwrap().clone();
    assert_eq!(pool.total_amount, Amount(1_000));
    let balance = l.state().balance(&delegator);
    let tx = sign(&k[2], 0, TxKind::Delegate { operator: op, amount: flock(1_000) });
    let r = apply(&mut l, vec![tx]).expect("the block applies");
    let TxStatus::Failed { code, message } = &r.txs[0].status else { panic!("{:?}", r.txs[0]) };
    assert_eq!(code, "pool_share_limit", "{message}");
    assert!(message.contains("delegate less"), "{message}");
    assert_eq!(l.state().balance(&delegator), balance);
    assert_eq!(l.state().pools.get(&op).unwrap().total_shares, pool.total_shares);
    assert_conserved(&l);
    // A smaller deposit into the same pool still works and is valued fairly.
    run(&mut l, &k[2], TxKind::Delegate { operator: op, amount: flock(1) });
    assert_eq!(l.state().delegation_value(&op, &delegator), flock(1));
}

#[test]
fn emission_decays_and_stops_at_the_cap() {
    let p = Params { reward_per_epoch: flock(1_000), decay_period_epochs: 2, ..params() };
    assert_eq!(scheduled_emission(&p, 2), flock(900));
    // Cap = genesis allocations (600,000) + 2,500: epochs mint 1,000, 1,000, then 500 and stop.
    let p = Params { supply_cap: flock(602_500), ..p };
    let (mut l, _) = fresh_with(p);
    advance(&mut l, 10);
    assert_eq!(l.globals().community_pool, flock(1_000));
    advance(&mut l, 10);
    assert_eq!(l.globals().community_pool, flock(2_000));
    advance(&mut l, 10);
    assert_eq!(l.globals().community_pool, flock(2_500));
    assert_eq!(l.globals().minted, flock(602_500));
    advance(&mut l, 30);
    assert_eq!(l.globals().minted, flock(602_500), "the cap is never passed");
    assert_conserved(&l);
}

#[derive(Debug)]
struct ThirdsSink;

impl EmissionSink for ThirdsSink {
    fn name(&self) -> &'static str {
        "test"
    }
    fn weights(&self, _: &State, _: &Params) -> Vec<(u64, u128)> {
        vec![(1, 1), (2, 2)]
    }
    fn credit(
        &self,
        state: &mut State,
        _: &Params,
        id: u64,
        amount: Amount,
        _: Height,
        _: &mut Vec<Event>,
    ) -> Result<(), flock_ledger::TxError> {
        state.credit_task_pool(id, amount)
    }
}

#[test]
fn emission_splits_by_weight_and_remainder_goes_to_the_community_pool() {
    let p = Params { reward_per_epoch: Amount(1_000), ..params() };
    let (mut l, _) = fresh_with(p);
    l.register_sink(Arc::new(ThirdsSink));
    advance(&mut l, 10);
    assert_eq!(l.state().task_pools.get(&1).copied(), Some(Amount(333)));
    assert_eq!(l.state().task_pools.get(&2).copied(), Some(Amount(666)));
    assert_eq!(l.globals().community_pool, Amount(1));
    assert_conserved(&l);
}
