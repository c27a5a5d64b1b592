//! Artifacts across machines: a node fetches a blob it misses from its peers, verified against
//! the hash, resumed with range requests, never looping between nodes that peer each other.

use crate::common::*;
use axum::{
    body::{Body, Bytes},
    extract::Path,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use flock_node::{MempoolLimits, NodeConfig, RunningNode};
use flock_primitives::Hash;
use std::{
    net::SocketAddr,
    path::Path as FsPath,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

const MAX: u64 = 1 << 20;

async fn start_node(dir: &FsPath, listen: SocketAddr, peers: Vec<String>) -> RunningNode {
    flock_node::start(NodeConfig {
        data_dir: dir.to_owned(),
        genesis: genesis().0,
        listen,
        block_interval: Duration::from_millis(50),
        sequencer: Some(seq_key()),
        mempool: MempoolLimits::default(),
        fsync: false,
        max_artifact_bytes: MAX,
        artifact_peers: peers,
    })
    .await
    .unwrap()
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A free loopback address (bound then released), for nodes that must know each other's URL
/// before either starts.
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Serves `app` on a free loopback port; returns its base URL.
async fn serve(app: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}")
}

fn blob(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + salt as usize) % 251) as u8).collect()
}

async fn fetch(url: &str, hash: &Hash) -> (StatusCode, Vec<u8>) {
    let r = reqwest::get(format!("{url}/v1/artifacts/{hash}")).await.unwrap();
    let s = StatusCode::from_u16(r.status().as_u16()).unwrap();
    (s, r.bytes().await.unwrap().to_vec())
}

