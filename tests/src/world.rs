//! The demo world: every party is a real HTTPS server on loopback under its spec-valid
//! identifier (`https://agent.example`, `https://ps.example`, …).
//!
//! A certificate authority is generated when the world starts; each server gets a
//! certificate for its name signed by it and listens on `127.0.0.1:0`. Clients reach the
//! servers through [`World::resolver`], which maps exactly the world's names to their
//! sockets, under [`World::egress_policy`], which allow-lists exactly those names (they
//! resolve to loopback, which the default policy refuses). Nothing else is relaxed: the
//! identifiers are real server identifiers (no ports), TLS names are verified against the
//! world's CA, and any other name is refused before a connection is made.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use aauth_metadata::{
    EgressError, EgressPolicy, FetchLimits, GuardedFetch, HttpsTransport, Resolve,
};
use aauth_tokens::ServerId;
use async_trait::async_trait;
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A request as a world server's handler sees it: head and whole body.
pub type Request = http::Request<Vec<u8>>;
/// What a handler answers.
pub type Response = http::Response<Vec<u8>>;

/// A server's request handler.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// An asynchronous request handler (a resource that verifies, a server that fetches).
pub type AsyncHandler =
    Arc<dyn Fn(Request) -> std::pin::Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

/// Why the world could not start a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorldError {
    /// Certificate generation failed.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// TLS configuration failed.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The listener could not be bound.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// The name is already served.
    #[error("{0} is already served in this world")]
    Duplicate(String),
}

type Names = Arc<Mutex<BTreeMap<String, SocketAddr>>>;

/// The world: a CA, the servers, and the name → socket map.
pub struct World {
    ca: CertifiedIssuer<'static, KeyPair>,
    names: Names,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// base64(SHA-256(SubjectPublicKeyInfo)) of each server's key, for a browser.
    spki: Mutex<Vec<String>>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
    }
}

