//! The solo sequencer: one machine orders transactions into blocks at a fixed interval.

use crate::node::{BlockSource, Node};
use flock_ledger::{solo_seed_input, Block, Header, SeedProof};
use flock_primitives::{Address, VrfKeypair};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Produces a block every `interval` from the mempool, with a VRF seed over the parent's seed.
#[derive(Debug)]
pub struct SoloSequencer {
    vrf: VrfKeypair,
    address: Address,
    interval: Duration,
    stop: Arc<AtomicBool>,
    next_at: Option<Instant>,
    /// Skip blocks with no transactions (still produce one at least every `idle_every`).
    pub skip_empty: bool,
}

impl SoloSequencer {
    /// A sequencer with the genesis sequencer's keys.
    pub fn new(vrf: VrfKeypair, address: Address, interval: Duration) -> Self {
        Self {
            vrf,
            address,
            interval,
            stop: Arc::new(AtomicBool::new(false)),
            next_at: None,
            skip_empty: false,
        }
    }

    /// A flag that stops the sequencer when set.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Builds the next block on `node`'s tip with up to `max` mempool transactions.
    pub fn build(&self, node: &Node) -> Block {
        let tip = node.tip();
        let txs = node.with_mempool(|mp| mp.take(tip.max_block_txs));
        let height = tip.height.next();
        let (seed, proof) = self.vrf.evaluate(&solo_seed_input(&tip.chain_id, height, &tip.seed));
        let now_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let header = Header {
            chain_id: tip.chain_id,
            height,
            parent_hash: tip.block_hash,
            parent_state_root: tip.state_root,
            time_ms: now_ms.max(tip.time_ms),
            seed,
            seed_proof: SeedProof::SoloVrf { key: self.vrf.public(), proof },
            proposer: self.address,
            tx_root: Block::compute_tx_root(&txs),
        };
        Block { header, txs }
    }
}

impl BlockSource for SoloSequencer {
    fn next_block(&mut self, node: &Node) -> Option<Block> {
        let next = *self.next_at.get_or_insert_with(|| Instant::now() + self.interval);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            let now = Instant::now();
            if now >= next {
                break;
            }
            std::thread::sleep((next - now).min(Duration::from_millis(20)));
        }
        self.next_at = Some(next + self.interval).map(|t| t.max(Instant::now()));
        Some(self.build(node))
    }
}
