//! Ledger parameters, fixed at genesis and committed in the state root.

use borsh::{BorshDeserialize, BorshSerialize};
use flock_primitives::{Amount, Ppm};
use serde::{Deserialize, Serialize};

/// Every tunable number of the ledger. Defaults follow FLock's published values where it has
/// them (`../shared/flock-reference.md`), and are documented where it is silent.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Cap on cumulative mint (burns never free headroom). FLock: 1,000,000,000 FLOCK.
    pub supply_cap: Amount,
    /// Blocks per emission epoch ("a day" in FLock terms; short on a devnet).
    pub epoch_length: u64,
    /// Emission of the first epochs.
    pub reward_per_epoch: Amount,
    /// Multiplier applied every `decay_period_epochs` epochs (FLock: ×0.9 every 30).
    pub decay_ratio: Ppm,
    /// Epochs between decay steps.
    pub decay_period_epochs: u64,
    /// Minimum stake in the network-validator role.
    pub min_network_stake: Amount,
    /// Blocks between unstake/undelegate and the release of the funds.
    pub unbonding_blocks: u64,
    /// Blocks after a delegator's last deposit during which it cannot undelegate (FLock: 1 day).
    pub delegation_lock_blocks: u64,
    /// Minimum amount of one delegation.
    pub min_delegation: Amount,
    /// Blocks between two changes of an operator's share σ (FLock: 1 day).
    pub share_cooldown_blocks: u64,
    /// Lowest allowed σ.
    pub min_share: Ppm,
    /// Highest allowed σ.
    pub max_share: Ppm,
    /// Part of a slashed amount paid to the reporter (FLock FL v1: 10%).
    pub slash_reporter: Ppm,
    /// Part of a slashed amount paid into the task's pool (community pool for task 0).
    pub slash_pool: Ppm,
    /// Slash of a network validator's stake for an attributable consensus fault (equivocation);
    /// the validator is tombstoned as well.
    pub consensus_fault_slash: Ppm,
    /// Most validators in a validator set (the largest network stakes).
    pub max_network_validators: u32,
    /// Claim fee, burned, on operators' own rewards (FLock: 8%).
    pub operator_claim_fee: Ppm,
    /// Claim fee, burned, on delegators' pool rewards (FLock: 14.5%).
    pub delegator_claim_fee: Ppm,
    /// Largest encoded transaction.
    pub max_tx_bytes: u32,
    /// Most transactions in one block.
    pub max_block_txs: u32,
    /// Smallest creator deposit for an AI Arena task.
    pub arena_min_deposit: Amount,
    /// Most rounds of an AI Arena task.
    pub arena_max_rounds: u32,
    /// Longest phase of an AI Arena round, in blocks.
    pub arena_max_phase_blocks: u64,
    /// Slash of a validator's task stake when it misses a score reveal in a round.
    pub arena_miss_slash: Ppm,
    /// Relative distance from consensus at which a validator's quality for a score reaches 0.
    pub arena_score_tolerance: Ppm,
    /// How task stake weighs in the emission split (β).
    pub arena_stake_weight: crate::arena::StakeWeight,
    /// Blocks between a marketplace escrow withdrawal and its release to the balance (servers
    /// settle usage served before the withdrawal in this window).
    pub market_withdraw_delay: u64,
    /// Most entries in one marketplace usage batch.
    pub market_max_batch_entries: u32,
    /// Most live (unrevoked) API keys per account.
    pub market_max_keys: u32,
    /// Most escrow withdrawals pending at once per account.
    pub market_max_pending_withdrawals: u32,
}

impl Default for Params {
    fn default() -> Self {
        let pct = |p| Ppm::percent(p).unwrap_or(Ppm::ZERO);
        Self {
            supply_cap: Amount::flock(1_000_000_000),
            epoch_length: 600,
            reward_per_epoch: Amount::flock(1_074),
            decay_ratio: pct(90),
            decay_period_epochs: 30,
            min_network_stake: Amount::flock(1_000),
            unbonding_blocks: 100,
            delegation_lock_blocks: 10,
            min_delegation: Amount::flock(1),
            share_cooldown_blocks: 600,
            min_share: Ppm::ZERO,
            max_share: Ppm::ONE,
            slash_reporter: pct(10),
            slash_pool: pct(50),
            consensus_fault_slash: pct(5),
            max_network_validators: 100,
            operator_claim_fee: pct(8),
            delegator_claim_fee: Ppm::from_ppm(145_000).unwrap_or(Ppm::ZERO),
            max_tx_bytes: 64 * 1024,
            max_block_txs: 10_000,
            arena_min_deposit: Amount::flock(100),
            arena_max_rounds: 100,
            arena_max_phase_blocks: 1_000_000,
            arena_miss_slash: pct(5),
            arena_score_tolerance: pct(10),
            arena_stake_weight: crate::arena::StakeWeight::Linear,
            market_withdraw_delay: 100,
            market_max_batch_entries: 1_000,
            market_max_keys: 64,
            market_max_pending_withdrawals: 16,
        }
    }
}

impl Params {
    /// Checks internal consistency; a genesis with invalid params is refused.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("decay_ratio", self.decay_ratio),
            ("min_share", self.min_share),
            ("max_share", self.max_share),
            ("slash_reporter", self.slash_reporter),
            ("slash_pool", self.slash_pool),
            ("consensus_fault_slash", self.consensus_fault_slash),
            ("operator_claim_fee", self.operator_claim_fee),
            ("delegator_claim_fee", self.delegator_claim_fee),
            ("arena_miss_slash", self.arena_miss_slash),
            ("arena_score_tolerance", self.arena_score_tolerance),
        ] {
            p.check().map_err(|e| format!("{name}: {e}"))?;
        }
        if self.epoch_length == 0 {
            return Err("epoch_length must be at least 1".into());
        }
        if self.decay_period_epochs == 0 {
            return Err("decay_period_epochs must be at least 1".into());
        }
        if self.min_share > self.max_share {
            return Err("min_share is above max_share".into());
        }
        if u64::from(self.slash_reporter.get()) + u64::from(self.slash_pool.get()) > 1_000_000 {
            return Err("slash_reporter + slash_pool exceed 100%".into());
        }
        if self.reward_per_epoch > self.supply_cap {
            return Err("reward_per_epoch exceeds the supply cap".into());
        }
        if self.max_tx_bytes < 256 {
            return Err("max_tx_bytes must be at least 256".into());
        }
        if self.arena_score_tolerance == Ppm::ZERO {
            return Err("arena_score_tolerance must be above 0".into());
        }
        if self.max_network_validators == 0 {
            return Err("max_network_validators must be at least 1".into());
        }
        if self.max_block_txs == 0 {
            return Err("max_block_txs must be at least 1".into());
        }
        if self.market_max_batch_entries == 0 {
            return Err("market_max_batch_entries must be at least 1".into());
        }
        if self.market_max_keys == 0 {
            return Err("market_max_keys must be at least 1".into());
        }
        if self.market_max_pending_withdrawals == 0 {
            return Err("market_max_pending_withdrawals must be at least 1".into());
        }
        Ok(())
    }
}
