//! Commit semantics: heights, input validation, empty blocks, what gets stored.

use flock_primitives::{Hash, Height};
use flock_storage::{
    BlockCommit, CommitInfo, MemStore, StorageError, StoreConfig, EMPTY_STATE_ROOT,
};

use crate::util::{backends, block_hash, commit, del, put, try_commit, tx_hash};

#[test]
fn genesis_without_changes_has_the_empty_root() {
    for (name, store) in &mut backends(StoreConfig::default()).stores {
        assert_eq!(store.latest().unwrap(), None, "{name}");
        let root = commit(store.as_mut(), 0, &[]);
        assert_eq!(root, EMPTY_STATE_ROOT, "{name}");
        assert_eq!(
            store.latest().unwrap(),
            Some(CommitInfo { height: Height(0), block_hash: block_hash(0), state_root: root }),
            "{name}"
        );
    }
}

#[test]
fn height_mismatch_is_a_typed_error_and_writes_nothing() {
    for (name, store) in &mut backends(StoreConfig::default()).stores {
        let store = store.as_mut();
        let err = try_commit(store, 1, &[put("a", "1")]).unwrap_err();
        assert_eq!(err, StorageError::HeightMismatch { expected: Height(0), got: Height(1) });
        assert!(err.is_caller_error());
        assert_eq!(store.latest().unwrap(), None, "{name}");
        assert_eq!(store.stats().unwrap(), Default::default(), "{name}: wrote tree data");

        let root0 = commit(store, 0, &[put("a", "1")]);
        let stats = store.stats().unwrap();
        for bad in [0, 2, 7] {
            let err = try_commit(store, bad, &[put("b", "2"), del("a")]).unwrap_err();
            assert_eq!(
                err,
                StorageError::HeightMismatch { expected: Height(1), got: Height(bad) },
                "{name}"
            );
        }
        assert_eq!(store.stats().unwrap(), stats, "{name}: rejected commits wrote tree data");
        assert_eq!(store.latest().unwrap().unwrap().state_root, root0, "{name}");
        assert_eq!(store.get_state(b"a").unwrap(), Some(b"1".to_vec()), "{name}");
        assert_eq!(store.get_state(b"b").unwrap(), None, "{name}");
        assert_eq!(store.block(Height(2)).unwrap(), None, "{name}");
        assert_eq!(store.block(Height(0)).unwrap(), Some(b"block 0".to_vec()), "{name}");
        assert_eq!(store.tx_location(&tx_hash(2, 0)).unwrap(), None, "{name}");
        // The store is still usable at the right height.
        commit(store, 1, &[put("b", "2")]);
    }
}

#[test]
fn unsorted_or_duplicate_keys_are_rejected_and_write_nothing() {
    for (name, store) in &mut backends(StoreConfig::default()).stores {
        let store = store.as_mut();
        commit(store, 0, &[put("a", "1")]);
        let stats = store.stats().unwrap();
        let bad_sets = [vec![put("b", "1"), put("a", "2")], vec![put("c", "1"), del("c")]];
        for changes in &bad_sets {
            let err = store
                .commit_block(BlockCommit {
                    height: Height(1),
                    block_hash: Hash::ZERO,
                    block: b"x",
                    receipts: b"",
                    tx_hashes: &[],
                    changes,
                })
                .unwrap_err();
            assert!(matches!(err, StorageError::InvalidCommit(_)), "{name}: {err}");
            assert!(err.is_caller_error());
        }
        assert_eq!(store.stats().unwrap(), stats, "{name}");
        assert_eq!(store.latest().unwrap().unwrap().height, Height(0), "{name}");
        assert_eq!(store.block(Height(1)).unwrap(), None, "{name}");
        assert_eq!(store.get_state(b"b").unwrap(), None, "{name}");
    }
}

#[test]
fn empty_blocks_carry_the_root_and_later_blocks_build_on_it() {
    for (name, store) in &mut backends(StoreConfig::default().with_keep_versions(2)).stores {
        let store = store.as_mut();
        let r0 = commit(store, 0, &[put("a", "1"), put("b", "2")]);
        assert_ne!(r0, EMPTY_STATE_ROOT);
        // Empty blocks, and a block that only deletes absent keys, keep the root.
        assert_eq!(commit(store, 1, &[]), r0, "{name}");
        assert_eq!(commit(store, 2, &[]), r0, "{name}");
        assert_eq!(commit(store, 3, &[del("zz")]), r0, "{name}");
        assert_eq!(commit(store, 4, &[]), r0, "{name}");
        // The next real change starts from the carried root.
        let r5 = commit(store, 5, &[put("c", "3")]);
        let mut fresh = MemStore::new();
        assert_eq!(commit(&mut fresh, 0, &[put("a", "1"), put("b", "2"), put("c", "3")]), r5);
        for h in 0..=4 {
            assert_eq!(store.state_root(Height(h)).unwrap(), Some(r0), "{name} h{h}");
        }
        assert_eq!(store.state_root(Height(5)).unwrap(), Some(r5), "{name}");
        // The proof at the latest height still works after the empty blocks.
        let proof = store.prove(b"a").unwrap();
        assert_eq!(proof.value.as_deref(), Some(&b"1"[..]));
        proof.verify(&r5, b"a").unwrap();
    }
}

