//! AI Marketplace on the ledger: listings with verified provenance, credit escrow, API keys,
//! usage settlement in batches, revenue split, ratings.
//!
//! ```text
//! owner:    MarketList (name, server, artifact, price, split, provenance claim)
//!           ─► the ledger fills provenance (score, validators) from a settled Arena round or
//!              an accepted Alliance round
//! consumer: MarketDeposit ─► escrow ─► MarketKeyCreate(hash of an API key)
//!           ─► calls the node's OpenAI-compatible API with the key
//! server:   meters usage per key ─► MarketSettle(batch) ─► escrow charged (never overdrawn,
//!           shortfall recorded) ─► owner / provenance validators / burn
//! consumer: MarketRate (paying consumers only) · MarketWithdraw (released after a delay)
//! ```
//! The ledger sees only hashes of API keys and metered counts; prompts and answers never
//! reach it. A batch id settles once per listing, so a server may retry a batch safely.

mod escrow;
mod handler;
mod provenance;
mod settle;
mod types;

pub use types::*;
