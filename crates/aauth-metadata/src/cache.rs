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
//! - sources that have keys are bounded by [`CacheConfig::max_entries`], in a segmented
//!   LRU: a source enters on probation when its first fetch succeeds, and is protected
//!   once its keys answer a second lookup (a second request; the verifier's recheck of a
//!   key that failed is not one). Room is made by evicting the least recently used source
//!   on probation, or the least recently used protected one while protected sources hold
//!   more than four fifths of the table. So a burst of sources that answer once each
//!   (wildcard DNS, one request per subdomain) evicts only its own kind, never an issuer
//!   in use (a source used twice is protected whoever uses it: an attacker's second
//!   request protects its source too);
//! - sources that have none yet (never fetched successfully, with their backoff) live in
//!   their own table, bounded by [`CacheConfig::max_negative_entries`], so that a flood of
//!   sources that never answer cannot evict an issuer's keys (and their stale-if-error
//!   protection); the negative entry whose backoff ends soonest goes first;
//! - at most [`CacheConfig::max_inflight`] fetches run at once, across sources, and
//!   fetches of sources without keys (strangers) at most
//!   [`CacheConfig::stranger_inflight_percent`] of them (half): the rest are kept for the
//!   sources with keys, so that strangers hanging to their deadline (an address that
//!   drops packets, a new subdomain each time) never stop a known issuer's refresh, its
//!   unknown-`kid` refetch or its refetch past expiry. Past its limit a lookup that needs a
//!   fetch fails at once ([`DiscoveryError::Overloaded`], a `503`) rather than queueing,
//!   and a refresh-ahead waits for a later hit; an entry being fetched is never evicted
//!   from the negative table, and a new source that finds it full of them is refused the
//!   same way, so neither table grows past its bound;
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
use aauth_keys::{Jwk, KeyError, PublicKey};
use aauth_tokens::{IssuerKeyResolver, KeyRequest, ResolveError, ServerId};
use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::Shared;

use crate::freshness::Freshness;
use crate::{Fetch, FetchError, HttpsUrl, MetadataError};

mod discover;
mod tables;

pub use discover::discover;
use discover::{fetch, source_url};
use tables::{Entry, Slots, Tables, evict_negative};

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
    /// Most sources with keys kept (default 1024), in two segments: a source enters on
    /// probation when its first fetch succeeds and is protected once its keys answer a
    /// second lookup. Room is made by evicting the least recently used source on
    /// probation, or the least recently used protected one while protected sources hold
    /// more than four fifths of the table; so sources used once each (a burst of strangers)
    /// never evict a source in use.
    pub max_entries: usize,
    /// Most sources without keys kept (default 1024): sources never fetched successfully,
    /// each with its backoff. A table of their own, so they never evict a source with keys.
    pub max_negative_entries: usize,
    /// Most fetches running at once, across sources (default 32). Past it a lookup that
    /// needs a fetch fails at once with [`DiscoveryError::Overloaded`] (a `503`).
    pub max_inflight: usize,
    /// The share of [`CacheConfig::max_inflight`], in percent, that fetches of sources
    /// without keys (strangers: a first contact, or a source never fetched successfully)
    /// may hold at once (default 50 %, at least one slot). The rest is kept for sources
    /// with keys (a refresh-ahead, an unknown `kid`, a refetch past expiry), so strangers
    /// that hang to their deadline cannot stop a known issuer's keys from being fetched
    /// again. 100 keeps no slot for them.
    pub stranger_inflight_percent: u64,
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
            stranger_inflight_percent: 50,
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
    /// source has no keys and the strangers' share of them
    /// ([`CacheConfig::stranger_inflight_percent`]) is running, or the table of sources
    /// without keys ([`CacheConfig::max_negative_entries`]) is full of sources being
    /// fetched: refused at once (a `503`), not queued. `bound` says which.
    #[error("{}", overloaded(*.limit, *.bound))]
    Overloaded {
        /// The value of the bound that refused it.
        limit: usize,
        /// Which bound that is.
        bound: OverloadBound,
    },
    /// The fetch task ended without an answer (the fetcher panicked, or the runtime is
    /// shutting down).
    #[error("the key fetch ended without an answer")]
    Aborted,
}

/// Which of the key cache's bounds refused a fetch ([`DiscoveryError::Overloaded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverloadBound {
    /// [`CacheConfig::max_inflight`]: that many fetches are running, across sources.
    Fetches,
    /// The strangers' share of them ([`CacheConfig::stranger_inflight_percent`]): that
    /// many fetches of sources without keys are running.
    StrangerFetches,
    /// [`CacheConfig::max_negative_entries`]: the table of sources without keys holds
    /// that many, each being fetched (none may be evicted for a new source).
    NegativeTable,
}

