//! The ledger state: a fixed set of journaled tables, each under a one-byte key prefix.
//!
//! Storage keys are `prefix ‖ borsh(key)`; values are `borsh(value)`. The state root is computed
//! by the storage layer over exactly these bytes, so two nodes with the same tables have the
//! same root. Prefix bytes are part of the wire format: never renumber them.

use crate::{
    alliance::{AllianceRound, AllianceTask, RoleDraw, Vote},
    arena::{ArenaMeta, ArenaTask, RoundDraw, RoundResult, Score, Submission, SubmissionCommit},
    params::Params,
    table::Table,
    tx::StakeTarget,
};
use borsh::{BorshDeserialize, BorshSerialize};
use flock_primitives::{Address, Amount, Hash, Height, MaskPublicKey, Ppm};
use serde::{Deserialize, Serialize};

/// A state change for storage: key bytes and the new value (`None` = deleted).
pub type StateChange = (Vec<u8>, Option<Vec<u8>>);

/// An account: spendable balance and the next nonce.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Account {
    /// Spendable FLOCK.
    pub balance: Amount,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
}

/// Chain-wide counters.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Globals {
    /// The chain id.
    pub chain_id: String,
    /// Height of the last applied block (0 = genesis).
    pub height: Height,
    /// Time of the last applied block (ms since the Unix epoch).
    pub time_ms: u64,
    /// Seed of the last applied block.
    pub seed: Hash,
    /// Hash of the last applied block (the genesis hash at height 0).
    pub last_block_hash: Hash,
    /// Cumulative mint, genesis included. Never exceeds the cap; burns do not lower it.
    pub minted: Amount,
    /// Cumulative burn.
    pub burned: Amount,
    /// The community pool: emission nobody claimed a share of, slashes of task 0, dust.
    pub community_pool: Amount,
    /// Sequence number for unbonding entries.
    pub unbonding_seq: u64,
}

/// A stake target's rules, registered by genesis or by a product when it creates a task.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TargetInfo {
    /// Minimum size of a position (0 or at least this).
    pub min_stake: Amount,
    /// Stake cannot be withdrawn before this height (e.g. the task's end).
    pub unlock_at: Height,
    /// Whether new stake is accepted.
    pub open: bool,
    /// A window `[from, until)` in which operators staked here cannot change σ.
    pub share_freeze: Option<(Height, Height)>,
    /// Sum of own stake bonded here (delegation excluded).
    pub total_stake: Amount,
}

/// Where unbonding funds came from.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum UnbondSource {
    /// Own stake from a target (slashable until released).
    Stake {
        /// The target.
        target: StakeTarget,
    },
    /// A delegation withdrawn from a pool.
    Delegation {
        /// The operator.
        operator: Address,
    },
}

/// Funds on their way back to a balance.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Unbonding {
    /// Who gets them.
    pub owner: Address,
    /// How much.
    pub amount: Amount,
    /// From where.
    pub source: UnbondSource,
}

/// An operator's delegation pool.
///
/// Delegators hold *shares*: a slash lowers `total_amount` and so every delegator's value
/// pro rata without touching each record. Rewards accumulate in `reward_balance` and are shared
/// by shares × blocks ("temporal" weight, as FLock's mini pools do with amount × seconds).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Pool {
    /// σ: the part of the delegation-attributable reward the operator keeps.
    pub share: Ppm,
    /// When σ last changed.
    pub share_changed_at: Height,
    /// FLOCK delegated (after slashes).
    pub total_amount: Amount,
    /// Outstanding shares.
    #[serde(with = "u128_string")]
    pub total_shares: u128,
    /// Rewards waiting to be claimed by delegators.
    pub reward_balance: Amount,
    /// Σ shares × blocks accrued by all delegators and not yet claimed.
    #[serde(with = "u128_string")]
    pub total_temporal: u128,
    /// Height `total_temporal` was last brought up to.
    pub temporal_at: Height,
}

/// One delegator's position in a pool.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Delegation {
    /// Pool shares held.
    #[serde(with = "u128_string")]
    pub shares: u128,
    /// Shares × blocks accrued and not yet claimed.
    #[serde(with = "u128_string")]
    pub temporal: u128,
    /// Height `temporal` was last brought up to.
    pub temporal_at: Height,
    /// Height of the last deposit (undelegation is locked for a while after it).
    pub last_deposit: Height,
}

