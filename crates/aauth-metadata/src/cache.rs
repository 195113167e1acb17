//! The key cache: issuer metadata → `jwks_uri` → JWKS → key by `kid`, per key source.
//!
//! Rules (draft -11 §JWKS Discovery, Signature-Key -09 §7.2):
//! - each source's keys live for the response's `max-age`/`Expires`, clamped to
//!   [`CacheConfig::min_ttl`]..=[`CacheConfig::max_ttl`] (never beyond 24 h);
//! - after [`CacheConfig::refresh_ahead_percent`] of that lifetime a hit starts a refresh in
//!   the background and is served at once;
//! - past expiry, keys are served stale while a refresh runs or the endpoint fails, up to
//!   [`CacheConfig::max_stale`] (and never beyond 24 h after the fetch);
//! - no source is fetched more than once per [`CacheConfig::refetch_floor`] (one minute): an
//!   unknown `kid` refetches only when the floor allows, otherwise it is `unknown_key` at once;
//! - a lookup without `kid` ([`Pick::Sole`], for OAuth issuers that sign without one)
//!   takes the one usable member that fits, and refuses none or several the same way;
//! - concurrent misses on a source share one fetch;
//! - a failed fetch backs off exponentially (negative caching): until the backoff ends,
//!   callers without usable keys get the last error without a fetch;
//! - sources that have keys are bounded by [`CacheConfig::max_entries`], the least recently
//!   used evicted; sources that have none yet (never fetched successfully, with their
//!   backoff) live in their own table, bounded by [`CacheConfig::max_negative_entries`],
//!   so that a flood of sources that never answer cannot evict an issuer's keys (and their
//!   stale-if-error protection); the negative entry whose backoff ends soonest goes first;
//! - at most [`CacheConfig::max_inflight`] fetches run at once, across sources: past it a
//!   lookup that needs a fetch fails at once ([`DiscoveryError::Overloaded`], a `503`)
//!   rather than queueing, and a refresh-ahead waits for a later hit; an entry being
//!   fetched is never evicted from the negative table, and a new source that finds it full
//!   of them is refused the same way, so neither table grows past its bound;
//! - every fetch runs as its own task to its deadline, so a caller that goes away neither
//!   cancels it nor leaves its source marked in flight;
//! - the map lock is never held across a fetch or an `.await`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aauth_keys::time::{Clock, UnixTime};
use aauth_keys::{Jwk, JwkSet, KeyError, PublicKey};
use aauth_tokens::{IssuerKeyResolver, KeyRequest, ResolveError, ServerId};
use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::Shared;

use crate::freshness::{Freshness, freshness};
use crate::{Fetch, FetchError, Fetched, HttpsUrl, KeyDiscovery, MetadataError};

/// Tuning for [`KeyCache`]. Every bound has a default a verifier can run with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Lifetime when the response gives none (default 5 min).
    pub default_ttl: u64,
    /// Shortest lifetime, whatever the response says (default 60 s, the fetch floor).
    pub min_ttl: u64,
    /// Longest lifetime (default and ceiling 24 h).
    pub max_ttl: u64,
    /// How long past expiry keys are still served while revalidating or while the
    /// endpoint fails (default 1 h; never beyond 24 h after the fetch).
    pub max_stale: u64,
    /// The share of the lifetime after which a hit refreshes in the background
    /// (default 80 %).
    pub refresh_ahead_percent: u64,
    /// Minimum time between two fetches of one source (default and floor 60 s).
    pub refetch_floor: u64,
    /// Longest backoff after repeated failures (default 15 min).
    pub max_backoff: u64,
    /// Most sources with keys kept (default 1024); the least recently used is evicted.
    pub max_entries: usize,
    /// Most sources without keys kept (default 1024): sources never fetched successfully,
    /// each with its backoff. A table of their own, so they never evict a source with keys.
    pub max_negative_entries: usize,
    /// Most fetches running at once, across sources (default 32). Past it a lookup that
    /// needs a fetch fails at once with [`DiscoveryError::Overloaded`] (a `503`).
    pub max_inflight: usize,
    /// Most keys accepted in one JWKS (default 64).
    pub max_keys: usize,
    /// Total deadline for one source's fetch, metadata and JWKS together (default 10 s).
    pub fetch_timeout: Duration,
    /// `(issuer, jwks origin)` pairs admitted although the `jwks_uri` is on another origin.
    pub cross_origin_jwks: Vec<(String, String)>,
}

/// The 24-hour ceiling on any cached key set's age.
pub const MAX_AGE_CEILING: u64 = 24 * 3600;

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            default_ttl: 300,
            min_ttl: 60,
            max_ttl: MAX_AGE_CEILING,
            max_stale: 3600,
            refresh_ahead_percent: 80,
            refetch_floor: 60,
            max_backoff: 900,
            max_entries: 1024,
            max_negative_entries: 1024,
            max_inflight: 32,
            max_keys: 64,
            fetch_timeout: Duration::from_secs(10),
            cross_origin_jwks: Vec::new(),
        }
    }
}

