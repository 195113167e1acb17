//! The HTTPS transport: hyper (HTTP/1.1) over rustls (aws-lc-rs), connecting only to the
//! addresses the egress guard admitted, with connect and per-read timeouts, a streaming
//! body cap, and no redirects. One connection per fetch: discovery fetches a source at
//! most once a minute, so pooling would only hold sockets open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::BodyExt;
use hyper::body::Bytes;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::egress::{AdmittedDestination, EgressError, Resolve};
use crate::guard::{FetchLimits, FetchTransport};
use crate::{FetchError, Fetched, HttpsUrl};

/// The `User-Agent` sent on every fetch.
pub const USER_AGENT: &str = concat!("aauth-rs/", env!("CARGO_PKG_VERSION"));

/// Resolves with the operating system (through Tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let addrs =
            tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| EgressError::Resolve {
                    host: host.to_owned(),
                    reason: e.to_string(),
                })?;
        let mut out: Vec<SocketAddr> = Vec::new();
        for a in addrs {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        Ok(out)
    }
}

/// HTTPS over rustls with the given trust roots.
///
/// ```
/// let t = aauth_metadata::HttpsTransport::with_webpki_roots();
/// # drop(t);
/// ```
#[derive(Clone)]
pub struct HttpsTransport {
    tls: TlsConnector,
    connect_timeout: Duration,
}

impl std::fmt::Debug for HttpsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsTransport")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl HttpsTransport {
    /// Trusts the Mozilla root program (`webpki-roots`).
    #[must_use]
    pub fn with_webpki_roots() -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::with_roots(roots)
    }

    /// Trusts exactly `roots` (a deployment's private CA, the demo world's CA).
    #[must_use]
    pub fn with_roots(roots: rustls::RootCertStore) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_or_else(
                // The aws-lc-rs provider supports the default versions; keep a config that
                // can only fail to connect rather than panic if that ever changes.
                |_| {
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                },
                |b| b.with_root_certificates(roots),
            )
            .with_no_client_auth();
        Self::with_config(config)
    }

    /// Uses a complete rustls configuration. ALPN is set to HTTP/1.1.
    #[must_use]
    pub fn with_config(mut config: rustls::ClientConfig) -> Self {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            tls: TlsConnector::from(Arc::new(config)),
            connect_timeout: Duration::from_secs(3),
        }
    }

    /// The timeout for each TCP connect plus TLS handshake (default 3 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    async fn connect(
        &self,
        dest: &AdmittedDestination,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, FetchError> {
        let name = ServerName::try_from(dest.host.clone())
            .map_err(|e| FetchError::Transport(format!("server name {}: {e}", dest.host)))?;
        let mut last = FetchError::Transport(format!("{} has no admitted address", dest.host));
        for addr in &dest.addrs {
            match tokio::time::timeout(self.connect_timeout, self.connect_one(*addr, name.clone()))
                .await
            {
                Ok(Ok(tls)) => return Ok(tls),
                Ok(Err(e)) => last = e,
                Err(_) => last = FetchError::Timeout(self.connect_timeout),
            }
        }
        Err(last)
    }

    async fn connect_one(
        &self,
        addr: SocketAddr,
        name: ServerName<'static>,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, FetchError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| FetchError::Transport(format!("connect {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        self.tls
            .connect(name, tcp)
            .await
            .map_err(|e| FetchError::Transport(format!("TLS with {addr}: {e}")))
    }
}

impl HttpsTransport {
    /// Sends `req` (its URI in origin form or absolute; `Host` is set from `dest`) to the
    /// admitted addresses of `dest` and reads the whole response, within
    /// `limits.deadline` and `limits.max_body` (checked as the body streams). No
    /// redirect is followed. The agent's HTTPS client uses this.
    ///
    /// # Errors
    ///
    /// [`FetchError::Transport`], [`FetchError::Timeout`], [`FetchError::TooLarge`].
    pub async fn request(
        &self,
        dest: &AdmittedDestination,
        port: u16,
        req: http::Request<Bytes>,
        limits: &FetchLimits,
    ) -> Result<http::Response<Bytes>, FetchError> {
        tokio::time::timeout(
            limits.deadline,
            self.exchange(dest, port, req, limits.max_body),
        )
        .await
        .map_err(|_| FetchError::Timeout(limits.deadline))?
    }

    /// One exchange, in a span of its own (feature `ops`): its method, host, path and
    /// status (never a query, a header or a body); a trace exporter shows it inside the
    /// request that caused it when it runs in that request's task.
    async fn exchange(
        &self,
        dest: &AdmittedDestination,
        port: u16,
        req: http::Request<Bytes>,
        max_body: usize,
    ) -> Result<http::Response<Bytes>, FetchError> {
        #[cfg(feature = "ops")]
        {
            use tracing::Instrument as _;
            let span = tracing::info_span!(
                "outgoing request",
                method = %req.method(),
                host = %dest.host,
                path = req.uri().path(),
                status = tracing::field::Empty,
            );
            let result = self
                .exchange_once(dest, port, req, max_body)
                .instrument(span.clone())
                .await;
            if let Ok(r) = &result {
                span.record("status", r.status().as_u16());
            }
            result
        }
        #[cfg(not(feature = "ops"))]
        self.exchange_once(dest, port, req, max_body).await
    }

