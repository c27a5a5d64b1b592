//! Request plumbing shared by the endpoints (auth → rate limit → body → model → credit →
//! worker), and the endpoints other than generation: models, predict, feedback.

use crate::{
    auth::{authenticate, Caller},
    error::ApiError,
    feedback::{self, FeedbackRecord, MAX_CORRECTION},
    journal::{Line, UsageRecord},
    meter::Meter,
    models::{Engine, Served},
    openai::{model_name, parse_body, FeedbackRequest, PredictRequest},
    service::Shared,
};
use axum::{
    body::{Body, Bytes},
    extract::{Path, State},
    http::{HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use flock_ledger::market::{usage_cost, Listing, ModelKind, Pricing, UsageEntry};
use flock_primitives::{Address, Amount};
use serde_json::{json, Value};
use std::sync::{atomic::Ordering, Arc};
use tokio::sync::OwnedSemaphorePermit;

pub(crate) type S = State<Arc<Shared>>;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fresh id: `prefix` and 24 hex characters.
pub(crate) fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    format!("{prefix}{}", hex::encode(b))
}

/// Authenticates, rate-limits and reads the body.
pub(crate) async fn admit(
    s: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Caller, Bytes), ApiError> {
    if s.closing.load(Ordering::Relaxed) {
        return Err(ApiError::overloaded("the node is shutting down"));
    }
    let caller = authenticate(&s.node, headers)?;
    s.limiter.check(&caller.key_hash)?;
    let limit = s.cfg.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::too_large(limit))?;
    Ok((caller, bytes))
}

/// The served model called `name`, of kind `want`, with its live listing.
pub(crate) fn model_for(
    s: &Shared,
    name: &str,
    want: ModelKind,
) -> Result<(Arc<Served>, Listing), ApiError> {
    let served = s.models.get(name).cloned().ok_or_else(|| {
        let known: Vec<&String> = s.models.keys().collect();
        ApiError {
            param: Some("model"),
            ..ApiError::not_found(
                "model_not_found",
                format!("the model `{name}` does not exist on this node (served: {known:?})"),
            )
        }
    })?;
    if served.kind() != want {
        let hint = match served.kind() {
            ModelKind::Language => "/v1/chat/completions or /v1/completions",
            ModelKind::Predict => "/v1/predict",
        };
        return Err(ApiError::bad_param("model", format!("`{name}` is served at {hint}")));
    }
    let listing = s
        .node
        .with_chain(|c| c.ledger().state().market_listing(name))
        .filter(|l| l.active)
        .ok_or_else(|| {
            ApiError::not_found("model_not_found", format!("the listing `{name}` is not active"))
        })?;
    Ok((served, listing))
}

/// A credit reservation, released when dropped.
pub(crate) struct Reservation {
    meter: Arc<Meter>,
    owner: Address,
    amount: Amount,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.meter.release(self.owner, self.amount);
    }
}

fn price_text(p: &Pricing) -> String {
    format!("{} per 1k tokens + {} per call", p.per_1k_tokens, p.per_call)
}

/// Reserves the worst-case cost of `worst` usage against the caller's escrow (402 if short).
pub(crate) fn reserve(
    s: &Shared,
    caller: &Caller,
    price: &Pricing,
    worst: &UsageEntry,
    what: &str,
) -> Result<Reservation, ApiError> {
    let cost = usage_cost(worst, price)
        .ok_or_else(|| ApiError::payment_required("the price of this request overflows"))?;
    let available =
        s.node.with_chain(|c| c.ledger().state().market_escrow(&caller.owner).available);
    s.meter.reserve(caller.owner, cost, available).map_err(|held| {
        let held_total = Amount(held.owed.0.saturating_add(held.reserved.0));
        let short = Amount(held_total.0.saturating_add(cost.0).saturating_sub(available.0));
        ApiError::payment_required(format!(
            "insufficient credits: this request may cost up to {cost} ({what}, at {}); \
             account {} has {available} available in its escrow, of which {held_total} is held \
             for usage not yet settled, so {short} more is needed. Deposit with \
             `flockd market deposit --amount <FLOCK>`{}",
            price_text(price),
            caller.owner,
            if worst.completion_tokens > 0 { " or lower max_tokens" } else { "" },
        ))
    })?;
    Ok(Reservation { meter: s.meter.clone(), owner: caller.owner, amount: cost })
}

