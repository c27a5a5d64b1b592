//! The HTTP API (axum). `router(node)` is a plain function so tests drive it in memory.
//!
//! Every error is JSON `{"code": "...", "message": "..."}` with a 4xx status for the caller's
//! mistakes and 5xx for the node's.

use crate::{mempool::SubmitError, node::Node};
use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use flock_ledger::{BlockReceipts, Receipt, SignedTx, TxError};
use flock_primitives::{Address, Hash, Height};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;

/// Largest request body the API reads (transactions are far smaller).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// An API error: a status, a stable code and a readable message.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: String,
    /// Message.
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.to_owned(), message: message.into() }
    }
    pub(crate) fn bad(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "code": self.code, "message": self.message }))).into_response()
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        let status = match &e {
            SubmitError::Duplicate(_) => StatusCode::CONFLICT,
            SubmitError::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
            SubmitError::SenderLimit(_) => StatusCode::TOO_MANY_REQUESTS,
            SubmitError::Tx(t) => match t {
                TxError::Malformed(_)
                | TxError::BadSignature
                | TxError::WrongChainId { .. }
                | TxError::ZeroAmount => StatusCode::BAD_REQUEST,
                TxError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                TxError::NonceReplayed { .. } | TxError::NonceGap { .. } => StatusCode::CONFLICT,
                TxError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
        };
        Self::new(status, e.code(), e.to_string())
    }
}

pub(crate) type ApiResult<T = Json<Value>> = Result<T, ApiError>;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) node: Node,
    metrics: PrometheusHandle,
}

/// The API router.
pub fn router(node: Node) -> Router {
    let state = AppState { node, metrics: crate::metrics::handle() };
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/params", get(params))
        .route("/v1/supply", get(supply))
        .route("/v1/txs", post(submit))
        .route("/v1/txs/{hash}", get(tx_by_hash))
        .route("/v1/accounts/{address}", get(account))
        .route("/v1/pools/{operator}", get(pool))
        .route("/v1/validators", get(validators))
        .route("/v1/blocks/latest", get(latest_block))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/events", get(events))
        .merge(crate::api_arena::routes())
        .merge(crate::api_alliance::routes())
        .merge(crate::api_market::routes())
        .fallback(|| async { ApiError::not_found("no such endpoint; see the README for the API") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .merge(crate::api_artifacts::routes())
        .with_state(state)
}

async fn health(State(s): State<AppState>) -> Json<Value> {
    let h = s.node.with_chain(|c| c.info().height.0);
    Json(json!({ "status": "ok", "height": h }))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}

async fn status(State(s): State<AppState>) -> Json<Value> {
    let mempool = s.node.with_mempool(|m| m.len());
    s.node.with_chain(|c| {
        let info = c.info();
        let g = c.ledger().globals();
        Json(json!({
            "chain_id": g.chain_id,
            "genesis_hash": c.genesis().hash(),
            "height": info.height,
            "block_hash": info.block_hash,
            "state_root": info.state_root,
            "time_ms": g.time_ms,
            "seed": g.seed,
            "mempool": mempool,
        }))
    })
}

async fn params(State(s): State<AppState>) -> Json<Value> {
    s.node.with_chain(|c| Json(json!(c.ledger().params())))
}

async fn supply(State(s): State<AppState>) -> Json<Value> {
    s.node.with_chain(|c| {
        let r = c.ledger().state().supply();
        Json(json!({
            "height": c.info().height,
            "circulating": r.circulating(),
            "circulating_human": r.circulating().to_string(),
            "conserved": r.is_conserved(),
            "report": r,
        }))
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SubmitBody {
    Encoded { encoded: String },
    Signed(Box<SignedTx>),
}

async fn submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let params = s.node.with_chain(|c| c.ledger().params().clone());
    let is_binary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"));
    let tx = if is_binary {
        SignedTx::decode(&body, &params).map_err(|e| ApiError::from(SubmitError::Tx(e)))?
    } else {
        match serde_json::from_slice::<SubmitBody>(&body) {
            Ok(SubmitBody::Signed(tx)) => *tx,
            Ok(SubmitBody::Encoded { encoded }) => {
                let bytes = hex::decode(encoded.trim()).map_err(|e| {
                    ApiError::bad("malformed", format!("'encoded' is not hex: {e}"))
                })?;
                SignedTx::decode(&bytes, &params).map_err(|e| ApiError::from(SubmitError::Tx(e)))?
            }
            Err(e) => {
                return Err(ApiError::bad(
                    "malformed_json",
                    format!(
                        "body is not a signed transaction (JSON, or {{\"encoded\": hex}}): {e}"
                    ),
                ))
            }
        }
    };
    let hash = s.node.submit(tx)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "hash": hash, "status": "pending" }))))
}