/// Why no key came out of discovery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Fetching a document failed.
    #[error("fetching {url}: {error}")]
    Fetch {
        /// The URL.
        url: String,
        /// What failed.
        error: FetchError,
    },
    /// The metadata document is refused (`issuer_missing`, `issuer_mismatch`, …).
    #[error("metadata of {url}: {error}")]
    Metadata {
        /// The document URL.
        url: String,
        /// What is wrong with it.
        error: MetadataError,
    },
    /// `jwks_uri` is on another origin than the issuer and not admitted.
    #[error("jwks_uri {jwks_uri} is not on the origin of {issuer}")]
    CrossOriginJwks {
        /// The issuer.
        issuer: String,
        /// Its `jwks_uri`.
        jwks_uri: String,
    },
    /// The JWKS document is refused.
    #[error("JWKS at {url}: {reason}")]
    Jwks {
        /// The JWKS URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The source publishes no key with this `kid` (after the refetch the floor allowed).
    #[error("no key {kid:?} published")]
    UnknownKey {
        /// The `kid`.
        kid: String,
    },
    /// A lookup without `kid` ([`Pick::Sole`]) found not exactly one published key that
    /// fits: none (after the refetch the floor allowed), or several (never a guess).
    #[error("no kid given, and {candidates} published keys fit (exactly one is needed)")]
    NoSoleKey {
        /// How many usable members fit.
        candidates: usize,
    },
    /// The key with this `kid` is refused by the key policy.
    #[error("key {kid:?}: {error}")]
    Key {
        /// The `kid`.
        kid: String,
        /// The policy failure.
        error: KeyError,
    },
    /// The fetch failed before and the source is backing off.
    #[error("backing off until {until} after: {last}")]
    BackingOff {
        /// When the next fetch may happen.
        until: UnixTime,
        /// The failure that started the backoff.
        last: Box<Self>,
    },
    /// The cache needs a Tokio runtime (with time enabled) for its deadlines and
    /// background refreshes.
    #[error("no Tokio runtime to run the fetch on")]
    NoRuntime,
    /// A fetch was needed but [`CacheConfig::max_inflight`] fetches are running, or the
    /// table of sources without keys is full of sources being fetched: refused at once (a
    /// `503`), not queued.
    #[error("{limit} key fetches are already running")]
    Overloaded {
        /// The limit on fetches running at once.
        limit: usize,
    },
    /// The fetch task ended without an answer (the fetcher panicked, or the runtime is
    /// shutting down).
    #[error("the key fetch ended without an answer")]
    Aborted,
}

impl From<DiscoveryError> for ResolveError {
    fn from(e: DiscoveryError) -> Self {
        match e {
            DiscoveryError::Metadata {
                error: MetadataError::IssuerMissing,
                ..
            } => Self::IssuerMissing,
            DiscoveryError::Metadata {
                error: MetadataError::IssuerMismatch { found, .. },
                ..
            } => Self::IssuerMismatch { found },
            DiscoveryError::UnknownKey { kid } => Self::UnknownKey { kid },
            // AAuth tokens always name their key: no AAuth lookup is made without `kid`.
            DiscoveryError::NoSoleKey { .. } => Self::UnknownKey { kid: String::new() },
            DiscoveryError::Key { error, .. } => Self::Key(error),
            DiscoveryError::BackingOff { last, .. } => match Self::from(*last) {
                Self::Unavailable { reason } => Self::Unavailable {
                    reason: format!("{reason} (backing off)"),
                },
                other => other,
            },
            other => Self::Unavailable {
                reason: other.to_string(),
            },
        }
    }
}

/// Where a set of keys comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum KeySource {
    /// `{iss}/.well-known/{dwk}` → `issuer` check → `jwks_uri` (the `jwt` and
    /// `jwks_uri` schemes).
    Issuer {
        /// The issuer.
        iss: ServerId,
        /// The metadata document name.
        dwk: String,
    },
    /// A JWKS URL fetched directly (the `jwks` scheme).
    Jwks(HttpsUrl),
}

/// A key a [`KeyCache`] can hold: one JWKS member, imported once when its set is fetched.
///
/// The cache holds AAuth keys ([`PublicKey`], the default) for every AAuth role; a crate
/// that verifies other issuers' tokens (an OAuth authorization server's RSA keys, say)
/// gives its own key type and reuses the cache's fetching, freshness and bounds. The
/// import decides which members are usable: a member it refuses is kept as its error, so
/// a lookup of that `kid` says why.
pub trait CachedKey: Clone + PartialEq + Send + Sync + 'static {
    /// The key a JWKS member stands for.
    ///
    /// # Errors
    ///
    /// [`KeyError`] naming the check the member failed.
    fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError>;
}

impl CachedKey for PublicKey {
    fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        Self::from_jwk(jwk)
    }
}

/// A fetched, indexed key set.
#[derive(Debug)]
struct KeySet<K> {
    keys: BTreeMap<String, Result<K, KeyError>>,
    /// Every member the import accepted, with or without `kid`, in document order: the
    /// candidates of a [`Pick::Sole`].
    usable: Vec<K>,
}

