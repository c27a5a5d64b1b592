//! Per-epoch emission: mint with decay, never past the cap, split across registered sinks.
//!
//! Epoch `e` (0-based) ends at height `(e + 1) × epoch_length`; its emission is
//! `reward_per_epoch × decay_ratio^⌊e / decay_period_epochs⌋`, each decay step rounded down,
//! clipped to the cap's remaining headroom. Products register an [`EmissionSink`] that names its
//! recipients and their weights (AI Arena and FL Alliance tasks by stake^β); the mint is split
//! by weight, rounded down, and everything not handed out (no sinks, zero weights, rounding
//! remainders) goes to the community pool, so nothing is lost or created.

use crate::{error::TxError, events::Event, params::Params, state::State};
use flock_primitives::{Amount, Epoch, Height};
use std::fmt::Debug;

/// A product that receives a share of each epoch's emission.
pub trait EmissionSink: Debug + Send + Sync {
    /// A short stable name (appears in events).
    fn name(&self) -> &'static str;
    /// The recipients and their weights at the end of the epoch, in a deterministic order.
    fn weights(&self, state: &State, params: &Params) -> Vec<(u64, u128)>;
    /// Takes `amount` for recipient `id`; must hold every unit somewhere in state.
    fn credit(
        &self,
        state: &mut State,
        params: &Params,
        id: u64,
        amount: Amount,
        now: Height,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError>;
}

/// The scheduled emission of epoch `epoch` before the cap is applied.
pub fn scheduled_emission(params: &Params, epoch: u64) -> Amount {
    let steps = epoch / params.decay_period_epochs;
    let mut amount = params.reward_per_epoch;
    for _ in 0..steps {
        if amount.is_zero() {
            break;
        }
        amount = amount.mul_ppm(params.decay_ratio);
    }
    amount
}

/// The epoch that ends at `height`, if any.
pub fn epoch_ending_at(params: &Params, height: Height) -> Option<Epoch> {
    (height.0 > 0 && height.0.is_multiple_of(params.epoch_length))
        .then(|| Epoch(height.0 / params.epoch_length - 1))
}

/// Mints epoch `epoch`'s emission and hands it out.
pub fn run_emission(
    state: &mut State,
    params: &Params,
    sinks: &[std::sync::Arc<dyn EmissionSink>],
    epoch: Epoch,
    now: Height,
    events: &mut Vec<Event>,
) -> Result<Amount, TxError> {
    let minted = state.mint_capped(scheduled_emission(params, epoch.0), params.supply_cap);
    if minted.is_zero() {
        return Ok(minted);
    }
    events.push(Event::Mint { epoch, amount: minted });
    let mut recipients = Vec::new();
    for (i, sink) in sinks.iter().enumerate() {
        for (id, w) in sink.weights(state, params) {
            if w > 0 {
                recipients.push((i, id, w));
            }
        }
    }
    let total_weight: u128 = recipients.iter().fold(0u128, |acc, r| acc.saturating_add(r.2));
    let mut handed = Amount::ZERO;
    if total_weight > 0 {
        for (i, id, w) in recipients {
            let share =
                minted.mul_div(w, total_weight).ok_or(TxError::Internal("emission split"))?;
            if share.is_zero() {
                continue;
            }
            sinks[i].credit(state, params, id, share, now, events)?;
            events.push(Event::EmissionShare {
                sink: sinks[i].name().to_owned(),
                id,
                amount: share,
            });
            handed = Amount(handed.0 + share.0);
        }
    }
    let rest = Amount(minted.0 - handed.0);
    if !rest.is_zero() {
        state.credit_community_pool(rest)?;
        events.push(Event::CommunityPool { amount: rest });
    }
    Ok(minted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decays_every_period() {
        let p = Params { reward_per_epoch: Amount(1_000_000), ..Params::default() };
        assert_eq!(scheduled_emission(&p, 0), Amount(1_000_000));
        assert_eq!(scheduled_emission(&p, 29), Amount(1_000_000));
        assert_eq!(scheduled_emission(&p, 30), Amount(900_000));
        assert_eq!(scheduled_emission(&p, 60), Amount(810_000));
        assert_eq!(scheduled_emission(&p, 95), Amount(729_000));
    }

    #[test]
    fn epoch_boundaries() {
        let p = Params { epoch_length: 10, ..Params::default() };
        assert_eq!(epoch_ending_at(&p, Height(0)), None);
        assert_eq!(epoch_ending_at(&p, Height(9)), None);
        assert_eq!(epoch_ending_at(&p, Height(10)), Some(Epoch(0)));
        assert_eq!(epoch_ending_at(&p, Height(20)), Some(Epoch(1)));
    }
}
