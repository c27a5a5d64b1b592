//! Errors: [`ServeError`] for starting the service and the library functions, [`ApiError`] for
//! HTTP answers in OpenAI's error shape.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;
use std::path::PathBuf;

/// Why the service could not start, or a library call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A served listing is not on the ledger.
    #[error("listing `{0}` is not on the ledger (list it first with `flockd market list`)")]
    UnknownListing(String),
    /// A served listing is paused by its owner.
    #[error("listing `{0}` is inactive (its owner paused it); reactivate it before serving")]
    InactiveListing(String),
    /// The server key is not the listing's server account.
    #[error(
        "listing `{listing}` names server {expected}, but the server key is {got}; \
         serve it with that account's key or change the listing's server"
    )]
    WrongServer {
        /// The listing.
        listing: String,
        /// The listing's server account.
        expected: String,
        /// The server key's account.
        got: String,
    },
    /// The model directory holds another kind of model than the listing.
    #[error("listing `{listing}` is a {listed} model but {dir} holds a {found} model")]
    KindMismatch {
        /// The listing.
        listing: String,
        /// The listing's kind.
        listed: &'static str,
        /// The directory.
        dir: PathBuf,
        /// What the directory holds.
        found: &'static str,
    },
    /// A listing is named twice.
    #[error("listing `{0}` is served twice")]
    DuplicateListing(String),
    /// The configuration is unusable.
    #[error("invalid serve config: {0}")]
    Config(String),
    /// A model directory could not be loaded.
    #[error("loading {dir}: {source}")]
    Model {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: flock_ml::MlError,
    },
    /// A predict model directory is malformed.
    #[error("predict model {dir}: {reason}")]
    PredictModel {
        /// The directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// The usage journal is corrupt (not a torn last line, which is dropped on open).
    #[error("usage journal {path} is corrupt at line {line}: {reason}")]
    JournalCorrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Why.
        reason: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Writing exported data failed.
    #[error("writing the export: {0}")]
    Export(String),
}

impl ServeError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

/// An HTTP error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI's error type (`invalid_request_error`, `authentication_error`, ...).
    pub kind: &'static str,
    /// A stable code.
    pub code: &'static str,
    /// A readable message.
    pub message: String,
    /// The request field at fault, if one is.
    pub param: Option<&'static str>,
    /// Seconds to wait before retrying (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, msg: String) -> Self {
        Self { status, kind, code, message: msg, param: None, retry_after: None }
    }

    /// 400: the request is malformed or out of range.
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", code, message.into())
    }

    /// 400 naming the field at fault.
    pub fn bad_param(param: &'static str, message: impl Into<String>) -> Self {
        Self { param: Some(param), ..Self::bad("invalid_value", message) }
    }

    /// 401.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", code, message.into())
    }

    /// 402: not enough credit in the escrow.
    pub fn payment_required(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_quota",
            "insufficient_credits",
            message.into(),
        )
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", code, message.into())
    }

    /// 413.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("the request body is larger than this server's limit of {limit} bytes"),
        )
    }

    /// 429.
    pub fn rate_limited(retry_after: u64, per_minute: u32) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "rate_limit_exceeded",
                format!(
                    "rate limit reached for this API key ({per_minute} requests per minute); \
                     retry in {}s",
                    retry_after.max(1)
                ),
            )
        }
    }

    /// 503: the inference queue is full, or the service is shutting down.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "overloaded",
                message.into(),
            )
        }
    }

    /// 500.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            e.to_string(),
        )
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({ "error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}
