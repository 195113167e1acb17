//! The replay check every role applies to state-changing requests (draft -11, "Freshness
//! and Replay": a verifier keeps a short-lived cache of what it accepted within the
//! signature window and refuses duplicates).
//!
//! One mechanism for the resource, the agent provider, the Person Server and the Access
//! Server:
//!
//! - the key is SHA-256 over the signer's key thumbprint and the signature base
//!   ([`VerifiedRequest::replay_key`]), never the signature bytes, which ES256's `(r, n−s)`
//!   and lenient base64 let an attacker re-encode;
//! - it is recorded only after the signature (and the token, and its revocation) verified,
//!   so a forged copy cannot burn a genuine request's entry first;
//! - it is kept until the `created` window closes, after which the signature itself is
//!   refused as too old;
//! - a store that cannot answer refuses the request (`503`), never admits it unchecked;
//! - each signer has a share of the store, so one agent (or one key) cannot fill it and
//!   lock every other signer out: past its share, only that signer is refused (`429`);
//! - so has each party that can vouch for any number of keys: an agent provider (every
//!   key its agent tokens bind), a person at a Person or Access Server (every key a
//!   person or auth token of theirs binds: one person's agents, not every person of that
//!   server), the server of a `jwks_uri` or `jwks` key; every `jkt-jwt` signer together
//!   and every bare `hwk` key together (anyone can make any number). So one provider, or
//!   one person, minting keys cannot fill it either, and their `429` falls on their own
//!   signers only.

use std::sync::{Arc, Mutex, PoisonError};

use aauth_keys::time::UnixTime;
use aauth_tokens::{BoundToken, ServerId};
use async_trait::async_trait;
use http::Method;

use crate::{RevocationList, VerifiedRequest};

/// Why a replay store did not record a use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayStoreError {
    /// The store cannot answer (down, timed out): the request is refused with `503`.
    #[error("replay store unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
    },
    /// Every slot holds a live entry: the request is refused with `503` rather than an
    /// entry forgotten early.
    #[error("replay store full: {live} live entries")]
    Full {
        /// The bound.
        live: usize,
    },
    /// This signer already holds its whole share of live entries: only its request is
    /// refused (`429`), other signers are unaffected.
    #[error("this signer holds {share} live replay entries, its share")]
    SignerOverShare {
        /// The share.
        share: usize,
    },
    /// The signer's issuer (every key it vouched for, together) already holds its whole
    /// share of live entries: only its signers are refused (`429`), other issuers' are
    /// unaffected.
    #[error("this signer's issuer holds {share} live replay entries, its share")]
    IssuerOverShare {
        /// The share.
        share: usize,
    },
}

/// One accepted use of a signed request, to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayUse<'a> {
    /// The signer: the thumbprint of the key that verified.
    pub signer: &'a str,
    /// Who vouched for the signer's key (see [`ReplayUse::issuer`]), if anyone.
    pub issuer: Option<&'a str>,
    /// SHA-256 over the thumbprint and the signature base.
    pub key: [u8; 32],
    /// When the entry may be forgotten: the close of the `created` window.
    pub until: UnixTime,
}

impl<'a> ReplayUse<'a> {
    /// A use by `signer` with replay `key`, kept until `until`.
    #[must_use]
    pub fn new(signer: &'a str, key: [u8; 32], until: UnixTime) -> Self {
        Self {
            signer,
            issuer: None,
            key,
            until,
        }
    }

    /// The same use, counted in the share of `issuer` too: the party that vouched for the
    /// signer's key (and can vouch for any number of keys), so that its keys together
    /// hold no more than one issuer's share.
    #[must_use]
    pub fn issuer(mut self, issuer: &'a str) -> Self {
        self.issuer = Some(issuer);
        self
    }
}

/// Where accepted uses are recorded. [`MemoryReplayStore`] covers one process; a
/// deployment with several instances shares a store behind this trait.
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Records `entry`; `Ok(false)` when its key is already recorded and live, that is,
    /// a replay. Nothing is recorded on `Ok(false)` or on an error.
    ///
    /// # Errors
    ///
    /// [`ReplayStoreError`].
    async fn first_use(
        &self,
        entry: &ReplayUse<'_>,
        now: UnixTime,
    ) -> Result<bool, ReplayStoreError>;
}

/// What [`RevocationReplayStore::first_use_unrevoked`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FirstUse {
    /// The token is not revoked and the use is now recorded: the request may be admitted.
    Recorded,
    /// The token is not revoked, but the use is already recorded and live: a replay.
    Replayed,
    /// The token is revoked: nothing was recorded.
    Revoked,
}

