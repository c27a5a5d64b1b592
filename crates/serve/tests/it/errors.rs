//! Every refusal: its status, OpenAI-style error body, and nothing charged.

use crate::util::{chat_body, env, post, post_raw, Resp};
use flock_ledger::TxKind;
use flock_primitives::Amount;
use flock_serve::{api_key_hash, RateLimit};
use serde_json::json;
use std::time::Duration;

fn is_openai_error(r: &Resp, status: u16, kind: &str, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    let e = &r.body["error"];
    assert_eq!(e["type"], kind, "{}", r.text);
    assert_eq!(e["code"], code, "{}", r.text);
    assert!(e["message"].as_str().is_some_and(|m| m.len() > 10), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_4xx_and_charges_nothing() {
    let e = env("errors", Amount::ZERO).await;
    let mut cfg = e.config();
    cfg.max_tokens_cap = 1_000;
    let (serve, url) = e.serve(cfg).await;
    let k = Some(e.key.as_str());
    let chat = "/v1/chat/completions";
    let bad = "invalid_request_error";

    let r = post_raw(&url, chat, k, b"{\"model\": \"tiny\", ".to_vec()).await;
    is_openai_error(&r, 400, bad, "invalid_json");
    let r = post(&url, chat, k, json!({"model": "tiny", "messages": "hi"})).await;
    is_openai_error(&r, 400, bad, "invalid_request");
    let mut b = chat_body("hi", 4);
    b["model"] = json!("no-such-model");
    is_openai_error(&post(&url, chat, k, b).await, 404, bad, "model_not_found");
    let r = post(&url, chat, k, json!({"messages": [{"role": "user", "content": "hi"}]})).await;
    is_openai_error(&r, 400, bad, "invalid_value");
    assert_eq!(r.body["error"]["param"], "model");
    let r = post(&url, chat, k, json!({"model": "tiny", "messages": []})).await;
    is_openai_error(&r, 400, bad, "invalid_value");
    assert_eq!(r.body["error"]["param"], "messages");
    let r = post(
        &url,
        chat,
        k,
        json!({"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}),
    )
    .await;
    is_openai_error(&r, 400, bad, "invalid_value");
    let r = post(
        &url,
        chat,
        k,
        json!({"model": "tiny", "messages": [{"role": "user", "content": "a<|im_end|>b"}]}),
    )
    .await;
    is_openai_error(&r, 400, bad, "invalid_value");
    for (field, value) in [
        ("max_tokens", json!(0)),
        ("max_tokens", json!(-5)),
        ("max_tokens", json!(1_001)),
        ("temperature", json!(2.5)),
        ("temperature", json!(-0.1)),
        ("top_p", json!(0)),
        ("top_p", json!(1.5)),
        ("n", json!(3)),
        ("stop", json!(["\n"])),
    ] {
        let mut b = chat_body("hi", 4);
        b[field] = value.clone();
        let r = post(&url, chat, k, b).await;
        is_openai_error(&r, 400, bad, "invalid_value");
        assert_eq!(r.body["error"]["param"], field, "{field}={value}: {}", r.text);
    }
    // The prompt alone is longer than the 512-token context.
    let long = "SELECT name FROM customers WHERE id = 1; ".repeat(300);
    let r = post(&url, chat, k, chat_body(&long, 4)).await;
    is_openai_error(&r, 400, bad, "context_length_exceeded");
    // Prompt + max_tokens past the context.
    let r = post(&url, chat, k, chat_body("hi", 600)).await;
    is_openai_error(&r, 400, bad, "context_length_exceeded");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("512"));
    // A body over the limit (64 KiB here).
    let huge = chat_body(&"x".repeat(70 * 1024), 4);
    let r = post(&url, chat, k, huge).await;
    is_openai_error(&r, 413, bad, "request_too_large");
    // Completions: empty prompt, echo; predict on a language model.
    let r = post(&url, "/v1/completions", k, json!({"model": "tiny", "prompt": ""})).await;
    is_openai_error(&r, 400, bad, "invalid_value");
    let r = post(&url, "/v1/completions", k, json!({"model": "tiny", "prompt": "x", "echo": true}))
        .await;
    is_openai_error(&r, 400, bad, "invalid_value");
    let r = post(&url, "/v1/predict", k, json!({"model": "tiny", "inputs": [[1.0]]})).await;
    is_openai_error(&r, 400, bad, "invalid_value");

    // Nothing was metered, and nothing is charged.
    assert_eq!(serve.unsettled_records(), 0);
    let consumer = e.keys.consumer.address();
    let before = e.escrow(&consumer);
    assert!(serve.settle_now(Duration::from_secs(5)).await);
    e.running.node.wait_for_height(e.running.node.tip().height.0 + 2, Duration::from_secs(5)).await;
    assert_eq!(e.escrow(&consumer), before);
    assert_eq!(before.available, Amount::flock(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rate_limits_and_credit() {
    // The poor consumer can afford one or two requests of up to 16 completion tokens.
    let poor_credit = 80_000_000_000_000_000u128;
    let e = env("auth", Amount(poor_credit)).await;
    let (serve, url) = e.serve(e.config()).await;
    // A second serve layer (its own journal) with a tight rate limit.
    let mut cfg = e.config();
    cfg.rate_limit = RateLimit { per_minute: 1, burst: 3 };
    cfg.data_dir = e.dir.path().join("rate-limited");
    let (_limited, limited_url) = e.serve(cfg).await;
    let chat = "/v1/chat/completions";
    let auth = "authentication_error";

    let r = post(&url, chat, None, chat_body("hi", 4)).await;
    is_openai_error(&r, 401, auth, "missing_api_key");
    let r = post(&url, chat, Some("flk-not-a-key"), chat_body("hi", 4)).await;
    is_openai_error(&r, 401, auth, "invalid_api_key");
    // A revoked key stops working with the block that revokes it.
    let node = &e.running.node;
    let spare = crate::fixture::consumer_key(node, &e.keys.consumer, Amount::ZERO, "spare").await;
    let revoke = TxKind::MarketKeyRevoke { key_hash: api_key_hash(&spare) };
    crate::fixture::send(node, &e.keys.consumer, revoke).await.unwrap();
    let r = post(&url, chat, Some(&spare), chat_body("hi", 4)).await;
    is_openai_error(&r, 401, auth, "revoked_api_key");

    // Burst of 3, then 429 with Retry-After; other keys are unaffected.
    for _ in 0..3 {
        let r = post(&limited_url, chat, Some(&e.key), chat_body("hi", 2)).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = post(&limited_url, chat, Some(&e.key), chat_body("hi", 2)).await;
    is_openai_error(&r, 429, "rate_limit_error", "rate_limit_exceeded");
    assert!(r.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    let r = post(&limited_url, chat, Some(&e.poor_key), chat_body("hi", 2)).await;
    assert_eq!(r.status, 200, "another key has its own bucket: {}", r.text);

    // The poor key: served while its escrow covers the worst case, then 402.
    let poor = e.keys.poor.address();
    let mut served = 0;
    let mut refused = None;
    for _ in 0..10 {
        let r = post(&url, chat, Some(&e.poor_key), chat_body("How many orders?", 16)).await;
        match r.status {
            200 => served += 1,
            _ => {
                refused = Some(r);
                break;
            }
        }
    }
    let r = refused.expect("credit ran out");
    is_openai_error(&r, 402, "insufficient_quota", "insufficient_credits");
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("flockd market deposit") && msg.contains("FLOCK"), "{msg}");
    assert!(served >= 1, "the first request fits the escrow");
    // Settling pays exactly what was held; no shortfall.
    let held = serve.held(&poor);
    assert!(serve.settle_now(Duration::from_secs(20)).await);
    let left = e.escrow(&poor).available;
    assert_eq!(left.0, poor_credit - held.0);
    let spent = node.with_chain(|c| c.ledger().state().market_spent("tiny", &poor));
    assert_eq!(spent, held, "charged in full, no shortfall");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_503_and_not_metered() {
    let e = env("queue", Amount::ZERO).await;
    let mut cfg = e.config();
    cfg.workers = 1;
    cfg.queue = 0;
    let (serve, url) = e.serve(cfg).await;
    let reqs = (0..16).map(|_| {
        let (url, key) = (url.clone(), e.key.clone());
        tokio::spawn(async move {
            post(&url, "/v1/chat/completions", Some(&key), chat_body("Count everything.", 64)).await
        })
    });
    let mut ok = 0;
    let mut busy = 0;
    for r in futures_util::future::join_all(reqs).await {
        let r = r.unwrap();
        match r.status {
            200 => ok += 1,
            _ => {
                is_openai_error(&r, 503, "server_error", "overloaded");
                assert!(r.headers.contains_key("retry-after"));
                busy += 1;
            }
        }
    }
    assert!(ok >= 1 && busy >= 1, "{ok} served, {busy} refused");
    assert_eq!(serve.unsettled_records(), ok, "only served requests are metered");
}
