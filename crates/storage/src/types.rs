//! Plain data passed in and out of a [`Store`](crate::Store).

use flock_primitives::{Hash, Height};

use crate::StorageError;

/// One state change: key bytes to `Some(new value)`, or `None` for a deletion.
pub type StateChange = (Vec<u8>, Option<Vec<u8>>);

/// One latest state entry: `(key, value)`.
pub type StateEntry = (Vec<u8>, Vec<u8>);

/// Everything one block commit writes, in one atomic transaction.
///
/// The store never looks inside `block` or `receipts`: they are opaque bytes produced by the
/// ledger. Genesis is committed as height 0 (with the genesis bytes, or empty bytes).
#[derive(Debug, Clone, Copy)]
pub struct BlockCommit<'a> {
    /// Height of this block; must be `latest.height + 1`, or 0 on an empty store.
    pub height: Height,
    /// Hash of this block, as the ledger computes it.
    pub block_hash: Hash,
    /// The encoded block.
    pub block: &'a [u8],
    /// The encoded receipts of the block's transactions.
    pub receipts: &'a [u8],
    /// Hashes of the block's transactions; `tx_hashes[i]` is indexed as `(height, i)`.
    pub tx_hashes: &'a [Hash],
    /// State changes, sorted strictly ascending by key (so keys are unique).
    pub changes: &'a [StateChange],
}

/// What the store knows about a committed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommitInfo {
    /// The block's height.
    pub height: Height,
    /// The block's hash, as given in [`BlockCommit::block_hash`].
    pub block_hash: Hash,
    /// The Jellyfish Merkle root of the whole state after the block.
    pub state_root: Hash,
}

/// The state root of an empty state: jmt's placeholder hash for an empty tree, the ASCII bytes
/// `SPARSE_MERKLE_PLACEHOLDER_HASH__`. A genesis without state changes has this root.
pub const EMPTY_STATE_ROOT: Hash = Hash(*b"SPARSE_MERKLE_PLACEHOLDER_HASH__");

/// Default number of tree versions kept readable (for proofs) by [`StoreConfig::default`].
pub const DEFAULT_KEEP_VERSIONS: u64 = 100;

/// Tuning for a store, built as `StoreConfig::default().with_…(…)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// How many of the latest tree versions stay readable: after committing height `h`, proofs
    /// can be served for heights `h - keep_versions + 1 ..= h`, and tree nodes and values needed
    /// only by older versions are deleted in the same transaction. At least 1.
    pub keep_versions: u64,
    /// Whether each commit waits for fsync (redb `Durability::Immediate`). Turning this off
    /// keeps commits atomic but not durable: after a crash the store reopens at an older block.
    /// Only for benchmarks and tests. [`MemStore`](crate::MemStore) ignores it.
    pub fsync: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { keep_versions: DEFAULT_KEEP_VERSIONS, fsync: true }
    }
}

impl StoreConfig {
    /// Sets [`keep_versions`](Self::keep_versions).
    pub fn with_keep_versions(mut self, keep_versions: u64) -> Self {
        self.keep_versions = keep_versions;
        self
    }

    /// Sets [`fsync`](Self::fsync).
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// Checks the values are in range.
    pub fn validate(&self) -> Result<(), StorageError> {
        if self.keep_versions == 0 {
            return Err(StorageError::Config(
                "keep_versions must be at least 1 (the latest tree is needed to commit the next \
                 block)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// A Merkle proof that a key has a value (or is absent) in the state at one height.
///
/// `proof` is jmt's `SparseMerkleProof<Sha256>` in borsh. `root` is the root the store had at
/// `height`; a verifier must compare against a root it trusts (for example from a block header),
/// using [`StateProof::verify`] or [`verify_proof`](crate::verify_proof).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateProof {
    /// The height whose state this proof is about.
    pub height: Height,
    /// The state root at `height`.
    pub root: Hash,
    /// The key's value at `height`, `None` if absent.
    pub value: Option<Vec<u8>>,
    /// The borsh-encoded `jmt::proof::SparseMerkleProof<sha2::Sha256>`.
    pub proof: Vec<u8>,
}

impl StateProof {
    /// Verifies that `key` has [`value`](Self::value) under `trusted_root`.
    pub fn verify(&self, trusted_root: &Hash, key: &[u8]) -> Result<(), StorageError> {
        crate::verify_proof(trusted_root, key, self.value.as_deref(), &self.proof)
    }
}

/// Entry counts of a store's tables, for metrics and for tests that check pruning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Latest state entries (the flat key-value table).
    pub state_entries: u64,
    /// Jellyfish Merkle tree nodes still stored.
    pub jmt_nodes: u64,
    /// Versioned values still stored for the tree (`key hash ‖ version`).
    pub jmt_values: u64,
    /// Tree nodes that are stale but still inside the kept window.
    pub stale_nodes: u64,
    /// Tree values that are stale but still inside the kept window.
    pub stale_values: u64,
}
