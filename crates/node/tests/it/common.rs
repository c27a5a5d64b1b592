use flock_ledger::{test_utils, Genesis, Params, SignedTx, Transaction, TxKind};
use flock_node::{Chain, MempoolLimits, Node, SequencerKey, SoloSequencer};
use flock_primitives::{Amount, Keypair};
use flock_storage::MemStore;
use std::time::Duration;

pub(crate) fn seq_key() -> SequencerKey {
    SequencerKey::from_seed([9; 32])
}

pub(crate) fn genesis() -> (Genesis, Vec<Keypair>) {
    let p = Params { epoch_length: 5, min_network_stake: Amount::flock(100), ..Params::default() };
    let (mut g, keys) = test_utils::test_genesis(4, Amount::flock(10_000), p, vec![]);
    g.sequencer = Some(seq_key().genesis_entry());
    (g, keys)
}

pub(crate) fn node() -> (Node, SoloSequencer, Vec<Keypair>) {
    let (g, keys) = genesis();
    let chain = Chain::open(Box::new(MemStore::new()), g).unwrap();
    let node = Node::new(chain, MempoolLimits::default());
    let k = seq_key();
    let seq = SoloSequencer::new(k.vrf(), k.account().address(), Duration::from_millis(10));
    (node, seq, keys)
}

/// Builds and applies one block from the mempool.
pub(crate) fn produce(node: &Node, seq: &SoloSequencer) -> flock_node::Committed {
    let b = seq.build(node);
    node.apply_finalized(&b).unwrap()
}

pub(crate) fn tx(key: &Keypair, nonce: u64, kind: TxKind) -> SignedTx {
    Transaction { chain_id: test_utils::TEST_CHAIN.into(), signer: key.public(), nonce, kind }
        .sign(key)
}