impl<K: Clone> KeySet<K> {
    /// The member `pick` selects; `None` when there is none (a refetch may bring it).
    fn pick(&self, pick: Pick<'_, K>) -> Option<Result<K, DiscoveryError>> {
        match pick {
            Pick::Kid(kid) => self.keys.get(kid).map(|found| {
                found.clone().map_err(|error| DiscoveryError::Key {
                    kid: kid.to_owned(),
                    error,
                })
            }),
            Pick::Sole(fits) => {
                let mut found = self.usable.iter().filter(|k| fits(k));
                let first = found.next()?;
                Some(match found.count() {
                    0 => Ok(first.clone()),
                    more => Err(DiscoveryError::NoSoleKey {
                        candidates: more + 1,
                    }),
                })
            }
        }
    }
}

/// How a lookup picks its key from a source's set.
#[non_exhaustive]
pub enum Pick<'a, K> {
    /// The member whose `kid` is this one (a `kid` published twice is refused).
    Kid(&'a str),
    /// For a token that names no key (RFC 7515 §4.1.4 makes `kid` optional): the one
    /// usable member, with or without `kid`, that the function says could verify it
    /// (its key type, curve and `alg`). None is [`DiscoveryError::NoSoleKey`] after the
    /// refetch the floor allows; several are that error at once, never a guess.
    Sole(&'a (dyn Fn(&K) -> bool + Sync)),
}

impl<K> Clone for Pick<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Pick<'_, K> {}

impl<K> std::fmt::Debug for Pick<'_, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kid(kid) => f.debug_tuple("Kid").field(kid).finish(),
            Self::Sole(_) => f.write_str("Sole"),
        }
    }
}

impl<K> Pick<'_, K> {
    /// The error when the set has no such member.
    fn unknown(self) -> DiscoveryError {
        match self {
            Self::Kid(kid) => DiscoveryError::UnknownKey {
                kid: kid.to_owned(),
            },
            Self::Sole(_) => DiscoveryError::NoSoleKey { candidates: 0 },
        }
    }
}

/// Counters, monotonically increasing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from fresh keys.
    pub hits: u64,
    /// Lookups answered from keys past their lifetime (stale-while-revalidate/-if-error).
    pub stale_hits: u64,
    /// Lookups that had to wait for a fetch.
    pub misses: u64,
    /// Lookups that joined a fetch another caller started.
    pub coalesced: u64,
    /// Fetches started (foreground and background).
    pub fetches: u64,
    /// Background refreshes started.
    pub refreshes: u64,
    /// Fetches that failed.
    pub failures: u64,
    /// Unknown-`kid` lookups refused without a fetch because of the floor.
    pub floor_refusals: u64,
    /// Sources with keys evicted to stay within [`CacheConfig::max_entries`].
    pub evictions: u64,
    /// Sources without keys evicted to stay within [`CacheConfig::max_negative_entries`].
    pub negative_evictions: u64,
    /// Lookups refused without a fetch because [`CacheConfig::max_inflight`] fetches were
    /// running (or the negative table was full of them), and refreshes skipped for it.
    pub overloaded: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    stale_hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    fetches: AtomicU64,
    refreshes: AtomicU64,
    failures: AtomicU64,
    floor_refusals: AtomicU64,
    evictions: AtomicU64,
    negative_evictions: AtomicU64,
    overloaded: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

type FetchFuture<K> =
    Shared<Pin<Box<dyn Future<Output = Result<Arc<KeySet<K>>, DiscoveryError>> + Send>>>;

struct Entry<K> {
    keys: Option<Arc<KeySet<K>>>,
    refresh_at: u64,
    fresh_until: u64,
    stale_until: u64,
    last_fetch: Option<u64>,
    failures: u32,
    retry_at: u64,
    last_error: Option<DiscoveryError>,
    inflight: Option<FetchFuture<K>>,
    /// Which fetch `inflight` is (0: none), so that only that fetch clears it.
    flight: u64,
    last_used: u64,
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
        }
    }
}

/// The sources, in two bounded tables, and the fetches running.
struct Tables<K> {
    /// Sources whose keys were fetched at least once (`max_entries`, LRU).
    positive: BTreeMap<KeySource, Entry<K>>,
    /// Sources with no keys yet, with their backoff (`max_negative_entries`).
    negative: BTreeMap<KeySource, Entry<K>>,
    /// Fetches running (`max_inflight`).
    inflight: usize,
}

impl<K> Default for Tables<K> {
    fn default() -> Self {
        Self {
            positive: BTreeMap::new(),
            negative: BTreeMap::new(),
            inflight: 0,
        }
    }
}

impl<K> Tables<K> {
    fn get_mut(&mut self, source: &KeySource) -> Option<&mut Entry<K>> {
        match self.positive.get_mut(source) {
            Some(e) => Some(e),
            None => self.negative.get_mut(source),
        }
    }
}

type Map<K> = Mutex<Tables<K>>;

