//! Request rate limits a deployment configures: per client address or per endpoint, each
//! a rate and a burst, enforced with GCRA (the generic cell rate algorithm: one number
//! per key, the "theoretical arrival time", so a limit costs one read and one write) in
//! memory for one instance ([`MemoryRateLimiter`]) or in Redis for several
//! (`RedisRateLimiter`, feature `redis`: one script, Redis's own clock).
//!
//! A request over a limit is answered `429` with `Retry-After` (the draft's polling rules
//! have the agent back off) before the role sees it: [`RateLimits::check`] and
//! [`limited_response`]. Rules counted by *who signed* a request ([`RateScope::Agent`],
//! [`RateScope::PersonServer`]) are checked by the server itself, once the signature
//! verified ([`RateLimits::check_signed`]): counted by an unverified claim, anyone could
//! spend a victim agent's budget. A poll of a pending URL over a limit is answered
//! `slow_down` ([`slow_down_response`]). This is distinct from [`crate::throttle`], which
//! counts *failures* (wrong codes, wrong passwords) and blocks guessing.
//!
//! ```
//! use std::time::Duration;
//! use aauth_metadata::rate::RateLimit;
//!
//! // Ten a second, with bursts of up to five at once.
//! let limit = RateLimit::new(10, Duration::from_secs(1), 5).unwrap();
//! let mut tat = 0; // a key never seen
//! for _ in 0..5 {
//!     tat = limit.step(tat, 1_000_000).expect("within the burst");
//! }
//! // The sixth at the same instant waits one interval (100 ms).
//! assert_eq!(limit.step(tat, 1_000_000), Err(Duration::from_millis(100)));
//! assert!(limit.step(tat, 1_100_000).is_ok());
//! ```

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::store::StoreError;
use crate::throttle::{ClientAddr, ThrottleKey};

/// A rate and a burst: `burst` requests at once, then one every `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    interval_us: u64,
    burst: u32,
}

/// Why a [`RateLimit`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// Zero requests, a zero period, or a zero burst.
    #[error(
        "a rate limit needs at least one request, a period longer than zero and a burst of at least one"
    )]
    Empty,
    /// Faster than a request a microsecond.
    #[error("a rate limit faster than one request a microsecond")]
    TooFast,
}

impl RateLimit {
    /// `requests` every `per`, up to `burst` at once.
    ///
    /// # Errors
    ///
    /// [`RateLimitError`].
    pub fn new(requests: u32, per: Duration, burst: u32) -> Result<Self, RateLimitError> {
        if requests == 0 || per.is_zero() || burst == 0 {
            return Err(RateLimitError::Empty);
        }
        let interval_us = u64::try_from(per.as_micros() / u128::from(requests)).unwrap_or(u64::MAX);
        if interval_us == 0 {
            return Err(RateLimitError::TooFast);
        }
        Ok(Self { interval_us, burst })
    }

    /// The time between two requests at the sustained rate.
    #[must_use]
    pub fn interval(&self) -> Duration {
        Duration::from_micros(self.interval_us)
    }

    /// How many requests may come at once.
    #[must_use]
    pub fn burst(&self) -> u32 {
        self.burst
    }

    fn tolerance_us(&self) -> u64 {
        self.interval_us.saturating_mul(u64::from(self.burst))
    }

    /// One request at `now_us` (microseconds on any clock that does not go back) to a
    /// key whose theoretical arrival time is `tat_us` (0 for a key never seen): the new
    /// arrival time to keep, or how long to wait (nothing is to be kept then).
    ///
    /// # Errors
    ///
    /// The wait, when the request is over the limit.
    pub fn step(&self, tat_us: u64, now_us: u64) -> Result<u64, Duration> {
        let next = tat_us.max(now_us).saturating_add(self.interval_us);
        let ahead = next - now_us;
        if ahead > self.tolerance_us() {
            Err(Duration::from_micros(ahead - self.tolerance_us()))
        } else {
            Ok(next)
        }
    }
}

/// Where the arrival times are kept.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// One request for `key` under `limit`: `None` to go on, `Some(wait)` when over it.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the limiter cannot answer (the caller refuses the request:
    /// `503`, never an unlimited admission).
    async fn acquire(
        &self,
        key: &ThrottleKey,
        limit: &RateLimit,
    ) -> Result<Option<Duration>, StoreError>;
}

/// The default bound of a [`MemoryRateLimiter`]: keys held at once.
pub const DEFAULT_RATE_KEYS: usize = 100_000;

