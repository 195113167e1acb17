//! What every server's store shares: one error type, which keeps the backend's own error
//! as its [`source`](std::error::Error::source), and one way to run blocking store work
//! (an embedded database) off the request threads.
//!
//! The Person Server and the Access Server map a [`StoreError`] to `500 server_error`
//! through `From<StoreError>` for their own error types; the response never carries the
//! backend's message (it can name tables and files), while the error chain keeps it for
//! the operator's log.
//!
//! ```
//! use aauth_metadata::store::{StoreError, blocking};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let n = blocking("example", || Ok::<_, StoreError>(6 * 7)).await;
//! assert_eq!(n.ok(), Some(42));
//!
//! let bad = blocking("example", || {
//!     "x".parse::<u8>().map_err(|e| StoreError::unreadable("example", "a counter", e))
//! })
//! .await;
//! let e = bad.err().expect("the parse fails");
//! assert_eq!(e.to_string(), "example store: a stored a counter could not be read back");
//! // The cause is kept for the operator's log.
//! let cause = std::error::Error::source(&e).map(ToString::to_string);
//! assert_eq!(cause.as_deref(), Some("invalid digit found in string"));
//! # }
//! ```

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "postgres")]
mod postgres_replay;
#[cfg(feature = "postgres")]
pub use postgres_replay::PgReplayStore;

use std::error::Error;
use std::sync::Arc;

#[cfg(feature = "redis")]
pub mod redis;

/// The source of a [`StoreError`]: the backend's own error, shared so the error stays
/// cheap to clone.
pub type StoreSource = Arc<dyn Error + Send + Sync + 'static>;

/// Why a store could not answer. Nothing was changed by the call that failed (every
/// multi-step change runs in one transaction or under one lock).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed: I/O, a constraint, a lost connection.
    #[error("{store} store: the backend failed")]
    Backend {
        /// Which store (e.g. `person-server sqlite`).
        store: &'static str,
        /// The backend's error.
        #[source]
        source: StoreSource,
    },
    /// A stored record could not be read back (corrupt, or written by an incompatible
    /// version).
    #[error("{store} store: a stored {record} could not be read back")]
    Unreadable {
        /// Which store.
        store: &'static str,
        /// What kind of record.
        record: &'static str,
        /// Why it did not parse.
        #[source]
        source: StoreSource,
    },
    /// The task running the store's blocking work was lost (it panicked, or the runtime
    /// is shutting down).
    #[error("{store} store: its worker stopped")]
    WorkerStopped {
        /// Which store.
        store: &'static str,
    },
}

impl StoreError {
    /// A backend failure of `store`.
    pub fn backend(store: &'static str, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::Backend {
            store,
            source: Arc::from(source.into()),
        }
    }

    /// A `record` of `store` that could not be read back.
    pub fn unreadable(
        store: &'static str,
        record: &'static str,
        source: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        Self::Unreadable {
            store,
            record,
            source: Arc::from(source.into()),
        }
    }

    /// Whether the failure may pass on its own (the backend unreachable, timed out or
    /// busy; its worker lost): a server answers it `503` with `Retry-After`, so that an
    /// agent retries rather than starting over (draft -11's polling rules). A record that
    /// does not read back will not on a retry either: `500`.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Unreadable { .. })
    }

    /// Which store failed.
    #[must_use]
    pub fn store(&self) -> &'static str {
        match self {
            Self::Backend { store, .. }
            | Self::Unreadable { store, .. }
            | Self::WorkerStopped { store } => store,
        }
    }
}

/// A store's URL as it may be shown or logged: the password of its user information
/// replaced by `<redacted>` (`scheme://user:<redacted>@host…`), and in libpq's
/// `key=value` form a `password=` pair; a URL without one is returned as it is.
///
/// ```
/// use aauth_metadata::store::redact_url;
/// assert_eq!(redact_url("postgres://u:p@h:5432/db?sslmode=require"), "postgres://u:<redacted>@h:5432/db?sslmode=require");
/// assert_eq!(redact_url("redis://:secret@cache:6379/0"), "redis://:<redacted>@cache:6379/0");
/// assert_eq!(redact_url("postgres://u@h/db?x=a@b"), "postgres://u@h/db?x=a@b");
/// assert_eq!(redact_url("host=h password=secret dbname=d"), "host=h password=<redacted> dbname=d");
/// assert_eq!(redact_url("sqlite:ps.sqlite"), "sqlite:ps.sqlite");
/// ```
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        if !url.contains("password=") {
            return url.to_owned();
        }
        return url
            .split(' ')
            .map(|kv| {
                if kv.starts_with("password=") {
                    "password=<redacted>"
                } else {
                    kv
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}{tail}"),
        None => url.to_owned(),
    }
}

/// Runs `f` on the runtime's blocking pool (an embedded database's calls block), and
/// answers [`StoreError::WorkerStopped`] if the task is lost.
///
/// # Errors
///
/// What `f` returns, or [`StoreError::WorkerStopped`].
#[cfg(feature = "runtime")]
pub async fn blocking<T, F>(store: &'static str, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    let started = std::time::Instant::now();
    let outcome = tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| StoreError::WorkerStopped { store })
        .and_then(|r| r);
    metrics::histogram!(crate::metric::STORE_DURATION, "store" => store)
        .record(started.elapsed().as_secs_f64());
    if outcome.is_err() {
        metrics::counter!(crate::metric::STORE_ERRORS, "store" => store).increment(1);
    }
    outcome
}
