//! The upstream: where admitted requests go, with the identity the proxy verified in
//! `x-aauth-*` headers (every such header the client sent is dropped first; the request's
//! signature headers, which carry the agent's token, too, unless configured, and an
//! `Authorization: AAuth` session token always), `X-Forwarded-For` and `X-Real-IP` from
//! the peer (see [`crate::forwarded`]), hop-by-hop headers removed both ways, a pooled HTTP/1.1 and HTTP/2 client (HTTP/2 over TLS when
//! the upstream offers `h2`), a connect and a response-head timeout (`502`, `504`), the
//! response streamed back, and an `Upgrade` (WebSocket) passed through once admitted: over
//! HTTP/1.1, or over HTTP/2 as an extended `CONNECT` (RFC 8441), which goes upstream as
//! the HTTP/1.1 upgrade it stands for, its tunnel closed once idle for
//! `tunnel_idle_timeout_secs` (see [`super::tunnel`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aauth_resource::{Admitted, OAuthCaller};
use aauth_tokens::BoundToken;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::body::ProxyBody;
use super::sessions::Grants;
use crate::error::CliError;
use crate::forwarded::{self, TrustedProxies};

/// The request's signature and its key (with the agent's token), not sent on unless
/// `forward_signature_headers`.
const SIGNATURE_HEADERS: [&str; 3] = ["signature", "signature-input", "signature-key"];

/// The identity headers the proxy sets; every incoming `x-aauth-*` header is dropped.
pub(crate) const AGENT: HeaderName = HeaderName::from_static("x-aauth-agent");
/// The person's Person Server (`ps` of an auth token, `iss` of a person token).
pub(crate) const PERSON_ISS: HeaderName = HeaderName::from_static("x-aauth-person-iss");
/// The person's directed identifier at this resource.
pub(crate) const PERSON_SUB: HeaderName = HeaderName::from_static("x-aauth-person-sub");
/// The scope the auth token granted, or the session presented.
pub(crate) const SCOPE: HeaderName = HeaderName::from_static("x-aauth-scope");
/// The mission (`mission_s256`) of the person or auth token.
pub(crate) const MISSION: HeaderName = HeaderName::from_static("x-aauth-mission");
/// The `jti` of the token that bound the signing key.
pub(crate) const TOKEN_JTI: HeaderName = HeaderName::from_static("x-aauth-token-jti");

/// The forwarding headers, however spelled, dropped from every request: the proxy sets
/// its own.
const FORWARDING: [&str; 5] = [
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
];

/// Headers, however spelled, through which frameworks and servers let a request stand
/// for another method, path, port or scheme than it has: dropped from every request,
/// since the route (and so the access mode and scope) was chosen by the request's own
/// method and path. A `POST` admitted as one, with `X-HTTP-Method-Override: DELETE`,
/// must not run as a `DELETE` behind the proxy; nor a `GET /public` with
/// `X-Original-URL: /admin`.
const OVERRIDES: [&str; 19] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-forwarded-method",
    "x-original-method",
    "x-forwarded-path",
    "x-forwarded-protocol",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-original-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-forwarded-server",
    "x-forwarded-uri",
    "x-url-scheme",
    "front-end-https",
];

/// The prefix of every header only the proxy may set.
const IDENTITY_PREFIX: &str = "x-aauth-";
/// An OAuth client's verified token: its issuer, client and subject (with `x-aauth-scope`
/// and `x-aauth-token-jti`).
pub(crate) const OAUTH_ISSUER: HeaderName = HeaderName::from_static("x-aauth-oauth-issuer");
/// The `client_id` of an OAuth client's token.
pub(crate) const OAUTH_CLIENT: HeaderName = HeaderName::from_static("x-aauth-oauth-client-id");
/// The `sub` of an OAuth client's token.
pub(crate) const OAUTH_SUB: HeaderName = HeaderName::from_static("x-aauth-oauth-sub");

/// Who the resource layer admitted.
#[allow(
    clippy::large_enum_variant,
    reason = "made once per request and matched in place, never stored or moved around"
)]
enum Caller {
    AAuth(Admitted),
    OAuth(OAuthCaller),
}

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1), beside
/// those `Connection` names.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// A request body on its way upstream: read whole by the resource layer (its digest
/// checked) or streamed from the client as it arrives.
pub(crate) type UpBody = aauth_resource::ForwardBody<crate::deadline::InBody>;

