//! Property tests: supply conservation, the cap, determinism, write-set correctness.

use crate::common::*;
use flock_ledger::{
    test_utils::{next_block, sign},
    ClaimFrom, Ledger, Params, Role, StakeTarget, TxKind, Vesting,
};
use flock_primitives::{Amount, Keypair, Ppm};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Transfer(usize, usize, u64),
    Burn(usize, u64),
    Stake(usize, bool, u64),
    Unstake(usize, bool, u64),
    SetShare(usize, u32),
    Delegate(usize, usize, u64),
    Undelegate(usize, usize, u64),
    Claim(usize),
    ClaimPool(usize, usize),
    /// Product actions between blocks (funded from the community pool).
    Reward(usize, u64, bool),
    Slash(usize, u32, Option<usize>),
    EndBlock,
}

const N: usize = 5;

fn op() -> impl Strategy<Value = Op> {
    let a = 0..N;
    let amt = prop_oneof![4 => 1u64..50, 4 => 50u64..5_000, 1 => Just(u64::MAX / 4)];
    // Operators are accounts 0 and 1, so pools exist often enough to exercise delegation.
    let ops = 0..2usize;
    prop_oneof![
        2 => (a.clone(), 0..N, amt.clone()).prop_map(|(x, y, v)| Op::Transfer(x, y, v)),
        1 => (a.clone(), amt.clone()).prop_map(|(x, v)| Op::Burn(x, v)),
        4 => (a.clone(), any::<bool>(), amt.clone()).prop_map(|(x, t, v)| Op::Stake(x, t, v)),
        2 => (a.clone(), any::<bool>(), amt.clone()).prop_map(|(x, t, v)| Op::Unstake(x, t, v)),
        3 => (ops.clone(), 0u32..1_200_000).prop_map(|(x, s)| Op::SetShare(x, s)),
        4 => (a.clone(), ops.clone(), amt.clone()).prop_map(|(x, y, v)| Op::Delegate(x, y, v)),
        2 => (a.clone(), ops.clone(), amt).prop_map(|(x, y, v)| Op::Undelegate(x, y, v)),
        1 => a.clone().prop_map(Op::Claim),
        2 => (a.clone(), ops.clone()).prop_map(|(x, y)| Op::ClaimPool(x, y)),
        3 => (ops, 1u64..3_000, any::<bool>()).prop_map(|(x, v, vest)| Op::Reward(x, v, vest)),
        1 => (a, 0u32..=1_000_000, proptest::option::of(0..N)).prop_map(|(x, r, rep)| Op::Slash(x, r, rep)),
        4 => Just(Op::EndBlock),
    ]
}

fn target(t: bool) -> StakeTarget {
    if t {
        TASK
    } else {
        StakeTarget::NETWORK
    }
}

