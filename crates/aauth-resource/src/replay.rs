//! The replay check for state-changing requests (security catalogue R1–R10): the key is
//! SHA-256 over the signer's thumbprint and the signature base (never the signature
//! bytes), recorded only after the signature verified, kept until the `created` window
//! closes, and a store that cannot answer fails closed.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use aauth_keys::time::UnixTime;
use async_trait::async_trait;

/// The replay store could not record or look up a key: the request must be refused
/// (`503`), never admitted unchecked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replay store unavailable: {reason}")]
pub struct ReplayStoreError {
    /// What failed.
    pub reason: String,
}

/// Where replay keys are recorded. The memory store covers one process; a deployment
/// with several instances needs a shared store behind this trait.
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Records `key` until `until`; `Ok(false)` when it was already recorded and has not
    /// expired, that is, a replay.
    ///
    /// # Errors
    ///
    /// [`ReplayStoreError`] when the store cannot answer.
    async fn first_use(
        &self,
        key: [u8; 32],
        until: UnixTime,
        now: UnixTime,
    ) -> Result<bool, ReplayStoreError>;
}

/// An in-memory replay store, bounded: expired keys are dropped when the bound is reached,
/// and if every key is still live the store refuses (fail closed) rather than forget one.
///
/// ```
/// # tokio_test_block_on(async {
/// use aauth_keys::time::UnixTime;
/// use aauth_resource::{MemoryReplayStore, ReplayStore};
/// let store = MemoryReplayStore::new(1000);
/// assert!(store.first_use([1; 32], UnixTime(160), UnixTime(100)).await.unwrap());
/// assert!(!store.first_use([1; 32], UnixTime(160), UnixTime(120)).await.unwrap());
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug)]
pub struct MemoryReplayStore {
    seen: Mutex<BTreeMap<[u8; 32], u64>>,
    max: usize,
}

impl MemoryReplayStore {
    /// A store holding at most `max` live keys (at least 1).
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            seen: Mutex::new(BTreeMap::new()),
            max: max.max(1),
        }
    }

    /// How many keys are held (live or not yet pruned).
    #[must_use]
    pub fn len(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ReplayStore for MemoryReplayStore {
    async fn first_use(
        &self,
        key: [u8; 32],
        until: UnixTime,
        now: UnixTime,
    ) -> Result<bool, ReplayStoreError> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&expires) = seen.get(&key)
            && now.as_secs() < expires
        {
            return Ok(false);
        }
        if seen.len() >= self.max {
            // Entries expire on absolute time, so a clock that moved backwards keeps them.
            seen.retain(|_, &mut expires| expires > now.as_secs());
            if seen.len() >= self.max {
                return Err(ReplayStoreError {
                    reason: format!("{} live keys, the store's bound", self.max),
                });
            }
        }
        seen.insert(key, until.as_secs());
        Ok(true)
    }
}