/// Takes a place in the inference queue (503 when full) and waits for a worker.
pub(crate) async fn worker(
    s: &Shared,
) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), ApiError> {
    let place = s.admission.clone().try_acquire_owned().map_err(|_| {
        ApiError::overloaded(format!(
            "the inference queue is full ({} running, {} waiting); retry shortly",
            s.cfg.workers, s.cfg.queue
        ))
    })?;
    let run = s
        .workers
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::overloaded("the node is shutting down"))?;
    Ok((place, run))
}

/// Journals served usage (durable before this returns); its cost at `price`.
pub(crate) async fn meter_usage(
    s: &Shared,
    caller: &Caller,
    listing: &Listing,
    usage: UsageEntry,
    request: &str,
) -> Result<Amount, ApiError> {
    let cost = usage_cost(&usage, &listing.price).unwrap_or(Amount(u128::MAX));
    let rec = UsageRecord {
        seq: 0,
        listing: listing.name.clone(),
        key_hash: caller.key_hash,
        owner: caller.owner,
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        calls: usage.calls,
        cost,
        request: request.to_owned(),
        time_ms: now_ms(),
    };
    s.journal.append(Line::Use(rec)).await.map_err(|e| {
        ApiError::internal(format!("usage could not be recorded ({e}); nothing is charged"))
    })?;
    Ok(cost)
}

/// Adds the provenance header.
pub(crate) fn with_provenance(mut r: Response, served: &Served) -> Response {
    if let Ok(v) = HeaderValue::from_str(&served.provenance_id) {
        r.headers_mut().insert("x-flock-provenance", v);
    }
    r
}

/// The `flock` object of a response: the model's provenance and what the call cost.
pub(crate) fn flock_field(served: &Served, cost: Amount) -> Value {
    let mut v = served.flock_meta();
    v["cost"] = json!(cost);
    v["cost_human"] = json!(cost.to_string());
    v
}

fn model_json(s: &Shared, served: &Served) -> Value {
    let listing = s.node.with_chain(|c| c.ledger().state().market_listing(&served.listing));
    let mut meta = served.flock_meta();
    meta["kind"] = json!(served.kind());
    meta["listed_at_height"] = json!(served.created_height);
    if served.context_length > 0 {
        meta["context_length"] = json!(served.context_length);
    }
    if let Some(l) = &listing {
        meta["price"] = json!({
            "per_1k_tokens": l.price.per_1k_tokens,
            "per_call": l.price.per_call,
            "human": price_text(&l.price),
        });
        meta["active"] = json!(l.active);
        meta["owner"] = json!(l.owner);
        meta["server"] = json!(l.server);
        meta["rating"] = json!({ "sum": l.rating_sum, "count": l.rating_count });
    }
    json!({
        "id": served.listing,
        "object": "model",
        "created": s.started_unix,
        "owned_by": listing.map_or_else(|| "unknown".to_owned(), |l| l.owner.to_string()),
        "flock": meta,
    })
}

/// `GET /v1/models`: the served listings, OpenAI's list shape plus a `flock` object each.
pub(crate) async fn list_models(State(s): S) -> Json<Value> {
    let data: Vec<Value> = s.models.values().map(|m| model_json(&s, m)).collect();
    Json(json!({ "object": "list", "data": data }))
}

/// `GET /v1/models/{id}`.
pub(crate) async fn get_model(State(s): S, Path(id): Path<String>) -> Response {
    match s.models.get(&id) {
        Some(m) => with_provenance(Json(model_json(&s, m)).into_response(), m),
        None => ApiError::not_found(
            "model_not_found",
            format!("the model `{id}` does not exist on this node"),
        )
        .into_response(),
    }
}

