//! In-memory view of the journal: unsettled usage per listing, open batches, and what each
//! consumer owes this server, used for the credit check.
//!
//! ```text
//! request admitted ─► reserve(worst case) ─► served ─► journaled (on_durable: owed += cost)
//!                                                      └► reservation released
//! settler: unbatched records ─► batch (intent journaled) ─► MarketSettle ─► in a block
//!          ─► settled journaled ─► records dropped, owed −= cost
//! ```
//! Batches are contiguous runs of one listing's records in `seq` order, so a batch's
//! `(from, to)` range names exactly its records, now and after a restart.

use crate::journal::{Line, Replay, UsageRecord};
use flock_ledger::market::UsageEntry;
use flock_primitives::{Address, Amount, Hash};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Mutex, MutexGuard},
};

/// A batch whose intent is (being) journaled and that the ledger has not settled yet.
#[derive(Debug, Clone)]
pub(crate) struct OpenBatch {
    pub(crate) listing: String,
    pub(crate) id: Hash,
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) entries: Vec<UsageEntry>,
    /// Whether its intent line is on disk (only then may it be submitted).
    pub(crate) durable: bool,
    /// The last transaction submitted for it, and the height then.
    pub(crate) submitted: Option<(Hash, u64)>,
}

#[derive(Debug, Default)]
struct State {
    journal_id: Hash,
    /// Unsettled records per listing, by seq.
    unsettled: BTreeMap<String, BTreeMap<u64, UsageRecord>>,
    /// Open batches per listing, oldest first.
    open: BTreeMap<String, Vec<OpenBatch>>,
    /// Highest seq already put in a batch, per listing.
    batched_to: BTreeMap<String, u64>,
    /// Σ cost of unsettled records per consumer.
    owed: HashMap<Address, u128>,
    /// Σ worst-case cost of requests being served per consumer.
    reserved: HashMap<Address, u128>,
}

/// What a consumer has in flight with this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    /// Served but not settled.
    pub(crate) owed: Amount,
    /// Reserved by requests being served.
    pub(crate) reserved: Amount,
}

/// The metering state.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    state: Mutex<State>,
}

/// Batch id: `H("flock serve usage batch v1"; server, listing, journal id, from, to)`.
pub fn batch_id(server: &Address, listing: &str, journal: &Hash, from: u64, to: u64) -> Hash {
    Hash::of_parts(
        "flock serve usage batch v1",
        &[&server.0, listing.as_bytes(), &journal.0, &from.to_le_bytes(), &to.to_le_bytes()],
    )
}

fn fold(records: &[&UsageRecord]) -> Vec<UsageEntry> {
    let mut by_key: BTreeMap<Hash, UsageEntry> = BTreeMap::new();
    for r in records {
        let e = by_key.entry(r.key_hash).or_insert(UsageEntry {
            key_hash: r.key_hash,
            prompt_tokens: 0,
            completion_tokens: 0,
            calls: 0,
        });
        e.prompt_tokens = e.prompt_tokens.saturating_add(r.prompt_tokens);
        e.completion_tokens = e.completion_tokens.saturating_add(r.completion_tokens);
        e.calls = e.calls.saturating_add(r.calls);
    }
    by_key.into_values().collect()
}

impl Meter {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Rebuilds the view from a journal replay.
    pub(crate) fn restore(replay: &Replay, server: &Address) -> Self {
        let mut s = State { journal_id: replay.id, ..State::default() };
        for rec in &replay.records {
            s.unsettled.entry(rec.listing.clone()).or_default().insert(rec.seq, rec.clone());
        }
        for (listing, id, from, to) in &replay.batches {
            let hi = s.batched_to.entry(listing.clone()).or_default();
            *hi = (*hi).max(*to);
            let recs = s.unsettled.entry(listing.clone()).or_default();
            if replay.settled.contains(&(listing.clone(), *id)) {
                let seqs: Vec<u64> = recs.range(*from..=*to).map(|(k, _)| *k).collect();
                for k in seqs {
                    recs.remove(&k);
                }
            } else {
                debug_assert_eq!(*id, batch_id(server, listing, &replay.id, *from, *to));
                let entries = fold(&recs.range(*from..=*to).map(|(_, r)| r).collect::<Vec<_>>());
                s.open.entry(listing.clone()).or_default().push(OpenBatch {
                    listing: listing.clone(),
                    id: *id,
                    from: *from,
                    to: *to,
                    entries,
                    durable: true,
                    submitted: None,
                });
            }
        }
        s.unsettled.retain(|_, r| !r.is_empty());
        for r in s.unsettled.values().flat_map(BTreeMap::values) {
            *s.owed.entry(r.owner).or_default() += r.cost.0;
        }
        Self { state: Mutex::new(s) }
    }