type HttpClient = Client<HttpsConnector<HttpConnector>, UpBody>;

/// The upstream as a tower service: cheap to clone (a pooled client behind an `Arc`).
#[derive(Clone)]
pub(crate) struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    /// HTTP/1.1, and HTTP/2 where TLS negotiates it.
    client: HttpClient,
    /// HTTP/1.1 only: an `Upgrade` needs it.
    http1: HttpClient,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The base path, without its trailing `/` (empty for `/`).
    base_path: String,
    request_timeout: Duration,
    /// `tunnel_idle_timeout_secs`: an upgraded connection with no byte either way for
    /// as long is closed.
    tunnel_idle: Duration,
    /// `x-forwarded-proto` and `x-forwarded-host`: the resource's public origin (its
    /// `id`), whatever the request's `Host` said.
    proto: HeaderValue,
    host: HeaderValue,
    /// Whether the signature headers go on.
    forward_signature_headers: bool,
    /// The sessions the upstream grants.
    grants: Grants,
    /// `trusted_proxies` (top level).
    trusted_proxies: TrustedProxies,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("authority", &self.inner.authority)
            .field("base_path", &self.inner.base_path)
            .finish_non_exhaustive()
    }
}

/// How the upstream is reached.
pub(crate) struct UpstreamConfig<'a> {
    /// `resource_proxy.upstream`.
    pub(crate) url: &'a str,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    /// `resource_proxy.tunnel_idle_timeout_secs`.
    pub(crate) tunnel_idle_timeout: Duration,
    /// Roots trusted for an `https://` upstream.
    pub(crate) roots: rustls::RootCertStore,
    /// The resource's identifier (its public origin: `https://api.example`).
    pub(crate) public: &'a str,
    /// `resource_proxy.forward_signature_headers`.
    pub(crate) forward_signature_headers: bool,
    /// Where the sessions the upstream grants are kept.
    pub(crate) grants: Grants,
    /// The proxies in front whose `X-Forwarded-For` is believed.
    pub(crate) trusted_proxies: TrustedProxies,
}

impl Upstream {
    /// The upstream at `c.url`.
    pub(crate) fn new(c: UpstreamConfig<'_>) -> Result<Self, CliError> {
        let (scheme, authority, base_path) = parse_url(c.url)?;
        let (proto, host) = public_origin(c.public)?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Operational(format!("TLS to the upstream: {e}")))?
        .with_root_certificates(c.roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(c.connect_timeout));
        http.set_nodelay(true);
        let all = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http.clone());
        let only1 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let pooled = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(32);
            b
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client: pooled().build(all),
                http1: pooled().build(only1),
                scheme,
                authority,
                base_path,
                request_timeout: c.request_timeout,
                tunnel_idle: c.tunnel_idle_timeout,
                proto,
                host,
                forward_signature_headers: c.forward_signature_headers,
                grants: c.grants,
                trusted_proxies: c.trusted_proxies,
            }),
        })
    }

    /// Whether the upstream takes a TCP connection now (`/readyz`).
    pub(crate) async fn reachable(&self, within: Duration) -> Result<(), String> {
        let host = self.inner.authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let default = if self.inner.scheme == http::uri::Scheme::HTTPS {
            443
        } else {
            80
        };
        let port = self.inner.authority.port_u16().unwrap_or(default);
        match tokio::time::timeout(within, tokio::net::TcpStream::connect((host, port))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("the upstream refuses connections: {e}")),
            Err(_) => Err("the upstream does not answer".to_owned()),
        }
    }
}

/// The scheme and authority of the resource's identifier, as `X-Forwarded-Proto` and
/// `X-Forwarded-Host` carry them.
fn public_origin(id: &str) -> Result<(HeaderValue, HeaderValue), CliError> {
    let bad = || CliError::Usage {
        flag: "id",
        reason: format!("{id:?}: not an origin the forwarding headers can carry"),
    };
    let uri: Uri = id.parse().map_err(|_| bad())?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(bad());
    };
    Ok((
        HeaderValue::from_str(scheme).map_err(|_| bad())?,
        HeaderValue::from_str(authority.as_str()).map_err(|_| bad())?,
    ))
}

