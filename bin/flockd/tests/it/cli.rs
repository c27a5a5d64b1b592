//! The CLI as a user runs it: keys, genesis, tx, query, with clear errors.

use crate::harness::*;
use std::process::Output;

fn run(args: &[&str]) -> Output {
    flockd().args(args).env("FLOCK_LOG", "warn").output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn keys_genesis_node_tx_and_query() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = run(&["keys", "new", "alice", "--data-dir", d]);
    assert!(o.status.success(), "{o:?}");
    let o = run(&["keys", "new", "bob", "--data-dir", d]);
    assert!(o.status.success());
    let o = run(&["keys", "new", "alice", "--data-dir", d]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    let o = run(&["--json", "keys", "list", "--data-dir", d]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);

    let o = run(&[
        "genesis",
        "--data-dir",
        d,
        "--chain-id",
        "cli-test",
        "--alloc",
        "alice=1000",
        "--epoch-length",
        "50",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let genesis = dir.path().join("genesis.json");
    let node = NodeProc::start(dir.path(), &genesis, 50);
    let url = node.url.clone();
    let u = url.as_str();

    let o = run(&[
        "tx",
        "--from",
        "alice",
        "--data-dir",
        d,
        "--node",
        u,
        "transfer",
        "--to",
        "bob",
        "--amount",
        "12.5",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains(": ok"), "{}", stdout(&o));
    let o = run(&["--json", "query", "account", "bob", "--data-dir", d, "--node", u]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["balance_human"], "12.5 FLOCK");

    // Refusals are one readable line and a non-zero exit.
    let o = run(&[
        "tx",
        "--from",
        "bob",
        "--data-dir",
        d,
        "--node",
        u,
        "transfer",
        "--to",
        "alice",
        "--amount",
        "100",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("insufficient balance"), "{err}");
    let o = run(&[
        "tx",
        "--from",
        "bob",
        "--data-dir",
        d,
        "--node",
        u,
        "transfer",
        "--to",
        "alice",
        "--amount",
        "1.2.3",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid amount"));
    let o = run(&["tx", "--from", "carol", "--data-dir", d, "--node", u, "burn", "--amount", "1"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no key named"));
    let o = run(&["query", "supply", "--node", u]);
    assert!(stdout(&o).contains("conserved    true"), "{}", stdout(&o));
    node.stop();
    let o = run(&["query", "status", "--node", u]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach the node"));
}

#[test]
fn devnet_demo_runs_to_a_conserved_supply() {
    let o = run(&[
        "devnet",
        "--exit-after-demo",
        "--quick",
        "--listen",
        "127.0.0.1:0",
        "--block-interval-ms",
        "40",
        "--epoch-length",
        "20",
    ]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("insufficient_balance"), "{out}");
    assert!(out.contains("conserved (minted-burned = held) true"), "{out}");
    // The AI Arena round ran with real models and every property held.
    assert!(out.contains("AI Arena task 1 settled"), "{out}");
    // And the FL Alliance task: ten rounds, the poisoner contained, near-centralized accuracy.
    assert!(out.contains("FL Alliance task 2 finished"), "{out}");
    // And the marketplace: the Arena winner listed, served, paid for and the revenue split.
    assert!(out.contains("listed text2sql-arena-winner"), "{out}");
    assert!(out.contains("an unknown API key is refused: HTTP 401"), "{out}");
    assert!(out.contains("to validator"), "{out}");
    assert_eq!(out.matches("[ok]").count(), 13, "{out}");
    assert!(!out.contains("[FAILED]"), "{out}");
}

/// `flockd market`: credit escrow, API keys (printed once, only the hash on the ledger),
/// usage, withdrawals, and clear errors.
#[test]
fn market_credit_keys_and_usage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(run(&["keys", "new", "carol", "--data-dir", d]).status.success());
    let o = run(&["genesis", "--data-dir", d, "--chain-id", "market-cli", "--alloc", "carol=1000"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let node = NodeProc::start(dir.path(), &dir.path().join("genesis.json"), 50);
    let m = |args: &[&str]| {
        let mut a = vec!["market", "--data-dir", d, "--node", node.url.as_str()];
        a.extend_from_slice(args);
        run(&a)
    };
    let o = m(&["list"]);
    assert!(stdout(&o).contains("no models listed"), "{o:?}");
    let o = m(&["deposit", "--from", "carol", "25 FLOCK"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&[
        "--json",
        "market",
        "--data-dir",
        d,
        "--node",
        &node.url,
        "keys",
        "create",
        "--from",
        "carol",
        "--label",
        "laptop",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let k: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let key = k["api_key"].as_str().unwrap().to_owned();
    assert_eq!(
        k["key_hash"].as_str().unwrap(),
        flock_primitives::Hash::of(key.as_bytes()).to_string()
    );
    let o = m(&["withdraw", "--from", "carol", "5 FLOCK"]);
    assert!(stdout(&o).contains("released at height"), "{o:?}");
    let o = m(&["usage", "carol"]);
    let out = stdout(&o);
    assert!(out.contains("credit 20 FLOCK available, 5 FLOCK being withdrawn"), "{out}");
    assert!(out.contains("laptop") && out.contains("active"), "{out}");
    // Overdrawing the escrow is refused with the ledger's reason.
    let o = m(&["withdraw", "--from", "carol", "50 FLOCK"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("escrow"), "{o:?}");
    let o = m(&["keys", "revoke", "--from", "carol", &key]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&m(&["usage", "carol"])).contains("revoked"));
    // Bad arguments are clear errors.
    let o = m(&["deposit", "--from", "carol", "lots"]);
    assert!(!o.status.success());
}
