//! `flockd market ...`: the AI Marketplace from the command line.

use super::{print_json, resolve_address};
use crate::cli::{MarketArgs, MarketCmd, MarketKeysCmd};
use anyhow::Context;
use flock_ledger::{
    market::{ListingSpec, ModelKind, Pricing, Product, ProvenanceClaim, RevenueSplit},
    TxKind,
};
use flock_node::{Client, Keystore};
use flock_primitives::{Amount, Hash, Ppm};
use serde_json::{json, Value};
use std::time::Duration;

fn percent(s: &str) -> anyhow::Result<Ppm> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .with_context(|| format!("{s:?} is not a percentage"))?;
    if !(0.0..=100.0).contains(&v) {
        anyhow::bail!("{s:?} must be between 0 and 100");
    }
    Ok(Ppm::from_ppm((v * 10_000.0).round() as u32)?)
}

fn split(s: &str) -> anyhow::Result<RevenueSplit> {
    let parts: Vec<&str> = s.split('/').collect();
    let [o, v, b] = parts.as_slice() else {
        anyhow::bail!("a split is OWNER/VALIDATORS/BURN in percent, e.g. 80/15/5");
    };
    Ok(RevenueSplit { owner: percent(o)?, validators: percent(v)?, burn: percent(b)? })
}

fn provenance(s: &str) -> anyhow::Result<ProvenanceClaim> {
    let parts: Vec<&str> = s.split(':').collect();
    let [p, t, r] = parts.as_slice() else {
        anyhow::bail!("provenance is arena:TASK:ROUND or alliance:TASK:ROUND");
    };
    let product = match *p {
        "arena" => Product::Arena,
        "alliance" => Product::Alliance,
        other => anyhow::bail!("unknown product {other:?} (arena or alliance)"),
    };
    Ok(ProvenanceClaim {
        product,
        task: t.parse().with_context(|| format!("task {t:?}"))?,
        round: r.parse().with_context(|| format!("round {r:?}"))?,
    })
}

async fn send(
    a: &MarketArgs,
    from: &str,
    kind: TxKind,
    json_out: bool,
    ok: impl FnOnce(&Value) -> String,
) -> anyhow::Result<Value> {
    let key = Keystore::open(&a.data.data_dir).get(from)?;
    let client = Client::new(&a.node.url);
    let hash = client.send(&key, kind).await?;
    let v = client.wait_tx(hash, Duration::from_secs(120)).await?;
    let r = &v["receipt"];
    if r["status"] == "failed" {
        anyhow::bail!(
            "transaction {hash} failed: {} ({})",
            r["message"].as_str().unwrap_or("unknown"),
            r["code"].as_str().unwrap_or("")
        );
    }
    if json_out {
        print_json(&v);
    } else {
        println!("{}", ok(&v));
    }
    Ok(v)
}