pub(crate) fn parse_hash(s: &str) -> Result<Hash, ApiError> {
    s.parse().map_err(|e| ApiError::bad("bad_hash", format!("{e}")))
}

pub(crate) fn parse_address(s: &str) -> Result<Address, ApiError> {
    s.parse().map_err(|e| ApiError::bad("bad_address", format!("{e}")))
}

#[derive(Serialize)]
struct TxView {
    hash: Hash,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<Height>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receipt: Option<Receipt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tx: Option<SignedTx>,
}

async fn tx_by_hash(
    State(s): State<AppState>,
    Path(hash): Path<String>,
) -> ApiResult<Json<TxView>> {
    let hash = parse_hash(&hash)?;
    if s.node.with_mempool(|m| m.contains(&hash)) {
        return Ok(Json(TxView {
            hash,
            status: "pending",
            height: None,
            index: None,
            receipt: None,
            tx: None,
        }));
    }
    s.node.with_chain(|c| {
        let (height, index) =
            c.store().tx_location(&hash).map_err(ApiError::internal)?.ok_or_else(|| {
                ApiError::not_found(format!("transaction {hash} is neither pending nor committed"))
            })?;
        let block = c.block(height).map_err(ApiError::internal)?;
        let receipts = c.receipts(height).map_err(ApiError::internal)?;
        let i = index as usize;
        Ok(Json(TxView {
            hash,
            status: "committed",
            height: Some(height),
            index: Some(index),
            receipt: receipts.and_then(|r| r.txs.get(i).cloned()),
            tx: block.and_then(|b| b.txs.get(i).cloned()),
        }))
    })
}

/// The network validators: the set recorded for the current ledger epoch (at the end of the
/// previous one; members with a registered consensus key carry it), the set the stakes would
/// give now, the dealers of the last and current resharing rounds, and the tombstoned
/// offenders.
async fn validators(State(s): State<AppState>) -> ApiResult {
    s.node.with_chain(|c| {
        let st = c.ledger().state();
        let params = c.ledger().params();
        let height = c.info().height;
        let epoch = height.0 / params.epoch_length;
        let tombstones: Vec<Value> = st
            .consensus_tombstones
            .iter()
            .map(|(a, t)| json!({ "validator": a, "tombstone": t }))
            .collect();
        // Threshold-key resharing: who posted a dealer log, in the last round and this one.
        let resharing: Vec<Value> = [epoch.checked_sub(1), Some(epoch)]
            .into_iter()
            .flatten()
            .map(|r| {
                let dealers: Vec<_> = st.dkg_logs(r).into_iter().map(|(a, _)| a).collect();
                json!({ "round": r, "dealers": dealers })
            })
            .collect();
        Ok(Json(json!({
            "height": height,
            "epoch": epoch,
            "resharing": resharing,
            "set": st.validator_set(epoch),
            "staked_now": st.network_validators(params),
            "min_network_stake": params.min_network_stake,
            "max_network_validators": params.max_network_validators,
            "tombstones": tombstones,
        })))
    })
}

