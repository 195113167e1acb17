//! How the agent's requests reach the network: a trait over any HTTP client, and an
//! adapter for tower services (a hyper client, or anything wrapped as one).

use std::fmt::Display;

use async_trait::async_trait;
use bytes::Bytes;
use tower_service::Service;

use crate::AgentError;

/// Sends one request and returns the whole response. The agent buffers bodies: a
/// request may be re-signed and resent after a challenge.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Sends `req` (an absolute `https://` URI).
    ///
    /// # Errors
    ///
    /// [`AgentError::Transport`].
    async fn send(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>, AgentError>;
}

/// A tower service as a [`Transport`]: each request goes to a clone of the service,
/// after `poll_ready`.
#[derive(Debug, Clone)]
pub struct ServiceTransport<S>(pub S);

#[async_trait]
impl<S> Transport for ServiceTransport<S>
where
    S: Service<http::Request<Bytes>, Response = http::Response<Bytes>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
    S::Error: Display,
{
    async fn send(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>, AgentError> {
        let mut svc = self.0.clone();
        std::future::poll_fn(|cx| svc.poll_ready(cx))
            .await
            .map_err(AgentError::transport)?;
        svc.call(req).await.map_err(AgentError::transport)
    }
}
