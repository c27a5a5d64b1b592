//! FL Alliance transactions and block hooks.

use super::types::*;
use crate::{
    error::TxError,
    events::Event,
    params::Params,
    state::{State, TargetInfo, UnbondSource},
    tx::{Role, StakeTarget},
};
use flock_primitives::{Address, Amount, Hash, Height, Ppm};

/// The member stake target of a task.
pub fn member_target(task: u64) -> StakeTarget {
    StakeTarget { task, role: Role::Member }
}

/// Where a task is at a height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum AlliancePhase {
    /// Members join.
    Join,
    /// Proposers post updates.
    Propose {
        /// Round.
        round: u32,
    },
    /// Voters commit.
    VoteCommit {
        /// Round.
        round: u32,
    },
    /// Voters reveal.
    VoteReveal {
        /// Round.
        round: u32,
    },
    /// Over.
    Ended,
}

impl AlliancePhase {
    /// A short name.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Propose { .. } => "propose",
            Self::VoteCommit { .. } => "vote_commit",
            Self::VoteReveal { .. } => "vote_reveal",
            Self::Ended => "ended",
        }
    }
}

impl AllianceTask {
    /// First block of round 0.
    pub fn rounds_start(&self) -> Height {
        self.created.saturating_add(self.spec.phases.join)
    }

    /// First block of `round`.
    pub fn round_start(&self, round: u32) -> Height {
        self.rounds_start()
            .saturating_add(self.spec.phases.round_length().saturating_mul(u64::from(round)))
    }

    /// First block after the last round.
    pub fn end(&self) -> Height {
        self.round_start(self.spec.rounds)
    }

    /// The phase at `h`.
    pub fn phase_at(&self, h: Height) -> AlliancePhase {
        if h < self.rounds_start() {
            return AlliancePhase::Join;
        }
        if h >= self.end()
            || matches!(self.status, AllianceStatus::Cancelled | AllianceStatus::Finished)
        {
            return AlliancePhase::Ended;
        }
        let p = self.spec.phases;
        let off = h.0 - self.rounds_start().0;
        let round = (off / p.round_length()) as u32;
        let within = off % p.round_length();
        if within < p.propose {
            AlliancePhase::Propose { round }
        } else if within < p.propose + p.vote_commit {
            AlliancePhase::VoteCommit { round }
        } else {
            AlliancePhase::VoteReveal { round }
        }
    }
}

impl State {
    /// An FL Alliance task.
    pub fn alliance_task(&self, task: u64) -> Result<AllianceTask, TxError> {
        self.alliance_tasks.get(&task).cloned().ok_or(TxError::UnknownTask(task))
    }

    /// Opens an FL Alliance task; the reward pool moves from the creator into the task.
    pub fn alliance_create(
        &mut self,
        creator: &Address,
        spec: &AllianceTaskSpec,
        now: Height,
        params: &Params,
        ev: &mut Vec<Event>,
    ) -> Result<u64, TxError> {
        validate(spec, params)?;
        self.debit(creator, spec.reward_pool)?;
        let id = self.allocate_task_id();
        let task = AllianceTask {
            id,
            creator: *creator,
            spec: spec.clone(),
            created: now.next(),
            status: AllianceStatus::Joining,
            global_model: spec.model,
            pool: spec.reward_pool,
            rounds_done: 0,
        };
        // Members join through `alliance_join`, which enforces the member cap.
        self.register_target(
            member_target(id),
            TargetInfo {
                min_stake: spec.min_stake,
                unlock_at: task.end(),
                open: false,
                share_freeze: None,
                total_stake: Amount::ZERO,
            },
        );
        ev.push(Event::AllianceTaskCreated {
            task: id,
            creator: *creator,
            title: spec.title.clone(),
            rounds_start: task.rounds_start(),
            end: task.end(),
            pool: spec.reward_pool,
        });
        self.alliance_tasks.insert(id, task);
        Ok(id)
    }

    /// Members of a task with their stake (own + delegated), by address.
    pub fn alliance_members(&self, task: u64) -> Vec<(Address, Amount)> {
        self.target_stakers(&member_target(task))
    }

