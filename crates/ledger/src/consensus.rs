//! The consensus validators: faults reported by the BFT engine slash a network validator, and
//! at every epoch boundary the next epoch's validator set is read off the network stakes.
//!
//! * **Evidence.** A [`ConsensusFault`] names the offender's consensus identity key (an
//!   ed25519 key; its flock address holds the network stake), the kind of fault, the engine's
//!   epoch and view, and `proof`: the engine's encoding of the two conflicting signed votes.
//!   The ledger never imports the consensus engine, so it cannot check that proof itself: the
//!   consensus layer checks it (a BFT validator refuses a block carrying evidence whose proof
//!   does not verify, and a node without an engine refuses evidence at the mempool). The
//!   ledger checks the rest: the proof is bounded, the offender has network stake, and it was
//!   not already punished.
//! * **Punishment.** The first valid evidence slashes `consensus_fault_slash` of the
//!   offender's network stake, its unbonding network stake and its delegators' part
//!   ([`State::slash`]; the reporter gets `slash_reporter` of it) and tombstones the offender:
//!   later evidence against it is refused, and it can never bond network stake again.
//! * **Validator sets.** [`State::network_validators`] is the staked set: accounts whose own
//!   network stake is at least `min_network_stake`, not tombstoned, by stake (own plus
//!   delegated) then address, at most `max_network_validators`. At the end of every epoch it is
//!   recorded as the set of the next epoch ([`State::validator_set`]).

use crate::{error::TxError, events::Event, params::Params, state::State, tx::StakeTarget};
use borsh::{BorshDeserialize, BorshSerialize};
use flock_primitives::{Address, Amount, Height, PublicKey};
use serde::{Deserialize, Serialize};

/// Largest `proof` of a [`ConsensusFault`] (two votes with their signatures are far smaller).
pub const MAX_FAULT_PROOF_BYTES: usize = 8 * 1024;

/// Most [`crate::TxKind::ConsensusEvidence`] transactions in one block (a proposer stops taking
/// transactions from its mempool at the first evidence over the limit).
pub const MAX_EVIDENCE_PER_BLOCK: usize = 8;

/// An attributable consensus fault.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Two notarize votes for different proposals in one view (equivocation).
    ConflictingNotarize,
    /// Two finalize votes for different proposals in one view (equivocation).
    ConflictingFinalize,
    /// A nullify vote and a finalize vote in one view.
    NullifyFinalize,
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ConflictingNotarize => "conflicting notarize votes",
            Self::ConflictingFinalize => "conflicting finalize votes",
            Self::NullifyFinalize => "a nullify and a finalize vote",
        })
    }
}

/// Evidence of a consensus fault, as reported by the engine.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ConsensusFault {
    /// The offender's consensus identity key; its address holds the network stake slashed.
    pub offender: PublicKey,
    /// What it did.
    pub kind: FaultKind,
    /// The engine's epoch.
    pub epoch: u64,
    /// The engine's view.
    pub view: u64,
    /// The engine's encoding of the conflicting signed votes (checked by the consensus layer).
    #[serde(with = "crate::block::hex_bytes")]
    pub proof: Vec<u8>,
}

impl ConsensusFault {
    /// The offender's account.
    pub fn offender_address(&self) -> Address {
        self.offender.address()
    }
}

/// The record of a punished offender.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Tombstone {
    /// The fault it was punished for.
    pub kind: FaultKind,
    /// The engine's epoch of the fault.
    pub epoch: u64,
    /// The engine's view of the fault.
    pub view: u64,
    /// The block that carried the evidence.
    pub height: Height,
    /// Who reported it.
    pub reporter: Address,
    /// What the slash took in total.
    pub slashed: Amount,
}

/// A member of a validator set.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SetMember {
    /// The validator's account (the address of its consensus identity key).
    pub address: Address,
    /// Its own network stake.
    pub own: Amount,
    /// Delegation attributed to its network stake.
    pub delegated: Amount,
    /// Its consensus identity key, when it registered an endpoint
    /// ([`crate::TxKind::ConsensusRegister`]) by the time the set was recorded; only members
    /// with one can join the consensus committee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PublicKey>,
}

