//! Pruning: the tree tables stay bounded, and exactly the configured window stays provable.

use flock_primitives::Height;
use flock_storage::{MemStore, StateChange, StorageError, Store, StoreConfig, StoreStats};

use crate::util::{backends, commit, del, put};

const KEEP: u64 = 10;

/// Block `h` of a long-running chain over 50 keys: ten overwrites per block, a deletion every
/// 11th block, and an empty block every 7th.
fn rewrite(h: u64) -> Vec<StateChange> {
    if h % 7 == 6 {
        return Vec::new();
    }
    let mut changes: Vec<StateChange> =
        (0..10).map(|i| put(&format!("key{}", (h * 10 + i) % 50), &format!("value {h}"))).collect();
    if h % 11 == 0 {
        changes.push(del(&format!("key{}", (h * 10 + 25) % 50)));
    }
    changes
}

fn run(store: &mut dyn Store, blocks: u64, mut at: impl FnMut(u64, StoreStats)) {
    for h in 0..blocks {
        commit(store, h, &rewrite(h));
        at(h, store.stats().unwrap());
    }
}

#[test]
fn tree_tables_stay_bounded_over_1000_blocks_of_rewrites() {
    // Without pruning, the same workload accumulates history: this is what the bound rules out.
    let mut unpruned =
        MemStore::with_config(StoreConfig::default().with_keep_versions(u64::MAX)).unwrap();
    let mut unpruned_final = StoreStats::default();
    run(&mut unpruned, 1000, |_, s| unpruned_final = s);
    assert!(unpruned_final.jmt_nodes > 10_000, "{unpruned_final:?}");

    for (name, store) in &mut backends(StoreConfig::default().with_keep_versions(KEEP)).stores {
        let mut at_200 = StoreStats::default();
        let mut max = StoreStats::default();
        let mut last = StoreStats::default();
        run(store.as_mut(), 1000, |h, s| {
            if h == 200 {
                at_200 = s;
            }
            if h >= 200 {
                max.jmt_nodes = max.jmt_nodes.max(s.jmt_nodes);
                max.jmt_values = max.jmt_values.max(s.jmt_values);
                max.stale_nodes = max.stale_nodes.max(s.stale_nodes);
                max.stale_values = max.stale_values.max(s.stale_values);
            }
            last = s;
        });
        // Steady state: the live tree (about 50 leaves and their internal nodes) plus what the
        // last KEEP versions replaced; nothing grows with the number of blocks.
        assert!(last.state_entries <= 50, "{name}: {last:?}");
        assert!(
            max.jmt_nodes <= at_200.jmt_nodes + at_200.jmt_nodes / 4,
            "{name}: {at_200:?} {max:?}"
        );
        assert!(max.jmt_nodes < 1_000, "{name}: {max:?}");
        assert!(max.jmt_values < 50 + KEEP * 12, "{name}: {max:?}");
        assert!(max.stale_nodes < KEEP * 60, "{name}: {max:?}");
        assert!(max.stale_values < KEEP * 12, "{name}: {max:?}");
        assert!(last.jmt_nodes * 20 < unpruned_final.jmt_nodes, "{name}: {last:?}");
        // The state itself is untouched by pruning.
        assert_eq!(store.state_entries().unwrap(), unpruned.state_entries().unwrap(), "{name}");
        assert_eq!(store.latest().unwrap(), unpruned.latest().unwrap(), "{name}");
    }
}

#[test]
fn exactly_the_last_keep_versions_stay_provable() {
    let mut unpruned =
        MemStore::with_config(StoreConfig::default().with_keep_versions(u64::MAX)).unwrap();
    run(&mut unpruned, 300, |_, _| {});
    for (name, store) in &mut backends(StoreConfig::default().with_keep_versions(KEEP)).stores {
        run(store.as_mut(), 300, |_, _| {});
        for h in 300 - KEEP..300 {
            let root = store.state_root(Height(h)).unwrap().unwrap();
            for key in ["key3", "key25", "absent"] {
                let proof = store.prove_at(key.as_bytes(), Height(h)).unwrap();
                let reference = unpruned.prove_at(key.as_bytes(), Height(h)).unwrap();
                assert_eq!(proof, reference, "{name} h{h} {key}");
                proof.verify(&root, key.as_bytes()).unwrap();
            }
        }
        for h in [0, 100, 300 - KEEP - 1, 300, 301] {
            let err = store.prove_at(b"key3", Height(h)).unwrap_err();
            assert_eq!(err, StorageError::Unavailable { height: Height(h) }, "{name} h{h}");
        }
        // Roots per height are never pruned.
        assert_eq!(store.state_root(Height(0)).unwrap(), unpruned.state_root(Height(0)).unwrap());
    }
}

#[test]
fn empty_blocks_do_not_leak_root_nodes() {
    for (name, store) in &mut backends(StoreConfig::default().with_keep_versions(KEEP)).stores {
        let store = store.as_mut();
        commit(store, 0, &(0..5).map(|i| put(&format!("k{i}"), "v")).collect::<Vec<_>>());
        let genesis = store.stats().unwrap();
        for h in 1..=500 {
            commit(store, h, &[]);
        }
        let after = store.stats().unwrap();
        // One root node per version in the window; the rest of the tree is shared.
        assert!(after.jmt_nodes <= genesis.jmt_nodes + KEEP, "{name}: {genesis:?} {after:?}");
        // The same for a tree whose root is the empty (`Null`) node.
        commit(store, 501, &(0..5).map(|i| del(&format!("k{i}"))).collect::<Vec<_>>());
        for h in 502..=1000 {
            commit(store, h, &[]);
        }
        let empty = store.stats().unwrap();
        assert!(empty.jmt_nodes <= KEEP, "{name}: {empty:?}");
        commit(store, 1001, &[put("k", "v")]);
        for h in 1002..=1100 {
            commit(store, h, &[]);
        }
        assert!(store.stats().unwrap().jmt_nodes <= 1 + KEEP, "{name}");
    }
}
