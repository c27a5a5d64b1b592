//! Signed transactions.

use crate::{error::TxError, params::Params};
use borsh::{BorshDeserialize, BorshSerialize};
use flock_primitives::{codec, Address, Amount, Hash, Keypair, Ppm, PublicKey, Signature};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A task id. Task 0 is the network itself (consensus validators).
pub type TaskId = u64;

/// The role a stake plays in a task. A staker holds at most one role per task.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A network (consensus) validator; task 0.
    Network,
    /// An AI Arena training node.
    TrainingNode,
    /// An AI Arena validator.
    Validator,
    /// An FL Alliance member.
    Member,
    /// A compute provider answering proof-of-compute challenges.
    Compute,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Network => "network",
            Self::TrainingNode => "training_node",
            Self::Validator => "validator",
            Self::Member => "member",
            Self::Compute => "compute",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "network" => Self::Network,
            "training_node" | "node" | "trainer" => Self::TrainingNode,
            "validator" => Self::Validator,
            "member" => Self::Member,
            "compute" => Self::Compute,
            _ => {
                return Err(format!(
                    "unknown role {s:?} (network, node, validator, member, compute)"
                ))
            }
        })
    }
}

/// What a stake is for: a task and a role in it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct StakeTarget {
    /// The task (0 = the network).
    pub task: TaskId,
    /// The role.
    pub role: Role,
}

impl StakeTarget {
    /// The network-validator target.
    pub const NETWORK: Self = Self { task: 0, role: Role::Network };
}

impl fmt::Display for StakeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}/{}", self.task, self.role)
    }
}