impl World {
    /// A world with a fresh CA and no servers.
    ///
    /// # Errors
    ///
    /// [`WorldError::Certificate`].
    pub fn new() -> Result<Self, WorldError> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "AAuth demo world CA");
        Ok(Self {
            ca: CertifiedIssuer::self_signed(p, KeyPair::generate()?)?,
            names: Arc::default(),
            tasks: Mutex::default(),
            spki: Mutex::default(),
        })
    }

    /// Serves `id` with `handler` over HTTPS on a fresh loopback socket, and returns the
    /// socket. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`WorldError`].
    pub async fn serve(&self, id: &ServerId, handler: Handler) -> Result<SocketAddr, WorldError> {
        let handler: AsyncHandler = Arc::new(move |req| {
            let resp = handler(req);
            Box::pin(async move { resp })
        });
        self.serve_async(id, handler).await
    }

    /// As [`World::serve`], with an asynchronous handler.
    ///
    /// # Errors
    ///
    /// [`WorldError`].
    pub async fn serve_async(
        &self,
        id: &ServerId,
        handler: AsyncHandler,
    ) -> Result<SocketAddr, WorldError> {
        let host = id.host().to_owned();
        if self.lock_names().contains_key(&host) {
            return Err(WorldError::Duplicate(host));
        }
        let key = KeyPair::generate()?;
        let cert = CertificateParams::new(vec![host.clone()])?.signed_by(&key, &self.ca)?;
        self.trust_spki(&key);
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone(), self.ca.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        self.lock_names().insert(host, addr);
        let task = tokio::spawn(accept_loop(listener, acceptor, handler));
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
        Ok(addr)
    }

    fn lock_names(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SocketAddr>> {
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// base64(SHA-256(SubjectPublicKeyInfo)) of every server's key: what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes to trust exactly these servers.
    #[must_use]
    pub fn spki_hashes(&self) -> Vec<String> {
        self.spki
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The world's names, each with its socket.
    #[must_use]
    pub fn names(&self) -> BTreeMap<String, SocketAddr> {
        self.lock_names().clone()
    }

    /// The CA as a trust root store.
    #[must_use]
    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        // Our own freshly generated certificate; `add` only fails on an unparseable one.
        let _ = roots.add(self.ca.der().clone());
        roots
    }

    /// The CA certificate as PEM, for a process outside this one (the `aauth` command's
    /// `--ca-file`).
    #[must_use]
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A TLS certificate for `host` signed by the world's CA, with its key, both PEM (for
    /// a server in another process: `aauth serve`'s `[tls]`). The chain holds the CA.
    ///
    /// # Errors
    ///
    /// [`WorldError::Certificate`].
    pub fn issue_pem(&self, host: &str) -> Result<(String, String), WorldError> {
        let key = KeyPair::generate()?;
        let cert = CertificateParams::new(vec![host.to_owned()])?.signed_by(&key, &self.ca)?;
        self.trust_spki(&key);
        Ok((
            format!("{}{}", cert.pem(), self.ca.pem()),
            key.serialize_pem(),
        ))
    }

    /// Adds `key`'s SubjectPublicKeyInfo hash to those a browser in the world accepts.
    fn trust_spki(&self, key: &KeyPair) {
        self.spki
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(base64::engine::general_purpose::STANDARD.encode(
                <sha2::Sha256 as sha2::Digest>::digest(
                    rcgen::PublicKeyData::subject_public_key_info(key),
                ),
            ));
    }

    /// Sends the world's requests for `host` to `addr` (a server in another process).
    pub fn alias(&self, host: &str, addr: SocketAddr) {
        self.lock_names().insert(host.to_owned(), addr);
    }

    /// Resolves exactly the world's names (including servers started later) to their
    /// sockets; any other name has no address.
    #[must_use]
    pub fn resolver(&self) -> Arc<WorldResolver> {
        Arc::new(WorldResolver(Arc::clone(&self.names)))
    }

    /// The default egress policy with exactly the world's current names allow-listed.
    #[must_use]
    pub fn egress_policy(&self) -> EgressPolicy {
        allowing(self.lock_names().keys())
    }

    /// An HTTPS transport trusting the world's CA only.
    #[must_use]
    pub fn transport(&self) -> Arc<HttpsTransport> {
        Arc::new(HttpsTransport::with_roots(self.roots()))
    }

    /// A guarded fetcher into the world allowing exactly `hosts`, whether or not they
    /// are served yet (names resolve when a fetch happens): for parties created before
    /// the servers they will fetch from.
    #[must_use]
    pub fn fetcher_allowing(&self, hosts: &[&str]) -> GuardedFetch<WorldResolver, HttpsTransport> {
        GuardedFetch::new(
            allowing(hosts),
            self.resolver(),
            self.transport(),
            FetchLimits::default(),
        )
    }

    /// A guarded fetcher into the world, for discovery.
    #[must_use]
    pub fn fetcher(&self) -> GuardedFetch<WorldResolver, HttpsTransport> {
        GuardedFetch::new(
            self.egress_policy(),
            self.resolver(),
            self.transport(),
            FetchLimits::default(),
        )
    }
}

/// The agent's HTTPS client into the world (the `aauth-agent` client over real TLS,
/// resolving world names, egress limited to them), recording each exchange for the
/// transcript.
pub struct Recorder {
    inner: aauth_agent::HttpsClient<WorldResolver>,
    log: Mutex<Vec<(Request, Response)>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// The exchanges since the last call.
    pub fn take(&self) -> Vec<(Request, Response)> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[async_trait]
impl aauth_agent::Transport for Recorder {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, aauth_agent::TransportError> {
        let mut seen = http::Request::new(req.body().to_vec());
        *seen.method_mut() = req.method().clone();
        *seen.uri_mut() = req.uri().clone();
        *seen.headers_mut() = req.headers().clone();
        let resp = self.inner.send(req).await?;
        let mut shown = http::Response::new(resp.body().to_vec());
        *shown.status_mut() = resp.status();
        *shown.headers_mut() = resp.headers().clone();
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((seen, shown));
        Ok(resp)
    }
}

impl World {
    /// The agent's HTTPS client into the world as it is now (create it after the
    /// servers it must reach).
    #[must_use]
    pub fn agent_transport(&self) -> Arc<Recorder> {
        Arc::new(Recorder {
            inner: aauth_agent::HttpsClient::with_resolver(
                self.resolver(),
                HttpsTransport::with_roots(self.roots()),
            )
            .egress(self.egress_policy()),
            log: Mutex::new(Vec::new()),
        })
    }

    /// As [`World::agent_transport`], allowing exactly `hosts` (served yet or not): for a
    /// party created before the servers it will call.
    #[must_use]
    pub fn agent_transport_allowing(&self, hosts: &[&str]) -> Arc<Recorder> {
        Arc::new(Recorder {
            inner: aauth_agent::HttpsClient::with_resolver(
                self.resolver(),
                HttpsTransport::with_roots(self.roots()),
            )
            .egress(allowing(hosts)),
            log: Mutex::new(Vec::new()),
        })
    }

    /// Sends `req` (an absolute `https://` URI naming a world server) over TLS verified
    /// against the world's CA, and returns the whole response. The demos' HTTP client.
    ///
    /// # Errors
    ///
    /// A description of what failed: unknown name, connection, TLS, HTTP.
    pub async fn send(&self, req: Request) -> Result<Response, String> {
        let host = req.uri().host().ok_or("the URI has no host")?.to_owned();
        self.send_inner(&host, req, true).await
    }

    /// Sends `req` to the server named `to`, keeping the request's own `Host` (and target)
    /// as they are: what a relay does with a request it was given (the attacks).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn send_to(&self, to: &str, req: Request) -> Result<Response, String> {
        self.send_inner(to, req, false).await
    }

    async fn send_inner(
        &self,
        host: &str,
        req: Request,
        set_host: bool,
    ) -> Result<Response, String> {
        let host = host.to_owned();
        let addr = *self
            .lock_names()
            .get(&host)
            .ok_or_else(|| format!("{host} is not in the world"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name =
            rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut parts, body) = req.into_parts();
        if set_host {
            parts.headers.insert(
                http::header::HOST,
                http::HeaderValue::from_str(&host).map_err(|e| e.to_string())?,
            );
            parts.uri = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .parse()
                .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        }
        http1_exchange(tls, http::Request::from_parts(parts, body)).await
    }
}

/// Sends `req` as it is over `io` (a connection already open: TCP, or TLS over it) as one
/// HTTP/1.1 exchange, and returns the whole response.
///
/// # Errors
///
/// What failed: the handshake, the request, or reading the response.
pub async fn http1_exchange<T>(io: T, req: Request) -> Result<Response, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let (parts, body) = req.into_parts();
    let resp = sender
        .send_request(http::Request::from_parts(
            parts,
            Full::new(Bytes::from(body)),
        ))
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    driver.abort();
    Ok(http::Response::from_parts(parts, body))
}

/// The default egress policy with exactly `hosts` admitted: the world's names resolve to
/// loopback, which the default policy refuses.
fn allowing<S: AsRef<str>>(hosts: impl IntoIterator<Item = S>) -> EgressPolicy {
    let mut policy = EgressPolicy::new();
    for host in hosts {
        policy.dangerous().allow_host(host.as_ref());
    }
    policy
}

pub(crate) fn not_found() -> Response {
    let mut r = Response::new(Vec::new());
    *r.status_mut() = http::StatusCode::NOT_FOUND;
    r
}

/// A world handler serving an agent provider: its documents and token endpoints.
pub fn provider_handler(
    provider: Arc<aauth_agent::AgentProvider>,
    clock: Arc<dyn aauth_keys::time::Clock>,
) -> AsyncHandler {
    Arc::new(move |req: Request| {
        let (provider, clock) = (Arc::clone(&provider), Arc::clone(&clock));
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            provider
                .handle(&parts, &body, clock.now())
                .await
                .map_or_else(not_found, |r| r.map(|b| b.to_vec()))
        })
    })
}

