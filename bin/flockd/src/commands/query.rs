//! `flockd query ...`.

use super::{print_json, resolve_address};
use crate::cli::QueryCmd;
use flock_node::Client;

pub(crate) async fn run(q: QueryCmd, json: bool) -> anyhow::Result<()> {
    let (v, kind) = match q {
        QueryCmd::Account { who, data, node } => {
            let a = resolve_address(&who, &data.data_dir)?;
            (Client::new(&node.url).get(&format!("/v1/accounts/{a}")).await?, "account")
        }
        QueryCmd::Block { height, node } => {
            let path = if height == "latest" {
                "/v1/blocks/latest".to_owned()
            } else {
                format!("/v1/blocks/{height}")
            };
            (Client::new(&node.url).get(&path).await?, "block")
        }
        QueryCmd::Tx { hash, node } => {
            (Client::new(&node.url).get(&format!("/v1/txs/{hash}")).await?, "tx")
        }
        QueryCmd::Supply { node } => (Client::new(&node.url).get("/v1/supply").await?, "supply"),
        QueryCmd::Status { node } => (Client::new(&node.url).get("/v1/status").await?, "status"),
    };
    if json {
        print_json(&v);
        return Ok(());
    }
    match kind {
        "account" => {
            println!("address  {}", v["address"].as_str().unwrap_or("?"));
            println!("balance  {}", v["balance_human"].as_str().unwrap_or("?"));
            println!("nonce    {} (next {})", v["nonce"], v["next_nonce"]);
            for s in v["stakes"].as_array().into_iter().flatten() {
                println!(
                    "stake    task {}/{}: {} base units (+{} delegated)",
                    s["target"]["task"],
                    s["target"]["role"].as_str().unwrap_or("?"),
                    s["amount"].as_str().unwrap_or("?"),
                    s["delegated"].as_str().unwrap_or("0")
                );
            }
            for d in v["delegations"].as_array().into_iter().flatten() {
                println!(
                    "delegated to {}: {} base units",
                    d["operator"].as_str().unwrap_or("?"),
                    d["value"].as_str().unwrap_or("?")
                );
            }
            println!(
                "rewards  claimable {} / vesting {} base units",
                v["rewards"]["claimable"].as_str().unwrap_or("0"),
                v["rewards"]["vesting"].as_str().unwrap_or("0")
            );
        }
        "supply" => {
            let r = &v["report"];
            println!("height       {}", v["height"]);
            println!("circulating  {}", v["circulating_human"].as_str().unwrap_or("?"));
            for f in [
                "minted",
                "burned",
                "cap",
                "balances",
                "staked",
                "unbonding",
                "delegated",
                "pool_rewards",
                "unclaimed_rewards",
                "community_pool",
                "task_pools",
            ] {
                println!("{f:<18} {} base units", r[f].as_str().unwrap_or("?"));
            }
            println!("conserved    {}", v["conserved"]);
        }
        _ => print_json(&v),
    }
    Ok(())
}