/// A revocation list and a replay store that can answer a token-bearing state-changing
/// request's two questions (is its token revoked? is this its first use?) in one step.
///
/// For a store in this process the default (the list, then the replay store) costs
/// nothing more; for a shared store it is one round trip where the two checks would be
/// two, which is why [`crate::Verifier::revocations_and_replay`] asks it. The one step
/// must keep the order of the two: a revoked token's request records nothing.
///
/// ```
/// # futures_executor::block_on(async {
/// use aauth_keys::time::UnixTime;
/// use aauth_signing::{
///     FirstUse, MemoryReplayStore, ReplayStore, ReplayStoreError, ReplayUse, RevocationList,
///     RevocationReplayStore,
/// };
/// use aauth_tokens::ServerId;
///
/// // A replay store beside a fixed list of revoked `jti`s; the default joins them.
/// struct Both(MemoryReplayStore, &'static [&'static str]);
/// #[async_trait::async_trait]
/// impl RevocationList for Both {
///     async fn is_revoked(&self, _: &ServerId, jti: &str) -> Result<bool, String> {
///         Ok(self.1.contains(&jti))
///     }
/// }
/// #[async_trait::async_trait]
/// impl ReplayStore for Both {
///     async fn first_use(&self, e: &ReplayUse<'_>, now: UnixTime) -> Result<bool, ReplayStoreError> {
///         self.0.first_use(e, now).await
///     }
/// }
/// impl RevocationReplayStore for Both {}
///
/// let store = Both(MemoryReplayStore::new(100), &["withdrawn"]);
/// let ps = ServerId::parse("https://ps.example").unwrap();
/// let use_ = ReplayUse::new("agent-key", [1; 32], UnixTime(160));
/// let now = UnixTime(100);
/// assert_eq!(store.first_use_unrevoked(&ps, "withdrawn", &use_, now).await, Ok(FirstUse::Revoked));
/// assert_eq!(store.first_use_unrevoked(&ps, "live", &use_, now).await, Ok(FirstUse::Recorded));
/// assert_eq!(store.first_use_unrevoked(&ps, "live", &use_, now).await, Ok(FirstUse::Replayed));
/// # });
/// ```
#[async_trait]
pub trait RevocationReplayStore: RevocationList + ReplayStore {
    /// Whether the token `(iss, jti)` is revoked and, when it is not, records `entry`
    /// ([`ReplayStore::first_use`]). Nothing is recorded for a revoked token, a replay,
    /// or on an error.
    ///
    /// # Errors
    ///
    /// [`ReplayStoreError`]; a list that cannot answer is
    /// [`ReplayStoreError::Unavailable`].
    async fn first_use_unrevoked(
        &self,
        iss: &ServerId,
        jti: &str,
        entry: &ReplayUse<'_>,
        now: UnixTime,
    ) -> Result<FirstUse, ReplayStoreError> {
        if self
            .is_revoked(iss, jti)
            .await
            .map_err(|reason| ReplayStoreError::Unavailable { reason })?
        {
            return Ok(FirstUse::Revoked);
        }
        Ok(if self.first_use(entry, now).await? {
            FirstUse::Recorded
        } else {
            FirstUse::Replayed
        })
    }
}

/// The default bound of a [`MemoryReplayStore`]: live entries in all.
pub const DEFAULT_REPLAY_ENTRIES: usize = 100_000;
/// The default share of one signer: with the 60-second window an entry lives at most two
/// minutes, so this is about 80 state-changing requests a second from one key.
pub const DEFAULT_REPLAY_SHARE: usize = 10_000;
/// The default share of one issuer (every key it vouched for, together): a quarter of
/// [`DEFAULT_REPLAY_ENTRIES`], so no one provider can fill the store.
pub const DEFAULT_REPLAY_ISSUER_SHARE: usize = 25_000;

