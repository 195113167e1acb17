//! One throttle for every guessable secret a server checks: interaction codes (per
//! pending request, per account, per client) and passwords (per account, per client).
//!
//! Each failure is counted against every key it concerns. A key's first
//! [`ThrottlePolicy::free_failures`] failures cost nothing; after that each failure blocks
//! the key for twice as long as the one before, from [`ThrottlePolicy::base_delay`] up to
//! [`ThrottlePolicy::max_delay`]. While a key is blocked its requests are refused before
//! the secret is even looked at (no hash computed, no store read), and a refused request
//! is not another failure, so an attacker gets a handful of guesses per `max_delay`
//! window, not more. A key with no failure for [`ThrottlePolicy::forget_after`] starts
//! afresh, and a success clears the keys it names.
//!
//! A guess is checked and counted in one step ([`Throttle::attempt`]) before the secret is
//! looked at, so that guesses sent at once each see the ones before them counted: checking
//! ([`Throttle::blocked`]) before the lookup and counting ([`Throttle::failed`]) after it
//! would let every guess already in flight through. A wrong guess then needs nothing
//! more. A right one clears its keys ([`Throttle::succeeded`], a password: only its owner
//! knows it), or gives back the [`Receipt`] of its attempt ([`Throttle::refund`], an
//! interaction code: anyone can hold right codes of their own, and must not reset what
//! their wrong ones counted). A refund takes back the attempt's own failure and nothing
//! else: a key nothing else was written to since the attempt is put back exactly as the
//! attempt found it, so that a block the attempt started ends; on a key where other
//! failures were counted meanwhile, one failure is taken back and the block recomputed
//! from the failures left, so that those stay counted and a block they start stays. While
//! an attempt is in flight its failure counts: a guess made in that moment may be refused
//! for a block that the refund then lifts.
//!
//! A lockout never lasts longer than `max_delay` after the attacker's last try, and a
//! caller can keep a person's own way in open by counting a client that proved itself
//! before under a key of its own instead of the per-account one (the Person Server does
//! this for a browser that signed in to that account since its password was set: see its
//! sign-in).
//!
//! [`MemoryThrottle`] keeps the counters of one process, bounded; checking a key is
//! `O(1)` (a hash lookup) and counting a failure amortized `O(log n)`. Several instances
//! share a store behind [`Throttle`]: `RedisThrottle` (feature `redis`) keeps the same
//! counters in Redis, so that a failure counted by one instance blocks the key at all of
//! them (N instances counting alone would give an attacker N times the guesses).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::store::StoreError;
use aauth_keys::time::UnixTime;
use async_trait::async_trait;
use sha2::{Digest as _, Sha256};

#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use redis::RedisThrottle;

/// What a failure is counted against: a scope (`"password/account"`, `"code/client"`, …)
/// and a value, hashed, so that attacker-chosen values (account names, codes) cost a
/// fixed 32 bytes each.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThrottleKey([u8; 32]);

impl std::fmt::Debug for ThrottleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThrottleKey({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

impl ThrottleKey {
    /// The key for `value` within `scope`.
    ///
    /// ```
    /// use aauth_metadata::throttle::ThrottleKey;
    /// assert_eq!(ThrottleKey::new("password/account", "alice"), ThrottleKey::new("password/account", "alice"));
    /// assert_ne!(ThrottleKey::new("password/account", "alice"), ThrottleKey::new("code/account", "alice"));
    /// ```
    #[must_use]
    pub fn new(scope: &str, value: &str) -> Self {
        let mut h = Sha256::new();
        h.update(scope.as_bytes());
        h.update([0]);
        h.update(value.as_bytes());
        Self(h.finalize().into())
    }

    /// The key as 64 hexadecimal digits (a store's key name).
    #[must_use]
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key of a client address within `scope` (an IPv6 client by its /64, since one
    /// host usually holds the whole prefix; an IPv4 client seen on a dual-stack socket as
    /// `::ffff:a.b.c.d` by its IPv4 address, not as the /64 every IPv4 client shares).
    ///
    /// ```
    /// use aauth_metadata::throttle::{ClientAddr, ThrottleKey};
    /// let key = |a: &str| ThrottleKey::client("s", ClientAddr(a.parse().unwrap()));
    /// assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
    /// assert_ne!(key("::ffff:192.0.2.1"), key("::ffff:192.0.2.2"));
    /// assert_eq!(key("2001:db8::1"), key("2001:db8::2"));
    /// ```
    #[must_use]
    pub fn client(scope: &str, addr: ClientAddr) -> Self {
        let value = match addr.0.to_canonical() {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        };
        Self::new(scope, &value)
    }
}

/// The address a request came from, as the server's adapter saw it (an `http::Extensions`
/// entry). Whoever accepts connections inserts it (from axum's `ConnectInfo`, or at
/// `accept`); behind a reverse proxy, the proxy's word for the client, set only by a
/// layer that trusts that proxy. Without it, a role throttles per account and per
/// request only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// How failures turn into waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThrottlePolicy {
    /// Failures a key may have before the first block (default 5).
    pub free_failures: u32,
    /// The first block, in seconds (default 1); each further failure doubles it.
    pub base_delay: u64,
    /// The longest block, in seconds (default 900: 15 minutes).
    pub max_delay: u64,
    /// A key whose last failure is this old starts afresh, in seconds (default 3600).
    pub forget_after: u64,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            free_failures: 5,
            base_delay: 1,
            max_delay: 900,
            forget_after: 3600,
        }
    }
}