/// Everything but the entries. An in-flight fetch holds this and only a weak reference to
/// the entries, so an entry holding its fetch is not a reference cycle.
struct Inner<F> {
    fetcher: Arc<F>,
    clock: Arc<dyn Clock>,
    config: CacheConfig,
    tick: AtomicU64,
    counters: Counters,
}

/// The key cache. Cheap to clone (shared state); see the module docs for its rules.
///
/// ```
/// # use std::sync::Arc;
/// # use aauth_keys::{PrivateKey, JwkSet, time::{FixedClock, UnixTime}};
/// # use aauth_metadata::{CacheConfig, Fetch, FetchError, Fetched, HttpsUrl, KeyCache};
/// # use aauth_tokens::ServerId;
/// struct Docs(String);
/// #[async_trait::async_trait]
/// impl Fetch for Docs {
///     async fn get(&self, url: &HttpsUrl) -> Result<Fetched, FetchError> {
///         Ok(Fetched::ok(match url.path_and_query() {
///             "/.well-known/aauth-agent.json" => {
///                 r#"{"issuer":"https://agent.example","jwks_uri":"https://agent.example/jwks.json"}"#.to_owned()
///             }
///             _ => self.0.clone(),
///         }))
///     }
/// }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let key = PrivateKey::ed25519_from_seed(&[7; 32]);
/// let mut jwk = key.public_key().to_jwk();
/// jwk.kid = Some("k1".to_owned());
/// let cache = KeyCache::new(
///     Arc::new(Docs(JwkSet::from_jwks(&[jwk]).to_json())),
///     Arc::new(FixedClock::new(UnixTime(1_800_000_000))),
///     CacheConfig::default(),
/// );
/// let iss = ServerId::parse("https://agent.example").unwrap();
/// let found = cache.issuer_key(&iss, "aauth-agent.json", "k1").await.unwrap();
/// assert_eq!(&found, key.public_key());
/// assert_eq!(cache.stats().fetches, 1);
/// cache.issuer_key(&iss, "aauth-agent.json", "k1").await.unwrap();
/// assert_eq!(cache.stats().hits, 1);
/// # });
/// ```
///
/// `K` is the type of key held: AAuth's [`PublicKey`] unless a verifier of other tokens
/// brings its own ([`CachedKey`], [`KeyCache::of_keys`]).
pub struct KeyCache<F, K = PublicKey> {
    inner: Arc<Inner<F>>,
    entries: Arc<Map<K>>,
}

impl<F, K> Clone for KeyCache<F, K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            entries: Arc::clone(&self.entries),
        }
    }
}

impl<F, K> std::fmt::Debug for KeyCache<F, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// What a lookup decided under the lock.
#[allow(
    clippy::large_enum_variant,
    reason = "made and matched at once in one lookup, never stored or moved around"
)]
enum Step<K> {
    Done(Result<K, DiscoveryError>),
    Wait(FetchFuture<K>),
}

impl<F, K> KeyCache<F, K> {
    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            hits: get(&c.hits),
            stale_hits: get(&c.stale_hits),
            misses: get(&c.misses),
            coalesced: get(&c.coalesced),
            fetches: get(&c.fetches),
            refreshes: get(&c.refreshes),
            failures: get(&c.failures),
            floor_refusals: get(&c.floor_refusals),
            evictions: get(&c.evictions),
            negative_evictions: get(&c.negative_evictions),
            overloaded: get(&c.overloaded),
        }
    }

    /// How many sources are cached, with keys or without.
    #[must_use]
    pub fn len(&self) -> usize {
        let t = lock(&self.entries);
        t.positive.len() + t.negative.len()
    }

    /// How many of the cached sources have no keys (never fetched successfully).
    #[must_use]
    pub fn negative_len(&self) -> usize {
        lock(&self.entries).negative.len()
    }

    /// How many fetches are running now.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        lock(&self.entries).inflight
    }

    /// Whether nothing is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<F: Fetch> KeyCache<F> {
    /// A cache of AAuth keys fetching through `fetcher`, timed by `clock`. Bounds in
    /// `config` beyond the 24-hour ceiling and below the one-minute floor are clamped.
    #[must_use]
    pub fn new(fetcher: Arc<F>, clock: Arc<dyn Clock>, config: CacheConfig) -> Self {
        Self::of_keys(fetcher, clock, config)
    }
}

impl<F: Fetch, K: CachedKey> KeyCache<F, K> {
    /// A cache of keys of type `K`, otherwise as [`KeyCache::new`].
    #[must_use]
    pub fn of_keys(fetcher: Arc<F>, clock: Arc<dyn Clock>, mut config: CacheConfig) -> Self {
        config.refetch_floor = config.refetch_floor.clamp(60, MAX_AGE_CEILING);
        config.max_ttl = config.max_ttl.clamp(config.refetch_floor, MAX_AGE_CEILING);
        config.min_ttl = config.min_ttl.clamp(config.refetch_floor, config.max_ttl);
        config.default_ttl = config.default_ttl.clamp(config.min_ttl, config.max_ttl);
        config.refresh_ahead_percent = config.refresh_ahead_percent.clamp(1, 100);
        config.max_entries = config.max_entries.max(1);
        config.max_negative_entries = config.max_negative_entries.max(1);
        config.max_inflight = config.max_inflight.max(1);
        config.max_backoff = config.max_backoff.max(config.refetch_floor);
        Self {
            inner: Arc::new(Inner {
                fetcher,
                clock,
                config,
                tick: AtomicU64::new(0),
                counters: Counters::default(),
            }),
            entries: Arc::new(Mutex::new(Tables::default())),
        }
    }