    /// The writer's hook: usage lines are now durable (called in `seq` order).
    pub(crate) fn on_durable(&self, lines: &[Line]) {
        let mut s = self.lock();
        for l in lines {
            if let Line::Use(r) = l {
                *s.owed.entry(r.owner).or_default() += r.cost.0;
                s.unsettled.entry(r.listing.clone()).or_default().insert(r.seq, r.clone());
            }
        }
    }

    /// Reserves `worst` for `owner` if `available` covers it on top of what is held.
    pub(crate) fn reserve(
        &self,
        owner: Address,
        worst: Amount,
        available: Amount,
    ) -> Result<(), Held> {
        let mut s = self.lock();
        let owed = s.owed.get(&owner).copied().unwrap_or(0);
        let reserved = s.reserved.get(&owner).copied().unwrap_or(0);
        let need = owed.saturating_add(reserved).saturating_add(worst.0);
        if need > available.0 {
            return Err(Held { owed: Amount(owed), reserved: Amount(reserved) });
        }
        *s.reserved.entry(owner).or_default() += worst.0;
        Ok(())
    }

    /// Releases a reservation.
    pub(crate) fn release(&self, owner: Address, amount: Amount) {
        let mut s = self.lock();
        if let Some(r) = s.reserved.get_mut(&owner) {
            *r = r.saturating_sub(amount.0);
            if *r == 0 {
                s.reserved.remove(&owner);
            }
        }
    }

    /// Folds each listing's unbatched records into new batches of at most `max_entries` keys.
    pub(crate) fn form_batches(&self, server: &Address, max_entries: usize) -> Vec<OpenBatch> {
        let mut s = self.lock();
        let journal = s.journal_id;
        let mut formed = Vec::new();
        let listings: Vec<String> = s.unsettled.keys().cloned().collect();
        for listing in listings {
            let start = s.batched_to.get(&listing).map_or(0, |t| t + 1);
            let recs: Vec<&UsageRecord> = s
                .unsettled
                .get(&listing)
                .map(|m| m.range(start..).map(|(_, r)| r).collect())
                .unwrap_or_default();
            let mut batches = Vec::new();
            let mut i = 0;
            while i < recs.len() {
                let mut keys = std::collections::BTreeSet::new();
                let mut j = i;
                while j < recs.len()
                    && (keys.contains(&recs[j].key_hash) || keys.len() < max_entries)
                {
                    keys.insert(recs[j].key_hash);
                    j += 1;
                }
                let (from, to) = (recs[i].seq, recs[j - 1].seq);
                batches.push(OpenBatch {
                    listing: listing.clone(),
                    id: batch_id(server, &listing, &journal, from, to),
                    from,
                    to,
                    entries: fold(&recs[i..j]),
                    durable: false,
                    submitted: None,
                });
                i = j;
            }
            if let Some(last) = batches.last() {
                s.batched_to.insert(listing.clone(), last.to);
            }
            s.open.entry(listing).or_default().extend(batches.iter().cloned());
            formed.extend(batches);
        }
        formed
    }

    /// Marks a batch's intent durable.
    pub(crate) fn mark_durable(&self, listing: &str, id: &Hash) {
        let mut s = self.lock();
        if let Some(b) = s.open.get_mut(listing).and_then(|v| v.iter_mut().find(|b| b.id == *id)) {
            b.durable = true;
        }
    }

    /// Records a submission.
    pub(crate) fn mark_submitted(&self, listing: &str, id: &Hash, tx: Hash, height: u64) {
        let mut s = self.lock();
        if let Some(b) = s.open.get_mut(listing).and_then(|v| v.iter_mut().find(|b| b.id == *id)) {
            b.submitted = Some((tx, height));
        }
    }

    /// The open batches.
    pub(crate) fn open_batches(&self) -> Vec<OpenBatch> {
        self.lock().open.values().flatten().cloned().collect()
    }

