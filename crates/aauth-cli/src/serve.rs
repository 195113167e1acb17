//! `aauth serve ROLE --config FILE`: a role as a service. HTTPS (rustls) or plain HTTP
//! behind a TLS proxy, HTTP/1.1 and HTTP/2, `/healthz` and `/readyz`, a request id and one
//! log line per request, and a graceful shutdown on SIGTERM or SIGINT: stop accepting,
//! finish in-flight requests, exit within the configured deadline.
//!
//! The servers (agent provider, Person Server, Access Server) are sans-IO `Endpoint`s
//! served through `EndpointService`; the resource proxy is a tower service of its own
//! (`crate::proxy`). Both are an [`App`], so they share the listener, TLS, the log layer
//! and the shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use aauth_agent::AgentProvider;
use aauth_keys::Signer;
use aauth_keys::time::{Clock, SystemClock};
use aauth_metadata::budget::BodyBudget;
use aauth_metadata::ops::{ReadyCheck, RequestLogLayer, WithHealth};
use aauth_metadata::rate::RateLimits;
use aauth_metadata::serve::{Endpoint, EndpointService};
use aauth_metadata::throttle::ClientAddr;
use aauth_metadata::{CacheConfig, KeyCache};
use aauth_tokens::AgentId;
use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tower_layer::Layer;
use tower_service::Service;

use crate::cli::Role;
use crate::config::{self, Config, Consent, LogFormat};
use crate::error::CliError;
use crate::forwarded::TrustedProxies;
use crate::idle::Streams;
use crate::net::server_id;
use crate::proxy::ProxyBody;
use crate::share::Shares;

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::PersonServer => "person-server",
            Self::AccessServer => "access-server",
            Self::AgentProvider => "agent-provider",
            Self::ResourceProxy => "resource-proxy",
        }
    }
}

/// `aauth serve`.
pub(crate) fn serve(role: Role, config_path: &Path) -> Result<(), CliError> {
    let config = config::load(config_path, config::environment()?)?;
    crate::otel::check(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Operational(format!("starting the runtime: {e}")))?;
    let traces = init_logging(&config, role, runtime.handle())?;
    runtime.block_on(run(role, config, traces))
}

/// `aauth config check`: the effective configuration, secrets redacted, after checking
/// that every file it names can be read.
pub(crate) fn check(config_path: &Path, out: &mut dyn std::io::Write) -> Result<(), CliError> {
    let config = config::load(config_path, config::environment()?)?;
    crate::keys::service_key(&config)?;
    crate::keyring::retiring(&config)?;
    TrustedProxies::parse(&config.trusted_proxies)?;
    Connections::of(&config)?;
    if let Some(tls) = &config.tls {
        tls_config(tls)?;
    }
    if config.resource_proxy.is_some() {
        crate::proxy::check(&config)?;
    }
    crate::roles::check_person_server(&config)?;
    crate::roles::check_store(&config)?;
    crate::limits::check(&config)?;
    crate::otel::check(&config)?;
    let shown = config::redacted(&config)?;
    write!(out, "{shown}").map_err(CliError::file(Path::new("<stdout>")))
}

/// Logs to standard error as `[log]` says and, in a build with `otel`, request spans to
/// the collector `[otel]` names (reached through `runtime`): what those leave to send at
/// exit is returned.
fn init_logging(
    c: &Config,
    role: Role,
    runtime: &tokio::runtime::Handle,
) -> Result<crate::otel::Pending, CliError> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| c.log.level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| CliError::Usage {
        flag: "log.level",
        reason: format!("{filter:?}: {e}"),
    })?;
    let log = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let log = match c.log.format {
        // The request span's fields are on every line; its list would repeat them.
        LogFormat::Json => log.json().flatten_event(true).with_span_list(false).boxed(),
        LogFormat::Pretty => log.boxed(),
    };
    // The level filters the log alone: traces keep their requests when logs are quiet.
    let subscriber = tracing_subscriber::registry().with(log.with_filter(filter));
    #[cfg(feature = "otel")]
    let (subscriber, pending) = {
        let (traces, pending) = crate::otel::layer(c, role, runtime)?;
        (subscriber.with(traces), pending)
    };
    #[cfg(not(feature = "otel"))]
    let pending = {
        let _ = (role, runtime);
        crate::otel::Pending::default()
    };
    subscriber
        .try_init()
        .map_err(|e| CliError::Operational(format!("logging: {e}")))?;
    Ok(pending)
}

