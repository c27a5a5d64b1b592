//! A journaled, ordered key-value table: the building block of ledger state.
//!
//! Every table remembers (a) which keys changed since the last [`Table::take_dirty`], so a block
//! produces an exact write set for storage, and (b) an undo log, so a failed transaction or an
//! invalid block rolls back to a checkpoint and leaves state untouched.

use borsh::{BorshDeserialize, BorshSerialize};
use flock_primitives::codec;
use std::collections::{BTreeMap, BTreeSet};

/// An ordered map with change tracking and an undo log.
#[derive(Debug, Clone)]
pub struct Table<K: Ord + Clone, V: Clone> {
    map: BTreeMap<K, V>,
    dirty: BTreeSet<K>,
    undo: Vec<(K, Option<V>)>,
}

impl<K: Ord + Clone, V: Clone> Default for Table<K, V> {
    fn default() -> Self {
        Self { map: BTreeMap::new(), dirty: BTreeSet::new(), undo: Vec::new() }
    }
}

impl<K: Ord + Clone, V: Clone> Table<K, V> {
    /// The value at `k`.
    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    /// Whether `k` is present.
    pub fn contains(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    /// Entries in a key range, in order.
    pub fn range<R: std::ops::RangeBounds<K>>(&self, r: R) -> impl Iterator<Item = (&K, &V)> {
        self.map.range(r)
    }

    fn record(&mut self, k: &K) {
        self.undo.push((k.clone(), self.map.get(k).cloned()));
        self.dirty.insert(k.clone());
    }

    /// Sets `k` to `v`.
    pub fn insert(&mut self, k: K, v: V) {
        self.record(&k);
        self.map.insert(k, v);
    }

    /// Removes `k`, returning its value.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        if !self.map.contains_key(k) {
            return None;
        }
        self.record(k);
        self.map.remove(k)
    }

    /// Applies `f` to the value at `k` (or `default` if absent) and stores the result; a result
    /// equal to `None` removes the entry. Returns what `f` returned besides the value.
    pub fn update<R>(&mut self, k: K, f: impl FnOnce(Option<V>) -> (Option<V>, R)) -> R {
        let old = self.map.get(&k).cloned();
        let (new, r) = f(old);
        match new {
            Some(v) => self.insert(k, v),
            None => {
                self.remove(&k);
            }
        }
        r
    }

    /// The current length of the undo log (a checkpoint).
    pub fn mark(&self) -> usize {
        self.undo.len()
    }

    /// Undoes every change after `mark`.
    pub fn rollback(&mut self, mark: usize) {
        while self.undo.len() > mark {
            let Some((k, old)) = self.undo.pop() else { break };
            match old {
                Some(v) => self.map.insert(k, v),
                None => self.map.remove(&k),
            };
        }
    }

    /// Forgets the undo log (changes become permanent for this block).
    pub fn clear_undo(&mut self) {
        self.undo.clear();
    }

    /// Inserts without journaling (loading from storage).
    pub(crate) fn load(&mut self, k: K, v: V) {
        self.map.insert(k, v);
    }
}

impl<K, V> Table<K, V>
where
    K: Ord + Clone + BorshSerialize + BorshDeserialize,
    V: Clone + BorshSerialize + BorshDeserialize,
{
    /// Drains the keys changed since the last call as `(prefix ‖ key, Some(value) | None)`.
    pub fn take_dirty(&mut self, prefix: u8, out: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>) {
        for k in std::mem::take(&mut self.dirty) {
            let mut key = vec![prefix];
            key.extend(codec::encode(&k));
            out.push((key, self.map.get(&k).map(codec::encode)));
        }
    }
}
