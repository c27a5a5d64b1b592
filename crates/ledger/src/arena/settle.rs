//! Round settlement: consensus scores, ranking, rewards, slashing.
//!
//! ```text
//! budget = task pool (emission since the last settlement + slashes) + deposit / rounds left
//!   nodes      = budget × (γ + (1 − 2γ) × Σt / (Σt + Σs))     Σt, Σs: stake incl. delegation
//!   validators = budget − nodes
//! node i (rank i, best first, valid and original only):  w_i = ratio^i × stake_i
//! validator v:                                            w_v = stake_v × quality_v
//! reward = side × w / Σw (rounded down); the dust is carried to the next round
//! ```
//! Scores: a submission's consensus is the stake-weighted median of its validators' revealed
//! scores. A validator's quality for one score is `1 − distance / tolerance` (floored at 0),
//! with distance relative to the consensus; a missed reveal counts 0 and is slashed.

use super::{
    handler::{node_target, validator_target},
    types::*,
};
use crate::{error::TxError, events::Event, params::Params, rewards::Vesting, state::State};
use flock_primitives::{math::mul_div_floor, Address, Amount, Height, Ppm};
use std::collections::BTreeMap;

/// Stake-weighted median (the lower one on an exact split) of `(badness, score, stake)`.
pub fn weighted_median(mut votes: Vec<(u64, Score, u128)>) -> Option<Score> {
    votes.retain(|v| v.2 > 0);
    if votes.is_empty() {
        return None;
    }
    votes.sort_by_key(|v| (v.0, v.1));
    let total: u128 = votes.iter().map(|v| v.2).sum();
    let mut acc = 0u128;
    for (_, s, w) in &votes {
        acc += w;
        if acc * 2 >= total {
            return Some(*s);
        }
    }
    votes.last().map(|v| v.1)
}

/// Agreement of `score` with `consensus`: 100% on it, falling linearly to 0 at `tolerance`
/// relative distance. WORST agrees only with WORST.
pub fn score_quality(score: Score, consensus: Score, tolerance: Ppm) -> Ppm {
    if score == consensus {
        return Ppm::ONE;
    }
    if score == Score::WORST || consensus == Score::WORST {
        return Ppm::ZERO;
    }
    let diff = u128::from(score.0.abs_diff(consensus.0));
    let base = u128::from(consensus.0.max(1));
    // distance in ppm = diff / base; quality = 1 − distance / tolerance.
    let dist_ppm = mul_div_floor(diff, 1_000_000, base).unwrap_or(u128::MAX);
    let tol = u128::from(tolerance.get().max(1));
    if dist_ppm >= tol {
        return Ppm::ZERO;
    }
    let q = 1_000_000 - dist_ppm * 1_000_000 / tol;
    Ppm::from_ppm(q as u32).unwrap_or(Ppm::ZERO)
}

/// Splits `budget` between nodes and validators: `γ + (1 − 2γ) × Σt / (Σt + Σs)` to nodes.
pub fn side_split(
    budget: Amount,
    gamma: Ppm,
    node_stake: Amount,
    validator_stake: Amount,
) -> (Amount, Amount) {
    let total = node_stake.0.saturating_add(validator_stake.0);
    let floor = budget.mul_ppm(gamma);
    let variable = Amount(budget.0 - 2 * floor.0.min(budget.0 / 2));
    let nodes = if total == 0 {
        Amount(budget.0 / 2)
    } else {
        Amount(floor.0 + variable.mul_div(node_stake.0, total).unwrap_or_default().0)
    };
    (nodes, Amount(budget.0 - nodes.0))
}

/// Pays `total × w_i / Σw` to each weight; returns the payouts (rounded down).
pub fn pro_rata(total: Amount, weights: &[u128]) -> Vec<Amount> {
    let sum: u128 = weights.iter().fold(0u128, |a, w| a.saturating_add(*w));
    if sum == 0 {
        return vec![Amount::ZERO; weights.len()];
    }
    weights.iter().map(|w| total.mul_div(*w, sum).unwrap_or_default()).collect()
}

