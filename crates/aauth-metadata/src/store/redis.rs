//! What every Redis-backed store shares (feature `redis`, decision 0015): one connection
//! manager opened from a URL, with a connect timeout and a response timeout so that a
//! store that cannot answer fails within a bound instead of holding the request; a key
//! prefix, so that several deployments (or tests) share one Redis without meeting; and
//! one mapping of the client's errors to [`StoreError::Backend`], the cause kept as its
//! source.
//!
//! The connection manager reconnects by itself: a call that fails on a lost connection
//! starts a new one, and once Redis answers again the next calls succeed, with no restart
//! and no rebuilt store. A store built on it fails closed: every error is an error, never
//! an answer.
//!
//! ```
//! use std::time::Duration;
//! use aauth_metadata::store::redis::RedisConfig;
//!
//! let config = RedisConfig::new("redis://127.0.0.1:6379/0")
//!     .prefix("tenant-a:")
//!     .connect_timeout(Duration::from_secs(1))
//!     .response_timeout(Duration::from_millis(500));
//! assert_eq!(config.key_prefix(), "tenant-a:");
//! // What a log may show: the URL without its password.
//! let with_password = RedisConfig::new("redis://app:s3cret@redis.internal:6379");
//! assert_eq!(with_password.redacted_url(), "redis://app:<redacted>@redis.internal:6379");
//! ```
//!
//! Connecting needs a server:
//!
//! ```no_run
//! # async fn example() -> Result<(), aauth_metadata::store::StoreError> {
//! use aauth_metadata::store::redis::{Redis, RedisConfig};
//! let redis = Redis::connect(&RedisConfig::new("redis://127.0.0.1:6379")).await?;
//! assert_eq!(redis.key(&["replay", "k"]), "aauth:replay:k");
//! redis.ping("example").await?;
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::aio::ConnectionManager;
use ::redis::{Client, FromRedisValue, RedisError, ScriptInvocation};

use super::StoreError;

/// The `redis` client this module is built on, for stores that send their own commands
/// (the same version, so its types meet this module's).
pub use ::redis as client;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "aauth:";
/// The default bound on opening a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The default bound on one call's answer.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a Redis is and how long to wait for it.
#[derive(Clone)]
pub struct RedisConfig {
    url: String,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl RedisConfig {
    /// The Redis at `url` (`redis://[user][:password@]host[:port][/db]`, or `rediss://`
    /// for TLS), keys prefixed with [`DEFAULT_PREFIX`], [`DEFAULT_CONNECT_TIMEOUT`] and
    /// [`DEFAULT_RESPONSE_TIMEOUT`].
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        }
    }

    /// Prefixes every key with `prefix` (end it with `:` by convention).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The bound on opening a connection (each attempt).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The bound on waiting for one call's answer.
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The key prefix.
    #[must_use]
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The URL with its password, if any, replaced by `<redacted>`.
    #[must_use]
    pub fn redacted_url(&self) -> String {
        super::redact_url(&self.url)
    }
}

/// A connection to one Redis, shared by every store built on it (cheap to clone).
#[derive(Clone)]
pub struct Redis {
    connection: ConnectionManager,
    prefix: Arc<str>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// What the connection manager is told: each reconnection is one attempt (a call that
/// finds Redis gone fails now, within the connect timeout, and the next call tries
/// again), so no request waits through a back-off schedule.
fn manager_config(config: &RedisConfig) -> ::redis::aio::ConnectionManagerConfig {
    ::redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.response_timeout))
}

impl Redis {
    /// Opens the Redis `config` names and checks that it answers.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] (store `redis`) for a URL the client does not read, or a
    /// Redis that does not answer within the connect timeout.
    pub async fn connect(config: &RedisConfig) -> Result<Self, StoreError> {
        let client = Client::open(config.url.as_str()).map_err(|e| unavailable("redis", e))?;
        // The first connection is bounded like every later one (one attempt).
        let connection = ConnectionManager::new_with_config(client, manager_config(config))
            .await
            .map_err(|e| unavailable("redis", e))?;
        Ok(Self {
            connection,
            prefix: Arc::from(config.prefix.as_str()),
        })
    }

    /// The key `prefix` + `parts` joined by `:`.
    #[must_use]
    pub fn key(&self, parts: &[&str]) -> String {
        let mut key = String::with_capacity(
            self.prefix.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>(),
        );
        key.push_str(&self.prefix);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                key.push(':');
            }
            key.push_str(p);
        }
        key
    }

    /// The key prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The same connection under another key prefix (another deployment, or a test's own
    /// keys).
    #[must_use]
    pub fn with_prefix(&self, prefix: &str) -> Self {
        Self {
            connection: self.connection.clone(),
            prefix: Arc::from(prefix),
        }
    }

    /// A handle on the shared connection, for commands of a store's own.
    #[must_use]
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Runs a script for `store` (loading it when Redis does not know it yet), counting
    /// its time and failures in the store metrics.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] for whatever the call met, the client's error as its
    /// source.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        store: &'static str,
        script: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let outcome = script
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| unavailable(store, e));
        observe(store, started, outcome.is_err());
        outcome
    }

    /// Runs one command for `store`, counted like [`Redis::invoke`].
    ///
    /// # Errors
    ///
    /// As [`Redis::invoke`].
    pub async fn query<T: FromRedisValue>(
        &self,
        store: &'static str,
        cmd: &::redis::Cmd,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let outcome = cmd
            .query_async(&mut self.connection.clone())
            .await
            .map_err(|e| unavailable(store, e));
        observe(store, started, outcome.is_err());
        outcome
    }

    /// Whether Redis answers (a readiness check).
    ///
    /// # Errors
    ///
    /// As [`Redis::invoke`].
    pub async fn ping(&self, store: &'static str) -> Result<(), StoreError> {
        self.query::<String>(store, &::redis::cmd("PING"))
            .await
            .map(drop)
    }
}

fn observe(store: &'static str, started: Instant, failed: bool) {
    metrics::histogram!(crate::metric::STORE_DURATION, "store" => store)
        .record(started.elapsed().as_secs_f64());
    if failed {
        metrics::counter!(crate::metric::STORE_ERRORS, "store" => store).increment(1);
    }
}

/// A client error of `store` as [`StoreError::Backend`]: Redis could not answer (down,
/// timed out, refused the call); the client's error is kept as the source.
#[must_use]
pub fn unavailable(store: &'static str, error: RedisError) -> StoreError {
    StoreError::backend(store, error)
}

/// `error` and each of its causes, joined by `: ` (for the error types that carry a
/// reason as text).
///
/// ```
/// use aauth_metadata::store::{StoreError, redis::describe};
/// let e = StoreError::backend("replay redis", std::io::Error::other("connection refused"));
/// assert_eq!(describe(&e), "replay redis store: the backend failed: connection refused");
/// ```
#[must_use]
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use crate::store::redact_url;

    #[test]
    fn only_the_password_is_redacted() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:pw@h:1/0", "redis://:<redacted>@h:1/0"),
            ("rediss://u:p:w@h/2?x=1", "rediss://u:<redacted>@h/2?x=1"),
            ("redis://user@h", "redis://user@h"),
            ("redis://u:p@w@h", "redis://u:<redacted>@h"),
            ("unix:///run/redis.sock", "unix:///run/redis.sock"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