    /// Joins a task in its join phase by staking.
    pub fn alliance_join(
        &mut self,
        member: &Address,
        task_id: u64,
        amount: Amount,
        now: Height,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let task = self.alliance_task(task_id)?;
        let phase = task.phase_at(now);
        if phase != AlliancePhase::Join {
            return Err(TxError::WrongPhase {
                task: task_id,
                expected: "join",
                actual: phase.name(),
            });
        }
        let members = self.alliance_members(task_id);
        let already = members.iter().any(|(a, _)| a == member);
        if !already && members.len() >= task.spec.max_members as usize {
            return Err(TxError::InvalidTask(format!(
                "task {task_id} already has its {} members",
                task.spec.max_members
            )));
        }
        self.stake_into(member, member_target(task_id), amount, true, ev)
    }

    fn alliance_round(
        &self,
        task: &AllianceTask,
        now: Height,
        want: &'static str,
    ) -> Result<u32, TxError> {
        let phase = task.phase_at(now);
        match phase {
            AlliancePhase::Propose { round }
            | AlliancePhase::VoteCommit { round }
            | AlliancePhase::VoteReveal { round }
                if phase.name() == want && task.status == AllianceStatus::Running =>
            {
                Ok(round)
            }
            _ => Err(TxError::WrongPhase { task: task.id, expected: want, actual: phase.name() }),
        }
    }

    fn role_of(&self, task: u64, round: u32, who: &Address) -> Option<MemberRole> {
        self.alliance_draws.get(&(task, round))?.members.iter().find(|m| m.0 == *who).map(|m| m.2)
    }

    /// A proposer posts the hash of its update (uploaded to the artifact store).
    pub fn alliance_propose(
        &mut self,
        proposer: &Address,
        task_id: u64,
        update: Hash,
        now: Height,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let task = self.alliance_task(task_id)?;
        let round = self.alliance_round(&task, now, "propose")?;
        if self.role_of(task_id, round, proposer) != Some(MemberRole::Proposer) {
            return Err(TxError::NotAssigned { validator: *proposer, submission: round });
        }
        let existing: Vec<_> = self
            .alliance_proposals
            .range((task_id, round, 0)..=(task_id, round, u32::MAX))
            .map(|(k, v)| (*k, *v))
            .collect();
        if existing.iter().any(|(_, (a, _))| a == proposer) {
            return Err(TxError::AlreadyCommitted { task: task_id, round });
        }
        if task.spec.privacy == Privacy::SecureAggregation
            && !self.alliance_mask_keys.contains(&(task_id, *proposer))
        {
            return Err(TxError::PrivacyMode(format!(
                "{proposer} published no masking key in the join phase of task {task_id}, so \
                 its update cannot be masked"
            )));
        }
        let index = existing.len() as u32;
        self.alliance_proposals.insert((task_id, round, index), (*proposer, update));
        ev.push(Event::UpdateProposed { task: task_id, round, index, proposer: *proposer, update });
        Ok(())
    }

    /// A voter seals its vote.
    pub fn alliance_vote_commit(
        &mut self,
        voter: &Address,
        task_id: u64,
        commitment: Hash,
        now: Height,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let task = self.alliance_task(task_id)?;
        let round = self.alliance_round(&task, now, "vote_commit")?;
        if self.role_of(task_id, round, voter) != Some(MemberRole::Voter) {
            return Err(TxError::NotAssigned { validator: *voter, submission: round });
        }
        if self.alliance_vote_commits.contains(&(task_id, round, *voter)) {
            return Err(TxError::AlreadyCommitted { task: task_id, round });
        }
        self.alliance_vote_commits.insert((task_id, round, *voter), commitment);
        ev.push(Event::VoteCommitted { task: task_id, round, voter: *voter });
        Ok(())
    }

    /// A voter reveals its sealed vote.
    #[allow(clippy::too_many_arguments)]
    pub fn alliance_vote_reveal(
        &mut self,
        voter: &Address,
        task_id: u64,
        vote: &Vote,
        salt: Hash,
        now: Height,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let task = self.alliance_task(task_id)?;
        let round = self.alliance_round(&task, now, "vote_reveal")?;
        let key = (task_id, round, *voter);
        let c = *self
            .alliance_vote_commits
            .get(&key)
            .ok_or(TxError::NoCommit { task: task_id, round })?;
        if self.alliance_votes.contains(&key) {
            return Err(TxError::AlreadyRevealed);
        }
        if vote.penalties.len() > 1_000 {
            return Err(TxError::Malformed("too many penalties in a vote".into()));
        }
        if vote_commitment(task_id, round, voter, vote, &salt) != c {
            return Err(TxError::RevealMismatch);
        }
        self.alliance_votes.insert(key, vote.clone());
        ev.push(Event::VoteRevealed {
            task: task_id,
            round,
            voter: *voter,
            aggregate: vote.aggregate,
            accept: vote.accept,
            score: vote.score,
        });
        Ok(())
    }