    /// The issuer key `kid` from `{iss}/.well-known/{dwk}`.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError`].
    pub async fn issuer_key(
        &self,
        iss: &ServerId,
        dwk: &str,
        kid: &str,
    ) -> Result<K, DiscoveryError> {
        let source = KeySource::Issuer {
            iss: iss.clone(),
            dwk: dwk.to_owned(),
        };
        self.key(&source, kid).await
    }

    /// The key `kid` from the JWKS at `url`.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError`].
    pub async fn jwks_key(&self, url: &HttpsUrl, kid: &str) -> Result<K, DiscoveryError> {
        self.key(&KeySource::Jwks(url.clone()), kid).await
    }

    /// The key `kid` from `source`.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError`].
    pub async fn key(&self, source: &KeySource, kid: &str) -> Result<K, DiscoveryError> {
        self.picked(source, Pick::Kid(kid)).await
    }

    /// The key `pick` selects from `source`: by `kid`, or the sole one that fits a token
    /// without `kid`.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError`].
    pub async fn picked(&self, source: &KeySource, pick: Pick<'_, K>) -> Result<K, DiscoveryError> {
        match self.step(source, pick, false) {
            Step::Done(r) => r,
            // The set the fetch produced (it also updated the entry).
            Step::Wait(fut) => lookup(&*fut.await?, pick),
        }
    }

    /// After the key for `kid` failed to verify a signature: refetch `source` once, if the
    /// floor allows, and return the key now published under `kid` if it changed.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError`].
    pub async fn refetch_after_failure(
        &self,
        source: &KeySource,
        kid: &str,
        failed: &K,
    ) -> Result<Option<K>, DiscoveryError> {
        self.repick_after_failure(source, Pick::Kid(kid), failed)
            .await
    }

    /// As [`KeyCache::refetch_after_failure`], for the key `pick` selects.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError`].
    pub async fn repick_after_failure(
        &self,
        source: &KeySource,
        pick: Pick<'_, K>,
        failed: &K,
    ) -> Result<Option<K>, DiscoveryError> {
        match self.step(source, pick, true) {
            Step::Done(_) => Ok(None),
            Step::Wait(fut) => {
                let key = lookup(&*fut.await?, pick)?;
                Ok((&key != failed).then_some(key))
            }
        }
    }

    /// One decision under the lock. `force`: the caller wants a refetch (failed
    /// verification).
    fn step(&self, source: &KeySource, pick: Pick<'_, K>, force: bool) -> Step<K> {
        let inner = &self.inner;
        let cfg = &inner.config;
        let now = inner.clock.now().as_secs();
        let mut guard = lock(&self.entries);
        if let Err(overloaded) = self.admit(source, &mut guard) {
            return Step::Done(Err(overloaded));
        }
        let Tables {
            positive,
            negative,
            inflight,
        } = &mut *guard;
        let known = positive.contains_key(source);
        let table = if known { positive } else { negative };
        let Some(entry) = table.get_mut(source) else {
            // Not reached: present or inserted just above, under the same lock.
            return Step::Done(Err(pick.unknown()));
        };
        entry.last_used = inner.tick.fetch_add(1, Ordering::Relaxed);
        let may_fetch = entry
            .last_fetch
            .is_none_or(|t| now >= t.saturating_add(cfg.refetch_floor))
            && now >= entry.retry_at;

        if force {
            return match (&entry.inflight, may_fetch) {
                (Some(f), _) => Step::Wait(f.clone()),
                (None, true) => self.start(source, entry, inflight, now),
                (None, false) => {
                    bump(&inner.counters.floor_refusals);
                    Step::Done(Err(pick.unknown()))
                }
            };
        }

        if let Some(set) = entry.keys.clone()
            && now < entry.stale_until
        {
            match set.pick(pick) {
                Some(Ok(key)) => {
                    bump(if now < entry.fresh_until {
                        &inner.counters.hits
                    } else {
                        &inner.counters.stale_hits
                    });
                    if now >= entry.refresh_at
                        && entry.inflight.is_none()
                        && may_fetch
                        && let Step::Wait(_) = self.start(source, entry, inflight, now)
                    {
                        // Runs on its own task; this hit is served at once.
                        bump(&inner.counters.refreshes);
                    }
                    return Step::Done(Ok(key));
                }
                Some(Err(error)) => return Step::Done(Err(error)),
                None => {}
            }
            // Unknown kid (or no key that fits) with usable keys: refetch only if the
            // floor allows.
            if let Some(wait) = self.join_or_fetch(source, entry, inflight, now, may_fetch) {
                return wait;
            }
            bump(&inner.counters.floor_refusals);
            return Step::Done(Err(pick.unknown()));
        }

        // No usable keys.
        if let Some(wait) = self.join_or_fetch(source, entry, inflight, now, may_fetch) {
            return wait;
        }
        let last = entry.last_error.clone().unwrap_or_else(|| pick.unknown());
        if now < entry.retry_at {
            return Step::Done(Err(DiscoveryError::BackingOff {
                until: UnixTime(entry.retry_at),
                last: Box::new(last),
            }));
        }
        Step::Done(Err(last))
    }