/// Drives a ledger through `ops`; returns the state digest after every block and checks the
/// invariants as it goes.
fn drive(ops: &[Op], p: Params) -> Vec<flock_primitives::Hash> {
    let (mut l, k) = fresh_with(p);
    let mut nonces = [0u64; 6];
    let mut pending = Vec::new();
    let mut digests = Vec::new();
    // Storage as the node would see it: apply each block's write set to a map.
    let mut stored: BTreeMap<Vec<u8>, Vec<u8>> = l.state().all_entries().into_iter().collect();
    let _ = l.take_changes();
    let fl = |v: u64| Amount(u128::from(v) * Amount::UNIT / 10);
    let mut tx = |i: usize, kind: TxKind, keys: &[Keypair], pending: &mut Vec<_>| {
        pending.push(sign(&keys[i], nonces[i], kind));
        nonces[i] += 1;
    };
    // Accounts 0 and 1 start as operators with pools, so delegation paths run from the start.
    let prelude = [
        Op::Stake(0, true, 500),
        Op::Stake(1, false, 2_000),
        Op::SetShare(0, 100_000),
        Op::SetShare(1, 500_000),
        Op::EndBlock,
    ];
    for op in prelude.into_iter().chain(ops.iter().cloned()).chain([Op::EndBlock]) {
        match op {
            Op::Transfer(a, b, v) => {
                tx(a, TxKind::Transfer { to: k[b].address(), amount: fl(v) }, &k, &mut pending)
            }
            Op::Burn(a, v) => tx(a, TxKind::Burn { amount: fl(v) }, &k, &mut pending),
            Op::Stake(a, t, v) => {
                tx(a, TxKind::Stake { target: target(t), amount: fl(v) }, &k, &mut pending)
            }
            Op::Unstake(a, t, v) => {
                tx(a, TxKind::Unstake { target: target(t), amount: fl(v) }, &k, &mut pending)
            }
            Op::SetShare(a, s) => match Ppm::from_ppm(s) {
                Ok(share) => tx(a, TxKind::SetShare { share }, &k, &mut pending),
                Err(_) => continue,
            },
            Op::Delegate(a, b, v) => tx(
                a,
                TxKind::Delegate { operator: k[b].address(), amount: fl(v) },
                &k,
                &mut pending,
            ),
            Op::Undelegate(a, b, v) => tx(
                a,
                TxKind::Undelegate { operator: k[b].address(), amount: fl(v) },
                &k,
                &mut pending,
            ),
            Op::Claim(a) => tx(a, TxKind::Claim { from: ClaimFrom::Own }, &k, &mut pending),
            Op::ClaimPool(a, b) => tx(
                a,
                TxKind::Claim { from: ClaimFrom::Pool { operator: k[b].address() } },
                &k,
                &mut pending,
            ),
            Op::Reward(a, v, vest) => {
                let amount = fl(v);
                let now = l.height();
                let s = l.state_mut();
                if s.globals().community_pool >= amount {
                    s.update_globals(|g| g.community_pool = Amount(g.community_pool.0 - amount.0));
                    let role =
                        s.positions(&k[a].address()).first().map(|(t, _)| *t).unwrap_or(TASK);
                    let v = if vest {
                        Vesting {
                            immediate: Ppm::percent(10).unwrap(),
                            release_at: now.saturating_add(7),
                        }
                    } else {
                        Vesting::NONE
                    };
                    s.pay_reward(&k[a].address(), &role, amount, v, now, &mut Vec::new()).unwrap();
                }
                s.clear_undo();
            }
            Op::Slash(a, r, rep) => {
                let p = l.params().clone();
                let s = l.state_mut();
                let positions = s.positions(&k[a].address());
                let t = positions
                    .first()
                    .map(|(t, _)| *t)
                    .unwrap_or(StakeTarget { task: 7, role: Role::TrainingNode });
                let reporter = rep.map(|i| k[i].address());
                s.slash(
                    &k[a].address(),
                    &t,
                    Ppm::from_ppm(r).unwrap(),
                    reporter.as_ref(),
                    "test",
                    &p,
                    &mut Vec::new(),
                )
                .unwrap();
                s.clear_undo();
            }
            Op::EndBlock => {
                let block = next_block(&l, std::mem::take(&mut pending));
                let receipts = l.apply_block(&block).expect("blocks of well-formed txs apply");
                for r in &receipts.txs {
                    let code = match &r.status {
                        flock_ledger::TxStatus::Failed { code, .. } => code.clone(),
                        flock_ledger::TxStatus::Ok => "ok".into(),
                    };
                    assert_ne!(code, "internal", "internal error: {r:?}");
                    if std::env::var("FLOCK_PROP_STATS").is_ok() {
                        eprintln!("STAT {code}");
                    }
                }
                let s = l.state().supply();
                assert!(s.is_conserved(), "supply not conserved: {s:#?}");
                assert!(s.minted <= s.cap);
                for (key, val) in l.take_changes() {
                    match val {
                        Some(v) => stored.insert(key, v),
                        None => stored.remove(&key),
                    };
                }
                let all: BTreeMap<_, _> = l.state().all_entries().into_iter().collect();
                assert!(all == stored, "write sets do not rebuild the state");
                digests.push(l.state().digest());
            }
        }
    }
    // Restart: a ledger rebuilt from the stored entries is the same ledger.
    let rebuilt =
        Ledger::from_entries(stored.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))).unwrap();
    assert_eq!(rebuilt.state().digest(), l.state().digest());
    digests
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    // PROPTEST_CASES=5000 hunts longer; CI runs 48 fresh cases on every run.
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    #[test]
    fn supply_is_conserved_and_replay_is_deterministic(ops in proptest::collection::vec(op(), 1..120)) {
        let p = Params { epoch_length: 4, reward_per_epoch: flock(2_000), delegation_lock_blocks: 1, share_cooldown_blocks: 2, unbonding_blocks: 3, ..params() };
        let a = drive(&ops, p.clone());
        let b = drive(&ops, p);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn the_cap_is_never_passed(ops in proptest::collection::vec(op(), 1..60)) {
        // A cap barely above genesis: emission runs into it within a few epochs.
        let p = Params { epoch_length: 2, reward_per_epoch: flock(700), supply_cap: flock(601_999), ..params() };
        drive(&ops, p);
    }
}
