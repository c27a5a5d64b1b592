//! Supply accounting: where every minted base unit is.

use crate::state::State;
use flock_primitives::Amount;
use serde::{Deserialize, Serialize};

/// Every place FLOCK can be, summed. `minted − burned` must equal `held()` exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupplyReport {
    /// Cumulative mint (genesis + emission).
    pub minted: Amount,
    /// Cumulative burn.
    pub burned: Amount,
    /// The cap on cumulative mint.
    pub cap: Amount,
    /// Spendable balances.
    pub balances: Amount,
    /// Bonded own stake.
    pub staked: Amount,
    /// Funds unbonding.
    pub unbonding: Amount,
    /// Delegated into pools.
    pub delegated: Amount,
    /// Pool rewards waiting for delegators (vested ones included).
    pub pool_rewards: Amount,
    /// Own rewards claimable or vesting.
    pub unclaimed_rewards: Amount,
    /// The community pool.
    pub community_pool: Amount,
    /// Task pools.
    pub task_pools: Amount,
    /// AI Arena reward pools and unreleased creator deposits.
    pub arena_pools: Amount,
    /// FL Alliance reward pools.
    pub alliance_pools: Amount,
    /// Marketplace credit escrows (available and pending withdrawal).
    pub market_escrow: Amount,
}

fn sum<'a>(it: impl Iterator<Item = &'a Amount>) -> Amount {
    Amount(it.map(|a| a.0).sum())
}

impl SupplyReport {
    /// `minted − burned`.
    pub fn circulating(&self) -> Amount {
        self.minted.saturating_sub(self.burned)
    }

    /// Everything held, summed.
    pub fn held(&self) -> Amount {
        Amount(
            self.balances.0
                + self.staked.0
                + self.unbonding.0
                + self.delegated.0
                + self.pool_rewards.0
                + self.unclaimed_rewards.0
                + self.community_pool.0
                + self.task_pools.0
                + self.arena_pools.0
                + self.alliance_pools.0
                + self.market_escrow.0,
        )
    }

    /// Whether supply is conserved exactly and the cap holds.
    pub fn is_conserved(&self) -> bool {
        self.minted >= self.burned && self.circulating() == self.held() && self.minted <= self.cap
    }
}

impl State {
    /// Sums every holding. O(state); for tests, audits and the `/v1/supply` endpoint.
    pub fn supply(&self) -> SupplyReport {
        let g = self.globals();
        let cap = self.params.get(&()).map(|p| p.supply_cap).unwrap_or_default();
        SupplyReport {
            minted: g.minted,
            burned: g.burned,
            cap,
            balances: sum(self.accounts.iter().map(|(_, a)| &a.balance)),
            staked: sum(self.stakes.iter().map(|(_, a)| a)),
            unbonding: sum(self.unbonding.iter().map(|(_, u)| &u.amount)),
            delegated: sum(self.pools.iter().map(|(_, p)| &p.total_amount)),
            pool_rewards: Amount(
                sum(self.pools.iter().map(|(_, p)| &p.reward_balance)).0
                    + sum(self.pool_vesting.iter().map(|(_, a)| a)).0,
            ),
            unclaimed_rewards: Amount(
                sum(self.rewards.iter().map(|(_, a)| a)).0
                    + sum(self.vesting.iter().map(|(_, a)| a)).0,
            ),
            community_pool: g.community_pool,
            task_pools: sum(self.task_pools.iter().map(|(_, a)| a)),
            arena_pools: Amount(
                self.arena_tasks.iter().map(|(_, t)| t.pool.0 + t.deposit_left.0).sum(),
            ),
            alliance_pools: Amount(self.alliance_tasks.iter().map(|(_, t)| t.pool.0).sum()),
            market_escrow: Amount(self.market_escrows.iter().map(|(_, e)| e.total().0).sum()),
        }
    }
}
