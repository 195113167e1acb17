//! The memory store's waiting requests, indexed so that no write scans them all: by
//! expiry (the sweep takes the ones no longer kept from the front), by Person Server (its
//! unexpired ones counted over a range), and by interaction code.

use std::collections::{BTreeMap, BTreeSet};

use aauth_keys::time::UnixTime;
use aauth_tokens::ServerId;

use super::{WAITING_KEPT, WaitingRecord};

/// The waiting requests, by id, with their indexes. Every change goes through
/// [`WaitingTable::insert`] and [`WaitingTable::remove`], which keep the indexes.
#[derive(Debug, Default)]
pub(super) struct WaitingTable {
    records: BTreeMap<String, WaitingRecord>,
    /// `(expires, id)` of every record, the earliest first.
    by_expiry: BTreeSet<(u64, String)>,
    /// Each Person Server's `(expires, id)`.
    by_ps: BTreeMap<ServerId, BTreeSet<(u64, String)>>,
    /// The record holding each interaction code.
    by_code: BTreeMap<String, String>,
}

impl WaitingTable {
    /// The record `id`.
    pub(super) fn get(&self, id: &str) -> Option<&WaitingRecord> {
        self.records.get(id)
    }

    /// Every record, by id.
    pub(super) fn values(&self) -> impl Iterator<Item = &WaitingRecord> {
        self.records.values()
    }

    /// How many records it holds.
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// The record holding interaction code `code`.
    pub(super) fn by_code(&self, code: &str) -> Option<&WaitingRecord> {
        self.by_code.get(code).and_then(|id| self.records.get(id))
    }

    /// Whether `record`'s interaction code is held by a record other than its own.
    pub(super) fn code_of_another(&self, record: &WaitingRecord) -> bool {
        record
            .code
            .as_deref()
            .and_then(|c| self.by_code(c))
            .is_some_and(|holder| holder.id != record.id)
    }

    /// How many of `ps`'s records are unexpired at `now`.
    pub(super) fn open_of(&self, ps: &ServerId, now: UnixTime) -> usize {
        let after = (now.as_secs().saturating_add(1), String::new());
        self.by_ps.get(ps).map_or(0, |s| s.range(after..).count())
    }

    /// Stores `record`, in place of the record of the same id if there is one. Its
    /// interaction code must not be another record's ([`WaitingTable::code_of_another`]):
    /// the code would lead to this one only.
    pub(super) fn insert(&mut self, record: WaitingRecord) {
        self.remove(&record.id);
        let key = (record.expires, record.id.clone());
        self.by_expiry.insert(key.clone());
        self.by_ps.entry(record.ps.clone()).or_default().insert(key);
        if let Some(code) = &record.code {
            self.by_code.insert(code.clone(), record.id.clone());
        }
        self.records.insert(record.id.clone(), record);
    }

    /// Removes and returns the record `id`.
    pub(super) fn remove(&mut self, id: &str) -> Option<WaitingRecord> {
        let record = self.records.remove(id)?;
        let key = (record.expires, record.id.clone());
        self.by_expiry.remove(&key);
        if let Some(of_ps) = self.by_ps.get_mut(&record.ps) {
            of_ps.remove(&key);
            if of_ps.is_empty() {
                self.by_ps.remove(&record.ps);
            }
        }
        if let Some(code) = &record.code
            && self.by_code.get(code) == Some(&record.id)
        {
            self.by_code.remove(code);
        }
        Some(record)
    }

    /// Drops the records no longer kept at `now` ([`WAITING_KEPT`] past their
    /// `expires`): from the front of the expiry index, so a write costs what it drops.
    pub(super) fn sweep(&mut self, now: UnixTime) {
        while let Some((expires, id)) = self.by_expiry.first()
            && expires.saturating_add(WAITING_KEPT) <= now.as_secs()
        {
            let id = id.clone();
            if self.remove(&id).is_none() {
                // An index entry without its record (never left by `remove`): dropped.
                self.by_expiry.pop_first();
            }
        }
    }
}
