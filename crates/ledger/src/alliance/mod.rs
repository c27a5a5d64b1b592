//! FL Alliance on the ledger: federated rounds with verifiable proposer/voter draws,
//! commit–reveal votes, a stake-weighted tally, rewards and slashing.
//!
//! ```text
//! join (members stake) ─► round r: draw roles from the block seed ─► proposers post update
//!   hashes ─► voters aggregate deterministically off-chain, evaluate on local data, commit
//!   (aggregate, vote, score) ─► reveal ─► decide: tally, adopt, pay, slash, remove
//! ```
//! Members' data never reaches the ledger or the node: proposers upload updates to the artifact
//! store, and only hashes, votes and fixed-point scores are posted.

mod decide;
mod handler;
mod secagg;
mod sink;
mod types;

pub use decide::MOSTLY_DISCARDED;
pub use handler::{make_draw, member_target, AlliancePhase};
pub use secagg::MAX_UNMASK_REVEALS;
pub use sink::AllianceSink;
pub use types::*;