/// `http(s)://authority[/base]` → its parts; a query or fragment is refused.
pub(crate) fn parse_url(
    url: &str,
) -> Result<(http::uri::Scheme, http::uri::Authority, String), CliError> {
    let bad = |reason: &str| CliError::Usage {
        flag: "resource_proxy.upstream",
        // Shown without a password the URL may carry.
        reason: format!("{:?}: {reason}", aauth_metadata::store::redact_url(url)),
    };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let scheme = uri.scheme().cloned().ok_or_else(|| bad("no scheme"))?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(bad("the scheme must be http or https"));
    }
    let authority = uri.authority().cloned().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("no user information, please"));
    }
    if uri.query().is_some() || url.contains('#') {
        return Err(bad("no query or fragment: a base URL"));
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Ok((scheme, authority, base_path))
}

impl tower_service::Service<Request<UpBody>> for Upstream {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<UpBody>) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { Ok(forward(&inner, req).await) })
    }
}

/// Sends the admitted `req` on and streams the answer back.
async fn forward(up: &Inner, mut req: Request<UpBody>) -> Response<ProxyBody> {
    // A WebSocket over HTTP/2 (RFC 8441) goes upstream as the HTTP/1.1 upgrade it stands
    // for: `GET` with `Upgrade: websocket` and a key of the proxy's own.
    let h2_websocket = is_h2_websocket(&req);
    let upgrade = if h2_websocket {
        Some(HeaderValue::from_static("websocket"))
    } else {
        upgrade_of(req.headers())
    };
    let on_client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (mut parts, mut body) = req.into_parts();
    // A body streamed from the client, still arriving: the wait for the answer starts
    // once it is sent (nothing to wait for on a request whose body came with its head).
    let body_sent = match &mut body {
        aauth_resource::ForwardBody::Streamed(b) if !http_body::Body::is_end_stream(b) => {
            Some((b.end(), b.due()))
        }
        _ => None,
    };
    let caller = match (
        parts.extensions.remove::<Admitted>(),
        parts.extensions.remove::<OAuthCaller>(),
    ) {
        (Some(a), _) => Caller::AAuth(a),
        (None, Some(c)) => Caller::OAuth(c),
        // The resource layer always inserts one: a request without was not admitted.
        (None, None) => return problem(StatusCode::INTERNAL_SERVER_ERROR, "not admitted"),
    };
    let uri = match target(up, &parts.uri) {
        Ok(u) => u,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e),
    };
    let mut headers = match upstream_headers(up, &mut parts, &caller) {
        Ok(h) => h,
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    if let Some(protocol) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }
    let (method, body) = if h2_websocket {
        match websocket_key() {
            Ok(key) => {
                headers.insert(header::SEC_WEBSOCKET_KEY, key);
            }
            Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, &e),
        }
        // The stream's data is the tunnel's, which the upgrade carries.
        let empty = aauth_resource::ForwardBody::Read(http_body_util::Full::new(Bytes::new()));
        (http::Method::GET, empty)
    } else {
        (parts.method, body)
    };
    // The key the upstream's `101` must answer (the client's, or the proxy's own).
    let websocket_key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let slot = parts.extensions.remove::<crate::serve::ConnectionSlot>();
    let mut out = Request::new(body);
    *out.method_mut() = method;
    *out.uri_mut() = uri;
    *out.version_mut() = Version::HTTP_11;
    *out.headers_mut() = headers;
    let client = if upgrade.is_some() {
        &up.http1
    } else {
        &up.client
    };
    let mut resp = match send(up, client, out, body_sent).await {
        Ok(resp) => resp,
        Err(failed) => return failed,
    };
    let status = resp.status();
    let admitted = match &caller {
        Caller::AAuth(a) => Some(a),
        Caller::OAuth(_) => None,
    };
    if let Err(refused) = up.grants.apply(admitted, status, resp.headers_mut()).await {
        return refused;
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_side) = on_client_upgrade else {
            return problem(StatusCode::BAD_GATEWAY, "an upgrade nobody asked for");
        };
        // Only to a WebSocket, its handshake completed: a `101` from anything else (an
        // endpoint that echoes a status) would hand the client a raw connection to the
        // upstream, where every later request would go unverified.
        if !websocket_switched(resp.headers(), websocket_key.as_ref()) {
            return problem(
                StatusCode::BAD_GATEWAY,
                "the upstream switched protocols without completing the WebSocket handshake",
            );
        }
        return switch(client_side, &mut resp, h2_websocket, slot, up.tunnel_idle);
    }
    if h2_websocket && status.is_success() {
        // Over HTTP/2 a success opens the tunnel: one the upstream did not switch to
        // would carry its answer as if it were the WebSocket's data.
        return problem(
            StatusCode::BAD_GATEWAY,
            "the upstream answered the WebSocket without switching protocols",
        );
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // The client's connection speaks its own version: an HTTP/1.0 upstream's answer
    // (Python's `http.server`) would otherwise go out as `HTTP/1.0` to an HTTP/1.1
    // client, and its connection close after it.
    parts.version = Version::HTTP_11;
    Response::from_parts(parts, ProxyBody::stream(body))
}

