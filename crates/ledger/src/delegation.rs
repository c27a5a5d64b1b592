//! Delegation pools: delegators back an operator, share its rewards by shares × blocks, and
//! share its slashes pro rata.
//!
//! Reward formula (the docs' pro-rata form of FLock, chosen over the contract's
//! "delegation increment" form and documented here): when an operator earns `f` at a target
//! where it has own stake `t_n` and attributed delegation `t_d`, the delegation-attributable
//! part is `f × t_d / (t_n + t_d)`; the operator keeps σ of it and the pool gets the rest.

use crate::{
    error::TxError,
    events::Event,
    params::Params,
    state::{Delegation, Pool, State, UnbondSource},
};
use flock_primitives::{
    math::{mul_div_ceil, mul_div_floor},
    Address, Amount, Height, Ppm,
};

impl Pool {
    /// Brings the pool's temporal weight up to `now`.
    pub(crate) fn accrue(&mut self, now: Height) {
        let blocks = u128::from(now.since(self.temporal_at));
        self.total_temporal =
            self.total_temporal.saturating_add(self.total_shares.saturating_mul(blocks));
        self.temporal_at = now.max(self.temporal_at);
    }

    /// The FLOCK value of `shares`, rounded down.
    pub fn value_of(&self, shares: u128) -> Amount {
        if self.total_shares == 0 {
            return Amount::ZERO;
        }
        self.total_amount.mul_div(shares, self.total_shares).unwrap_or_default()
    }
}

impl Delegation {
    pub(crate) fn accrue(&mut self, now: Height) {
        let blocks = u128::from(now.since(self.temporal_at));
        self.temporal = self.temporal.saturating_add(self.shares.saturating_mul(blocks));
        self.temporal_at = now.max(self.temporal_at);
    }
}

impl State {
    /// Opens `operator`'s pool or changes its σ.
    pub fn set_share(
        &mut self,
        operator: &Address,
        share: Ppm,
        now: Height,
        params: &Params,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        if share < params.min_share || share > params.max_share {
            return Err(TxError::ShareOutOfRange {
                got: share,
                min: params.min_share,
                max: params.max_share,
            });
        }
        let positions = self.positions(operator);
        if positions.is_empty() {
            return Err(TxError::NotAnOperator(*operator));
        }
        let existing = self.pools.get(operator).cloned();
        if let Some(p) = &existing {
            let until = p.share_changed_at.saturating_add(params.share_cooldown_blocks);
            if now < until {
                return Err(TxError::ShareCooldown { until });
            }
            for (target, _) in &positions {
                if let Some((from, until)) = self.targets.get(target).and_then(|t| t.share_freeze) {
                    if now >= from && now < until {
                        return Err(TxError::ShareFrozen { target: *target, until });
                    }
                }
            }
        }
        let mut pool = existing.unwrap_or_else(|| Pool { temporal_at: now, ..Pool::default() });
        pool.share = share;
        pool.share_changed_at = now;
        self.pools.insert(*operator, pool);
        events.push(Event::ShareSet { operator: *operator, share });
        Ok(())
    }

    /// Delegates `amount` of `delegator`'s balance into `operator`'s pool.
    pub fn delegate(
        &mut self,
        delegator: &Address,
        operator: &Address,
        amount: Amount,
        now: Height,
        params: &Params,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let mut pool = self.pools.get(operator).cloned().ok_or(TxError::NoSuchPool(*operator))?;
        if amount < params.min_delegation {
            return Err(TxError::BelowMinDelegation { min: params.min_delegation, got: amount });
        }
        let shares = if pool.total_shares == 0 {
            amount.0
        } else if pool.total_amount.is_zero() {
            return Err(TxError::PoolInsolvent(*operator));
        } else {
            mul_div_floor(amount.0, pool.total_shares, pool.total_amount.0)
                .ok_or(TxError::PoolShareLimit { operator: *operator, amount })?
        };
        // After deep slashes a share is worth little, and a large deposit mints a share count
        // that the pool's total cannot hold: refused as the sender's error, never a block
        // failure.
        let new_total = pool
            .total_shares
            .checked_add(shares)
            .ok_or(TxError::PoolShareLimit { operator: *operator, amount })?;
        if shares == 0 {
            return Err(TxError::BelowMinDelegation { min: params.min_delegation, got: amount });
        }
        self.debit(delegator, amount)?;
        pool.accrue(now);
        let mut d = self
            .delegations
            .get(&(*operator, *delegator))
            .cloned()
            .unwrap_or(Delegation { temporal_at: now, ..Delegation::default() });
        d.accrue(now);
        d.shares = d.shares.checked_add(shares).ok_or(TxError::Internal("share overflow"))?;
        d.last_deposit = now;
        pool.total_shares = new_total;
        pool.total_amount =
            pool.total_amount.checked_add(amount).ok_or(TxError::Internal("pool overflow"))?;
        self.pools.insert(*operator, pool);
        self.delegations.insert((*operator, *delegator), d);
        events.push(Event::Delegated {
            delegator: *delegator,
            operator: *operator,
            amount,
            shares,
        });
        Ok(())
    }