/// Longest consensus endpoint (`ip:port`).
pub const MAX_ENDPOINT_LEN: usize = 64;

/// Largest dealer log of a resharing round: a commitment of `2f+1` G2 points (96 bytes each)
/// and about 100 bytes (key and ack, or revealed share) per player, so about 40 KiB for 250
/// players. It must fit in a transaction (`max_tx_bytes`, 64 KiB by default).
pub const MAX_DKG_LOG_BYTES: usize = 60 * 1024;

/// A registered consensus endpoint.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ConsensusEndpoint {
    /// The consensus identity key (the account's own key).
    pub key: PublicKey,
    /// `ip:port` of its p2p listener.
    pub endpoint: String,
    /// Where it was registered (or last moved).
    pub height: Height,
}

/// Checks a consensus endpoint: an `ip:port` socket address, at most [`MAX_ENDPOINT_LEN`].
pub fn check_endpoint(endpoint: &str) -> Result<(), TxError> {
    if endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(TxError::Malformed(format!(
            "a consensus endpoint is at most {MAX_ENDPOINT_LEN} bytes, got {}",
            endpoint.len()
        )));
    }
    endpoint.parse::<std::net::SocketAddr>().map_err(|_| {
        TxError::Malformed(format!("consensus endpoint {endpoint:?} is not an ip:port address"))
    })?;
    Ok(())
}

/// Checks a dealer log's size (its contents are the consensus layer's to check).
pub fn check_dkg_log(log: &[u8]) -> Result<(), TxError> {
    if log.is_empty() || log.len() > MAX_DKG_LOG_BYTES {
        return Err(TxError::Malformed(format!(
            "a dealer log is 1 to {MAX_DKG_LOG_BYTES} bytes, got {}",
            log.len()
        )));
    }
    Ok(())
}

impl SetMember {
    /// Own plus delegated.
    pub fn weight(&self) -> Amount {
        Amount(self.own.0.saturating_add(self.delegated.0))
    }
}

impl State {
    /// Applies evidence of a consensus fault whose proof the consensus layer has checked.
    pub fn consensus_evidence(
        &mut self,
        reporter: &Address,
        fault: &ConsensusFault,
        now: Height,
        params: &Params,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        if fault.proof.is_empty() || fault.proof.len() > MAX_FAULT_PROOF_BYTES {
            return Err(TxError::BadEvidence(format!(
                "the proof must be 1 to {MAX_FAULT_PROOF_BYTES} bytes, got {}",
                fault.proof.len()
            )));
        }
        let offender = fault.offender_address();
        if offender == *reporter {
            return Err(TxError::BadEvidence("a validator cannot report itself".into()));
        }
        if let Some(t) = self.consensus_tombstones.get(&offender) {
            return Err(TxError::Tombstoned { offender, height: t.height });
        }
        let target = StakeTarget::NETWORK;
        let slash = self.slash(
            &offender,
            &target,
            params.consensus_fault_slash,
            Some(reporter),
            &format!(
                "consensus fault: {} in epoch {} view {}",
                fault.kind, fault.epoch, fault.view
            ),
            params,
            events,
        )?;
        if slash.total.is_zero() {
            // Nothing at stake (never staked, or everything released): an unstaked key is no
            // validator. The evidence is refused and the transaction rolls back.
            return Err(TxError::BadEvidence(format!("{offender} has no network stake to slash")));
        }
        self.consensus_tombstones.insert(
            offender,
            Tombstone {
                kind: fault.kind,
                epoch: fault.epoch,
                view: fault.view,
                height: now,
                reporter: *reporter,
                slashed: slash.total,
            },
        );
        Ok(())
    }

    /// The offender record of a tombstoned validator.
    pub fn tombstone(&self, validator: &Address) -> Option<Tombstone> {
        self.consensus_tombstones.get(validator).cloned()
    }

    /// Whether `staker` may bond network stake (not tombstoned).
    pub(crate) fn check_not_tombstoned(
        &self,
        staker: &Address,
        target: &StakeTarget,
    ) -> Result<(), TxError> {
        if *target != StakeTarget::NETWORK {
            return Ok(());
        }
        match self.consensus_tombstones.get(staker) {
            Some(t) => Err(TxError::Tombstoned { offender: *staker, height: t.height }),
            None => Ok(()),
        }
    }