/// Sends `out` upstream by `client`, timed (`aauth_upstream_duration_seconds`): the
/// response head, or the `502`/`504` to answer. The request timeout runs from the end of
/// a body streamed from the client (`body_sent`: told at its end, and its deadline): an
/// upload takes as long as the client takes to send it, which `body_timeout_secs` bounds
/// (an upstream that waits for the whole body before it answers would otherwise meet the
/// timeout mid-upload). Past the body's deadline the timeout runs whatever became of the
/// body, so an upstream that stopped reading it is still answered `504`.
async fn send(
    up: &Inner,
    client: &HttpClient,
    out: Request<UpBody>,
    body_sent: Option<(Arc<tokio::sync::Notify>, Option<tokio::time::Instant>)>,
) -> Result<Response<hyper::body::Incoming>, Response<ProxyBody>> {
    let started = std::time::Instant::now();
    let response = client.request(out);
    tokio::pin!(response);
    let answered_first = match body_sent {
        Some((sent, due)) => {
            let due = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // The upstream may answer before the body ends (a `413`, say).
                answered = &mut response => Some(answered),
                () = sent.notified() => None,
                () = due => None,
            }
        }
        None => None,
    };
    let sent = match answered_first {
        Some(answered) => Ok(answered),
        None => tokio::time::timeout(up.request_timeout, response).await,
    };
    let outcome = match &sent {
        Ok(Ok(_)) => "response",
        Ok(Err(_)) => "error",
        Err(_) => "timeout",
    };
    metrics::histogram!(aauth_metadata::metric::UPSTREAM_DURATION, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    match sent {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => {
            let cause = std::error::Error::source(&e).map_or_else(String::new, |s| s.to_string());
            tracing::warn!(error = %e, cause = %cause, connect = e.is_connect(), "the upstream failed");
            Err(problem(
                StatusCode::BAD_GATEWAY,
                "the upstream could not be reached",
            ))
        }
        Err(_) => {
            tracing::warn!(
                timeout_secs = up.request_timeout.as_secs(),
                "the upstream did not answer in time"
            );
            Err(problem(
                StatusCode::GATEWAY_TIMEOUT,
                "the upstream did not answer in time",
            ))
        }
    }
}

/// The headers an admitted request takes upstream: its own without the hop-by-hop ones,
/// the forwarding headers set anew (`X-Forwarded-For` and `X-Real-IP` from the peer),
/// the signature headers (unless configured) and an `Authorization: AAuth` session token
/// dropped, the verified identity added.
fn upstream_headers(
    up: &Inner,
    parts: &mut http::request::Parts,
    caller: &Caller,
) -> Result<HeaderMap, String> {
    let mut headers = std::mem::take(&mut parts.headers);
    // The connection's peer; for a call held and run at a later poll, the note the
    // proxy kept with it (dropped upstream with the other `x-aauth-` headers). Read
    // before the hop-by-hop headers go: a client's `Connection` may name the note.
    let peer = parts
        .extensions
        .get::<forwarded::Peer>()
        .copied()
        .or_else(|| noted_peer(&headers));
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    // The client's own chain, believed only from a trusted proxy (see `forwarded`).
    let incoming: Vec<HeaderValue> = headers
        .get_all(forwarded::X_FORWARDED_FOR)
        .iter()
        .cloned()
        .collect();
    let forwarded: Vec<HeaderName> = headers
        .keys()
        .filter(|n| FORWARDING.iter().chain(&OVERRIDES).any(|f| reads_as(n, f)))
        .cloned()
        .collect();
    for name in forwarded {
        headers.remove(name);
    }
    forwarded::set(&mut headers, peer, &incoming, &up.trusted_proxies);
    if !up.forward_signature_headers {
        for name in SIGNATURE_HEADERS {
            headers.remove(name);
        }
    }
    // No credential of the client's goes on: a session token is the proxy's own (the
    // upstream gets its scope), an OAuth token the proxy verified is the verified client,
    // and any other (a `Bearer` beside an AAuth signature on a route that takes no OAuth
    // token, `Basic`, a stray `DPoP` proof) was checked by nobody: an API that honours
    // one would take the request as someone other than the caller the proxy admitted.
    headers.remove(header::AUTHORIZATION);
    headers.remove("dpop");
    // A session that wraps the upstream's own credential: the upstream gets it back, as
    // its own clients always sent it (the grant header is taken out of its responses).
    if let Caller::AAuth(admitted) = caller
        && let Some(wrapped) = admitted.session.as_ref().and_then(|s| s.wrapped.as_ref())
    {
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", wrapped.secret()))
            .map_err(|_| "the session's credential is not a header value".to_owned())?;
        bearer.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, bearer);
    }
    // The resource's own origin: for an AAuth request its `Host` was checked to be
    // that, but nothing checks an OAuth client's, and an API that builds links or
    // cache keys from `X-Forwarded-Host` must not be handed the client's choice.
    headers.insert("x-forwarded-host", up.host.clone());
    headers.insert("x-forwarded-proto", up.proto.clone());
    add_identity(&mut headers, caller)?;
    Ok(headers)
}

