//! The settler: folds journaled usage into `MarketSettle` batches, signs them with the server
//! key, submits them through the node, and marks them settled once the ledger has them.
//!
//! ```text
//! every settle_every:  form batches ─► journal "batch" (fsync) ─► submit
//! every new block:     ledger has batch id? ─► journal "settled" ─► release the records
//! submit refused with BatchAlreadySettled  ─► wait: the committed-state check marks it
//! submitted tx gone from the mempool, batch not settled ─► submit again (same batch id)
//! ```
//! The ledger settles a batch id once per listing, so resubmitting, after a crash or a
//! dropped transaction, never charges twice.

use crate::{
    journal::{JournalWriter, Line},
    meter::{Meter, OpenBatch},
};
use flock_ledger::{market::UsageBatch, Transaction, TxError, TxKind};
use flock_node::{Node, SubmitError};
use flock_primitives::Keypair;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::{watch, Mutex};

/// Bytes of one borsh-encoded usage entry, with margin (32 + 3 × 8 = 56).
const ENTRY_BYTES: usize = 64;

pub(crate) struct Settler {
    pub(crate) node: Node,
    pub(crate) key: Keypair,
    pub(crate) meter: Arc<Meter>,
    pub(crate) journal: JournalWriter,
    pub(crate) max_entries: usize,
    step_lock: Mutex<()>,
}

impl Settler {
    pub(crate) fn new(
        node: Node,
        key: Keypair,
        meter: Arc<Meter>,
        journal: JournalWriter,
        max_entries: usize,
    ) -> Self {
        Self { node, key, meter, journal, max_entries, step_lock: Mutex::new(()) }
    }

    fn entries_cap(&self) -> usize {
        let (ledger_max, tx_max) = self.node.with_chain(|c| {
            let p = c.ledger().params();
            (p.market_max_batch_entries as usize, p.max_tx_bytes as usize)
        });
        self.max_entries.min(ledger_max).min(tx_max.saturating_sub(1024) / ENTRY_BYTES).max(1)
    }

    /// One pass: record what the ledger settled, form new batches if `form`, submit.
    pub(crate) async fn step(&self, form: bool) {
        let _guard = self.step_lock.lock().await;
        let open = self.meter.open_batches();
        let settled: Vec<&OpenBatch> = self.node.with_chain(|c| {
            let st = c.ledger().state();
            open.iter().filter(|b| st.market_batch_settled(&b.listing, &b.id)).collect()
        });
        for b in settled {
            self.mark_settled(b).await;
        }
        if form {
            let server = self.key.address();
            for b in self.meter.form_batches(&server, self.entries_cap()) {
                let line =
                    Line::Batch { listing: b.listing.clone(), id: b.id, from: b.from, to: b.to };
                match self.journal.append(line).await {
                    Ok(_) => self.meter.mark_durable(&b.listing, &b.id),
                    Err(e) => tracing::error!(error = %e, "cannot journal a usage batch"),
                }
            }
        }
        let height = self.node.with_chain(|c| c.info().height.0);
        for b in self.meter.open_batches() {
            if !b.durable {
                continue;
            }
            if let Some((tx, at)) = b.submitted {
                // Waiting in the mempool, or possibly in the block being built right now.
                if self.node.with_mempool(|m| m.contains(&tx)) || height <= at + 1 {
                    continue;
                }
            }
            self.submit(&b, height).await;
        }
    }

    async fn mark_settled(&self, b: &OpenBatch) {
        let line = Line::Settled { listing: b.listing.clone(), id: b.id };
        match self.journal.append(line).await {
            Ok(_) => {
                self.meter.settled(&b.listing, &b.id);
                tracing::info!(listing = %b.listing, batch = %b.id.short(), from = b.from, to = b.to, keys = b.entries.len(), "usage batch settled");
            }
            Err(e) => tracing::error!(error = %e, "cannot journal a settled batch"),
        }
    }

    async fn submit(&self, b: &OpenBatch, height: u64) {
        let (chain_id, nonce) = {
            let chain_id = self.node.tip().chain_id;
            let nonce = self.node.with_mempool(|m| m.next_nonce(&self.key.address()));
            (chain_id, nonce)
        };
        let batch = UsageBatch { id: b.id, listing: b.listing.clone(), entries: b.entries.clone() };
        let tx = Transaction {
            chain_id,
            signer: self.key.public(),
            nonce,
            kind: TxKind::MarketSettle { batch },
        }
        .sign(&self.key);
        match self.node.submit(tx) {
            Ok(hash) => {
                tracing::debug!(listing = %b.listing, batch = %b.id.short(), tx = %hash.short(), "usage batch submitted");
                self.meter.mark_submitted(&b.listing, &b.id, hash, height);
            }
            Err(SubmitError::Tx(TxError::BatchAlreadySettled { .. })) => {
                // Settled in the committed state (a retry after a crash), or by a transaction
                // still waiting in the mempool: either way the committed-state check marks it
                // once it is in a block, and if a waiting one is dropped it is sent again.
                tracing::debug!(listing = %b.listing, batch = %b.id.short(), "usage batch already settled or pending");
                self.meter.mark_submitted(&b.listing, &b.id, flock_primitives::Hash::ZERO, height);
            }
            Err(SubmitError::Duplicate(hash)) => {
                self.meter.mark_submitted(&b.listing, &b.id, hash, height)
            }
            Err(e) => {
                tracing::warn!(listing = %b.listing, batch = %b.id.short(), error = %e, "usage batch not accepted; retrying later")
            }
        }
    }

    /// Settles everything journaled so far, waiting up to `timeout`; whether all settled.
    pub(crate) async fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut heights = self.node.subscribe();
        loop {
            self.step(true).await;
            if self.meter.unsettled_records() == 0 {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let wait = left.min(Duration::from_millis(200));
            let _ = tokio::time::timeout(wait, heights.changed()).await;
        }
    }

    /// Runs until `stop` turns true: a full step every `every`, a settled-check every block.
    pub(crate) async fn run(self: Arc<Self>, every: Duration, mut stop: watch::Receiver<bool>) {
        let mut heights = self.node.subscribe();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.step(true).await,
                r = heights.changed() => {
                    if r.is_err() {
                        break;
                    }
                    self.step(false).await;
                }
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
        }
    }
}
