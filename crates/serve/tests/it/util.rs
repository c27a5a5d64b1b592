//! Test environment and HTTP helpers.

use crate::fixture::{self, Keys, PRICE};
use flock_ledger::market::{Escrow, ModelKind};
use flock_node::RunningNode;
use flock_primitives::{Address, Amount};
use flock_serve::{Serve, ServeConfig};
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::path::PathBuf;

/// A node with the tiny model listed as `tiny`, a consumer with 100 FLOCK of credit and a
/// poor consumer with `poor_credit`.
pub(crate) struct Env {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) running: RunningNode,
    pub(crate) keys: Keys,
    pub(crate) model: PathBuf,
    pub(crate) key: String,
    pub(crate) poor_key: String,
}

pub(crate) async fn env(tag: &str, poor_credit: Amount) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::new(tag);
    let running = fixture::start_node(dir.path(), tag, &keys, 40, None).await.unwrap();
    let model = fixture::tiny_model(dir.path());
    let node = &running.node;
    fixture::list(node, &keys, "tiny", &model, ModelKind::Language, PRICE).await;
    let key = fixture::consumer_key(node, &keys.consumer, Amount::flock(100), "main").await;
    let poor_key = fixture::consumer_key(node, &keys.poor, poor_credit, "poor").await;
    Env { dir, running, keys, model, key, poor_key }
}

impl Env {
    pub(crate) fn config(&self) -> ServeConfig {
        fixture::serve_config(&self.keys, self.dir.path(), &[("tiny", &self.model)])
    }

    /// A serve layer without the background settler, on its own port.
    pub(crate) async fn serve(&self, cfg: ServeConfig) -> (Serve, String) {
        let serve = Serve::start_manual(self.running.node.clone(), cfg).unwrap();
        let url = fixture::serve_http(serve.router()).await;
        (serve, url)
    }

    pub(crate) fn escrow(&self, who: &Address) -> Escrow {
        self.running.node.with_chain(|c| c.ledger().state().market_escrow(who))
    }

    pub(crate) fn balance(&self, who: &Address) -> Amount {
        self.running.node.with_chain(|c| c.ledger().state().account(who).balance)
    }
}

/// A response: status, headers, body (JSON, or `{"text": ...}` when it is not JSON).
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
    pub(crate) text: String,
}

impl Resp {
    /// The OpenAI error code.
    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

pub(crate) async fn post_raw(url: &str, path: &str, key: Option<&str>, body: Vec<u8>) -> Resp {
    let mut req = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, headers, body, text }
}

pub(crate) async fn post(url: &str, path: &str, key: Option<&str>, body: Value) -> Resp {
    post_raw(url, path, key, serde_json::to_vec(&body).unwrap()).await
}

pub(crate) async fn get(url: &str, path: &str) -> Resp {
    let r = reqwest::get(format!("{url}{path}")).await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, headers, body, text }
}

/// The `data:` payloads of an SSE body.
pub(crate) fn sse_data(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_owned).collect()
}

/// A greedy chat request.
pub(crate) fn chat_body(user: &str, max_tokens: u64) -> Value {
    serde_json::json!({
        "model": "tiny",
        "messages": [
            {"role": "system", "content": "Answer with SQL."},
            {"role": "user", "content": user},
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

/// `(prompt, completion)` tokens of a response's usage.
pub(crate) fn usage(body: &Value) -> (u64, u64) {
    let u = &body["usage"];
    let (p, c) = (u["prompt_tokens"].as_u64().unwrap(), u["completion_tokens"].as_u64().unwrap());
    assert_eq!(u["total_tokens"].as_u64().unwrap(), p + c);
    (p, c)
}
