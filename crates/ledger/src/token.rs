//! The FLOCK token: balances, transfers, burns and the capped mint.

use crate::{
    error::TxError,
    events::{BurnReason, Event},
    state::State,
};
use flock_primitives::{Address, Amount};

impl State {
    /// The spendable balance of `a`.
    pub fn balance(&self, a: &Address) -> Amount {
        self.accounts.get(a).map(|acc| acc.balance).unwrap_or_default()
    }

    /// Takes `amount` from `a`'s balance.
    pub fn debit(&mut self, a: &Address, amount: Amount) -> Result<(), TxError> {
        let mut acc = self.account(a);
        acc.balance = acc
            .balance
            .checked_sub(amount)
            .ok_or(TxError::InsufficientBalance { need: amount, have: acc.balance })?;
        self.put_account(*a, acc);
        Ok(())
    }

    /// Adds `amount` to `a`'s balance.
    pub fn credit(&mut self, a: &Address, amount: Amount) -> Result<(), TxError> {
        if amount.is_zero() {
            return Ok(());
        }
        let mut acc = self.account(a);
        acc.balance =
            acc.balance.checked_add(amount).ok_or(TxError::Internal("balance overflow"))?;
        self.put_account(*a, acc);
        Ok(())
    }

    /// Moves `amount` from `from` to `to`.
    pub fn transfer(
        &mut self,
        from: &Address,
        to: &Address,
        amount: Amount,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        self.debit(from, amount)?;
        self.credit(to, amount)?;
        events.push(Event::Transfer { from: *from, to: *to, amount });
        Ok(())
    }

    /// Burns `amount` from `from`'s balance.
    pub fn burn_from(
        &mut self,
        from: &Address,
        amount: Amount,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        self.debit(from, amount)?;
        self.record_burn(Some(*from), amount, BurnReason::User, events)
    }

    /// Records a burn of funds the caller has already taken out of circulation.
    pub fn record_burn(
        &mut self,
        from: Option<Address>,
        amount: Amount,
        reason: BurnReason,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        if amount.is_zero() {
            return Ok(());
        }
        self.update_globals(|g| {
            g.burned = g.burned.checked_add(amount).ok_or(TxError::Internal("burn overflow"))?;
            Ok::<_, TxError>(())
        })?;
        events.push(Event::Burn { from, amount, reason });
        Ok(())
    }

    /// Mints up to `amount` without passing the cap; returns what was minted.
    pub fn mint_capped(&mut self, amount: Amount, cap: Amount) -> Amount {
        self.update_globals(|g| {
            let room = cap.saturating_sub(g.minted);
            let minted = amount.min(room);
            g.minted = Amount(g.minted.0 + minted.0); // minted ≤ room, so no overflow
            minted
        })
    }

    /// Adds to the community pool.
    pub fn credit_community_pool(&mut self, amount: Amount) -> Result<(), TxError> {
        self.update_globals(|g| {
            g.community_pool = g
                .community_pool
                .checked_add(amount)
                .ok_or(TxError::Internal("community pool overflow"))?;
            Ok(())
        })
    }

    /// Adds to a task's pool (task 0: the community pool).
    pub fn credit_task_pool(&mut self, task: u64, amount: Amount) -> Result<(), TxError> {
        if amount.is_zero() {
            return Ok(());
        }
        if task == 0 {
            return self.credit_community_pool(amount);
        }
        let cur = self.task_pools.get(&task).copied().unwrap_or_default();
        let new = cur.checked_add(amount).ok_or(TxError::Internal("task pool overflow"))?;
        self.task_pools.insert(task, new);
        Ok(())
    }
}
