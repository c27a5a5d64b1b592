//! AI Arena transactions and block hooks.

use super::{
    draw::{draw_validators, RoundDraw},
    types::*,
};
use crate::{
    error::TxError,
    events::Event,
    params::Params,
    state::{State, TargetInfo},
    tx::{Role, StakeTarget},
};
use flock_primitives::{Address, Amount, Hash, Height, Ppm};

/// The two stake targets of a task.
pub fn node_target(task: u64) -> StakeTarget {
    StakeTarget { task, role: Role::TrainingNode }
}

/// The validator target of a task.
pub fn validator_target(task: u64) -> StakeTarget {
    StakeTarget { task, role: Role::Validator }
}

impl State {
    /// An AI Arena task.
    pub fn arena_task(&self, task: u64) -> Result<ArenaTask, TxError> {
        self.arena_tasks.get(&task).cloned().ok_or(TxError::UnknownTask(task))
    }

    /// Staked participants of a target with their effective stake (own + delegated), by address.
    pub fn target_stakers(&self, target: &StakeTarget) -> Vec<(Address, Amount)> {
        self.stakes
            .iter()
            .filter(|((_, t), _)| t == target)
            .map(|((a, _), own)| (*a, Amount(own.0.saturating_add(self.delegated_to(a, target).0))))
            .collect()
    }

    /// The next task id, shared by every product (ids start at 1; 0 is the network).
    pub fn allocate_task_id(&mut self) -> u64 {
        let mut meta = self.arena_meta.get(&()).cloned().unwrap_or_default();
        let id = meta.next_task.max(1);
        meta.next_task = id + 1;
        self.arena_meta.insert((), meta);
        id
    }

    /// Opens an AI Arena task; returns its id.
    pub fn arena_create(
        &mut self,
        creator: &Address,
        spec: &ArenaTaskSpec,
        now: Height,
        params: &Params,
        ev: &mut Vec<Event>,
    ) -> Result<u64, TxError> {
        validate_spec(spec, params)?;
        self.debit(creator, spec.deposit)?;
        let id = self.allocate_task_id();
        let task = ArenaTask {
            id,
            creator: *creator,
            spec: spec.clone(),
            start: now.next(),
            status: TaskStatus::Active,
            pool: Amount::ZERO,
            deposit_left: spec.deposit,
            rounds_settled: 0,
        };
        let end = task.end();
        // σ is frozen around the deadline (FLock freezes it days before and after): from the
        // last round's validation until the task ends.
        let freeze_from = task.validate_start(task.rounds() - 1);
        for (target, min) in [
            (node_target(id), spec.min_node_stake),
            (validator_target(id), spec.min_validator_stake),
        ] {
            self.register_target(
                target,
                TargetInfo {
                    min_stake: min,
                    unlock_at: end,
                    open: true,
                    share_freeze: Some((freeze_from, end)),
                    total_stake: Amount::ZERO,
                },
            );
        }
        ev.push(Event::ArenaTaskCreated {
            task: id,
            creator: *creator,
            title: spec.title.clone(),
            start: task.start,
            end,
            deposit: spec.deposit,
        });
        self.arena_tasks.insert(id, task);
        Ok(id)
    }

    fn phase_round(
        &self,
        task: &ArenaTask,
        now: Height,
        want: &'static str,
    ) -> Result<u32, TxError> {
        let phase = task.phase_at(now);
        let round = match phase {
            Phase::Train { round }
            | Phase::Reveal { round }
            | Phase::ValidateCommit { round }
            | Phase::ValidateReveal { round }
                if phase.name() == want =>
            {
                round
            }
            _ => {
                return Err(TxError::WrongPhase {
                    task: task.id,
                    expected: want,
                    actual: phase.name(),
                })
            }
        };
        Ok(round)
    }

    fn require_stake(&self, who: &Address, target: StakeTarget) -> Result<(), TxError> {
        if self.own_stake(who, &target).is_zero() {
            return Err(TxError::NotStaked { who: *who, task: target.task, role: target.role });
        }
        Ok(())
    }

    /// Seals a submission: `commitment = submission_commitment(task, round, node, artifact, salt)`.
    pub fn arena_commit(
        &mut self,
        node: &Address,
        task_id: u64,
        commitment: Hash,
        now: Height,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let task = self.arena_task(task_id)?;
        let round = self.phase_round(&task, now, "train")?;
        self.require_stake(node, node_target(task_id))?;
        let key = (task_id, round, *node);
        if self.arena_commits.contains(&key) {
            return Err(TxError::AlreadyCommitted { task: task_id, round });
        }
        let mut meta = self.arena_meta.get(&()).cloned().unwrap_or_default();
        meta.commit_seq += 1;
        let seq = meta.commit_seq;
        self.arena_meta.insert((), meta);
        self.arena_commits.insert(key, SubmissionCommit { commitment, height: now, seq });
        ev.push(Event::SubmissionCommitted { task: task_id, round, node: *node });
        Ok(())
    }