/// The key cache a role discovers issuers' keys with (its counters are exported).
type Keys =
    KeyCache<aauth_metadata::GuardedFetch<crate::net::Overrides, aauth_metadata::HttpsTransport>>;

/// The role `role` as `c` configures it, with its readiness checks.
async fn build(
    role: Role,
    c: &Config,
    reach: &crate::net::Reach,
    keys: &Arc<Keys>,
    limits: &crate::limits::Limits,
) -> Result<App, CliError> {
    let (key, kid) = crate::keys::service_key(c)?;
    let signer: Arc<dyn Signer> = Arc::new(key);
    let id = server_id("id", &c.id)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let keys: Arc<dyn aauth_tokens::IssuerKeyResolver> = Arc::clone(keys) as _;
    let endpoint = match role {
        Role::ResourceProxy => {
            let proxy = crate::proxy::build(c, id, signer, &kid, keys, reach, limits).await?;
            return Ok(App::Proxy(proxy));
        }
        Role::AgentProvider => {
            let provider = AgentProvider::new(id.clone(), signer, &kid)
                .map_err(operational)?
                .retiring_keys(&crate::keyring::retiring(c)?);
            let (provider, redis) = match provider_replay(c, &id).await? {
                Some((replay, redis)) => (provider.replay_store(replay), Some(redis)),
                None => (provider, None),
            };
            for a in c.agent_provider.iter().flat_map(|s| &s.agents) {
                let agent = AgentId::parse(&a.agent).map_err(|e| config_error(c, "agent", e))?;
                let key = crate::keys::read_public(&a.public_key_file)?;
                let ps = a
                    .person_server
                    .as_deref()
                    .map(|p| server_id("agent_provider.agents.person_server", p))
                    .transpose()?;
                provider
                    .enroll(&agent, &key, ps.as_ref())
                    .map_err(|e| config_error(c, "agent_provider.agents.agent", e))?;
            }
            let health = WithHealth::new(Arc::new(provider) as Arc<dyn Endpoint>);
            match redis {
                Some(r) => health.check("store", redis_ready(r)),
                None => health,
            }
        }
        Role::PersonServer => {
            crate::roles::person_server(c, id, signer, &kid, keys, reach, limits).await?
        }
        Role::AccessServer => {
            crate::roles::access_server(c, id, signer, &kid, keys, reach, limits).await?
        }
    };
    let endpoint = match &limits.redis {
        Some(r) => endpoint.check("rate_limit", redis_ready(r.clone())),
        None => endpoint,
    };
    let endpoint = Arc::new(endpoint);
    Ok(App::Role {
        service: EndpointService::new(Arc::clone(&endpoint), Arc::clone(&clock))
            .body_budget(BodyBudget::new(c.max_buffered_body_bytes)),
        endpoint,
    })
}

pub(crate) fn config_error(
    c: &Config,
    key: &str,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> CliError {
    // The whole cause chain: a store's "backend failed" says nothing without its cause.
    let e = e.into();
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    CliError::Operational(format!("{} ({key}): {text}", c.id))
}

fn operational(e: impl std::fmt::Display) -> CliError {
    CliError::Operational(e.to_string())
}

/// A readiness check from a closure.
pub(crate) struct Check<F>(pub(crate) F);

#[async_trait::async_trait]
impl<F, Fut> ReadyCheck for Check<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), String>> + Send,
{
    async fn check(&self) -> Result<(), String> {
        (self.0)().await
    }
}

/// A readiness check that `redis` answers a `PING`.
pub(crate) fn redis_ready(redis: aauth_metadata::store::redis::Redis) -> Arc<dyn ReadyCheck> {
    Arc::new(Check(move || {
        let redis = redis.clone();
        async move {
            redis
                .ping("redis")
                .await
                .map_err(|e| aauth_metadata::store::redis::describe(&e))
        }
    }))
}

