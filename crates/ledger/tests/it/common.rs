use flock_ledger::{
    test_utils::{self, target},
    Ledger, Params, Role, StakeTarget,
};
use flock_primitives::{Amount, Keypair, Ppm};

pub(crate) const TASK: StakeTarget = StakeTarget { task: 7, role: Role::TrainingNode };
pub(crate) const TASK_VALIDATOR: StakeTarget = StakeTarget { task: 7, role: Role::Validator };
pub(crate) const LOCKED: StakeTarget = StakeTarget { task: 8, role: Role::Validator };

pub(crate) fn flock(n: u64) -> Amount {
    Amount::flock(n)
}

pub(crate) fn params() -> Params {
    Params {
        epoch_length: 10,
        reward_per_epoch: flock(1_000),
        min_network_stake: flock(100),
        unbonding_blocks: 5,
        delegation_lock_blocks: 3,
        share_cooldown_blocks: 20,
        max_share: Ppm::percent(90).unwrap(),
        ..Params::default()
    }
}

/// A ledger with 6 accounts of 100,000 FLOCK, targets TASK/TASK_VALIDATOR (min 10) and LOCKED
/// (locked until height 1,000).
pub(crate) fn fresh() -> (Ledger, Vec<Keypair>) {
    fresh_with(params())
}

pub(crate) fn fresh_with(p: Params) -> (Ledger, Vec<Keypair>) {
    let (g, keys) = test_utils::test_genesis(
        6,
        flock(100_000),
        p,
        vec![
            target(TASK.task, TASK.role, flock(10), 0),
            target(TASK_VALIDATOR.task, TASK_VALIDATOR.role, flock(10), 0),
            target(LOCKED.task, LOCKED.role, flock(10), 1_000),
        ],
    );
    (Ledger::from_genesis(&g).unwrap(), keys)
}

/// Runs `n` empty blocks.
pub(crate) fn advance(l: &mut Ledger, n: u64) {
    for _ in 0..n {
        test_utils::apply(l, vec![]).unwrap();
    }
}

pub(crate) fn assert_conserved(l: &Ledger) {
    let s = l.state().supply();
    assert!(s.is_conserved(), "supply not conserved: {s:#?}");
}
