//! The running node: chain, mempool and notifications shared between the block source and the
//! HTTP API.
//!
//! ```text
//!   HTTP submit ─► Mempool (pending ledger) ─┐
//!                                            ▼ take
//!   BlockSource (solo sequencer | BFT engine) ─► Node::apply_finalized ─► Chain (execute, commit)
//!                                                       │ notify: mempool reset, height watch, metrics
//! ```

use crate::{
    artifacts::ArtifactStore,
    chain::{Chain, ChainError, Committed},
    mempool::{Mempool, MempoolLimits, SubmitError},
    metrics as m,
};
use flock_ledger::{Block, SignedTx};
use flock_primitives::{Hash, Height};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;

/// Shared handle to a running node (cheap to clone).
#[derive(Clone, Debug)]
pub struct Node {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    chain: RwLock<Chain>,
    mempool: Mutex<Mempool>,
    height: watch::Sender<u64>,
    artifacts: Option<Arc<ArtifactStore>>,
    evidence: RwLock<Option<EvidenceCheck>>,
    /// Where transactions admitted through [`Node::submit`] are announced (the BFT engine
    /// gossips them to its peers).
    gossip: RwLock<Option<tokio::sync::mpsc::UnboundedSender<SignedTx>>>,
}

/// Checks the proof of consensus evidence (the consensus engine's signatures, which the ledger
/// cannot check). Installed by the BFT engine; a node without one refuses evidence.
#[derive(Clone)]
pub struct EvidenceCheck(pub Arc<EvidenceFn>);

/// The function of an [`EvidenceCheck`]: `Err` says why the proof does not hold.
pub type EvidenceFn =
    dyn Fn(&flock_ledger::consensus::ConsensusFault) -> Result<(), String> + Send + Sync;

impl std::fmt::Debug for EvidenceCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EvidenceCheck")
    }
}

impl Node {
    /// A node over an opened chain.
    pub fn new(chain: Chain, limits: MempoolLimits) -> Self {
        Self::build(chain, limits, None)
    }

    /// A node that also serves an artifact store.
    pub fn with_artifacts(chain: Chain, limits: MempoolLimits, artifacts: ArtifactStore) -> Self {
        Self::build(chain, limits, Some(Arc::new(artifacts)))
    }

    fn build(chain: Chain, limits: MempoolLimits, artifacts: Option<Arc<ArtifactStore>>) -> Self {
        let mempool = Mempool::new(chain.ledger(), limits);
        let (height, _) = watch::channel(chain.info().height.0);
        m::set_height(chain.info().height.0);
        Self {
            inner: Arc::new(Inner {
                chain: RwLock::new(chain),
                mempool: Mutex::new(mempool),
                height,
                artifacts,
                evidence: RwLock::new(None),
                gossip: RwLock::new(None),
            }),
        }
    }

    /// The artifact store, if this node serves one.
    pub fn artifacts(&self) -> Option<Arc<ArtifactStore>> {
        self.inner.artifacts.clone()
    }

