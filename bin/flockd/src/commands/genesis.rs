//! `flockd genesis`: write a genesis file and a sequencer key.

use super::{print_json, resolve_address};
use crate::cli::GenesisArgs;
use anyhow::Context;
use flock_ledger::{Allocation, Genesis, Params};
use flock_node::SequencerKey;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn run(a: GenesisArgs, json: bool) -> anyhow::Result<()> {
    let dir = &a.data.data_dir;
    let mut allocations = Vec::new();
    for spec in &a.allocations {
        let (who, amount) =
            spec.split_once('=').context("an allocation is WHO=AMOUNT, e.g. alice=1000")?;
        allocations
            .push(Allocation { address: resolve_address(who, dir)?, amount: amount.parse()? });
    }
    let key_path = dir.join("sequencer.key");
    let key = if key_path.exists() {
        SequencerKey::load(&key_path)?
    } else {
        let k = SequencerKey::generate();
        k.save(&key_path)?;
        k
    };
    let mut params = Params::default();
    if let Some(e) = a.epoch_length {
        params.epoch_length = e;
    }
    let genesis = Genesis {
        chain_id: a.chain_id,
        genesis_time_ms: SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64,
        params,
        allocations,
        targets: vec![],
        sequencer: Some(key.genesis_entry()),
    };
    genesis.validate()?;
    let out = a.out.unwrap_or_else(|| dir.join("genesis.json"));
    std::fs::write(&out, serde_json::to_string_pretty(&genesis)?)
        .with_context(|| format!("writing {}", out.display()))?;
    if json {
        print_json(
            &serde_json::json!({ "genesis": out, "sequencer_key": key_path, "hash": genesis.hash() }),
        );
    } else {
        println!(
            "wrote {} (hash {})\nsequencer key: {}",
            out.display(),
            genesis.hash(),
            key_path.display()
        );
    }
    Ok(())
}