/// Arrival times in this process, bounded: past [`DEFAULT_RATE_KEYS`] (or
/// [`MemoryRateLimiter::max_keys`]) keys whose time has not passed, a new key is limited
/// for one interval rather than the oldest forgotten (a flood of new addresses cannot
/// reset anybody's limit). Time is Tokio's monotonic clock.
#[derive(Debug)]
pub struct MemoryRateLimiter {
    start: tokio::time::Instant,
    max_keys: usize,
    tats: Mutex<std::collections::BTreeMap<ThrottleKey, u64>>,
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            max_keys: DEFAULT_RATE_KEYS,
            tats: Mutex::default(),
        }
    }
}

impl MemoryRateLimiter {
    /// Holds at most `max` keys.
    #[must_use]
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max.max(1);
        self
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn acquire(
        &self,
        key: &ThrottleKey,
        limit: &RateLimit,
    ) -> Result<Option<Duration>, StoreError> {
        let now = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut tats = self.tats.lock().unwrap_or_else(PoisonError::into_inner);
        let tat = tats.get(key).copied();
        if tat.is_none() && tats.len() >= self.max_keys {
            // Keys whose arrival time has passed are as good as new: drop them first.
            tats.retain(|_, t| *t > now);
            if tats.len() >= self.max_keys {
                return Ok(Some(limit.interval()));
            }
        }
        Ok(match limit.step(tat.unwrap_or(0), now) {
            Ok(next) => {
                tats.insert(*key, next);
                None
            }
            Err(wait) => Some(wait),
        })
    }
}

/// What a [`Rule`] counts requests by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateScope {
    /// Each client address (see [`ClientAddr`]; an IPv6 client by its /64). A request
    /// without one (behind a proxy whose word is not trusted) is not counted.
    Client,
    /// Every request to the rule's paths together: what the service behind them takes.
    Endpoint,
    /// Each agent, by the identifier its agent token names (`sub`, `aauth:local@domain`),
    /// once the server verified that token and the request's signature (at a Person
    /// Server, the agent that signed; at an Access Server, the agent of the token request
    /// a Person Server signed). Counted only by [`RateLimits::check_signed`]: never before
    /// the signature is verified, so that a request merely claiming to be an agent spends
    /// nothing of that agent's budget.
    Agent,
    /// Each Person Server, by its identifier, at an Access Server: the Person Server whose
    /// signature on the request (token request, poll, answer) verified, the one whose
    /// person token it presents. Counted only by [`RateLimits::check_signed`].
    PersonServer,
}

impl RateScope {
    /// Whether rules of this scope count requests by who signed them: counted by the
    /// server once the signature verified ([`RateLimits::check_signed`]), skipped by
    /// [`RateLimits::check`] (which runs before anything is verified).
    ///
    /// ```
    /// use aauth_metadata::rate::RateScope;
    /// assert!(RateScope::Agent.is_signed() && RateScope::PersonServer.is_signed());
    /// assert!(!RateScope::Client.is_signed() && !RateScope::Endpoint.is_signed());
    /// ```
    #[must_use]
    pub fn is_signed(self) -> bool {
        matches!(self, Self::Agent | Self::PersonServer)
    }
}

/// Who signed a request, as the server that verified its signature established it: what
/// the rules of [`RateScope::Agent`] and [`RateScope::PersonServer`] count by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignedBy<'a> {
    /// An agent, by its identifier (`aauth:local@domain`: its verified agent token's
    /// `sub`).
    Agent(&'a str),
    /// A Person Server, by its identifier (`https://ps.example`).
    PersonServer(&'a str),
}

impl SignedBy<'_> {
    /// The scope whose rules count this signer.
    #[must_use]
    pub fn scope(&self) -> RateScope {
        match self {
            Self::Agent(_) => RateScope::Agent,
            Self::PersonServer(_) => RateScope::PersonServer,
        }
    }

    fn id(&self) -> &str {
        match self {
            Self::Agent(id) | Self::PersonServer(id) => id,
        }
    }
}

/// A limit on the requests whose path starts with `path` (every path when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// What the requests are counted by.
    pub scope: RateScope,
    /// The path prefix.
    pub path: String,
    /// The limit.
    pub limit: RateLimit,
}

