//! Waking long polls when a pending request changes.
//!
//! An agent's `Prefer: wait` poll waits for its pending request to change (the person
//! answers, another poll delivers) rather than re-reading the store on a timer. A store
//! says how it learns of changes through [`PsStore::pending_changes`](crate::PsStore::pending_changes):
//! the memory and SQLite stores keep a [`ChangeHub`] in the process and notify it on
//! every write of a pending request; a store shared by several instances wakes the other
//! instances' waiters itself (PostgreSQL's `LISTEN/NOTIFY`, say); a store that cannot
//! tell falls back to re-reading once a second ([`PendingChanges::polling`]).
//!
//! ```
//! use std::time::Duration;
//! use aauth_person_server::ChangeHub;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let hub = ChangeHub::default();
//! let mut changes = hub.subscribe("p1");
//! hub.notify("p1");
//! // Wakes at once: the change happened after the subscription.
//! tokio::time::timeout(Duration::from_millis(50), changes.changed())
//!     .await
//!     .expect("woken by the notification");
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

/// How often a waiter re-reads the store when its store cannot notify.
pub const POLLING_FALLBACK: Duration = Duration::from_secs(1);

/// One waiter's subscription to the changes of one pending request. Subscribe before
/// reading the request, so that no change between the read and the wait is missed.
#[derive(Debug)]
pub struct PendingChanges {
    rx: Option<watch::Receiver<u64>>,
}

impl PendingChanges {
    /// A subscription that cannot be notified: [`changed`](Self::changed) returns after
    /// [`POLLING_FALLBACK`] and the waiter re-reads the store.
    #[must_use]
    pub fn polling() -> Self {
        Self { rx: None }
    }

    /// Returns when the request may have changed (a notification, or the fallback
    /// interval of a store that cannot notify).
    pub async fn changed(&mut self) {
        match &mut self.rx {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    // The hub dropped its sender (the store is going away): re-read on
                    // the fallback interval from now on.
                    self.rx = None;
                    tokio::time::sleep(POLLING_FALLBACK).await;
                }
            }
            None => tokio::time::sleep(POLLING_FALLBACK).await,
        }
    }
}

/// The in-process notifier of a store: one `watch` channel per pending request that
/// somebody waits on, dropped when nobody does.
#[derive(Default)]
pub struct ChangeHub {
    senders: Mutex<BTreeMap<String, watch::Sender<u64>>>,
}

/// Past this many channels, a subscription first drops those nobody listens to.
const PRUNE_ABOVE: usize = 1024;

impl ChangeHub {
    /// Subscribes to the changes of pending request `id`.
    pub fn subscribe(&self, id: &str) -> PendingChanges {
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        if senders.len() > PRUNE_ABOVE {
            senders.retain(|_, tx| tx.receiver_count() > 0);
        }
        let rx = match senders.get(id) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(0);
                senders.insert(id.to_owned(), tx);
                rx
            }
        };
        PendingChanges { rx: Some(rx) }
    }

    /// Wakes every waiter on every pending request: a store that lost its notifications
    /// for a while (a reconnection) cannot tell which requests changed meanwhile.
    pub fn notify_all(&self) {
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        senders.retain(|_, tx| tx.receiver_count() > 0);
        for tx in senders.values() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wakes every waiter on pending request `id` (after the change is written).
    pub fn notify(&self, id: &str) {
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = senders.get(id) {
            if tx.receiver_count() == 0 {
                senders.remove(id);
            } else {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}

/// Waiters are not state: a store's `Debug` shows the same before and after a poll.
impl std::fmt::Debug for ChangeHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeHub").finish_non_exhaustive()
    }
}
