//! Crashes around settlement never lose usage and never charge it twice.

use crate::{
    fixture::PRICE,
    util::{chat_body, env, post, usage},
};
use flock_ledger::{
    market::{usage_cost, UsageBatch, UsageEntry},
    Transaction, TxError, TxKind,
};
use flock_node::SubmitError;
use flock_primitives::{Amount, Hash};
use flock_serve::journal::Line;
use std::time::Duration;

fn cost(tokens: &[(u64, u64)]) -> Amount {
    let e = UsageEntry {
        key_hash: Hash::ZERO,
        prompt_tokens: tokens.iter().map(|t| t.0).sum(),
        completion_tokens: tokens.iter().map(|t| t.1).sum(),
        calls: tokens.len() as u64,
    };
    usage_cost(&e, &PRICE).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_a_crash_charges_once() {
    let e = env("crash", Amount::ZERO).await;
    let consumer = e.keys.consumer.address();
    let start = e.escrow(&consumer).available;
    let node = &e.running.node;

    // Serve A: two requests, one settlement pass (batch journaled and submitted), then a
    // "crash" before it records the batch as settled.
    let (a, url) = e.serve(e.config()).await;
    let mut served = Vec::new();
    for q in ["How many customers?", "List all orders."] {
        let r = post(&url, "/v1/chat/completions", Some(&e.key), chat_body(q, 8)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        served.push(usage(&r.body));
    }
    a.settle_step().await;
    let charged = cost(&served);
    let in_block = crate::fixture::wait_until(10, || {
        start.0 - node.with_chain(|c| c.ledger().state().market_escrow(&consumer).available.0)
            == charged.0
    })
    .await;
    assert!(in_block, "the batch was settled on the ledger");
    assert_eq!(a.unsettled_records(), 2, "A has not seen the block yet");
    drop(a);

    // The journal names the batch but not its settlement.
    let journal = e.dir.path().join("node/serve/usage.jsonl");
    let lines: Vec<Line> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let batch = lines
        .iter()
        .find_map(|l| match l {
            Line::Batch { listing, id, .. } => Some((listing.clone(), *id)),
            _ => None,
        })
        .unwrap();
    assert!(!lines.iter().any(|l| matches!(l, Line::Settled { .. })));

    // Serve B on the same journal: finds the batch settled, charges nothing more.
    let (b, url) = e.serve(e.config()).await;
    assert_eq!(b.unsettled_records(), 2);
    assert!(b.settle_now(Duration::from_secs(10)).await);
    assert_eq!(b.unsettled_records(), 0);
    node.wait_for_height(node.tip().height.0 + 2, Duration::from_secs(5)).await;
    assert_eq!(start.0 - e.escrow(&consumer).available.0, charged.0, "charged once");

    // Re-sending the same batch by hand: the ledger refuses the repeated id.
    let entry = UsageEntry {
        key_hash: flock_serve::api_key_hash(&e.key),
        prompt_tokens: served.iter().map(|t| t.0).sum(),
        completion_tokens: served.iter().map(|t| t.1).sum(),
        calls: 2,
    };
    let kind = TxKind::MarketSettle {
        batch: UsageBatch { id: batch.1, listing: batch.0, entries: vec![entry] },
    };
    let server = &e.keys.server;
    let nonce = node.with_mempool(|m| m.next_nonce(&server.address()));
    let tx = Transaction { chain_id: node.tip().chain_id, signer: server.public(), nonce, kind }
        .sign(server);
    assert!(matches!(node.submit(tx), Err(SubmitError::Tx(TxError::BatchAlreadySettled { .. }))));

    // Usage journaled but never batched (a crash right after serving) settles on restart.
    let r = post(&url, "/v1/chat/completions", Some(&e.key), chat_body("Top products?", 8)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    served.push(usage(&r.body));
    drop(b);
    let (c, _) = e.serve(e.config()).await;
    assert_eq!(c.unsettled_records(), 1);
    assert!(c.settle_now(Duration::from_secs(10)).await);
    let third = cost(&served[2..]);
    assert_eq!(start.0 - e.escrow(&consumer).available.0, charged.0 + third.0);
    assert!(node.with_chain(|c| c.ledger().state().supply().is_conserved()));
}
