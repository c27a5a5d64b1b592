//! AI Arena on the ledger: tasks, commit–reveal submissions, verifiable validator draws,
//! commit–reveal scores, consensus, rank rewards and slashing.
//!
//! ```text
//! round r:  train & commit ──► reveal (+ creator reveals the validation set)
//!           ──► validate: draw k validators per submission (block seed), commit scores
//!           ──► reveal scores ──► settle at the round's last block
//! ```
//! The ledger never runs a model: agents train and evaluate off-chain and post hashes and
//! fixed-point scores. Rewards come from the task's share of each epoch's emission (weighted by
//! stake, see [`ArenaSink`]) plus the creator's deposit, and are paid through the generic
//! staking, delegation and vesting machinery; misses are slashed through [`State::slash`].
//!
//! [`State::slash`]: crate::State::slash

mod draw;
mod handler;
mod settle;
mod sink;
mod types;

pub use draw::{draw_validators, draw_weight, verify_draw, DrawMismatch, RoundDraw};
pub use handler::{node_target, validator_target};
pub use settle::{geometric, pro_rata, score_quality, side_split, stake_factor, weighted_median};
pub use sink::ArenaSink;
pub use types::*;
