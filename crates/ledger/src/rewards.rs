//! Rewards: crediting operators (with their pools and vesting) and claims with burned fees.

use crate::{
    error::TxError,
    events::{BurnReason, Event},
    params::Params,
    state::State,
    tx::{ClaimFrom, StakeTarget},
};
use flock_primitives::{math::mul_div_floor, Address, Amount, Height, Ppm};

/// How a reward is paid out over time: `immediate` now, the rest at `release_at`
/// (AI Arena: δ = 10% now, 90% at task end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vesting {
    /// Fraction paid at once.
    pub immediate: Ppm,
    /// When the rest unlocks.
    pub release_at: Height,
}

impl Vesting {
    /// Everything paid at once.
    pub const NONE: Self = Self { immediate: Ppm::ONE, release_at: Height(0) };
}

/// How a reward was split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RewardSplit {
    /// Operator's part (now + vested).
    pub operator: Amount,
    /// Pool's part (now + vested).
    pub pool: Amount,
}

fn split_vesting(amount: Amount, v: Vesting, now: Height) -> (Amount, Amount) {
    if v.release_at <= now {
        return (amount, Amount::ZERO);
    }
    let now_part = amount.mul_ppm(v.immediate);
    (now_part, Amount(amount.0 - now_part.0))
}

impl State {
    /// Credits `amount`, earned by `operator` together with its delegators at `target`, which
    /// the caller has already taken out of some holding (emission, a task pool). Every base unit
    /// ends up with the operator or its pool.
    pub fn pay_reward(
        &mut self,
        operator: &Address,
        target: &StakeTarget,
        amount: Amount,
        vesting: Vesting,
        now: Height,
        events: &mut Vec<Event>,
    ) -> Result<RewardSplit, TxError> {
        if amount.is_zero() {
            return Ok(RewardSplit::default());
        }
        let (own, delegated) = self.effective_stake(operator, target);
        let pool_part = match self.pools.get(operator) {
            Some(pool) if !delegated.is_zero() => {
                let attributable = amount
                    .mul_div(delegated.0, own.0 + delegated.0)
                    .ok_or(TxError::Internal("reward split"))?;
                let kept = attributable.mul_ppm(pool.share);
                Amount(attributable.0 - kept.0)
            }
            _ => Amount::ZERO,
        };
        let op_part = Amount(amount.0 - pool_part.0);
        let (op_now, op_vested) = split_vesting(op_part, vesting, now);
        let (pool_now, pool_vested) = split_vesting(pool_part, vesting, now);
        add(&mut self.rewards, *operator, op_now)?;
        if !op_vested.is_zero() {
            add(&mut self.vesting, (*operator, vesting.release_at), op_vested)?;
        }
        if !pool_part.is_zero() {
            let mut pool =
                self.pools.get(operator).cloned().ok_or(TxError::Internal("pool vanished"))?;
            pool.reward_balance = pool
                .reward_balance
                .checked_add(pool_now)
                .ok_or(TxError::Internal("pool overflow"))?;
            self.pools.insert(*operator, pool);
            if !pool_vested.is_zero() {
                add(&mut self.pool_vesting, (*operator, vesting.release_at), pool_vested)?;
            }
        }
        events.push(Event::Reward {
            operator: *operator,
            target: *target,
            operator_now: op_now,
            operator_vested: op_vested,
            pool_now,
            pool_vested,
            release_at: if op_vested.is_zero() && pool_vested.is_zero() {
                now
            } else {
                vesting.release_at
            },
        });
        Ok(RewardSplit { operator: op_part, pool: pool_part })
    }

    /// Own rewards of `a` claimable at `now` (vested ones included once released).
    pub fn claimable_own(&self, a: &Address, now: Height) -> Amount {
        let vested: u128 = self.vesting.range((*a, Height(0))..=(*a, now)).map(|(_, v)| v.0).sum();
        Amount(self.rewards.get(a).map(|r| r.0).unwrap_or(0) + vested)
    }

    /// Own rewards of `a` still vesting after `now`.
    pub fn vesting_own(&self, a: &Address, now: Height) -> Amount {
        Amount(
            self.vesting.range((*a, now.next())..=(*a, Height(u64::MAX))).map(|(_, v)| v.0).sum(),
        )
    }

