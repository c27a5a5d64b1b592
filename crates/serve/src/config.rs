//! How to serve: which listings from which model directories, the server key, limits.

use crate::error::ServeError;
use flock_primitives::Keypair;
use std::{path::PathBuf, time::Duration};

/// One listing served from a model directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedModel {
    /// The listing's name on the ledger (also the OpenAI `model` id).
    pub listing: String,
    /// A language model directory (`config.json`, `model.safetensors`, `tokenizer.json`, ...)
    /// or a predict model directory (`predict.json` + `model.safetensors`, see
    /// [`crate::predict`]).
    pub dir: PathBuf,
}

impl std::str::FromStr for ServedModel {
    type Err = String;
    /// Parses `LISTING=DIR` (the `--serve` flag).
    fn from_str(s: &str) -> Result<Self, String> {
        let (listing, dir) = s
            .split_once('=')
            .filter(|(l, d)| !l.is_empty() && !d.is_empty())
            .ok_or_else(|| format!("expected LISTING=MODEL_DIR, got {s:?}"))?;
        Ok(Self { listing: listing.to_owned(), dir: PathBuf::from(dir) })
    }
}

/// A per-key token bucket: `per_minute` requests a minute on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per minute.
    pub per_minute: u32,
    /// Bucket size.
    pub burst: u32,
}

impl Default for RateLimit {
    /// 600 a minute, bursts of 60.
    fn default() -> Self {
        Self { per_minute: 600, burst: 60 }
    }
}

/// Everything [`crate::Serve::start`] needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The listings to serve.
    pub models: Vec<ServedModel>,
    /// The listings' `server` account: it signs the usage settlements.
    pub server_key: Keypair,
    /// The node's data directory; the journal and the feedback log live in `<data_dir>/serve/`.
    pub data_dir: PathBuf,
    /// How often unsettled usage is folded into `MarketSettle` batches.
    pub settle_every: Duration,
    /// Most keys in one batch (also capped by the ledger's `market_max_batch_entries` and by
    /// the transaction size limit).
    pub max_batch_entries: usize,
    /// Per-key rate limit.
    pub rate_limit: RateLimit,
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens_cap: usize,
    /// `max_tokens` when a request names none (capped by what is left of the context).
    pub default_max_tokens: usize,
    /// Largest request body, in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Inference jobs run at once (each on a blocking thread).
    pub workers: usize,
    /// Requests waiting for a worker beyond those running (more: 503).
    pub queue: usize,
    /// Recent completions kept (prompt and answer) so consumers can leave feedback on them.
    pub completion_log: usize,
    /// Most rows in one `/v1/predict` request.
    pub max_predict_rows: usize,
    /// How long shutdown waits for pending usage to settle on the ledger.
    pub shutdown_timeout: Duration,
}

impl ServeConfig {
    /// A config with the defaults: settle every 5 s, 1,000 keys a batch, 600 requests a minute
    /// per key (bursts of 60), `max_tokens` at most 4,096 (256 when unset), 1 MiB bodies, one
    /// worker per core with 64 waiting, 10,000 completions kept for feedback, 1,024 predict
    /// rows, 15 s to settle at shutdown.
    pub fn new(models: Vec<ServedModel>, server_key: Keypair, data_dir: PathBuf) -> Self {
        Self {
            models,
            server_key,
            data_dir,
            settle_every: Duration::from_secs(5),
            max_batch_entries: 1_000,
            rate_limit: RateLimit::default(),
            max_tokens_cap: 4_096,
            default_max_tokens: 256,
            max_body_bytes: 1 << 20,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            queue: 64,
            completion_log: 10_000,
            max_predict_rows: 1_024,
            shutdown_timeout: Duration::from_secs(15),
        }
    }

    /// Checks the numbers make sense.
    pub fn validate(&self) -> Result<(), ServeError> {
        let bad = |m: &str| Err(ServeError::Config(m.to_owned()));
        if self.models.is_empty() {
            return bad("no models to serve");
        }
        if self.settle_every.is_zero() {
            return bad("settle_every must be positive");
        }
        if self.max_batch_entries == 0 {
            return bad("max_batch_entries must be at least 1");
        }
        if self.rate_limit.per_minute == 0 || self.rate_limit.burst == 0 {
            return bad("rate limit per_minute and burst must be at least 1");
        }
        if self.max_tokens_cap == 0 || self.default_max_tokens == 0 {
            return bad("max_tokens_cap and default_max_tokens must be at least 1");
        }
        if self.max_body_bytes < 1024 {
            return bad("max_body_bytes must be at least 1024");
        }
        if self.workers == 0 {
            return bad("workers must be at least 1");
        }
        if self.max_predict_rows == 0 {
            return bad("max_predict_rows must be at least 1");
        }
        Ok(())
    }

    /// Where the journal and the feedback live: `<data_dir>/serve`.
    pub fn serve_dir(&self) -> PathBuf {
        serve_dir(&self.data_dir)
    }
}

/// The serve directory under a node data directory.
pub fn serve_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("serve")
}
