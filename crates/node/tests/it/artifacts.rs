//! The artifact store over HTTP: verified uploads, limits, range requests.

use crate::common::*;
use axum::{
    body::{to_bytes, Body},
    http::{header, Request, StatusCode},
};
use flock_node::{api::router, artifacts::ArtifactStore, Chain, MempoolLimits, Node};
use flock_primitives::Hash;
use flock_storage::MemStore;
use tower::ServiceExt;

fn node_with_store(max: u64) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (g, _) = genesis();
    let chain = Chain::open(Box::new(MemStore::new()), g).unwrap();
    let store = ArtifactStore::open(dir.path(), max).unwrap();
    (Node::with_artifacts(chain, MempoolLimits::default(), store), dir)
}

async fn send(
    app: &axum::Router,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    (parts.status, parts.headers, to_bytes(body, 1 << 26).await.unwrap().to_vec())
}

fn put(hash: &Hash, bytes: Vec<u8>) -> Request<Body> {
    Request::put(format!("/v1/artifacts/{hash}")).body(Body::from(bytes)).unwrap()
}

#[tokio::test]
async fn uploads_are_verified_limited_and_served_with_ranges() {
    let (node, _dir) = node_with_store(1 << 20);
    let app = router(node);
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let h = Hash::of(&blob);

    let (s, _, b) = send(&app, put(&h, blob.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&b));
    let (s, _, _) = send(&app, put(&h, blob.clone())).await;
    assert_eq!(s, StatusCode::OK, "a second upload of the same blob is a no-op");

    // Wrong name for the bytes: refused, nothing stored under that name.
    let wrong = Hash::of(b"something else");
    let (s, _, b) = send(&app, put(&wrong, blob.clone())).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(String::from_utf8_lossy(&b).contains("hash_mismatch"));
    let (s, _, _) =
        send(&app, Request::get(format!("/v1/artifacts/{wrong}")).body(Body::empty()).unwrap())
            .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Over the limit.
    let big = vec![7u8; (1 << 20) + 1];
    let (s, _, b) = send(&app, put(&Hash::of(&big), big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{}", String::from_utf8_lossy(&b));

    // Whole and ranged downloads.
    let (s, hd, b) =
        send(&app, Request::get(format!("/v1/artifacts/{h}")).body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b, blob);
    assert_eq!(hd[header::ACCEPT_RANGES], "bytes");
    let (s, hd, b) = send(
        &app,
        Request::get(format!("/v1/artifacts/{h}"))
            .header(header::RANGE, "bytes=1000-1999")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(b, blob[1000..2000]);
    assert_eq!(hd[header::CONTENT_RANGE], "bytes 1000-1999/100000");
    let (s, _, b) = send(
        &app,
        Request::get(format!("/v1/artifacts/{h}"))
            .header(header::RANGE, "bytes=99990-")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!((s, b.as_slice()), (StatusCode::PARTIAL_CONTENT, &blob[99_990..]));
    let (s, _, _) = send(
        &app,
        Request::get(format!("/v1/artifacts/{h}"))
            .header(header::RANGE, "bytes=200000-")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
    let (s, _, _) =
        send(&app, Request::get("/v1/artifacts/xyz").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_node_without_a_store_says_so() {
    let (node, _, _) = node();
    let app = router(node);
    let (s, _, b) = send(&app, put(&Hash::of(b"x"), b"x".to_vec())).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&b).contains("no_artifact_store"));
}
