//! Node integration tests: the chain's block path and the HTTP API, in memory.

mod api;
mod arena;
mod artifacts;
mod chain;
mod common;
