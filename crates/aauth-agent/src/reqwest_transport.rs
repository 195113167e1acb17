//! The adapter for reqwest users (feature `reqwest`): a `reqwest::Client` as the agent's
//! [`Transport`]. The client is built here, from the caller's builder, with redirects
//! off: a followed redirect would carry the request's `Signature-Key` (and with it the
//! agent's token) to wherever the redirect points. Each exchange has a total time limit
//! (30 s by default, as `HttpsClient`'s deadline), so that a server that answers its
//! headers and then dribbles its body cannot hold the agent.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{AgentError, Transport, TransportError};

/// The default response cap: 4 MiB.
pub const REQWEST_MAX_BODY: usize = 4 * 1024 * 1024;

/// The default time limit of one exchange, from sending the request to the last byte of
/// the response body: 30 s.
pub const REQWEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A `reqwest::Client` as the agent's transport: no redirects, a response cap, a total
/// time limit per exchange ([`REQWEST_TIMEOUT`] unless [`ReqwestTransport::timeout`]
/// says otherwise; a timeout set on the builder applies as well, the shorter winning).
///
/// TLS is the application's choice, made in its own reqwest dependency (with reqwest's
/// `rustls-no-provider`, pass a configured `rustls::ClientConfig` with
/// `tls_backend_preconfigured`, as the demo world's test does).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use aauth_agent::ReqwestTransport;
/// // TLS, proxies, timeouts: whatever the builder says; redirects are turned off here.
/// let transport = ReqwestTransport::new(reqwest::Client::builder())?;
/// # drop(transport);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
    max_body: usize,
    timeout: Duration,
}

impl ReqwestTransport {
    /// Builds the client from `builder` with redirects disabled.
    ///
    /// # Errors
    ///
    /// [`AgentError::Transport`] when reqwest cannot build the client.
    pub fn new(builder: reqwest::ClientBuilder) -> Result<Self, AgentError> {
        let client = builder
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(TransportError::new)?;
        Ok(Self {
            client,
            max_body: REQWEST_MAX_BODY,
            timeout: REQWEST_TIMEOUT,
        })
    }

    /// The largest response body read, in bytes.
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The time limit of one exchange, from sending the request to the last byte of the
    /// response body (default [`REQWEST_TIMEOUT`]); past it the request fails with a
    /// [`TransportError`].
    #[must_use]
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// One exchange: the request sent, the response read up to the cap.
    async fn exchange(
        &self,
        req: reqwest::Request,
    ) -> Result<http::Response<Bytes>, TransportError> {
        let mut resp = self
            .client
            .execute(req)
            .await
            .map_err(TransportError::new)?;
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return Err(TransportError::new(format!(
                "response body larger than {} bytes",
                self.max_body
            )));
        }
        let mut out = http::Response::new(Bytes::new());
        *out.status_mut() = resp.status();
        *out.version_mut() = resp.version();
        *out.headers_mut() = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(TransportError::new)? {
            if body.len() + chunk.len() > self.max_body {
                return Err(TransportError::new(format!(
                    "response body larger than {} bytes",
                    self.max_body
                )));
            }
            body.extend_from_slice(&chunk);
        }
        *out.body_mut() = Bytes::from(body);
        Ok(out)
    }
}

#[async_trait]
impl Transport for ReqwestTransport {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        let req = reqwest::Request::try_from(req).map_err(TransportError::new)?;
        tokio::time::timeout(self.timeout, self.exchange(req))
            .await
            .map_err(|_| {
                TransportError::new(format!(
                    "no complete response within {} ms",
                    self.timeout.as_millis()
                ))
            })?
    }
}
