//! Slashing: evidence-driven, reaching delegators pro rata, split between reporter, pool, burn.

use crate::{
    error::TxError,
    events::{BurnReason, Event},
    params::Params,
    state::{State, UnbondSource},
    tx::StakeTarget,
};
use flock_primitives::{Address, Amount, Ppm};

/// What a slash took and where it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlashOutcome {
    /// Total taken.
    pub total: Amount,
    /// Paid to the reporter.
    pub to_reporter: Amount,
    /// Paid to the task pool.
    pub to_pool: Amount,
    /// Burned.
    pub burned: Amount,
}

impl State {
    /// Slashes `ratio` of `offender`'s stake at `target`: its bonded stake, its unbonding stake
    /// from that target, and the delegation attributed to that target (every delegator of the
    /// pool loses the same fraction). The proceeds go `slash_reporter` to the reporter (burned
    /// if none), `slash_pool` to the task's pool, and the rest is burned.
    #[allow(clippy::too_many_arguments)]
    pub fn slash(
        &mut self,
        offender: &Address,
        target: &StakeTarget,
        ratio: Ppm,
        reporter: Option<&Address>,
        reason: &str,
        params: &Params,
        events: &mut Vec<Event>,
    ) -> Result<SlashOutcome, TxError> {
        let own = self.own_stake(offender, target);
        let delegated = self.delegated_to(offender, target);

        let from_stake = own.mul_ppm(ratio);
        if !from_stake.is_zero() {
            let rest = Amount(own.0 - from_stake.0);
            if rest.is_zero() {
                self.stakes.remove(&(*offender, *target));
            } else {
                self.stakes.insert((*offender, *target), rest);
            }
            if let Some(mut info) = self.targets.get(target).cloned() {
                info.total_stake = info.total_stake.saturating_sub(from_stake);
                self.targets.insert(*target, info);
            }
        }

        let from_delegators = delegated.mul_ppm(ratio);
        if !from_delegators.is_zero() {
            let mut pool =
                self.pools.get(offender).cloned().ok_or(TxError::Internal("pool vanished"))?;
            pool.total_amount = pool.total_amount.saturating_sub(from_delegators);
            self.pools.insert(*offender, pool);
        }

        let mut from_unbonding = Amount::ZERO;
        let entries: Vec<_> = self
            .unbonding
            .iter()
            .filter(|(_, u)| {
                u.owner == *offender && u.source == UnbondSource::Stake { target: *target }
            })
            .map(|(k, u)| (*k, u.clone()))
            .collect();
        for (k, mut u) in entries {
            let cut = u.amount.mul_ppm(ratio);
            from_unbonding = Amount(from_unbonding.0 + cut.0);
            u.amount = Amount(u.amount.0 - cut.0);
            if u.amount.is_zero() {
                self.unbonding.remove(&k);
            } else {
                self.unbonding.insert(k, u);
            }
        }

        let total = Amount(from_stake.0 + from_delegators.0 + from_unbonding.0);
        let to_reporter =
            if reporter.is_some() { total.mul_ppm(params.slash_reporter) } else { Amount::ZERO };
        let to_pool = total.mul_ppm(params.slash_pool);
        let burned = Amount(total.0 - to_reporter.0 - to_pool.0);
        if let Some(r) = reporter {
            self.credit(r, to_reporter)?;
        }
        self.credit_task_pool(target.task, to_pool)?;
        self.record_burn(Some(*offender), burned, BurnReason::Slash, events)?;
        events.push(Event::Slashed {
            offender: *offender,
            target: *target,
            ratio,
            from_stake,
            from_unbonding,
            from_delegators,
            to_reporter,
            reporter: reporter.copied(),
            to_pool,
            burned,
            reason: reason.to_owned(),
        });
        Ok(SlashOutcome { total, to_reporter, to_pool, burned })
    }
}
