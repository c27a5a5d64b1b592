//! Crash-safe block and state storage for the flock ledger.
//!
//! The store is content-agnostic: blocks, receipts and state values are opaque bytes (borsh
//! produced by the ledger). It keeps, per committed height, the block, its receipts, its hash and
//! the state root; an index from transaction hash to `(height, index)`; the latest value of every
//! state key (a flat table, for fast reads and for rebuilding the ledger on restart); and a
//! [Jellyfish Merkle tree](jmt) over the state, whose root commits to the whole state and can
//! prove any key's value or absence.
//!
//! ```text
//!   ledger ── BlockCommit { height, hash, block, receipts, tx_hashes, changes } ──▶ Store
//!
//!   commit_block (one atomic unit):
//!     check height == latest + 1 and keys sorted/unique   ── else typed error, nothing written
//!     jmt.put_value_set(changes, version = height)        ── reads nodes of earlier blocks only
//!     write new nodes, versioned values, stale records
//!     write flat state, block, receipts, heights row, tx index, latest record
//!     prune nodes/values stale for more than keep_versions versions
//!     return the new state root
//! ```
//!
//! # Backends
//! * [`RedbStore`]: one redb file. Each block is **one redb write transaction**, committed with
//!   fsync by default. redb is ACID with copy-on-write pages, so a crash or a torn write leaves
//!   either the whole block or none of it; reopening resumes at the last committed block. Any
//!   error inside a commit drops the transaction, which aborts it.
//! * [`MemStore`]: `BTreeMap`s, for tests. It runs the same tree code (the private `jmt_store`
//!   module drives both through one small backend trait), so both give identical roots for
//!   identical commit sequences; the crate's differential tests check exactly that.
//!
//! # State root
//! The tree is jmt 0.12 over sha2-256, keyed by `sha256(key)`, with tree version = block
//! height. The root depends only on the set of `(key, value)` pairs, not on the history that
//! produced it or the version it was committed at. An empty state has root
//! [`EMPTY_STATE_ROOT`]. Every height gets a root node, also for blocks without changes (jmt
//! copies the previous root forward), so the next block always finds its base.
//!
//! # Pruning
//! Only the latest [`StoreConfig::keep_versions`] tree versions stay readable (for
//! [`Store::prove_at`]); every node and versioned value that only older versions need is deleted
//! in the commit transaction that makes it unnecessary, so the tree tables stay proportional to
//! the live state instead of the chain's history. Blocks, receipts, per-height roots and the
//! transaction index are never pruned. The details, including two gaps in jmt's own stale
//! bookkeeping that this crate closes, are in `jmt_store.rs`.
//!
//! # Proofs
//! [`Store::prove`] returns a [`StateProof`] holding jmt's `SparseMerkleProof` in borsh;
//! [`verify_proof`] (or [`StateProof::verify`]) checks it against a trusted root.
//!
//! # Example
//! ```
//! use flock_primitives::{Hash, Height};
//! use flock_storage::{BlockCommit, MemStore, Store, StorageError};
//!
//! let mut store = MemStore::new(); // or RedbStore::open(path)?
//! let changes = vec![(b"alice".to_vec(), Some(b"100".to_vec()))];
//! let root = store.commit_block(BlockCommit {
//!     height: Height(0),
//!     block_hash: Hash::ZERO,
//!     block: b"genesis",
//!     receipts: &[],
//!     tx_hashes: &[],
//!     changes: &changes,
//! })?;
//! assert_eq!(store.get_state(b"alice")?, Some(b"100".to_vec()));
//!
//! // Anyone holding the root can check a proof of alice's balance, or of bob's absence.
//! store.prove(b"alice")?.verify(&root, b"alice")?;
//! let bob = store.prove(b"bob")?;
//! assert_eq!(bob.value, None);
//! bob.verify(&root, b"bob")?;
//! # Ok::<(), StorageError>(())
//! ```

mod error;
mod jmt_store;
mod memory;
mod redb_store;
mod store;
mod types;

pub use error::StorageError;
pub use jmt_store::{verify_proof, MAX_PROOF_BYTES};
pub use memory::MemStore;
pub use redb_store::RedbStore;
pub use store::Store;
pub use types::{
    BlockCommit, CommitInfo, StateChange, StateEntry, StateProof, StoreConfig, StoreStats,
    DEFAULT_KEEP_VERSIONS, EMPTY_STATE_ROOT,
};