/// The rules a service enforces, and where it keeps the counts.
pub struct RateLimits {
    rules: Vec<Rule>,
    /// Each rule's key scope (`rate/{n}/{path}`), and an endpoint rule's one key: made
    /// once, not per request.
    scopes: Vec<(String, ThrottleKey)>,
    limiter: std::sync::Arc<dyn RateLimiter>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// Why [`RateLimits::check`] refused a request.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// Over a limit: `429`, to be retried after the wait.
    #[error("over the rate limit: retry after {} s", .retry_after.as_secs())]
    Limited {
        /// How long to wait.
        retry_after: Duration,
    },
    /// The limiter could not answer: `503` (fail closed).
    #[error("the rate limiter could not answer")]
    Unavailable(#[source] StoreError),
}

impl Refused {
    /// The `Retry-After` it is answered with: the wait in whole seconds, rounded up, at
    /// least 1 (1 when the limiter could not answer).
    ///
    /// ```
    /// use std::time::Duration;
    /// use aauth_metadata::rate::Refused;
    /// assert_eq!(Refused::Limited { retry_after: Duration::from_millis(1001) }.retry_after_secs(), 2);
    /// assert_eq!(Refused::Limited { retry_after: Duration::from_millis(10) }.retry_after_secs(), 1);
    /// assert_eq!(Refused::Limited { retry_after: Duration::from_secs(30) }.retry_after_secs(), 30);
    /// ```
    #[must_use]
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Self::Limited { retry_after } => {
                (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1)
            }
            Self::Unavailable(_) => 1,
        }
    }
}

impl RateLimits {
    /// Enforces `rules`, counting in `limiter`.
    #[must_use]
    pub fn new(rules: Vec<Rule>, limiter: std::sync::Arc<dyn RateLimiter>) -> Self {
        let scopes = rules
            .iter()
            .enumerate()
            .map(|(n, rule)| {
                let scope = format!("rate/{n}/{}", rule.path);
                let endpoint = ThrottleKey::new(&scope, "");
                (scope, endpoint)
            })
            .collect();
        Self {
            rules,
            scopes,
            limiter,
        }
    }

    /// Counts the request `parts` against every rule that concerns it, by client address
    /// or by endpoint; refused when it is over any (nothing past the first refusing rule
    /// is counted). Rules counted by who signed ([`RateScope::is_signed`]) are skipped:
    /// nothing is verified yet.
    ///
    /// # Errors
    ///
    /// [`Refused`].
    pub async fn check(&self, parts: &http::request::Parts) -> Result<(), Refused> {
        let path = parts.uri.path();
        for (rule, (scope, endpoint)) in self.rules.iter().zip(&self.scopes) {
            if !path.starts_with(&rule.path) {
                continue;
            }
            let key = match rule.scope {
                RateScope::Client => match parts.extensions.get::<ClientAddr>() {
                    Some(addr) => ThrottleKey::client(scope, *addr),
                    None => continue,
                },
                RateScope::Endpoint => *endpoint,
                RateScope::Agent | RateScope::PersonServer => continue,
            };
            self.count(rule, &key).await?;
        }
        Ok(())
    }

    /// Counts a request to `path` whose signature a server verified, by who signed it,
    /// against every rule of that signer's scope whose path it starts with; refused when
    /// it is over any (nothing past the first refusing rule is counted). Call it only
    /// with a verified identity.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use aauth_metadata::rate::{MemoryRateLimiter, RateLimit, RateLimits, RateScope, Refused, Rule, SignedBy};
    /// let limits = RateLimits::new(
    ///     vec![Rule {
    ///         scope: RateScope::Agent,
    ///         path: "/person-token".to_owned(),
    ///         limit: RateLimit::new(2, Duration::from_secs(60), 2).unwrap(),
    ///     }],
    ///     Arc::new(MemoryRateLimiter::default()),
    /// );
    /// let assistant = SignedBy::Agent("aauth:assistant@agent.example");
    /// limits.check_signed("/person-token", assistant).await.unwrap();
    /// limits.check_signed("/person-token", assistant).await.unwrap();
    /// let refused = limits.check_signed("/person-token", assistant).await.unwrap_err();
    /// assert!(matches!(refused, Refused::Limited { retry_after } if retry_after == Duration::from_secs(30)));
    /// // Another agent has its own count.
    /// limits.check_signed("/person-token", SignedBy::Agent("aauth:helper@agent.example")).await.unwrap();
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// [`Refused`].
    pub async fn check_signed(&self, path: &str, signer: SignedBy<'_>) -> Result<(), Refused> {
        let scope_of_signer = signer.scope();
        for (rule, (scope, _)) in self.rules.iter().zip(&self.scopes) {
            if rule.scope != scope_of_signer || !path.starts_with(&rule.path) {
                continue;
            }
            self.count(rule, &ThrottleKey::new(scope, signer.id()))
                .await?;
        }
        Ok(())
    }

