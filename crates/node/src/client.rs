//! An HTTP client for the node API, used by the CLI and the agents (the same public API a
//! remote user has).

use flock_ledger::{SignedTx, Transaction, TxKind};
use flock_primitives::{Address, Hash, Keypair};
use serde_json::Value;
use std::time::Duration;
use thiserror::Error;

/// Client errors.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The node could not be reached.
    #[error("cannot reach the node at {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The node answered with an error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
    /// A waited-for transaction did not commit in time.
    #[error("transaction {0} was not committed within the timeout")]
    Timeout(Hash),
    /// The answer was not what the API documents.
    #[error("unexpected answer from the node: {0}")]
    Unexpected(String),
}

/// A client for one node.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the node at `base` (e.g. `http://127.0.0.1:7545`).
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { base: base.trim_end_matches('/').to_owned(), http }
    }

    /// The node's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn handle(
        &self,
        url: &str,
        r: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<Value, ClientError> {
        let resp =
            r.map_err(|e| ClientError::Unreachable { url: url.to_owned(), reason: e.to_string() })?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| ClientError::Unexpected(format!("{url}: body is not JSON: {e}")))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(ClientError::Api {
                status: status.as_u16(),
                code: body["code"].as_str().unwrap_or("unknown").to_owned(),
                message: body["message"].as_str().unwrap_or("no message").to_owned(),
            })
        }
    }

    /// `GET {base}{path}` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let r = self.http.get(&url).send().await;
        self.handle(&url, r).await
    }

    /// Submits a signed transaction; returns its hash.
    pub async fn submit(&self, tx: &SignedTx) -> Result<Hash, ClientError> {
        let url = format!("{}/v1/txs", self.base);
        let r = self
            .http
            .post(&url)
            .header("content-type", "application/octet-stream")
            .body(tx.encode())
            .send()
            .await;
        let v = self.handle(&url, r).await?;
        v["hash"]
            .as_str()
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| ClientError::Unexpected(format!("no hash in {v}")))
    }

    /// The chain id.
    pub async fn chain_id(&self) -> Result<String, ClientError> {
        let v = self.get("/v1/status").await?;
        v["chain_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Unexpected(format!("{v}")))
    }

    /// The next nonce for `a` (counting its pending transactions).
    pub async fn next_nonce(&self, a: &Address) -> Result<u64, ClientError> {
        let v = self.get(&format!("/v1/accounts/{a}")).await?;
        v["next_nonce"].as_u64().ok_or_else(|| ClientError::Unexpected(format!("{v}")))
    }

    /// Signs `kind` with `key` (fetching the chain id and nonce) and submits it.
    pub async fn send(&self, key: &Keypair, kind: TxKind) -> Result<Hash, ClientError> {
        let chain_id = self.chain_id().await?;
        let nonce = self.next_nonce(&key.address()).await?;
        let tx = Transaction { chain_id, signer: key.public(), nonce, kind }.sign(key);
        self.submit(&tx).await
    }

    /// Waits until `hash` is committed; returns the transaction view with its receipt.
    pub async fn wait_tx(&self, hash: Hash, timeout: Duration) -> Result<Value, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.get(&format!("/v1/txs/{hash}")).await {
                Ok(v) if v["status"] == "committed" => return Ok(v),
                Ok(_) => {}
                Err(ClientError::Api { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Timeout(hash));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends and waits for commitment; returns the receipt, or the failure as an API error.
    pub async fn send_and_wait(&self, key: &Keypair, kind: TxKind) -> Result<Value, ClientError> {
        let hash = self.send(key, kind).await?;
        let v = self.wait_tx(hash, Duration::from_secs(60)).await?;
        let receipt = v["receipt"].clone();
        if receipt["status"] == "failed" {
            return Err(ClientError::Api {
                status: 422,
                code: receipt["code"].as_str().unwrap_or("failed").to_owned(),
                message: receipt["message"].as_str().unwrap_or("failed").to_owned(),
            });
        }
        Ok(v)
    }
}
