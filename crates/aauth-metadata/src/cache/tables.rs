//! The cache's bounded tables and its fetch slots.
//!
//! Sources with keys are a segmented LRU of [`CacheConfig::max_entries`](super::CacheConfig)
//! sources: a source enters on probation when its first fetch succeeds, and is protected
//! once its keys answer a second lookup. Room is made on probation first (its least
//! recently used source), and among protected sources only while they hold more than
//! [`protected_share`] of the table, so a burst of sources used once each evicts only its
//! own kind, never an issuer in use. Sources without keys have a table of their own.
//!
//! The fetch slots are shared, but fetches of sources without keys (strangers) may hold
//! only their share of them: the rest are kept for sources with keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Counters, DiscoveryError, FetchFuture, KeySet, KeySource, OverloadBound, bump};

/// Where a source stands: what may evict it, and which fetch slots its fetches may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Standing {
    /// No keys yet (never fetched successfully), in the table of sources without keys;
    /// its fetches take a slot of the strangers' share.
    Stranger,
    /// Keys fetched, not used again since: the first to go when room is needed.
    Probation,
    /// Keys that answered a second lookup (a second request they verified): evicted only
    /// while protected sources hold more than [`protected_share`] of the table.
    Protected,
}

pub(super) struct Entry<K> {
    pub(super) keys: Option<Arc<KeySet<K>>>,
    pub(super) refresh_at: u64,
    pub(super) fresh_until: u64,
    pub(super) stale_until: u64,
    pub(super) last_fetch: Option<u64>,
    pub(super) failures: u32,
    pub(super) retry_at: u64,
    pub(super) last_error: Option<DiscoveryError>,
    pub(super) inflight: Option<FetchFuture<K>>,
    /// Which fetch `inflight` is (0: none), so that only that fetch clears it.
    pub(super) flight: u64,
    pub(super) last_used: u64,
    pub(super) standing: Standing,
}

impl<K> Default for Entry<K> {
    fn default() -> Self {
        Self {
            keys: None,
            refresh_at: 0,
            fresh_until: 0,
            stale_until: 0,
            last_fetch: None,
            failures: 0,
            retry_at: 0,
            last_error: None,
            inflight: None,
            flight: 0,
            last_used: 0,
            standing: Standing::Stranger,
        }
    }
}

impl<K> Entry<K> {
    /// Whether this source's fetches take a slot of the strangers' share.
    pub(super) fn stranger(&self) -> bool {
        self.standing == Standing::Stranger
    }

    /// Its keys answered a lookup: a second use (the first was the lookup that fetched
    /// them) protects a source on probation.
    pub(super) fn used(&mut self, protected: &mut usize) {
        if self.standing == Standing::Probation {
            self.standing = Standing::Protected;
            *protected += 1;
        }
    }
}

/// Fetches running, or the most allowed to run at once: all of them, and those of
/// sources without keys among them.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Slots {
    pub(super) all: usize,
    pub(super) strangers: usize,
}

impl Slots {
    /// The limits: `max_inflight`, of which `percent` (at least one slot) for strangers.
    pub(super) fn limits(max_inflight: usize, percent: u64) -> Self {
        let percent = usize::try_from(percent).unwrap_or(100);
        Self {
            all: max_inflight,
            strangers: (max_inflight / 100 * percent + max_inflight % 100 * percent / 100)
                .max(1)
                .min(max_inflight),
        }
    }

    /// The limit that refuses one more fetch (of a stranger if `stranger`), and which it
    /// is, if one does.
    pub(super) fn refusing(self, limits: Self, stranger: bool) -> Option<(usize, OverloadBound)> {
        if self.all >= limits.all {
            Some((limits.all, OverloadBound::Fetches))
        } else if stranger && self.strangers >= limits.strangers {
            Some((limits.strangers, OverloadBound::StrangerFetches))
        } else {
            None
        }
    }

    pub(super) fn take(&mut self, stranger: bool) {
        self.all += 1;
        if stranger {
            self.strangers += 1;
        }
    }

    pub(super) fn release(&mut self, stranger: bool) {
        self.all = self.all.saturating_sub(1);
        if stranger {
            self.strangers = self.strangers.saturating_sub(1);
        }
    }
}

/// The sources, in two bounded tables, and the fetches running.
pub(super) struct Tables<K> {
    /// Sources whose keys were fetched at least once (`max_entries`, a segmented LRU).
    pub(super) positive: BTreeMap<KeySource, Entry<K>>,
    /// Sources with no keys yet, with their backoff (`max_negative_entries`).
    pub(super) negative: BTreeMap<KeySource, Entry<K>>,
    /// Fetches running (`max_inflight`, of which the strangers' share).
    pub(super) slots: Slots,
    /// How many of `positive` are protected.
    pub(super) protected: usize,
}

impl<K> Default for Tables<K> {
    fn default() -> Self {
        Self {
            positive: BTreeMap::new(),
            negative: BTreeMap::new(),
            slots: Slots::default(),
            protected: 0,
        }
    }
}

/// How many of `max_entries` sources with keys protected sources hold before they are
/// evicted too: four fifths, so that at least one place (a fifth) is always on probation.
pub(super) fn protected_share(max_entries: usize) -> usize {
    max_entries - max_entries.div_ceil(5)
}

impl<K> Tables<K> {
    pub(super) fn get_mut(&mut self, source: &KeySource) -> Option<&mut Entry<K>> {
        match self.positive.get_mut(source) {
            Some(e) => Some(e),
            None => self.negative.get_mut(source),
        }
    }

    /// A source's first keys: it moves from the sources without keys to those with, on
    /// probation, room made first. Nothing if it is not among the sources without keys.
    pub(super) fn first_keys(&mut self, source: &KeySource, max_entries: usize, c: &Counters) {
        if let Some(mut e) = self.negative.remove(source) {
            if self.positive.len() >= max_entries {
                self.evict_positive(max_entries, c);
            }
            e.standing = Standing::Probation;
            self.positive.insert(source.clone(), e);
        }
    }

    /// Makes room among sources with keys: the least recently used source on probation,
    /// or, while protected sources hold more than their share, the least recently used
    /// protected one; one not being fetched if there is one. Called only when a source's
    /// first fetch succeeds (one scan of the table, as before the segments).
    fn evict_positive(&mut self, max_entries: usize, counters: &Counters) {
        let protected_first = self.protected > protected_share(max_entries);
        let victim = self
            .positive
            .iter()
            .min_by_key(|(_, e)| {
                (
                    (e.standing == Standing::Protected) != protected_first,
                    e.inflight.is_some(),
                    e.last_used,
                )
            })
            .map(|(k, _)| k.clone());
        if let Some(e) = victim.and_then(|k| self.positive.remove(&k)) {
            if e.standing == Standing::Protected {
                self.protected = self.protected.saturating_sub(1);
            }
            bump(&counters.evictions);
        }
    }
}

/// Makes room among sources without keys: the one whose backoff ends soonest (forgetting
/// it loses the least), never one being fetched. `false` when every one is being fetched.
pub(super) fn evict_negative<K>(
    map: &mut BTreeMap<KeySource, Entry<K>>,
    counters: &Counters,
) -> bool {
    let victim = map
        .iter()
        .filter(|(_, e)| e.inflight.is_none())
        .min_by_key(|(_, e)| (e.retry_at, e.last_used))
        .map(|(k, _)| k.clone());
    match victim {
        Some(k) => {
            map.remove(&k);
            bump(&counters.negative_evictions);
            true
        }
        None => false,
    }
}
