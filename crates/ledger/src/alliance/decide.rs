//! Deciding a round: stake-weighted tally, adoption, rewards and slashing.
//!
//! ```text
//! tally = Σ stake(v) × (+1 accept | −1 reject) over revealed votes
//! accepted ⇔ some proposal, some revealed vote, and tally ≥ 0
//! adopted  = the aggregate hash with the most accepting stake (ties: smallest hash)
//! budget   = pool / rounds left (all of it in the last round)
//! accepted: proposers share budget × proposer_share by stake × (1 − penalty);
//!           voters who accepted the adopted hash share the rest by stake; proposals the
//!           robust rule mostly discarded (penalty ≥ 90%) are unpaid and slashed;
//!           voters who rejected are slashed
//! rejected: proposers are slashed; voters who rejected share the voters' part; accepting
//!           voters are slashed; the proposers' part is carried
//! missed reveals are slashed; members left under the minimum stake are removed
//! ```

use super::{handler::member_target, types::*};
use crate::{
    arena::pro_rata, error::TxError, events::Event, params::Params, rewards::Vesting, state::State,
};
use flock_primitives::{Address, Amount, Hash, Height, Ppm};
use std::collections::BTreeMap;

/// A proposal whose update the aggregation rule discarded at least this much (trimmed
/// coordinates, or dropped whole by multi-Krum) is treated as rejected: unpaid and slashed.
pub const MOSTLY_DISCARDED: Ppm = Ppm::saturating(900_000);

impl State {
    /// Decides `round` of `task_id` at its last block.
    pub fn alliance_decide(
        &mut self,
        task_id: u64,
        round: u32,
        now: Height,
        params: &Params,
        ev: &mut Vec<Event>,
    ) -> Result<AllianceRound, TxError> {
        let mut task = self.alliance_task(task_id)?;
        let target = member_target(task_id);
        let draw = self.alliance_draws.get(&(task_id, round)).cloned().unwrap_or(RoleDraw {
            height: now,
            seed: Hash::ZERO,
            members: vec![],
        });
        let stake_of: BTreeMap<Address, Amount> = draw.members.iter().map(|m| (m.0, m.1)).collect();
        let proposals: Vec<(Address, Hash)> = self
            .alliance_proposals
            .range((task_id, round, 0)..=(task_id, round, u32::MAX))
            .map(|(_, v)| *v)
            .collect();
        let voters: Vec<Address> =
            draw.members.iter().filter(|m| m.2 == MemberRole::Voter).map(|m| m.0).collect();
        let votes: Vec<(Address, Vote)> = voters
            .iter()
            .filter_map(|v| self.alliance_votes.get(&(task_id, round, *v)).map(|x| (*v, x.clone())))
            .collect();

        let mut tally: i128 = 0;
        let mut by_hash: BTreeMap<Hash, u128> = BTreeMap::new();
        for (v, vote) in &votes {
            let s = stake_of.get(v).copied().unwrap_or_default().0;
            let s = i128::try_from(s).unwrap_or(i128::MAX);
            tally = if vote.accept { tally.saturating_add(s) } else { tally.saturating_sub(s) };
            if vote.accept {
                *by_hash.entry(vote.aggregate).or_default() += s.unsigned_abs();
            }
        }
        let accepted = !proposals.is_empty() && !votes.is_empty() && tally >= 0;
        let adopted = if accepted {
            by_hash.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(h, _)| *h)
        } else {
            None
        };

        // Penalties reported by the adopted side (the heaviest such voter's report).
        let penalties: BTreeMap<u32, Ppm> = votes
            .iter()
            .filter(|(_, v)| accepted && Some(v.aggregate) == adopted)
            .max_by_key(|(a, _)| (stake_of.get(a).copied().unwrap_or_default(), *a))
            .map(|(_, v)| v.penalties.iter().copied().collect())
            .unwrap_or_default();
        let mut slashes: Vec<(Address, Amount, String)> = Vec::new();
        let mut slash = |s: &mut State,
                         who: &Address,
                         why: String,
                         ev: &mut Vec<Event>|
         -> Result<(), TxError> {
            let out = s.slash(who, &target, task.spec.slash_rate, None, &why, params, ev)?;
            slashes.push((*who, out.total, why));
            Ok(())
        };
        // Missed reveals.
        for v in &voters {
            if !votes.iter().any(|(x, _)| x == v) {
                slash(self, v, format!("voter missed its reveal in round {round}"), ev)?;
            }
        }
        // Secure aggregation: survivors that kept the seeds needed to unmask the sum.
        if task.spec.privacy == Privacy::SecureAggregation
            && !self.alliance_dropped(task_id, round).is_empty()
        {
            for (p, _) in &proposals {
                if !self.alliance_unmasks.contains(&(task_id, round, *p)) {
                    slash(
                        self,
                        p,
                        format!("did not reveal its masks for dropped proposers in round {round}"),
                        ev,
                    )?;
                }
            }
        }
        // The losing side.
        for (v, vote) in &votes {
            if vote.accept != accepted && !proposals.is_empty() {
                slash(
                    self,
                    v,
                    format!(
                        "voted {} in round {round}, which was {}",
                        if vote.accept { "accept" } else { "reject" },
                        if accepted { "accepted" } else { "rejected" }
                    ),
                    ev,
                )?;
            }
        }
        if !accepted && !votes.is_empty() {
            for (p, _) in &proposals {
                slash(self, p, format!("proposal rejected in round {round}"), ev)?;
            }
        }
        // In an accepted round, an update the robust rule mostly discarded counts as rejected.
        if accepted {
            for (i, (p, _)) in proposals.iter().enumerate() {
                let pen = penalties.get(&(i as u32)).copied().unwrap_or(Ppm::ZERO);
                if pen >= MOSTLY_DISCARDED {
                    slash(self, p, format!("update {i} was {pen} discarded by the aggregation rule in round {round}"), ev)?;
                }
            }
        }

