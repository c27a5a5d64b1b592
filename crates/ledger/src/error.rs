//! Typed errors.

use crate::tx::StakeTarget;
use flock_primitives::{Address, Amount, Height};
use thiserror::Error;

/// Why a transaction was refused. Every variant is the sender's fault (the transaction is
/// rejected or fails) except [`TxError::Internal`], which is a ledger bug.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxError {
    /// The bytes are not a transaction.
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// The encoded transaction is over the size limit.
    #[error("transaction is {size} bytes, over the limit of {max}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// The signature does not verify for the signer.
    #[error("bad signature: the signature does not match the signer's key")]
    BadSignature,
    /// The chain id is not this chain's.
    #[error("wrong chain id: this chain is {expected:?}, the transaction is for {got:?}")]
    WrongChainId {
        /// This chain.
        expected: String,
        /// The transaction's.
        got: String,
    },
    /// The nonce was already used.
    #[error("nonce {got} was already used (replay); the next nonce of {account} is {expected}")]
    NonceReplayed {
        /// The account.
        account: Address,
        /// The next valid nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The nonce skips ahead.
    #[error("nonce {got} leaves a gap; the next nonce of {account} is {expected}")]
    NonceGap {
        /// The account.
        account: Address,
        /// The next valid nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// An amount of zero.
    #[error("amount must be greater than zero")]
    ZeroAmount,
    /// Not enough spendable balance.
    #[error("insufficient balance: need {need}, have {have}")]
    InsufficientBalance {
        /// Required.
        need: Amount,
        /// Available.
        have: Amount,
    },
    /// The stake target does not exist.
    #[error("unknown stake target {0}")]
    UnknownTarget(StakeTarget),
    /// The target takes no new stake.
    #[error("{0} is closed to new stake")]
    TargetClosed(StakeTarget),
    /// A stake position would fall below the target's minimum.
    #[error("stake of {got} is below the minimum of {min} for {target}")]
    BelowMinimum {
        /// The target.
        target: StakeTarget,
        /// Minimum.
        min: Amount,
        /// What the position would be.
        got: Amount,
    },
    /// The staker already holds another role in this task.
    #[error("already staked as {existing} in task {task}; one role per task")]
    RoleConflict {
        /// The task.
        task: u64,
        /// The role already held.
        existing: crate::tx::Role,
    },
    /// The stake is locked until the target unlocks it.
    #[error("stake in {target} is locked until height {until}")]
    StakeLocked {
        /// The target.
        target: StakeTarget,
        /// When it unlocks.
        until: Height,
    },
    /// Unstaking more than is staked.
    #[error("insufficient stake in {target}: have {have}, asked {need}")]
    InsufficientStake {
        /// The target.
        target: StakeTarget,
        /// Staked.
        have: Amount,
        /// Asked.
        need: Amount,
    },
    /// The operator has no delegation pool.
    #[error("{0} has no delegation pool (the operator opens one with set-share)")]
    NoSuchPool(Address),
    /// Only staked accounts can open a pool.
    #[error("{0} has no stake, so it cannot run a delegation pool")]
    NotAnOperator(Address),
    /// σ outside the allowed range.
    #[error("share {got} is outside the allowed range {min}..={max}")]
    ShareOutOfRange {
        /// Asked.
        got: flock_primitives::Ppm,
        /// Minimum.
        min: flock_primitives::Ppm,
        /// Maximum.
        max: flock_primitives::Ppm,
    },
    /// σ was changed too recently.
    #[error("share was changed recently; next change allowed at height {until}")]
    ShareCooldown {
        /// When the next change is allowed.
        until: Height,
    },
    /// σ is frozen around a task deadline.
    #[error("share is frozen until height {until} around a deadline of {target}")]
    ShareFrozen {
        /// The target whose deadline freezes it.
        target: StakeTarget,
        /// When it thaws.
        until: Height,
    },
    /// A delegation below the minimum.
    #[error("delegation of {got} is below the minimum of {min}")]
    BelowMinDelegation {
        /// Minimum.
        min: Amount,
        /// Asked.
        got: Amount,
    },
    /// Undelegating too soon after the last deposit.
    #[error("delegation to {operator} is still bonding: undelegate allowed from height {until}")]
    DelegationLocked {
        /// The operator.
        operator: Address,
        /// From when it is allowed.
        until: Height,
    },
    /// Undelegating more than is delegated.
    #[error("insufficient delegation to {operator}: have {have}, asked {need}")]
    InsufficientDelegation {
        /// The operator.
        operator: Address,
        /// Delegated value.
        have: Amount,
        /// Asked.
        need: Amount,
    },
    /// The pool lost everything to slashing and takes no deposits.
    #[error("the pool of {0} was slashed to zero and takes no deposits")]
    PoolInsolvent(Address),
    /// Slashing left the pool's shares worth so little that this deposit would mint more
    /// shares than the pool can count.
    #[error(
        "the pool of {operator} was slashed so deeply that {amount} would mint more shares than \
         a pool can hold; delegate less"
    )]
    PoolShareLimit {
        /// The operator.
        operator: Address,
        /// The deposit asked.
        amount: Amount,
    },
    /// Nothing to claim.
    #[error("nothing to claim")]
    NothingToClaim,
    /// No such AI Arena task.
    #[error("no AI Arena task {0}")]
    UnknownTask(u64),
    /// A task spec that cannot run.
    #[error("invalid task: {0}")]
    InvalidTask(String),
    /// The action belongs to another phase.
    #[error("task {task} is in phase {actual}; this needs phase {expected}")]
    WrongPhase {
        /// The task.
        task: u64,
        /// The phase the action needs.
        expected: &'static str,
        /// The current phase.
        actual: &'static str,
    },
    /// The sender holds no stake in the needed role.
    #[error("{who} is not staked as {role} in task {task}")]
    NotStaked {
        /// Who.
        who: Address,
        /// The task.
        task: u64,
        /// The role needed.
        role: crate::tx::Role,
    },
    /// A second commit in the same round.
    #[error("already committed in round {round} of task {task}")]
    AlreadyCommitted {
        /// The task.
        task: u64,
        /// The round.
        round: u32,
    },
    /// A reveal without a commit.
    #[error("nothing was committed to reveal in round {round} of task {task}")]
    NoCommit {
        /// The task.
        task: u64,
        /// The round.
        round: u32,
    },
    /// A reveal that does not match the commitment.
    #[error("reveal does not match the commitment")]
    RevealMismatch,
    /// A second reveal.
    #[error("already revealed")]
    AlreadyRevealed,
    /// Only the task's creator may do this.
    #[error("only the creator of task {0} can reveal its validation set")]
    NotCreator(u64),
    /// No such submission in the round.
    #[error("no submission {submission} in round {round} of task {task}")]
    UnknownSubmission {
        /// The task.
        task: u64,
        /// The round.
        round: u32,
        /// The submission index.
        submission: u32,
    },
    /// The validator was not drawn for this submission.
    #[error(
        "{validator} was not drawn to validate submission {submission} (check the public draw)"
    )]
    NotAssigned {
        /// The validator.
        validator: Address,
        /// The submission.
        submission: u32,
    },
    /// The action does not fit the task's privacy mode (e.g. a proposal without a masking key).
    #[error("privacy mode: {0}")]
    PrivacyMode(String),
    /// No marketplace listing has this name.
    #[error("no marketplace listing {0:?}")]
    UnknownListing(String),
    /// A listing with this name already exists.
    #[error("a marketplace listing named {0:?} already exists")]
    ListingExists(String),
    /// A listing spec or update that cannot be accepted.
    #[error("invalid listing: {0}")]
    InvalidListing(String),
    /// Only the listing's owner may do this.
    #[error("only the owner of listing {0:?} can change it")]
    NotListingOwner(String),
    /// Only the listing's server may settle its usage.
    #[error("only the server of listing {listing:?} ({server}) can settle its usage")]
    NotListingServer {
        /// The listing.
        listing: String,
        /// Its server.
        server: Address,
    },
    /// The claimed provenance does not exist on the ledger.
    #[error("provenance not found: {0}")]
    ProvenanceNotFound(String),
    /// The lister had no part in the claimed round.
    #[error("only the task creator or a participant of round {round} of task {task} can list its model with that provenance")]
    NotProvenanceParty {
        /// The task.
        task: u64,
        /// The round.
        round: u32,
    },
    /// Not enough available credit in the escrow.
    #[error("insufficient escrow: need {need}, available {have}")]
    InsufficientEscrow {
        /// Required.
        need: Amount,
        /// Available.
        have: Amount,
    },
    /// Too many withdrawals in flight.
    #[error("at most {max} escrow withdrawals can be pending at once")]
    TooManyWithdrawals {
        /// Limit.
        max: u32,
    },
    /// The API key hash is already bound (keys bind once, ever).
    #[error("API key {0} is already bound")]
    ApiKeyExists(flock_primitives::Hash),
    /// No API key with this hash.
    #[error("no API key {0}")]
    UnknownApiKey(flock_primitives::Hash),
    /// Only the key's owner may do this.
    #[error("API key {0} belongs to another account")]
    NotKeyOwner(flock_primitives::Hash),
    /// The key is already revoked.
    #[error("API key {0} is already revoked")]
    ApiKeyRevoked(flock_primitives::Hash),
    /// An API key that cannot be bound (zero hash, bad label).
    #[error("invalid API key: {0}")]
    InvalidApiKey(String),
    /// Too many live API keys.
    #[error("at most {max} live API keys per account")]
    TooManyApiKeys {
        /// Limit.
        max: u32,
    },
    /// A usage batch that cannot be settled (size, duplicate keys, overflowing cost).
    #[error("invalid usage batch: {0}")]
    InvalidBatch(String),
    /// This batch id was already settled for the listing (nothing is charged twice).
    #[error("usage batch {batch} of listing {listing:?} was already settled")]
    BatchAlreadySettled {
        /// The listing.
        listing: String,
        /// The batch id.
        batch: flock_primitives::Hash,
    },
    /// Only consumers who paid for a listing may rate it.
    #[error("only consumers who paid for listing {0:?} can rate it")]
    NotACustomer(String),
    /// Stars outside 1..=5.
    #[error("a rating is 1 to 5 stars, got {0}")]
    InvalidRating(u8),
    /// Consensus evidence that does not hold.
    #[error("invalid consensus evidence: {0}")]
    BadEvidence(String),
    /// The validator was already punished for a consensus fault (it can never bond network
    /// stake again, and later evidence against it is refused).
    #[error("{offender} is tombstoned: it was slashed for a consensus fault at height {height}")]
    Tombstoned {
        /// The validator.
        offender: Address,
        /// Where the first evidence landed.
        height: Height,
    },
    /// An arithmetic overflow or broken invariant: a bug, never the sender's fault.
    #[error("internal ledger error: {0}")]
    Internal(&'static str),
}