/// An in-memory replay store, bounded in all, per signer and per issuer. Expired entries are dropped
/// by the second they expire as new ones arrive (amortized `O(1)` a request, never a
/// scan).
///
/// ```
/// # futures_executor::block_on(async {
/// use aauth_keys::time::UnixTime;
/// use aauth_signing::{MemoryReplayStore, ReplayStore, ReplayStoreError, ReplayUse};
/// let store = MemoryReplayStore::new(1000).share(2);
/// let at = |k: u8| ReplayUse::new("agent-key", [k; 32], UnixTime(160));
/// assert!(store.first_use(&at(1), UnixTime(100)).await.unwrap());
/// assert!(!store.first_use(&at(1), UnixTime(120)).await.unwrap()); // a replay
/// assert!(store.first_use(&at(2), UnixTime(120)).await.unwrap());
/// assert_eq!(
///     store.first_use(&at(3), UnixTime(120)).await,
///     Err(ReplayStoreError::SignerOverShare { share: 2 })
/// );
/// // Another signer is unaffected; and once the window closes, the share is free again.
/// assert!(store.first_use(&ReplayUse::new("other", [3; 32], UnixTime(160)), UnixTime(120)).await.unwrap());
/// assert!(store.first_use(&at(3), UnixTime(160)).await.unwrap());
///
/// // One issuer's keys together hold at most its share; another issuer's still pass.
/// let store = MemoryReplayStore::new(1000).issuer_share(2);
/// let by = |key: &'static str, iss: &'static str, k: u8| {
///     ReplayUse::new(key, [k; 32], UnixTime(160)).issuer(iss)
/// };
/// assert!(store.first_use(&by("key-1", "https://a.example", 1), UnixTime(100)).await.unwrap());
/// assert!(store.first_use(&by("key-2", "https://a.example", 2), UnixTime(100)).await.unwrap());
/// assert_eq!(
///     store.first_use(&by("key-3", "https://a.example", 3), UnixTime(100)).await,
///     Err(ReplayStoreError::IssuerOverShare { share: 2 })
/// );
/// assert!(store.first_use(&by("key-4", "https://b.example", 4), UnixTime(100)).await.unwrap());
/// # });
/// ```
#[derive(Debug)]
pub struct MemoryReplayStore {
    inner: Mutex<Inner>,
    max: usize,
    share: usize,
    issuer_share: usize,
}

/// A live key's expiry, signer and issuer.
type Held = (u64, Arc<str>, Option<Arc<str>>);

#[derive(Debug, Default)]
#[allow(
    clippy::disallowed_types,
    reason = "lookup tables, never iterated into anything signed or serialized; O(1)"
)]
struct Inner {
    /// Live keys, with their expiry, signer and issuer.
    seen: std::collections::HashMap<[u8; 32], Held>,
    /// The same keys by the second they expire, to drop them without a scan (a handful of
    /// seconds are live at once, so this map stays small).
    by_expiry: std::collections::BTreeMap<u64, Vec<[u8; 32]>>,
    /// Live entries per signer.
    per_signer: std::collections::HashMap<Arc<str>, usize>,
    /// Live entries per issuer.
    per_issuer: std::collections::HashMap<Arc<str>, usize>,
}

/// One entry fewer for `who` in `counts` (the count dropped at zero).
#[allow(clippy::disallowed_types, reason = "the lookup tables of `Inner`")]
fn release(counts: &mut std::collections::HashMap<Arc<str>, usize>, who: &Arc<str>) {
    if let Some(n) = counts.get_mut(who) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(who);
        }
    }
}

/// The shared name of `who` in `counts` (one allocation per live signer or issuer).
#[allow(clippy::disallowed_types, reason = "the lookup tables of `Inner`")]
fn name_in(counts: &std::collections::HashMap<Arc<str>, usize>, who: &str) -> Arc<str> {
    match counts.get_key_value(who) {
        Some((k, _)) => Arc::clone(k),
        None => Arc::from(who),
    }
}

impl Inner {
    fn sweep(&mut self, now: u64) {
        while self
            .by_expiry
            .first_key_value()
            .is_some_and(|(until, _)| *until <= now)
        {
            let Some((_, keys)) = self.by_expiry.pop_first() else {
                break;
            };
            for key in keys {
                if let Some((_, signer, issuer)) = self.seen.remove(&key) {
                    release(&mut self.per_signer, &signer);
                    if let Some(issuer) = issuer {
                        release(&mut self.per_issuer, &issuer);
                    }
                }
            }
        }
    }
}

