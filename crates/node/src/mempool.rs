//! The mempool: transactions admitted against a pending copy of the ledger, in arrival order.
//!
//! Admission runs the transaction on a *pending* ledger (the last committed state plus every
//! admitted transaction), so a client learns at once, with a typed error, that its transfer
//! overdraws or its nonce is wrong — and the next block executes exactly what was admitted, in
//! the same order. After each commit the pending ledger is rebuilt from the committed one and
//! the leftover transactions are re-admitted (any that no longer apply are dropped).

use flock_ledger::{Ledger, SignedTx, TxError};
use flock_primitives::{Address, Hash};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use thiserror::Error;

/// Size limits of the mempool.
#[derive(Debug, Clone, Copy)]
pub struct MempoolLimits {
    /// Most transactions waiting.
    pub max_txs: usize,
    /// Most transactions waiting from one sender.
    pub max_per_sender: usize,
    /// Most encoded bytes waiting.
    pub max_bytes: usize,
}

impl Default for MempoolLimits {
    fn default() -> Self {
        Self { max_txs: 50_000, max_per_sender: 1_000, max_bytes: 64 << 20 }
    }
}

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubmitError {
    /// The ledger refused it.
    #[error(transparent)]
    Tx(#[from] TxError),
    /// Already waiting.
    #[error("transaction {0} is already in the mempool")]
    Duplicate(Hash),
    /// The mempool is full.
    #[error("mempool is full ({0} transactions); retry later")]
    Full(usize),
    /// The sender has too many waiting.
    #[error("{0} has too many pending transactions; wait for a block")]
    SenderLimit(Address),
}

impl SubmitError {
    /// A stable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Tx(e) => e.code(),
            Self::Duplicate(_) => "duplicate",
            Self::Full(_) => "mempool_full",
            Self::SenderLimit(_) => "sender_limit",
        }
    }
}

/// The mempool.
#[derive(Debug)]
pub struct Mempool {
    pending: Ledger,
    queue: VecDeque<(Hash, SignedTx, usize)>,
    hashes: BTreeSet<Hash>,
    per_sender: BTreeMap<Address, usize>,
    bytes: usize,
    limits: MempoolLimits,
}

impl Mempool {
    /// An empty mempool over the committed `ledger`.
    pub fn new(ledger: &Ledger, limits: MempoolLimits) -> Self {
        Self {
            pending: ledger.clone(),
            queue: VecDeque::new(),
            hashes: BTreeSet::new(),
            per_sender: BTreeMap::new(),
            bytes: 0,
            limits,
        }
    }

    /// Transactions waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether `hash` is waiting.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.hashes.contains(hash)
    }

    /// The next nonce `a` should use, counting its waiting transactions.
    pub fn next_nonce(&self, a: &Address) -> u64 {
        self.pending.state().account(a).nonce
    }

    /// Admits a transaction.
    pub fn submit(&mut self, tx: SignedTx) -> Result<Hash, SubmitError> {
        let hash = tx.hash();
        if self.hashes.contains(&hash) {
            return Err(SubmitError::Duplicate(hash));
        }
        let size = tx.encode().len();
        if self.queue.len() >= self.limits.max_txs || self.bytes + size > self.limits.max_bytes {
            return Err(SubmitError::Full(self.queue.len()));
        }
        let sender = tx.tx.sender();
        if self.per_sender.get(&sender).copied().unwrap_or(0) >= self.limits.max_per_sender {
            return Err(SubmitError::SenderLimit(sender));
        }
        self.pending.apply_pending_tx(&tx)?;
        // Pending state only feeds admission; its write set is never stored.
        let _ = self.pending.take_changes();
        self.insert(hash, tx, size, sender);
        Ok(hash)
    }

    fn insert(&mut self, hash: Hash, tx: SignedTx, size: usize, sender: Address) {
        self.hashes.insert(hash);
        *self.per_sender.entry(sender).or_default() += 1;
        self.bytes += size;
        self.queue.push_back((hash, tx, size));
    }

    /// Every held transaction, oldest first (copies).
    pub fn pending(&self) -> Vec<SignedTx> {
        self.queue.iter().map(|(_, tx, _)| tx.clone()).collect()
    }

    /// Takes up to `max` transactions, oldest first, for the next block.
    pub fn take(&mut self, max: usize) -> Vec<SignedTx> {
        // A prefix of the queue (nonce order stays intact) with at most
        // MAX_EVIDENCE_PER_BLOCK consensus evidence transactions.
        let mut evidence = 0;
        let n = self
            .queue
            .iter()
            .take(max)
            .position(|(_, tx, _)| {
                if matches!(tx.tx.kind, flock_ledger::TxKind::ConsensusEvidence { .. }) {
                    evidence += 1;
                }
                evidence > flock_ledger::consensus::MAX_EVIDENCE_PER_BLOCK
            })
            .unwrap_or(max.min(self.queue.len()));
        let mut out = Vec::with_capacity(n);
        for (hash, tx, size) in self.queue.drain(..n) {
            self.hashes.remove(&hash);
            let sender = tx.tx.sender();
            if let Some(c) = self.per_sender.get_mut(&sender) {
                *c -= 1;
                if *c == 0 {
                    self.per_sender.remove(&sender);
                }
            }
            self.bytes -= size;
            out.push(tx);
        }
        out
    }

    /// Puts taken transactions back at the front of the queue, in order (a proposed block that
    /// did not commit). The pending state is not updated: call [`Mempool::reset`] next, which
    /// re-admits everything in order and drops what no longer applies.
    pub fn restore(&mut self, txs: Vec<SignedTx>) {
        for tx in txs.into_iter().rev() {
            let hash = tx.hash();
            if self.hashes.contains(&hash) {
                continue;
            }
            let size = tx.encode().len();
            let sender = tx.tx.sender();
            self.hashes.insert(hash);
            *self.per_sender.entry(sender).or_default() += 1;
            self.bytes += size;
            self.queue.push_front((hash, tx, size));
        }
    }

    /// Rebuilds the pending state after a commit; returns how many waiting transactions no
    /// longer apply and were dropped.
    pub fn reset(&mut self, committed: &Ledger) -> usize {
        self.pending = committed.clone();
        let _ = self.pending.take_changes();
        let waiting: Vec<_> = self.queue.drain(..).collect();
        self.hashes.clear();
        self.per_sender.clear();
        self.bytes = 0;
        let mut dropped = 0;
        for (hash, tx, size) in waiting {
            if self.pending.apply_pending_tx(&tx).is_ok() {
                let sender = tx.tx.sender();
                self.insert(hash, tx, size, sender);
            } else {
                dropped += 1;
            }
        }
        let _ = self.pending.take_changes();
        dropped
    }
}
