//! Credit escrow: deposits, delayed withdrawals, charges.
//!
//! ```text
//! balance ──deposit──► available ──withdraw──► pending (release_at = now + delay)
//!                          │                      │ end of block release_at
//!                          │ settle               ▼
//!                          └──────┬───────── balance
//!                                 ▼
//!              owner / validators / burn
//! ```
//! A withdrawal stops the amount being spendable at once, but it stays chargeable until it is
//! released: the delay gives servers time to settle usage that was served before the
//! withdrawal, so a consumer cannot use a model and pull its credit out ahead of the bill.

use super::types::{Escrow, PendingWithdrawal};
use crate::{error::TxError, events::Event, params::Params, state::State};
use flock_primitives::{Address, Amount, Height};

const ADDR_MIN: Address = Address([0; 20]);
const ADDR_MAX: Address = Address([0xff; 20]);

impl State {
    /// The escrow of `a` (empty if none).
    pub fn market_escrow(&self, a: &Address) -> Escrow {
        self.market_escrows.get(a).cloned().unwrap_or_default()
    }

    fn put_escrow(&mut self, a: Address, e: Escrow) {
        if e.is_empty() {
            self.market_escrows.remove(&a);
        } else {
            self.market_escrows.insert(a, e);
        }
    }

    /// Moves `amount` from the balance of `who` into its escrow.
    pub fn market_deposit(
        &mut self,
        who: &Address,
        amount: Amount,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        self.debit(who, amount)?;
        let mut e = self.market_escrow(who);
        e.available =
            e.available.checked_add(amount).ok_or(TxError::Internal("escrow overflow"))?;
        self.put_escrow(*who, e);
        ev.push(Event::MarketDeposited { account: *who, amount });
        Ok(())
    }

    /// Starts a withdrawal of `amount` from the escrow of `who`: no longer spendable now, back
    /// in the balance at the end of block `now + market_withdraw_delay`.
    pub fn market_withdraw(
        &mut self,
        who: &Address,
        amount: Amount,
        now: Height,
        params: &Params,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let mut e = self.market_escrow(who);
        e.available = e
            .available
            .checked_sub(amount)
            .ok_or(TxError::InsufficientEscrow { need: amount, have: e.available })?;
        let release_at = now.saturating_add(params.market_withdraw_delay);
        match e.pending.iter_mut().find(|p| p.release_at == release_at) {
            Some(p) => {
                p.amount =
                    p.amount.checked_add(amount).ok_or(TxError::Internal("escrow overflow"))?
            }
            None => {
                let max = params.market_max_pending_withdrawals;
                if e.pending.len() >= max as usize {
                    return Err(TxError::TooManyWithdrawals { max });
                }
                e.pending.push(PendingWithdrawal { amount, release_at });
            }
        }
        self.put_escrow(*who, e);
        self.market_releases.insert((release_at, *who), ());
        ev.push(Event::MarketWithdrawalStarted { account: *who, amount, release_at });
        Ok(())
    }

    /// Takes up to `amount` from the escrow of `who`: the available credit first, then the
    /// pending withdrawals, latest first. Returns what was taken (never more than is there).
    pub(crate) fn market_take(&mut self, who: &Address, amount: Amount) -> Amount {
        let mut e = self.market_escrow(who);
        let from_available = e.available.min(amount);
        e.available = Amount(e.available.0 - from_available.0);
        let mut taken = from_available;
        for p in e.pending.iter_mut().rev() {
            let want = Amount(amount.0 - taken.0);
            if want.is_zero() {
                break;
            }
            let part = p.amount.min(want);
            p.amount = Amount(p.amount.0 - part.0);
            taken = Amount(taken.0 + part.0);
        }
        e.pending.retain(|p| !p.amount.is_zero());
        self.put_escrow(*who, e);
        taken
    }

    /// End of block: returns the withdrawals due at `now` to their owners' balances.
    pub fn market_end_block(&mut self, now: Height, ev: &mut Vec<Event>) -> Result<(), TxError> {
        let due: Vec<(Height, Address)> = self
            .market_releases
            .range((Height(0), ADDR_MIN)..=(now, ADDR_MAX))
            .map(|(k, _)| *k)
            .collect();
        for (h, who) in due {
            self.market_releases.remove(&(h, who));
            let mut e = self.market_escrow(&who);
            let mut amount = Amount::ZERO;
            e.pending.retain(|p| {
                if p.release_at <= now {
                    amount = Amount(amount.0 + p.amount.0);
                    false
                } else {
                    true
                }
            });
            self.put_escrow(who, e);
            if amount.is_zero() {
                continue; // settlements used it all up
            }
            self.credit(&who, amount)?;
            ev.push(Event::MarketWithdrawalReleased { account: who, amount });
        }
        Ok(())
    }
}