/// What `aauth serve` serves: a server role through `EndpointService`, or the resource
/// proxy, which is a tower service of its own.
#[derive(Clone)]
enum App {
    Role {
        service: EndpointService<WithHealth<dyn Endpoint>>,
        endpoint: Arc<WithHealth<dyn Endpoint>>,
    },
    Proxy(crate::proxy::Proxy),
}

impl App {
    /// Answers held long polls at once and holds no new ones (a server role's; the proxy
    /// holds no poll open).
    fn stop_holding(&self) {
        if let Self::Role { endpoint, .. } = self {
            endpoint.stop_holding();
        }
    }
}

type AppFuture = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

impl Service<Request<crate::deadline::InBody>> for App {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = AppFuture;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        match self {
            Self::Role { service, .. } => {
                Service::<Request<crate::deadline::InBody>>::poll_ready(service, cx)
            }
            Self::Proxy(p) => p.poll_ready(cx),
        }
    }

    fn call(&mut self, req: Request<crate::deadline::InBody>) -> AppFuture {
        match self {
            Self::Role { service, .. } => {
                let answer = service.call(req);
                Box::pin(async move { Ok(answer.await?.map(ProxyBody::stream)) })
            }
            Self::Proxy(p) => p.call(req),
        }
    }
}

async fn run(role: Role, c: Config, traces: crate::otel::Pending) -> Result<(), CliError> {
    // What the configuration weakens on purpose, said before anything is reached.
    for said in config::warnings(&c) {
        tracing::warn!("{said}");
    }
    let reach = crate::net::Reach::from_egress(&c.egress.ca_files, &c.egress.connect_to)?;
    let keys = Arc::new(KeyCache::new(
        Arc::new(reach.fetcher()),
        Arc::new(SystemClock) as Arc<dyn Clock>,
        CacheConfig::default(),
    ));
    let limits_of_connections = Connections::of(&c)?;
    if let Some(m) = &c.metrics {
        let header_timeout = limits_of_connections.idle;
        crate::metrics::serve(m.listen, header_timeout, Arc::clone(&keys) as _).await?;
    }
    let limits = crate::limits::limits(&c, role).await?;
    let trusted = Arc::new(TrustedProxies::parse(&c.trusted_proxies)?);
    let app = build(role, &c, &reach, &keys, &limits).await?;
    let service = RequestLogLayer::new(role.name()).layer(app.clone());
    let tls = c.tls.as_ref().map(tls_config).transpose()?;
    let listener = tokio::net::TcpListener::bind(c.listen)
        .await
        .map_err(|e| CliError::Operational(format!("listening on {}: {e}", c.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::Operational(e.to_string()))?;
    tracing::info!(
        role = role.name(),
        id = %c.id,
        listen = %local,
        tls = tls.is_some(),
        "serving"
    );
    let (stop, stopping) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        // Finished connections are reaped as new ones come.
        while connections.try_join_next().is_some() {}
        let Some((stream, peer, slot)) =
            limits_of_connections.accept(&listener, &mut shutdown).await
        else {
            break;
        };
        // Responses go out as written: with Nagle's algorithm on, the second of two
        // responses in flight (pipelined HTTP/1.1, concurrent HTTP/2 streams) waited for
        // the client's delayed ACK, about 40 ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let service = AppService {
            inner: service.clone(),
            slot: slot.clone(),
            limits: limits.rules.clone(),
            trusted: Arc::clone(&trusted),
            tls: tls.is_some(),
            peer: crate::forwarded::Peer(peer.ip()),
            body_timeout: limits_of_connections.body,
            streams: None,
        };
        let stopping = stopping.clone();
        let idle = limits_of_connections.idle;
        match &tls {
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve_tls(tls, service, idle, stopping, peer).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
            None => {
                connections.spawn(async move {
                    let _slot = slot;
                    let conn = http1(stream, service, idle);
                    drive(conn, stopping, peer, std::future::pending()).await;
                });
            }
        }
    }
    let stopping_at = tokio::time::Instant::now();
    drop(listener);
    let deadline = Duration::from_secs(c.shutdown_deadline_secs);
    tracing::info!(
        deadline_secs = deadline.as_secs(),
        in_flight = connections.len(),
        "shutting down: finishing in-flight requests"
    );
    // Held long polls are answered now (their pending URL and Retry-After), then every
    // connection finishes the request it is serving and closes.
    app.stop_holding();
    let _ = stop.send(true);
    let drained = tokio::time::timeout(deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("stopped"),
        Err(_) => {
            tracing::warn!(
                still_open = connections.len(),
                "stopped at the deadline with requests still in flight"
            );
            connections.abort_all();
        }
    }
    // The requests' spans, the last ones included, go out before the process ends: in
    // what is left of the deadline, and a moment at least.
    let left = deadline.saturating_sub(stopping_at.elapsed());
    traces.flush(left.max(FLUSH_AT_LEAST)).await;
    Ok(())
}

