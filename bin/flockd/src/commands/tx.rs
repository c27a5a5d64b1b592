//! `flockd tx ...`: sign with a keystore key, submit, wait for the block.

use super::{print_json, resolve_address};
use crate::cli::{TxArgs, TxCmd};
use anyhow::Context;
use flock_ledger::{ClaimFrom, Role, StakeTarget, TxKind};
use flock_node::{Client, Keystore};
use flock_primitives::{Amount, Ppm};
use std::time::Duration;

pub(crate) fn parse_target(s: &str) -> anyhow::Result<StakeTarget> {
    let (task, role) =
        s.split_once('/').context("a target is TASK/ROLE, e.g. 0/network or 7/validator")?;
    let task: u64 = task.parse().with_context(|| format!("task {task:?} is not a number"))?;
    let role: Role = role.parse().map_err(anyhow::Error::msg)?;
    Ok(StakeTarget { task, role })
}

pub(crate) fn parse_share(s: &str) -> anyhow::Result<Ppm> {
    let t = s.trim();
    let ppm = if let Some(p) = t.strip_suffix('%') {
        let v: f64 =
            p.trim().parse().with_context(|| format!("share {s:?} is not a percentage"))?;
        if !(0.0..=100.0).contains(&v) {
            anyhow::bail!("share {s:?} must be between 0% and 100%");
        }
        (v * 10_000.0).round() as u32
    } else if let Some(p) = t.strip_suffix("ppm") {
        p.trim().parse().with_context(|| format!("share {s:?} is not a ppm integer"))?
    } else {
        anyhow::bail!("share {s:?} needs a unit: e.g. 10% or 100000ppm");
    };
    Ok(Ppm::from_ppm(ppm)?)
}

fn amount(s: &str) -> anyhow::Result<Amount> {
    Ok(s.parse::<Amount>()?)
}

pub(crate) async fn run(a: TxArgs, json: bool) -> anyhow::Result<()> {
    let key = Keystore::open(&a.data.data_dir).get(&a.from)?;
    let dir = &a.data.data_dir;
    let kind = match &a.kind {
        TxCmd::Transfer { to, amount: v } => {
            TxKind::Transfer { to: resolve_address(to, dir)?, amount: amount(v)? }
        }
        TxCmd::Burn { amount: v } => TxKind::Burn { amount: amount(v)? },
        TxCmd::Stake { target, amount: v } => {
            TxKind::Stake { target: parse_target(target)?, amount: amount(v)? }
        }
        TxCmd::RegisterValidator { endpoint } => {
            TxKind::ConsensusRegister { endpoint: endpoint.clone() }
        }
        TxCmd::Unstake { target, amount: v } => {
            TxKind::Unstake { target: parse_target(target)?, amount: amount(v)? }
        }
        TxCmd::Delegate { operator, amount: v } => {
            TxKind::Delegate { operator: resolve_address(operator, dir)?, amount: amount(v)? }
        }
        TxCmd::Undelegate { operator, amount: v } => {
            TxKind::Undelegate { operator: resolve_address(operator, dir)?, amount: amount(v)? }
        }
        TxCmd::SetShare { share } => TxKind::SetShare { share: parse_share(share)? },
        TxCmd::Claim { pool } => TxKind::Claim {
            from: match pool {
                Some(op) => ClaimFrom::Pool { operator: resolve_address(op, dir)? },
                None => ClaimFrom::Own,
            },
        },
    };
    let client = Client::new(&a.node.url);
    let hash = client.send(&key, kind).await?;
    if a.no_wait {
        if json {
            print_json(&serde_json::json!({ "hash": hash, "status": "pending" }));
        } else {
            println!("submitted {hash}");
        }
        return Ok(());
    }
    let v = client.wait_tx(hash, Duration::from_secs(120)).await?;
    let r = &v["receipt"];
    if json {
        print_json(&v);
    } else {
        println!("tx {hash} in block {}: {}", v["height"], r["status"].as_str().unwrap_or("?"));
        if let Some(events) = r["events"].as_array() {
            for e in events {
                println!("  {e}");
            }
        }
    }
    if r["status"] == "failed" {
        anyhow::bail!("transaction failed: {}", r["message"].as_str().unwrap_or("unknown"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_shares_parse() {
        assert_eq!(parse_target("0/network").unwrap(), StakeTarget::NETWORK);
        assert_eq!(
            parse_target("7/validator").unwrap(),
            StakeTarget { task: 7, role: Role::Validator }
        );
        assert!(parse_target("seven/validator").is_err());
        assert!(parse_target("7/wizard").is_err());
        assert_eq!(parse_share("10%").unwrap(), Ppm::from_ppm(100_000).unwrap());
        assert_eq!(parse_share("12.5%").unwrap(), Ppm::from_ppm(125_000).unwrap());
        assert_eq!(parse_share("145000ppm").unwrap(), Ppm::from_ppm(145_000).unwrap());
        assert!(parse_share("101%").is_err());
        assert!(parse_share("10").is_err());
    }
}
