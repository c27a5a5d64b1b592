//! API keys and per-key rate limits.
//!
//! A consumer's API key is a secret string; the ledger knows only its hash,
//! [`api_key_hash`]`(key) = blake3(key as UTF-8 bytes)`, bound to the consumer's account by a
//! `MarketKeyCreate` transaction. A request carries `Authorization: Bearer <key>`; the server
//! hashes it and looks the hash up in the committed ledger state on every request, so a
//! revocation takes effect with the block that carries it.

use crate::error::ApiError;
use axum::http::{header, HeaderMap};
use flock_primitives::{Address, Hash};
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// The hash the ledger binds an API key by: blake3 of the key's UTF-8 bytes, exactly as sent
/// after `Bearer ` (no trimming, no domain separation, so `b3sum` computes it too).
pub fn api_key_hash(key: &str) -> Hash {
    Hash::of(key.as_bytes())
}

/// A fresh API key: `flk-` followed by 64 hex characters of OS randomness (256 bits).
pub fn generate_api_key() -> String {
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    format!("flk-{}", hex::encode(b))
}

/// An authenticated caller.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    pub(crate) key_hash: Hash,
    pub(crate) owner: Address,
}

/// Checks the bearer key against the ledger.
pub(crate) fn authenticate(
    node: &flock_node::Node,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized(
            "missing_api_key",
            "no API key: send `Authorization: Bearer <api key>` (create a key with `flockd market key-create`)",
        )
    })?;
    let value = value.to_str().map_err(|_| {
        ApiError::unauthorized("invalid_api_key", "the Authorization header is not ASCII")
    })?;
    let key = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "invalid_api_key",
                "the Authorization header must be `Bearer <api key>`",
            )
        })?;
    let key_hash = api_key_hash(key);
    let k = node.with_chain(|c| c.ledger().state().market_key(&key_hash)).ok_or_else(|| {
        ApiError::unauthorized(
            "invalid_api_key",
            "incorrect API key: no key with this hash is bound on the ledger",
        )
    })?;
    if let Some(h) = k.revoked {
        return Err(ApiError::unauthorized(
            "revoked_api_key",
            format!("this API key was revoked at block {}", h.0),
        ));
    }
    Ok(Caller { key_hash, owner: k.owner })
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-key token buckets.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_sec: f64,
    burst: f64,
    per_minute: u32,
    buckets: Mutex<HashMap<Hash, Bucket>>,
}

impl RateLimiter {
    pub(crate) fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            per_sec: f64::from(per_minute) / 60.0,
            burst: f64::from(burst),
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket, or says how long to wait.
    pub(crate) fn check(&self, key: &Hash) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 100_000 {
            // Full buckets carry no state worth keeping.
            let (rate, burst) = (self.per_sec, self.burst);
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = map.entry(*key).or_insert(Bucket { tokens: self.burst, at: now });
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_sec).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = Duration::from_secs_f64((1.0 - b.tokens) / self.per_sec);
        Err(ApiError::rate_limited(wait.as_secs_f64().ceil() as u64, self.per_minute))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_plain_blake3() {
        let k = "flk-abc";
        assert_eq!(api_key_hash(k).0, *blake3::hash(b"flk-abc").as_bytes());
        let g = generate_api_key();
        assert!(g.starts_with("flk-") && g.len() == 68);
        assert_ne!(g, generate_api_key());
    }

    #[test]
    fn bucket_allows_burst_then_refuses() {
        let r = RateLimiter::new(60, 3);
        let k = Hash([1; 32]);
        for _ in 0..3 {
            r.check(&k).unwrap();
        }
        let e = r.check(&k).unwrap_err();
        assert_eq!(e.status.as_u16(), 429);
        assert_eq!(e.retry_after, Some(1));
        r.check(&Hash([2; 32])).unwrap();
    }
}
