//! Retries and circuit breaking for idempotent fetches, as sans-IO state machines with an
//! injected clock, and [`ResilientFetch`], which applies both around any [`Fetch`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aauth_keys::rand::{RandomSource, SharedRandom};
use aauth_keys::time::{Clock, UnixTime};
use async_trait::async_trait;

use crate::{Fetch, FetchError, Fetched, HttpsUrl};

/// When to retry an idempotent request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 3).
    pub max_attempts: u32,
    /// The first backoff (default 200 ms); doubled per attempt.
    pub base_delay: Duration,
    /// The longest backoff (default 5 s).
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; a server asking for more is not retried
    /// (default 30 s).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` after `attempt` (0-based) failed with `err`,
    /// or `None` to give up. `jitter` in `[0, 1]` spreads the exponential backoff over
    /// its upper half ("equal jitter"); a `Retry-After` on 429/503 is honoured exactly.
    ///
    /// ```
    /// use std::time::Duration;
    /// use aauth_metadata::{FetchError, RetryPolicy};
    /// let p = RetryPolicy::default();
    /// let timeout = FetchError::Timeout(Duration::from_secs(5));
    /// assert_eq!(p.delay(0, &timeout, 1.0), Some(Duration::from_millis(200)));
    /// assert_eq!(p.delay(1, &timeout, 0.0), Some(Duration::from_millis(200)));
    /// assert_eq!(p.delay(2, &timeout, 1.0), None); // three attempts made
    /// let throttled = FetchError::Status { status: 503, retry_after: Some(7) };
    /// assert_eq!(p.delay(0, &throttled, 0.5), Some(Duration::from_secs(7)));
    /// let not_found = FetchError::Status { status: 404, retry_after: None };
    /// assert_eq!(p.delay(0, &not_found, 0.5), None);
    /// ```
    #[must_use]
    pub fn delay(&self, attempt: u32, err: &FetchError, jitter: f64) -> Option<Duration> {
        if attempt.saturating_add(1) >= self.max_attempts || !err.is_transient() {
            return None;
        }
        if let FetchError::Status {
            status: 429 | 503,
            retry_after: Some(secs),
        } = err
        {
            let wait = Duration::from_secs(*secs);
            return (wait <= self.max_retry_after).then_some(wait);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max_delay);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Some(exp / 2 + exp.mul_f64(jitter / 2.0))
    }
}

/// A circuit breaker's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit (default 5).
    pub failure_threshold: u32,
    /// How long it stays open before one probe is let through (default 30 s).
    pub open_for: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: 30,
        }
    }
}

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerState {
    /// Requests flow; `failures` consecutive failures so far.
    Closed {
        /// Consecutive failures.
        failures: u32,
    },
    /// Requests are refused until `until`.
    Open {
        /// When one probe may go through.
        until: UnixTime,
    },
    /// One probe is in flight since `since`; its outcome closes or reopens the circuit.
    /// A probe that has not reported after `open_for` (its caller gave up: a timeout
    /// dropped it, a client went away) is presumed lost, and the next caller probes.
    HalfOpen {
        /// When the probe went.
        since: UnixTime,
    },
}

/// A circuit breaker for one host: closed → (threshold failures) → open → (after
/// `open_for`) half-open with one probe → closed on success, open again on failure.
///
/// ```
/// use aauth_keys::time::UnixTime;
/// use aauth_metadata::{BreakerConfig, BreakerState, CircuitBreaker};
/// let mut b = CircuitBreaker::new(BreakerConfig::default());
/// for _ in 0..5 {
///     assert!(b.allow(UnixTime(100)));
///     b.record_failure(UnixTime(100));
/// }
/// assert_eq!(b.state(), BreakerState::Open { until: UnixTime(130) });
/// assert!(!b.allow(UnixTime(129)));
/// assert!(b.allow(UnixTime(130)));      // the probe
/// assert!(!b.allow(UnixTime(130)));     // only one
/// assert!(b.allow(UnixTime(160)));      // that one never reported: another
/// b.record_success(UnixTime(161));
/// assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
}

impl CircuitBreaker {
    /// A closed breaker.
    #[must_use]
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config: BreakerConfig {
                failure_threshold: config.failure_threshold.max(1),
                open_for: config.open_for.max(1),
            },
            state: BreakerState::Closed { failures: 0 },
        }
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a request may go now. In the open state past its time, the first caller
    /// becomes the half-open probe and later callers are refused until it reports, or
    /// until `open_for` has passed without a report (the probe was abandoned: its caller
    /// is no longer there to report), when the next caller probes instead. So a breaker
    /// never stays shut because a probe's future was dropped.
    pub fn allow(&mut self, now: UnixTime) -> bool {
        match self.state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen { since: now };
                true
            }
            BreakerState::HalfOpen { since } if now >= since.plus(self.config.open_for) => {
                self.state = BreakerState::HalfOpen { since: now };
                true
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => false,
        }
    }

    /// A request succeeded.
    pub fn record_success(&mut self, _now: UnixTime) {
        self.state = BreakerState::Closed { failures: 0 };
    }

    /// A request failed (a transient failure: timeouts, transport errors, 5xx, 429).
    pub fn record_failure(&mut self, now: UnixTime) {
        self.state = match self.state {
            BreakerState::Closed { failures } if failures + 1 < self.config.failure_threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            BreakerState::Closed { .. } | BreakerState::HalfOpen { .. } => BreakerState::Open {
                until: now.plus(self.config.open_for),
            },
            // A late report from before the circuit opened changes nothing.
            open @ BreakerState::Open { .. } => open,
        };
    }
}

