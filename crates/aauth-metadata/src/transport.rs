//! How a role's own requests reach the network: one trait over any HTTP client, used by
//! the agent (its requests, its token refreshes), the Person Server (federation with
//! Access Servers, revocation notices) and the Access Server (revocation notices).
//! Discovery fetches go through the egress guard instead ([`GuardedFetch`](crate::GuardedFetch)
//! over a [`FetchTransport`](crate::FetchTransport)).

use async_trait::async_trait;
use bytes::Bytes;

/// The request could not be sent or its response read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transport: {reason}")]
pub struct TransportError {
    /// What failed.
    pub reason: String,
}

impl TransportError {
    /// A failure described by `e`.
    pub fn new(e: impl std::fmt::Display) -> Self {
        Self {
            reason: e.to_string(),
        }
    }
}

/// Sends one request and returns the whole response. Bodies are buffered: a request may
/// be re-signed and resent after a challenge.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Sends `req` (an absolute `https://` URI).
    ///
    /// # Errors
    ///
    /// [`TransportError`].
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError>;
}

/// A tower service as a [`Transport`]: each request goes to a clone of the service,
/// after `poll_ready`.
#[cfg(feature = "runtime")]
#[derive(Debug, Clone)]
pub struct ServiceTransport<S>(pub S);

#[cfg(feature = "runtime")]
#[async_trait]
impl<S> Transport for ServiceTransport<S>
where
    S: tower_service::Service<http::Request<Bytes>, Response = http::Response<Bytes>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
    S::Error: std::fmt::Display,
{
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        let mut svc = self.0.clone();
        std::future::poll_fn(|cx| svc.poll_ready(cx))
            .await
            .map_err(TransportError::new)?;
        svc.call(req).await.map_err(TransportError::new)
    }
}
