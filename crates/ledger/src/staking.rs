//! Staking: bonded positions per (staker, target), locks, minimums, one role per task, unbonding.
//!
//! ```text
//!   balance ──stake──► bonded (staker, target) ──unstake──► unbonding(release_at) ──► balance
//!                          │ slash (also reaches unbonding from the same target)
//! ```

use crate::{
    error::TxError,
    events::Event,
    params::Params,
    state::{State, TargetInfo, UnbondSource, Unbonding},
    tx::{Role, StakeTarget},
};
use flock_primitives::{Address, Amount, Height};

const ROLE_MIN: Role = Role::Network;
const ROLE_MAX: Role = Role::Compute;

impl State {
    /// Registers (or replaces the rules of) a stake target. Products call this when a task is
    /// created; genesis registers the network target.
    pub fn register_target(&mut self, target: StakeTarget, info: TargetInfo) {
        let total = self.targets.get(&target).map(|t| t.total_stake).unwrap_or_default();
        self.targets.insert(target, TargetInfo { total_stake: total, ..info });
    }

    /// The staker's bonded amount at `target`.
    pub fn own_stake(&self, staker: &Address, target: &StakeTarget) -> Amount {
        self.stakes.get(&(*staker, *target)).copied().unwrap_or_default()
    }

    /// All of a staker's positions.
    pub fn positions(&self, staker: &Address) -> Vec<(StakeTarget, Amount)> {
        let lo = (*staker, StakeTarget { task: 0, role: ROLE_MIN });
        let hi = (*staker, StakeTarget { task: u64::MAX, role: ROLE_MAX });
        self.stakes.range(lo..=hi).map(|((_, t), a)| (*t, *a)).collect()
    }

    /// The staker's total bonded own stake.
    pub fn own_total(&self, staker: &Address) -> Amount {
        Amount(self.positions(staker).iter().map(|(_, a)| a.0).sum())
    }

    /// The role `staker` holds in `task`, if any.
    pub fn role_in_task(&self, staker: &Address, task: u64) -> Option<Role> {
        let lo = (*staker, StakeTarget { task, role: ROLE_MIN });
        let hi = (*staker, StakeTarget { task, role: ROLE_MAX });
        self.stakes.range(lo..=hi).next().map(|((_, t), _)| t.role)
    }

    /// The part of `operator`'s delegation pool attributed to `target`: delegation is spread
    /// over the operator's positions in proportion to its own stake in each.
    pub fn delegated_to(&self, operator: &Address, target: &StakeTarget) -> Amount {
        let Some(pool) = self.pools.get(operator) else { return Amount::ZERO };
        let own = self.own_stake(operator, target);
        let total = self.own_total(operator);
        if own.is_zero() || total.is_zero() {
            return Amount::ZERO;
        }
        pool.total_amount.mul_div(own.0, total.0).unwrap_or_default()
    }

    /// `(own, delegated)` weight of `operator` at `target`.
    pub fn effective_stake(&self, operator: &Address, target: &StakeTarget) -> (Amount, Amount) {
        (self.own_stake(operator, target), self.delegated_to(operator, target))
    }

    /// Bonds `amount` of `staker`'s balance to `target`.
    pub fn stake(
        &mut self,
        staker: &Address,
        target: StakeTarget,
        amount: Amount,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        self.stake_into(staker, target, amount, false, events)
    }

    /// [`State::stake`], optionally into a target closed to plain staking (products that admit
    /// participants themselves, like FL Alliance joins).
    pub fn stake_into(
        &mut self,
        staker: &Address,
        target: StakeTarget,
        amount: Amount,
        even_if_closed: bool,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let info = self.targets.get(&target).cloned().ok_or(TxError::UnknownTarget(target))?;
        self.check_not_tombstoned(staker, &target)?;
        if !info.open && !even_if_closed {
            return Err(TxError::TargetClosed(target));
        }
        if let Some(existing) = self.role_in_task(staker, target.task) {
            if existing != target.role {
                return Err(TxError::RoleConflict { task: target.task, existing });
            }
        }
        let current = self.own_stake(staker, &target);
        let new = current.checked_add(amount).ok_or(TxError::Internal("stake overflow"))?;
        if new < info.min_stake {
            return Err(TxError::BelowMinimum { target, min: info.min_stake, got: new });
        }
        self.debit(staker, amount)?;
        self.stakes.insert((*staker, target), new);
        self.add_target_total(&target, amount, true)?;
        events.push(Event::Staked { staker: *staker, target, amount });
        Ok(())
    }

    fn add_target_total(
        &mut self,
        t: &StakeTarget,
        amount: Amount,
        add: bool,
    ) -> Result<(), TxError> {
        let mut info = self.targets.get(t).cloned().ok_or(TxError::Internal("target vanished"))?;
        info.total_stake = if add {
            info.total_stake.checked_add(amount).ok_or(TxError::Internal("target overflow"))?
        } else {
            info.total_stake.saturating_sub(amount)
        };
        self.targets.insert(*t, info);
        Ok(())
    }

    /// Moves `amount` of `staker`'s stake at `target` into unbonding.
    pub fn unstake(
        &mut self,
        staker: &Address,
        target: StakeTarget,
        amount: Amount,
        now: Height,
        params: &Params,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let info = self.targets.get(&target).cloned().ok_or(TxError::UnknownTarget(target))?;
        if now < info.unlock_at {
            return Err(TxError::StakeLocked { target, until: info.unlock_at });
        }
        let current = self.own_stake(staker, &target);
        let rest = current.checked_sub(amount).ok_or(TxError::InsufficientStake {
            target,
            have: current,
            need: amount,
        })?;
        if !rest.is_zero() && rest < info.min_stake {
            return Err(TxError::BelowMinimum { target, min: info.min_stake, got: rest });
        }
        // Delegation follows own stake: if this was the operator's last position, its pool's
        // delegation stays in the pool (delegators can undelegate) but earns nothing.
        if rest.is_zero() {
            self.stakes.remove(&(*staker, target));
        } else {
            self.stakes.insert((*staker, target), rest);
        }
        self.add_target_total(&target, amount, false)?;
        let release_at = now.saturating_add(params.unbonding_blocks);
        self.push_unbonding(*staker, amount, UnbondSource::Stake { target }, release_at);
        events.push(Event::Unstaked { staker: *staker, target, amount, release_at });
        Ok(())
    }

    pub(crate) fn push_unbonding(
        &mut self,
        owner: Address,
        amount: Amount,
        source: UnbondSource,
        release_at: Height,
    ) {
        let seq = self.update_globals(|g| {
            g.unbonding_seq += 1;
            g.unbonding_seq
        });
        self.unbonding.insert((release_at, seq), Unbonding { owner, amount, source });
    }

    /// Returns every unbonding entry due at or before `now` to its owner's balance.
    pub fn release_unbonded(
        &mut self,
        now: Height,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let due: Vec<_> =
            self.unbonding.range(..=(now, u64::MAX)).map(|(k, u)| (*k, u.clone())).collect();
        for (k, u) in due {
            self.unbonding.remove(&k);
            self.credit(&u.owner, u.amount)?;
            events.push(Event::Released { owner: u.owner, amount: u.amount });
        }
        Ok(())
    }

    /// Funds of `owner` still unbonding: `(release height, amount, source)`.
    pub fn unbonding_of(&self, owner: &Address) -> Vec<(Height, Amount, UnbondSource)> {
        self.unbonding
            .iter()
            .filter(|(_, u)| u.owner == *owner)
            .map(|((h, _), u)| (*h, u.amount, u.source.clone()))
            .collect()
    }
}