    /// Runs `f` with read access to the chain.
    pub fn with_chain<R>(&self, f: impl FnOnce(&Chain) -> R) -> R {
        let guard = self.inner.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&guard)
    }

    /// Runs `f` with the mempool locked.
    pub fn with_mempool<R>(&self, f: impl FnOnce(&mut Mempool) -> R) -> R {
        let mut guard =
            self.inner.mempool.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Announces every transaction later admitted through [`Node::submit`] on `to` (the BFT
    /// engine gossips them, so a transaction sent to any node reaches the next leader).
    pub fn set_gossip(&self, to: tokio::sync::mpsc::UnboundedSender<SignedTx>) {
        *self.inner.gossip.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(to);
    }

    /// Installs the check of consensus evidence proofs (the BFT engine does).
    pub fn set_evidence_check(&self, check: EvidenceCheck) {
        *self.inner.evidence.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(check);
    }

    /// Checks the proof of consensus evidence against the installed engine check.
    pub fn check_evidence(
        &self,
        fault: &flock_ledger::consensus::ConsensusFault,
    ) -> Result<(), flock_ledger::TxError> {
        let check =
            self.inner.evidence.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match check {
            Some(EvidenceCheck(f)) => f(fault).map_err(flock_ledger::TxError::BadEvidence),
            None => Err(flock_ledger::TxError::BadEvidence(
                "this node runs no consensus engine to check the proof; send evidence to a BFT \
                 validator"
                    .into(),
            )),
        }
    }

    /// Admits a transaction to the mempool (and announces it for gossip, see
    /// [`Node::set_gossip`]).
    pub fn submit(&self, tx: SignedTx) -> Result<Hash, SubmitError> {
        let gossip =
            self.inner.gossip.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match gossip {
            None => self.admit(tx),
            Some(to) => {
                let r = self.admit(tx.clone());
                if r.is_ok() {
                    let _ = to.send(tx);
                }
                r
            }
        }
    }

    /// Admits a transaction a peer gossiped (not announced again).
    pub fn submit_from_peer(&self, tx: SignedTx) -> Result<Hash, SubmitError> {
        self.admit(tx)
    }

    fn admit(&self, tx: SignedTx) -> Result<Hash, SubmitError> {
        if let flock_ledger::TxKind::ConsensusEvidence { fault } = &tx.tx.kind {
            if let Err(e) = self.check_evidence(fault) {
                m::tx_rejected(e.code());
                return Err(SubmitError::Tx(e));
            }
        }
        if matches!(tx.tx.kind, flock_ledger::TxKind::DkgLog { .. })
            && self
                .inner
                .evidence
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_none()
        {
            let e = flock_ledger::TxError::Malformed(
                "this node runs no consensus engine to check a dealer log; send it to a BFT validator"
                    .into(),
            );
            m::tx_rejected(e.code());
            return Err(SubmitError::Tx(e));
        }
        let r = self.with_mempool(|mp| {
            let r = mp.submit(tx);
            m::set_mempool(mp.len());
            r
        });
        match &r {
            Ok(_) => m::tx_accepted(),
            Err(e) => m::tx_rejected(e.code()),
        }
        r
    }

    /// Subscribes to the committed height.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.height.subscribe()
    }

    /// Waits until the committed height reaches `height` or `timeout` passes; returns the height.
    pub async fn wait_for_height(&self, height: u64, timeout: std::time::Duration) -> u64 {
        let mut rx = self.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|h| *h >= height)).await;
        let h = *rx.borrow();
        h
    }

    /// The one path every block takes: execute, commit, notify.
    pub fn apply_finalized(&self, block: &Block) -> Result<Committed, ChainError> {
        let started = std::time::Instant::now();
        // The mempool re-bases on the new state before the chain lock is released: nobody
        // sees the new height while admission still checks transactions against the state
        // before it (a client that reads "reveal phase now" and sends its reveal must not have
        // it checked as if in the block before, still in the train phase). Lock order: chain,
        // then mempool, as everywhere.
        let (committed, dropped) = {
            let mut chain =
                self.inner.chain.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            let committed = chain.apply_finalized(block)?;
            let dropped = self.with_mempool(|mp| {
                let d = mp.reset(chain.ledger());
                m::set_mempool(mp.len());
                d
            });
            (committed, dropped)
        };
        // Notify: waiters see the height.
        if dropped > 0 {
            tracing::debug!(dropped, "mempool dropped transactions that no longer apply");
        }
        m::block_committed(committed.info.height.0, committed.tx_count, started.elapsed());
        self.inner.height.send_replace(committed.info.height.0);
        Ok(committed)
    }

    /// Builds the header fields that depend on the chain tip (for block sources).
    pub fn tip(&self) -> Tip {
        self.with_chain(|c| {
            let g = c.ledger().globals();
            Tip {
                chain_id: g.chain_id,
                height: c.info().height,
                block_hash: c.info().block_hash,
                state_root: c.info().state_root,
                time_ms: g.time_ms,
                seed: g.seed,
                max_block_txs: c.ledger().params().max_block_txs as usize,
            }
        })
    }
}

/// What a block source needs to know about the chain tip.
#[derive(Debug, Clone)]
pub struct Tip {
    /// Chain id.
    pub chain_id: String,
    /// Last committed height.
    pub height: Height,
    /// Last committed block hash.
    pub block_hash: Hash,
    /// State root after it.
    pub state_root: Hash,
    /// Its time.
    pub time_ms: u64,
    /// Its seed.
    pub seed: Hash,
    /// Block size limit.
    pub max_block_txs: usize,
}

/// Something that hands finalized blocks to the node: the solo sequencer now, a BFT engine
/// later. Blocks go through [`Node::apply_finalized`] whatever the source.
pub trait BlockSource: Send {
    /// Waits for and returns the next finalized block, or `None` to stop.
    fn next_block(&mut self, node: &Node) -> Option<Block>;
}

/// Drives `source` until it stops or a block fails to apply. Blocking: run it on its own thread.
pub fn drive(node: &Node, source: &mut dyn BlockSource) -> Result<(), ChainError> {
    while let Some(block) = source.next_block(node) {
        match node.apply_finalized(&block) {
            Ok(_) => {}
            Err(e @ (ChainError::Storage(_) | ChainError::Halted | ChainError::Corrupt(_))) => {
                tracing::error!(error = %e, "stopping: storage failure");
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(error = %e, height = block.header.height.0, "block refused");
                return Err(e);
            }
        }
    }
    Ok(())
}
