//! AI Arena data: task specs, tasks, submissions, scores, round results.

use borsh::{BorshDeserialize, BorshSerialize};
use flock_primitives::{Address, Amount, Hash, Height, Ppm};
use serde::{Deserialize, Serialize};

/// What a task is scored on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Bits per byte on assistant tokens (lower is better).
    Bpb,
    /// Root mean squared error (lower is better).
    Rmse,
    /// Accuracy (higher is better).
    Accuracy,
}

impl Metric {
    /// Whether a lower value is a better model.
    pub const fn lower_is_better(self) -> bool {
        !matches!(self, Self::Accuracy)
    }
}

/// A metric value in fixed point: millionths of the metric's unit (`1.25 BPB = 1_250_000`).
/// [`Score::WORST`] marks an invalid, oversized or non-finite model.
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
#[serde(transparent)]
pub struct Score(pub u64);

impl Score {
    /// The worst possible score, whatever the metric.
    pub const WORST: Self = Self(u64::MAX);
    /// Fixed-point scale: one metric unit.
    pub const UNIT: u64 = 1_000_000;

    /// A sort key where smaller is better, for either metric direction; WORST sorts last.
    pub const fn badness(self, metric: Metric) -> u64 {
        if self.0 == u64::MAX {
            u64::MAX
        } else if metric.lower_is_better() {
            self.0
        } else {
            u64::MAX - 1 - self.0
        }
    }
}

/// Phase lengths of one round, in blocks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Phases {
    /// Train and commit submissions.
    pub train: u64,
    /// Reveal submissions; the creator reveals the round's validation set.
    pub reveal: u64,
    /// Assigned validators commit scores.
    pub validate_commit: u64,
    /// Validators reveal scores. The round settles at its last block.
    pub validate_reveal: u64,
}

impl Phases {
    /// Blocks per round.
    pub const fn round_length(&self) -> u64 {
        self.train + self.reveal + self.validate_commit + self.validate_reveal
    }
}

/// How a task's stake weighs in the split of the epoch emission (`stake^β`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum StakeWeight {
    /// β = 1: weight = stake (FLock's initial value).
    #[default]
    Linear,
    /// β = ½: weight = √stake, favouring smaller tasks.
    Sqrt,
}

/// What a creator asks for when opening a task.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ArenaTaskSpec {
    /// A short title.
    pub title: String,
    /// Artifact hash of the base model (its config, weights and tokenizer bundle).
    pub base_model: Hash,
    /// Artifact hash of the public training set.
    pub training_set: Hash,
    /// One commitment per round to the hidden validation set:
    /// `validation_commitment(task_creator, round, set_hash, salt)`.
    pub validation_commitments: Vec<Hash>,
    /// Largest allowed model (parameters); bigger submissions score WORST.
    pub max_params: u64,
    /// Context length the models are evaluated at.
    pub context_length: u32,
    /// The metric.
    pub metric: Metric,
    /// Phase lengths.
    pub phases: Phases,
    /// Minimum training-node stake.
    pub min_node_stake: Amount,
    /// Minimum validator stake.
    pub min_validator_stake: Amount,
    /// Ratio of the geometric rank series (rank i gets `ratio^i`).
    pub rank_ratio: Ppm,
    /// γ: each side's guaranteed floor in the node/validator split (≤ 50%).
    pub gamma: Ppm,
    /// δ: part of a node's reward paid at once; the rest vests until the task ends.
    pub delta: Ppm,
    /// Validators drawn per submission.
    pub validators_per_submission: u16,
    /// Creator's deposit, added to the task's reward pool.
    pub deposit: Amount,
}

/// Where a task is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Rounds are running (or about to start).
    Active,
    /// All rounds settled.
    Finished,
}

/// A task on the ledger.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ArenaTask {
    /// Task id (stake targets use it).
    pub id: u64,
    /// Creator.
    pub creator: Address,
    /// What was asked.
    pub spec: ArenaTaskSpec,
    /// First block of round 0.
    pub start: Height,
    /// Status.
    pub status: TaskStatus,
    /// Rewards waiting for the next settlement (deposit share + emission).
    pub pool: Amount,
    /// Deposit not yet released into rounds.
    pub deposit_left: Amount,
    /// Rounds settled so far.
    pub rounds_settled: u32,
}

/// The phase of a round at some height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    /// Before round 0.
    NotStarted,
    /// Training and committing.
    Train {
        /// The round.
        round: u32,
    },
    /// Revealing submissions and the validation set.
    Reveal {
        /// The round.
        round: u32,
    },
    /// Committing scores.
    ValidateCommit {
        /// The round.
        round: u32,
    },
    /// Revealing scores.
    ValidateReveal {
        /// The round.
        round: u32,
    },
    /// All rounds over.
    Ended,
}

impl Phase {
    /// A short name.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::NotStarted => "not_started",
            Self::Train { .. } => "train",
            Self::Reveal { .. } => "reveal",
            Self::ValidateCommit { .. } => "validate_commit",
            Self::ValidateReveal { .. } => "validate_reveal",
            Self::Ended => "ended",
        }
    }
}

