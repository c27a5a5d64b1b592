//! Block commit throughput: blocks per second for blocks of 10 and 1,000 state changes, on
//! `RedbStore` (fsync on every commit, the production setting) and `MemStore`.
//!
//! Run: `cargo bench -p flock-storage --bench commit` (add `-- --quick` for a short run).
//! Names: `storage::commit/<backend>/changes=<n>`; throughput is in blocks ("elements") per
//! second. Each store starts from a genesis of 10,000 keys; every benchmarked block overwrites
//! `n` keys spread over a 100,000-key space (so inserts and overwrites mix) with 64-byte values.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flock_primitives::{Hash, Height};
use flock_storage::{BlockCommit, MemStore, RedbStore, StateChange, Store};

const GENESIS_KEYS: u64 = 10_000;
const KEY_SPACE: u64 = 100_000;

fn key(i: u64) -> Vec<u8> {
    format!("account/{:06}", i % KEY_SPACE).into_bytes()
}

fn changes(height: u64, n: u64) -> Vec<StateChange> {
    let mut changes: Vec<StateChange> = (0..n)
        .map(|i| (key((height * n + i) * 7_919), Some(vec![(height % 251) as u8; 64])))
        .collect();
    changes.sort();
    changes.dedup_by(|a, b| a.0 == b.0);
    changes
}

fn commit(store: &mut dyn Store, height: u64, changes: &[StateChange]) {
    let block = vec![0u8; 256];
    store
        .commit_block(BlockCommit {
            height: Height(height),
            block_hash: Hash([height as u8; 32]),
            block: &block,
            receipts: &[],
            tx_hashes: &[],
            changes,
        })
        .expect("commit");
}

fn with_genesis(mut store: Box<dyn Store>) -> Box<dyn Store> {
    let genesis: Vec<StateChange> =
        (0..GENESIS_KEYS).map(|i| (key(i), Some(vec![1u8; 64]))).collect();
    let mut genesis = genesis;
    genesis.sort();
    commit(store.as_mut(), 0, &genesis);
    store
}

fn bench_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("storage::commit");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    for n in [10u64, 1_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let backends: [(&str, Box<dyn Store>); 2] = [
            ("redb", Box::new(RedbStore::open(dir.path().join("bench.redb")).expect("open"))),
            ("mem", Box::new(MemStore::new())),
        ];
        for (name, store) in backends {
            let mut store = with_genesis(store);
            let mut height = 1;
            group.bench_function(BenchmarkId::new(name, format!("changes={n}")), |b| {
                b.iter_batched(
                    || {
                        let c = changes(height, n);
                        height += 1;
                        c
                    },
                    |c| {
                        let h = store.latest().expect("latest").expect("genesis").height.0 + 1;
                        commit(store.as_mut(), h, &c);
                    },
                    criterion::BatchSize::PerIteration,
                );
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_commit);
criterion_main!(benches);