/// Which rewards a claim collects.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case", tag = "from")]
pub enum ClaimFrom {
    /// The signer's own rewards as a node, validator or member (operator claim fee).
    Own,
    /// The signer's share of an operator's delegation pool (delegator claim fee).
    Pool {
        /// The pool's operator.
        operator: Address,
    },
}

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum TxKind {
    /// Move FLOCK to another account.
    Transfer {
        /// Recipient.
        to: Address,
        /// Amount.
        amount: Amount,
    },
    /// Destroy FLOCK (counts against supply, never frees mint headroom).
    Burn {
        /// Amount.
        amount: Amount,
    },
    /// Bond FLOCK to a target.
    Stake {
        /// Task and role.
        target: StakeTarget,
        /// Amount.
        amount: Amount,
    },
    /// Start unbonding stake from a target (released after the unbonding delay).
    Unstake {
        /// Task and role.
        target: StakeTarget,
        /// Amount.
        amount: Amount,
    },
    /// Delegate FLOCK into an operator's pool.
    Delegate {
        /// The operator.
        operator: Address,
        /// Amount.
        amount: Amount,
    },
    /// Withdraw delegated FLOCK (released after the unbonding delay).
    Undelegate {
        /// The operator.
        operator: Address,
        /// Amount.
        amount: Amount,
    },
    /// Open the signer's delegation pool or change its operator share σ.
    SetShare {
        /// σ: the part of the delegation-attributable reward the operator keeps.
        share: Ppm,
    },
    /// Claim accrued rewards (a fee is burned).
    Claim {
        /// Own rewards or a pool share.
        #[serde(flatten)]
        from: ClaimFrom,
    },
    /// Open an AI Arena task (the deposit moves into its reward pool).
    ArenaCreate {
        /// The task.
        spec: Box<crate::arena::ArenaTaskSpec>,
    },
    /// Seal a submission in the train phase.
    ArenaCommit {
        /// Task.
        task: TaskId,
        /// `arena::submission_commitment(task, round, sender, artifact, salt)`.
        commitment: Hash,
    },
    /// Reveal the sealed submission in the reveal phase.
    ArenaReveal {
        /// Task.
        task: TaskId,
        /// The model artifact hash.
        artifact: Hash,
        /// The salt used in the commitment.
        salt: Hash,
    },
    /// The creator reveals the round's validation set in the reveal phase.
    ArenaRevealValidation {
        /// Task.
        task: TaskId,
        /// Artifact hash of the validation set.
        set_hash: Hash,
        /// The salt used in the commitment.
        salt: Hash,
    },
    /// A drawn validator seals its score in the validate-commit phase.
    ArenaScoreCommit {
        /// Task.
        task: TaskId,
        /// Submission index in the round.
        submission: u32,
        /// `arena::score_commitment(task, round, submission, sender, score, salt)`.
        commitment: Hash,
    },
    /// A drawn validator reveals its score in the validate-reveal phase.
    ArenaScoreReveal {
        /// Task.
        task: TaskId,
        /// Submission index in the round.
        submission: u32,
        /// The score (fixed point, millionths; `u64::MAX` = invalid model).
        score: crate::arena::Score,
        /// The salt used in the commitment.
        salt: Hash,
    },
    /// Open an FL Alliance task (the reward pool moves into it).
    AllianceCreate {
        /// The task.
        spec: Box<crate::alliance::AllianceTaskSpec>,
    },
    /// Join an FL Alliance task with a stake, in its join phase.
    AllianceJoin {
        /// Task.
        task: TaskId,
        /// Stake.
        amount: Amount,
    },
    /// A drawn proposer posts its update's artifact hash.
    AlliancePropose {
        /// Task.
        task: TaskId,
        /// The update artifact hash.
        update: Hash,
    },
    /// A drawn voter seals its vote.
    AllianceVoteCommit {
        /// Task.
        task: TaskId,
        /// `alliance::vote_commitment(task, round, sender, vote, salt)`.
        commitment: Hash,
    },
    /// A drawn voter reveals its vote.
    AllianceVoteReveal {
        /// Task.
        task: TaskId,
        /// The vote.
        vote: crate::alliance::Vote,
        /// The salt used in the commitment.
        salt: Hash,
    },
    /// A member of a secure-aggregation task publishes its public masking key (join phase).
    AllianceMaskKey {
        /// Task.
        task: TaskId,
        /// The key other proposers agree pair seeds with.
        key: flock_primitives::MaskPublicKey,
    },
    /// A proposer whose masked update was posted reveals its pair seeds with the drawn
    /// proposers that posted nothing, so voters can remove masks that no longer cancel
    /// (vote-commit phase).
    AllianceUnmask {
        /// Task.
        task: TaskId,
        /// `(dropped proposer, pair seed)`.
        reveals: Vec<(Address, Hash)>,
    },
    /// Evidence of an attributable consensus fault (reported by a BFT validator): slashes and
    /// tombstones the offender; the sender is paid the reporter's share.
    ConsensusEvidence {
        /// The fault.
        fault: Box<crate::consensus::ConsensusFault>,
    },
    /// Registers (or moves) the sender's consensus endpoint: its signing key is the
    /// transaction's signer key, `endpoint` the `host:port` its BFT node listens on for peers.
    /// A network validator without one is left out of the consensus committee.
    ConsensusRegister {
        /// `ip:port` of the validator's p2p listener.
        endpoint: String,
    },
    /// A dealer's signed log of a threshold-key resharing round (the consensus engine's
    /// encoding, checked by the consensus layer; the ledger bounds and stores it). Round `r`
    /// runs during ledger epoch `r`; the logs that land in it decide the next committee.
    DkgLog {
        /// The resharing round (the ledger epoch it runs in).
        round: u64,
        /// The encoded signed dealer log.
        log: Vec<u8>,
    },
    /// List a model on the marketplace; the sender becomes its owner.
    MarketList {
        /// The listing; its provenance claim is checked and filled in by the ledger.
        spec: Box<crate::market::ListingSpec>,
    },
    /// Change a listing's price, active flag or server (owner only; unset fields are kept).
    MarketUpdate {
        /// The listing.
        name: String,
        /// A new price.
        #[serde(default)]
        price: Option<crate::market::Pricing>,
        /// Serve it or not.
        #[serde(default)]
        active: Option<bool>,
        /// A new server account.
        #[serde(default)]
        server: Option<Address>,
    },
    /// Move FLOCK from the balance into the sender's credit escrow.
    MarketDeposit {
        /// Amount.
        amount: Amount,
    },
    /// Start withdrawing credit: unspendable at once, back in the balance after
    /// `market_withdraw_delay` blocks.
    MarketWithdraw {
        /// Amount.
        amount: Amount,
    },
    /// Bind the hash of an API key to the sender (a hash binds once, ever).
    MarketKeyCreate {
        /// Hash of the key's secret.
        key_hash: Hash,
        /// A label (at most 64 printable characters).
        label: String,
    },
    /// Revoke one of the sender's API keys.
    MarketKeyRevoke {
        /// Hash of the key's secret.
        key_hash: Hash,
    },
    /// A listing's server settles metered usage (a batch id settles once per listing).
    MarketSettle {
        /// The usage.
        batch: crate::market::UsageBatch,
    },
    /// Rate a listing the sender has paid for (1–5 stars; replaces its earlier rating).
    MarketRate {
        /// The listing.
        listing: String,
        /// Stars, 1 to 5.
        stars: u8,
    },
}

/// The signed part of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Transaction {
    /// The chain this transaction is for (replay protection across chains).
    pub chain_id: String,
    /// The signer's ed25519 public key; the sender is its address.
    pub signer: PublicKey,
    /// The signer's account nonce: exactly one more than its last transaction.
    pub nonce: u64,
    /// What it does.
    pub kind: TxKind,
}