    /// Moves all of `staker`'s stake at `target` into unbonding, lock or not (removal).
    pub(crate) fn force_unbond(
        &mut self,
        staker: &Address,
        target: StakeTarget,
        now: Height,
        params: &Params,
        ev: &mut Vec<Event>,
    ) {
        let amount = self.own_stake(staker, &target);
        if amount.is_zero() {
            return;
        }
        self.stakes.remove(&(*staker, target));
        if let Some(mut info) = self.targets.get(&target).cloned() {
            info.total_stake = info.total_stake.saturating_sub(amount);
            self.targets.insert(target, info);
        }
        let release_at = now.saturating_add(params.unbonding_blocks);
        self.push_unbonding(*staker, amount, UnbondSource::Stake { target }, release_at);
        ev.push(Event::Unstaked { staker: *staker, target, amount, release_at });
    }

    /// Block start: starts or cancels tasks whose join phase ended, and draws roles for rounds
    /// that start at `now`.
    pub fn alliance_begin_block(
        &mut self,
        now: Height,
        seed: Hash,
        params: &Params,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let tasks: Vec<AllianceTask> = self
            .alliance_tasks
            .iter()
            .filter(|(_, t)| matches!(t.status, AllianceStatus::Joining | AllianceStatus::Running))
            .map(|(_, t)| t.clone())
            .collect();
        for mut task in tasks {
            if task.status == AllianceStatus::Joining && now >= task.rounds_start() {
                let members = self.alliance_members(task.id);
                if members.len() < task.spec.min_members as usize {
                    task.status = AllianceStatus::Cancelled;
                    for (m, _) in &members {
                        self.force_unbond(m, member_target(task.id), now, params, ev);
                    }
                    let refund = task.pool;
                    task.pool = Amount::ZERO;
                    self.credit(&task.creator, refund)?;
                    ev.push(Event::AllianceCancelled {
                        task: task.id,
                        members: members.len() as u32,
                        refunded: refund,
                    });
                    self.alliance_tasks.insert(task.id, task);
                    continue;
                }
                task.status = AllianceStatus::Running;
                self.alliance_tasks.insert(task.id, task.clone());
            }
            if task.status != AllianceStatus::Running {
                continue;
            }
            let AlliancePhase::Propose { round } = task.phase_at(now) else { continue };
            if task.round_start(round) != now || self.alliance_draws.contains(&(task.id, round)) {
                continue;
            }
            let draw = make_draw(
                &self.alliance_members(task.id),
                seed,
                task.id,
                round,
                task.spec.proposer_ratio,
                now,
            );
            ev.push(Event::RolesDrawn {
                task: task.id,
                round,
                seed,
                proposers: draw
                    .members
                    .iter()
                    .filter(|m| m.2 == MemberRole::Proposer)
                    .map(|m| m.0)
                    .collect(),
                voters: draw
                    .members
                    .iter()
                    .filter(|m| m.2 == MemberRole::Voter)
                    .map(|m| m.0)
                    .collect(),
            });
            self.alliance_draws.insert((task.id, round), draw);
        }
        Ok(())
    }

    /// Block end: decides every round whose last block is `now`.
    pub fn alliance_end_block(
        &mut self,
        now: Height,
        params: &Params,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let due: Vec<(u64, u32)> = self
            .alliance_tasks
            .iter()
            .filter(|(_, t)| t.status == AllianceStatus::Running)
            .filter_map(|(id, t)| match t.phase_at(now) {
                AlliancePhase::VoteReveal { round } if t.round_start(round + 1).0 == now.0 + 1 => {
                    Some((*id, round))
                }
                _ => None,
            })
            .collect();
        for (task, round) in due {
            self.alliance_decide(task, round, now, params, ev)?;
        }
        Ok(())
    }
}