/// `POST /v1/predict`: `{"model", "inputs": [[f32...]...]}` → outputs; one call per row.
pub(crate) async fn predict(State(s): S, headers: HeaderMap, body: Body) -> Response {
    match predict_inner(&s, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn predict_inner(
    s: &Arc<Shared>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (caller, bytes) = admit(s, headers, body).await?;
    let req: PredictRequest = parse_body(&bytes)?;
    let name = model_name(&req.model)?;
    let (served, listing) = model_for(s, name, ModelKind::Predict)?;
    let Engine::Predict(model) = &served.engine else {
        return Err(ApiError::internal("predict listing without a predict model"));
    };
    let rows = req.inputs.ok_or_else(|| ApiError::bad_param("inputs", "`inputs` is required"))?;
    let (width, max_rows) = (model.spec.inputs, s.cfg.max_predict_rows);
    if rows.is_empty() || rows.len() > max_rows {
        return Err(ApiError::bad_param(
            "inputs",
            format!("`inputs` must hold 1 to {max_rows} rows, got {}", rows.len()),
        ));
    }
    let mut f32_rows = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        if r.len() != width {
            return Err(ApiError::bad_param(
                "inputs",
                format!("inputs[{i}] has {} values; the model takes {width}", r.len()),
            ));
        }
        if r.iter().any(|v| !v.is_finite() || v.abs() > f64::from(f32::MAX)) {
            return Err(ApiError::bad_param(
                "inputs",
                format!("inputs[{i}] holds a non-finite value"),
            ));
        }
        f32_rows.push(r.iter().map(|&v| v as f32).collect::<Vec<f32>>());
    }
    let usage = UsageEntry {
        key_hash: caller.key_hash,
        prompt_tokens: 0,
        completion_tokens: 0,
        calls: rows.len() as u64,
    };
    let reservation = reserve(s, &caller, &listing.price, &usage, &format!("{} rows", rows.len()))?;
    let (place, run) = worker(s).await?;
    let m = model.clone();
    let outputs = tokio::task::spawn_blocking(move || {
        let _permits = (place, run);
        m.predict(&f32_rows)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let id = new_id("pred-");
    let cost = meter_usage(s, &caller, &listing, usage, &id).await?;
    drop(reservation);
    let mut body = json!({
        "id": id,
        "object": "predict",
        "created": now_ms() / 1000,
        "model": name,
        "outputs": outputs,
        "usage": { "rows": rows.len(), "calls": rows.len() },
        "flock": flock_field(&served, cost),
    });
    if let crate::predict::PredictTask::Classification { labels, .. } = &model.spec.task {
        let preds: Vec<Value> = outputs
            .iter()
            .map(|o| {
                let best = o
                    .iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
                    .0;
                json!({ "class": best, "label": labels.get(best) })
            })
            .collect();
        body["predictions"] = json!(preds);
    }
    Ok(with_provenance(Json(body).into_response(), &served))
}

/// `POST /v1/feedback`: `{"id", "rating": 1..5, "correction"?}` on a completion this key got.
pub(crate) async fn feedback(State(s): S, headers: HeaderMap, body: Body) -> Response {
    match feedback_inner(&s, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn feedback_inner(
    s: &Arc<Shared>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (caller, bytes) = admit(s, headers, body).await?;
    let req: FeedbackRequest = parse_body(&bytes)?;
    let id = req
        .id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ApiError::bad_param("id", "`id` (a completion id) is required"))?;
    let rating = match req.rating {
        Some(r @ 1..=5) => r as u8,
        Some(r) => {
            return Err(ApiError::bad_param("rating", format!("`rating` must be 1 to 5, got {r}")))
        }
        None => return Err(ApiError::bad_param("rating", "`rating` (1 to 5) is required")),
    };
    if let Some(c) = &req.correction {
        if c.len() > MAX_CORRECTION {
            return Err(ApiError::bad_param(
                "correction",
                format!("`correction` is longer than {MAX_CORRECTION} bytes"),
            ));
        }
        if flock_ml_data::chat::RESERVED_MARKERS.iter().any(|m| c.contains(m)) {
            return Err(ApiError::bad_param("correction", "`correction` contains a ChatML marker"));
        }
    }
    let completion = {
        let log = s.completions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        log.get(&id).filter(|c| c.owner == caller.owner).cloned()
    }
    .ok_or_else(|| {
        ApiError::not_found(
            "completion_not_found",
            format!(
                "no completion `{id}` for this account among the last {} served by this node",
                s.cfg.completion_log
            ),
        )
    })?;
    let listing = completion.listing.clone();
    let rec = FeedbackRecord {
        id: id.clone(),
        rating,
        correction: req.correction,
        time_ms: now_ms(),
        completion,
    };
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || {
        let _g = s2.feedback_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        feedback::append(&s2.feedback_path, &rec)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::internal(format!("feedback could not be stored: {e}")))?;
    Ok(Json(json!({
        "id": id,
        "object": "feedback",
        "listing": listing,
        "rating": rating,
        "stored": true,
        "on_chain": "to rate the listing on the ledger, send a MarketRate transaction from your account (`flockd market rate`)",
    }))
    .into_response())
}
