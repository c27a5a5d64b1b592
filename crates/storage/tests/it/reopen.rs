//! Restart: a reopened redb store resumes exactly where it stopped.

use flock_primitives::Height;
use flock_storage::{CommitInfo, MemStore, RedbStore, StateChange, StorageError, Store};

use crate::util::{block_hash, commit, del, put, tempdir, tx_hash};

/// Deterministic changes for block `h`: overwrites, deletes and some empty blocks.
fn changes_for(h: u64) -> Vec<StateChange> {
    if h % 5 == 3 {
        return Vec::new();
    }
    let mut changes = vec![
        put(&format!("k{}", h % 7), &format!("v{h}")),
        put(&format!("k{}", (h * 3) % 11), "x"),
    ];
    if h % 4 == 0 {
        changes.push(del(&format!("k{}", (h + 2) % 7)));
    }
    changes
}

#[test]
fn reopen_resumes_at_the_last_committed_block() {
    let dir = tempdir();
    let path = dir.path().join("db.redb");
    let mut mem = MemStore::new();
    let mut roots = Vec::new();
    {
        let mut store = RedbStore::open(&path).unwrap();
        assert!(store.config().fsync, "fsync is the default");
        for h in 0..20 {
            let root = commit(&mut store, h, &changes_for(h));
            assert_eq!(commit(&mut mem, h, &changes_for(h)), root);
            roots.push(root);
        }
    }

    let mut store = RedbStore::open(&path).unwrap();
    assert_eq!(
        store.latest().unwrap(),
        Some(CommitInfo { height: Height(19), block_hash: block_hash(19), state_root: roots[19] })
    );
    let entries = store.state_entries().unwrap();
    assert!(!entries.is_empty());
    assert_eq!(entries, mem.state_entries().unwrap());
    for k in 0..11 {
        let key = format!("k{k}").into_bytes();
        assert_eq!(store.get_state(&key).unwrap(), mem.get_state(&key).unwrap(), "k{k}");
    }
    for h in 0..20u64 {
        let height = Height(h);
        assert_eq!(store.state_root(height).unwrap(), Some(roots[h as usize]), "h{h}");
        assert_eq!(store.block_hash(height).unwrap(), Some(block_hash(h)));
        assert_eq!(store.block(height).unwrap(), Some(format!("block {h}").into_bytes()));
        assert_eq!(store.receipts(height).unwrap(), Some(format!("receipts {h}").into_bytes()));
        assert_eq!(store.tx_location(&tx_hash(h, 0)).unwrap(), Some((height, 0)));
    }
    let proof = store.prove(b"k1").unwrap();
    assert_eq!(proof.value, mem.get_state(b"k1").unwrap());
    proof.verify(&roots[19], b"k1").unwrap();

    // The next height commits after the restart, with the same root as an uninterrupted store.
    let root20 = commit(&mut store, 20, &changes_for(20));
    assert_eq!(root20, commit(&mut mem, 20, &changes_for(20)));
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.latest().unwrap().unwrap().height, Height(20));
    assert_eq!(store.state_entries().unwrap(), mem.state_entries().unwrap());
}

#[test]
fn a_second_open_of_the_same_file_is_a_db_error() {
    let dir = tempdir();
    let path = dir.path().join("db.redb");
    let _first = RedbStore::open(&path).unwrap();
    let err = RedbStore::open(&path).unwrap_err();
    assert!(matches!(err, StorageError::Db(_)), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_is_an_error_not_a_panic() {
    let dir = tempdir();
    let path = dir.path().join("db.redb");
    std::fs::write(&path, vec![0x5Au8; 64 * 1024]).unwrap();
    let err = RedbStore::open(&path).unwrap_err();
    assert!(matches!(err, StorageError::Db(_) | StorageError::Corrupt(_)), "{err}");
}
