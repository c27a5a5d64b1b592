//! Usage settlement: a listing's server posts metered usage in batches; each key's owner is
//! charged from its escrow and the revenue is split between owner, validators and the burn.
//!
//! ```text
//! check: listing exists, sender is its server, 1..=max entries, each key bound and listed
//!        once, batch id new for this listing, every cost computable
//! per entry: cost = ceil(tokens × per_1k / 1000) + calls × per_call
//!            charged = min(cost, escrow)   (available first, then pending withdrawals)
//!            shortfall = cost − charged    (never an overdraft)
//! batch:  C = Σ charged; burn = C × split.burn; each validator = C × split.validators / n;
//!         owner = C − burn − n × each     (dust, and everything when n = 0, to the owner)
//! ```
//! Revoked keys are still charged: the batch carries usage the server served while the key
//! was live, and the ledger cannot tell when within the batch that was. Servers stop serving a
//! key as soon as they see its revocation.

use super::types::*;
use crate::{
    error::TxError,
    events::{BurnReason, Event},
    params::Params,
    state::State,
};
use flock_primitives::{Address, Amount, Height};
use std::collections::BTreeSet;

impl State {
    /// Settles a usage batch posted by `server`.
    pub fn market_settle(
        &mut self,
        server: &Address,
        batch: &UsageBatch,
        now: Height,
        params: &Params,
        ev: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let name = batch.listing.as_str();
        let mut listing =
            self.market_listing(name).ok_or_else(|| TxError::UnknownListing(name.to_owned()))?;
        if listing.server != *server {
            return Err(TxError::NotListingServer {
                listing: name.to_owned(),
                server: listing.server,
            });
        }
        let max = params.market_max_batch_entries as usize;
        if batch.entries.is_empty() || batch.entries.len() > max {
            return Err(TxError::InvalidBatch(format!(
                "a batch has 1 to {max} entries, this one has {}",
                batch.entries.len()
            )));
        }
        if self.market_batch_settled(name, &batch.id) {
            return Err(TxError::BatchAlreadySettled { listing: name.to_owned(), batch: batch.id });
        }

        // Check everything before the first charge.
        let mut seen = BTreeSet::new();
        let mut priced = Vec::with_capacity(batch.entries.len());
        for e in &batch.entries {
            if !seen.insert(e.key_hash) {
                return Err(TxError::InvalidBatch(format!("key {} appears twice", e.key_hash)));
            }
            let consumer =
                self.market_key_owner(&e.key_hash).ok_or(TxError::UnknownApiKey(e.key_hash))?;
            let cost = usage_cost(e, &listing.price).ok_or_else(|| {
                TxError::InvalidBatch(format!("the cost of key {} overflows", e.key_hash))
            })?;
            priced.push((e.key_hash, consumer, cost));
        }

        let mut charges = Vec::with_capacity(priced.len());
        let (mut charged, mut shortfall) = (0u128, 0u128);
        for (key_hash, consumer, cost) in priced {
            let paid = self.market_take(&consumer, cost);
            if !paid.is_zero() {
                let key = (name.to_owned(), consumer);
                let spent = self.market_spent.get(&key).copied().unwrap_or_default();
                let spent = spent.checked_add(paid).ok_or(TxError::Internal("spent overflow"))?;
                self.market_spent.insert(key, spent);
            }
            let short = Amount(cost.0 - paid.0);
            // Σ charged ≤ Σ escrow ≤ supply; only Σ shortfall can grow past u128.
            charged = charged.checked_add(paid.0).ok_or(TxError::Internal("charge overflow"))?;
            shortfall = shortfall.saturating_add(short.0);
            charges.push(UsageCharge { key_hash, consumer, cost, charged: paid, shortfall: short });
        }
        let (charged, shortfall) = (Amount(charged), Amount(shortfall));

        let validators: Vec<Address> =
            listing.provenance.as_ref().map(|p| p.validators.clone()).unwrap_or_default();
        let shares = split_revenue(charged, &listing.split, validators.len());
        let mut payouts = Vec::with_capacity(validators.len() + 1);
        self.credit(&listing.owner, shares.owner)?;
        payouts.push((listing.owner, shares.owner));
        if !shares.per_validator.is_zero() {
            for v in &validators {
                self.credit(v, shares.per_validator)?;
                payouts.push((*v, shares.per_validator));
            }
        }
        self.record_burn(None, shares.burn, BurnReason::Market, ev)?;

        listing.volume =
            listing.volume.checked_add(charged).ok_or(TxError::Internal("volume overflow"))?;
        self.market_listings.insert(name.to_owned(), listing);
        self.market_batches.insert(
            (name.to_owned(), batch.id),
            SettledBatch {
                height: now,
                server: *server,
                entries: batch.entries.len() as u32,
                charged,
                shortfall,
            },
        );
        ev.push(Event::MarketSettled {
            listing: name.to_owned(),
            batch: batch.id,
            server: *server,
            charged,
            shortfall,
            burned: shares.burn,
            payouts,
            charges,
        });
        Ok(())
    }
}
