//! Models, chat (plain and streamed), completions, and exact settlement of what was served.

use crate::{
    fixture::{split, PRICE},
    util::{chat_body, env, get, post, sse_data, usage},
};
use flock_ledger::market::{split_revenue, usage_cost, UsageEntry};
use flock_primitives::{Amount, Hash};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_stream_completions_settle_exactly() {
    let e = env("chat", Amount::ZERO).await;
    let (serve, url) = e.serve(e.config()).await;

    // The model list, with the listing's price and provenance.
    let models = get(&url, "/v1/models").await;
    assert_eq!(models.status, 200, "{}", models.text);
    assert_eq!(models.body["object"], "list");
    let m = &models.body["data"][0];
    assert_eq!(m["id"], "tiny");
    assert_eq!(m["object"], "model");
    assert_eq!(m["owned_by"], e.keys.owner.address().to_string());
    assert_eq!(m["flock"]["kind"], "language");
    assert_eq!(m["flock"]["price"]["per_1k_tokens"], json!(PRICE.per_1k_tokens));
    assert_eq!(m["flock"]["weights_match_artifact"], true);
    let pid = m["flock"]["provenance_id"].as_str().unwrap().to_owned();
    assert!(pid.starts_with("tiny@"), "{pid}");
    assert_eq!(get(&url, "/v1/models/tiny").await.status, 200);
    assert_eq!(get(&url, "/v1/models/nope").await.status, 404);

    // A greedy chat completion.
    let r = post(&url, "/v1/chat/completions", Some(&e.key), chat_body("How many customers?", 12))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["x-flock-provenance"], pid.as_str());
    assert_eq!(r.body["object"], "chat.completion");
    assert_eq!(r.body["model"], "tiny");
    assert!(r.body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(r.body["choices"][0]["message"]["role"], "assistant");
    let answer = r.body["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    let (p1, c1) = usage(&r.body);
    assert!(p1 > 5 && (1..=12).contains(&c1), "{p1} {c1}");
    let finish = r.body["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(finish == "length" && c1 == 12 || finish == "stop", "{finish} {c1}");
    assert_eq!(r.body["flock"]["listing"], "tiny");
    assert_eq!(r.body["flock"]["provenance_id"], pid.as_str());
    let cost1 = usage_cost(
        &UsageEntry { key_hash: Hash::ZERO, prompt_tokens: p1, completion_tokens: c1, calls: 1 },
        &PRICE,
    )
    .unwrap();
    assert_eq!(r.body["flock"]["cost"], json!(cost1));

    // The same request streamed: chunks that add up to the same greedy answer, usage last.
    let mut body = chat_body("How many customers?", 12);
    body["stream"] = json!(true);
    let s = post(&url, "/v1/chat/completions", Some(&e.key), body).await;
    assert_eq!(s.status, 200, "{}", s.text);
    assert!(s.headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert_eq!(s.headers["x-flock-provenance"], pid.as_str());
    let data = sse_data(&s.text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{}", s.text);
    let chunks: Vec<Value> =
        data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert!(chunks.len() >= 2);
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed, answer);
    let last = chunks.last().unwrap();
    assert_eq!(usage(last), (p1, c1));
    assert_eq!(last["choices"][0]["finish_reason"], finish);
    assert_eq!(last["flock"]["provenance_id"], pid.as_str());

    // A plain-text completion.
    let body = json!({"model": "tiny", "prompt": "SELECT name FROM", "max_tokens": 6, "temperature": 0.7, "seed": 3});
    let t = post(&url, "/v1/completions", Some(&e.key), body.clone()).await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(t.body["object"], "text_completion");
    assert!(t.body["choices"][0]["text"].is_string());
    let (p3, c3) = usage(&t.body);
    assert!(p3 > 0 && c3 <= 6);
    // Seeded sampling is reproducible.
    let t2 = post(&url, "/v1/completions", Some(&e.key), body).await;
    assert_eq!(t2.body["choices"][0]["text"], t.body["choices"][0]["text"]);
    let (p4, c4) = usage(&t2.body);

    // Everything settles in one batch, charged exactly at the listing's price.
    let consumer = e.keys.consumer.address();
    let owner = e.keys.owner.address();
    let escrow_before = e.escrow(&consumer).available;
    let owner_before = e.balance(&owner);
    let burned_before = e.running.node.with_chain(|c| c.ledger().state().supply().burned);
    assert_eq!(serve.unsettled_records(), 4);
    assert!(serve.held(&consumer) > Amount::ZERO);
    assert!(serve.settle_now(Duration::from_secs(20)).await, "settled");
    assert_eq!(serve.unsettled_records(), 0);
    assert_eq!(serve.held(&consumer), Amount::ZERO);
    let total = UsageEntry {
        key_hash: Hash::ZERO,
        prompt_tokens: 2 * p1 + p3 + p4,
        completion_tokens: 2 * c1 + c3 + c4,
        calls: 4,
    };
    let expected = usage_cost(&total, &PRICE).unwrap();
    let escrow_after = e.escrow(&consumer).available;
    assert_eq!(Amount(escrow_before.0 - escrow_after.0), expected);
    let shares = split_revenue(expected, &split(), 0);
    assert_eq!(Amount(e.balance(&owner).0 - owner_before.0), shares.owner);
    let (burned_after, conserved, volume) = e.running.node.with_chain(|c| {
        let st = c.ledger().state();
        (st.supply().burned, st.supply().is_conserved(), st.market_listing("tiny").unwrap().volume)
    });
    assert_eq!(Amount(burned_after.0 - burned_before.0), shares.burn);
    assert_eq!(shares.owner.0 + shares.burn.0, expected.0, "no validators: owner takes their part");
    assert!(conserved, "supply conserved");
    assert_eq!(volume, expected);
    serve.shutdown().await;
}