/// The upstream URI of a request for `uri`: the base URL's scheme, authority and path,
/// then the request's path and query.
fn target(up: &Inner, uri: &Uri) -> Result<Uri, String> {
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    Uri::builder()
        .scheme(up.scheme.clone())
        .authority(up.authority.clone())
        .path_and_query(format!("{}{pq}", up.base_path))
        .build()
        .map_err(|e| format!("no upstream URI for the request: {e}"))
}

/// The protocol an HTTP/1.1 upgrade request asks for (`Connection: upgrade` and
/// `Upgrade`), if it is WebSocket: the one upgrade the proxy passes through. Any other
/// (`h2c` above all: an upstream that switched would take HTTP/2 requests on any path,
/// none of them admitted here) is dropped, and the request goes on as a plain one.
fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    headers
        .get(header::UPGRADE)
        .filter(|v| asks && v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        .cloned()
}

/// Whether header `name` starts with `prefix` (hyphenated, lower case) as the upstream's
/// framework may read it: CGI, WSGI, Rack and PHP map `x_aauth_scope` and
/// `x-aauth-scope` to the same variable, so `_` counts as `-`. No allocation: this runs
/// on every header of every request.
fn reads_as_prefix(name: &HeaderName, prefix: &str) -> bool {
    let (name, prefix) = (name.as_str().as_bytes(), prefix.as_bytes());
    name.len() >= prefix.len()
        && name
            .iter()
            .zip(prefix)
            .all(|(&n, &p)| n == p || (n == b'_' && p == b'-'))
}

/// Whether header `name` is `exact` as the upstream's framework may read it (see
/// [`reads_as_prefix`]).
fn reads_as(name: &HeaderName, exact: &str) -> bool {
    name.as_str().len() == exact.len() && reads_as_prefix(name, exact)
}

/// Removes the hop-by-hop headers, those `Connection` names among them, and `Upgrade`
/// (an upgrade is set again on purpose).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// The proxy's note of the peer a request came from, kept in its headers so that a call
/// held for its auth token, run at a later poll, still tells the upstream who sent it.
/// Set on every request the proxy routes (whatever the client wrote under that name
/// dropped first); never sent upstream, as an `x-aauth-` header.
const PEER_NOTE: HeaderName = HeaderName::from_static("x-aauth-proxy-peer");

/// Notes `req`'s peer in [`PEER_NOTE`], dropping any header the client sent that reads
/// as it.
pub(crate) fn note_peer<B>(req: &mut Request<B>) {
    let spoofed: Vec<HeaderName> = req
        .headers()
        .keys()
        .filter(|n| reads_as(n, PEER_NOTE.as_str()))
        .cloned()
        .collect();
    for name in spoofed {
        req.headers_mut().remove(name);
    }
    let peer = req.extensions().get::<forwarded::Peer>().copied();
    if let Some(v) = peer.and_then(|p| HeaderValue::from_str(&p.0.to_string()).ok()) {
        req.headers_mut().insert(PEER_NOTE, v);
    }
}

/// The peer [`note_peer`] noted in `headers`.
fn noted_peer(headers: &HeaderMap) -> Option<forwarded::Peer> {
    let v = headers.get(PEER_NOTE)?.to_str().ok()?;
    v.parse().ok().map(forwarded::Peer)
}

