//! Differential tests: both backends, several pruning windows, and a model map agree; the root
//! is a function of the state alone.

use std::collections::BTreeMap;

use flock_primitives::Height;
use flock_storage::{MemStore, RedbStore, StateChange, Store, StoreConfig};
use proptest::prelude::*;

use crate::util::{apply, commit, tempdir};

/// A block: up to 8 changes over a small key space (so overwrites and deletes of present keys
/// are common); key 0 is the empty key, values may be empty.
fn block() -> impl Strategy<Value = Vec<StateChange>> {
    let change = (0u8..24, prop::option::weighted(0.7, prop::collection::vec(any::<u8>(), 0..6)))
        .prop_map(|(k, v)| {
            let key = if k == 0 { Vec::new() } else { format!("key/{k}").into_bytes() };
            (key, v)
        });
    prop_oneof![
        1 => Just(Vec::new()),
        5 => prop::collection::vec(change, 1..8),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn backends_and_windows_agree_on_every_root(blocks in prop::collection::vec(block(), 1..16)) {
        let dir = tempdir();
        let config = StoreConfig::default().with_fsync(false);
        let mut redb = RedbStore::open_with(dir.path().join("db.redb"), config.with_keep_versions(3))
            .unwrap();
        let mut mem_same = MemStore::with_config(config.with_keep_versions(3)).unwrap();
        let mut mem_pruned = MemStore::with_config(config.with_keep_versions(1)).unwrap();
        let mut mem_full = MemStore::with_config(config.with_keep_versions(u64::MAX)).unwrap();
        let mut model = BTreeMap::new();

        for (h, changes) in blocks.iter().enumerate() {
            let h = h as u64;
            let r_redb = commit(&mut redb, h, changes);
            let r_same = commit(&mut mem_same, h, changes);
            let r_pruned = commit(&mut mem_pruned, h, changes);
            let r_full = commit(&mut mem_full, h, changes);
            prop_assert_eq!(r_redb, r_same, "height {}", h);
            prop_assert_eq!(r_redb, r_pruned, "height {}", h);
            prop_assert_eq!(r_redb, r_full, "height {}", h);

            let deduped: BTreeMap<_, _> = changes.iter().cloned().collect();
            apply(&mut model, &deduped.into_iter().collect::<Vec<_>>());
            let model_entries: Vec<_> = model.clone().into_iter().collect();
            prop_assert_eq!(&redb.state_entries().unwrap(), &model_entries);
            prop_assert_eq!(&mem_pruned.state_entries().unwrap(), &model_entries);
            // Same window, same bookkeeping: every table has the same number of entries.
            prop_assert_eq!(redb.stats().unwrap(), mem_same.stats().unwrap());

            // The root depends only on the state: a fresh store that commits the current state
            // as one block, at height 0 or after some empty blocks, gets the same root.
            let final_state: Vec<StateChange> =
                model.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
            let mut fresh = MemStore::new();
            prop_assert_eq!(commit(&mut fresh, 0, &final_state), r_redb);
            let mut later = MemStore::new();
            for e in 0..(h % 3) {
                commit(&mut later, e, &[]);
            }
            prop_assert_eq!(commit(&mut later, h % 3, &final_state), r_redb);
        }

        // Every key the test touched reads and proves like the model says, on every backend.
        let latest = redb.latest().unwrap().unwrap();
        for k in 0u8..24 {
            let key = if k == 0 { Vec::new() } else { format!("key/{k}").into_bytes() };
            let expected = model.get(&key).cloned();
            for store in [&redb as &dyn Store, &mem_pruned, &mem_full] {
                prop_assert_eq!(store.get_state(&key).unwrap(), expected.clone());
                let proof = store.prove(&key).unwrap();
                prop_assert_eq!(proof.height, latest.height);
                prop_assert_eq!(&proof.value, &expected);
                prop_assert!(proof.verify(&latest.state_root, &key).is_ok());
            }
        }

        // The unpruned store can still prove every historical version, with the model's answer.
        let mut model = BTreeMap::new();
        for (h, changes) in blocks.iter().enumerate() {
            let deduped: BTreeMap<_, _> = changes.iter().cloned().collect();
            apply(&mut model, &deduped.into_iter().collect::<Vec<_>>());
            let root = mem_full.state_root(Height(h as u64)).unwrap().unwrap();
            for key in changes.iter().map(|(k, _)| k) {
                let proof = mem_full.prove_at(key, Height(h as u64)).unwrap();
                prop_assert_eq!(&proof.value, &model.get(key).cloned());
                prop_assert!(proof.verify(&root, key).is_ok());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Roots computed ahead of time for blocks not committed yet (what a BFT validator does on
    /// top of a notarized block) are the roots their commits then give, on both backends and
    /// with a tight pruning window; computing them writes nothing.
    #[test]
    fn speculative_roots_are_the_committed_roots(
        committed in prop::collection::vec(block(), 1..8),
        pending in prop::collection::vec(block(), 0..6),
    ) {
        let sorted = |c: &Vec<StateChange>| -> Vec<StateChange> {
            c.iter().cloned().collect::<BTreeMap<_, _>>().into_iter().collect()
        };
        let pending: Vec<Vec<StateChange>> = pending.iter().map(sorted).collect();
        let refs: Vec<&[StateChange]> = pending.iter().map(Vec::as_slice).collect();
        let dir = tempdir();
        let config = StoreConfig::default().with_fsync(false).with_keep_versions(2);
        let mut redb = RedbStore::open_with(dir.path().join("db.redb"), config).unwrap();
        let mut mem = MemStore::with_config(config).unwrap();
        let stores: [&mut dyn Store; 2] = [&mut redb, &mut mem];
        for store in stores {
            for (h, changes) in committed.iter().enumerate() {
                commit(&mut *store, h as u64, changes);
            }
            let before = store.stats().unwrap();
            let latest = store.latest().unwrap().unwrap();
            let speculative = store.speculative_roots(&refs).unwrap();
            prop_assert_eq!(store.stats().unwrap(), before);
            prop_assert_eq!(store.latest().unwrap().unwrap(), latest);
            let mut roots = Vec::new();
            for (i, changes) in pending.iter().enumerate() {
                roots.push(commit(&mut *store, latest.height.0 + 1 + i as u64, changes));
            }
            prop_assert_eq!(speculative, roots);
        }
    }
}

#[test]
fn speculative_roots_refuse_unsorted_changes() {
    let mut mem = MemStore::new();
    commit(&mut mem, 0, &[]);
    let bad = vec![(b"b".to_vec(), Some(b"1".to_vec())), (b"a".to_vec(), Some(b"2".to_vec()))];
    let err = mem.speculative_roots(&[&bad]).unwrap_err();
    assert!(matches!(err, flock_storage::StorageError::InvalidCommit(_)), "{err}");
}
