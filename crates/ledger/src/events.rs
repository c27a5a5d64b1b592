//! Events and receipts: every movement of money leaves one, so any node can audit supply.

use crate::tx::{ClaimFrom, StakeTarget};
use borsh::{BorshDeserialize, BorshSerialize};
use flock_primitives::{Address, Amount, Epoch, Hash, Height, Ppm};
use serde::{Deserialize, Serialize};

/// Why FLOCK was burned.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BurnReason {
    /// A user's burn transaction.
    User,
    /// A claim fee.
    ClaimFee,
    /// The burned part of a slash.
    Slash,
    /// The burned part of marketplace revenue.
    Market,
}

/// Something that happened to the ledger.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// FLOCK moved between accounts.
    Transfer {
        /// Sender.
        from: Address,
        /// Recipient.
        to: Address,
        /// Amount.
        amount: Amount,
    },
    /// FLOCK destroyed.
    Burn {
        /// Whose FLOCK (none for protocol burns).
        from: Option<Address>,
        /// Amount.
        amount: Amount,
        /// Why.
        reason: BurnReason,
    },
    /// FLOCK created by the epoch emission.
    Mint {
        /// The epoch.
        epoch: Epoch,
        /// Amount.
        amount: Amount,
    },
    /// A share of an epoch's emission handed to a product's recipient.
    EmissionShare {
        /// The product (sink name).
        sink: String,
        /// The recipient id within the product (e.g. a task).
        id: u64,
        /// Amount.
        amount: Amount,
    },
    /// Emission (or its rounding remainder) credited to the community pool.
    CommunityPool {
        /// Amount.
        amount: Amount,
    },
    /// Stake bonded.
    Staked {
        /// Staker.
        staker: Address,
        /// Target.
        target: StakeTarget,
        /// Amount.
        amount: Amount,
    },
    /// Stake started unbonding.
    Unstaked {
        /// Staker.
        staker: Address,
        /// Target.
        target: StakeTarget,
        /// Amount.
        amount: Amount,
        /// When it is released.
        release_at: Height,
    },
    /// Unbonded funds returned to the owner's balance.
    Released {
        /// Owner.
        owner: Address,
        /// Amount.
        amount: Amount,
    },
    /// A delegation pool was opened or its share changed.
    ShareSet {
        /// Operator.
        operator: Address,
        /// The new σ.
        share: Ppm,
    },
    /// FLOCK delegated into a pool.
    Delegated {
        /// Delegator.
        delegator: Address,
        /// Operator.
        operator: Address,
        /// Amount.
        amount: Amount,
        /// Pool shares minted for it (a decimal string in JSON).
        #[serde(with = "crate::state::u128_string")]
        shares: u128,
    },
    /// FLOCK withdrawn from a pool into unbonding.
    Undelegated {
        /// Delegator.
        delegator: Address,
        /// Operator.
        operator: Address,
        /// Amount.
        amount: Amount,
        /// When it is released.
        release_at: Height,
    },
    /// A reward credited to an operator (and its pool).
    Reward {
        /// The operator.
        operator: Address,
        /// Target earned in.
        target: StakeTarget,
        /// Operator's part paid now (claimable).
        operator_now: Amount,
        /// Operator's part vested until `release_at`.
        operator_vested: Amount,
        /// Delegators' part paid now into the pool.
        pool_now: Amount,
        /// Delegators' part vested until `release_at`.
        pool_vested: Amount,
        /// When the vested parts unlock.
        release_at: Height,
    },
    /// Stake slashed.
    Slashed {
        /// The offender.
        offender: Address,
        /// Target.
        target: StakeTarget,
        /// Fraction slashed.
        ratio: Ppm,
        /// Taken from the offender's bonded stake.
        from_stake: Amount,
        /// Taken from the offender's unbonding stake for this target.
        from_unbonding: Amount,
        /// Taken from the offender's delegators, pro rata.
        from_delegators: Amount,
        /// Paid to the reporter.
        to_reporter: Amount,
        /// The reporter, if any.
        reporter: Option<Address>,
        /// Paid into the task pool (the community pool for task 0).
        to_pool: Amount,
        /// Burned.
        burned: Amount,
        /// Why.
        reason: String,
    },
    /// An AI Arena task was opened.
    ArenaTaskCreated {
        /// Task id.
        task: u64,
        /// Creator.
        creator: Address,
        /// Title.
        title: String,
        /// First block of round 0.
        start: Height,
        /// First block after the last round.
        end: Height,
        /// Deposit moved into the task's pool.
        deposit: Amount,
    },
    /// A training node sealed a submission.
    SubmissionCommitted {
        /// Task.
        task: u64,
        /// Round.
        round: u32,
        /// Node.
        node: Address,
    },
    /// A training node revealed its submission.
    SubmissionRevealed {
        /// Task.
        task: u64,
        /// Round.
        round: u32,
        /// Index in the round.
        submission: u32,
        /// Node.
        node: Address,
        /// Model artifact.
        artifact: Hash,
    },
    /// The creator revealed a round's validation set.
    ValidationSetRevealed {
        /// Task.
        task: u64,
        /// Round.
        round: u32,
        /// Artifact hash of the set.
        set_hash: Hash,
    },
    /// Validators were drawn for a round's submissions.
    ValidatorsDrawn {
        /// Task.
        task: u64,
        /// Round.
        round: u32,
        /// The seed used.
        seed: Hash,
        /// `(submission, validators)`.
        assignments: Vec<(u32, Vec<Address>)>,
    },
    /// A validator sealed a score.
    ScoreCommitted {
        /// Task.
        task: u64,
        /// Round.
        round: u32,
        /// Submission.
        submission: u32,
        /// Validator.
        validator: Address,
    },
    /// A validator revealed a score.
    ScoreRevealed {
        /// Task.
        task: u64,
        /// Round.
        round: u32,
        /// Submission.
        submission: u32,
        /// Validator.
        validator: Address,
        /// The score (fixed point, millionths).
        score: u64,
    },
    /// A round was settled.
    RoundSettled {
        /// Task.
        task: u64,
        /// Round.
        round: u32,
        /// Budget.
        budget: Amount,
        /// Paid to nodes.
        nodes_paid: Amount,
        /// Paid to validators.
        validators_paid: Amount,
        /// Carried over.
        carried: Amount,
    },
    /// An FL Alliance task was opened.
    AllianceTaskCreated {
        /// Task id.
        task: u64,
        /// Creator.
        creator: Address,
        /// Title.
        title: String,
        /// First block of round 0 (joining closes).
        rounds_start: Height,
        /// First block after the last round.
        end: Height,
        /// Creator-funded pool.
        pool: Amount,
    },
    /// Too few members joined.
    AllianceCancelled {
        /// Task.
        task: u64,
        /// Members that had joined.
        members: u32,
        /// Pool returned to the creator.
        refunded: Amount,
    },
    /// Roles of a round were drawn.
    RolesDrawn {
        /// Task.
        task: u64,
        /// Round.
        round: u32,
        /// Seed.
        seed: Hash,
        /// Proposers.
        proposers: Vec<Address>,
        /// Voters.
        voters: Vec<Address>,
    },
    /// A member of a secure-aggregation task published its masking key.
    MaskKeyPublished {
        /// Task.
        task: u64,
        /// Member.
        member: Address,
    },
    /// A surviving proposer revealed its pair seeds with proposers that dropped out.
    MasksRevealed {
        /// Task.
        task: u64,
        /// Round.
        round: u32,
        /// The surviving proposer.
        proposer: Address,
        /// The dropped proposers it revealed seeds for.
        dropped: Vec<Address>,
    },
    /// A proposer posted its update.
    UpdateProposed {
        /// Task.
        task: u64,
        /// Round.
        round: u32,
        /// Index in the round.
        index: u32,
        /// Proposer.
        proposer: Address,
        /// Update artifact hash.
        update: Hash,
    },
    /// A voter sealed its vote.
    VoteCommitted {
        /// Task.
        task: u64,
        /// Round.
        round: u32,
        /// Voter.
        voter: Address,
    },
    /// A voter revealed its vote.
    VoteRevealed {
        /// Task.
        task: u64,
        /// Round.
        round: u32,
        /// Voter.
        voter: Address,
        /// Its aggregate's hash.
        aggregate: Hash,
        /// Accept or reject.
        accept: bool,
        /// Its evaluation (millionths).
        score: u64,
    },
    /// A federated round was decided.
    RoundDecided {
        /// Task.
        task: u64,
        /// Round.
        round: u32,
        /// Accepted?
        accepted: bool,
        /// Stake-weighted tally (decimal string: it may be negative).
        tally: String,
        /// Adopted aggregate.
        adopted: Option<Hash>,
        /// The global model after the round.
        global_model: Hash,
        /// Rewards paid.
        paid: Amount,
    },
    /// A task finished; what was left went to the community pool.
    TaskFinished {
        /// Task.
        task: u64,
        /// Returned to the community pool.
        returned: Amount,
    },
    /// Rewards claimed.
    Claimed {
        /// Claimant.
        account: Address,
        /// What was claimed.
        from: ClaimFrom,
        /// Before the fee.
        gross: Amount,
        /// Burned fee.
        fee: Amount,
        /// Paid to the balance.
        net: Amount,
    },
    /// A model was listed on the marketplace.
    MarketListed {
        /// The listing's name.
        name: String,
        /// Owner.
        owner: Address,
        /// Server account.
        server: Address,
        /// Model bundle artifact.
        artifact: Hash,
        /// Price.
        price: crate::market::Pricing,
        /// Provenance as the ledger recorded it.
        provenance: Option<crate::market::Provenance>,
    },
    /// A listing's price, active flag or server changed (the values after the change).
    MarketListingUpdated {
        /// The listing's name.
        name: String,
        /// Price.
        price: crate::market::Pricing,
        /// Served?
        active: bool,
        /// Server account.
        server: Address,
    },
    /// FLOCK moved from a balance into its credit escrow.
    MarketDeposited {
        /// The consumer.
        account: Address,
        /// Amount.
        amount: Amount,
    },
    /// An escrow withdrawal started.
    MarketWithdrawalStarted {
        /// The consumer.
        account: Address,
        /// Amount.
        amount: Amount,
        /// At the end of this block it returns to the balance.
        release_at: Height,
    },
    /// An escrow withdrawal returned to the balance (what settlements left of it).
    MarketWithdrawalReleased {
        /// The consumer.
        account: Address,
        /// Amount.
        amount: Amount,
    },
    /// An API key hash was bound to an account.
    MarketKeyCreated {
        /// Owner.
        owner: Address,
        /// Hash of the key.
        key_hash: Hash,
        /// Label.
        label: String,
    },
    /// An API key was revoked.
    MarketKeyRevoked {
        /// Owner.
        owner: Address,
        /// Hash of the key.
        key_hash: Hash,
    },
    /// A usage batch was settled.
    MarketSettled {
        /// The listing.
        listing: String,
        /// The batch id.
        batch: Hash,
        /// The server that posted it.
        server: Address,
        /// Charged from escrows in total.
        charged: Amount,
        /// What escrows could not pay, in total.
        shortfall: Amount,
        /// Burned (also reported as a `burn` event).
        burned: Amount,
        /// Revenue credited to balances: the owner first, then each provenance validator.
        payouts: Vec<(Address, Amount)>,
        /// Per entry: cost, charged, shortfall.
        charges: Vec<crate::market::UsageCharge>,
    },
    /// A consumer rated a listing.
    MarketRated {
        /// The listing.
        listing: String,
        /// The consumer.
        consumer: Address,
        /// Stars, 1 to 5.
        stars: u8,
    },
}

/// The outcome of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum TxStatus {
    /// Executed.
    Ok,
    /// Failed: the nonce was used, nothing else changed.
    Failed {
        /// A stable code.
        code: String,
        /// A readable message.
        message: String,
    },
}

/// A transaction's receipt.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Receipt {
    /// The transaction hash.
    pub tx_hash: Hash,
    /// The sender.
    pub sender: Address,
    /// Success or failure.
    #[serde(flatten)]
    pub status: TxStatus,
    /// What it did.
    pub events: Vec<Event>,
}

/// Everything a block did.
#[derive(
    Debug, Clone, PartialEq, Eq, Default, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct BlockReceipts {
    /// Events before the transactions (unbonding releases).
    pub begin: Vec<Event>,
    /// One receipt per transaction, in order.
    pub txs: Vec<Receipt>,
    /// Events after the transactions (emission).
    pub end: Vec<Event>,
}

impl BlockReceipts {
    /// All events in order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.begin
            .iter()
            .chain(self.txs.iter().flat_map(|r| r.events.iter()))
            .chain(self.end.iter())
    }
}
