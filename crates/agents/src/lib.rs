//! flock agents: the processes that do the ML work and sign their own transactions.
//!
//! Each agent talks to a node only through the public HTTP API (the same a remote user has):
//! it reads task state, moves artifacts through `/v1/artifacts`, and submits transactions
//! signed with its own key. The ML work is behind the [`ArenaMl`] trait so the loops are tested
//! with a fast stand-in and run with the real engine (`flock-ml`) in `flockd`.
//!
//! ```text
//!   creator ── uploads base model, training set; commits to hidden validation sets; opens task
//!   trainer ── train phase: fine-tune, upload, commit  ─► reveal phase: reveal
//!   validator ─ validate phase: fetch assignments, score on the revealed set, commit ─► reveal
//! ```

pub mod alliance;
pub mod arena;
pub mod engine;
pub mod fetch;
pub mod fl_scenario;
pub mod scenario;

pub use arena::{ArenaMl, TrainPlan, TrainerBehaviour, ValidatorBehaviour};
pub use fetch::{Artifacts, Manifest};

use flock_primitives::Hash;
use thiserror::Error;

/// Agent errors.
#[derive(Debug, Error)]
pub enum AgentError {
    /// The node refused or failed a request.
    #[error(transparent)]
    Client(#[from] flock_node::ClientError),
    /// An HTTP transfer failed.
    #[error("transfer failed: {0}")]
    Http(String),
    /// An artifact is not on the node.
    #[error("artifact {0} is not available")]
    Missing(Hash),
    /// Downloaded bytes are not what was asked for.
    #[error("corrupt artifact: {0}")]
    Corrupt(String),
    /// Local files.
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The ML engine failed on our own work (not a submission's fault).
    #[error("ML: {0}")]
    Ml(String),
    /// The task is not in a state this agent can work with.
    #[error("{0}")]
    Protocol(String),
}
