//! `PUT/GET /v1/artifacts/{hash}`: streamed, size-limited, verified, with range requests.
//! A `GET` of a blob this node misses is fetched from its artifact peers (if it has any)
//! unless the request carries `x-flock-no-peer-fetch: 1`.

use crate::{
    api::{parse_hash, ApiError, AppState},
    artifact_peers::{fetch_from_peers, PeerFetch, NO_PEER_FETCH},
    artifacts::{parse_range, ArtifactError},
};
use axum::{
    body::Body,
    extract::{DefaultBodyLimit, Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use futures_util::StreamExt;
use serde_json::json;
use std::io::SeekFrom;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/artifacts/{hash}", get(get_artifact).put(put_artifact))
        // Uploads enforce the store's own limit while streaming.
        .layer(DefaultBodyLimit::disable())
}

impl From<ArtifactError> for ApiError {
    fn from(e: ArtifactError) -> Self {
        let (status, code) = match &e {
            ArtifactError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "artifact_too_large"),
            ArtifactError::HashMismatch { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch")
            }
            ArtifactError::Interrupted(_) => (StatusCode::BAD_REQUEST, "upload_interrupted"),
            ArtifactError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, code, e.to_string())
    }
}

fn no_store() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_artifact_store",
        "this node does not serve artifacts",
    )
}

async fn put_artifact(
    State(s): State<AppState>,
    Path(hash): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let store = s.node.artifacts().ok_or_else(no_store)?;
    let hash = parse_hash(&hash)?;
    if let Some(size) = store.size(&hash) {
        return Ok((
            StatusCode::OK,
            Json(json!({ "hash": hash, "size": size, "status": "exists" })),
        )
            .into_response());
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > store.max_bytes()) {
        return Err(ArtifactError::TooLarge { max: store.max_bytes() }.into());
    }
    let mut upload = store.begin(hash)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ArtifactError::Interrupted(e.to_string()))?;
        upload.write(&chunk)?;
    }
    let size = upload.finish()?;
    Ok((StatusCode::CREATED, Json(json!({ "hash": hash, "size": size, "status": "stored" })))
        .into_response())
}

async fn get_artifact(
    State(s): State<AppState>,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let store = s.node.artifacts().ok_or_else(no_store)?;
    let hash = parse_hash(&hash)?;
    let path = store.path(&hash);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A peer asking on behalf of its own client gets this store's answer only.
            let from_peer = headers.get(NO_PEER_FETCH).is_some_and(|v| v.as_bytes() == b"1");
            if from_peer || store.peers().is_empty() {
                return Err(ApiError::not_found(format!("artifact {hash} is not stored here")));
            }
            match fetch_from_peers(&store, &hash).await {
                PeerFetch::Stored => {}
                PeerFetch::NotFound => {
                    return Err(ApiError::not_found(format!(
                        "artifact {hash} is not stored here nor on any of {} peers",
                        store.peers().len()
                    )))
                }
                PeerFetch::Failed(why) => {
                    return Err(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "peer_fetch_failed",
                        format!(
                        "artifact {hash} is not stored here and no peer delivered it intact: {why}"
                    ),
                    ))
                }
            }
            tokio::fs::File::open(&path).await.map_err(ApiError::internal)?
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
        Some(r) => match parse_range(r, len) {
            Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b),
            None => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{len}"))],
                    Json(json!({ "code": "bad_range", "message": format!("range {r:?} does not fit {len} bytes") })),
                )
                    .into_response())
            }
        },
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    file.seek(SeekFrom::Start(start)).await.map_err(ApiError::internal)?;
    let stream = tokio_util::io::ReaderStream::new(file.take(count));
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, "application/octet-stream".parse().map_err(ApiError::internal)?);
    h.insert(header::ACCEPT_RANGES, "bytes".parse().map_err(ApiError::internal)?);
    h.insert(header::CONTENT_LENGTH, count.into());
    h.insert(header::ETAG, format!("\"{hash}\"").parse().map_err(ApiError::internal)?);
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            format!("bytes {start}-{end}/{len}").parse().map_err(ApiError::internal)?,
        );
    }
    Ok(resp)
}