/// The least time given to sending the last spans at shutdown.
const FLUSH_AT_LEAST: Duration = Duration::from_secs(1);

/// The longest a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// How long the accept loop waits after a failed `accept` (out of file descriptors, say)
/// before trying again, rather than spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What `max_connections`, `max_connections_per_client`, `header_timeout_secs` and
/// `body_timeout_secs` allow.
struct Connections {
    /// One per connection served.
    permits: Arc<tokio::sync::Semaphore>,
    /// Each client's share of them.
    shares: Arc<Shares>,
    /// `header_timeout_secs`.
    idle: Duration,
    /// `body_timeout_secs`.
    body: Duration,
}

impl Connections {
    fn of(c: &Config) -> Result<Self, CliError> {
        if c.max_connections == 0 {
            return Err(CliError::Usage {
                flag: "max_connections",
                reason: "0: at least one connection must be served".to_owned(),
            });
        }
        if c.header_timeout_secs == 0 {
            return Err(CliError::Usage {
                flag: "header_timeout_secs",
                reason: "0: at least 1 second".to_owned(),
            });
        }
        if c.body_timeout_secs == 0 {
            return Err(CliError::Usage {
                flag: "body_timeout_secs",
                reason: "0: at least 1 second".to_owned(),
            });
        }
        Ok(Self {
            permits: Arc::new(tokio::sync::Semaphore::new(
                c.max_connections.min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            shares: Arc::new(Shares::of(c)?),
            idle: Duration::from_secs(c.header_timeout_secs),
            body: Duration::from_secs(c.body_timeout_secs),
        })
    }

    /// The next connection, once one of `max_connections` is free, with its slot; a
    /// connection past its client's share is closed at once, and the next one waited for.
    /// `None` once `shutdown` is done.
    async fn accept(
        &self,
        listener: &tokio::net::TcpListener,
        shutdown: &mut Pin<&mut impl Future<Output = ()>>,
    ) -> Option<(tokio::net::TcpStream, SocketAddr, ConnectionSlot)> {
        let permit = tokio::select! {
            p = Arc::clone(&self.permits).acquire_owned() => p.ok()?,
            () = shutdown.as_mut() => return None,
        };
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match self.shares.take(peer.ip()) {
                        Ok(share) => {
                            let slot = ConnectionSlot(Arc::new(Held { share, permit }));
                            return Some((stream, peer, slot));
                        }
                        Err(client) => {
                            tracing::debug!(%peer, %client, "closed: past the client's share of connections");
                            metrics::counter!(
                                crate::metrics::CONNECTIONS_REFUSED,
                                "reason" => "client_share"
                            )
                            .increment(1);
                            drop(stream);
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                () = shutdown.as_mut() => return None,
            }
        }
    }
}

/// An agent provider keeps one thing its instances must share: the replay cache of the
/// signed token requests (a replay at another instance would mint again). In memory, or
/// in the Redis `store` names.
async fn provider_replay(
    c: &Config,
    id: &aauth_tokens::ServerId,
) -> Result<
    Option<(
        Arc<dyn aauth_signing::ReplayStore>,
        aauth_metadata::store::redis::Redis,
    )>,
    CliError,
> {
    let store = c.store.as_str();
    if store == "memory" {
        return Ok(None);
    }
    if !(store.starts_with("redis://") || store.starts_with("rediss://")) {
        return Err(CliError::Usage {
            flag: "store",
            reason: format!(
                "{}: an agent provider keeps only its replay cache, in \"memory\" (one \
                 instance) or in Redis (\"redis://…\" or \"rediss://…\")",
                config::redact_url(store)
            ),
        });
    }
    let config = aauth_metadata::store::redis::RedisConfig::new(store)
        .prefix(format!("aauth:{}:", id.as_str()));
    let redis = aauth_metadata::store::redis::Redis::connect(&config)
        .await
        .map_err(|e| config_error(c, "store", e))?;
    Ok(Some((
        Arc::new(aauth_resource::RedisReplayStore::new(redis.clone())),
        redis,
    )))
}

/// One of `max_connections`, and of its client's share, held by a connection and by
/// whatever it became (an upgraded connection's tunnel, through its requests'
/// extensions).
#[derive(Clone)]
pub(crate) struct ConnectionSlot(#[allow(dead_code, reason = "held, never read")] Arc<Held>);

/// What a [`ConnectionSlot`] holds. The share is given back first (fields drop in
/// order): the accept loop, woken by the permit, then finds the client's count down.
struct Held {
    /// The client's share (none for a trusted proxy).
    #[allow(dead_code, reason = "held, never read")]
    share: Option<crate::share::Share>,
    /// One of `max_connections`.
    #[allow(dead_code, reason = "held, never read")]
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// The service every connection gets: the logged app, told where the connection came
/// from.
#[derive(Clone)]
struct AppService {
    inner: aauth_metadata::ops::RequestLog<App>,
    /// The connection's slot, given to each of its requests.
    slot: ConnectionSlot,
    /// The configured rate limits, checked before the role sees a request.
    limits: Option<Arc<RateLimits>>,
    /// `trusted_proxies`: whose `X-Forwarded-For` names the client counted by the rate
    /// limits and throttles ([`crate::forwarded::client_addr`]).
    trusted: Arc<TrustedProxies>,
    /// Whether this process terminates TLS (then an untrusted peer is the client).
    tls: bool,
    /// The connection's other end, whatever it is: what the resource proxy tells its
    /// upstream in `X-Forwarded-For`.
    peer: crate::forwarded::Peer,
    /// `body_timeout_secs`: each request's body must arrive within it of its head.
    body_timeout: Duration,
    /// An HTTP/2 connection's open requests, each counted until its response body ends
    /// (the connection is closed once none has been open for `header_timeout_secs`).
    streams: Option<Streams>,
}

impl Service<Request<hyper::body::Incoming>> for AppService {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = AppFuture;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<hyper::body::Incoming>) -> Self::Future {
        let Some(streams) = &self.streams else {
            return self.route(req);
        };
        let open = streams.open();
        let answer = self.route(req);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| body.holding(open)))
        })
    }
}