/// The role draw of a round: each member by its hash under the round seed; at least one
/// proposer and one voter when there are two or more members. Anyone can recompute it.
pub fn make_draw(
    members: &[(Address, Amount)],
    seed: Hash,
    task: u64,
    round: u32,
    ratio: Ppm,
    height: Height,
) -> RoleDraw {
    let mut ms: Vec<(Address, Amount, MemberRole)> =
        members.iter().map(|(a, s)| (*a, *s, draw_role(&seed, task, round, a, ratio))).collect();
    ms.sort_by_key(|m| m.0);
    if ms.len() >= 2 {
        let key = |a: &Address| Hash::of_parts("flock alliance tiebreak v1", &[&seed.0, &a.0]);
        if ms.iter().all(|m| m.2 == MemberRole::Voter) {
            if let Some(m) = ms.iter_mut().min_by_key(|m| key(&m.0)) {
                m.2 = MemberRole::Proposer;
            }
        } else if ms.iter().all(|m| m.2 == MemberRole::Proposer) {
            if let Some(m) = ms.iter_mut().max_by_key(|m| key(&m.0)) {
                m.2 = MemberRole::Voter;
            }
        }
    }
    RoleDraw { height, seed, members: ms }
}

fn validate(s: &AllianceTaskSpec, params: &Params) -> Result<(), TxError> {
    let bad = |m: String| Err(TxError::InvalidTask(m));
    if s.title.is_empty() || s.title.len() > 200 {
        return bad("title must be 1 to 200 characters".into());
    }
    if s.rounds == 0 || s.rounds > params.arena_max_rounds * 10 {
        return bad(format!("rounds must be 1..={}", params.arena_max_rounds * 10));
    }
    if s.min_members < 2 || s.max_members < s.min_members || s.max_members > 1_000 {
        return bad("members: need 2 <= min_members <= max_members <= 1000".into());
    }
    let p = s.phases;
    for (name, len) in [
        ("join", p.join),
        ("propose", p.propose),
        ("vote_commit", p.vote_commit),
        ("vote_reveal", p.vote_reveal),
    ] {
        if len == 0 || len > params.arena_max_phase_blocks {
            return bad(format!(
                "phase {name} must last 1..={} blocks",
                params.arena_max_phase_blocks
            ));
        }
    }
    for (name, r) in [
        ("proposer_ratio", s.proposer_ratio),
        ("slash_rate", s.slash_rate),
        ("proposer_share", s.proposer_share),
    ] {
        r.check().map_err(|e| TxError::InvalidTask(format!("{name}: {e}")))?;
    }
    if s.proposer_ratio == Ppm::ZERO || s.proposer_ratio == Ppm::ONE {
        return bad("proposer_ratio must be strictly between 0% and 100%".into());
    }
    if s.min_stake.is_zero() {
        return bad("min_stake must be above 0".into());
    }
    if s.reward_pool < params.arena_min_deposit {
        return bad(format!(
            "reward_pool {} is below the minimum of {}",
            s.reward_pool, params.arena_min_deposit
        ));
    }
    match s.privacy {
        Privacy::Plaintext => {}
        // Voters see only the sum of masked updates: no per-update rule can run on it.
        Privacy::SecureAggregation if s.aggregation != Aggregation::Fedavg => {
            return bad("secure aggregation reveals only the sum: it needs the fedavg rule".into())
        }
        Privacy::SecureAggregation => {}
        Privacy::DifferentialPrivacy { clip_micro, noise_micro } => {
            if clip_micro == 0 || noise_micro == 0 {
                return bad(
                    "differential privacy needs a clip norm and a noise multiplier above 0".into(),
                );
            }
            if noise_micro > 100_000_000 || clip_micro > 1_000_000_000_000 {
                return bad(
                    "differential privacy: noise multiplier at most 100, clip norm at most 1e6"
                        .into(),
                );
            }
        }
    }
    match s.aggregation {
        Aggregation::TrimmedMean { trim: 0 } => return bad("trimmed mean needs trim >= 1".into()),
        Aggregation::MultiKrum { m: 0, .. } => return bad("multi-Krum needs m >= 1".into()),
        _ => {}
    }
    Ok(())
}