impl ArenaTask {
    /// First block after the last round.
    pub fn end(&self) -> Height {
        let len = self.spec.phases.round_length();
        self.start.saturating_add(len.saturating_mul(u64::from(self.rounds())))
    }

    /// Number of rounds.
    pub fn rounds(&self) -> u32 {
        self.spec.validation_commitments.len() as u32
    }

    /// First block of `round`.
    pub fn round_start(&self, round: u32) -> Height {
        self.start.saturating_add(self.spec.phases.round_length().saturating_mul(u64::from(round)))
    }

    /// The phase at `h`.
    pub fn phase_at(&self, h: Height) -> Phase {
        if h < self.start {
            return Phase::NotStarted;
        }
        if h >= self.end() {
            return Phase::Ended;
        }
        let p = self.spec.phases;
        let len = p.round_length();
        let offset = h.0 - self.start.0;
        let round = (offset / len) as u32;
        let within = offset % len;
        if within < p.train {
            Phase::Train { round }
        } else if within < p.train + p.reveal {
            Phase::Reveal { round }
        } else if within < p.train + p.reveal + p.validate_commit {
            Phase::ValidateCommit { round }
        } else {
            Phase::ValidateReveal { round }
        }
    }

    /// First block of the validate-commit phase of `round` (when validators are drawn).
    pub fn validate_start(&self, round: u32) -> Height {
        let p = self.spec.phases;
        self.round_start(round).saturating_add(p.train + p.reveal)
    }

    /// Last block of `round` (when it settles).
    pub fn round_last_block(&self, round: u32) -> Height {
        Height(self.round_start(round + 1).0.saturating_sub(1))
    }
}

/// A sealed submission.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SubmissionCommit {
    /// `submission_commitment(task, round, node, artifact, salt)`.
    pub commitment: Hash,
    /// Height of the commit.
    pub height: Height,
    /// Global commit order (ties within a block).
    pub seq: u64,
}

/// A revealed submission.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Submission {
    /// The training node.
    pub node: Address,
    /// The model artifact's hash.
    pub artifact: Hash,
    /// When it was committed.
    pub commit_height: Height,
    /// Global commit order.
    pub commit_seq: u64,
}

/// One ranked submission in a round's result.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RankedSubmission {
    /// Index of the submission in its round.
    pub submission: u32,
    /// The training node.
    pub node: Address,
    /// The artifact.
    pub artifact: Hash,
    /// Consensus score (stake-weighted median of the revealed scores).
    pub score: Score,
    /// Reward (now + vested), before delegation split.
    pub reward: Amount,
    /// Set when this artifact duplicates an earlier commit (earns nothing).
    pub duplicate_of: Option<u32>,
}

/// A validator's outcome in a round.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ValidatorOutcome {
    /// The validator.
    pub validator: Address,
    /// Submissions assigned.
    pub assigned: u32,
    /// Scores revealed.
    pub revealed: u32,
    /// Mean agreement with consensus (100% = always on the consensus).
    pub quality: Ppm,
    /// Reward.
    pub reward: Amount,
    /// Slashed for missed reveals.
    pub slashed: Amount,
}

/// A settled round.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RoundResult {
    /// Reward budget of the round.
    pub budget: Amount,
    /// Paid to nodes.
    pub nodes_paid: Amount,
    /// Paid to validators.
    pub validators_paid: Amount,
    /// Carried to the next round (or the community pool after the last).
    pub carried: Amount,
    /// Submissions, best first (duplicates and unscored last).
    pub ranking: Vec<RankedSubmission>,
    /// Validators.
    pub validators: Vec<ValidatorOutcome>,
    /// Whether the creator revealed the validation set.
    pub validation_revealed: bool,
}

/// Arena counters.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct ArenaMeta {
    /// Next task id (ids start at 1; 0 is the network).
    pub next_task: u64,
    /// Global commit sequence.
    pub commit_seq: u64,
}

/// The commitment a training node publishes: binds the task, round and node, so nobody can
/// replay another node's commitment.
pub fn submission_commitment(
    task: u64,
    round: u32,
    node: &Address,
    artifact: &Hash,
    salt: &Hash,
) -> Hash {
    Hash::of_parts(
        "flock arena submission v1",
        &[&task.to_le_bytes(), &round.to_le_bytes(), &node.0, &artifact.0, &salt.0],
    )
}

/// The creator's commitment to a round's hidden validation set.
pub fn validation_commitment(creator: &Address, round: u32, set_hash: &Hash, salt: &Hash) -> Hash {
    Hash::of_parts(
        "flock arena validation v1",
        &[&creator.0, &round.to_le_bytes(), &set_hash.0, &salt.0],
    )
}

/// A validator's commitment to a score.
pub fn score_commitment(
    task: u64,
    round: u32,
    submission: u32,
    validator: &Address,
    score: Score,
    salt: &Hash,
) -> Hash {
    Hash::of_parts(
        "flock arena score v1",
        &[
            &task.to_le_bytes(),
            &round.to_le_bytes(),
            &submission.to_le_bytes(),
            &validator.0,
            &score.0.to_le_bytes(),
            &salt.0,
        ],
    )
}
