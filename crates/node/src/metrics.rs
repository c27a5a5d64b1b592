//! Prometheus metrics (`/metrics`).

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::{sync::OnceLock, time::Duration};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests with several nodes); then our
            // handle simply renders nothing new.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub(crate) fn set_height(h: u64) {
    metrics::gauge!("flock_block_height").set(h as f64);
}

pub(crate) fn set_mempool(n: usize) {
    metrics::gauge!("flock_mempool_txs").set(n as f64);
}

pub(crate) fn tx_accepted() {
    metrics::counter!("flock_txs_accepted_total").increment(1);
}

pub(crate) fn tx_rejected(code: &'static str) {
    metrics::counter!("flock_txs_rejected_total", "code" => code).increment(1);
}

pub(crate) fn block_committed(height: u64, txs: usize, took: Duration) {
    set_height(height);
    metrics::counter!("flock_blocks_committed_total").increment(1);
    metrics::counter!("flock_txs_committed_total").increment(txs as u64);
    metrics::histogram!("flock_block_apply_seconds").record(took.as_secs_f64());
}