/// A transaction with its signature.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedTx {
    /// The transaction.
    pub tx: Transaction,
    /// ed25519 over [`Transaction::signing_bytes`].
    pub signature: Signature,
}

const SIGNING_DOMAIN: &[u8] = b"flock tx v1\0";

impl Transaction {
    /// The bytes that are signed: a domain tag followed by the canonical encoding.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut b = SIGNING_DOMAIN.to_vec();
        b.extend(codec::encode(self));
        b
    }

    /// The sender's address.
    pub fn sender(&self) -> Address {
        self.signer.address()
    }

    /// Signs with `key` (whose public key must be `signer`).
    pub fn sign(self, key: &Keypair) -> SignedTx {
        let signature = key.sign(&self.signing_bytes());
        SignedTx { tx: self, signature }
    }
}

impl SignedTx {
    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes untrusted bytes with the size limit of `params`.
    pub fn decode(bytes: &[u8], params: &Params) -> Result<Self, TxError> {
        if bytes.len() > params.max_tx_bytes as usize {
            return Err(TxError::TooLarge { size: bytes.len(), max: params.max_tx_bytes as usize });
        }
        codec::decode_bounded("transaction", bytes, params.max_tx_bytes as usize)
            .map_err(|e| TxError::Malformed(e.to_string()))
    }

    /// The transaction hash: blake3 of the canonical bytes.
    pub fn hash(&self) -> Hash {
        Hash::of(&self.encode())
    }

    /// Checks everything that needs no state: size, chain id, amounts and the signature.
    pub fn check_stateless(&self, chain_id: &str, params: &Params) -> Result<(), TxError> {
        let size = self.encode().len();
        if size > params.max_tx_bytes as usize {
            return Err(TxError::TooLarge { size, max: params.max_tx_bytes as usize });
        }
        self.check_stateless_no_sig(chain_id)?;
        self.tx
            .signer
            .verify(&self.tx.signing_bytes(), &self.signature)
            .map_err(|_| TxError::BadSignature)
    }

    /// [`Self::check_stateless`] without the signature (for batch verification).
    pub fn check_stateless_no_sig(&self, chain_id: &str) -> Result<(), TxError> {
        if self.tx.chain_id != chain_id {
            return Err(TxError::WrongChainId {
                expected: chain_id.to_owned(),
                got: self.tx.chain_id.clone(),
            });
        }
        let amount = match &self.tx.kind {
            TxKind::Transfer { amount, .. }
            | TxKind::Burn { amount }
            | TxKind::Stake { amount, .. }
            | TxKind::Unstake { amount, .. }
            | TxKind::Delegate { amount, .. }
            | TxKind::Undelegate { amount, .. } => Some(*amount),
            TxKind::SetShare { share } => {
                share.check().map_err(|e| TxError::Malformed(e.to_string()))?;
                None
            }
            TxKind::ArenaCreate { spec } => Some(spec.deposit),
            TxKind::AllianceCreate { spec } => Some(spec.reward_pool),
            TxKind::AllianceJoin { amount, .. } => Some(*amount),
            TxKind::AlliancePropose { .. }
            | TxKind::AllianceVoteCommit { .. }
            | TxKind::AllianceVoteReveal { .. }
            | TxKind::AllianceMaskKey { .. }
            | TxKind::AllianceUnmask { .. } => None,
            TxKind::MarketDeposit { amount } | TxKind::MarketWithdraw { amount } => Some(*amount),
            TxKind::ConsensusEvidence { fault } => {
                let max = crate::consensus::MAX_FAULT_PROOF_BYTES;
                if fault.proof.is_empty() || fault.proof.len() > max {
                    return Err(TxError::BadEvidence(format!(
                        "the proof must be 1 to {max} bytes, got {}",
                        fault.proof.len()
                    )));
                }
                None
            }
            TxKind::ConsensusRegister { endpoint } => {
                crate::consensus::check_endpoint(endpoint)?;
                None
            }
            TxKind::DkgLog { log, .. } => {
                crate::consensus::check_dkg_log(log)?;
                None
            }
            TxKind::MarketList { .. }
            | TxKind::MarketUpdate { .. }
            | TxKind::MarketKeyCreate { .. }
            | TxKind::MarketKeyRevoke { .. }
            | TxKind::MarketSettle { .. }
            | TxKind::MarketRate { .. } => None,
            TxKind::Claim { .. }
            | TxKind::ArenaCommit { .. }
            | TxKind::ArenaReveal { .. }
            | TxKind::ArenaRevealValidation { .. }
            | TxKind::ArenaScoreCommit { .. }
            | TxKind::ArenaScoreReveal { .. } => None,
        };
        if amount.is_some_and(Amount::is_zero) {
            return Err(TxError::ZeroAmount);
        }
        Ok(())
    }
}