/// A stake's weight in reward shares: whole FLOCK, at least 1.
pub fn stake_factor(stake: Amount) -> u128 {
    (stake.0 / Amount::UNIT).max(1)
}

/// `ratio^i` in ppm for i = 0..n.
pub fn geometric(ratio: Ppm, n: usize) -> Vec<u128> {
    let mut out = Vec::with_capacity(n);
    let mut g: u128 = 1_000_000;
    for _ in 0..n {
        out.push(g);
        g = g * u128::from(ratio.get()) / 1_000_000;
    }
    out
}

impl State {
    /// Settles `round` of `task_id` (called at the round's last block).
    pub fn arena_settle(
        &mut self,
        task_id: u64,
        round: u32,
        now: Height,
        params: &Params,
        ev: &mut Vec<Event>,
    ) -> Result<RoundResult, TxError> {
        let mut task = self.arena_task(task_id)?;
        let metric = task.spec.metric;
        let (nt, vt) = (node_target(task_id), validator_target(task_id));

        let validation_revealed = self.arena_validation.contains(&(task_id, round));
        let draw = self.arena_draws.get(&(task_id, round)).cloned();
        let vstake: BTreeMap<Address, Amount> =
            draw.as_ref().map(|d| d.candidates.iter().copied().collect()).unwrap_or_default();
        let submissions = self.round_submissions(task_id, round);

        // Originals: the earliest commit of each artifact; later identical ones earn nothing.
        let mut first: BTreeMap<flock_primitives::Hash, (Height, u64, u32)> = BTreeMap::new();
        for (i, s) in &submissions {
            let key = (s.commit_height, s.commit_seq, *i);
            first
                .entry(s.artifact)
                .and_modify(|e| {
                    if key < *e {
                        *e = key
                    }
                })
                .or_insert(key);
        }

        // Consensus scores and validator agreement.
        let mut quality_sum: BTreeMap<Address, (u128, u32, u32)> = BTreeMap::new(); // (Σq, assigned, revealed)
        let mut ranked = Vec::new();
        for (i, s) in &submissions {
            let duplicate_of = first.get(&s.artifact).map(|f| f.2).filter(|o| o != i);
            let assigned =
                self.arena_assignments.get(&(task_id, round, *i)).cloned().unwrap_or_default();
            let mut votes = Vec::new();
            for v in &assigned {
                if let Some(score) = self.arena_scores.get(&(task_id, round, *i, *v)) {
                    let w = vstake.get(v).copied().unwrap_or_default().0;
                    votes.push((score.badness(metric), *score, w, *v));
                }
            }
            let consensus = weighted_median(votes.iter().map(|v| (v.0, v.1, v.2)).collect());
            for v in &assigned {
                let e = quality_sum.entry(*v).or_default();
                e.1 += 1;
                if let (Some(c), Some(vote)) = (consensus, votes.iter().find(|x| x.3 == *v)) {
                    e.0 += u128::from(score_quality(vote.1, c, params.arena_score_tolerance).get());
                    e.2 += 1;
                } else if votes.iter().any(|x| x.3 == *v) {
                    e.2 += 1;
                }
            }
            ranked.push(RankedSubmission {
                submission: *i,
                node: s.node,
                artifact: s.artifact,
                score: consensus.unwrap_or(Score::WORST),
                reward: Amount::ZERO,
                duplicate_of,
            });
        }
        let sub_of = |r: &RankedSubmission| {
            submissions
                .iter()
                .find(|(i, _)| *i == r.submission)
                .map(|(_, s)| (s.commit_height, s.commit_seq))
        };
        ranked.sort_by_key(|r| (r.duplicate_of.is_some(), r.score.badness(metric), sub_of(r)));

        // Missed reveals are slashed (only when validators could do their job).
        let mut validators: Vec<ValidatorOutcome> = Vec::new();
        for (v, (qsum, assigned, revealed)) in &quality_sum {
            let mut slashed = Amount::ZERO;
            if validation_revealed && revealed < assigned {
                let reason = format!(
                    "missed {} score reveal(s) in round {round} of task {task_id}",
                    assigned - revealed
                );
                slashed =
                    self.slash(v, &vt, params.arena_miss_slash, None, &reason, params, ev)?.total;
            }
            let quality =
                Ppm::from_ppm((qsum / u128::from((*assigned).max(1))) as u32).unwrap_or(Ppm::ZERO);
            validators.push(ValidatorOutcome {
                validator: *v,
                assigned: *assigned,
                revealed: *revealed,
                quality,
                reward: Amount::ZERO,
                slashed,
            });
        }

        // Budget (after this round's slashes): accumulated pool + slashes + deposit share.
        let rounds_left = task.rounds().saturating_sub(task.rounds_settled).max(1);
        let deposit_share = Amount(task.deposit_left.0 / u128::from(rounds_left));
        let deposit_share = if rounds_left == 1 { task.deposit_left } else { deposit_share };
        task.deposit_left = Amount(task.deposit_left.0 - deposit_share.0);
        let slashed_in = self.task_pools.remove(&task_id).unwrap_or_default();
        let budget = Amount(task.pool.0 + deposit_share.0 + slashed_in.0);

        // Side budgets by stake (delegation included).
        let sum = |xs: Vec<(Address, Amount)>| Amount(xs.iter().map(|x| x.1 .0).sum());
        let (node_side, val_side) = side_split(
            budget,
            task.spec.gamma,
            sum(self.target_stakers(&nt)),
            sum(self.target_stakers(&vt)),
        );

        // Nodes: valid, original, scored submissions by rank.
        let eligible: Vec<usize> = (0..ranked.len())
            .filter(|&j| {
                ranked[j].duplicate_of.is_none()
                    && ranked[j].score != Score::WORST
                    && validation_revealed
            })
            .collect();
        let g = geometric(task.spec.rank_ratio, eligible.len());
        let weights: Vec<u128> = eligible
            .iter()
            .zip(&g)
            .map(|(&j, gi)| {
                let (own, del) = self.effective_stake(&ranked[j].node, &nt);
                gi.saturating_mul(stake_factor(Amount(own.0.saturating_add(del.0))))
            })
            .collect();
        let payouts = pro_rata(node_side, &weights);
        let vesting = Vesting { immediate: task.spec.delta, release_at: task.end() };
        let mut nodes_paid = Amount::ZERO;
        for (&j, pay) in eligible.iter().zip(payouts) {
            if pay.is_zero() {
                continue;
            }
            self.pay_reward(&ranked[j].node, &nt, pay, vesting, now, ev)?;
            ranked[j].reward = pay;
            nodes_paid = Amount(nodes_paid.0 + pay.0);
        }

        // Validators: stake × quality.
        let vweights: Vec<u128> = validators
            .iter()
            .map(|o| {
                let stake = vstake.get(&o.validator).copied().unwrap_or_default();
                stake_factor(stake).saturating_mul(u128::from(o.quality.get()))
            })
            .collect();
        let vpay = if validation_revealed {
            pro_rata(val_side, &vweights)
        } else {
            vec![Amount::ZERO; validators.len()]
        };
        let mut validators_paid = Amount::ZERO;
        for (o, pay) in validators.iter_mut().zip(vpay) {
            if pay.is_zero() || self.own_stake(&o.validator, &vt).is_zero() {
                continue;
            }
            self.pay_reward(&o.validator, &vt, pay, Vesting::NONE, now, ev)?;
            o.reward = pay;
            validators_paid = Amount(validators_paid.0 + pay.0);
        }

        let carried = Amount(budget.0 - nodes_paid.0 - validators_paid.0);
        task.pool = carried;
        task.rounds_settled = round + 1;
        let result = RoundResult {
            budget,
            nodes_paid,
            validators_paid,
            carried,
            ranking: ranked,
            validators,
            validation_revealed,
        };
        ev.push(Event::RoundSettled {
            task: task_id,
            round,
            budget,
            nodes_paid,
            validators_paid,
            carried,
        });
        if task.rounds_settled >= task.rounds() {
            let returned = Amount(task.pool.0 + task.deposit_left.0);
            task.pool = Amount::ZERO;
            task.deposit_left = Amount::ZERO;
            task.status = TaskStatus::Finished;
            let leftover = self.task_pools.remove(&task_id).unwrap_or_default();
            let returned = Amount(returned.0 + leftover.0);
            self.credit_community_pool(returned)?;
            for t in [nt, vt] {
                if let Some(mut info) = self.targets.get(&t).cloned() {
                    info.open = false;
                    self.register_target(t, info);
                }
            }
            ev.push(Event::TaskFinished { task: task_id, returned });
        }
        self.arena_tasks.insert(task_id, task);
        self.arena_results.insert((task_id, round), result.clone());
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_median_by_stake() {
        let v = |s: u64, w: u128| (s, Score(s), w);
        assert_eq!(weighted_median(vec![v(10, 1), v(20, 1), v(30, 1)]), Some(Score(20)));
        // A heavy validator decides.
        assert_eq!(weighted_median(vec![v(10, 1), v(20, 1), v(30, 5)]), Some(Score(30)));
        // Exact split: the lower (better) one.
        assert_eq!(weighted_median(vec![v(10, 1), v(30, 1)]), Some(Score(10)));
        assert_eq!(weighted_median(vec![]), None);
        assert_eq!(weighted_median(vec![v(5, 0)]), None);
    }

    #[test]
    fn quality_falls_with_distance() {
        let tol = Ppm::percent(10).unwrap();
        assert_eq!(score_quality(Score(1_000_000), Score(1_000_000), tol), Ppm::ONE);
        // 5% off with a 10% tolerance: half quality.
        assert_eq!(
            score_quality(Score(1_050_000), Score(1_000_000), tol),
            Ppm::from_ppm(500_000).unwrap()
        );
        assert_eq!(
            score_quality(Score(950_000), Score(1_000_000), tol),
            Ppm::from_ppm(500_000).unwrap()
        );
        assert_eq!(score_quality(Score(1_200_000), Score(1_000_000), tol), Ppm::ZERO);
        assert_eq!(score_quality(Score::WORST, Score(1_000_000), tol), Ppm::ZERO);
        assert_eq!(score_quality(Score::WORST, Score::WORST, tol), Ppm::ONE);
    }

    #[test]
    fn side_split_matches_the_formula() {
        // γ = 10%, Σt = 3,000, Σs = 1,000, budget 1,000:
        // nodes = 1,000 × (0.1 + 0.8 × 0.75) = 700; validators = 300.
        let (n, v) =
            side_split(Amount(1_000), Ppm::percent(10).unwrap(), Amount(3_000), Amount(1_000));
        assert_eq!((n, v), (Amount(700), Amount(300)));
        // γ = 50%: always half and half.
        let (n, v) = side_split(Amount(1_000), Ppm::percent(50).unwrap(), Amount(9_000), Amount(1));
        assert_eq!((n, v), (Amount(500), Amount(500)));
    }

    #[test]
    fn geometric_series() {
        assert_eq!(
            geometric(Ppm::percent(50).unwrap(), 4),
            vec![1_000_000, 500_000, 250_000, 125_000]
        );
        assert_eq!(pro_rata(Amount(100), &[2, 1, 1]), vec![Amount(50), Amount(25), Amount(25)]);
        assert_eq!(pro_rata(Amount(100), &[1, 1, 1]), vec![Amount(33), Amount(33), Amount(33)]);
    }
}
