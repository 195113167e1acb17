//! The agent's HTTPS client: hyper over rustls (the metadata crate's transport), behind
//! the egress guard. An agent is told where to go by people and models; by default it
//! reaches public addresses only (a deployment allow-lists its own hosts).

use std::sync::Arc;

use aauth_metadata::{
    EgressPolicy, FetchLimits, HttpsTransport, HttpsUrl, Resolve, SystemResolver,
};
use async_trait::async_trait;
use bytes::Bytes;

use crate::{Transport, TransportError};

/// An HTTPS [`Transport`]: each request resolved with `R`, its addresses checked by the
/// egress policy, sent over TLS to exactly those addresses; no redirects followed; a
/// deadline (30 s) and a response cap (4 MiB) by default. One connection per request.
pub struct HttpsClient<R: Resolve = SystemResolver> {
    resolver: Arc<R>,
    transport: HttpsTransport,
    policy: EgressPolicy,
    limits: FetchLimits,
}

impl<R: Resolve> std::fmt::Debug for HttpsClient<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClient")
            .field("policy", &self.policy)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl HttpsClient<SystemResolver> {
    /// Over `transport` (for example `HttpsTransport::with_webpki_roots()`), resolving
    /// with the operating system.
    #[must_use]
    pub fn new(transport: HttpsTransport) -> Self {
        Self::with_resolver(Arc::new(SystemResolver), transport)
    }
}

impl<R: Resolve> HttpsClient<R> {
    /// Over `transport`, resolving with `resolver`.
    #[must_use]
    pub fn with_resolver(resolver: Arc<R>, transport: HttpsTransport) -> Self {
        let mut limits = FetchLimits::default();
        limits.deadline = std::time::Duration::from_secs(30);
        limits.max_body = 4 * 1024 * 1024;
        Self {
            resolver,
            transport,
            policy: EgressPolicy::new(),
            limits,
        }
    }

    /// The egress policy (default: public addresses only).
    #[must_use]
    pub fn egress(mut self, policy: EgressPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The deadline and response cap.
    #[must_use]
    pub fn limits(mut self, limits: FetchLimits) -> Self {
        self.limits = limits;
        self
    }
}

#[async_trait]
impl<R: Resolve> Transport for HttpsClient<R> {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        let url = HttpsUrl::parse(&req.uri().to_string())
            .map_err(|e| TransportError::new(format!("{}: {e}", req.uri())))?;
        let dest = self
            .policy
            .admit(&url, self.resolver.as_ref())
            .await
            .map_err(TransportError::new)?;
        self.transport
            .request(&dest, url.port(), req, &self.limits)
            .await
            .map_err(TransportError::new)
    }
}
