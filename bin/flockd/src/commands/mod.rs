//! One module per subcommand.

mod agent;
#[cfg(feature = "bft")]
mod bft;
mod devnet;
mod genesis;
mod keys;
mod market;
mod model_import;
mod node;
mod query;
mod tx;

use crate::cli::{Cli, Command};
use flock_node::Keystore;
use flock_primitives::Address;
use std::path::Path;

pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Devnet(a) => devnet::run(a, json).await,
        Command::Node(a) => node::run(a).await,
        Command::Genesis(a) => genesis::run(a, json),
        Command::Keys(k) => keys::run(k, json),
        Command::Tx(a) => tx::run(a, json).await,
        Command::Query(q) => query::run(q, json).await,
        Command::Agent(a) => agent::run(a).await,
        Command::Model(m) => agent::model(m, json).await,
        Command::Market(m) => market::run(m, json).await,
        #[cfg(feature = "bft")]
        Command::Testnet(a) => bft::testnet(a).await,
    }
}

/// An address, or the address of a key in the keystore.
pub(crate) fn resolve_address(who: &str, data_dir: &Path) -> anyhow::Result<Address> {
    if who.starts_with("flk1") {
        return Ok(who.parse()?);
    }
    Ok(Keystore::open(data_dir).get(who)?.address())
}

pub(crate) fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}