impl ThrottlePolicy {
    /// A policy allowing `free_failures` before blocking for `base_delay`, doubling up to
    /// `max_delay`, forgetting a key after `forget_after` without failures (whole seconds).
    #[must_use]
    pub fn new(
        free_failures: u32,
        base_delay: Duration,
        max_delay: Duration,
        forget_after: Duration,
    ) -> Self {
        let (base_delay, max_delay, forget_after) = (
            base_delay.as_secs(),
            max_delay.as_secs(),
            forget_after.as_secs(),
        );
        Self {
            free_failures,
            base_delay: base_delay.max(1),
            max_delay: max_delay.max(base_delay.max(1)),
            forget_after,
        }
    }

    /// How long a key with `failures` failures is blocked after the last one.
    ///
    /// ```
    /// use aauth_metadata::throttle::ThrottlePolicy;
    /// let p = ThrottlePolicy::default();
    /// assert_eq!((p.delay(5), p.delay(6), p.delay(7), p.delay(9)), (0, 1, 2, 8));
    /// assert_eq!(p.delay(u32::MAX), 900);
    /// ```
    #[must_use]
    pub fn delay(&self, failures: u32) -> u64 {
        let Some(over) = failures.checked_sub(self.free_failures) else {
            return 0;
        };
        if over == 0 {
            return 0;
        }
        let doublings = (over - 1).min(63);
        self.base_delay
            .checked_shl(doublings)
            .filter(|d| *d >> doublings == self.base_delay)
            .unwrap_or(u64::MAX)
            .min(self.max_delay)
    }

    /// The whole second from which a key whose `failures`-th failure came in the second
    /// `now` may try again: `now` when the failure is free, else `now + delay + 1`. A
    /// clock of whole seconds cannot tell where in its second the failure came, so the
    /// block ends one second late rather than possibly at once (a one-second block
    /// starting at 0.99 s would otherwise end at 1.0 s).
    ///
    /// ```
    /// use aauth_metadata::throttle::ThrottlePolicy;
    /// let p = ThrottlePolicy::default();
    /// assert_eq!((p.blocked_until(5, 100), p.blocked_until(6, 100)), (100, 102));
    /// ```
    #[must_use]
    pub fn blocked_until(&self, failures: u32, now: u64) -> u64 {
        match self.delay(failures) {
            0 => now,
            d => now.saturating_add(d).saturating_add(1),
        }
    }
}

/// One key as a throttle holds it: what a [`Receipt`] remembers of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyState {
    /// The failures counted since the key was last absent.
    pub failures: u32,
    /// The second of the last failure counted.
    pub last: u64,
    /// The second from which the key may try again ([`ThrottlePolicy::blocked_until`]
    /// of `failures` and `last`).
    pub blocked_until: u64,
    /// Names this life of the key: the stamp of the failure that found it absent (or
    /// forgotten), kept until it is cleared or forgotten.
    pub life: u128,
    /// Names the write that left the key so (a refund that puts a key back as it was
    /// puts its stamp back too): no two writes to a key share one.
    pub stamp: u128,
}

impl KeyState {
    /// When the key may be forgotten under `policy`.
    fn expiry(&self, policy: &ThrottlePolicy) -> u64 {
        self.last
            .saturating_add(policy.forget_after)
            .max(self.blocked_until)
    }
}