        // Budget (after this round's slashes joined the pool).
        let slashed_in = self.task_pools.remove(&task_id).unwrap_or_default();
        task.pool = Amount(task.pool.0 + slashed_in.0);
        let rounds_left = task.spec.rounds.saturating_sub(task.rounds_done).max(1);
        let budget = if rounds_left == 1 {
            task.pool
        } else {
            Amount(task.pool.0 / u128::from(rounds_left))
        };
        let prop_part =
            if accepted { budget.mul_ppm(task.spec.proposer_share) } else { Amount::ZERO };
        let vote_part = if votes.is_empty() {
            Amount::ZERO
        } else {
            Amount(budget.0 - budget.mul_ppm(task.spec.proposer_share).0)
        };

        let mut rewards: Vec<(Address, Amount)> = Vec::new();
        if accepted {
            let w: Vec<u128> = proposals
                .iter()
                .enumerate()
                .map(|(i, (p, _))| {
                    let pen = penalties.get(&(i as u32)).copied().unwrap_or(Ppm::ZERO);
                    if pen >= MOSTLY_DISCARDED {
                        return 0;
                    }
                    stake_of.get(p).copied().unwrap_or_default().mul_ppm(pen.complement()).0
                        / Amount::UNIT
                })
                .collect();
            for ((p, _), pay) in proposals.iter().zip(pro_rata(prop_part, &w)) {
                rewards.push((*p, pay));
            }
        }
        let majority: Vec<&(Address, Vote)> = votes
            .iter()
            .filter(|(_, v)| v.accept == accepted && (!accepted || Some(v.aggregate) == adopted))
            .collect();
        let w: Vec<u128> = majority
            .iter()
            .map(|(a, _)| stake_of.get(a).copied().unwrap_or_default().0 / Amount::UNIT)
            .collect();
        for ((a, _), pay) in majority.iter().zip(pro_rata(vote_part, &w)) {
            rewards.push((*a, pay));
        }
        let mut paid = Amount::ZERO;
        for (a, pay) in rewards.iter_mut() {
            if pay.is_zero() || self.own_stake(a, &target).is_zero() {
                *pay = Amount::ZERO;
                continue;
            }
            self.pay_reward(a, &target, *pay, Vesting::NONE, now, ev)?;
            paid = Amount(paid.0 + pay.0);
        }
        task.pool = Amount(task.pool.0 - paid.0);

        // Members under the minimum stake leave.
        let mut removed = Vec::new();
        for (m, _) in self.alliance_members(task_id) {
            let own = self.own_stake(&m, &target);
            if own < task.spec.min_stake {
                self.force_unbond(&m, target, now, params, ev);
                removed.push(m);
            }
        }
        let mut scores: Vec<u64> = majority.iter().map(|(_, v)| v.score).collect();
        scores.sort_unstable();
        let score = scores.get(scores.len().saturating_sub(1) / 2).copied();
        if let Some(h) = adopted {
            task.global_model = h;
        }
        task.rounds_done = round + 1;
        let result = AllianceRound {
            accepted,
            tally,
            adopted,
            proposals,
            budget,
            rewards,
            slashes,
            removed,
            score,
        };
        ev.push(Event::RoundDecided {
            task: task_id,
            round,
            accepted,
            tally: tally.to_string(),
            adopted,
            global_model: task.global_model,
            paid,
        });
        if task.rounds_done >= task.spec.rounds {
            task.status = AllianceStatus::Finished;
            let rest = task.pool;
            task.pool = Amount::ZERO;
            self.credit_community_pool(rest)?;
            if let Some(mut info) = self.targets.get(&target).cloned() {
                info.unlock_at = now;
                self.register_target(target, info);
            }
            ev.push(Event::TaskFinished { task: task_id, returned: rest });
        }
        self.alliance_tasks.insert(task_id, task);
        self.alliance_rounds.insert((task_id, round), result.clone());
        Ok(result)
    }
}