    /// What `delegator` would receive (before the fee) by claiming from `operator`'s pool now.
    pub fn claimable_pool(&self, operator: &Address, delegator: &Address, now: Height) -> Amount {
        let (Some(pool), Some(d)) =
            (self.pools.get(operator), self.delegations.get(&(*operator, *delegator)))
        else {
            return Amount::ZERO;
        };
        let released: u128 = self
            .pool_vesting
            .range((*operator, Height(0))..=(*operator, now))
            .map(|(_, v)| v.0)
            .sum();
        let (mut pool, mut d) = (pool.clone(), d.clone());
        pool.accrue(now);
        d.accrue(now);
        if pool.total_temporal == 0 {
            return Amount::ZERO;
        }
        Amount(
            mul_div_floor(pool.reward_balance.0 + released, d.temporal, pool.total_temporal)
                .unwrap_or(0),
        )
    }

    /// Claims rewards for `account`, burning the claim fee.
    pub fn claim(
        &mut self,
        account: &Address,
        from: ClaimFrom,
        now: Height,
        params: &Params,
        events: &mut Vec<Event>,
    ) -> Result<Amount, TxError> {
        let (gross, fee_ratio) = match from {
            ClaimFrom::Own => {
                let gross = self.claimable_own(account, now);
                self.rewards.remove(account);
                let due: Vec<_> = self
                    .vesting
                    .range((*account, Height(0))..=(*account, now))
                    .map(|(k, _)| *k)
                    .collect();
                for k in due {
                    self.vesting.remove(&k);
                }
                (gross, params.operator_claim_fee)
            }
            ClaimFrom::Pool { operator } => {
                (self.claim_pool(&operator, account, now)?, params.delegator_claim_fee)
            }
        };
        if gross.is_zero() {
            return Err(TxError::NothingToClaim);
        }
        // The fee is rounded up (toward the protocol): net is the floor of gross × (1 − fee).
        let net = gross.mul_ppm(fee_ratio.complement());
        let fee = Amount(gross.0 - net.0);
        self.credit(account, net)?;
        self.record_burn(Some(*account), fee, BurnReason::ClaimFee, events)?;
        events.push(Event::Claimed { account: *account, from, gross, fee, net });
        Ok(net)
    }

    fn claim_pool(
        &mut self,
        operator: &Address,
        delegator: &Address,
        now: Height,
    ) -> Result<Amount, TxError> {
        let mut pool = self.pools.get(operator).cloned().ok_or(TxError::NoSuchPool(*operator))?;
        let key = (*operator, *delegator);
        let mut d = self.delegations.get(&key).cloned().ok_or(TxError::NothingToClaim)?;
        let due: Vec<_> = self
            .pool_vesting
            .range((*operator, Height(0))..=(*operator, now))
            .map(|(k, v)| (*k, *v))
            .collect();
        for (k, v) in due {
            self.pool_vesting.remove(&k);
            pool.reward_balance =
                pool.reward_balance.checked_add(v).ok_or(TxError::Internal("pool overflow"))?;
        }
        pool.accrue(now);
        d.accrue(now);
        if pool.total_temporal == 0 || d.temporal == 0 {
            return Err(TxError::NothingToClaim);
        }
        let gross = Amount(
            mul_div_floor(pool.reward_balance.0, d.temporal, pool.total_temporal)
                .ok_or(TxError::Internal("claim math"))?,
        );
        pool.reward_balance = Amount(pool.reward_balance.0 - gross.0);
        pool.total_temporal -= d.temporal.min(pool.total_temporal);
        d.temporal = 0;
        self.pools.insert(*operator, pool);
        if d.shares == 0 {
            self.delegations.remove(&key);
        } else {
            self.delegations.insert(key, d);
        }
        Ok(gross)
    }
}

fn add<K: Ord + Clone>(
    t: &mut crate::table::Table<K, Amount>,
    k: K,
    amount: Amount,
) -> Result<(), TxError> {
    if amount.is_zero() {
        return Ok(());
    }
    let cur = t.get(&k).copied().unwrap_or_default();
    t.insert(k, cur.checked_add(amount).ok_or(TxError::Internal("reward overflow"))?);
    Ok(())
}