/// One failure an attempt counted: against which key, the key as the attempt found it
/// (`None`: absent or forgotten) and as it left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// The key.
    pub key: ThrottleKey,
    /// The key before the failure.
    pub before: Option<KeyState>,
    /// The key after it.
    pub after: KeyState,
}

/// What one [`Throttle::attempt`] counted, key by key, in order: given back to
/// [`Throttle::refund`] when the guess proves right. Not `Clone`: a receipt is given back
/// once.
#[derive(Debug, Default, PartialEq, Eq)]
#[must_use = "a right guess whose keys are not cleared gives its receipt back to Throttle::refund"]
pub struct Receipt {
    counted: Vec<Counted>,
}

impl Receipt {
    /// A receipt of `counted`, in the order the failures were counted (for an
    /// implementation of [`Throttle`] outside this crate).
    pub fn new(counted: Vec<Counted>) -> Self {
        Self { counted }
    }

    /// What was counted, in order.
    #[must_use]
    pub fn counted(&self) -> &[Counted] {
        &self.counted
    }

    /// What was counted, in order, taken out of the receipt.
    #[must_use]
    pub fn into_counted(self) -> Vec<Counted> {
        self.counted
    }
}

/// The answer to [`Throttle::attempt`].
#[derive(Debug, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum Attempt {
    /// A key is blocked for this many seconds more: the guess is refused, nothing counted.
    Blocked(u64),
    /// One failure counted against each key; the receipt takes it back.
    Counted(Receipt),
}

impl Attempt {
    /// The wait, when the guess is refused.
    #[must_use]
    pub fn blocked(&self) -> Option<u64> {
        match self {
            Self::Blocked(wait) => Some(*wait),
            Self::Counted(_) => None,
        }
    }

    /// The receipt of a guess counted, or the wait of one refused (`Err(seconds)`).
    ///
    /// # Errors
    ///
    /// The wait, when the guess is refused.
    pub fn into_receipt(self) -> Result<Receipt, u64> {
        match self {
            Self::Counted(receipt) => Ok(receipt),
            Self::Blocked(wait) => Err(wait),
        }
    }
}

/// Counts failed guesses and says when a key must wait. When it cannot answer (a shared
/// store is down, [`StoreError`]) the guess is refused, never checked unthrottled.
#[async_trait]
pub trait Throttle: Send + Sync {
    /// `Some(seconds)` when any of `keys` is blocked at `now`: the longest remaining wait.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn blocked(&self, keys: &[ThrottleKey], now: UnixTime)
    -> Result<Option<u64>, StoreError>;

    /// Counts one failure against each of `keys`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn failed(&self, keys: &[ThrottleKey], now: UnixTime) -> Result<(), StoreError>;

    /// Checks and counts one guess in one step, before the guess is checked:
    /// [`Attempt::Blocked`] when any of `keys` is blocked at `now` (nothing counted, as
    /// [`Throttle::blocked`]); else one failure counted against each key, and
    /// [`Attempt::Counted`] with the [`Receipt`] of what it wrote. Of guesses made at once
    /// (on any instance sharing the store), each sees the ones before it counted, so no
    /// more pass than the policy allows one after another; checking with
    /// [`Throttle::blocked`] and counting with [`Throttle::failed`] after the guess lets
    /// every guess already in flight through.
    ///
    /// A wrong guess is then counted. A right one clears its keys with
    /// [`Throttle::succeeded`], or takes back only its own failure with
    /// [`Throttle::refund`].
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn attempt(&self, keys: &[ThrottleKey], now: UnixTime) -> Result<Attempt, StoreError>;

    /// Takes back the failure the attempt of `receipt` counted, for a guess that proved
    /// right where a right guess must not clear what wrong ones counted (an interaction
    /// code: anyone can hold right codes of their own). Each key of the receipt, the last
    /// counted first:
    ///
    /// - if nothing was written to it since the attempt (it is as the attempt left it), is
    ///   put back as the attempt found it: its failures, its last failure and its block,
    ///   or no entry. A block the attempt started ends.
    /// - if it was written to since (other failures counted, other refunds), has one
    ///   failure fewer, and its block is recomputed for the failures left from its last
    ///   failure, never longer than it was: a block that the other failures start stays.
    /// - if it was cleared or forgotten since, stays as it is: the attempt's failure is no
    ///   longer counted.
    ///
    /// The second case keeps the time of the key's last failure. When that failure was
    /// another right guess's, counted while this one was in flight and given back after
    /// it, the key keeps that time: its failures left, if past the free ones, block from
    /// then (never longer than the key was blocked), and it is forgotten from then.
    ///
    /// `now` is the time of the refund (it tells whether a key has been forgotten). A
    /// receipt is given back once, to the throttle that wrote it or one sharing its store;
    /// another's takes nothing back.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn refund(&self, receipt: Receipt, now: UnixTime) -> Result<(), StoreError>;