    /// Gives a source never seen a (negative) entry. A new source needs a fetch: it is
    /// refused at once if none can start, and room is never made by evicting a source
    /// that has keys. Called under the lock.
    fn admit(&self, source: &KeySource, tables: &mut Tables<K>) -> Result<(), DiscoveryError> {
        let inner = &self.inner;
        let cfg = &inner.config;
        if tables.positive.contains_key(source) || tables.negative.contains_key(source) {
            return Ok(());
        }
        if tables.inflight >= cfg.max_inflight
            || (tables.negative.len() >= cfg.max_negative_entries
                && !evict_negative(&mut tables.negative, &inner.counters))
        {
            bump(&inner.counters.overloaded);
            return Err(DiscoveryError::Overloaded {
                limit: cfg.max_inflight,
            });
        }
        tables.negative.insert(source.clone(), Entry::default());
        Ok(())
    }

    /// Joins the fetch in flight, or starts one if the floor and backoff allow; `None`
    /// when neither is possible. Called under the lock.
    fn join_or_fetch(
        &self,
        source: &KeySource,
        entry: &mut Entry<K>,
        inflight: &mut usize,
        now: u64,
        may_fetch: bool,
    ) -> Option<Step<K>> {
        if let Some(f) = &entry.inflight {
            bump(&self.inner.counters.coalesced);
            return Some(Step::Wait(f.clone()));
        }
        if may_fetch {
            bump(&self.inner.counters.misses);
            return Some(self.start(source, entry, inflight, now));
        }
        None
    }

    /// Starts a fetch of `source` on its own task and records it as in flight, unless
    /// `max_inflight` fetches are running (or there is no runtime). Called under the lock.
    fn start(
        &self,
        source: &KeySource,
        entry: &mut Entry<K>,
        inflight: &mut usize,
        now: u64,
    ) -> Step<K> {
        let limit = self.inner.config.max_inflight;
        if *inflight >= limit {
            bump(&self.inner.counters.overloaded);
            return Step::Done(Err(DiscoveryError::Overloaded { limit }));
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return Step::Done(Err(DiscoveryError::NoRuntime));
        };
        bump(&self.inner.counters.fetches);
        entry.last_fetch = Some(now);
        // Never 0, which means "none".
        let id = self
            .inner
            .tick
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1)
            .max(1);
        entry.flight = id;
        *inflight += 1;
        let mut flight = Flight {
            entries: Arc::downgrade(&self.entries),
            source: source.clone(),
            id,
            open: true,
        };
        let inner = Arc::clone(&self.inner);
        let task = rt.spawn(async move {
            let source = flight.source.clone();
            let result = tokio::time::timeout(inner.config.fetch_timeout, fetch(&inner, &source))
                .await
                .unwrap_or_else(|_| {
                    Err(DiscoveryError::Fetch {
                        url: source_url(&source),
                        error: FetchError::Timeout(inner.config.fetch_timeout),
                    })
                });
            settle(&inner, &mut flight, result)
        });
        let fut: Pin<Box<dyn Future<Output = _> + Send>> =
            Box::pin(async move { task.await.unwrap_or(Err(DiscoveryError::Aborted)) });
        let shared = fut.shared();
        entry.inflight = Some(shared.clone());
        Step::Wait(shared)
    }
}

