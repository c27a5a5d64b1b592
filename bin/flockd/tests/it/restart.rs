//! A node on a free port takes transactions over HTTP, stops, restarts, and has the same state.

use crate::harness::*;
use flock_ledger::{StakeTarget, TxKind};
use flock_primitives::Amount;

#[test]
fn node_restart_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(3);
    let genesis = setup(dir.path(), &k);
    let node = NodeProc::start(dir.path(), &genesis, 50);
    let c = http();
    let txs = [
        sign(&k[0], 0, TxKind::Transfer { to: k[1].address(), amount: Amount::flock(25) }),
        sign(&k[0], 1, TxKind::Stake { target: StakeTarget::NETWORK, amount: Amount::flock(500) }),
        sign(&k[2], 0, TxKind::Burn { amount: Amount::flock(7) }),
    ];
    for t in &txs {
        let (s, v) = post(&c, &node.url, t).unwrap();
        assert_eq!(s, 202, "{v}");
    }
    let heights: Vec<u64> = txs.iter().map(|t| wait_committed(&c, &node.url, &t.hash())).collect();
    let acct = |url: &str, i: usize| get(&c, &format!("{url}/v1/accounts/{}", k[i].address())).1;
    let before: Vec<_> = (0..3).map(|i| acct(&node.url, i)).collect();
    let (_, block) = get(&c, &format!("{}/v1/blocks/{}", node.url, heights[2]));
    node.stop();

    let node = NodeProc::start(dir.path(), &genesis, 50);
    for (i, b) in before.iter().enumerate() {
        let after = acct(&node.url, i);
        for field in ["balance", "nonce", "stakes"] {
            assert_eq!(after[field], b[field], "account {i} {field} after restart");
        }
    }
    for (t, h) in txs.iter().zip(&heights) {
        let (_, v) = get(&c, &format!("{}/v1/txs/{}", node.url, t.hash()));
        assert_eq!(v["height"].as_u64(), Some(*h));
    }
    let (_, again) = get(&c, &format!("{}/v1/blocks/{}", node.url, heights[2]));
    assert_eq!(again["state_root"], block["state_root"]);
    assert_eq!(again["hash"], block["hash"]);
    // And it keeps going: a new transaction from the same account takes the next nonce.
    let t = sign(&k[0], 2, TxKind::Transfer { to: k[2].address(), amount: Amount::flock(1) });
    assert_eq!(post(&c, &node.url, &t).unwrap().0, 202);
    wait_committed(&c, &node.url, &t.hash());
    node.stop();
}