/// Retries and a per-host circuit breaker around a [`Fetch`]. Only transient failures
/// (see [`FetchError::is_transient`]) are retried or counted against the host.
pub struct ResilientFetch<F> {
    inner: F,
    retry: RetryPolicy,
    breaker: BreakerConfig,
    clock: Arc<dyn Clock>,
    breakers: Mutex<BTreeMap<String, CircuitBreaker>>,
    max_hosts: usize,
    random: SharedRandom,
}

impl<F> std::fmt::Debug for ResilientFetch<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResilientFetch")
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl<F: Fetch> ResilientFetch<F> {
    /// Wraps `inner`. At most 1024 hosts' breakers are kept ([`ResilientFetch::max_hosts`]).
    #[must_use]
    pub fn new(
        inner: F,
        retry: RetryPolicy,
        breaker: BreakerConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner,
            retry,
            breaker,
            clock,
            breakers: Mutex::new(BTreeMap::new()),
            max_hosts: 1024,
            random: SharedRandom::default(),
        }
    }

    /// Where the backoff's jitter comes from (the operating system's CSPRNG by default).
    #[must_use]
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = random;
        self
    }

    /// Keeps at most `hosts` breakers (default 1024). Past it a closed one is forgotten,
    /// or failing that the open one that reopens soonest, or failing that any (a signer
    /// names the host, so made-up hosts must not pile up): a host whose breaker is
    /// forgotten starts again from closed, and is refused again only after as many
    /// failures as opened it.
    #[must_use]
    pub fn max_hosts(mut self, hosts: usize) -> Self {
        self.max_hosts = hosts.max(1);
        self
    }

    /// The breaker state for `host` (closed if never seen).
    #[must_use]
    pub fn breaker_state(&self, host: &str) -> BreakerState {
        self.breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(host)
            .map_or(BreakerState::Closed { failures: 0 }, CircuitBreaker::state)
    }

    fn with_breaker<T>(&self, host: &str, f: impl FnOnce(&mut CircuitBreaker) -> T) -> T {
        let mut map = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        if !map.contains_key(host) && map.len() >= self.max_hosts {
            // A closed breaker first (it forgets only a failure count); else the open one
            // that reopens soonest; else any (a signer names the host, so breakers of
            // made-up hosts must not pile up in any state).
            let closed = map
                .iter()
                .find(|(_, b)| matches!(b.state(), BreakerState::Closed { .. }));
            let soonest_open = || {
                map.iter()
                    .filter_map(|(h, b)| match b.state() {
                        BreakerState::Open { until } => Some((until, h)),
                        _ => None,
                    })
                    .min()
                    .map(|(_, h)| h.clone())
            };
            let victim = closed
                .map(|(h, _)| h.clone())
                .or_else(soonest_open)
                .or_else(|| map.keys().next().cloned());
            if let Some(h) = victim {
                map.remove(&h);
            }
        }
        let b = map
            .entry(host.to_owned())
            .or_insert_with(|| CircuitBreaker::new(self.breaker));
        f(b)
    }
}

/// A jitter in `[0, 1]` drawn from `rng`; the middle of the range when it fails (the
/// jitter only spreads retries, so a failed draw costs no security).
fn jitter(rng: &mut dyn RandomSource) -> f64 {
    let mut b = [0u8; 2];
    match rng.fill(&mut b) {
        Ok(()) => f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX),
        Err(_) => 0.5,
    }
}

#[async_trait]
impl<F: Fetch> Fetch for ResilientFetch<F> {
    async fn get(&self, url: &HttpsUrl) -> Result<Fetched, FetchError> {
        let host = url.host();
        let mut attempt = 0;
        loop {
            if !self.with_breaker(host, |b| b.allow(self.clock.now())) {
                return Err(FetchError::CircuitOpen {
                    host: host.to_owned(),
                });
            }
            let result = self.inner.get(url).await;
            let now = self.clock.now();
            match &result {
                // Any answer that is not transient says the host is up.
                Ok(_) => self.with_breaker(host, |b| b.record_success(now)),
                Err(e) if e.is_transient() => self.with_breaker(host, |b| b.record_failure(now)),
                Err(FetchError::Status { .. }) => {
                    self.with_breaker(host, |b| b.record_success(now));
                }
                // No exchange happened (refused destination, redirect, oversize body): the
                // host's health is unknown.
                Err(_) => {}
            }
            let Err(err) = &result else {
                return result;
            };
            match self
                .retry
                .delay(attempt, err, jitter(&mut self.random.clone()))
            {
                Some(wait) if tokio::runtime::Handle::try_current().is_ok() => {
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                _ => return result,
            }
        }
    }
}