    /// Reveals a sealed submission.
    pub fn arena_reveal(
        &mut self,
        node: &Address,
        task_id: u64,
        artifact: Hash,
        salt: Hash,
        now: Height,
        ev: &mut Vec<Event>,
    ) -> Result<u32, TxError> {
        let task = self.arena_task(task_id)?;
        let round = self.phase_round(&task, now, "reveal")?;
        let commit = self
            .arena_commits
            .get(&(task_id, round, *node))
            .cloned()
            .ok_or(TxError::NoCommit { task: task_id, round })?;
        if submission_commitment(task_id, round, node, &artifact, &salt) != commit.commitment {
            return Err(TxError::RevealMismatch);
        }
        let existing = self.round_submissions(task_id, round);
        if existing.iter().any(|(_, s)| s.node == *node) {
            return Err(TxError::AlreadyRevealed);
        }
        let index = existing.len() as u32;
        self.arena_submissions.insert(
            (task_id, round, index),
            Submission {
                node: *node,
                artifact,
                commit_height: commit.height,
                commit_seq: commit.seq,
            },
        );
        ev.push(Event::SubmissionRevealed {
            task: task_id,
            round,
            submission: index,
            node: *node,
            artifact,
        });
        Ok(index)
    }

    /// The revealed submissions of a round, in reveal order.
    pub fn round_submissions(&self, task: u64, round: u32) -> Vec<(u32, Submission)> {
        self.arena_submissions
            .range((task, round, 0)..=(task, round, u32::MAX))
            .map(|((_, _, i), s)| (*i, s.clone()))
            .collect()
    }

    /// The creator reveals the current round's validation set.
    pub fn arena_reveal_validation(
        &mut self,
        creator: &Address,
        task_id: u64,
        set_hash: Hash,
        salt: Hash,
        now: Height,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let task = self.arena_task(task_id)?;
        if task.creator != *creator {
            return Err(TxError::NotCreator(task_id));
        }
        let round = self.phase_round(&task, now, "reveal")?;
        if self.arena_validation.contains(&(task_id, round)) {
            return Err(TxError::AlreadyRevealed);
        }
        let expected = task.spec.validation_commitments[round as usize];
        if validation_commitment(creator, round, &set_hash, &salt) != expected {
            return Err(TxError::RevealMismatch);
        }
        self.arena_validation.insert((task_id, round), set_hash);
        ev.push(Event::ValidationSetRevealed { task: task_id, round, set_hash });
        Ok(())
    }

    /// A validator seals its score for an assigned submission.
    pub fn arena_score_commit(
        &mut self,
        validator: &Address,
        task_id: u64,
        submission: u32,
        commitment: Hash,
        now: Height,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let task = self.arena_task(task_id)?;
        let round = self.phase_round(&task, now, "validate_commit")?;
        self.check_assigned(validator, task_id, round, submission)?;
        let key = (task_id, round, submission, *validator);
        if self.arena_score_commits.contains(&key) {
            return Err(TxError::AlreadyCommitted { task: task_id, round });
        }
        self.arena_score_commits.insert(key, commitment);
        ev.push(Event::ScoreCommitted { task: task_id, round, submission, validator: *validator });
        Ok(())
    }

    fn check_assigned(
        &self,
        v: &Address,
        task: u64,
        round: u32,
        submission: u32,
    ) -> Result<(), TxError> {
        let assigned = self
            .arena_assignments
            .get(&(task, round, submission))
            .ok_or(TxError::UnknownSubmission { task, round, submission })?;
        if !assigned.contains(v) {
            return Err(TxError::NotAssigned { validator: *v, submission });
        }
        Ok(())
    }

