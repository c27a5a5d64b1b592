//! Helpers for tests: dev genesis, signed transactions, valid blocks.

use crate::{
    block::{Block, Header, SeedProof},
    genesis::{Allocation, Genesis, GenesisTarget},
    ledger::Ledger,
    params::Params,
    tx::{SignedTx, StakeTarget, Transaction, TxKind},
    BlockError, BlockReceipts,
};
use flock_primitives::{Amount, Hash, Keypair};

/// The chain id used by tests.
pub const TEST_CHAIN: &str = "flock-test";

/// A genesis with `n` accounts (`Keypair::dev("acct-i")`) holding `each` FLOCK, the given
/// params and extra targets.
pub fn test_genesis(
    n: usize,
    each: Amount,
    params: Params,
    targets: Vec<GenesisTarget>,
) -> (Genesis, Vec<Keypair>) {
    let keys: Vec<Keypair> = (0..n).map(|i| Keypair::dev(&format!("acct-{i}"))).collect();
    let genesis = Genesis {
        chain_id: TEST_CHAIN.into(),
        genesis_time_ms: 1_700_000_000_000,
        params,
        allocations: keys
            .iter()
            .map(|k| Allocation { address: k.address(), amount: each })
            .collect(),
        targets,
        sequencer: None,
    };
    (genesis, keys)
}

/// A test target for task `task` and `role` with a minimum stake.
pub fn target(task: u64, role: crate::Role, min: Amount, unlock_at: u64) -> GenesisTarget {
    GenesisTarget {
        target: StakeTarget { task, role },
        min_stake: min,
        unlock_at: flock_primitives::Height(unlock_at),
    }
}

/// Signs a transaction for the test chain.
pub fn sign(key: &Keypair, nonce: u64, kind: TxKind) -> SignedTx {
    Transaction { chain_id: TEST_CHAIN.into(), signer: key.public(), nonce, kind }.sign(key)
}

/// The next valid block on top of `ledger` with `txs` (seed derived from the height).
pub fn next_block(ledger: &Ledger, txs: Vec<SignedTx>) -> Block {
    let g = ledger.globals();
    let height = g.height.next();
    Block {
        header: Header {
            chain_id: g.chain_id,
            height,
            parent_hash: g.last_block_hash,
            parent_state_root: Hash::ZERO,
            time_ms: g.time_ms + 1_000,
            seed: Hash::of(&height.0.to_le_bytes()),
            seed_proof: SeedProof::None,
            proposer: Default::default(),
            tx_root: Block::compute_tx_root(&txs),
        },
        txs,
    }
}

/// Builds and applies the next block.
pub fn apply(ledger: &mut Ledger, txs: Vec<SignedTx>) -> Result<BlockReceipts, BlockError> {
    let b = next_block(ledger, txs);
    ledger.apply_block(&b)
}
