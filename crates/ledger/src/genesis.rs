//! The genesis file: chain id, parameters, allocations, stake targets, the sequencer.

use crate::{params::Params, tx::StakeTarget};
use flock_primitives::{codec, Address, Amount, Hash, Height, VrfPublicKey};
use serde::{Deserialize, Serialize};

/// One funded account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, borsh::BorshSerialize)]
pub struct Allocation {
    /// The account.
    pub address: Address,
    /// Its balance at genesis.
    pub amount: Amount,
}

/// A stake target open from genesis (besides the network target, which always exists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, borsh::BorshSerialize)]
pub struct GenesisTarget {
    /// The target.
    pub target: StakeTarget,
    /// Minimum position.
    pub min_stake: Amount,
    /// Stake is locked until this height.
    #[serde(default)]
    pub unlock_at: Height,
}

/// Who produces blocks in solo mode, and the VRF key its seeds are checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, borsh::BorshSerialize)]
pub struct Sequencer {
    /// The sequencer's account address (the header's proposer).
    pub address: Address,
    /// Its VRF public key.
    pub vrf_key: VrfPublicKey,
}

/// The genesis of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, borsh::BorshSerialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// The chain id (transactions must carry it).
    pub chain_id: String,
    /// Time of genesis, ms since the Unix epoch (blocks must not be earlier).
    pub genesis_time_ms: u64,
    /// Parameters.
    #[serde(default)]
    pub params: Params,
    /// Funded accounts (counted as minted, within the cap).
    pub allocations: Vec<Allocation>,
    /// Extra stake targets.
    #[serde(default)]
    pub targets: Vec<GenesisTarget>,
    /// The solo sequencer (required to run a solo node; absent for a BFT network).
    #[serde(default)]
    pub sequencer: Option<Sequencer>,
}

/// Why a genesis was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// Empty or overlong chain id.
    #[error("chain_id must be 1 to 64 printable characters")]
    BadChainId,
    /// Bad parameters.
    #[error("invalid params: {0}")]
    Params(String),
    /// The same address twice.
    #[error("address {0} is allocated twice")]
    DuplicateAllocation(Address),
    /// Allocations exceed the cap.
    #[error("allocations total more than the supply cap of {0}")]
    OverCap(Amount),
    /// A bad target.
    #[error("invalid target {0}: {1}")]
    Target(StakeTarget, &'static str),
}

impl Genesis {
    /// The genesis hash: what block 1's `parent_hash` points at.
    pub fn hash(&self) -> Hash {
        Hash::of_parts("flock genesis v1", &[&codec::encode(self)])
    }

    /// Parses a genesis JSON document.
    pub fn from_json(s: &str) -> Result<Self, String> {
        serde_json::from_str(s).map_err(|e| format!("genesis is not valid JSON: {e}"))
    }

    /// Checks the genesis before any state is built.
    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.chain_id.is_empty()
            || self.chain_id.len() > 64
            || !self.chain_id.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(GenesisError::BadChainId);
        }
        self.params.validate().map_err(GenesisError::Params)?;
        let mut seen = std::collections::BTreeSet::new();
        let mut total = Amount::ZERO;
        for a in &self.allocations {
            if !seen.insert(a.address) {
                return Err(GenesisError::DuplicateAllocation(a.address));
            }
            total =
                total.checked_add(a.amount).ok_or(GenesisError::OverCap(self.params.supply_cap))?;
        }
        if total > self.params.supply_cap {
            return Err(GenesisError::OverCap(self.params.supply_cap));
        }
        for t in &self.targets {
            if t.target == StakeTarget::NETWORK {
                return Err(GenesisError::Target(t.target, "the network target is built in"));
            }
        }
        Ok(())
    }
}