    /// A validator reveals its sealed score.
    #[allow(clippy::too_many_arguments)]
    pub fn arena_score_reveal(
        &mut self,
        validator: &Address,
        task_id: u64,
        submission: u32,
        score: Score,
        salt: Hash,
        now: Height,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let task = self.arena_task(task_id)?;
        let round = self.phase_round(&task, now, "validate_reveal")?;
        self.check_assigned(validator, task_id, round, submission)?;
        let key = (task_id, round, submission, *validator);
        let commitment = *self
            .arena_score_commits
            .get(&key)
            .ok_or(TxError::NoCommit { task: task_id, round })?;
        if self.arena_scores.contains(&key) {
            return Err(TxError::AlreadyRevealed);
        }
        if score_commitment(task_id, round, submission, validator, score, &salt) != commitment {
            return Err(TxError::RevealMismatch);
        }
        self.arena_scores.insert(key, score);
        ev.push(Event::ScoreRevealed {
            task: task_id,
            round,
            submission,
            validator: *validator,
            score: score.0,
        });
        Ok(())
    }

    /// Block start: draws validators for every task whose validate phase opens at `now`,
    /// using `seed`, the block's seed.
    pub fn arena_begin_block(&mut self, now: Height, seed: Hash, ev: &mut Vec<Event>) {
        let tasks: Vec<ArenaTask> = self
            .arena_tasks
            .iter()
            .filter(|(_, t)| t.status == TaskStatus::Active)
            .map(|(_, t)| t.clone())
            .collect();
        for task in tasks {
            let Phase::ValidateCommit { round } = task.phase_at(now) else { continue };
            if task.validate_start(round) != now || self.arena_draws.contains(&(task.id, round)) {
                continue;
            }
            let mut candidates = self.target_stakers(&validator_target(task.id));
            candidates.sort_by_key(|(a, _)| *a);
            let draw =
                RoundDraw { height: now, seed, candidates, k: task.spec.validators_per_submission };
            let mut assignments = Vec::new();
            for (i, _) in self.round_submissions(task.id, round) {
                let vs = draw_validators(&draw, task.id, round, i);
                self.arena_assignments.insert((task.id, round, i), vs.clone());
                assignments.push((i, vs));
            }
            self.arena_draws.insert((task.id, round), draw);
            ev.push(Event::ValidatorsDrawn { task: task.id, round, seed, assignments });
        }
    }

    /// Block end: settles every round whose last block is `now`.
    pub fn arena_end_block(
        &mut self,
        now: Height,
        params: &Params,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let due: Vec<(u64, u32)> = self
            .arena_tasks
            .iter()
            .filter(|(_, t)| t.status == TaskStatus::Active)
            .filter_map(|(id, t)| match t.phase_at(now) {
                Phase::ValidateReveal { round } if t.round_last_block(round) == now => {
                    Some((*id, round))
                }
                _ => None,
            })
            .collect();
        for (task, round) in due {
            self.arena_settle(task, round, now, params, ev)?;
        }
        Ok(())
    }
}

fn validate_spec(s: &ArenaTaskSpec, params: &Params) -> Result<(), TxError> {
    let bad = |m: String| Err(TxError::InvalidTask(m));
    let rounds = s.validation_commitments.len();
    if rounds == 0 || rounds > params.arena_max_rounds as usize {
        return bad(format!(
            "rounds must be 1..={} (one validation commitment per round)",
            params.arena_max_rounds
        ));
    }
    let p = s.phases;
    for (name, len) in [
        ("train", p.train),
        ("reveal", p.reveal),
        ("validate_commit", p.validate_commit),
        ("validate_reveal", p.validate_reveal),
    ] {
        if len == 0 || len > params.arena_max_phase_blocks {
            return bad(format!(
                "phase {name} must last 1..={} blocks",
                params.arena_max_phase_blocks
            ));
        }
    }
    if s.title.is_empty() || s.title.len() > 200 {
        return bad("title must be 1 to 200 characters".into());
    }
    for (name, r) in [("rank_ratio", s.rank_ratio), ("gamma", s.gamma), ("delta", s.delta)] {
        r.check().map_err(|e| TxError::InvalidTask(format!("{name}: {e}")))?;
    }
    if s.gamma > Ppm::from_ppm(500_000).unwrap_or(Ppm::ZERO) {
        return bad("gamma must be at most 50%".into());
    }
    if s.rank_ratio == Ppm::ZERO {
        return bad("rank_ratio must be above 0".into());
    }
    if s.validators_per_submission == 0 {
        return bad("validators_per_submission must be at least 1".into());
    }
    if s.max_params == 0 || s.context_length == 0 {
        return bad("max_params and context_length must be above 0".into());
    }
    if s.deposit < params.arena_min_deposit {
        return bad(format!(
            "deposit {} is below the minimum of {}",
            s.deposit, params.arena_min_deposit
        ));
    }
    if s.min_node_stake.is_zero() || s.min_validator_stake.is_zero() {
        return bad("stake minimums must be above 0".into());
    }
    Ok(())
}