pub(crate) async fn run(a: MarketArgs, json_out: bool) -> anyhow::Result<()> {
    let client = Client::new(&a.node.url);
    let dir = a.data.data_dir.clone();
    match &a.cmd {
        MarketCmd::List => {
            let v = client.get("/v1/market/listings").await?;
            if json_out {
                print_json(&v);
                return Ok(());
            }
            let ls = v["listings"].as_array().cloned().unwrap_or_default();
            if ls.is_empty() {
                println!("no models listed");
            }
            for l in ls {
                let prov = &l["provenance"];
                println!(
                    "{:<24} {:<9} {} per 1k tokens + {} per call  split {}/{}/{} ppm  rating {}  volume {}{}{}",
                    l["name"].as_str().unwrap_or(""),
                    l["kind"].as_str().unwrap_or(""),
                    l["price"]["per_1k_tokens"].as_str().and_then(|x| Amount::from_base_str(x).ok()).unwrap_or_default(),
                    l["price"]["per_call"].as_str().and_then(|x| Amount::from_base_str(x).ok()).unwrap_or_default(),
                    l["split"]["owner"], l["split"]["validators"], l["split"]["burn"],
                    l["rating"].as_str().unwrap_or("-"),
                    l["volume"].as_str().and_then(|x| Amount::from_base_str(x).ok()).unwrap_or_default(),
                    if prov.is_null() { String::new() } else { format!("  from {} task {} round {}", prov["product"].as_str().unwrap_or(""), prov["task"], prov["round"]) },
                    if l["active"] == false { "  (inactive)" } else { "" },
                );
            }
        }
        MarketCmd::Publish {
            from,
            name,
            artifact,
            server,
            kind,
            per_1k_tokens,
            per_call,
            split: sp,
            provenance: prov,
        } => {
            let spec = ListingSpec {
                name: name.clone(),
                server: resolve_address(server, &dir)?,
                artifact: artifact
                    .parse::<Hash>()
                    .map_err(|e| anyhow::anyhow!("artifact {artifact:?}: {e}"))?,
                kind: match kind.as_str() {
                    "language" => ModelKind::Language,
                    "predict" => ModelKind::Predict,
                    k => anyhow::bail!("kind {k:?}: language or predict"),
                },
                price: Pricing {
                    per_1k_tokens: per_1k_tokens.parse()?,
                    per_call: per_call.parse()?,
                },
                split: split(sp)?,
                provenance: prov.as_deref().map(provenance).transpose()?,
            };
            send(&a, from, TxKind::MarketList { spec: Box::new(spec) }, json_out, |_| {
                format!("listed {name}")
            })
            .await?;
        }
        MarketCmd::Deposit { from, amount } => {
            let amount: Amount = amount.parse()?;
            send(&a, from, TxKind::MarketDeposit { amount }, json_out, |_| {
                format!("deposited {amount} into the credit escrow")
            })
            .await?;
        }
        MarketCmd::Withdraw { from, amount } => {
            let amount: Amount = amount.parse()?;
            send(&a, from, TxKind::MarketWithdraw { amount }, json_out, |v| {
                let at = v["receipt"]["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|e| e["release_at"].as_u64());
                format!(
                    "withdrawing {amount}; released at height {}",
                    at.map(|h| h.to_string()).unwrap_or_else(|| "?".into())
                )
            })
            .await?;
        }
        MarketCmd::Keys(MarketKeysCmd::Create { from, label }) => {
            let key = flock_serve::generate_api_key();
            let key_hash = flock_serve::api_key_hash(&key);
            send(
                &a,
                from,
                TxKind::MarketKeyCreate { key_hash, label: label.clone() },
                false,
                |_| String::new(),
            )
            .await?;
            if json_out {
                print_json(&json!({ "api_key": key, "key_hash": key_hash, "label": label }));
            } else {
                println!("API key (shown once; store it safely): {key}\nkey hash on the ledger: {key_hash}");
            }
        }
        MarketCmd::Keys(MarketKeysCmd::Revoke { from, key }) => {
            let key_hash = match key.parse::<Hash>() {
                Ok(h) if !key.starts_with("flk-") => h,
                _ => flock_serve::api_key_hash(key),
            };
            send(&a, from, TxKind::MarketKeyRevoke { key_hash }, json_out, |_| {
                format!("revoked {key_hash}")
            })
            .await?;
        }
        MarketCmd::Usage { who } => {
            let addr = resolve_address(who, &dir)?;
            let v = client.get(&format!("/v1/market/accounts/{addr}")).await?;
            if json_out {
                print_json(&v);
                return Ok(());
            }
            let amt = |x: &Value| {
                x.as_str().and_then(|s| Amount::from_base_str(s).ok()).unwrap_or_default()
            };
            println!(
                "{addr}: credit {} available, {} being withdrawn",
                amt(&v["escrow"]["available"]),
                amt(&v["escrow"]["pending_total"])
            );
            for k in v["keys"].as_array().into_iter().flatten() {
                println!(
                    "  key {} {:<16} {}",
                    k["key_hash"].as_str().unwrap_or(""),
                    k["key"]["label"].as_str().unwrap_or(""),
                    if k["key"]["revoked"].is_null() { "active" } else { "revoked" }
                );
            }
            for s in v["spent"].as_array().into_iter().flatten() {
                println!("  spent {} on {}", amt(&s["spent"]), s["listing"].as_str().unwrap_or(""));
            }
        }
        MarketCmd::Rate { from, listing, stars } => {
            send(
                &a,
                from,
                TxKind::MarketRate { listing: listing.clone(), stars: *stars },
                json_out,
                |_| format!("rated {listing} {stars}/5"),
            )
            .await?;
        }
        MarketCmd::ExportFeedback { model, out, node_dir } => {
            let node_dir = node_dir.clone().unwrap_or_else(|| dir.join("node"));
            let f = std::fs::File::create(out)
                .with_context(|| format!("creating {}", out.display()))?;
            let n = flock_serve::export_feedback(&node_dir, model, std::io::BufWriter::new(f))?;
            if json_out {
                print_json(&json!({ "listing": model, "examples": n, "out": out }));
            } else {
                println!("wrote {n} examples of {model} feedback to {} (FLock JSONL, ready as an Arena training set)", out.display());
            }
        }
    }
    Ok(())
}