/// What [`DiscoveryError::Overloaded`] says: the bound that refused, and its value.
fn overloaded(limit: usize, bound: OverloadBound) -> String {
    match bound {
        OverloadBound::Fetches => format!("{limit} key fetches are already running"),
        OverloadBound::StrangerFetches => {
            format!("{limit} key fetches of sources without keys are already running")
        }
        OverloadBound::NegativeTable => format!(
            "the table of sources without keys is full: {limit} sources, each being fetched"
        ),
    }
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
    /// Sources with keys evicted to stay within [`CacheConfig::max_entries`] (on probation
    /// first).
    pub evictions: u64,
    /// Sources without keys evicted to stay within [`CacheConfig::max_negative_entries`].
    pub negative_evictions: u64,
    /// Lookups refused without a fetch because [`CacheConfig::max_inflight`] fetches were
    /// running (or, for a source without keys, the strangers' share of them; or the
    /// negative table was full of them), and refreshes skipped for it.
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

type Map<K> = Mutex<Tables<K>>;

/// Everything but the entries. An in-flight fetch holds this and only a weak reference to
/// the entries, so an entry holding its fetch is not a reference cycle.
struct Inner<F> {
    fetcher: Arc<F>,
    clock: Arc<dyn Clock>,
    config: CacheConfig,
    /// The most fetches at once: all, and of sources without keys.
    limits: Slots,
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

/// What a lookup asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// A key for a request: a hit is a use of the source's keys (a second one protects
    /// the source).
    Use,
    /// The key a failed verification used, looked up again for the same request: no use.
    Recheck,
    /// A refetch after a failed verification (if the floor allows).
    Refetch,
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
        lock(&self.entries).slots.all
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
        config.stranger_inflight_percent = config.stranger_inflight_percent.clamp(1, 100);
        config.max_backoff = config.max_backoff.max(config.refetch_floor);
        Self {
            inner: Arc::new(Inner {
                fetcher,
                clock,
                limits: Slots::limits(config.max_inflight, config.stranger_inflight_percent),
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
        match self.step(source, pick, Ask::Use) {
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
        match self.step(source, pick, Ask::Refetch) {
            Step::Done(_) => Ok(None),
            Step::Wait(fut) => {
                let key = lookup(&*fut.await?, pick)?;
                Ok((&key != failed).then_some(key))
            }
        }
    }

    /// One decision under the lock.
    fn step(&self, source: &KeySource, pick: Pick<'_, K>, ask: Ask) -> Step<K> {
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
            slots,
            protected,
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

        if ask == Ask::Refetch {
            return match (&entry.inflight, may_fetch) {
                (Some(f), _) => Step::Wait(f.clone()),
                (None, true) => self.start(source, entry, slots, now),
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
                    if ask == Ask::Use {
                        entry.used(protected);
                    }
                    if now >= entry.refresh_at
                        && entry.inflight.is_none()
                        && may_fetch
                        && let Step::Wait(_) = self.start(source, entry, slots, now)
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
            if let Some(wait) = self.join_or_fetch(source, entry, slots, now, may_fetch) {
                return wait;
            }
            bump(&inner.counters.floor_refusals);
            return Step::Done(Err(pick.unknown()));
        }

        // No usable keys.
        if let Some(wait) = self.join_or_fetch(source, entry, slots, now, may_fetch) {
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
    /// refused at once if none can start (the strangers' share of the slots is running),
    /// and room is never made by evicting a source that has keys. Called under the lock.
    fn admit(&self, source: &KeySource, tables: &mut Tables<K>) -> Result<(), DiscoveryError> {
        let inner = &self.inner;
        let cfg = &inner.config;
        if tables.positive.contains_key(source) || tables.negative.contains_key(source) {
            return Ok(());
        }
        let refused = tables.slots.refusing(inner.limits, true).or_else(|| {
            (tables.negative.len() >= cfg.max_negative_entries
                && !evict_negative(&mut tables.negative, &inner.counters))
            .then_some((cfg.max_negative_entries, OverloadBound::NegativeTable))
        });
        if let Some((limit, bound)) = refused {
            bump(&inner.counters.overloaded);
            return Err(DiscoveryError::Overloaded { limit, bound });
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
        slots: &mut Slots,
        now: u64,
        may_fetch: bool,
    ) -> Option<Step<K>> {
        if let Some(f) = &entry.inflight {
            bump(&self.inner.counters.coalesced);
            return Some(Step::Wait(f.clone()));
        }
        if may_fetch {
            bump(&self.inner.counters.misses);
            return Some(self.start(source, entry, slots, now));
        }
        None
    }

    /// Starts a fetch of `source` on its own task and records it as in flight, unless
    /// `max_inflight` fetches are running, or the strangers' share of them for a source
    /// without keys (or there is no runtime). Called under the lock.
    fn start(
        &self,
        source: &KeySource,
        entry: &mut Entry<K>,
        slots: &mut Slots,
        now: u64,
    ) -> Step<K> {
        let stranger = entry.stranger();
        if let Some((limit, bound)) = slots.refusing(self.inner.limits, stranger) {
            bump(&self.inner.counters.overloaded);
            return Step::Done(Err(DiscoveryError::Overloaded { limit, bound }));
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
        slots.take(stranger);
        let mut flight = Flight {
            entries: Arc::downgrade(&self.entries),
            source: source.clone(),
            id,
            stranger,
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

/// A running fetch's slot. The fetch settles it; if the fetch never does (the fetcher
/// panicked, the runtime is shutting down), dropping it releases the slot and the
/// source's in-flight mark, so neither is ever leaked.
struct Flight<K> {
    entries: std::sync::Weak<Map<K>>,
    source: KeySource,
    id: u64,
    /// Whether the slot is one of the strangers' share.
    stranger: bool,
    open: bool,
}

impl<K> Flight<K> {
    /// Releases the slot, and the entry's in-flight mark if it is still this fetch's.
    fn release(&mut self, t: &mut Tables<K>) {
        if !self.open {
            return;
        }
        self.open = false;
        t.slots.release(self.stranger);
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
            // A source's first keys move it out of the negative table, on probation.
            t.first_keys(source, cfg.max_entries, &inner.counters);
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
        // What the cache holds now is the key that failed. Looked up again for the same
        // request, so not a second use of the source's keys.
        let pick = Pick::Kid(req.kid);
        let failed = match self.step(&source, pick, Ask::Recheck) {
            Step::Done(r) => r,
            Step::Wait(fut) => fut.await.and_then(|set| lookup(&set, pick)),
        };
        let Ok(failed) = failed else {
            return Ok(None);
        };
        Ok(self
            .refetch_after_failure(&source, req.kid, &failed)
            .await?)
    }
}