impl MemoryReplayStore {
    /// A store holding at most `max` live entries (at least 1), each signer at most
    /// [`DEFAULT_REPLAY_SHARE`] and each issuer at most [`DEFAULT_REPLAY_ISSUER_SHARE`]
    /// (or `max`, if smaller).
    #[must_use]
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            inner: Mutex::new(Inner::default()),
            max,
            share: DEFAULT_REPLAY_SHARE.min(max),
            issuer_share: DEFAULT_REPLAY_ISSUER_SHARE.min(max),
        }
    }

    /// Sets one signer's share (at least 1, at most the whole store).
    #[must_use]
    pub fn share(mut self, share: usize) -> Self {
        self.share = share.clamp(1, self.max);
        self
    }

    /// Sets one issuer's share (at least 1, at most the whole store): the live entries of
    /// every key it vouched for, together.
    #[must_use]
    pub fn issuer_share(mut self, share: usize) -> Self {
        self.issuer_share = share.clamp(1, self.max);
        self
    }

    /// How many entries are held (live or not yet dropped).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    /// Whether no entry is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryReplayStore {
    /// [`DEFAULT_REPLAY_ENTRIES`] entries, [`DEFAULT_REPLAY_SHARE`] per signer.
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_ENTRIES)
    }
}

#[async_trait]
impl ReplayStore for MemoryReplayStore {
    async fn first_use(
        &self,
        entry: &ReplayUse<'_>,
        now: UnixTime,
    ) -> Result<bool, ReplayStoreError> {
        let mut inner = self.lock();
        inner.sweep(now.as_secs());
        if inner.seen.contains_key(&entry.key) {
            return Ok(false);
        }
        if inner.seen.len() >= self.max {
            return Err(ReplayStoreError::Full { live: self.max });
        }
        let held = inner.per_signer.get(entry.signer).copied().unwrap_or(0);
        if held >= self.share {
            return Err(ReplayStoreError::SignerOverShare { share: self.share });
        }
        // default: an issuer with no live entry holds none.
        let issuer_held = entry
            .issuer
            .map(|i| inner.per_issuer.get(i).copied().unwrap_or(0));
        if issuer_held.is_some_and(|n| n >= self.issuer_share) {
            return Err(ReplayStoreError::IssuerOverShare {
                share: self.issuer_share,
            });
        }
        let signer = name_in(&inner.per_signer, entry.signer);
        inner.per_signer.insert(Arc::clone(&signer), held + 1);
        let issuer = entry.issuer.map(|i| name_in(&inner.per_issuer, i));
        if let (Some(issuer), Some(n)) = (&issuer, issuer_held) {
            inner.per_issuer.insert(Arc::clone(issuer), n + 1);
        }
        let until = entry.until.as_secs();
        inner.by_expiry.entry(until).or_default().push(entry.key);
        inner.seen.insert(entry.key, (until, signer, issuer));
        Ok(true)
    }
}

/// Which requests a [`ReplayGuard`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayScope {
    /// Every method but the safe ones (`GET`, `HEAD`, `OPTIONS`, `TRACE`): the default.
    StateChanging,
    /// Every request.
    All,
}

/// The replay check a [`crate::Verifier`] runs after everything else verified.
#[derive(Clone)]
pub struct ReplayGuard {
    store: Arc<dyn ReplayStore>,
    scope: ReplayScope,
}

