//! Fetching a blob this node misses from peer nodes' artifact stores.
//!
//! The blob streams into the store's temporary file (size-limited, hashed as it arrives); a
//! transfer that breaks off is resumed with an HTTP `Range` request from the bytes already
//! written, a few attempts per peer, then the next peer is tried. Only bytes that hash to the
//! requested name enter the store; a peer that sends anything else is skipped. Requests to
//! peers carry [`NO_PEER_FETCH`], so a peer that misses the blob too does not ask its own peers
//! (two nodes peering each other never loop).

use crate::artifacts::{ArtifactError, ArtifactStore, Upload};
use flock_primitives::Hash;
use reqwest::StatusCode;
use std::time::Duration;

/// Header a node sets on requests to its peers: answer from your own store only.
pub const NO_PEER_FETCH: &str = "x-flock-no-peer-fetch";

/// Attempts per peer (the first request and its resumptions).
const ATTEMPTS_PER_PEER: u32 = 4;

/// The outcome of asking the peers for a blob.
#[derive(Debug)]
pub(crate) enum PeerFetch {
    /// Fetched, verified and stored (its size).
    Stored,
    /// No peer has it.
    NotFound,
    /// Some peer has it but no peer delivered it intact; why, peer by peer.
    Failed(String),
}

/// A client per fetch (fetches are rare, and a pooled client must not outlive its runtime).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Fetches `hash` from the store's peers (one fetch per hash at a time; a request that waited
/// for another's fetch finds the blob stored).
pub(crate) async fn fetch_from_peers(store: &ArtifactStore, hash: &Hash) -> PeerFetch {
    let lock = store.fetch_lock(hash);
    let _guard = lock.lock().await;
    if store.size(hash).is_some() {
        return PeerFetch::Stored;
    }
    let r = fetch_locked(store, hash).await;
    store.release_fetch_lock(hash);
    r
}

async fn fetch_locked(store: &ArtifactStore, hash: &Hash) -> PeerFetch {
    let mut failures = Vec::new();
    for peer in store.peers() {
        match fetch_one(store, peer, hash).await {
            Ok(Some(size)) => {
                tracing::info!(%hash, %peer, size, "artifact fetched from a peer");
                return PeerFetch::Stored;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%hash, %peer, error = %e, "artifact fetch from a peer failed");
                failures.push(format!("{peer}: {e}"));
            }
        }
    }
    if failures.is_empty() {
        PeerFetch::NotFound
    } else {
        PeerFetch::Failed(failures.join("; "))
    }
}

/// `Ok(None)`: the peer does not have it (or does not serve artifacts).
async fn fetch_one(store: &ArtifactStore, peer: &str, hash: &Hash) -> Result<Option<u64>, String> {
    let url = format!("{peer}/v1/artifacts/{hash}");
    let mut upload: Upload<'_> = store.begin(*hash).map_err(|e| e.to_string())?;
    let http = client();
    let mut last_err = String::new();
    for attempt in 0..ATTEMPTS_PER_PEER {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        let offset = upload.written();
        let mut req = http.get(&url).header(NO_PEER_FETCH, "1");
        if offset > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                last_err = format!("request failed: {e}");
                continue;
            }
        };
        let status = resp.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::SERVICE_UNAVAILABLE {
            return Ok(None);
        }
        match status {
            StatusCode::OK if offset > 0 => {
                // The peer ignored the range: start over.
                upload = store.begin(*hash).map_err(|e| e.to_string())?;
            }
            StatusCode::OK => {}
            StatusCode::PARTIAL_CONTENT => {
                let start = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split_once('-'))
                    .and_then(|(a, _)| a.parse::<u64>().ok());
                if start != Some(offset) {
                    return Err(format!("answered a range request from {offset} with {start:?}"));
                }
            }
            s => return Err(format!("HTTP {s}")),
        }
        let remaining = resp.content_length();
        if remaining.is_some_and(|n| upload.written() + n > store.max_bytes()) {
            return Err(ArtifactError::TooLarge { max: store.max_bytes() }.to_string());
        }
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => upload.write(&chunk).map_err(|e| e.to_string())?,
                Ok(None) => {
                    return match upload.finish() {
                        Ok(size) => Ok(Some(size)),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Err(e) => {
                    last_err = format!("transfer broke off after {} bytes: {e}", upload.written());
                    tracing::debug!(%hash, %peer, error = %last_err, "resuming");
                    break;
                }
            }
        }
    }
    Err(format!("gave up after {ATTEMPTS_PER_PEER} attempts: {last_err}"))
}
