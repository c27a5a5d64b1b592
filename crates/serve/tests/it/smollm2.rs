//! The real pretrained model through the marketplace: SmolLM2-135M-Instruct, imported from its
//! GGUF into our layout (`flockd model import`, or flock-ml's `import_model` example), listed,
//! served, and asked over `/v1/chat/completions` for the capital of France.
//!
//! Needs `FLOCK_SMOLLM2_DIR` (the imported directory; `.ci/run` makes it); prints that it was
//! skipped otherwise.

use crate::{
    fixture::{self, Keys, PRICE},
    util::post,
};
use flock_ledger::market::ModelKind;
use flock_primitives::Amount;
use serde_json::json;
use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smollm2_answers_paris_over_the_openai_api() {
    let Some(model) = std::env::var_os("FLOCK_SMOLLM2_DIR").map(PathBuf::from) else {
        eprintln!("skipped: set FLOCK_SMOLLM2_DIR to an imported SmolLM2-135M-Instruct");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::new("smol");
    let running = fixture::start_node(dir.path(), "smol", &keys, 40, None).await.unwrap();
    let node = &running.node;
    fixture::list(node, &keys, "smollm2-135m-instruct", &model, ModelKind::Language, PRICE).await;
    let key = fixture::consumer_key(node, &keys.consumer, Amount::flock(100), "main").await;
    let cfg = fixture::serve_config(&keys, dir.path(), &[("smollm2-135m-instruct", &model)]);
    let serve = flock_serve::Serve::start_manual(node.clone(), cfg).unwrap();
    let url = fixture::serve_http(serve.router()).await;
    let r = post(
        &url,
        "/v1/chat/completions",
        Some(&key),
        json!({
            "model": "smollm2-135m-instruct",
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 24,
            "temperature": 0.0,
        }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let answer = r.body["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    println!("SmolLM2-135M-Instruct over /v1/chat/completions: {answer:?}");
    assert!(answer.contains("Paris"), "{answer:?}");
    assert_eq!(r.body["choices"][0]["finish_reason"], "stop", "it stops at <|im_end|>");
    // The usage is metered with the model's own tokenizer and settles on the ledger.
    let prompt = r.body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt > 8, "the chat template (with its default system prompt) is counted");
    assert!(serve.settle_now(std::time::Duration::from_secs(30)).await);
    let spent = node.with_chain(|c| {
        c.ledger().state().market_spent("smollm2-135m-instruct", &keys.consumer.address())
    });
    assert!(!spent.is_zero());
    running.shutdown().await.unwrap();
}
