//! The chain: the ledger, its store, and `apply_finalized` — the one block path every mode
//! uses (execute → commit → notify).

use flock_ledger::{Block, BlockError, BlockReceipts, Genesis, Ledger, SeedProof};
use flock_primitives::{codec, Hash, Height, VrfPublicKey};
use flock_storage::{BlockCommit, CommitInfo, MemStore, StorageError, Store};
use thiserror::Error;

/// A store the node can share between threads.
pub type DynStore = Box<dyn Store + Send + Sync>;

/// Why a block could not be applied, or the chain could not open.
#[derive(Debug, Error)]
pub enum ChainError {
    /// The block is invalid for the ledger.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// The header's parent state root differs from ours: the proposer executed differently.
    #[error("block {height} claims parent state root {claimed}, but ours is {ours}")]
    ParentRootMismatch {
        /// The block height.
        height: u64,
        /// The header's value.
        claimed: Hash,
        /// Ours.
        ours: Hash,
    },
    /// The block seed is not backed by a valid proof.
    #[error("block {height} has an invalid seed: {reason}")]
    BadSeed {
        /// The block height.
        height: u64,
        /// Why.
        reason: String,
    },
    /// Storage failed; the node must stop (it resumes from the last committed block).
    #[error("storage failure: {0}")]
    Storage(#[from] StorageError),
    /// The store belongs to another genesis.
    #[error("the data directory holds chain {stored}, but the genesis given is {given}")]
    GenesisMismatch {
        /// Stored genesis hash.
        stored: Hash,
        /// Given genesis hash.
        given: Hash,
    },
    /// The stored state does not decode or does not match its root.
    #[error("stored state is corrupt: {0}")]
    Corrupt(String),
    /// An earlier storage failure left the in-memory ledger ahead of the store.
    #[error("the chain stopped after a storage failure; restart the node")]
    Halted,
    /// The genesis is invalid.
    #[error("invalid genesis: {0}")]
    Genesis(String),
}

/// What committing a block produced.
#[derive(Debug, Clone)]
pub struct Committed {
    /// Height, hash and new state root.
    pub info: CommitInfo,
    /// The block's receipts.
    pub receipts: BlockReceipts,
    /// The number of transactions.
    pub tx_count: usize,
}

/// The ledger plus its store.
pub struct Chain {
    ledger: Ledger,
    store: DynStore,
    genesis: Genesis,
    info: CommitInfo,
    halted: bool,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").field("info", &self.info).finish_non_exhaustive()
    }
}

