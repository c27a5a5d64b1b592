//! Node integration tests: the chain's block path and the HTTP API, in memory.

mod api;
mod chain;
mod common;