    /// The staked validator set now (see the module docs for the rule).
    pub fn network_validators(&self, params: &Params) -> Vec<SetMember> {
        let target = StakeTarget::NETWORK;
        let mut set: Vec<SetMember> = self
            .stakes
            .iter()
            .filter(|((_, t), own)| *t == target && **own >= params.min_network_stake)
            .filter(|((a, _), _)| self.consensus_tombstones.get(a).is_none())
            .map(|((address, _), own)| SetMember {
                address: *address,
                own: *own,
                delegated: self.delegated_to(address, &target),
                key: self.consensus_endpoints.get(address).map(|e| e.key),
            })
            .collect();
        set.sort_by(|a, b| b.weight().cmp(&a.weight()).then(a.address.cmp(&b.address)));
        set.truncate(params.max_network_validators as usize);
        set
    }

    /// Records the staked set as the validator set of ledger epoch `epoch`.
    pub(crate) fn record_validator_set(&mut self, epoch: u64, params: &Params) {
        let set = self.network_validators(params);
        self.validator_sets.insert(epoch, set);
    }

    /// Registers the sender's consensus endpoint (its key is the signer's key).
    pub fn consensus_register(
        &mut self,
        sender: &Address,
        key: PublicKey,
        endpoint: &str,
        now: Height,
    ) -> Result<(), TxError> {
        check_endpoint(endpoint)?;
        if let Some(t) = self.consensus_tombstones.get(sender) {
            return Err(TxError::Tombstoned { offender: *sender, height: t.height });
        }
        self.consensus_endpoints
            .insert(*sender, ConsensusEndpoint { key, endpoint: endpoint.to_owned(), height: now });
        Ok(())
    }

    /// The registered consensus endpoint of `a`.
    pub fn consensus_endpoint(&self, a: &Address) -> Option<ConsensusEndpoint> {
        self.consensus_endpoints.get(a).cloned()
    }

    /// Stores a dealer log of resharing round `round`, which must be the current ledger epoch
    /// (a late log cannot change a round already decided). One log per dealer and round. That
    /// the sender is a dealer of the round and the log is signed is the consensus layer's check
    /// (a BFT validator refuses a block with a log that is not; a node without an engine
    /// refuses dealer logs at the mempool).
    pub fn dkg_log(
        &mut self,
        sender: &Address,
        round: u64,
        log: &[u8],
        now: Height,
        params: &Params,
    ) -> Result<(), TxError> {
        check_dkg_log(log)?;
        let current = now.0.saturating_sub(1) / params.epoch_length.max(1);
        if round != current {
            return Err(TxError::Malformed(format!(
                "a dealer log for resharing round {round} in epoch {current} (a round's logs land in its own epoch)"
            )));
        }
        if self.dkg_logs.get(&(round, *sender)).is_some() {
            return Err(TxError::Malformed(format!(
                "{sender} already posted its dealer log for round {round}"
            )));
        }
        self.dkg_logs.insert((round, *sender), log.to_vec());
        Ok(())
    }

    /// Whether `dealer` posted its log for resharing round `round`.
    pub fn has_dkg_log(&self, round: u64, dealer: &Address) -> bool {
        self.dkg_logs.get(&(round, *dealer)).is_some()
    }

    /// The dealer logs of resharing round `round`, by dealer address.
    pub fn dkg_logs(&self, round: u64) -> Vec<(Address, Vec<u8>)> {
        self.dkg_logs
            .range((round, Address([0; 20]))..=(round, Address([0xff; 20])))
            .map(|((_, a), log)| (*a, log.clone()))
            .collect()
    }

    /// The validator set recorded for ledger epoch `epoch` (the staked set at the end of the
    /// previous epoch); `None` for epoch 0 and epochs not reached.
    pub fn validator_set(&self, epoch: u64) -> Option<Vec<SetMember>> {
        self.validator_sets.get(&epoch).cloned()
    }
}
