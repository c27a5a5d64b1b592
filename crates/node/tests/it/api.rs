//! The HTTP API, driven in memory with `oneshot`.

use crate::common::*;
use axum::{
    body::{to_bytes, Body},
    http::{Request, StatusCode},
    Router,
};
use flock_ledger::{StakeTarget, TxKind};
use flock_node::api::router;
use flock_primitives::{Amount, Hash};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

async fn get(app: &Router, path: &str) -> (StatusCode, Value) {
    call(app, Request::get(path).body(Body::empty()).unwrap()).await
}

async fn post_json(app: &Router, body: impl Into<Body>) -> (StatusCode, Value) {
    call(
        app,
        Request::post("/v1/txs")
            .header("content-type", "application/json")
            .body(body.into())
            .unwrap(),
    )
    .await
}

fn assert_error(r: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(r.0, status, "{}", r.1);
    assert_eq!(r.1["code"], code, "{}", r.1);
    assert!(r.1["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.1);
}

#[tokio::test]
async fn submit_commit_and_read_back() {
    let (node, seq, keys) = node();
    let app = router(node.clone());
    let t =
        tx(&keys[0], 0, TxKind::Transfer { to: keys[1].address(), amount: "2.5".parse().unwrap() });

    // JSON form.
    let (status, v) = post_json(&app, serde_json::to_vec(&t).unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let hash: Hash = v["hash"].as_str().unwrap().parse().unwrap();
    assert_eq!(hash, t.hash());
    assert_eq!(get(&app, &format!("/v1/txs/{hash}")).await.1["status"], "pending");
    // The account already shows the next nonce, counting the pending transaction.
    let (_, acc) = get(&app, &format!("/v1/accounts/{}", keys[0].address())).await;
    assert_eq!(acc["next_nonce"], 1);

    // Binary and hex forms.
    let t2 =
        tx(&keys[0], 1, TxKind::Stake { target: StakeTarget::NETWORK, amount: Amount::flock(500) });
    let r = call(
        &app,
        Request::post("/v1/txs")
            .header("content-type", "application/octet-stream")
            .body(Body::from(t2.encode()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.0, StatusCode::ACCEPTED, "{}", r.1);
    let t3 = tx(&keys[2], 0, TxKind::Burn { amount: Amount::flock(1) });
    let r = post_json(&app, json!({ "encoded": hex::encode(t3.encode()) }).to_string()).await;
    assert_eq!(r.0, StatusCode::ACCEPTED, "{}", r.1);

    let committed = produce(&node, &seq);
    assert_eq!(committed.tx_count, 3);
    let (s, v) = get(&app, &format!("/v1/txs/{hash}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "committed");
    assert_eq!(v["height"], 1);
    assert_eq!(v["receipt"]["status"], "ok");
    assert_eq!(v["receipt"]["events"][0]["event"], "transfer");

    let (_, acc) = get(&app, &format!("/v1/accounts/{}", keys[0].address())).await;
    assert_eq!(
        acc["balance"],
        Amount::flock(10_000 - 500).checked_sub("2.5".parse().unwrap()).unwrap().0.to_string()
    );
    assert_eq!(acc["nonce"], 2);
    assert_eq!(acc["stakes"][0]["amount"], Amount::flock(500).0.to_string());

    let (_, b) = get(&app, "/v1/blocks/latest").await;
    assert_eq!(b["height"], 1);
    assert_eq!(b["tx_count"], 3);
    assert_eq!(b["state_root"], node.with_chain(|c| c.info().state_root.to_string()));
    let (_, b0) = get(&app, "/v1/blocks/0").await;
    assert_eq!(b0["genesis"]["chain_id"], "flock-test");

    // Events since a height, and the supply report.
    for _ in 0..4 {
        produce(&node, &seq);
    }
    let (_, ev) = get(&app, "/v1/events?since=1&limit=10").await;
    assert_eq!(ev["blocks"].as_array().unwrap().len(), 5);
    let end = &ev["blocks"][4]["end"];
    assert_eq!(end[0]["event"], "mint", "epoch 0 ends at height 5: {end}");
    let (_, sup) = get(&app, "/v1/supply").await;
    assert_eq!(sup["conserved"], true);
    assert_eq!(sup["report"]["burned"], Amount::flock(1).0.to_string());

    let (s, h) = get(&app, "/health").await;
    assert_eq!((s, h["status"].clone()), (StatusCode::OK, json!("ok")));
    let (s, m) = get(&app, "/metrics").await;
    assert_eq!(s, StatusCode::OK);
    assert!(m.as_str().unwrap().contains("flock_blocks_committed_total"), "{m}");
}

#[tokio::test]
async fn bad_input_gets_typed_errors_and_changes_nothing() {
    let (node, _seq, keys) = node();
    let app = router(node.clone());
    let before = node.with_chain(|c| c.ledger().state().digest());

    assert_error(&post_json(&app, "{not json").await, StatusCode::BAD_REQUEST, "malformed_json");
    assert_error(
        &post_json(&app, json!({ "encoded": "zz" }).to_string()).await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &post_json(&app, json!({ "encoded": "0102" }).to_string()).await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );

    let mut forged =
        tx(&keys[0], 0, TxKind::Transfer { to: keys[1].address(), amount: Amount::flock(1) });
    forged.signature.0[5] ^= 0xff;
    assert_error(
        &post_json(&app, serde_json::to_vec(&forged).unwrap()).await,
        StatusCode::BAD_REQUEST,
        "bad_signature",
    );

    let mut wrong_chain = tx(&keys[0], 0, TxKind::Burn { amount: Amount::flock(1) }).tx;
    wrong_chain.chain_id = "elsewhere".into();
    let signed = wrong_chain.sign(&keys[0]);
    assert_error(
        &post_json(&app, serde_json::to_vec(&signed).unwrap()).await,
        StatusCode::BAD_REQUEST,
        "wrong_chain_id",
    );

    let gap = tx(&keys[0], 3, TxKind::Burn { amount: Amount::flock(1) });
    assert_error(
        &post_json(&app, serde_json::to_vec(&gap).unwrap()).await,
        StatusCode::CONFLICT,
        "nonce_gap",
    );

    let over =
        tx(&keys[0], 0, TxKind::Transfer { to: keys[1].address(), amount: Amount::flock(10_001) });
    assert_error(
        &post_json(&app, serde_json::to_vec(&over).unwrap()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "insufficient_balance",
    );

    let low =
        tx(&keys[0], 0, TxKind::Stake { target: StakeTarget::NETWORK, amount: Amount::flock(1) });
    assert_error(
        &post_json(&app, serde_json::to_vec(&low).unwrap()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "below_minimum",
    );

    let big = vec![b'x'; 300 * 1024];
    let r = post_json(&app, big).await;
    assert_eq!(r.0, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.1);

    // A replay: the same transaction twice is a duplicate while pending.
    let ok = tx(&keys[0], 0, TxKind::Burn { amount: Amount::flock(1) });
    assert_eq!(post_json(&app, serde_json::to_vec(&ok).unwrap()).await.0, StatusCode::ACCEPTED);
    assert_error(
        &post_json(&app, serde_json::to_vec(&ok).unwrap()).await,
        StatusCode::CONFLICT,
        "duplicate",
    );
    let replay = tx(&keys[0], 0, TxKind::Burn { amount: Amount::flock(2) });
    assert_error(
        &post_json(&app, serde_json::to_vec(&replay).unwrap()).await,
        StatusCode::CONFLICT,
        "nonce_replayed",
    );

    assert_error(&get(&app, "/v1/accounts/flk1nope").await, StatusCode::BAD_REQUEST, "bad_address");
    assert_error(&get(&app, "/v1/txs/1234").await, StatusCode::BAD_REQUEST, "bad_hash");
    assert_error(
        &get(&app, &format!("/v1/txs/{}", Hash::of(b"x"))).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(&get(&app, "/v1/blocks/99").await, StatusCode::NOT_FOUND, "not_found");
    assert_error(&get(&app, "/v1/blocks/abc").await, StatusCode::BAD_REQUEST, "bad_height");
    assert_error(&get(&app, "/v1/nothing").await, StatusCode::NOT_FOUND, "not_found");

    // Nothing was committed by any of it.
    assert_eq!(node.with_chain(|c| c.ledger().state().digest()), before);
}

#[tokio::test]
async fn events_with_large_numbers_serialize() {
    // Pool shares of a large delegation exceed what a JSON number holds exactly; the events
    // endpoint must still answer (as decimal strings).
    let (node, seq, keys) = node();
    let app = router(node.clone());
    node.submit(tx(
        &keys[0],
        0,
        TxKind::Stake { target: StakeTarget::NETWORK, amount: Amount::flock(500) },
    ))
    .unwrap();
    produce(&node, &seq);
    node.submit(tx(
        &keys[0],
        1,
        TxKind::SetShare { share: flock_primitives::Ppm::percent(10).unwrap() },
    ))
    .unwrap();
    produce(&node, &seq);
    node.submit(tx(
        &keys[1],
        0,
        TxKind::Delegate { operator: keys[0].address(), amount: Amount::flock(5_000) },
    ))
    .unwrap();
    produce(&node, &seq);
    let (s, ev) = get(&app, "/v1/events?since=1&limit=10").await;
    assert_eq!(s, StatusCode::OK, "{ev}");
    let delegated = &ev["blocks"][2]["txs"][0]["events"][0];
    assert_eq!(delegated["event"], "delegated", "{ev}");
    assert_eq!(delegated["shares"], Amount::flock(5_000).0.to_string());
}

/// `GET /v1/validators`: the staked set now, the set recorded at the last epoch boundary
/// (epoch_length 5 here), and evidence posted to a solo node refused with a typed error.
#[tokio::test]
async fn validators_follow_network_stake_and_evidence_needs_an_engine() {
    let (node, seq, keys) = node();
    let app = router(node.clone());
    let (_, v) = get(&app, "/v1/validators").await;
    assert_eq!(v["staked_now"], json!([]));
    assert!(v["set"].is_null(), "no epoch has ended: {v}");
    for (i, amount) in [(0, 300), (1, 200)] {
        let t = tx(
            &keys[i],
            0,
            TxKind::Stake { target: StakeTarget::NETWORK, amount: Amount::flock(amount) },
        );
        assert_eq!(post_json(&app, serde_json::to_vec(&t).unwrap()).await.0, StatusCode::ACCEPTED);
    }
    while node.tip().height.0 < 5 {
        produce(&node, &seq);
    }
    let (status, v) = get(&app, "/v1/validators").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["epoch"], 1);
    let addrs = |x: &Value| -> Vec<String> {
        x.as_array().unwrap().iter().map(|m| m["address"].as_str().unwrap().to_owned()).collect()
    };
    let want = vec![keys[0].address().to_string(), keys[1].address().to_string()];
    assert_eq!(addrs(&v["set"]), want, "{v}");
    assert_eq!(addrs(&v["staked_now"]), want);

    let fault = flock_ledger::consensus::ConsensusFault {
        offender: keys[0].public(),
        kind: flock_ledger::consensus::FaultKind::ConflictingNotarize,
        epoch: 0,
        view: 1,
        proof: vec![3; 64],
    };
    let t = tx(&keys[2], 0, TxKind::ConsensusEvidence { fault: Box::new(fault) });
    let r = post_json(&app, serde_json::to_vec(&t).unwrap()).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "bad_evidence");
    let (_, acc) = get(&app, &format!("/v1/accounts/{}", keys[0].address())).await;
    assert!(acc["tombstone"].is_null());
}
