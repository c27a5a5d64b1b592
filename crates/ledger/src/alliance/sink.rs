//! The FL Alliance share of each epoch's emission.

use super::{handler::member_target, types::*};
use crate::{emission::EmissionSink, error::TxError, events::Event, params::Params, state::State};
use flock_primitives::{Amount, Height};

/// Hands running FL Alliance tasks a share of the emission by member stake, into the task's
/// reward pool (FLock splits the daily mint between FL and Arena tasks by relative stake).
#[derive(Debug, Default)]
pub struct AllianceSink;

impl EmissionSink for AllianceSink {
    fn name(&self) -> &'static str {
        "alliance"
    }

    fn weights(&self, state: &State, _: &Params) -> Vec<(u64, u128)> {
        state
            .alliance_tasks
            .iter()
            .filter(|(_, t)| t.status == AllianceStatus::Running)
            .map(|(id, _)| {
                (
                    *id,
                    state
                        .target_stakers(&member_target(*id))
                        .iter()
                        .map(|(_, a)| a.0)
                        .fold(0u128, u128::saturating_add),
                )
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
        let mut task = state.alliance_task(id)?;
        task.pool =
            task.pool.checked_add(amount).ok_or(TxError::Internal("alliance pool overflow"))?;
        state.alliance_tasks.insert(id, task);
        Ok(())
    }
}
