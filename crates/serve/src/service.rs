//! The service: models, journal, meter, settler and the HTTP routes, built once per node.

use crate::{
    auth::RateLimiter,
    config::ServeConfig,
    error::ServeError,
    feedback::{CompletionLog, FEEDBACK_FILE},
    journal::{self, JournalWriter},
    meter::Meter,
    models::{load_all, Served},
    settle::Settler,
};
use axum::{
    routing::{get, post},
    Router,
};
use flock_node::{ApiExtension, Node};
use flock_primitives::Address;
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{atomic::AtomicBool, Arc, Mutex, OnceLock},
    time::Duration,
};
use tokio::sync::{watch, Semaphore};

/// State shared by the handlers.
pub(crate) struct Shared {
    pub(crate) node: Node,
    pub(crate) cfg: ServeConfig,
    pub(crate) models: BTreeMap<String, Arc<Served>>,
    pub(crate) meter: Arc<Meter>,
    pub(crate) journal: JournalWriter,
    pub(crate) limiter: RateLimiter,
    /// Requests running or waiting for a worker.
    pub(crate) admission: Arc<Semaphore>,
    /// Requests running.
    pub(crate) workers: Arc<Semaphore>,
    pub(crate) completions: Mutex<CompletionLog>,
    pub(crate) feedback_path: PathBuf,
    pub(crate) feedback_lock: Mutex<()>,
    pub(crate) closing: AtomicBool,
    pub(crate) started_unix: u64,
}