/// The key `pick` selects in a fetched set.
fn lookup<K: Clone>(set: &KeySet<K>, pick: Pick<'_, K>) -> Result<K, DiscoveryError> {
    set.pick(pick).unwrap_or_else(|| Err(pick.unknown()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code path panics while holding the lock; if one ever did, the map is still
    // consistent (every update is a single assignment), so carry on.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes room among sources with keys: the least recently used goes, one not being
/// fetched if there is one. Called only when a source's first fetch succeeds.
fn evict_positive<K>(map: &mut BTreeMap<KeySource, Entry<K>>, counters: &Counters) {
    let victim = map
        .iter()
        .min_by_key(|(_, e)| (e.inflight.is_some(), e.last_used))
        .map(|(k, _)| k.clone());
    if let Some(k) = victim {
        map.remove(&k);
        bump(&counters.evictions);
    }
}

/// Makes room among sources without keys: the one whose backoff ends soonest (forgetting
/// it loses the least), never one being fetched. `false` when every one is being fetched.
fn evict_negative<K>(map: &mut BTreeMap<KeySource, Entry<K>>, counters: &Counters) -> bool {
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

fn source_url(source: &KeySource) -> String {
    match source {
        KeySource::Issuer { iss, dwk } => iss.well_known(dwk),
        KeySource::Jwks(u) => u.as_str().to_owned(),
    }
}

/// A running fetch's slot. The fetch settles it; if the fetch never does (the fetcher
/// panicked, the runtime is shutting down), dropping it releases the slot and the
/// source's in-flight mark, so neither is ever leaked.
struct Flight<K> {
    entries: std::sync::Weak<Map<K>>,
    source: KeySource,
    id: u64,
    open: bool,
}

impl<K> Flight<K> {
    /// Releases the slot, and the entry's in-flight mark if it is still this fetch's.
    fn release(&mut self, t: &mut Tables<K>) {
        if !self.open {
            return;
        }
        self.open = false;
        t.inflight = t.inflight.saturating_sub(1);
        if let Some(e) = t.get_mut(&self.source)
            && e.flight == self.id
        {
            e.inflight = None;
            e.flight = 0;
        }
    }
}

impl<K> Drop for Flight<K> {
    fn drop(&mut self) {
        if self.open
            && let Some(map) = self.entries.upgrade()
        {
            self.release(&mut lock(&map));
        }
    }
}

/// Records a fetch's outcome in its entry (if the entry is still there), promoting a
/// source's first keys to the table of sources with keys, and releases the fetch's slot.
fn settle<F, K>(
    inner: &Inner<F>,
    flight: &mut Flight<K>,
    result: Result<(Arc<KeySet<K>>, Freshness), DiscoveryError>,
) -> Result<Arc<KeySet<K>>, DiscoveryError> {
    let cfg = &inner.config;
    let now = inner.clock.now().as_secs();
    let Some(map) = flight.entries.upgrade() else {
        flight.open = false;
        return result.map(|(set, _)| set);
    };
    let mut guard = lock(&map);
    let t = &mut *guard;
    flight.release(t);
    let source = &flight.source;
    match result {
        Ok((set, fresh)) => {
            // A source's first keys move it out of the negative table.
            if let Some(e) = t.negative.remove(source) {
                if t.positive.len() >= cfg.max_entries {
                    evict_positive(&mut t.positive, &inner.counters);
                }
                t.positive.insert(source.clone(), e);
            }
            if let Some(e) = t.positive.get_mut(source) {
                let ttl = match fresh {
                    Freshness::MaxAge(s) => s.clamp(cfg.min_ttl, cfg.max_ttl),
                    Freshness::NoStore => cfg.min_ttl,
                    Freshness::Unspecified => cfg.default_ttl,
                };
                e.keys = Some(Arc::clone(&set));
                e.refresh_at = now + ttl * cfg.refresh_ahead_percent / 100;
                e.fresh_until = now + ttl;
                e.stale_until = now
                    .saturating_add(ttl)
                    .saturating_add(cfg.max_stale)
                    .min(now.saturating_add(MAX_AGE_CEILING));
                e.failures = 0;
                e.retry_at = 0;
                e.last_error = None;
            }
            Ok(set)
        }
        Err(err) => {
            bump(&inner.counters.failures);
            if let Some(e) = t.get_mut(source) {
                e.failures = e.failures.saturating_add(1);
                let backoff = cfg
                    .refetch_floor
                    .saturating_mul(1 << (e.failures - 1).min(16))
                    .min(cfg.max_backoff);
                e.retry_at = now + backoff;
                e.last_error = Some(err.clone());
            }
            Err(err)
        }
    }
}

async fn get_doc<F: Fetch>(inner: &Inner<F>, url: &HttpsUrl) -> Result<Fetched, DiscoveryError> {
    let fail = |error| DiscoveryError::Fetch {
        url: url.as_str().to_owned(),
        error,
    };
    let doc = inner.fetcher.get(url).await.map_err(fail)?;
    if doc.status != 200 {
        return Err(fail(FetchError::Status {
            status: doc.status,
            retry_after: None,
        }));
    }
    Ok(doc)
}

fn shorter(a: Freshness, b: Freshness) -> Freshness {
    match (a, b) {
        (Freshness::NoStore, _) | (_, Freshness::NoStore) => Freshness::NoStore,
        (Freshness::MaxAge(x), Freshness::MaxAge(y)) => Freshness::MaxAge(x.min(y)),
        (Freshness::MaxAge(x), Freshness::Unspecified)
        | (Freshness::Unspecified, Freshness::MaxAge(x)) => Freshness::MaxAge(x),
        (Freshness::Unspecified, Freshness::Unspecified) => Freshness::Unspecified,
    }
}

/// Fetches a source: metadata (checked) then JWKS, or the JWKS directly.
async fn fetch<F: Fetch, K: CachedKey>(
    inner: &Inner<F>,
    source: &KeySource,
) -> Result<(Arc<KeySet<K>>, Freshness), DiscoveryError> {
    let now = inner.clock.now();
    let (jwks_uri, meta_fresh) = match source {
        KeySource::Jwks(url) => (url.clone(), Freshness::Unspecified),
        KeySource::Issuer { iss, dwk } => {
            let url = HttpsUrl::well_known(iss, dwk).map_err(|e| DiscoveryError::Metadata {
                url: iss.well_known(dwk),
                error: MetadataError::Invalid {
                    member: "dwk",
                    reason: e.reason.to_owned(),
                },
            })?;
            let doc = get_doc(inner, &url).await?;
            let found = KeyDiscovery::parse_for(dwk, &doc.body, iss).map_err(|error| {
                DiscoveryError::Metadata {
                    url: url.as_str().to_owned(),
                    error,
                }
            })?;
            let admitted = (found.jwks_uri.host() == iss.host() && found.jwks_uri.port() == 443)
                || inner
                    .config
                    .cross_origin_jwks
                    .iter()
                    .any(|(i, o)| i == iss.as_str() && o == found.jwks_uri.origin());
            if !admitted {
                return Err(DiscoveryError::CrossOriginJwks {
                    issuer: iss.as_str().to_owned(),
                    jwks_uri: found.jwks_uri.as_str().to_owned(),
                });
            }
            let f = freshness(doc.cache_control.as_deref(), doc.expires.as_deref(), now);
            (found.jwks_uri, f)
        }
    };
    let doc = get_doc(inner, &jwks_uri).await?;
    let fresh = shorter(
        meta_fresh,
        freshness(doc.cache_control.as_deref(), doc.expires.as_deref(), now),
    );
    let set = index(&doc.body, inner.config.max_keys).map_err(|reason| DiscoveryError::Jwks {
        url: jwks_uri.as_str().to_owned(),
        reason,
    })?;
    Ok((Arc::new(set), fresh))
}

/// Parses every member with a `kid` once, so hits are a map lookup. Members without a
/// `kid`, or whose `kid` is not a string, cannot be selected by `kid`; a `kid` published
/// twice is refused as ambiguous. Every member the import accepts, with or without `kid`,
/// is also kept in order for a lookup without `kid` ([`Pick::Sole`]).
fn index<K: CachedKey>(body: &[u8], max_keys: usize) -> Result<KeySet<K>, String> {
    let set = JwkSet::from_json(body).map_err(|e| e.to_string())?;
    if set.len() > max_keys {
        return Err(format!(
            "{} keys, more than the {max_keys} accepted",
            set.len()
        ));
    }
    let mut keys = BTreeMap::new();
    for kid in set.kids() {
        let key = set.find_jwk(&kid).and_then(|jwk| K::from_jwk(&jwk));
        keys.insert(kid, key);
    }
    let usable = set
        .jwks()
        .filter_map(|jwk| K::from_jwk(&jwk.ok()?).ok())
        .collect();
    Ok(KeySet { keys, usable })
}

#[async_trait]
impl<F: Fetch> IssuerKeyResolver for KeyCache<F> {
    async fn resolve(&self, req: &KeyRequest<'_>) -> Result<PublicKey, ResolveError> {
        Ok(self.issuer_key(req.iss, req.dwk, req.kid).await?)
    }

    async fn refresh(&self, req: &KeyRequest<'_>) -> Result<Option<PublicKey>, ResolveError> {
        let source = KeySource::Issuer {
            iss: req.iss.clone(),
            dwk: req.dwk.to_owned(),
        };
        // What the cache holds now is the key that failed.
        let Ok(failed) = self.key(&source, req.kid).await else {
            return Ok(None);
        };
        Ok(self
            .refetch_after_failure(&source, req.kid, &failed)
            .await?)
    }
}

/// Fetches the document `D` of `id` (`{id}/.well-known/{D::DWK}`) and parses it for `id`:
/// `issuer` checked first, then every member. Not cached: agents and servers call this
/// when they meet a party, and keep what they need.
///
/// # Errors
///
/// [`DiscoveryError::Fetch`] (including a status other than 200) or
/// [`DiscoveryError::Metadata`].
pub async fn discover<D: crate::MetadataDocument>(
    fetch: &dyn Fetch,
    id: &ServerId,
) -> Result<D, DiscoveryError> {
    let url = HttpsUrl::well_known(id, D::DWK).map_err(|e| DiscoveryError::Metadata {
        url: id.well_known(D::DWK),
        error: MetadataError::Invalid {
            member: "dwk",
            reason: e.reason.to_owned(),
        },
    })?;
    let fail = |error| DiscoveryError::Fetch {
        url: url.as_str().to_owned(),
        error,
    };
    let doc = fetch.get(&url).await.map_err(fail)?;
    if doc.status != 200 {
        return Err(fail(FetchError::Status {
            status: doc.status,
            retry_after: None,
        }));
    }
    D::parse_for(&doc.body, id).map_err(|error| DiscoveryError::Metadata {
        url: url.as_str().to_owned(),
        error,
    })
}