    /// The FLOCK value of `delegator`'s delegation to `operator`.
    pub fn delegation_value(&self, operator: &Address, delegator: &Address) -> Amount {
        match (self.pools.get(operator), self.delegations.get(&(*operator, *delegator))) {
            (Some(p), Some(d)) => p.value_of(d.shares),
            _ => Amount::ZERO,
        }
    }

    /// Withdraws `amount` of `delegator`'s delegation into unbonding.
    pub fn undelegate(
        &mut self,
        delegator: &Address,
        operator: &Address,
        amount: Amount,
        now: Height,
        params: &Params,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let mut pool = self.pools.get(operator).cloned().ok_or(TxError::NoSuchPool(*operator))?;
        let key = (*operator, *delegator);
        let mut d = self.delegations.get(&key).cloned().ok_or(TxError::InsufficientDelegation {
            operator: *operator,
            have: Amount::ZERO,
            need: amount,
        })?;
        let until = d.last_deposit.saturating_add(params.delegation_lock_blocks);
        if now < until {
            return Err(TxError::DelegationLocked { operator: *operator, until });
        }
        let have = pool.value_of(d.shares);
        if amount > have {
            return Err(TxError::InsufficientDelegation {
                operator: *operator,
                have,
                need: amount,
            });
        }
        // Shares to burn, rounded up so rounding never favours the withdrawer; taking the whole
        // value burns every share.
        let burn = if amount == have {
            d.shares
        } else {
            mul_div_ceil(amount.0, pool.total_shares, pool.total_amount.0)
                .ok_or(TxError::Internal("share overflow"))?
                .min(d.shares)
        };
        pool.accrue(now);
        d.accrue(now);
        d.shares -= burn;
        pool.total_shares = pool.total_shares.saturating_sub(burn);
        pool.total_amount =
            pool.total_amount.checked_sub(amount).ok_or(TxError::Internal("pool underflow"))?;
        if pool.total_shares == 0 && !pool.total_amount.is_zero() {
            // Rounding dust left by the last shares goes to the community pool.
            let dust = pool.total_amount;
            pool.total_amount = Amount::ZERO;
            self.credit_community_pool(dust)?;
        }
        // A delegator who leaves a pool with nothing to share keeps no record: its temporal
        // weight could only ever claim a share of zero.
        let nothing_to_share = pool.reward_balance.is_zero()
            && self
                .pool_vesting
                .range((*operator, Height(0))..=(*operator, Height(u64::MAX)))
                .next()
                .is_none();
        if d.shares == 0 && nothing_to_share {
            pool.total_temporal = pool.total_temporal.saturating_sub(d.temporal);
            d.temporal = 0;
        }
        self.pools.insert(*operator, pool);
        if d.shares == 0 && d.temporal == 0 {
            self.delegations.remove(&key);
        } else {
            self.delegations.insert(key, d);
        }
        let release_at = now.saturating_add(params.unbonding_blocks);
        self.push_unbonding(
            *delegator,
            amount,
            UnbondSource::Delegation { operator: *operator },
            release_at,
        );
        events.push(Event::Undelegated {
            delegator: *delegator,
            operator: *operator,
            amount,
            release_at,
        });
        Ok(())
    }
}