    /// Clears `keys` (a correct password clears its account's and client's counts).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn succeeded(&self, keys: &[ThrottleKey]) -> Result<(), StoreError>;
}

/// The default bound of a [`MemoryThrottle`]: keys with failures in the last
/// `forget_after` seconds.
pub const DEFAULT_THROTTLE_KEYS: usize = 100_000;

/// Where the stamps of [`MemoryThrottle`]s come from: one counter for the process, so
/// that a receipt given to another throttle than the one that wrote it matches nothing.
static NEXT_STAMP: AtomicU64 = AtomicU64::new(1);

fn next_stamp() -> u128 {
    u128::from(NEXT_STAMP.fetch_add(1, Ordering::Relaxed))
}

#[derive(Debug, Default)]
#[allow(
    clippy::disallowed_types,
    reason = "a lookup table, never iterated into anything signed or serialized; O(1)"
)]
struct Counts {
    by_key: std::collections::HashMap<ThrottleKey, KeyState>,
    /// The same keys by expiry, to forget them without a scan.
    by_expiry: std::collections::BTreeSet<(u64, ThrottleKey)>,
}

impl Counts {
    fn sweep(&mut self, now: u64) {
        while let Some(&(at, key)) = self.by_expiry.first() {
            if at > now {
                break;
            }
            self.by_expiry.pop_first();
            self.by_key.remove(&key);
        }
    }

    /// The longest wait any of `keys` has left at `now`, if one is blocked.
    fn blocked(&self, keys: &[ThrottleKey], now: u64) -> Option<u64> {
        keys.iter()
            .filter_map(|k| self.by_key.get(k))
            .filter(|c| c.blocked_until > now)
            .map(|c| c.blocked_until - now)
            .max()
    }

    /// Counts a failure at `now` against each of `keys`, keeping at most `max` keys: what
    /// it counted.
    fn failed(
        &mut self,
        keys: &[ThrottleKey],
        now: u64,
        policy: &ThrottlePolicy,
        max: usize,
    ) -> Vec<Counted> {
        self.sweep(now);
        let mut counted = Vec::with_capacity(keys.len());
        for key in keys {
            // (A key written earlier in this call may be forgotten already: with
            // `forget_after` 0, a free failure is forgotten in its own second.)
            let before = self.take(*key, policy).filter(|c| c.expiry(policy) > now);
            if before.is_none() && self.by_key.len() >= max {
                self.forget_earliest();
            }
            let stamp = next_stamp();
            let failures = before.map_or(0, |c| c.failures).saturating_add(1);
            let after = KeyState {
                failures,
                last: now,
                blocked_until: policy.blocked_until(failures, now),
                life: before.map_or(stamp, |c| c.life),
                stamp,
            };
            self.put(*key, after, policy);
            counted.push(Counted {
                key: *key,
                before,
                after,
            });
        }
        counted
    }

    /// Takes back what `counted` counted, at `now` ([`Throttle::refund`]).
    fn refund(&mut self, counted: &[Counted], now: u64, policy: &ThrottlePolicy) {
        for c in counted.iter().rev() {
            let Some(current) = self.by_key.get(&c.key).copied() else {
                continue;
            };
            if current.expiry(policy) <= now || current.life != c.after.life {
                continue; // forgotten or cleared since: the failure is not counted any more
            }
            self.take(c.key, policy);
            if current == c.after {
                if let Some(before) = c.before {
                    self.put(c.key, before, policy);
                }
            } else if let Some(failures) = current.failures.checked_sub(1).filter(|f| *f > 0) {
                let until = policy.blocked_until(failures, current.last);
                let left = KeyState {
                    failures,
                    blocked_until: until.min(current.blocked_until),
                    stamp: next_stamp(),
                    ..current
                };
                self.put(c.key, left, policy);
            }
        }
    }

