//! The fetch boundary: how discovery and the JWKS cache obtain documents. The HTTPS client
//! implements it; tests and embedders supply their own.

use std::time::Duration;

use async_trait::async_trait;

use crate::HttpsUrl;

/// A fetched document: status, the caching headers the cache honours, and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fetched {
    /// The HTTP status.
    pub status: u16,
    /// `Cache-Control`, if present.
    pub cache_control: Option<String>,
    /// `Expires`, if present.
    pub expires: Option<String>,
    /// `Location`, if present (never followed by discovery).
    pub location: Option<String>,
    /// `Retry-After`, if present.
    pub retry_after: Option<String>,
    /// The body, at most the fetcher's size cap.
    pub body: Vec<u8>,
}

impl Fetched {
    /// A `200` response with `body` and no caching headers.
    #[must_use]
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            cache_control: None,
            expires: None,
            location: None,
            retry_after: None,
            body: body.into(),
        }
    }

    /// A response with `status` and an empty body.
    #[must_use]
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Self::ok(Vec::new())
        }
    }

    /// The same response with a `Location` value.
    #[must_use]
    pub fn with_location(mut self, value: &str) -> Self {
        self.location = Some(value.to_owned());
        self
    }

    /// The same response with an `Expires` value.
    #[must_use]
    pub fn with_expires(mut self, value: &str) -> Self {
        self.expires = Some(value.to_owned());
        self
    }

    /// The same response with a `Cache-Control` value.
    #[must_use]
    pub fn with_cache_control(mut self, value: &str) -> Self {
        self.cache_control = Some(value.to_owned());
        self
    }
}

/// Why a fetch failed. Each names the stage, so an operator can tell an egress refusal
/// from an unreachable host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The egress guard refused the destination.
    #[error("egress refused: {0}")]
    Egress(#[from] crate::EgressError),
    /// The total deadline passed.
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    /// The body exceeded the size cap.
    #[error("response body larger than {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// The server answered with a status other than 200.
    #[error("server answered {status}")]
    Status {
        /// The status.
        status: u16,
        /// `Retry-After` in seconds, when the server sent one with 429, 502, 503 or 504
        /// (a retry honours it after 429 and 503).
        retry_after: Option<u64>,
    },
    /// A redirect, which discovery never follows to another host.
    #[error("redirect to {location:?} not followed")]
    Redirect {
        /// The `Location`.
        location: String,
    },
    /// The host's circuit breaker is open after repeated failures.
    #[error("circuit open for {host} after repeated failures")]
    CircuitOpen {
        /// The host.
        host: String,
    },
    /// Connection, TLS or protocol failure.
    #[error("transport: {0}")]
    Transport(String),
}

impl FetchError {
    /// Whether a retry of an idempotent request may succeed: timeouts, transport errors,
    /// and 429/502/503/504.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::Transport(_) => true,
            Self::Status { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }
}

/// Fetches a document by `GET`. Implementations apply the egress guard, a total deadline
/// and a body cap; the cache adds its own deadline around every call as a backstop.
#[async_trait]
pub trait Fetch: Send + Sync + 'static {
    /// `GET url`.
    ///
    /// # Errors
    ///
    /// [`FetchError`].
    async fn get(&self, url: &HttpsUrl) -> Result<Fetched, FetchError>;
}

#[async_trait]
impl<F: Fetch + ?Sized> Fetch for std::sync::Arc<F> {
    async fn get(&self, url: &HttpsUrl) -> Result<Fetched, FetchError> {
        (**self).get(url).await
    }
}