fn tmp_files(dir: &FsPath) -> usize {
    std::fs::read_dir(dir.join("artifacts").join("tmp")).unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_fetches_a_missing_artifact_from_a_peer_and_keeps_it() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_node(da.path(), any_port(), vec![]).await;
    let data = blob(300_000, 1);
    let h = Hash::of(&data);
    let r = reqwest::Client::new()
        .put(format!("{}/v1/artifacts/{h}", a.url()))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let others: Vec<Vec<u8>> = (0..3).map(|i| blob(50_000 + i, 10 + i as u8)).collect();
    for o in &others {
        a.node.artifacts().unwrap().put(Hash::of(o), o).unwrap();
    }

    let b = start_node(db.path(), any_port(), vec![a.url()]).await;
    let (s, got) = fetch(&b.url(), &h).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, data);
    assert_eq!(b.node.artifacts().unwrap().size(&h), Some(data.len() as u64));

    // Concurrent requests for missing blobs share one fetch per hash and all succeed.
    let mut tasks = Vec::new();
    for o in &others {
        for _ in 0..4 {
            let (url, o) = (b.url(), o.clone());
            tasks.push(tokio::spawn(async move {
                let (s, got) = fetch(&url, &Hash::of(&o)).await;
                assert_eq!(s, StatusCode::OK);
                assert_eq!(got, o);
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }

    // B keeps what it fetched: A's gone, B still serves it (ranges too).
    a.shutdown().await.unwrap();
    let (s, got) = fetch(&b.url(), &h).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, data);
    let r = reqwest::Client::new()
        .get(format!("{}/v1/artifacts/{h}", b.url()))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes().await.unwrap().to_vec(), data[10..20]);
    // Something nobody has: a plain 404 (the only peer is down).
    let (s, body) = fetch(&b.url(), &Hash::of(b"nobody has this")).await;
    assert!(s == StatusCode::NOT_FOUND || s == StatusCode::BAD_GATEWAY, "{s}");
    assert!(String::from_utf8_lossy(&body).contains("code"), "{}", String::from_utf8_lossy(&body));
    assert_eq!(tmp_files(db.path()), 0);
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_wrong_bytes_is_skipped_and_nothing_is_stored() {
    let data = blob(100_000, 2);
    let h = Hash::of(&data);
    // Answers every hash with bytes that do not hash to it.
    let corrupt =
        serve(Router::new().route(
            "/v1/artifacts/{hash}",
            get(|| async { (StatusCode::OK, vec![0xAB_u8; 5_000]) }),
        ))
        .await;
    // Has `data` only.
    let served = data.clone();
    let good = serve(Router::new().route(
        "/v1/artifacts/{hash}",
        get(move |Path(p): Path<String>| {
            let served = served.clone();
            async move {
                if p == h.to_string() {
                    (StatusCode::OK, served).into_response()
                } else {
                    StatusCode::NOT_FOUND.into_response()
                }
            }
        }),
    ))
    .await;

    let d = tempfile::tempdir().unwrap();
    let n = start_node(d.path(), any_port(), vec![corrupt.clone(), good]).await;
    // The corrupt peer comes first; its bytes are refused and the good peer delivers.
    let (s, got) = fetch(&n.url(), &h).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, data);

    // Only the corrupt peer "has" this one: a clear 502, nothing stored.
    let missing = Hash::of(b"only the liar claims this");
    let (s, body) = fetch(&n.url(), &missing).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], "peer_fetch_failed", "{v}");
    assert!(v["message"].as_str().unwrap().contains(&corrupt), "{v}");
    assert!(v["message"].as_str().unwrap().contains("hash"), "{v}");
    let store = n.node.artifacts().unwrap();
    assert_eq!(store.size(&missing), None);
    assert!(!store.path(&missing).exists());
    assert_eq!(tmp_files(d.path()), 0);
    n.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_transfer_is_resumed_with_a_range_request() {
    let data = Bytes::from(blob(200_000, 3));
    let h = Hash::of(&data);
    let half = data.len() / 2;
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let (d2, seen2) = (data.clone(), seen.clone());
    // The first request gets half the body, then the connection drops; later ones get the
    // range they ask for.
    let flaky = serve(Router::new().route(
        "/v1/artifacts/{hash}",
        get(move |headers: HeaderMap| {
            let (data, seen) = (d2.clone(), seen2.clone());
            async move {
                let range =
                    headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let first = {
                    let mut s = seen.lock().unwrap();
                    s.push(range.clone());
                    s.len() == 1
                };
                let len = data.len();
                if first {
                    use futures_util::StreamExt;
                    let head =
                        futures_util::stream::iter([Ok::<_, std::io::Error>(data.slice(..half))]);
                    // Give the first half time to reach the client, then drop the connection.
                    let drop = futures_util::stream::once(async {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "drop"))
                    });
                    let mut r = Response::new(Body::from_stream(head.chain(drop)));
                    r.headers_mut().insert(header::CONTENT_LENGTH, len.into());
                    return r;
                }
                let start: usize = range
                    .as_deref()
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.strip_suffix('-'))
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                (
                    StatusCode::PARTIAL_CONTENT,
                    [(header::CONTENT_RANGE, format!("bytes {start}-{}/{len}", len - 1))],
                    data.slice(start..),
                )
                    .into_response()
            }
        }),
    ))
    .await;

    let d = tempfile::tempdir().unwrap();
    let n = start_node(d.path(), any_port(), vec![flaky]).await;
    let (s, got) = fetch(&n.url(), &h).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&got));
    assert_eq!(got, data.to_vec());
    assert_eq!(n.node.artifacts().unwrap().size(&h), Some(data.len() as u64));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], None);
    // Resumed from the bytes already written, not from the start.
    let from: usize = seen[1]
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("second request without a range: {seen:?}"));
    assert!(from > 0 && from <= half, "{seen:?}");
    n.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_peering_each_other_do_not_loop() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (aa, ab) = (free_addr(), free_addr());
    let a = start_node(da.path(), aa, vec![format!("http://{ab}")]).await;
    let b = start_node(db.path(), ab, vec![format!("http://{aa}")]).await;
    let missing = Hash::of(b"neither node has this");
    let t = Instant::now();
    let (s, body) =
        tokio::time::timeout(Duration::from_secs(10), fetch(&a.url(), &missing)).await.unwrap();
    assert_eq!(s, StatusCode::NOT_FOUND, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("not_found"));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let (s, _) = fetch(&b.url(), &missing).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // And a blob one of them has still travels.
    let data = blob(10_000, 4);
    b.node.artifacts().unwrap().put(Hash::of(&data), &data).unwrap();
    let (s, got) = fetch(&a.url(), &Hash::of(&data)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, data);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