/// Drops every header the client sent that the upstream could read as an `x-aauth-*`
/// one, however spelled.
fn drop_spoofable(headers: &mut HeaderMap) {
    let spoofable: Vec<HeaderName> = headers
        .keys()
        .filter(|n| reads_as_prefix(n, IDENTITY_PREFIX))
        .cloned()
        .collect();
    for name in spoofable {
        headers.remove(name);
    }
}

/// Drops every `x-aauth-*` header the client sent, then sets those the verified request
/// gives.
fn add_identity(headers: &mut HeaderMap, caller: &Caller) -> Result<(), String> {
    drop_spoofable(headers);
    let mut set = |name: HeaderName, value: &str| {
        HeaderValue::from_str(value)
            .map(|v| {
                headers.insert(name.clone(), v);
            })
            .map_err(|_| format!("{name} cannot carry the verified value"))
    };
    let admitted = match caller {
        Caller::AAuth(a) => a,
        Caller::OAuth(OAuthCaller(claims)) => {
            set(OAUTH_ISSUER, claims.issuer())?;
            if let Some(client) = claims.client_id() {
                set(OAUTH_CLIENT, client)?;
            }
            if let Some(sub) = claims.subject() {
                set(OAUTH_SUB, sub)?;
            }
            if !claims.scope().is_empty() {
                set(SCOPE, claims.scope())?;
            }
            if let Some(jti) = claims.jti() {
                set(TOKEN_JTI, jti)?;
            }
            return Ok(());
        }
    };
    if let Some(agent) = admitted.agent() {
        set(AGENT, agent.as_str())?;
    }
    if let Some((ps, sub)) = admitted.person() {
        set(PERSON_ISS, ps.as_str())?;
        set(PERSON_SUB, sub)?;
    }
    // An auth token's scope, or what the upstream granted the session presented.
    let session_scope = admitted.session.as_ref().and_then(|s| s.scope.as_deref());
    if let Some(scope) = admitted.scope().or(session_scope) {
        set(SCOPE, scope)?;
    }
    if let Some(mission) = admitted.mission_s256() {
        set(MISSION, mission)?;
    }
    let jti = admitted.token().and_then(|t| match t {
        BoundToken::Agent(a) => Some(a.claims.jti.as_str()),
        BoundToken::Person(p) => Some(p.claims.jti.as_str()),
        BoundToken::Auth(a) => Some(a.claims.jti.as_str()),
        _ => None,
    });
    if let Some(jti) = jti {
        set(TOKEN_JTI, jti)?;
    }
    Ok(())
}

/// Whether `req` opens a WebSocket over HTTP/2: an extended `CONNECT` (RFC 8441 §4) with
/// the `websocket` protocol.
pub(crate) fn is_h2_websocket<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// A fresh `Sec-WebSocket-Key` (RFC 6455 §4.1: 16 random bytes, base64).
fn websocket_key() -> Result<HeaderValue, String> {
    let id = aauth_keys::rand::random_id(&mut aauth_keys::rand::OsRandom, 16)
        .map_err(|e| format!("no randomness for a WebSocket key: {e}"))?;
    // Unpadded base64url to base64.
    let key = format!("{}==", id.replace('-', "+").replace('_', "/"));
    HeaderValue::from_str(&key).map_err(|e| e.to_string())
}

/// RFC 6455 §4.2.2: the `Sec-WebSocket-Accept` a server answers the key `key` with.
fn websocket_accept(key: &[u8]) -> String {
    use base64::Engine as _;
    let mut sha1 = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    sha1.update(key);
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha1.finish())
}

/// Whether a `101` with `headers` completes the WebSocket handshake of `key`:
/// `Upgrade: websocket` and the `Sec-WebSocket-Accept` that answers the key.
fn websocket_switched(headers: &HeaderMap, key: Option<&HeaderValue>) -> bool {
    let upgraded = headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let accepted = match (key, headers.get(header::SEC_WEBSOCKET_ACCEPT)) {
        (Some(key), Some(accept)) => {
            accept.as_bytes() == websocket_accept(key.as_bytes()).as_bytes()
        }
        _ => false,
    };
    upgraded && accepted
}

