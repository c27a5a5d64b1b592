//! The flock ledger: a pure, deterministic state machine over the FLOCK token.
//!
//! ```text
//!   Block { header(height, parent, parent_state_root, time, seed), txs }
//!        │ apply_block                         (no clock, no OS randomness, no floats)
//!        ▼
//!   verify header + batch-verify signatures ─► release matured unbonding
//!        ─► for each tx: nonce, execute (rolled back on error, nonce kept) ─► receipt
//!        ─► at an epoch boundary: mint the emission (capped), split it across sinks
//!        ▼
//!   State (journaled tables) ──take_changes──► write set ──► storage (JMT state root)
//! ```
//!
//! Modules: [`token`](crate::State::transfer) (balances, burns, capped mint), emission,
//! staking (positions by task and role, locks, minimums, unbonding), delegation (pools with σ,
//! shares, amount × time rewards), slashing (reaches delegators pro rata; reporter / pool / burn
//! split), rewards (vesting, claims with burned fees); products: [`arena`], [`alliance`],
//! [`market`] (listings with verified provenance, credit escrow, API keys, usage settlement).
//!
//! # Design decisions
//! * **Generic stakes.** A stake has a target `(task, role)`; products register targets and
//!   call [`State::pay_reward`] and [`State::slash`], so AI Arena, FL Alliance and the
//!   marketplace share one staking, delegation and slashing implementation.
//! * **Failed transactions consume their nonce.** A transaction that passes the stateless and
//!   nonce checks but fails in execution is kept in the block with a failed receipt and no other
//!   effect; a block with a bad signature, chain id or nonce is invalid as a whole.
//! * **Supply is conserved exactly**: `minted − burned` equals the sum of every holding
//!   ([`SupplyReport`]); property tests check it after random transaction sequences.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![deny(clippy::float_arithmetic, clippy::disallowed_methods)]

pub mod alliance;
pub mod arena;
mod block;
pub mod consensus;
mod delegation;
pub mod emission;
mod error;
mod events;
mod genesis;
mod ledger;
pub mod market;
mod params;
mod rewards;
mod slashing;
mod staking;
mod state;
mod supply;
mod table;
mod token;
mod tx;

pub use block::{solo_seed_input, tx_root, Block, Header, SeedProof};
pub use emission::EmissionSink;
pub use error::{BlockError, TxError};
pub use events::{BlockReceipts, BurnReason, Event, Receipt, TxStatus};
pub use genesis::{Allocation, Genesis, GenesisError, GenesisTarget, Sequencer};
pub use ledger::Ledger;
pub use params::Params;
pub use rewards::{RewardSplit, Vesting};
pub use slashing::SlashOutcome;
pub use state::{
    Account, Checkpoint, Delegation, Globals, Pool, State, StateChange, TargetInfo, UnbondSource,
    Unbonding,
};
pub use supply::SupplyReport;
pub use table::Table;
pub use tx::{ClaimFrom, Role, SignedTx, StakeTarget, TaskId, Transaction, TxKind};

#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
