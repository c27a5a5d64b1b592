//! Signed transfers admitted, applied and committed per second on one node, next to the raw
//! ed25519 verification rate measured in the same run.
//!
//! Run: `cargo bench -p flock-node --bench throughput` (add `-- --quick` for fewer rounds).
//! Each figure is the median of several rounds; the ratio says how much of the signature
//! budget the rest of the pipeline (mempool admission on pending state, block execution, JMT
//! root, one fsynced redb transaction per block) costs.

use flock_ledger::{test_utils, Params, SignedTx, Transaction, TxKind};
use flock_node::{Chain, MempoolLimits, Node, SequencerKey, SoloSequencer};
use flock_primitives::{verify_batch, Amount, Keypair};
use flock_storage::{RedbStore, StoreConfig};
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 2_000;
const BLOCK: usize = 1_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn transfers(keys: &[Keypair], round: u64) -> Vec<SignedTx> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let to = keys[(i + 1) % keys.len()].address();
            Transaction {
                chain_id: test_utils::TEST_CHAIN.into(),
                signer: k.public(),
                nonce: round,
                kind: TxKind::Transfer { to, amount: Amount(1) },
            }
            .sign(k)
        })
        .collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 3 } else { 7 };
    let p = Params { max_block_txs: BLOCK as u32, epoch_length: 1_000_000, ..Params::default() };
    let (mut genesis, keys) = test_utils::test_genesis(ACCOUNTS, Amount::flock(1_000), p, vec![]);
    let seq_key = SequencerKey::from_seed([7; 32]);
    genesis.sequencer = Some(seq_key.genesis_entry());

    // 1. Raw ed25519 verification of the same kind of transactions.
    let sample = transfers(&keys, 0);
    let msgs: Vec<Vec<u8>> = sample.iter().map(|t| t.tx.signing_bytes()).collect();
    let mut single = Vec::new();
    let mut batch = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for (tx, m) in sample.iter().zip(&msgs) {
            tx.tx.signer.verify(m, &tx.signature).unwrap();
        }
        single.push(sample.len() as f64 / t.elapsed().as_secs_f64());
        let items: Vec<_> = sample
            .iter()
            .zip(&msgs)
            .map(|(t, m)| (&t.tx.signer, m.as_slice(), &t.signature))
            .collect();
        let t = Instant::now();
        for chunk in items.chunks(BLOCK) {
            verify_batch(chunk).unwrap();
        }
        batch.push(sample.len() as f64 / t.elapsed().as_secs_f64());
    }

    // 2. The node pipeline: admit to the mempool, build a block, apply_finalized (execute, JMT
    //    root, one fsynced redb write).
    let dir = std::env::temp_dir().join(format!("flock-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store =
        RedbStore::open_with(dir.join("chain.redb"), StoreConfig::default().with_fsync(true))
            .unwrap();
    let node = Node::new(Chain::open(Box::new(store), genesis).unwrap(), MempoolLimits::default());
    let seq = SoloSequencer::new(seq_key.vrf(), seq_key.account().address(), Duration::ZERO);
    let mut pipeline = Vec::new();
    let mut apply_only = Vec::new();
    for round in 0..rounds as u64 {
        let txs = transfers(&keys, round);
        let t = Instant::now();
        for tx in txs {
            node.submit(tx).unwrap();
        }
        let admitted = t.elapsed();
        let t2 = Instant::now();
        let mut committed = 0;
        while node.with_mempool(|m| !m.is_empty()) {
            let block = seq.build(&node);
            committed += node.apply_finalized(&block).unwrap().tx_count;
        }
        let applied = t2.elapsed();
        assert_eq!(committed, ACCOUNTS);
        pipeline.push(committed as f64 / (admitted + applied).as_secs_f64());
        apply_only.push(committed as f64 / applied.as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&dir);

    let (s, b, p, a) = (median(single), median(batch), median(pipeline), median(apply_only));
    println!("flock-node throughput ({ACCOUNTS} signed transfers per round, blocks of {BLOCK}, medians of {rounds} rounds)");
    println!("| measurement                                             | per second |");
    println!("|---------------------------------------------------------|-----------:|");
    println!("| ed25519 verify_strict, one at a time                    | {s:>10.0} |");
    println!("| ed25519 batch verify (batches of {BLOCK})                  | {b:>10.0} |");
    println!("| transfers admitted + applied + committed (fsync)        | {p:>10.0} |");
    println!("| transfers applied + committed only (fsync)              | {a:>10.0} |");
    println!("| ratio: end-to-end / single verify                       | {:>10.2} |", p / s);
    println!("| ratio: apply+commit / single verify                     | {:>10.2} |", a / s);
}