/// The upstream switched protocols: answer the client `101` with its headers (`200`
/// without the handshake's headers to a WebSocket over HTTP/2, `h2`), and once both
/// sides have switched, copy bytes both ways until either closes or nothing has passed
/// for `idle`, holding the client connection's `slot` (one of `max_connections`) until
/// then.
fn switch(
    client_side: hyper::upgrade::OnUpgrade,
    resp: &mut Response<hyper::body::Incoming>,
    h2: bool,
    slot: Option<crate::serve::ConnectionSlot>,
    idle: Duration,
) -> Response<ProxyBody> {
    let upstream_side = hyper::upgrade::on(&mut *resp);
    tokio::spawn(async move {
        let _slot = slot;
        match tokio::try_join!(client_side, upstream_side) {
            Ok((client, upstream)) => {
                let (client, upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                match super::tunnel::run(client, upstream, idle).await {
                    super::tunnel::Ended::Closed(up, down) => {
                        tracing::debug!(
                            bytes_up = up,
                            bytes_down = down,
                            "an upgraded connection closed"
                        );
                    }
                    super::tunnel::Ended::Failed(e) => {
                        tracing::debug!(error = %e, "an upgraded connection ended");
                    }
                    super::tunnel::Ended::Idle => tracing::debug!(
                        idle_secs = idle.as_secs(),
                        "an upgraded connection closed: nothing passed either way for \
                         tunnel_idle_timeout_secs"
                    ),
                }
            }
            Err(e) => tracing::warn!(error = %e, "an upgrade failed"),
        }
    });
    let mut out = Response::new(ProxyBody::empty());
    *out.headers_mut() = resp.headers().clone();
    if h2 {
        strip_hop_by_hop(out.headers_mut());
        out.headers_mut().remove(header::SEC_WEBSOCKET_ACCEPT);
    } else {
        *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    }
    out
}

/// An RFC 9457 problem from the proxy itself.
pub(crate) fn problem(status: StatusCode, detail: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "type": "about:blank",
        "status": status.as_u16(),
        "title": status.canonical_reason().unwrap_or("Error"),
        "detail": detail,
    });
    let mut resp = Response::new(ProxyBody::from(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_are_http_or_https_bases() {
        let (s, a, p) = parse_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (s.as_str(), a.as_str(), p.as_str()),
            ("http", "127.0.0.1:8080", "")
        );
        let (_, _, p) = parse_url("https://api.internal/v1/").unwrap();
        assert_eq!(p, "/v1");
        for bad in [
            "ftp://x",
            "127.0.0.1:80",
            "http://x/?q=1",
            "http://u@x/",
            "/just/a/path",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key(header::ACCEPT));
    }

    /// RFC 6455 §1.3's example, and what a `101` must carry to be passed through.
    #[test]
    fn a_websocket_switch_needs_the_accept_that_answers_the_key() {
        assert_eq!(
            websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let key = HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==");
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        h.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        );
        assert!(websocket_switched(&h, Some(&key)));
        assert!(!websocket_switched(&h, None));
        let other = HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAA==");
        assert!(!websocket_switched(&h, Some(&other)));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!websocket_switched(&h, Some(&key)));
        h.remove(header::UPGRADE);
        assert!(!websocket_switched(&h, Some(&key)));
    }

    #[test]
    fn an_upgrade_needs_both_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(upgrade_of(&h).is_none());
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(upgrade_of(&h).unwrap(), "websocket");
        // Only WebSocket: an h2c upgrade is dropped (smuggling past the proxy).
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(upgrade_of(&h).is_none());
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(upgrade_of(&h).is_some());
    }

    #[test]
    fn identity_headers_spelled_with_underscores_are_dropped_too() {
        assert!(reads_as(
            &HeaderName::from_static("x_aauth_scope"),
            "x-aauth-scope"
        ));
        assert!(reads_as(
            &HeaderName::from_static("x_forwarded_host"),
            "x-forwarded-host"
        ));
        assert!(!reads_as(
            &HeaderName::from_static("x-aauth"),
            "x-aauth-scope"
        ));
        assert!(!reads_as_prefix(
            &HeaderName::from_static("x-aauthz"),
            IDENTITY_PREFIX
        ));
        let mut h = HeaderMap::new();
        for n in [
            "x_aauth_scope",
            "x-aauth_person-sub",
            "x-aauth-agent",
            "accept",
        ] {
            h.insert(
                HeaderName::from_static(n),
                HeaderValue::from_static("spoofed"),
            );
        }
        drop_spoofable(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key(header::ACCEPT));
    }
}