/// Serde for `u128` as a decimal string (JSON numbers cannot hold it exactly).
pub(crate) mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(crate) fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

macro_rules! state_tables {
    ($( $(#[$doc:meta])* $name:ident : $k:ty => $v:ty = $prefix:literal ),* $(,)?) => {
        /// All ledger state.
        #[derive(Debug, Clone, Default)]
        pub struct State {
            $( $(#[$doc])* pub $name: Table<$k, $v>, )*
        }

        /// A point to roll back to.
        #[derive(Debug)]
        pub struct Checkpoint(Vec<usize>);

        impl State {
            /// A checkpoint of every table.
            pub fn checkpoint(&self) -> Checkpoint {
                Checkpoint(vec![$(self.$name.mark()),*])
            }

            /// Undoes everything after `cp`.
            pub fn rollback(&mut self, cp: Checkpoint) {
                let mut marks = cp.0.into_iter();
                $( if let Some(m) = marks.next() { self.$name.rollback(m); } )*
            }

            /// Makes all changes so far permanent (no rollback past this point).
            pub fn clear_undo(&mut self) {
                $( self.$name.clear_undo(); )*
            }

            /// The write set since the last call, sorted by key.
            pub fn take_changes(&mut self) -> Vec<StateChange> {
                let mut out = Vec::new();
                $( self.$name.take_dirty($prefix, &mut out); )*
                out.sort();
                out
            }

            /// Every entry as `(prefix ‖ key, value)`, sorted by key (genesis commit, audits).
            pub fn all_entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
                let mut out = Vec::new();
                $(
                    for (k, v) in self.$name.iter() {
                        let mut key = vec![$prefix];
                        key.extend(flock_primitives::codec::encode(k));
                        out.push((key, flock_primitives::codec::encode(v)));
                    }
                )*
                out.sort();
                out
            }

            /// A digest of the whole state (tests and audits; the real root is the JMT's).
            pub fn digest(&self) -> flock_primitives::Hash {
                let entries = self.all_entries();
                let parts: Vec<&[u8]> =
                    entries.iter().flat_map(|(k, v)| [k.as_slice(), v.as_slice()]).collect();
                flock_primitives::Hash::of_parts("flock state digest v1", &parts)
            }

            /// Loads one stored entry (restart). Unknown prefixes and undecodable bytes are
            /// corruption and reported as such.
            pub fn load_entry(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
                let (&p, rest) = key.split_first().ok_or("empty state key")?;
                $(
                    if p == $prefix {
                        let k: $k = borsh::from_slice(rest)
                            .map_err(|e| format!("bad key in {}: {e}", stringify!($name)))?;
                        let v: $v = borsh::from_slice(value)
                            .map_err(|e| format!("bad value in {}: {e}", stringify!($name)))?;
                        self.$name.load(k, v);
                        return Ok(());
                    }
                )*
                Err(format!("unknown state key prefix {p}"))
            }
        }
    };
}

state_tables! {
    /// Chain-wide counters (one entry).
    globals: () => Globals = 0x01,
    /// Parameters fixed at genesis (one entry).
    params: () => Params = 0x02,
    /// Accounts by address.
    accounts: Address => Account = 0x03,
    /// Registered stake targets.
    targets: StakeTarget => TargetInfo = 0x04,
    /// Own stake by (staker, target).
    stakes: (Address, StakeTarget) => Amount = 0x05,
    /// Unbonding funds by (release height, sequence).
    unbonding: (Height, u64) => Unbonding = 0x06,
    /// Delegation pools by operator.
    pools: Address => Pool = 0x07,
    /// Delegations by (operator, delegator).
    delegations: (Address, Address) => Delegation = 0x08,
    /// Claimable own rewards by account.
    rewards: Address => Amount = 0x09,
    /// Vested own rewards by (account, release height).
    vesting: (Address, Height) => Amount = 0x0a,
    /// Vested pool rewards by (operator, release height).
    pool_vesting: (Address, Height) => Amount = 0x0b,
    /// Per-task pools (slashes, creator deposits); task 0 uses the community pool instead.
    task_pools: u64 => Amount = 0x0c,
    /// Arena counters (one entry).
    arena_meta: () => ArenaMeta = 0x20,
    /// Arena tasks by id.
    arena_tasks: u64 => ArenaTask = 0x21,
    /// Sealed submissions by (task, round, node).
    arena_commits: (u64, u32, Address) => SubmissionCommit = 0x22,
    /// Revealed submissions by (task, round, index in reveal order).
    arena_submissions: (u64, u32, u32) => Submission = 0x23,
    /// The public inputs of each round's validator draw by (task, round).
    arena_draws: (u64, u32) => RoundDraw = 0x24,
    /// Assigned validators by (task, round, submission).
    arena_assignments: (u64, u32, u32) => Vec<Address> = 0x25,
    /// Sealed scores by (task, round, submission, validator).
    arena_score_commits: (u64, u32, u32, Address) => Hash = 0x26,
    /// Revealed scores by (task, round, submission, validator).
    arena_scores: (u64, u32, u32, Address) => Score = 0x27,
    /// Revealed validation-set hashes by (task, round).
    arena_validation: (u64, u32) => Hash = 0x28,
    /// Settled rounds by (task, round).
    arena_results: (u64, u32) => RoundResult = 0x29,
    /// FL Alliance tasks by id.
    alliance_tasks: u64 => AllianceTask = 0x30,
    /// Role draws by (task, round).
    alliance_draws: (u64, u32) => RoleDraw = 0x31,
    /// Proposals `(proposer, update hash)` by (task, round, index).
    alliance_proposals: (u64, u32, u32) => (Address, Hash) = 0x32,
    /// Sealed votes by (task, round, voter).
    alliance_vote_commits: (u64, u32, Address) => Hash = 0x33,
    /// Revealed votes by (task, round, voter).
    alliance_votes: (u64, u32, Address) => Vote = 0x34,
    /// Decided rounds by (task, round).
    alliance_rounds: (u64, u32) => AllianceRound = 0x35,
    /// Secure-aggregation public masking keys by (task, member).
    alliance_mask_keys: (u64, Address) => MaskPublicKey = 0x36,
    /// Dropout reveals `(dropped proposer, pair seed)` by (task, round, surviving proposer).
    alliance_unmasks: (u64, u32, Address) => Vec<(Address, Hash)> = 0x37,
    /// Marketplace listings by name.
    market_listings: String => crate::market::Listing = 0x40,
    /// Credit escrows by consumer.
    market_escrows: Address => crate::market::Escrow = 0x41,
    /// Due escrow withdrawals by (release height, consumer).
    market_releases: (Height, Address) => () = 0x42,
    /// API keys by the hash of the key.
    market_keys: Hash => crate::market::ApiKey = 0x43,
    /// Index of API keys by (owner, key hash).
    market_account_keys: (Address, Hash) => () = 0x44,
    /// Settled usage batches by (listing, batch id).
    market_batches: (String, Hash) => crate::market::SettledBatch = 0x45,
    /// Total charged by (listing, consumer).
    market_spent: (String, Address) => Amount = 0x46,
    /// Ratings (1–5 stars) by (listing, consumer).
    market_ratings: (String, Address) => u8 = 0x47,
    /// Validators punished for a consensus fault, by account.
    consensus_tombstones: Address => crate::consensus::Tombstone = 0x50,
    /// Validator sets by ledger epoch (recorded at the end of the previous epoch).
    validator_sets: u64 => Vec<crate::consensus::SetMember> = 0x51,
    /// Registered consensus endpoints by account.
    consensus_endpoints: Address => crate::consensus::ConsensusEndpoint = 0x52,
    /// Dealer logs of threshold-key resharing rounds by (round, dealer).
    dkg_logs: (u64, Address) => Vec<u8> = 0x53,
}

impl State {
    /// The chain counters (default before genesis).
    pub fn globals(&self) -> Globals {
        self.globals.get(&()).cloned().unwrap_or_default()
    }

    /// Updates the chain counters.
    pub fn update_globals<R>(&mut self, f: impl FnOnce(&mut Globals) -> R) -> R {
        let mut g = self.globals();
        let r = f(&mut g);
        self.globals.insert((), g);
        r
    }

    /// The account at `a` (empty if absent).
    pub fn account(&self, a: &Address) -> Account {
        self.accounts.get(a).cloned().unwrap_or_default()
    }

    /// Stores an account, deleting it when empty so state does not grow with dust accounts.
    pub fn put_account(&mut self, a: Address, acc: Account) {
        if acc.balance.is_zero() && acc.nonce == 0 {
            self.accounts.remove(&a);
        } else {
            self.accounts.insert(a, acc);
        }
    }
}
