//! The flock node: everything around the ledger that touches the outside world.
//!
//! ```text
//!   HTTP API (axum) ──submit──► Mempool (pending ledger, typed errors at admission)
//!        ▲ reads                      │ take
//!        │                 BlockSource (SoloSequencer now; a BFT engine behind the same seam)
//!        │                            │ finalized Block
//!        │                            ▼
//!        └──────────── Node::apply_finalized = execute (Ledger) → commit (Store, one
//!                      transaction, JMT root) → notify (mempool reset, height watch, metrics)
//! ```
//!
//! # Design decisions
//! * **One block path.** Whatever produces blocks, they reach state only through
//!   [`Node::apply_finalized`]; headers carry the parent's state root (deferred execution), so a
//!   consensus engine can order blocks before they are executed.
//! * **Blocking work off the async runtime.** Block production, execution and fsync run on a
//!   dedicated thread; API handlers only read shared state under short locks.
//! * **Admission against pending state.** The mempool runs each transaction on a copy of the
//!   ledger, so clients get precise errors immediately and blocks contain what was admitted.

// The node owns the real clock (block times, timeouts).
#![allow(clippy::disallowed_methods)]

pub mod api;
mod api_alliance;
mod api_arena;
mod api_artifacts;
mod api_market;
pub mod artifact_peers;
pub mod artifacts;
#[cfg(feature = "bft")]
pub mod bft;
pub mod chain;
pub mod client;
pub mod keystore;
pub mod mempool;
pub mod metrics;
pub mod node;
pub mod sequencer;
pub mod server;

pub use chain::{Chain, ChainError, Committed};
pub use client::{Client, ClientError};
pub use keystore::Keystore;
pub use mempool::{Mempool, MempoolLimits, SubmitError};
pub use node::{BlockSource, EvidenceCheck, Node};
pub use sequencer::SoloSequencer;
pub use server::{
    start, start_with, ApiExtension, NodeConfig, RunningNode, SequencerKey, ShutdownFuture,
};