impl AppService {
    /// The request to the role, past the rate limits.
    fn route(&mut self, req: Request<hyper::body::Incoming>) -> AppFuture {
        let timeout = self.body_timeout;
        let mut req = req.map(|b| crate::deadline::InBody::new(b, timeout));
        let client =
            crate::forwarded::client_addr(self.peer.0, req.headers(), &self.trusted, self.tls);
        if let Some(client) = client {
            req.extensions_mut().insert(ClientAddr(client));
        }
        req.extensions_mut().insert(self.peer);
        req.extensions_mut().insert(self.slot.clone());
        // The health endpoints answer whatever the limits say: a flood of one path, or
        // the limiter's Redis down, must not have an orchestrator restart a healthy
        // instance (`/readyz` checks the role's own dependencies).
        let health = matches!(req.uri().path(), "/healthz" | "/readyz");
        let Some(limits) = self.limits.clone().filter(|_| !health) else {
            return Box::pin(self.inner.call(req));
        };
        // The service is ready now; a clone waits for its own turn after the check.
        let mut inner = self.inner.clone();
        std::mem::swap(&mut inner, &mut self.inner);
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            if let Err(refused) = limits.check(&parts).await {
                tracing::info!(refused = %refused, path = parts.uri.path(), "rate limited");
                return Ok(aauth_metadata::rate::limited_response(&refused).map(ProxyBody::from));
            }
            inner.call(Request::from_parts(parts, body)).await
        })
    }
}

/// A served connection: a future that ends with the connection, and can be asked to
/// finish its request in flight and close.
trait Conn: Future<Output = Result<(), hyper::Error>> + Send {
    fn shut(self: Pin<&mut Self>);
}

