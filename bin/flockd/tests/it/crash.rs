//! kill -9 the node at random moments while it takes transactions. After every crash the store
//! equals a clean replay of its committed blocks, and no committed transaction is lost.

use crate::harness::*;
use flock_ledger::{Block, Genesis, TxKind};
use flock_node::Chain;
use flock_primitives::{codec, Amount, Hash, Height};
use flock_storage::{MemStore, RedbStore, Store};
use rand::{Rng, SeedableRng};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

fn iterations() -> usize {
    std::env::var("FLOCK_CRASH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(12)
}

#[test]
fn kill_9_never_loses_committed_state() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(4);
    let genesis_path = setup(dir.path(), &k);
    let genesis = Genesis::from_json(&std::fs::read_to_string(&genesis_path).unwrap()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xF10C);
    // (hash, height) of every transaction a client saw committed, across all runs.
    let confirmed: Arc<Mutex<Vec<(Hash, u64)>>> = Arc::default();
    let mut total_blocks = 0;

    for iteration in 0..iterations() {
        let node = NodeProc::start(dir.path(), &genesis_path, 15);
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let (url, stop, confirmed) = (node.url.clone(), stop.clone(), confirmed.clone());
                let key = k[w].clone();
                let to = k[w + 2].address();
                std::thread::spawn(move || {
                    let c = http();
                    let mut sent = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let Ok((_, acc)) = c
                            .get(format!("{url}/v1/accounts/{}", key.address()))
                            .send()
                            .and_then(|r| Ok((r.status(), r.json::<serde_json::Value>()?)))
                        else {
                            break;
                        };
                        let nonce = acc["next_nonce"].as_u64().unwrap_or(0);
                        let tx = sign(
                            &key,
                            nonce,
                            TxKind::Transfer { to, amount: Amount(1 + nonce as u128) },
                        );
                        match post(&c, &url, &tx) {
                            Ok((202, _)) => sent.push(tx.hash()),
                            Ok(_) => {}
                            Err(_) => break,
                        }
                        // Record what is visibly committed.
                        sent.retain(|h| {
                            match c
                                .get(format!("{url}/v1/txs/{h}"))
                                .send()
                                .and_then(|r| r.json::<serde_json::Value>())
                            {
                                Ok(v) if v["status"] == "committed" => {
                                    confirmed
                                        .lock()
                                        .unwrap()
                                        .push((*h, v["height"].as_u64().unwrap()));
                                    false
                                }
                                _ => true,
                            }
                        });
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..700)));
        node.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }

        // The store after the crash.
        let store = RedbStore::open(dir.path().join("chain.redb")).unwrap();
        let tip = store.latest().unwrap().expect("genesis at least").height;
        for (h, height) in confirmed.lock().unwrap().iter() {
            let loc = store.tx_location(h).unwrap();
            assert_eq!(
                loc.map(|l| l.0),
                Some(Height(*height)),
                "iteration {iteration}: committed tx {h} lost"
            );
        }
        // A clean replay of the committed blocks gives the same root at every height.
        let mut replay = Chain::open(Box::new(MemStore::new()), genesis.clone()).unwrap();
        assert_eq!(replay.info().state_root, store.state_root(Height(0)).unwrap().unwrap());
        for h in 1..=tip.0 {
            let bytes = store.block(Height(h)).unwrap().expect("committed block present");
            let block: Block = codec::decode_bounded("block", &bytes, usize::MAX).unwrap();
            let info = replay.apply_finalized(&block).unwrap().info;
            assert_eq!(
                Some(info.state_root),
                store.state_root(Height(h)).unwrap(),
                "iteration {iteration}, height {h}"
            );
        }
        total_blocks = tip.0;
        drop(store);
    }
    let n = confirmed.lock().unwrap().len();
    eprintln!(
        "crash test: {} kill -9 runs, {total_blocks} blocks, {n} confirmed transactions checked",
        iterations()
    );
    assert!(total_blocks > iterations() as u64, "the node barely ran");
    assert!(n > 20, "too few transactions were confirmed to mean anything ({n})");
}
