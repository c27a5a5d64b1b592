//! The arena's share of each epoch's emission.

use super::{
    handler::{node_target, validator_target},
    types::*,
};
use crate::{emission::EmissionSink, error::TxError, events::Event, params::Params, state::State};
use flock_primitives::{math::isqrt, Amount, Height};

/// Hands each active AI Arena task a share of the emission by its stake^β (nodes + validators,
/// delegation included), into the task's pool for the next settlement.
#[derive(Debug, Default)]
pub struct ArenaSink;

impl EmissionSink for ArenaSink {
    fn name(&self) -> &'static str {
        "arena"
    }

    fn weights(&self, state: &State, params: &Params) -> Vec<(u64, u128)> {
        let now = state.globals().height;
        state
            .arena_tasks
            .iter()
            .filter(|(_, t)| t.status == TaskStatus::Active && now >= t.start)
            .map(|(id, _)| {
                let stake: u128 = [node_target(*id), validator_target(*id)]
                    .iter()
                    .flat_map(|t| state.target_stakers(t))
                    .map(|(_, a)| a.0)
                    .fold(0u128, u128::saturating_add);
                let w = match params.arena_stake_weight {
                    StakeWeight::Linear => stake,
                    StakeWeight::Sqrt => isqrt(stake),
                };
                (*id, w)
            })
            .collect()
    }

    fn credit(
        &self,
        state: &mut State,
        _: &Params,
        id: u64,
        amount: Amount,
        _: Height,
        _: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let mut task = state.arena_task(id)?;
        task.pool =
            task.pool.checked_add(amount).ok_or(TxError::Internal("arena pool overflow"))?;
        state.arena_tasks.insert(id, task);
        Ok(())
    }
}
