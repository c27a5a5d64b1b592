//! The node hook: serving on the node's own API, settling at shutdown; startup checks.

use crate::{
    fixture::{self, PRICE},
    util::{chat_body, env, get, post, usage},
};
use flock_ledger::{
    market::{usage_cost, ModelKind, UsageEntry},
    TxKind,
};
use flock_primitives::{Amount, Hash};
use flock_serve::{Serve, ServeError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_serves_the_routes_and_settles_at_shutdown() {
    let e = env("hook", Amount::ZERO).await;
    let consumer = e.keys.consumer.address();
    let start = e.escrow(&consumer).available;
    let cfg = e.config();
    let (dir, keys, key) = (e.dir, e.keys, e.key);
    e.running.shutdown().await.unwrap();

    // Restart the node with the serve layer merged into its API.
    let mut cfg = cfg;
    cfg.settle_every = std::time::Duration::from_secs(3_600); // only the shutdown settles
    let running =
        fixture::start_node(dir.path(), "hook", &keys, 40, Some(flock_serve::extension(cfg)))
            .await
            .unwrap();
    let url = running.url();
    assert_eq!(get(&url, "/v1/status").await.status, 200, "node routes still there");
    assert_eq!(get(&url, "/no-such-endpoint").await.status, 404);
    let models = get(&url, "/v1/models").await;
    assert_eq!(models.body["data"][0]["id"], "tiny", "{}", models.text);
    let r = post(&url, "/v1/chat/completions", Some(&key), chat_body("Count the rows.", 8)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (p, c) = usage(&r.body);
    running.shutdown().await.unwrap();

    // The shutdown settled it while blocks were still produced.
    let running = fixture::start_node(dir.path(), "hook", &keys, 40, None).await.unwrap();
    let left = running.node.with_chain(|c| c.ledger().state().market_escrow(&consumer).available);
    let cost = usage_cost(
        &UsageEntry { key_hash: Hash::ZERO, prompt_tokens: p, completion_tokens: c, calls: 1 },
        &PRICE,
    )
    .unwrap();
    assert_eq!(start.0 - left.0, cost.0);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_refuses_what_it_cannot_serve() {
    let e = env("startup", Amount::ZERO).await;
    let node = e.running.node.clone();
    let err = |cfg| Serve::start_manual(node.clone(), cfg).unwrap_err();

    let mut cfg = e.config();
    cfg.models[0].listing = "missing".into();
    let x = err(cfg);
    assert!(matches!(x, ServeError::UnknownListing(_)), "{x}");
    assert!(x.to_string().contains("flockd market list"));

    let mut cfg = e.config();
    cfg.server_key = e.keys.other.clone();
    let x = err(cfg);
    assert!(matches!(x, ServeError::WrongServer { .. }), "{x}");

    // A predict listing served from a language model directory.
    fixture::list(&node, &e.keys, "mlp", &e.model, ModelKind::Predict, PRICE).await;
    let cfg = fixture::serve_config(&e.keys, e.dir.path(), &[("mlp", &e.model)]);
    let x = err(cfg);
    assert!(matches!(x, ServeError::KindMismatch { .. }), "{x}");
    assert!(x.to_string().contains("predict model"), "{x}");

    let mut cfg = e.config();
    cfg.models.push(cfg.models[0].clone());
    assert!(matches!(err(cfg), ServeError::DuplicateListing(_)));

    // An inactive listing.
    let update = TxKind::MarketUpdate {
        name: "tiny".into(),
        price: None,
        active: Some(false),
        server: None,
    };
    fixture::send(&node, &e.keys.owner, update).await.unwrap();
    let x = err(e.config());
    assert!(matches!(x, ServeError::InactiveListing(_)), "{x}");
}
