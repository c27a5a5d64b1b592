//! Marketplace model serving: listed models behind an OpenAI-compatible API on the node,
//! paid from the consumers' FLOCK credit escrow and settled on the ledger in batches.
//!
//! ```text
//!  consumer ── Authorization: Bearer <key> ──► node API (merged routes)
//!    GET  /v1/models                 listings served here (+ flock: price, provenance)
//!    POST /v1/chat/completions       messages → reply (stream: SSE chunks, usage last)
//!    POST /v1/completions            prompt → continuation
//!    POST /v1/predict                Predict listings: rows → outputs (an MLP)
//!    POST /v1/feedback               rating / correction of a served completion
//!
//!  per request: key hash bound & not revoked (401) → token bucket (429) → body ≤ limit (413)
//!    → valid (400) / known model (404) → escrow available − unsettled ≥ worst case (402)
//!    → bounded queue (503) → inference on a blocking thread → usage journaled + fsync'd
//!    → response (x-flock-provenance header, `flock` field)
//!
//!  settler: journal ─► MarketSettle batches (id = H(server, listing, journal id, seq range))
//!    signed by the server key ─► node mempool ─► block ─► "settled" journaled
//! ```
//!
//! # Design decisions
//! * **The node stays ML-free.** `flock-node` only knows [`flock_node::ApiExtension`]: a
//!   closure building extra routes from the node handle plus a shutdown step; [`extension`]
//!   builds one from a [`ServeConfig`].
//! * **No usage is lost, none is charged twice.** Usage is on disk (group-committed fsync)
//!   before its response completes; a batch's range is journaled before it is sent, so after
//!   a crash the same batch id is sent again and the ledger's once-per-id rule refuses it.
//!   See [`journal`] and [`meter`].
//! * **Credit is checked against what is already owed.** A request is admitted only if the
//!   escrow's available credit covers what this server has served but not settled, what
//!   requests in flight may cost, and this request's worst case (prompt + `max_tokens`).
//! * **Metering is the model's tokenizer.** Prompt tokens are the rendered chat template's
//!   tokens; completion tokens are every generated token, the end-of-turn token included.
//!   A predict call is metered as one call per input row.
//! * **Inference is bounded.** `workers` blocking threads run generation; `queue` more
//!   requests may wait; beyond that 503.

// The serve layer owns the real clock (rate limits, timestamps) and OS randomness (ids).
#![allow(clippy::disallowed_methods)]

mod auth;
pub mod config;
pub mod error;
pub mod feedback;
mod generate;
mod handlers;
pub mod journal;
pub mod meter;
mod models;
mod openai;
pub mod predict;
mod service;
mod settle;

pub use auth::{api_key_hash, generate_api_key};
pub use config::{serve_dir, RateLimit, ServeConfig, ServedModel};
pub use error::{ApiError, ServeError};
pub use feedback::{export_feedback, feedback_example, FeedbackRecord};
pub use meter::batch_id;
pub use predict::{save_predict_model, PredictSpec, PredictTask};
pub use service::{extension, routes, Serve};
