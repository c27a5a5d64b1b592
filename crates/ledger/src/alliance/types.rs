//! FL Alliance data.

use borsh::{BorshDeserialize, BorshSerialize};
use flock_primitives::{Address, Amount, Hash, Height, Ppm};
use serde::{Deserialize, Serialize};

/// How voters combine the proposers' updates (run off-chain by `flock-ml-core`,
/// deterministically, so honest voters agree on the aggregate's hash).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum Aggregation {
    /// Weighted federated averaging.
    Fedavg,
    /// Coordinate-wise median.
    Median,
    /// Coordinate-wise trimmed mean, dropping `trim` values at each end.
    TrimmedMean {
        /// Values trimmed from each end.
        trim: u32,
    },
    /// Multi-Krum: average the `m` updates closest to their neighbours, assuming `f` attackers.
    MultiKrum {
        /// Assumed attackers.
        f: u32,
        /// Updates averaged.
        m: u32,
    },
}

/// How updates are protected from voters.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Privacy {
    /// Voters see each update.
    Plaintext,
    /// Pairwise masking: voters see only the sum.
    SecureAggregation,
    /// Per-update clipping plus Gaussian noise.
    DifferentialPrivacy {
        /// Clip norm in millionths.
        clip_micro: u64,
        /// Noise multiplier σ / clip in millionths.
        noise_micro: u64,
    },
}

/// Phase lengths in blocks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct AlliancePhases {
    /// Members join (stake) before round 0.
    pub join: u64,
    /// Proposers train and post their update hash.
    pub propose: u64,
    /// Voters commit `(aggregate, vote, score)`.
    pub vote_commit: u64,
    /// Voters reveal; the round is decided at its last block.
    pub vote_reveal: u64,
}

impl AlliancePhases {
    /// Blocks per round.
    pub const fn round_length(&self) -> u64 {
        self.propose + self.vote_commit + self.vote_reveal
    }
}

/// What a creator asks for.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AllianceTaskSpec {
    /// Title.
    pub title: String,
    /// Artifact hash of the initial global model.
    pub model: Hash,
    /// Number of rounds.
    pub rounds: u32,
    /// Fewest members for the task to start.
    pub min_members: u32,
    /// Most members.
    pub max_members: u32,
    /// Minimum member stake (members slashed below it are removed).
    pub min_stake: Amount,
    /// ρ: probability of being drawn proposer.
    pub proposer_ratio: Ppm,
    /// Fraction of stake slashed for a losing vote, a rejected proposal or a missed reveal.
    pub slash_rate: Ppm,
    /// Part of each round's reward that goes to proposers (the rest to majority voters).
    pub proposer_share: Ppm,
    /// Creator-funded reward pool.
    pub reward_pool: Amount,
    /// Aggregation rule.
    pub aggregation: Aggregation,
    /// Privacy mode.
    pub privacy: Privacy,
    /// Phase lengths.
    pub phases: AlliancePhases,
}

/// Where a task is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AllianceStatus {
    /// Taking members.
    Joining,
    /// Rounds are running.
    Running,
    /// All rounds decided.
    Finished,
    /// Too few members joined; stakes and the pool were returned.
    Cancelled,
}

/// A task on the ledger.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AllianceTask {
    /// Task id (shared id space with AI Arena).
    pub id: u64,
    /// Creator.
    pub creator: Address,
    /// Spec.
    pub spec: AllianceTaskSpec,
    /// First block of the join phase.
    pub created: Height,
    /// Status.
    pub status: AllianceStatus,
    /// Current global model.
    pub global_model: Hash,
    /// Rewards not yet paid (pool + emission + slashes).
    pub pool: Amount,
    /// Rounds decided so far.
    pub rounds_done: u32,
}

/// A member's role in a round.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Trains and proposes an update.
    Proposer,
    /// Aggregates, evaluates and votes.
    Voter,
}

/// The public inputs and outcome of a round's role draw.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RoleDraw {
    /// Block whose seed was used.
    pub height: Height,
    /// The seed.
    pub seed: Hash,
    /// Members and their stake at the draw, sorted by address, with their role.
    pub members: Vec<(Address, Amount, MemberRole)>,
}

/// A revealed vote.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Vote {
    /// Hash of the aggregate the voter computed.
    pub aggregate: Hash,
    /// Accept (true) or reject.
    pub accept: bool,
    /// The voter's evaluation of the aggregate on its own data (fixed point, millionths,
    /// e.g. RMSE; informational).
    pub score: u64,
    /// Proposal indices the aggregation rule dropped or mostly trimmed, with the trimmed share.
    pub penalties: Vec<(u32, Ppm)>,
}

/// A decided round.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AllianceRound {
    /// Accepted?
    pub accepted: bool,
    /// Stake-weighted tally (accept minus reject), in base units; a decimal string in JSON.
    #[serde(with = "i128_string")]
    pub tally: i128,
    /// The adopted aggregate (accepted rounds).
    pub adopted: Option<Hash>,
    /// Proposals `(proposer, update hash)`.
    pub proposals: Vec<(Address, Hash)>,
    /// Reward budget.
    pub budget: Amount,
    /// `(member, reward)`.
    pub rewards: Vec<(Address, Amount)>,
    /// `(member, slashed, reason)`.
    pub slashes: Vec<(Address, Amount, String)>,
    /// Members removed for falling under the minimum stake.
    pub removed: Vec<Address>,
    /// Median of the majority voters' scores.
    pub score: Option<u64>,
}

/// The commitment a voter publishes.
pub fn vote_commitment(task: u64, round: u32, voter: &Address, vote: &Vote, salt: &Hash) -> Hash {
    let body = flock_primitives::codec::encode(vote);
    Hash::of_parts(
        "flock alliance vote v1",
        &[&task.to_le_bytes(), &round.to_le_bytes(), &voter.0, &body, &salt.0],
    )
}

/// The role of `member` in a draw with `seed` (proposer with probability `ratio`).
pub fn draw_role(seed: &Hash, task: u64, round: u32, member: &Address, ratio: Ppm) -> MemberRole {
    let h = Hash::of_parts(
        "flock alliance role v1",
        &[&seed.0, &task.to_le_bytes(), &round.to_le_bytes(), &member.0],
    );
    if h.prefix_u64() % 1_000_000 < u64::from(ratio.get()) {
        MemberRole::Proposer
    } else {
        MemberRole::Voter
    }
}

mod i128_string {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(super) fn serialize<S: Serializer>(v: &i128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}