impl Chain {
    /// Opens the chain in `store`: commits the genesis on an empty store, or reloads the state
    /// of the last committed block and checks it against its stored root.
    pub fn open(mut store: DynStore, genesis: Genesis) -> Result<Self, ChainError> {
        let genesis_hash = genesis.hash();
        let (ledger, info) = match store.latest()? {
            None => {
                let mut ledger = Ledger::from_genesis(&genesis)
                    .map_err(|e| ChainError::Genesis(e.to_string()))?;
                let changes: Vec<_> =
                    ledger.state().all_entries().into_iter().map(|(k, v)| (k, Some(v))).collect();
                let _ = ledger.take_changes();
                let bytes =
                    serde_json::to_vec(&genesis).map_err(|e| ChainError::Genesis(e.to_string()))?;
                let root = store.commit_block(BlockCommit {
                    height: Height::GENESIS,
                    block_hash: genesis_hash,
                    block: &bytes,
                    receipts: &[],
                    tx_hashes: &[],
                    changes: &changes,
                })?;
                (
                    ledger,
                    CommitInfo {
                        height: Height::GENESIS,
                        block_hash: genesis_hash,
                        state_root: root,
                    },
                )
            }
            Some(info) => {
                let stored = store.block_hash(Height::GENESIS)?.unwrap_or(Hash::ZERO);
                if stored != genesis_hash {
                    return Err(ChainError::GenesisMismatch { stored, given: genesis_hash });
                }
                let entries = store.state_entries()?;
                let ledger =
                    Ledger::from_entries(entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
                        .map_err(ChainError::Corrupt)?;
                if ledger.height() != info.height {
                    return Err(ChainError::Corrupt(format!(
                        "state is at height {} but the last block is {}",
                        ledger.height(),
                        info.height
                    )));
                }
                // Recompute the root from the loaded entries: a store that lost or garbled a
                // value would otherwise go unnoticed until the next block disagreed.
                let mut check = MemStore::new();
                let changes: Vec<_> = entries.into_iter().map(|(k, v)| (k, Some(v))).collect();
                let root = check.commit_block(BlockCommit {
                    height: Height::GENESIS,
                    block_hash: Hash::ZERO,
                    block: &[],
                    receipts: &[],
                    tx_hashes: &[],
                    changes: &changes,
                })?;
                if root != info.state_root {
                    return Err(ChainError::Corrupt(format!(
                        "state entries hash to {root}, stored root is {}",
                        info.state_root
                    )));
                }
                (ledger, info)
            }
        };
        Ok(Self { ledger, store, genesis, info, halted: false })
    }

    /// The ledger at the last committed block.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Mutable ledger access for product registration at startup (sinks), before any block.
    pub fn ledger_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The last committed block.
    pub fn info(&self) -> CommitInfo {
        self.info
    }

    /// Checks a block's seed against its proof.
    fn check_seed(&self, block: &Block) -> Result<(), ChainError> {
        let h = &block.header;
        let bad = |reason: String| ChainError::BadSeed { height: h.height.0, reason };
        match (&h.seed_proof, &self.genesis.sequencer) {
            (SeedProof::SoloVrf { key, proof }, Some(seq)) => {
                if *key != seq.vrf_key {
                    return Err(bad("VRF key is not the genesis sequencer's".into()));
                }
                if h.proposer != seq.address {
                    return Err(bad("proposer is not the genesis sequencer".into()));
                }
                let input = flock_ledger::solo_seed_input(
                    &h.chain_id,
                    h.height,
                    &self.ledger.globals().seed,
                );
                let out = verify_vrf(key, &input, proof).map_err(bad)?;
                if out != h.seed {
                    return Err(bad("seed is not the VRF output".into()));
                }
                Ok(())
            }
            (SeedProof::SoloVrf { .. }, None) => {
                Err(bad("this chain has no solo sequencer".into()))
            }
            (SeedProof::None, _) => Err(bad("missing seed proof".into())),
            // Threshold seeds are verified by the consensus engine before finalization.
            (SeedProof::Threshold { .. }, _) => Ok(()),
        }
    }

    /// Executes a finalized block, commits it atomically, and returns what it did. On an
    /// invalid block nothing changes; on a storage failure the chain halts.
    pub fn apply_finalized(&mut self, block: &Block) -> Result<Committed, ChainError> {
        if self.halted {
            return Err(ChainError::Halted);
        }
        let h = &block.header;
        if h.parent_state_root != self.info.state_root {
            return Err(ChainError::ParentRootMismatch {
                height: h.height.0,
                claimed: h.parent_state_root,
                ours: self.info.state_root,
            });
        }
        self.check_seed(block)?;
        let receipts = self.ledger.apply_block(block)?;
        let changes = self.ledger.take_changes();
        let tx_hashes: Vec<Hash> = receipts.txs.iter().map(|r| r.tx_hash).collect();
        let block_bytes = codec::encode(block);
        let receipt_bytes = codec::encode(&receipts);
        let block_hash = block.hash();
        let root = match self.store.commit_block(BlockCommit {
            height: h.height,
            block_hash,
            block: &block_bytes,
            receipts: &receipt_bytes,
            tx_hashes: &tx_hashes,
            changes: &changes,
        }) {
            Ok(root) => root,
            Err(e) => {
                self.halted = true;
                return Err(e.into());
            }
        };
        self.info = CommitInfo { height: h.height, block_hash, state_root: root };
        Ok(Committed { info: self.info, tx_count: block.txs.len(), receipts })
    }

    /// A stored block.
    pub fn block(&self, height: Height) -> Result<Option<Block>, ChainError> {
        if height == Height::GENESIS {
            return Ok(None);
        }
        match self.store.block(height)? {
            Some(b) => codec::decode_bounded("block", &b, usize::MAX)
                .map(Some)
                .map_err(|e| ChainError::Corrupt(e.to_string())),
            None => Ok(None),
        }
    }

    /// Stored receipts of a block.
    pub fn receipts(&self, height: Height) -> Result<Option<BlockReceipts>, ChainError> {
        if height == Height::GENESIS {
            return Ok(Some(BlockReceipts::default()));
        }
        match self.store.receipts(height)? {
            Some(b) => codec::decode_bounded("receipts", &b, usize::MAX)
                .map(Some)
                .map_err(|e| ChainError::Corrupt(e.to_string())),
            None => Ok(None),
        }
    }
}

fn verify_vrf(
    key: &VrfPublicKey,
    input: &[u8],
    proof: &flock_primitives::VrfProof,
) -> Result<Hash, String> {
    key.verify(input, proof).map_err(|e| e.to_string())
}
