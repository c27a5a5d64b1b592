//! The ledger's part in secure aggregation: members publish masking keys in the join phase;
//! proposers post masked updates (only their hashes reach the ledger); when a drawn proposer
//! posts nothing, each surviving proposer reveals the pair seed it shared with it, so voters can
//! remove the masks that no longer cancel. A survivor that does not reveal is slashed at the
//! round's decision (without its reveal the sum cannot be recovered).

use super::{handler::AlliancePhase, types::*};
use crate::{error::TxError, events::Event, state::State};
use flock_primitives::{Address, Hash, Height, MaskPublicKey};

/// Most reveals in one transaction (one per dropped proposer).
pub const MAX_UNMASK_REVEALS: usize = 1_000;

impl State {
    /// The published masking key of `member` in `task`.
    pub fn alliance_mask_key_of(&self, task: u64, member: &Address) -> Option<MaskPublicKey> {
        self.alliance_mask_keys.get(&(task, *member)).copied()
    }

    /// The dropout reveals posted in `round` of `task`, by surviving proposer.
    pub fn alliance_unmasks_of(
        &self,
        task: u64,
        round: u32,
    ) -> Vec<(Address, Vec<(Address, Hash)>)> {
        self.alliance_unmasks
            .range((task, round, Address([0; 20]))..=(task, round, Address([0xff; 20])))
            .map(|(k, v)| (k.2, v.clone()))
            .collect()
    }

    /// Drawn proposers of `round` that posted no update.
    pub fn alliance_dropped(&self, task: u64, round: u32) -> Vec<Address> {
        let Some(draw) = self.alliance_draws.get(&(task, round)) else { return vec![] };
        let posted: Vec<Address> = self
            .alliance_proposals
            .range((task, round, 0)..=(task, round, u32::MAX))
            .map(|(_, v)| v.0)
            .collect();
        draw.members
            .iter()
            .filter(|m| m.2 == MemberRole::Proposer && !posted.contains(&m.0))
            .map(|m| m.0)
            .collect()
    }

    /// A member publishes its masking key (secure-aggregation tasks, join phase).
    pub fn alliance_mask_key(
        &mut self,
        member: &Address,
        task_id: u64,
        key: MaskPublicKey,
        now: Height,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let task = self.alliance_task(task_id)?;
        if task.spec.privacy != Privacy::SecureAggregation {
            return Err(TxError::PrivacyMode(format!(
                "task {task_id} does not use secure aggregation; it takes no masking keys"
            )));
        }
        let phase = task.phase_at(now);
        if phase != AlliancePhase::Join {
            return Err(TxError::WrongPhase {
                task: task_id,
                expected: "join",
                actual: phase.name(),
            });
        }
        if !self.alliance_members(task_id).iter().any(|(a, _)| a == member) {
            return Err(TxError::NotStaked {
                who: *member,
                task: task_id,
                role: crate::tx::Role::Member,
            });
        }
        if !key.is_valid() {
            return Err(TxError::PrivacyMode(
                "the masking key is not a valid group element".into(),
            ));
        }
        self.alliance_mask_keys.insert((task_id, *member), key);
        ev.push(Event::MaskKeyPublished { task: task_id, member: *member });
        Ok(())
    }

    /// A surviving proposer reveals its pair seeds with the proposers that dropped out.
    pub fn alliance_unmask(
        &mut self,
        proposer: &Address,
        task_id: u64,
        reveals: &[(Address, Hash)],
        now: Height,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let task = self.alliance_task(task_id)?;
        if task.spec.privacy != Privacy::SecureAggregation {
            return Err(TxError::PrivacyMode(format!(
                "task {task_id} does not use secure aggregation; there are no masks to reveal"
            )));
        }
        let round = match task.phase_at(now) {
            AlliancePhase::VoteCommit { round } if task.status == AllianceStatus::Running => round,
            phase => {
                return Err(TxError::WrongPhase {
                    task: task_id,
                    expected: "vote_commit",
                    actual: phase.name(),
                })
            }
        };
        let posted = self
            .alliance_proposals
            .range((task_id, round, 0)..=(task_id, round, u32::MAX))
            .any(|(_, v)| v.0 == *proposer);
        if !posted {
            return Err(TxError::NotAssigned { validator: *proposer, submission: round });
        }
        if self.alliance_unmasks.contains(&(task_id, round, *proposer)) {
            return Err(TxError::AlreadyRevealed);
        }
        if reveals.len() > MAX_UNMASK_REVEALS {
            return Err(TxError::Malformed(format!(
                "{} reveals (at most {MAX_UNMASK_REVEALS})",
                reveals.len()
            )));
        }
        let mut dropped = self.alliance_dropped(task_id, round);
        dropped.sort();
        let mut named: Vec<Address> = reveals.iter().map(|r| r.0).collect();
        named.sort();
        if named != dropped {
            return Err(TxError::PrivacyMode(format!(
                "the reveals must name exactly the {} drawn proposer(s) that posted nothing",
                dropped.len()
            )));
        }
        self.alliance_unmasks.insert((task_id, round, *proposer), reveals.to_vec());
        ev.push(Event::MasksRevealed { task: task_id, round, proposer: *proposer, dropped: named });
        Ok(())
    }
}