    /// One request for `key` under `rule`.
    async fn count(&self, rule: &Rule, key: &ThrottleKey) -> Result<(), Refused> {
        match self.limiter.acquire(key, &rule.limit).await {
            Ok(None) => Ok(()),
            Ok(Some(retry_after)) => {
                metrics::counter!(crate::metric::RATE_LIMITED, "path" => rule.path.clone())
                    .increment(1);
                Err(Refused::Limited { retry_after })
            }
            Err(e) => Err(Refused::Unavailable(e)),
        }
    }
}

/// The answer to a refused request: `429` with `Retry-After` (whole seconds, at least 1)
/// and `{"error": "rate_limited"}`, or `503` with `Retry-After: 1` and
/// `{"error": "temporarily_unavailable"}`.
#[must_use]
pub fn limited_response(refused: &Refused) -> http::Response<Bytes> {
    refused_response(refused, "rate_limited")
}

/// The answer to a refused poll of a pending URL: as [`limited_response`], but a poll
/// over a limit is `429` with `{"error": "slow_down"}` (draft -11 §11.9.4, Polling Error
/// Codes: "polling too frequently"), on which the agent adds 5 seconds to its polling
/// interval (draft -11 §Deferred Responses, Polling with GET), and `Retry-After`.
///
/// ```
/// use std::time::Duration;
/// use aauth_metadata::rate::{Refused, slow_down_response};
/// let r = slow_down_response(&Refused::Limited { retry_after: Duration::from_millis(1500) });
/// assert_eq!(r.status(), 429);
/// assert_eq!(r.headers()["retry-after"], "2");
/// let json: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
/// assert_eq!(json["error"], "slow_down");
/// ```
#[must_use]
pub fn slow_down_response(refused: &Refused) -> http::Response<Bytes> {
    refused_response(refused, "slow_down")
}

/// `refused` as a response, `limited` the `error` of a request over a limit.
fn refused_response(refused: &Refused, limited: &'static str) -> http::Response<Bytes> {
    let (status, error) = match refused {
        Refused::Limited { .. } => (http::StatusCode::TOO_MANY_REQUESTS, limited),
        Refused::Unavailable(_) => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
        ),
    };
    let body = serde_json::json!({
        "type": "about:blank",
        "status": status.as_u16(),
        "error": error,
        "detail": refused.to_string(),
    });
    let mut r = crate::serve::problem_response(status, &body);
    r.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(refused.retry_after_secs()),
    );
    r
}

#[cfg(feature = "redis")]
pub use redis_limiter::RedisRateLimiter;

#[cfg(feature = "redis")]
mod redis_limiter {
    use std::sync::LazyLock;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::{RateLimit, RateLimiter};
    use crate::store::StoreError;
    use crate::store::redis::Redis;
    use crate::store::redis::client::Script;
    use crate::throttle::ThrottleKey;

    /// `KEYS`: the key's arrival time. `ARGV`: the interval and the tolerance, in
    /// microseconds. Redis's own clock (`TIME`), so that every instance counts alike.
    /// Answers 0 to go on, else the microseconds to wait.
    static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
        Script::new(
            r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next = tat + tonumber(ARGV[1])
local ahead = next - now
if ahead > tonumber(ARGV[2]) then return ahead - tonumber(ARGV[2]) end
redis.call('SET', KEYS[1], next, 'PX', math.floor(ahead / 1000) + 1)
return 0
",
        )
    });

    /// Arrival times in Redis, shared by every instance: one script (one round trip) a
    /// request and a rule, on Redis's clock; a key lives only until its time has passed.
    #[derive(Debug, Clone)]
    pub struct RedisRateLimiter {
        redis: Redis,
    }

    impl RedisRateLimiter {
        /// Counts in `redis` (under its prefix).
        #[must_use]
        pub fn new(redis: Redis) -> Self {
            Self { redis }
        }
    }

    #[async_trait]
    impl RateLimiter for RedisRateLimiter {
        async fn acquire(
            &self,
            key: &ThrottleKey,
            limit: &RateLimit,
        ) -> Result<Option<Duration>, StoreError> {
            let mut call = ACQUIRE.prepare_invoke();
            call.key(self.redis.key(&["rate", &key.to_hex()]))
                .arg(limit.interval_us)
                .arg(limit.tolerance_us());
            let wait: u64 = self.redis.invoke("rate redis", &call).await?;
            Ok((wait > 0).then(|| Duration::from_micros(wait)))
        }
    }
}
