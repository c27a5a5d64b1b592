//! Helpers shared by the tests.

use std::collections::BTreeMap;

use flock_primitives::{Hash, Height};
use flock_storage::{BlockCommit, StateChange, StorageError, Store};

/// The deterministic block hash the tests use for `height`.
pub(crate) fn block_hash(height: u64) -> Hash {
    let mut h = [0xB1; 32];
    h[..8].copy_from_slice(&height.to_be_bytes());
    Hash(h)
}

/// The deterministic tx hash the tests use for transaction `i` of block `height`.
pub(crate) fn tx_hash(height: u64, i: u32) -> Hash {
    let mut h = [0x7A; 32];
    h[..8].copy_from_slice(&height.to_be_bytes());
    h[8..12].copy_from_slice(&i.to_be_bytes());
    Hash(h)
}

/// Commits `changes` (sorted and deduplicated here) at `height` with test block bytes and two
/// transactions; returns the root.
pub(crate) fn try_commit(
    store: &mut (impl Store + ?Sized),
    height: u64,
    changes: &[StateChange],
) -> Result<Hash, StorageError> {
    let changes: BTreeMap<_, _> = changes.iter().cloned().collect();
    let changes: Vec<StateChange> = changes.into_iter().collect();
    let block = format!("block {height}").into_bytes();
    let receipts = format!("receipts {height}").into_bytes();
    let txs = [tx_hash(height, 0), tx_hash(height, 1)];
    store.commit_block(BlockCommit {
        height: Height(height),
        block_hash: block_hash(height),
        block: &block,
        receipts: &receipts,
        tx_hashes: &txs,
        changes: &changes,
    })
}

/// [`try_commit`] that panics on error.
pub(crate) fn commit(
    store: &mut (impl Store + ?Sized),
    height: u64,
    changes: &[StateChange],
) -> Hash {
    try_commit(store, height, changes).unwrap_or_else(|e| panic!("commit {height}: {e}"))
}

/// `key -> Some(value)`.
pub(crate) fn put(key: &str, value: &str) -> StateChange {
    (key.as_bytes().to_vec(), Some(value.as_bytes().to_vec()))
}

/// `key -> None`.
pub(crate) fn del(key: &str) -> StateChange {
    (key.as_bytes().to_vec(), None)
}

/// Applies changes to a model map.
pub(crate) fn apply(model: &mut BTreeMap<Vec<u8>, Vec<u8>>, changes: &[StateChange]) {
    for (k, v) in changes {
        match v {
            Some(v) => model.insert(k.clone(), v.clone()),
            None => model.remove(k),
        };
    }
}

/// A fresh temporary directory.
pub(crate) fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// One store of each backend (the redb one in its own temporary directory, fsync off to keep
/// tests fast; the reopen and crash tests use fsync), with a name for assertion messages.
pub(crate) struct Backends {
    /// `(name, store)` pairs.
    pub(crate) stores: Vec<(&'static str, Box<dyn Store>)>,
    _dir: tempfile::TempDir,
}

/// A [`Backends`] with `config`.
pub(crate) fn backends(config: flock_storage::StoreConfig) -> Backends {
    let dir = tempdir();
    let redb =
        flock_storage::RedbStore::open_with(dir.path().join("db.redb"), config.with_fsync(false))
            .expect("open redb");
    let mem = flock_storage::MemStore::with_config(config).expect("mem");
    Backends { stores: vec![("mem", Box::new(mem)), ("redb", Box::new(redb))], _dir: dir }
}
