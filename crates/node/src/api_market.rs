//! AI Marketplace read API: listings (price, split, provenance, ratings, volume), an account's
//! credit escrow and API keys (hashes only), settled usage batches.

use crate::api::{ApiError, ApiResult, AppState};
use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use flock_primitives::{Address, Hash};
use serde_json::{json, Value};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/market/listings", get(list))
        .route("/v1/market/listings/{name}", get(listing))
        .route("/v1/market/listings/{name}/batches/{id}", get(batch))
        .route("/v1/market/accounts/{address}", get(account))
}

fn rating(sum: u64, count: u64) -> Value {
    // Two decimals, computed in integers (the ledger keeps sum and count).
    match sum.saturating_mul(100).checked_div(count) {
        None => Value::Null,
        Some(hundredths) => json!(format!("{}.{:02}", hundredths / 100, hundredths % 100)),
    }
}

fn listing_json(l: &flock_ledger::market::Listing) -> Value {
    let mut v = json!(l);
    v["rating"] = rating(l.rating_sum, l.rating_count);
    v
}

async fn list(State(s): State<AppState>) -> Json<Value> {
    s.node.with_chain(|c| {
        let ls: Vec<Value> =
            c.ledger().state().market_all_listings().iter().map(listing_json).collect();
        Json(json!({ "height": c.info().height, "listings": ls }))
    })
}

async fn listing(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    s.node.with_chain(|c| {
        let st = c.ledger().state();
        let l = st
            .market_listing(&name)
            .ok_or_else(|| ApiError::not_found(format!("no listing named {name:?}")))?;
        let mut v = listing_json(&l);
        v["ratings"] = json!(st.market_ratings(&name));
        Ok(Json(v))
    })
}

async fn batch(State(s): State<AppState>, Path((name, id)): Path<(String, String)>) -> ApiResult {
    let id: Hash =
        id.parse().map_err(|_| ApiError::bad("bad_batch", format!("{id:?} is not a hash")))?;
    s.node.with_chain(|c| {
        let b =
            c.ledger().state().market_batch(&name, &id).ok_or_else(|| {
                ApiError::not_found(format!("batch {id} of {name:?} is not settled"))
            })?;
        Ok(Json(json!(b)))
    })
}

async fn account(State(s): State<AppState>, Path(address): Path<String>) -> ApiResult {
    let a: Address =
        address.parse().map_err(|e| ApiError::bad("bad_address", format!("{address:?}: {e}")))?;
    s.node.with_chain(|c| {
        let st = c.ledger().state();
        let e = st.market_escrow(&a);
        let keys: Vec<Value> = st
            .market_keys_of(&a)
            .into_iter()
            .map(|(h, k)| json!({ "key_hash": h, "key": k }))
            .collect();
        let spent: Vec<Value> = st
            .market_all_listings()
            .iter()
            .map(|l| (l.name.clone(), st.market_spent(&l.name, &a)))
            .filter(|(_, x)| !x.is_zero())
            .map(|(n, x)| json!({ "listing": n, "spent": x }))
            .collect();
        Ok(Json(json!({
            "address": a,
            "spent": spent,
            "escrow": { "available": e.available, "pending": e.pending, "pending_total": e.pending_total() },
            "keys": keys,
        })))
    })
}