impl TxError {
    /// A stable machine-readable code (used by the HTTP API).
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::PrivacyMode(_) => "privacy_mode",
            Self::TooLarge { .. } => "too_large",
            Self::BadSignature => "bad_signature",
            Self::WrongChainId { .. } => "wrong_chain_id",
            Self::NonceReplayed { .. } => "nonce_replayed",
            Self::NonceGap { .. } => "nonce_gap",
            Self::ZeroAmount => "zero_amount",
            Self::InsufficientBalance { .. } => "insufficient_balance",
            Self::UnknownTarget(_) => "unknown_target",
            Self::BadEvidence(_) => "bad_evidence",
            Self::Tombstoned { .. } => "tombstoned",
            Self::TargetClosed(_) => "target_closed",
            Self::BelowMinimum { .. } => "below_minimum",
            Self::RoleConflict { .. } => "role_conflict",
            Self::StakeLocked { .. } => "stake_locked",
            Self::InsufficientStake { .. } => "insufficient_stake",
            Self::NoSuchPool(_) => "no_such_pool",
            Self::NotAnOperator(_) => "not_an_operator",
            Self::ShareOutOfRange { .. } => "share_out_of_range",
            Self::ShareCooldown { .. } => "share_cooldown",
            Self::ShareFrozen { .. } => "share_frozen",
            Self::BelowMinDelegation { .. } => "below_min_delegation",
            Self::DelegationLocked { .. } => "delegation_locked",
            Self::InsufficientDelegation { .. } => "insufficient_delegation",
            Self::PoolInsolvent(_) => "pool_insolvent",
            Self::PoolShareLimit { .. } => "pool_share_limit",
            Self::NothingToClaim => "nothing_to_claim",
            Self::UnknownTask(_) => "unknown_task",
            Self::InvalidTask(_) => "invalid_task",
            Self::WrongPhase { .. } => "wrong_phase",
            Self::NotStaked { .. } => "not_staked",
            Self::AlreadyCommitted { .. } => "already_committed",
            Self::NoCommit { .. } => "no_commit",
            Self::RevealMismatch => "reveal_mismatch",
            Self::AlreadyRevealed => "already_revealed",
            Self::NotCreator(_) => "not_creator",
            Self::UnknownSubmission { .. } => "unknown_submission",
            Self::NotAssigned { .. } => "not_assigned",
            Self::UnknownListing(_) => "unknown_listing",
            Self::ListingExists(_) => "listing_exists",
            Self::InvalidListing(_) => "invalid_listing",
            Self::NotListingOwner(_) => "not_listing_owner",
            Self::NotListingServer { .. } => "not_listing_server",
            Self::ProvenanceNotFound(_) => "provenance_not_found",
            Self::NotProvenanceParty { .. } => "not_provenance_party",
            Self::InsufficientEscrow { .. } => "insufficient_escrow",
            Self::TooManyWithdrawals { .. } => "too_many_withdrawals",
            Self::ApiKeyExists(_) => "api_key_exists",
            Self::UnknownApiKey(_) => "unknown_api_key",
            Self::NotKeyOwner(_) => "not_key_owner",
            Self::ApiKeyRevoked(_) => "api_key_revoked",
            Self::InvalidApiKey(_) => "invalid_api_key",
            Self::TooManyApiKeys { .. } => "too_many_api_keys",
            Self::InvalidBatch(_) => "invalid_batch",
            Self::BatchAlreadySettled { .. } => "batch_already_settled",
            Self::NotACustomer(_) => "not_a_customer",
            Self::InvalidRating(_) => "invalid_rating",
            Self::Internal(_) => "internal",
        }
    }

    /// Whether the error is a node fault rather than the sender's.
    pub const fn is_internal(&self) -> bool {
        matches!(self, Self::Internal(_))
    }
}