    /// A batch is settled: its records are dropped and no longer owed.
    pub(crate) fn settled(&self, listing: &str, id: &Hash) {
        let mut s = self.lock();
        let Some(list) = s.open.get_mut(listing) else { return };
        let Some(pos) = list.iter().position(|b| b.id == *id) else { return };
        let b = list.remove(pos);
        if list.is_empty() {
            s.open.remove(listing);
        }
        let mut removed = Vec::new();
        if let Some(recs) = s.unsettled.get_mut(listing) {
            let seqs: Vec<u64> = recs.range(b.from..=b.to).map(|(k, _)| *k).collect();
            for k in seqs {
                removed.extend(recs.remove(&k));
            }
            if recs.is_empty() {
                s.unsettled.remove(listing);
            }
        }
        for r in removed {
            if let Some(o) = s.owed.get_mut(&r.owner) {
                *o = o.saturating_sub(r.cost.0);
                if *o == 0 {
                    s.owed.remove(&r.owner);
                }
            }
        }
    }

    /// Unsettled usage records.
    pub(crate) fn unsettled_records(&self) -> usize {
        self.lock().unsettled.values().map(BTreeMap::len).sum()
    }

    /// What `owner` has in flight.
    pub(crate) fn held(&self, owner: &Address) -> Held {
        let s = self.lock();
        Held {
            owed: Amount(s.owed.get(owner).copied().unwrap_or(0)),
            reserved: Amount(s.reserved.get(owner).copied().unwrap_or(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, key: u8, owner: u8) -> UsageRecord {
        UsageRecord {
            seq,
            listing: "m".into(),
            key_hash: Hash([key; 32]),
            owner: Address([owner; 20]),
            prompt_tokens: 10,
            completion_tokens: 5,
            calls: 1,
            cost: Amount(15),
            request: format!("r{seq}"),
            time_ms: 0,
        }
    }

    #[test]
    fn batches_split_by_keys_and_restore_the_same_ranges() {
        let server = Address([9; 20]);
        let m = Meter::restore(
            &Replay { id: Hash([3; 32]), next_seq: 1, ..Replay::default() },
            &server,
        );
        let recs: Vec<UsageRecord> =
            [(1, 1), (2, 2), (3, 1), (4, 3), (5, 2)].iter().map(|&(s, k)| rec(s, k, 1)).collect();
        m.on_durable(&recs.iter().cloned().map(Line::Use).collect::<Vec<_>>());
        assert_eq!(m.held(&Address([1; 20])).owed, Amount(75));
        // Two keys a batch: [1,2,3] (keys 1,2), then [4,5] (keys 3,2).
        let b = m.form_batches(&server, 2);
        assert_eq!(b.iter().map(|b| (b.from, b.to)).collect::<Vec<_>>(), vec![(1, 3), (4, 5)]);
        assert_eq!(b[0].entries.len(), 2);
        assert_eq!(b[0].entries[0].calls, 2);
        assert!(m.form_batches(&server, 2).is_empty(), "nothing left to batch");
        // A restart from the journal finds the same open batches.
        let replay = Replay {
            id: Hash([3; 32]),
            records: recs,
            batches: b.iter().map(|b| (b.listing.clone(), b.id, b.from, b.to)).collect(),
            settled: [("m".to_owned(), b[0].id)].into_iter().collect(),
            next_seq: 6,
        };
        let r = Meter::restore(&replay, &server);
        let open = r.open_batches();
        assert_eq!(open.len(), 1);
        assert_eq!((open[0].id, open[0].entries.clone()), (b[1].id, b[1].entries.clone()));
        assert_eq!(r.unsettled_records(), 2);
        assert_eq!(r.held(&Address([1; 20])).owed, Amount(30));
        r.settled("m", &b[1].id);
        assert_eq!(r.unsettled_records(), 0);
        assert_eq!(r.held(&Address([1; 20])).owed, Amount::ZERO);
    }

    #[test]
    fn reservations_count_against_credit() {
        let m = Meter::default();
        let a = Address([1; 20]);
        m.reserve(a, Amount(60), Amount(100)).unwrap();
        let held = m.reserve(a, Amount(50), Amount(100)).unwrap_err();
        assert_eq!(held.reserved, Amount(60));
        m.release(a, Amount(60));
        m.reserve(a, Amount(100), Amount(100)).unwrap();
    }
}
