//! Blocks and headers.

use crate::tx::SignedTx;
use borsh::{BorshDeserialize, BorshSerialize};
use flock_primitives::{codec, Address, Hash, Height, VrfProof, VrfPublicKey};
use serde::{Deserialize, Serialize};

/// Where the block seed came from, so any node can check it.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SeedProof {
    /// The genesis block has no seed proof.
    None,
    /// The solo sequencer's VRF over `(chain id, height, parent seed)`.
    SoloVrf {
        /// The sequencer's VRF key (must match the genesis).
        key: VrfPublicKey,
        /// The proof.
        proof: VrfProof,
    },
    /// A threshold signature from the consensus engine (multi-machine mode).
    Threshold {
        /// The engine's encoded seed (round and threshold signature; empty for the first block).
        #[serde(with = "hex_bytes")]
        signature: Vec<u8>,
    },
}

/// Bytes as a hex string in JSON.
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(v.len() * 2);
        for b in v {
            out.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&out)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() % 2 != 0 || !s.is_ascii() {
            return Err(serde::de::Error::custom("odd-length or non-ascii hex"));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// A block header. Execution is deferred: the header carries the state root *after the parent*,
/// so a proposer never has to execute its own block before proposing it.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Header {
    /// The chain id.
    pub chain_id: String,
    /// This block's height (genesis is 0, so the first block is 1).
    pub height: Height,
    /// The parent block's hash (the genesis hash for block 1).
    pub parent_hash: Hash,
    /// The state root after executing the parent.
    pub parent_state_root: Hash,
    /// Block time in milliseconds since the Unix epoch, set by the proposer; never decreases.
    pub time_ms: u64,
    /// The block's randomness seed: what draws and lotteries read.
    pub seed: Hash,
    /// Evidence that `seed` was not chosen by the proposer.
    pub seed_proof: SeedProof,
    /// Who proposed it.
    pub proposer: Address,
    /// A hash over the transactions' hashes.
    pub tx_root: Hash,
}

/// A block: a header and its ordered transactions.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// The transactions, in execution order.
    pub txs: Vec<SignedTx>,
}

impl Header {
    /// The block hash: blake3 over the canonical header encoding.
    pub fn hash(&self) -> Hash {
        Hash::of_parts("flock header v1", &[&codec::encode(self)])
    }
}

impl Block {
    /// The block hash (the header's).
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// The transactions' root as committed in the header.
    pub fn compute_tx_root(txs: &[SignedTx]) -> Hash {
        let hashes: Vec<Hash> = txs.iter().map(SignedTx::hash).collect();
        tx_root(&hashes)
    }
}

/// The root over transaction hashes (a domain-separated hash of the ordered list).
pub fn tx_root(hashes: &[Hash]) -> Hash {
    let parts: Vec<&[u8]> = hashes.iter().map(|h| h.0.as_slice()).collect();
    Hash::of_parts("flock tx root v1", &parts)
}

/// The VRF input for the solo sequencer's seed at `height`.
pub fn solo_seed_input(chain_id: &str, height: Height, parent_seed: &Hash) -> Vec<u8> {
    let mut v = b"flock seed v1\0".to_vec();
    v.extend(codec::encode(&(chain_id, height.0, parent_seed.0)));
    v
}
