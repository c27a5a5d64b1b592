//! Ledger integration tests: one binary, one module per area.

mod common;
mod economics;
mod props;
mod txs;