async fn account(State(s): State<AppState>, Path(addr): Path<String>) -> ApiResult {
    let a = parse_address(&addr)?;
    let next_nonce = s.node.with_mempool(|m| m.next_nonce(&a));
    s.node.with_chain(|c| {
        let st = c.ledger().state();
        let now = c.info().height;
        let acc = st.account(&a);
        let stakes: Vec<Value> = st
            .positions(&a)
            .into_iter()
            .map(|(t, amount)| json!({ "target": t, "amount": amount, "delegated": st.delegated_to(&a, &t) }))
            .collect();
        let unbonding: Vec<Value> = st
            .unbonding_of(&a)
            .into_iter()
            .map(|(h, amount, source)| json!({ "release_at": h, "amount": amount, "source": source }))
            .collect();
        let delegations: Vec<Value> = st
            .delegations
            .iter()
            .filter(|((_, d), _)| *d == a)
            .map(|((op, _), d)| {
                json!({
                    "operator": op,
                    "value": st.delegation_value(op, &a),
                    "shares": d.shares.to_string(),
                    "claimable": st.claimable_pool(op, &a, now),
                    "unlocks_at": d.last_deposit.saturating_add(c.ledger().params().delegation_lock_blocks),
                })
            })
            .collect();
        Ok(Json(json!({
            "address": a,
            "height": now,
            "balance": acc.balance,
            "balance_human": acc.balance.to_string(),
            "nonce": acc.nonce,
            "next_nonce": next_nonce,
            "stakes": stakes,
            "unbonding": unbonding,
            "pool": st.pools.get(&a),
            "delegations": delegations,
            "tombstone": st.tombstone(&a),
            "rewards": {
                "claimable": st.claimable_own(&a, now),
                "vesting": st.vesting_own(&a, now),
            },
        })))
    })
}

async fn pool(State(s): State<AppState>, Path(op): Path<String>) -> ApiResult {
    let op = parse_address(&op)?;
    s.node.with_chain(|c| {
        let st = c.ledger().state();
        let pool = st.pools.get(&op).ok_or_else(|| ApiError::not_found(format!("{op} has no delegation pool")))?;
        let delegators: Vec<Value> = st
            .delegations
            .range((op, Address([0; 20]))..=(op, Address([0xff; 20])))
            .map(|((_, d), del)| json!({ "delegator": d, "value": pool.value_of(del.shares), "shares": del.shares.to_string() }))
            .collect();
        Ok(Json(json!({ "operator": op, "pool": pool, "delegators": delegators })))
    })
}

fn block_json(node: &Node, height: Height) -> ApiResult {
    node.with_chain(|c| {
        if height > c.info().height {
            return Err(ApiError::not_found(format!(
                "block {height} is not committed yet (tip is {})",
                c.info().height
            )));
        }
        let store = c.store();
        let hash = store.block_hash(height).map_err(ApiError::internal)?;
        let root = store.state_root(height).map_err(ApiError::internal)?;
        if height == Height::GENESIS {
            return Ok(Json(json!({
                "height": height, "hash": hash, "state_root": root, "genesis": c.genesis(),
            })));
        }
        let block = c
            .block(height)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("block pruned"))?;
        let txs: Vec<Hash> = block.txs.iter().map(SignedTx::hash).collect();
        Ok(Json(json!({
            "height": height,
            "hash": hash,
            "state_root": root,
            "header": block.header,
            "tx_count": txs.len(),
            "txs": txs,
        })))
    })
}

async fn latest_block(State(s): State<AppState>) -> ApiResult {
    let h = s.node.with_chain(|c| c.info().height);
    block_json(&s.node, h)
}

async fn block(State(s): State<AppState>, Path(height): Path<String>) -> ApiResult {
    let h: u64 = height
        .parse()
        .map_err(|_| ApiError::bad("bad_height", format!("height {height:?} is not a number")))?;
    block_json(&s.node, Height(h))
}

#[derive(Deserialize)]
struct EventsQuery {
    since: Option<u64>,
    limit: Option<u64>,
    wait_ms: Option<u64>,
}

#[derive(Serialize)]
struct BlockEvents {
    height: Height,
    #[serde(flatten)]
    receipts: BlockReceipts,
}

async fn events(State(s): State<AppState>, Query(q): Query<EventsQuery>) -> ApiResult {
    let since = q.since.unwrap_or(1).max(1);
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    if let Some(wait) = q.wait_ms {
        s.node.wait_for_height(since, Duration::from_millis(wait.min(30_000))).await;
    }
    s.node.with_chain(|c| {
        let tip = c.info().height.0;
        let mut out = Vec::new();
        let mut h = since;
        while h <= tip && (out.len() as u64) < limit {
            let receipts = c.receipts(Height(h)).map_err(ApiError::internal)?.unwrap_or_default();
            out.push(BlockEvents { height: Height(h), receipts });
            h += 1;
        }
        Ok(Json(json!({ "tip": tip, "next": h, "blocks": out })))
    })
}