impl std::fmt::Debug for ReplayGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayGuard")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl ReplayGuard {
    /// Checks state-changing requests against `store`.
    #[must_use]
    pub fn new(store: Arc<dyn ReplayStore>) -> Self {
        Self {
            store,
            scope: ReplayScope::StateChanging,
        }
    }

    /// A guard over a fresh [`MemoryReplayStore`] with the default bounds: what every
    /// role uses unless it is given a shared store.
    #[must_use]
    pub fn in_memory() -> Self {
        Self::new(Arc::new(MemoryReplayStore::default()))
    }

    /// Sets which requests are checked.
    #[must_use]
    pub fn scope(mut self, scope: ReplayScope) -> Self {
        self.scope = scope;
        self
    }

    /// Whether a request with `method` is checked.
    #[must_use]
    pub fn applies_to(&self, method: &Method) -> bool {
        match self.scope {
            ReplayScope::All => true,
            ReplayScope::StateChanging => !method.is_safe(),
        }
    }

    /// Records the first use of `request` (verified at `now` under a `window`-second
    /// `created` window).
    ///
    /// # Errors
    ///
    /// [`crate::VerifyError::Replayed`] for a request already accepted,
    /// [`crate::VerifyError::ReplayShareExceeded`] for a signer past its share,
    /// [`crate::VerifyError::Unavailable`] when the store cannot answer or is full.
    pub async fn record(
        &self,
        method: &Method,
        request: &VerifiedRequest,
        window: u64,
        now: UnixTime,
    ) -> Result<(), crate::VerifyError> {
        if !self.applies_to(method) {
            return Ok(());
        }
        let thumbprint = request.key.thumbprint();
        let group = issuer_of(request);
        let entry = Self::entry(request, thumbprint.as_str(), group.as_deref(), window, now);
        match self.store.first_use(&entry, now).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(crate::VerifyError::Replayed),
            Err(e) => Err(refused(e)),
        }
    }

    /// As [`ReplayGuard::record`] for a request that `token` signs, with the token's
    /// revocation asked of `store` in the same step: for a verifier whose guard is over
    /// `store` (as [`crate::Verifier::revocations_and_replay`] sets them) and applies to
    /// the request's method.
    pub(crate) async fn record_unrevoked(
        store: &dyn RevocationReplayStore,
        token: &BoundToken,
        request: &VerifiedRequest,
        window: u64,
        now: UnixTime,
    ) -> Result<(), crate::VerifyError> {
        let thumbprint = request.key.thumbprint();
        let group = issuer_of(request);
        let entry = Self::entry(request, thumbprint.as_str(), group.as_deref(), window, now);
        let (iss, jti) = token.iss_jti();
        match store.first_use_unrevoked(iss, jti, &entry, now).await {
            Ok(FirstUse::Recorded) => Ok(()),
            Ok(FirstUse::Replayed) => Err(crate::VerifyError::Replayed),
            Ok(FirstUse::Revoked) => Err(crate::VerifyError::Revoked {
                token_type: token.token_type(),
            }),
            Err(e) => Err(refused(e)),
        }
    }

    /// The use to record for `request`, signed by the key whose thumbprint is
    /// `thumbprint`, in the share of `issuer` ([`issuer_of`]).
    fn entry<'a>(
        request: &'a VerifiedRequest,
        thumbprint: &'a str,
        issuer: Option<&'a str>,
        window: u64,
        now: UnixTime,
    ) -> ReplayUse<'a> {
        // Kept until the window of the later of `created` and now closes: after that the
        // signature is refused as too old, so the entry has nothing left to stop. The
        // window includes its last second (`created == now - window` is still fresh), and
        // an entry is gone at its `until`: so one second more, or a copy sent in that
        // last second would find no entry.
        let created = request
            .params
            .created()
            .and_then(|c| u64::try_from(c).ok())
            .unwrap_or(0);
        let until = UnixTime(created.max(now.as_secs())).plus(window.saturating_add(1));
        let entry = ReplayUse::new(thumbprint, request.replay_key_of(thumbprint), until);
        match issuer {
            Some(issuer) => entry.issuer(issuer),
            None => entry,
        }
    }
}

/// The share the key that signed `request` counts in: the party that can vouch for any
/// number of keys like it. An agent token's provider (its `iss`). For a person or auth
/// token, the person at its issuer (`iss` and `sub`): a Person or Access Server vouches
/// for the keys of all its people's agents, and one person's agents must not take the
/// others' share. The server a `jwks_uri` or `jwks` key belongs to. Every `jkt-jwt`
/// signer in one share, and every bare `hwk` key in one (anyone can make any number of
/// enclave or bare keys), so those signers together cannot fill the store either.
fn issuer_of(request: &VerifiedRequest) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    let person = |iss: &ServerId, sub: &str| Cow::Owned(format!("{} {sub}", iss.as_str()));
    Some(match &request.identity {
        crate::KeyIdentity::Token(t) => match t.as_ref() {
            BoundToken::Person(t) => person(&t.claims.iss, &t.claims.sub),
            BoundToken::Auth(t) => person(&t.claims.iss, &t.claims.sub),
            t => Cow::Borrowed(t.iss_jti().0.as_str()),
        },
        crate::KeyIdentity::JwksUri { id, .. } => Cow::Borrowed(id.as_str()),
        crate::KeyIdentity::Jwks { url, .. } => Cow::Borrowed(url.as_str()),
        crate::KeyIdentity::JktJwt(_) => Cow::Borrowed("jkt-jwt"),
        crate::KeyIdentity::Pseudonym { .. } => Cow::Borrowed("hwk"),
        crate::KeyIdentity::Other { scheme, .. } => Cow::Borrowed(scheme.as_str()),
    })
}

/// A store's refusal as the verifier's error.
fn refused(e: ReplayStoreError) -> crate::VerifyError {
    match e {
        ReplayStoreError::SignerOverShare { share } => {
            crate::VerifyError::ReplayShareExceeded { share }
        }
        ReplayStoreError::IssuerOverShare { share } => {
            crate::VerifyError::IssuerReplayShareExceeded { share }
        }
        e => crate::VerifyError::Unavailable {
            reason: e.to_string(),
        },
    }
}