impl<I> Conn
    for hyper::server::conn::http1::UpgradeableConnection<
        TokioIo<I>,
        TowerToHyperService<AppService>,
    >
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fn shut(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I> Conn
    for hyper::server::conn::http2::Connection<
        TokioIo<I>,
        TowerToHyperService<AppService>,
        TokioExecutor,
    >
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fn shut(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Serves a TLS connection over the protocol its handshake chose: HTTP/2 (closed once
/// idle: [`Streams::idle`]) or HTTP/1.1.
async fn serve_tls(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    service: AppService,
    idle: Duration,
    stopping: watch::Receiver<bool>,
    peer: SocketAddr,
) {
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        let streams = Streams::new();
        let service = AppService {
            streams: Some(streams.clone()),
            ..service
        };
        let closing = async move { streams.idle(idle).await };
        drive(http2(tls, service, idle), stopping, peer, closing).await;
    } else {
        let conn = http1(tls, service, idle);
        drive(conn, stopping, peer, std::future::pending()).await;
    }
}

/// The largest HTTP/1.1 request head (`431` past it), and the most of a connection's
/// input read ahead (hyper's default is about 408 KiB, which also bounded the head). Four times the
/// 16 KiB of headers HTTP/2 admits (hyper's `max_header_list_size`), and room for every
/// AAuth field at its own cap (`Signature-Key`, `Signature`, `Signature-Input`, 8 KiB
/// each; a token at most 8 KiB) with the request's other headers.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The requests an HTTP/2 connection may have open at once (hyper's default is 200): each
/// may hold a body being read (a server role's up to 64 KiB, a resource's up to
/// `max_body_bytes`), so this, with `max_connections` and the roles' and the proxy's body
/// budgets, bounds what one connection can make the service hold. A client past it waits
/// for one of its streams to end.
const MAX_STREAMS_PER_CONNECTION: u32 = 32;

/// An HTTP/1.1 connection (type-erased here, outside any `async` block, so that the task
/// that drives it is plainly `Send`).
fn http1<I>(io: I, service: AppService, idle: Duration) -> Pin<Box<dyn Conn>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(idle)
            .max_header_size(MAX_HEAD_BYTES)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
            .with_upgrades(),
    )
}

/// An HTTP/2 connection (TLS with ALPN `h2`), as [`http1`]; extended `CONNECT` (RFC
/// 8441) allowed, for the resource proxy's WebSockets (every other role refuses the
/// method).
fn http2<I>(io: I, service: AppService, idle: Duration) -> Pin<Box<dyn Conn>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(idle)
            .keep_alive_timeout(idle)
            .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
            .enable_connect_protocol()
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(service)),
    )
}

/// Drives `conn` until it ends; when `stop` changes, or `idle` ends (an HTTP/2
/// connection with nothing open: [`Streams::idle`]), it finishes the requests in flight
/// and closes.
async fn drive(
    mut conn: Pin<Box<dyn Conn>>,
    mut stop: watch::Receiver<bool>,
    peer: SocketAddr,
    idle: impl Future<Output = ()>,
) {
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().shut();
            conn.await
        }
        () = idle => {
            tracing::debug!(%peer, "closing an idle HTTP/2 connection");
            // Already closing: a stop meanwhile changes nothing.
            conn.as_mut().shut();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The TLS acceptor of `[tls]`: the certificate chain and key, HTTP/2 and HTTP/1.1.
fn tls_config(tls: &config::Tls) -> Result<tokio_rustls::TlsAcceptor, CliError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &Path, reason: String| CliError::Config {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| bad(&tls.cert_file, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(&tls.cert_file, "no CERTIFICATE in it".to_owned()));
    }
    let pem = crate::keys::read_secret(&tls.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| bad(&tls.key_file, e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(&tls.cert_file, e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| bad(&tls.key_file, e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The Person Server's consent policy of `consent`.
pub(crate) fn consent_policy(consent: Consent) -> Arc<dyn aauth_person_server::ConsentPolicy> {
    match consent {
        Consent::Ask => Arc::new(aauth_person_server::AlwaysAsk),
        Consent::AutoApprove => Arc::new(aauth_person_server::dangerous::AutoApprove),
    }
}