/// A running serve layer: the routes to merge into the node's API, and the settler.
///
/// Dropping it leaves the settler running as long as the runtime does; call
/// [`Serve::shutdown`] to settle what is pending and stop it.
pub struct Serve {
    shared: Arc<Shared>,
    settler: Arc<Settler>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("server", &self.shared.cfg.server_key.address())
            .field("models", &self.shared.models.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Serve {
    /// Loads the models (checking each listing on the ledger: present, active, served by
    /// `cfg.server_key`, of the directory's kind), opens the journal in `<data_dir>/serve/`
    /// and, unless `auto_settle` is off, starts the settler. Call inside a tokio runtime.
    pub fn start(node: Node, cfg: ServeConfig) -> Result<Self, ServeError> {
        Self::start_with(node, cfg, true)
    }

    /// [`Serve::start`] without the background settler: settlement happens only when
    /// [`Serve::settle_step`] or [`Serve::settle_now`] is called (tests and tools).
    pub fn start_manual(node: Node, cfg: ServeConfig) -> Result<Self, ServeError> {
        Self::start_with(node, cfg, false)
    }

    fn start_with(node: Node, cfg: ServeConfig, auto_settle: bool) -> Result<Self, ServeError> {
        cfg.validate()?;
        let models = load_all(&node, &cfg)?;
        let dir = cfg.serve_dir();
        std::fs::create_dir_all(&dir).map_err(|e| ServeError::io(&dir, e))?;
        let journal_path = dir.join("usage.jsonl");
        let (file, replay) = journal::open(&journal_path)?;
        let server = cfg.server_key.address();
        let meter = Arc::new(Meter::restore(&replay, &server));
        if meter.unsettled_records() > 0 {
            tracing::info!(
                records = meter.unsettled_records(),
                "unsettled usage in the journal; settling it"
            );
        }
        let m2 = meter.clone();
        let journal = JournalWriter::spawn(
            file,
            journal_path,
            replay.next_seq,
            Box::new(move |lines| m2.on_durable(lines)),
        )?;
        let settler = Arc::new(Settler::new(
            node.clone(),
            cfg.server_key.clone(),
            meter.clone(),
            journal.clone(),
            cfg.max_batch_entries,
        ));
        let (stop, stop_rx) = watch::channel(false);
        if auto_settle {
            tokio::spawn(settler.clone().run(cfg.settle_every, stop_rx));
        }
        let started_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let shared = Arc::new(Shared {
            limiter: RateLimiter::new(cfg.rate_limit.per_minute, cfg.rate_limit.burst),
            admission: Arc::new(Semaphore::new(cfg.workers + cfg.queue)),
            workers: Arc::new(Semaphore::new(cfg.workers)),
            completions: Mutex::new(CompletionLog::new(cfg.completion_log)),
            feedback_path: dir.join(FEEDBACK_FILE),
            feedback_lock: Mutex::new(()),
            closing: AtomicBool::new(false),
            node,
            models,
            meter,
            journal,
            cfg,
            started_unix,
        });
        Ok(Self { shared, settler, stop })
    }

    /// The routes: `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/chat/completions`,
    /// `POST /v1/completions`, `POST /v1/predict`, `POST /v1/feedback`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/models", get(crate::handlers::list_models))
            .route("/v1/models/{id}", get(crate::handlers::get_model))
            .route("/v1/chat/completions", post(crate::generate::chat))
            .route("/v1/completions", post(crate::generate::completions))
            .route("/v1/predict", post(crate::handlers::predict))
            .route("/v1/feedback", post(crate::handlers::feedback))
            .with_state(self.shared.clone())
    }

    /// The server account (the listings' `server`).
    pub fn server_address(&self) -> Address {
        self.shared.cfg.server_key.address()
    }

    /// Usage records served but not yet settled on the ledger.
    pub fn unsettled_records(&self) -> usize {
        self.shared.meter.unsettled_records()
    }

    /// What `owner` owes this server for usage not yet settled, plus what its requests in
    /// flight may cost (the part of its escrow the credit check holds back).
    pub fn held(&self, owner: &Address) -> flock_primitives::Amount {
        let h = self.shared.meter.held(owner);
        flock_primitives::Amount(h.owed.0.saturating_add(h.reserved.0))
    }

    /// One settlement pass: record what the ledger settled, fold new usage into batches
    /// (journaled before they are sent), submit what is not settled yet.
    pub async fn settle_step(&self) {
        self.settler.step(true).await;
    }

    /// Settles everything served so far, waiting up to `timeout` for the blocks; whether
    /// nothing is left unsettled.
    pub async fn settle_now(&self, timeout: Duration) -> bool {
        self.settler.flush(timeout).await
    }

    /// Refuses new requests, settles what is pending (up to `shutdown_timeout`) and stops
    /// the settler; whether everything settled (what did not stays in the journal and is
    /// settled on the next start).
    pub async fn shutdown(&self) -> bool {
        self.shared.closing.store(true, std::sync::atomic::Ordering::Relaxed);
        let done = self.settler.flush(self.shared.cfg.shutdown_timeout).await;
        if !done {
            tracing::warn!(
                records = self.unsettled_records(),
                "shutdown: usage left unsettled; it is settled on the next start"
            );
        }
        let _ = self.stop.send(true);
        done
    }
}

/// Starts serving on `node` and returns the routes (the settler runs in the background).
/// Prefer [`extension`] for a node started with `flock_node::start_with`, which also
/// settles pending usage at shutdown.
pub fn routes(node: Node, cfg: ServeConfig) -> Result<Router, ServeError> {
    Ok(Serve::start(node, cfg)?.router())
}

/// The node hook: serves `cfg` on the node's API and settles pending usage when the node
/// shuts down (before block production stops).
pub fn extension(cfg: ServeConfig) -> ApiExtension {
    let cell: Arc<OnceLock<Arc<Serve>>> = Arc::new(OnceLock::new());
    let c2 = cell.clone();
    ApiExtension::new(move |node| {
        let serve = Arc::new(Serve::start(node, cfg.clone())?);
        let router = serve.router();
        let _ = c2.set(serve);
        Ok(router)
    })
    .on_shutdown(move || {
        let serve = cell.get().cloned();
        Box::pin(async move {
            if let Some(s) = serve {
                s.shutdown().await;
            }
        })
    })
}
