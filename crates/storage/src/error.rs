//! The crate's error type.

use flock_primitives::Height;

/// Everything that can go wrong in a [`Store`](crate::Store).
///
/// The variants fall into three groups, by what the caller should do:
/// * **caller bugs, nothing was written**: [`HeightMismatch`](Self::HeightMismatch) and
///   [`InvalidCommit`](Self::InvalidCommit). The store is unchanged; fix the input.
/// * **not available**: [`Unavailable`](Self::Unavailable) (state at a height that was pruned or
///   never committed) and [`InvalidProof`](Self::InvalidProof) (a proof that does not verify).
/// * **fatal**: [`Db`](Self::Db), [`Corrupt`](Self::Corrupt), [`Jmt`](Self::Jmt) and
///   [`Config`](Self::Config). The node should stop; the on-disk store still holds the last
///   fully committed block, because a failed commit aborts its whole transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The database engine (redb) failed: I/O, a full disk, a lock held by another process.
    #[error("database error: {0}")]
    Db(String),
    /// Bytes in the store do not decode, or tables disagree with each other.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The Jellyfish Merkle tree reported an inconsistency (for example a missing node).
    #[error("merkle tree error: {0}")]
    Jmt(String),
    /// A block was committed out of order; nothing was written.
    #[error("cannot commit height {got}: the next height is {expected}")]
    HeightMismatch {
        /// The only height the store accepts next (0 on an empty store).
        expected: Height,
        /// The height the caller tried to commit.
        got: Height,
    },
    /// A [`BlockCommit`](crate::BlockCommit) broke its contract (for example state changes not
    /// sorted by key, or duplicate keys); nothing was written.
    #[error("invalid block commit: {0}")]
    InvalidCommit(String),
    /// The tree at this height was pruned, or the height was never committed.
    #[error("state at height {height} is not available (pruned or not committed)")]
    Unavailable {
        /// The height that was asked for.
        height: Height,
    },
    /// A state proof failed to decode or to verify against the given root.
    #[error("invalid state proof: {0}")]
    InvalidProof(String),
    /// A [`StoreConfig`](crate::StoreConfig) value is out of range.
    #[error("invalid storage config: {0}")]
    Config(String),
}

impl StorageError {
    /// True for errors caused by the caller's input, after which the store is unchanged and
    /// still usable ([`HeightMismatch`](Self::HeightMismatch),
    /// [`InvalidCommit`](Self::InvalidCommit)).
    pub fn is_caller_error(&self) -> bool {
        matches!(self, Self::HeightMismatch { .. } | Self::InvalidCommit(_))
    }
}

/// redb has one error type per operation; all of them mean "the engine failed", so they collapse
/// into [`StorageError::Db`] with the engine's message, keeping redb out of the public API.
macro_rules! from_redb {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for StorageError {
            fn from(e: $ty) -> Self {
                Self::Db(e.to_string())
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);
