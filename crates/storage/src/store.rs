//! The [`Store`] trait both backends implement.

use flock_primitives::{Hash, Height};

use crate::{BlockCommit, CommitInfo, StateEntry, StateProof, StorageError, StoreStats};

/// Block and state storage for the ledger.
///
/// Writes happen only through [`commit_block`](Self::commit_block), one block at a time, each
/// atomically. Reads see the last committed block. Implementations with the same sequence of
/// commits produce the same state roots.
pub trait Store {
    /// The last committed block, `None` on a fresh store.
    fn latest(&self) -> Result<Option<CommitInfo>, StorageError>;

    /// Applies `commit.changes` to the Merkle tree at version `commit.height` and writes the
    /// block, receipts, transaction index, flat state, tree nodes, per-height hashes and pruning
    /// bookkeeping in one atomic transaction. Returns the new state root.
    ///
    /// Rejects any height other than `latest.height + 1` (0 on an empty store) with
    /// [`StorageError::HeightMismatch`], and unsorted or duplicate keys with
    /// [`StorageError::InvalidCommit`]; in both cases nothing is written.
    fn commit_block(&mut self, commit: BlockCommit<'_>) -> Result<Hash, StorageError>;

    /// The block bytes committed at `height`.
    fn block(&self, height: Height) -> Result<Option<Vec<u8>>, StorageError>;

    /// The receipt bytes committed at `height`.
    fn receipts(&self, height: Height) -> Result<Option<Vec<u8>>, StorageError>;

    /// The block hash committed at `height`.
    fn block_hash(&self, height: Height) -> Result<Option<Hash>, StorageError>;

    /// The state root after the block at `height` (kept for every height, never pruned).
    fn state_root(&self, height: Height) -> Result<Option<Hash>, StorageError>;

    /// Where a transaction was included: `(height, index in the block)`.
    fn tx_location(&self, tx: &Hash) -> Result<Option<(Height, u32)>, StorageError>;

    /// The latest value of a state key.
    fn get_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// All latest state entries in key order (to rebuild the ledger's in-memory state on
    /// restart).
    fn state_entries(&self) -> Result<Vec<StateEntry>, StorageError>;

    /// A membership or non-membership proof for `key` at `height`, which must be one of the
    /// last [`keep_versions`](crate::StoreConfig::keep_versions) committed heights; older or
    /// future heights give [`StorageError::Unavailable`].
    fn prove_at(&self, key: &[u8], height: Height) -> Result<StateProof, StorageError>;

    /// A proof for `key` at the latest height ([`StorageError::Unavailable`] at height 0 on an
    /// empty store).
    fn prove(&self, key: &[u8]) -> Result<StateProof, StorageError> {
        match self.latest()? {
            Some(info) => self.prove_at(key, info.height),
            None => Err(StorageError::Unavailable { height: Height(0) }),
        }
    }

    /// The state roots that committing `pending`, the changes of successive blocks after the
    /// latest one, would give; nothing is written. (A BFT validator checks and proposes blocks
    /// on top of notarized blocks that are not finalized yet.)
    fn speculative_roots(
        &self,
        pending: &[&[crate::StateChange]],
    ) -> Result<Vec<Hash>, StorageError>;

    /// Entry counts of the store's tables.
    fn stats(&self) -> Result<StoreStats, StorageError>;
}