    /// Removes `key`'s entry, if any: what it held.
    fn take(&mut self, key: ThrottleKey, policy: &ThrottlePolicy) -> Option<KeyState> {
        let c = self.by_key.remove(&key)?;
        self.by_expiry.remove(&(c.expiry(policy), key));
        Some(c)
    }

    /// Sets `key`'s entry to `c`.
    fn put(&mut self, key: ThrottleKey, c: KeyState, policy: &ThrottlePolicy) {
        self.by_expiry.insert((c.expiry(policy), key));
        self.by_key.insert(key, c);
    }

    fn forget_earliest(&mut self) {
        if let Some((_, key)) = self.by_expiry.pop_first() {
            self.by_key.remove(&key);
        }
    }
}

/// The counters of one process, at most `max` keys: past that, the key closest to being
/// forgotten goes first (so a flood of new keys costs memory once, not forever).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use aauth_keys::time::UnixTime;
/// use aauth_metadata::throttle::{MemoryThrottle, Throttle, ThrottleKey, ThrottlePolicy};
/// use std::time::Duration;
/// let t = MemoryThrottle::new(ThrottlePolicy::new(
///     2,
///     Duration::from_secs(10),
///     Duration::from_secs(60),
///     Duration::from_secs(3600),
/// ));
/// let alice = [ThrottleKey::new("password/account", "alice")];
/// t.failed(&alice, UnixTime(100)).await?;
/// t.failed(&alice, UnixTime(101)).await?;
/// assert_eq!(t.blocked(&alice, UnixTime(101)).await?, None); // two are free
/// t.failed(&alice, UnixTime(102)).await?;
/// assert_eq!(t.blocked(&alice, UnixTime(103)).await?, Some(10)); // blocked until 113
/// assert_eq!(t.blocked(&alice, UnixTime(113)).await?, None);
/// t.succeeded(&alice).await?;
/// // An interaction code is counted before it is looked up; a right one gives its count
/// // back, and leaves nothing behind.
/// let code = [ThrottleKey::new("code/account", "alice")];
/// let attempt = t.attempt(&code, UnixTime(120)).await?;
/// assert_eq!(attempt.blocked(), None);
/// if let Ok(receipt) = attempt.into_receipt() {
///     t.refund(receipt, UnixTime(120)).await?;
/// }
/// assert!(t.is_empty());
/// # Ok::<(), aauth_metadata::store::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct MemoryThrottle {
    counts: Mutex<Counts>,
    policy: ThrottlePolicy,
    max: usize,
}

impl MemoryThrottle {
    /// Counters under `policy`, at most [`DEFAULT_THROTTLE_KEYS`] keys.
    #[must_use]
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            counts: Mutex::new(Counts::default()),
            policy,
            max: DEFAULT_THROTTLE_KEYS,
        }
    }

    /// At most `max` keys (at least 1).
    #[must_use]
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max = max.max(1);
        self
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &ThrottlePolicy {
        &self.policy
    }

    /// How many keys are held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    /// Whether no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryThrottle {
    fn default() -> Self {
        Self::new(ThrottlePolicy::default())
    }
}

#[async_trait]
impl Throttle for MemoryThrottle {
    async fn blocked(
        &self,
        keys: &[ThrottleKey],
        now: UnixTime,
    ) -> Result<Option<u64>, StoreError> {
        Ok(self.lock().blocked(keys, now.as_secs()))
    }

    async fn failed(&self, keys: &[ThrottleKey], now: UnixTime) -> Result<(), StoreError> {
        self.lock()
            .failed(keys, now.as_secs(), &self.policy, self.max);
        Ok(())
    }

    async fn attempt(&self, keys: &[ThrottleKey], now: UnixTime) -> Result<Attempt, StoreError> {
        let mut counts = self.lock();
        let now = now.as_secs();
        if let Some(wait) = counts.blocked(keys, now) {
            return Ok(Attempt::Blocked(wait));
        }
        let counted = counts.failed(keys, now, &self.policy, self.max);
        Ok(Attempt::Counted(Receipt::new(counted)))
    }

    async fn refund(&self, receipt: Receipt, now: UnixTime) -> Result<(), StoreError> {
        self.lock()
            .refund(receipt.counted(), now.as_secs(), &self.policy);
        Ok(())
    }

    async fn succeeded(&self, keys: &[ThrottleKey]) -> Result<(), StoreError> {
        let mut counts = self.lock();
        for key in keys {
            counts.take(*key, &self.policy);
        }
        Ok(())
    }
}