    async fn exchange_once(
        &self,
        dest: &AdmittedDestination,
        port: u16,
        req: http::Request<Bytes>,
        max_body: usize,
    ) -> Result<http::Response<Bytes>, FetchError> {
        let tls = self.connect(dest).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| FetchError::Transport(format!("HTTP handshake: {e}")))?;
        // The connection task ends when the exchange does (or when the caller's deadline
        // drops this future, which drops the sender and so the connection).
        let driver = tokio::spawn(conn);
        let authority = match port {
            443 => dest.host.clone(),
            p => format!("{}:{p}", dest.host),
        };
        let (mut parts, body) = req.into_parts();
        parts.uri = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e: http::uri::InvalidUri| FetchError::Transport(format!("request: {e}")))?;
        parts.headers.insert(
            http::header::HOST,
            http::HeaderValue::from_str(&authority)
                .map_err(|e| FetchError::Transport(format!("request: {e}")))?,
        );
        if !parts.headers.contains_key(http::header::USER_AGENT) {
            parts.headers.insert(
                http::header::USER_AGENT,
                http::HeaderValue::from_static(USER_AGENT),
            );
        }
        let req = http::Request::from_parts(parts, http_body_util::Full::new(body));
        let result = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| FetchError::Transport(format!("request: {e}")))?;
            let declared = resp
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > max_body as u64) {
                return Err(FetchError::TooLarge { limit: max_body });
            }
            let (parts, mut body) = resp.into_parts();
            let mut out = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| FetchError::Transport(format!("body: {e}")))?;
                if let Ok(data) = frame.into_data() {
                    if out.len() + data.len() > max_body {
                        return Err(FetchError::TooLarge { limit: max_body });
                    }
                    out.extend_from_slice(&data);
                }
            }
            Ok(http::Response::from_parts(parts, Bytes::from(out)))
        }
        .await;
        driver.abort();
        result
    }
}

fn header(resp: &http::Response<Bytes>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[async_trait]
impl FetchTransport for HttpsTransport {
    async fn get(
        &self,
        url: &HttpsUrl,
        dest: &AdmittedDestination,
        limits: &FetchLimits,
    ) -> Result<Fetched, FetchError> {
        let req = http::Request::get(url.path_and_query())
            .header(http::header::ACCEPT, "application/json")
            .body(Bytes::new())
            .map_err(|e| FetchError::Transport(format!("request: {e}")))?;
        // The caller (the guard) holds the deadline.
        let resp = self
            .exchange(dest, url.port(), req, limits.max_body)
            .await?;
        let mut fetched = Fetched::status(resp.status().as_u16());
        fetched.cache_control = header(&resp, "cache-control");
        fetched.expires = header(&resp, "expires");
        fetched.location = header(&resp, "location");
        fetched.retry_after = header(&resp, "retry-after");
        fetched.body = resp.into_body().to_vec();
        Ok(fetched)
    }
}

/// The fetcher a verifier normally wants: the egress guard (default limits, the system
/// resolver) in front of `transport`, wrapped in retries and a per-host circuit breaker
/// with their defaults, except that a `Retry-After` over 3 s is not waited for: a key
/// lookup holds a request, and the key cache's own deadline (10 s) and refetch floor pace
/// a throttling host better than a long sleep.
///
/// ```
/// # use std::sync::Arc;
/// use aauth_keys::time::SystemClock;
/// use aauth_metadata::{CacheConfig, EgressPolicy, HttpsTransport, KeyCache, https_fetcher};
/// let fetch = https_fetcher(EgressPolicy::new(), HttpsTransport::with_webpki_roots(), Arc::new(SystemClock));
/// let keys = KeyCache::new(Arc::new(fetch), Arc::new(SystemClock), CacheConfig::default());
/// # drop(keys);
/// ```
#[must_use]
pub fn https_fetcher(
    policy: crate::EgressPolicy,
    transport: HttpsTransport,
    clock: Arc<dyn aauth_keys::time::Clock>,
) -> crate::ResilientFetch<crate::GuardedFetch<SystemResolver, HttpsTransport>> {
    crate::ResilientFetch::new(
        crate::GuardedFetch::new(
            policy,
            Arc::new(SystemResolver),
            Arc::new(transport),
            FetchLimits::default(),
        ),
        retry_within_a_lookup(),
        crate::BreakerConfig::default(),
        clock,
    )
}

/// [`crate::RetryPolicy`]'s defaults, with `Retry-After` honoured up to 3 s.
fn retry_within_a_lookup() -> crate::RetryPolicy {
    crate::RetryPolicy {
        max_retry_after: Duration::from_secs(3),
        ..Default::default()
    }
}