/// Why a whole block was refused. The ledger state is untouched after any of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlockError {
    /// The header is for another chain.
    #[error("block is for chain {got:?}, this is {expected:?}")]
    WrongChainId {
        /// This chain.
        expected: String,
        /// The header's.
        got: String,
    },
    /// Not the next height.
    #[error("block height {got} is not the next height {expected}")]
    WrongHeight {
        /// The next height.
        expected: u64,
        /// The header's.
        got: u64,
    },
    /// The parent hash is not the last block's hash.
    #[error("block's parent {got} is not the last block {expected}")]
    WrongParent {
        /// The last block's hash.
        expected: flock_primitives::Hash,
        /// The header's.
        got: flock_primitives::Hash,
    },
    /// The block time went backwards.
    #[error("block time {got} ms is before the parent's {parent} ms")]
    TimeWentBack {
        /// The parent's time.
        parent: u64,
        /// The header's.
        got: u64,
    },
    /// The tx root does not match the transactions.
    #[error("tx root in the header does not match the transactions")]
    BadTxRoot,
    /// Too many transactions.
    #[error("block has {got} transactions, over the limit of {max}")]
    TooManyTxs {
        /// Count.
        got: usize,
        /// Limit.
        max: usize,
    },
    /// More consensus evidence than a block may carry (each proof costs every validator
    /// signature checks).
    #[error("block carries {got} consensus evidence transactions, over the limit of {max}")]
    TooMuchEvidence {
        /// Count.
        got: usize,
        /// Limit.
        max: usize,
    },
    /// A transaction that no honest proposer would include (bad signature, chain id, nonce).
    #[error("transaction {index} is invalid: {error}")]
    InvalidTx {
        /// Its index in the block.
        index: usize,
        /// Why.
        error: TxError,
    },
    /// The ledger hit an internal error while executing.
    #[error("internal ledger error in block: {0}")]
    Internal(&'static str),
}
