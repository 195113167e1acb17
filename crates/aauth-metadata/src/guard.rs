//! [`GuardedFetch`]: the egress guard in front of a transport. Every fetch resolves the
//! host once, admits every address, hands the transport exactly those addresses, bounds
//! the whole exchange by a deadline and the body by a cap, and follows no redirect.

use std::sync::Arc;
use std::time::Duration;

use aauth_keys::time::{Clock, SystemClock};
use async_trait::async_trait;

use crate::egress::{AdmittedDestination, EgressPolicy, Resolve};
use crate::{Fetch, FetchError, Fetched, HttpsUrl};

/// Limits on one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchLimits {
    /// Total deadline: resolution, connection, TLS, headers and body (default 5 s).
    pub deadline: Duration,
    /// Largest body accepted (default 64 KiB).
    pub max_body: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(5),
            max_body: 64 * 1024,
        }
    }
}

/// Performs a `GET` over a connection to one of the admitted addresses, with TLS to
/// `dest.host`. It must stop reading the body past `limits.max_body` and must not follow
/// redirects. The HTTPS client implements it; tests substitute one that records calls.
#[async_trait]
pub trait FetchTransport: Send + Sync + 'static {
    /// `GET url` via `dest`.
    ///
    /// # Errors
    ///
    /// [`FetchError`].
    async fn get(
        &self,
        url: &HttpsUrl,
        dest: &AdmittedDestination,
        limits: &FetchLimits,
    ) -> Result<Fetched, FetchError>;
}

/// The egress guard composed with a resolver and a transport; a [`Fetch`].
#[derive(Debug)]
pub struct GuardedFetch<R, T> {
    policy: EgressPolicy,
    resolver: Arc<R>,
    transport: Arc<T>,
    limits: FetchLimits,
}

impl<R: Resolve, T: FetchTransport> GuardedFetch<R, T> {
    /// A guarded fetcher.
    #[must_use]
    pub fn new(
        policy: EgressPolicy,
        resolver: Arc<R>,
        transport: Arc<T>,
        limits: FetchLimits,
    ) -> Self {
        Self {
            policy,
            resolver,
            transport,
            limits,
        }
    }

    async fn exchange(&self, url: &HttpsUrl) -> Result<Fetched, FetchError> {
        let dest = self.policy.admit(url, self.resolver.as_ref()).await?;
        let resp = self.transport.get(url, &dest, &self.limits).await?;
        if (300..400).contains(&resp.status) {
            let to = resp.location.unwrap_or_default();
            // A same-origin redirect is still not followed: discovery URLs are exact.
            return Err(match self.policy.check_redirect(url, &to) {
                Err(e) => FetchError::Egress(e),
                Ok(_) => FetchError::Redirect { location: to },
            });
        }
        if resp.body.len() > self.limits.max_body {
            return Err(FetchError::TooLarge {
                limit: self.limits.max_body,
            });
        }
        // The answers a retry may get past (and a breaker counts): a busy or throttling
        // host, or a gateway in front of one that is down.
        if matches!(resp.status, 429 | 502 | 503 | 504) {
            // Delta-seconds or an HTTP-date; the wall clock only to read the date.
            let retry_after = resp
                .retry_after
                .as_deref()
                .and_then(|v| crate::freshness::retry_after(v, SystemClock.now()));
            return Err(FetchError::Status {
                status: resp.status,
                retry_after,
            });
        }
        Ok(resp)
    }
}

#[async_trait]
impl<R: Resolve, T: FetchTransport> Fetch for GuardedFetch<R, T> {
    async fn get(&self, url: &HttpsUrl) -> Result<Fetched, FetchError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(FetchError::Transport("no Tokio runtime".to_owned()));
        }
        tokio::time::timeout(self.limits.deadline, self.exchange(url))
            .await
            .unwrap_or(Err(FetchError::Timeout(self.limits.deadline)))
    }
}