#[test]
fn deleting_everything_returns_to_the_empty_root_and_refills() {
    for (name, store) in &mut backends(StoreConfig::default().with_keep_versions(1)).stores {
        let store = store.as_mut();
        commit(store, 0, &[]);
        let r1 = commit(store, 1, &[put("a", "1")]);
        assert_eq!(commit(store, 2, &[del("a")]), EMPTY_STATE_ROOT, "{name}");
        assert_eq!(commit(store, 3, &[]), EMPTY_STATE_ROOT, "{name}");
        assert_eq!(commit(store, 4, &[put("a", "1")]), r1, "{name}");
        let r5 = commit(store, 5, &[put("a", "2"), put("b", "1")]);
        assert_eq!(commit(store, 6, &[del("a"), del("b")]), EMPTY_STATE_ROOT, "{name}");
        assert_eq!(commit(store, 7, &[put("b", "1"), put("a", "2")]), r5, "{name}");
        assert!(store.state_entries().unwrap().len() == 2);
    }
}

#[test]
fn empty_value_is_not_a_deletion() {
    for (name, store) in &mut backends(StoreConfig::default()).stores {
        let store = store.as_mut();
        let root = commit(store, 0, &[(b"k".to_vec(), Some(vec![]))]);
        assert_ne!(root, EMPTY_STATE_ROOT, "{name}");
        assert_eq!(store.get_state(b"k").unwrap(), Some(vec![]), "{name}");
        assert_eq!(store.state_entries().unwrap(), vec![(b"k".to_vec(), vec![])], "{name}");
        let proof = store.prove(b"k").unwrap();
        assert_eq!(proof.value, Some(vec![]), "{name}");
        proof.verify(&root, b"k").unwrap();
        // The empty key is a key like any other.
        commit(store, 1, &[(vec![], Some(b"v".to_vec()))]);
        assert_eq!(store.get_state(b"").unwrap(), Some(b"v".to_vec()), "{name}");
    }
}

#[test]
fn blocks_receipts_hashes_and_tx_index_are_stored_per_height() {
    for (name, store) in &mut backends(StoreConfig::default()).stores {
        let store = store.as_mut();
        let roots: Vec<Hash> =
            (0..5).map(|h| commit(store, h, &[put(&format!("k{h}"), "v")])).collect();
        for h in 0..5u64 {
            let height = Height(h);
            assert_eq!(store.block(height).unwrap(), Some(format!("block {h}").into_bytes()));
            assert_eq!(
                store.receipts(height).unwrap(),
                Some(format!("receipts {h}").into_bytes()),
                "{name}"
            );
            assert_eq!(store.block_hash(height).unwrap(), Some(block_hash(h)), "{name}");
            assert_eq!(store.state_root(height).unwrap(), Some(roots[h as usize]), "{name}");
            assert_eq!(store.tx_location(&tx_hash(h, 1)).unwrap(), Some((height, 1)), "{name}");
        }
        assert_eq!(store.block(Height(5)).unwrap(), None, "{name}");
        assert_eq!(store.block_hash(Height(5)).unwrap(), None, "{name}");
        assert_eq!(store.state_root(Height(5)).unwrap(), None, "{name}");
        assert_eq!(store.tx_location(&tx_hash(9, 0)).unwrap(), None, "{name}");
        let keys: Vec<Vec<u8>> =
            store.state_entries().unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, (0..5).map(|h| format!("k{h}").into_bytes()).collect::<Vec<_>>());
    }
}

#[test]
fn zero_keep_versions_is_rejected() {
    let err = MemStore::with_config(StoreConfig::default().with_keep_versions(0)).unwrap_err();
    assert!(matches!(err, StorageError::Config(_)));
    let dir = crate::util::tempdir();
    let err = flock_storage::RedbStore::open_with(
        dir.path().join("db.redb"),
        StoreConfig::default().with_keep_versions(0),
    )
    .unwrap_err();
    assert!(matches!(err, StorageError::Config(_)));
}