/// A world handler serving a Person Server: its documents, endpoints and pages.
pub fn ps_handler(
    ps: Arc<aauth_person_server::PersonServer>,
    clock: Arc<dyn aauth_keys::time::Clock>,
) -> AsyncHandler {
    Arc::new(move |req: Request| {
        let (ps, clock) = (Arc::clone(&ps), Arc::clone(&clock));
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            ps.handle(&parts, &body, clock.now())
                .await
                .map_or_else(not_found, |r| r.map(|b| b.to_vec()))
        })
    })
}

/// The guarded fetcher into the world ([`World::fetcher`]).
pub type GuardedWorldFetch = GuardedFetch<WorldResolver, HttpsTransport>;

/// The world's name → socket map as a [`Resolve`].
#[derive(Debug, Clone)]
pub struct WorldResolver(Names);

#[async_trait]
impl Resolve for WorldResolver {
    async fn resolve(&self, host: &str, _port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let names = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(names.get(host).into_iter().copied().collect())
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, handler: AsyncHandler) {
    while let Ok((tcp, peer)) = listener.accept().await {
        let (acceptor, handler) = (acceptor.clone(), Arc::clone(&handler));
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let handler = Arc::clone(&handler);
                    async move {
                        let (mut parts, body) = req.into_parts();
                        // What a deployment's server adapter does: the client's address,
                        // for the roles' per-client throttles.
                        parts
                            .extensions
                            .insert(aauth_metadata::throttle::ClientAddr(peer.ip()));
                        let body = match body.collect().await {
                            Ok(b) => b.to_bytes().to_vec(),
                            Err(_) => Vec::new(),
                        };
                        let resp = handler(http::Request::from_parts(parts, body)).await;
                        let (parts, body) = resp.into_parts();
                        Ok::<_, Infallible>(http::Response::from_parts(
                            parts,
                            Full::new(Bytes::from(body)),
                        ))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

/// Standard base64 with padding (HTTP Basic credentials, `Content-Digest` values).
#[must_use]
pub fn base64_std(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A handler serving fixed JSON documents by path (`404` for others).
#[must_use]
pub fn documents(docs: BTreeMap<String, String>) -> Handler {
    Arc::new(move |req: Request| {
        let mut resp = match docs.get(req.uri().path()) {
            Some(body) => http::Response::new(body.clone().into_bytes()),
            None => http::Response::new(Vec::new()),
        };
        if docs.contains_key(req.uri().path()) {
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
        } else {
            *resp.status_mut() = http::StatusCode::NOT_FOUND;
        }
        resp
    })
}
