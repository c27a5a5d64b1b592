//! Ledger integration tests: one binary, one module per area.

mod alliance;
mod arena;
mod common;
mod conformance;
mod consensus;
mod economics;
mod market;
mod props;
mod txs;
