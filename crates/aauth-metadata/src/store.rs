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
mod postgres_cascade;
#[cfg(feature = "postgres")]
mod postgres_replay;
#[cfg(feature = "postgres")]
pub use postgres_cascade::PgCascadeStore;
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
/// replaced by `<redacted>` (`scheme://user:<redacted>@host…`), as the value of a
/// `password` query parameter, and in libpq's `key=value` form the `password` value
/// (spaces around `=` and quoted values too; a string that does not parse as that form
/// is not shown at all). A URL without a password is returned as it is.
///
/// ```
/// use aauth_metadata::store::redact_url;
/// assert_eq!(redact_url("postgres://u:p@h:5432/db?sslmode=require"), "postgres://u:<redacted>@h:5432/db?sslmode=require");
/// assert_eq!(redact_url("redis://:secret@cache:6379/0"), "redis://:<redacted>@cache:6379/0");
/// assert_eq!(redact_url("postgres://u@h/db?x=a@b"), "postgres://u@h/db?x=a@b");
/// assert_eq!(redact_url("postgres://u@h/db?sslmode=require&password=s3"), "postgres://u@h/db?sslmode=require&password=<redacted>");
/// assert_eq!(redact_url("host=h password=secret dbname=d"), "host=h password=<redacted> dbname=d");
/// assert_eq!(redact_url("host=h password = 'a b' dbname=d"), "host=h password=<redacted> dbname=d");
/// assert_eq!(redact_url("sqlite:ps.sqlite"), "sqlite:ps.sqlite");
/// ```
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        if !url.to_ascii_lowercase().contains("password") {
            return url.to_owned();
        }
        return redact_conninfo(url)
            .unwrap_or_else(|| "<redacted: a connection string with a password>".to_owned());
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let tail = redact_query(tail);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:<redacted>@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// `tail` (path, query, fragment) with the value of every `password` query parameter
/// replaced by `<redacted>`.
fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=<redacted>"),
            _ => kv.to_owned(),
        })
        .collect();
    let mut out = format!("{path}?{}", pairs.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// libpq's `key = value …` form with the `password` value replaced by `<redacted>`;
/// `None` when it does not parse as that form.
fn redact_conninfo(s: &str) -> Option<String> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest.get(..eq)?.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return None;
        }
        rest = rest.get(eq + 1..)?.trim_start();
        let value_len = if let Some(quoted) = rest.strip_prefix('\'') {
            let mut escaped = false;
            let close = quoted.char_indices().find_map(|(i, c)| {
                let end = !escaped && c == '\'';
                escaped = !escaped && c == '\\';
                end.then_some(i)
            })?;
            close + 2
        } else {
            rest.find(char::is_whitespace).unwrap_or(rest.len())
        };
        let value = rest.get(..value_len)?;
        if key.eq_ignore_ascii_case("password") {
            out.push(format!("{key}=<redacted>"));
        } else {
            out.push(format!("{key}={value}"));
        }
        rest = rest.get(value_len..)?.trim_start();
    }
    Some(out.join(" "))
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
