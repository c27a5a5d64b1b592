//! Node integration tests: the chain's block path and the HTTP API, in memory.

mod alliance;
mod api;
mod arena;
mod artifact_peers;
mod artifacts;
mod chain;
mod common;
