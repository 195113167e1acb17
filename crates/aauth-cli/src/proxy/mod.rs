//! `aauth serve resource-proxy`: an AAuth resource in front of an HTTP API that knows
//! nothing of AAuth.
//!
//! Each request is matched against `[[resource_proxy.routes]]` (path pattern and methods;
//! the first match wins) and verified by `aauth_resource`'s [`AAuthLayer`] with the
//! route's access mode and scope; only an admitted request reaches the upstream, with
//! the verified identity in `x-aauth-*` headers (see [`upstream`]). A request that
//! matches no route is `404` and is not sent on.
//!
//! The proxy is the resource: it publishes `/.well-known/aauth-resource.json` and its
//! keys, mints resource tokens with its signing key, and owns the paths under `/aauth/`
//! (never forwarded):
//!
//! | Path | What |
//! |---|---|
//! | `/aauth/jwks.json` | its public key (`jwks_uri`) |
//! | `/aauth/authorize` | the authorization endpoint (draft -11 §8.1), when a route needs a person or auth token |
//! | `/aauth/revoke` | the revocation endpoint, for `revoking_issuers` and `access_server` |
//! | `/aauth/pending/{route}/{id}` | a call held for its auth token (`defer_auth_token`) |
//!
//! `/healthz` and `/readyz` (the upstream takes a TCP connection) are its own too.
//!
//! A `session-token` route admits an agent with a session the upstream granted (see
//! [`sessions`]): the API keeps its own consent or login flow behind an `agent-token`
//! route and answers `x-aauth-grant-session: SCOPE` when it is done.

mod body;
mod oauth;
mod routes;
mod sessions;
mod shared;
mod tunnel;
pub(crate) mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aauth_keys::Signer;
use aauth_keys::time::{Clock, SystemClock, UnixTime};
use aauth_metadata::ops::{RouteLabel, WithHealth, route_label};
use aauth_metadata::serve::{Endpoint, EndpointService, Routed};
use aauth_metadata::{
    AccessMode, CacheConfig, DiscoveryResolver, HttpsUrl, KeyCache, Published, ResourceMetadata,
};
use aauth_resource::{
    AAuthLayer, Access, DeferredAuth, Resource, ResourceTokens, RevocationEndpoint, Route,
    RoutePolicy, StreamingService,
};
use aauth_tokens::{IssuerKeyResolver, ServerId};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

pub(crate) use body::ProxyBody;
use routes::Matcher;
use upstream::{Upstream, UpstreamConfig, problem};

use crate::config::{Config, ProxyAccess, ProxyRoute, ResourceProxySection};
use crate::error::CliError;
use crate::net::server_id;
use crate::serve::{Check, config_error};

/// Where the proxy publishes its keys.
const JWKS_PATH: &str = "/aauth/jwks.json";
/// The authorization endpoint.
const AUTHORIZE_PATH: &str = "/aauth/authorize";
/// The revocation endpoint.
const REVOKE_PATH: &str = "/aauth/revoke";
/// Held calls: `/aauth/pending/{route}/{id}`.
const PENDING_PREFIX: &str = "/aauth/pending/";
/// The proxy's own namespace.
const OWN_PREFIX: &str = "/aauth/";

/// The proxy as a tower service (cheap to clone).
#[derive(Clone)]
pub(crate) struct Proxy {
    own: EndpointService<WithHealth<dyn Endpoint>>,
    routes: Arc<[ServedRoute]>,
    /// `case_insensitive_paths`.
    fold_case: bool,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}

/// A configured route: which requests, and the resource layer in front of the upstream.
#[derive(Clone)]
struct ServedRoute {
    matcher: Matcher,
    /// The metrics' `route` label of its configured path (`aauth_metadata::ops::route_label`
    /// of the pattern), set on each of its answers ([`RouteLabel`]): never one a client
    /// spelt (a case of its own under `case_insensitive_paths`, a path under a `/*`
    /// route), so the labels are as few as the routes.
    label: String,
    service: StreamingService<Upstream>,
    /// Whether calls are held on it (its pending URLs are then its own).
    defers: bool,
}

/// The proxy's configuration section, or the error that names it.
fn section(c: &Config) -> Result<&ResourceProxySection, CliError> {
    let s = c.resource_proxy.as_ref().ok_or_else(|| CliError::Usage {
        flag: "resource_proxy",
        reason: "the configuration has no [resource_proxy] section".to_owned(),
    })?;
    if s.max_buffered_body_bytes < s.max_body_bytes {
        return Err(CliError::Usage {
            flag: "resource_proxy.max_buffered_body_bytes",
            reason: format!(
                "{}: at least max_body_bytes ({}), or no body that size is ever read",
                s.max_buffered_body_bytes, s.max_body_bytes
            ),
        });
    }
    // A 0 would fail every request (`502`, `504`) or close every tunnel at once.
    for (flag, secs) in [
        (
            "resource_proxy.connect_timeout_secs",
            s.connect_timeout_secs,
        ),
        (
            "resource_proxy.request_timeout_secs",
            s.request_timeout_secs,
        ),
        (
            "resource_proxy.tunnel_idle_timeout_secs",
            s.tunnel_idle_timeout_secs,
        ),
    ] {
        if secs == 0 {
            return Err(CliError::Usage {
                flag,
                reason: "0: at least 1 second".to_owned(),
            });
        }
    }
    if s.routes.is_empty() {
        return Err(CliError::Usage {
            flag: "resource_proxy.routes",
            reason: "no routes: every request would be 404 ([[resource_proxy.routes]])".to_owned(),
        });
    }
    if !(60..=2_592_000).contains(&s.sessions.lifetime_secs) {
        return Err(CliError::Usage {
            flag: "resource_proxy.sessions.lifetime_secs",
            reason: format!(
                "{}: from 60 (a minute) to 2592000 (30 days)",
                s.sessions.lifetime_secs
            ),
        });
    }
    Ok(s)
}

/// The proxy `c` configures, signing resource tokens with `signer` under `kid`,
/// verifying tokens with issuer keys from `keys`, reaching issuers through `reach`, its
/// shared state where `store` says (connecting to Redis first if it names one).
pub(crate) async fn build(
    c: &Config,
    id: ServerId,
    signer: Arc<dyn Signer>,
    kid: &str,
    keys: Arc<dyn IssuerKeyResolver>,
    reach: &crate::net::Reach,
    limits: &crate::limits::Limits,
) -> Result<Proxy, CliError> {
    let s = section(c)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let connect_timeout = Duration::from_secs(s.connect_timeout_secs);
    let shared = shared::shared(c, &id).await?;
    let upstream = Upstream::new(UpstreamConfig {
        url: &s.upstream,
        connect_timeout,
        request_timeout: Duration::from_secs(s.request_timeout_secs),
        tunnel_idle_timeout: Duration::from_secs(s.tunnel_idle_timeout_secs),
        roots: reach.roots(),
        public: id.as_str(),
        forward_signature_headers: s.forward_signature_headers,
        trusted_proxies: crate::forwarded::TrustedProxies::parse(&c.trusted_proxies)?,
        grants: sessions::Grants::new(
            Arc::clone(&shared.sessions),
            s.sessions.lifetime_secs,
            Arc::clone(&clock),
        ),
    })?;
    let mut resource = Resource::new(id.clone(), keys)
        .resource_tokens(resource_tokens(s, &signer, kid)?)
        .revocations(Arc::clone(&shared.revocations) as Arc<dyn aauth_signing::RevocationList>);
    resource = resource.replay_store(Arc::clone(&shared.replay));
    if let Some(both) = &shared.both {
        resource = resource.revocations_and_replay(
            Arc::clone(both) as Arc<dyn aauth_signing::RevocationReplayStore>
        );
    }
    let oauth = oauth::base(s, &id, reach, &clock, &shared.replay)?;
    let routes = served_routes(s, &resource, &clock, &upstream, &shared, oauth.as_ref())?;
    let person_routes = s
        .routes
        .iter()
        .any(|r| matches!(r.access, ProxyAccess::PersonToken | ProxyAccess::AuthToken));
    let revoke = revocation_endpoint(c, s, &id, reach, &clock, &shared)?;
    let mut published = published(
        c,
        s,
        &id,
        signer.as_ref(),
        kid,
        person_routes,
        revoke.is_some(),
    )?;
    if let Some(o) = &oauth {
        let (path, json) = o.metadata();
        published = published.json(&path, json);
    }
    let own = Own {
        published,
        authorize: person_routes.then(|| resource.route(RoutePolicy::new(Access::PersonToken))),
        revoke,
    };
    let up = upstream;
    let check = Check(move || {
        let up = up.clone();
        async move { up.reachable(connect_timeout).await }
    });
    let mut own =
        WithHealth::new(Arc::new(own) as Arc<dyn Endpoint>).check("upstream", Arc::new(check));
    if let Some(redis) = shared.redis {
        own = own.check("store", crate::serve::redis_ready(redis));
    }
    if let Some(redis) = &limits.redis {
        own = own.check("rate_limit", crate::serve::redis_ready(redis.clone()));
    }
    Ok(Proxy {
        // Its own endpoints' bodies (read before anything is checked) within a budget
        // apart from the routes': neither can crowd out the other (`config::limits`).
        own: EndpointService::new(Arc::new(own), clock)
            .body_budget(aauth_resource::BodyBudget::new(c.max_buffered_body_bytes)),
        routes: routes.into(),
        fold_case: s.case_insensitive_paths,
    })
}

/// How the proxy mints resource tokens: its key, its Access Server (four-party), and the
/// scopes it knows (the routes' and `scope_descriptions`').
fn resource_tokens(
    s: &ResourceProxySection,
    signer: &Arc<dyn Signer>,
    kid: &str,
) -> Result<ResourceTokens, CliError> {
    let scopes: std::collections::BTreeSet<String> = s
        .routes
        .iter()
        .filter_map(|r| r.scope.as_deref())
        .flat_map(|scope| scope.split(' '))
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .chain(s.scope_descriptions.keys().cloned())
        .collect();
    let mut tokens = ResourceTokens::new(Arc::clone(signer), kid).scopes(scopes);
    if let Some(a) = &s.access_server {
        tokens = tokens.access_server(server_id("resource_proxy.access_server", a)?);
    }
    if let Some(list) = &s.trusted_person_servers {
        let ids = list
            .iter()
            .map(|p| server_id("resource_proxy.trusted_person_servers", p))
            .collect::<Result<Vec<_>, _>>()?;
        tokens = tokens.person_servers(ids);
    }
    Ok(tokens)
}

/// Each configured route, as its matcher and its resource layer over the upstream.
fn served_routes(
    s: &ResourceProxySection,
    resource: &Resource,
    clock: &Arc<dyn Clock>,
    upstream: &Upstream,
    shared: &shared::Shared,
    oauth: Option<&oauth::OAuthBase>,
) -> Result<Vec<ServedRoute>, CliError> {
    let mut out = Vec::with_capacity(s.routes.len());
    // One bound for the bodies every route reads whole.
    let budget = aauth_resource::BodyBudget::new(s.max_buffered_body_bytes);
    for (i, r) in s.routes.iter().enumerate() {
        let mut route = resource.route(policy(r)?);
        if r.access == ProxyAccess::SessionToken {
            route = route.sessions(Arc::clone(&shared.sessions), s.sessions.roll);
        }
        let mut layer = AAuthLayer::new(route, Arc::clone(clock))
            .max_body(s.max_body_bytes)
            .body_budget(budget.clone());
        if let Some(access) = oauth.and_then(|o| o.access(r)) {
            layer = layer.oauth(access);
        }
        let defers = s.defer_auth_token && r.access == ProxyAccess::AuthToken;
        if defers {
            let prefix = format!("{PENDING_PREFIX}{i}/");
            layer = layer.defer_auth_token(DeferredAuth::new(Arc::clone(&shared.held), &prefix));
        }
        out.push(ServedRoute {
            matcher: Matcher::new(r, s.case_insensitive_paths)?,
            label: route_label(r.path.strip_suffix("/*").unwrap_or(&r.path)),
            // A body the decision does not need goes on as it arrives; one it does (a
            // covered digest, a held call) is read whole and checked first.
            service: layer.streaming().layer(upstream.clone()),
            defers,
        });
    }
    Ok(out)
}

/// The verification policy of the route `r`: its access mode, its scope (an auth-token
/// route's, and only theirs), its body coverage.
fn policy(r: &ProxyRoute) -> Result<RoutePolicy, CliError> {
    let scope_error = |reason: &str| CliError::Usage {
        flag: "resource_proxy.routes.scope",
        reason: format!("route {:?}: {reason}", r.path),
    };
    let access = match r.access {
        ProxyAccess::AgentToken => Access::AgentToken,
        ProxyAccess::SessionToken => Access::SessionToken,
        ProxyAccess::PersonToken => Access::PersonToken,
        ProxyAccess::AuthToken => Access::AuthToken,
    };
    let mut policy = RoutePolicy::new(access);
    match (r.access, r.scope.as_deref().map(str::trim)) {
        (ProxyAccess::AuthToken, Some(scope)) if !scope.is_empty() => {
            policy = policy.scope(scope);
        }
        (ProxyAccess::AuthToken, _) => {
            return Err(scope_error("an auth-token route needs its scope"));
        }
        // What the upstream granted the session (`x-aauth-grant-session: SCOPE`) must
        // cover it.
        (ProxyAccess::SessionToken, Some(scope)) if !scope.is_empty() => {
            policy = policy.scope(scope);
        }
        (_, Some(_)) => {
            return Err(scope_error(
                "only an auth-token or a session-token route has a scope",
            ));
        }
        (_, None) => {}
    }
    if r.require_body_coverage {
        policy = policy.require_body_coverage();
    }
    Ok(policy)
}

/// `aauth config check` of `[resource_proxy]`: what `build` would refuse, without
/// building.
pub(crate) fn check(c: &Config) -> Result<(), CliError> {
    let s = section(c)?;
    upstream::parse_url(&s.upstream)?;
    for r in &s.routes {
        Matcher::new(r, s.case_insensitive_paths)?;
        policy(r)?;
    }
    if let Some(a) = &s.access_server {
        server_id("resource_proxy.access_server", a)?;
    }
    for p in s.trusted_person_servers.iter().flatten() {
        server_id("resource_proxy.trusted_person_servers", p)?;
    }
    for i in &s.revoking_issuers {
        server_id("resource_proxy.revoking_issuers", i)?;
    }
    oauth::check(s)?;
    shared::check(c)
}

/// The revocation endpoint, when someone may revoke: the issuers `revoking_issuers`
/// names, and the `access_server`, which issues this resource's auth tokens and so may
/// always revoke them (draft -11: an Access Server passes its revocations on to the
/// resources of the tokens it issued); without it, its revocations would be refused and
/// its tokens stay good here until they expire.
fn revocation_endpoint(
    c: &Config,
    s: &ResourceProxySection,
    id: &ServerId,
    reach: &crate::net::Reach,
    clock: &Arc<dyn Clock>,
    shared: &shared::Shared,
) -> Result<Option<RevocationEndpoint>, CliError> {
    let mut issuers = s
        .revoking_issuers
        .iter()
        .map(|i| server_id("resource_proxy.revoking_issuers", i))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(a) = &s.access_server {
        let access_server = server_id("resource_proxy.access_server", a)?;
        if !issuers.contains(&access_server) {
            issuers.push(access_server);
        }
    }
    if issuers.is_empty() {
        return Ok(None);
    }
    let resolver = DiscoveryResolver::new(KeyCache::new(
        Arc::new(reach.fetcher()),
        Arc::clone(clock),
        CacheConfig::default(),
    ))
    .allow_signers(issuers.iter().map(ServerId::as_str));
    if issuers.iter().any(|i| i == id) {
        return Err(config_error(
            c,
            "resource_proxy.revoking_issuers",
            "the resource itself is no issuer of the tokens it takes",
        ));
    }
    Ok(Some(
        RevocationEndpoint::new(
            id,
            Arc::new(resolver),
            &issuers,
            Arc::clone(&shared.revocations),
        )
        .replay_guard(shared.revocation_replay()),
    ))
}

/// The resource's metadata document and JWKS.
fn published(
    c: &Config,
    s: &ResourceProxySection,
    id: &ServerId,
    signer: &dyn Signer,
    kid: &str,
    authorize: bool,
    revoke: bool,
) -> Result<Published, CliError> {
    let url = |path: &str| {
        HttpsUrl::endpoint(&format!("{}{path}", id.as_str())).map_err(|e| config_error(c, "id", e))
    };
    let mut doc = ResourceMetadata::new(id.clone());
    doc.common.jwks_uri = Some(url(JWKS_PATH)?);
    doc.common.name.clone_from(&s.name);
    doc.common.description.clone_from(&s.description);
    // One access mode for the whole API is declared; mixed routes declare none.
    let mut modes = s.routes.iter().map(|r| mode(r.access));
    let first = modes.next();
    if modes.all(|m| Some(m) == first) {
        doc.access_mode = first;
    }
    if authorize {
        doc.authorization_endpoint = Some(url(AUTHORIZE_PATH)?);
    }
    if revoke {
        doc.revocation_endpoint = Some(url(REVOKE_PATH)?);
    }
    if !s.scope_descriptions.is_empty() {
        doc.scope_descriptions = Some(s.scope_descriptions.clone());
    }
    if s.routes.iter().any(|r| r.require_body_coverage) {
        doc.additional_signature_components =
            vec!["content-type".to_owned(), "content-digest".to_owned()];
    }
    let mut jwk = signer.public_key().to_jwk();
    jwk.kid = Some(kid.to_owned());
    Ok(Published::new(&doc).jwks_rotating(JWKS_PATH, &[jwk], &crate::keyring::retiring(c)?))
}

/// The metadata's name for `access`.
fn mode(access: ProxyAccess) -> AccessMode {
    match access {
        ProxyAccess::AgentToken => AccessMode::AgentToken,
        ProxyAccess::SessionToken => AccessMode::SessionToken,
        ProxyAccess::PersonToken => AccessMode::PersonToken,
        ProxyAccess::AuthToken => AccessMode::AuthToken,
    }
}

/// What the proxy answers itself: its documents, the authorization and revocation
/// endpoints.
struct Own {
    published: Published,
    authorize: Option<Route>,
    revoke: Option<RevocationEndpoint>,
}

#[async_trait::async_trait]
impl Endpoint for Own {
    async fn respond(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Option<Response<Bytes>> {
        if let Some(doc) = self
            .published
            .respond_at(&parts.method, parts.uri.path(), now)
        {
            return Some(doc);
        }
        match parts.uri.path() {
            AUTHORIZE_PATH => {
                let route = self.authorize.as_ref()?;
                Some(if parts.method == http::Method::POST {
                    route.authorization_response(parts, body, now).await
                } else {
                    method_not_allowed()
                })
            }
            REVOKE_PATH => Some(self.revoke.as_ref()?.handle(parts, body, now).await),
            _ => None,
        }
    }
}

fn method_not_allowed() -> Response<Bytes> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
    r
}

impl Proxy {
    /// The route whose pending URL `path` is, if it holds calls: exactly
    /// `/aauth/pending/{index}/{id}`, the index written as the proxy writes it and the id
    /// one segment of base64url. Anything else under `/aauth/` is the proxy's own (a
    /// `404` there), never a route's, so it is never forwarded.
    fn pending_route(&self, path: &str) -> Option<&ServedRoute> {
        let route = self.routes.get(pending_index(path)?)?;
        route.defers.then_some(route)
    }
}

/// The route index of a pending URL, `/aauth/pending/{index}/{id}`: the index in the
/// digits the proxy writes, the id one base64url segment, then `.` and the digits of the
/// hold's expiry (as `aauth_resource::DeferredAuth` writes it); `None` for anything else.
fn pending_index(path: &str) -> Option<usize> {
    let (index, id) = path.strip_prefix(PENDING_PREFIX)?.split_once('/')?;
    let i = index.parse::<usize>().ok()?;
    let (random, expires) = id.split_once('.').unwrap_or((id, "0"));
    let one_id = !random.is_empty()
        && random
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !expires.is_empty()
        && expires.bytes().all(|b| b.is_ascii_digit());
    (i.to_string() == index && one_id).then_some(i)
}

/// Whether the proxy answers `path` itself.
fn own_path(path: &str) -> bool {
    matches!(
        path,
        "/healthz"
            | "/readyz"
            | "/.well-known/aauth-resource.json"
            | "/.well-known/oauth-protected-resource"
    ) || path.starts_with(OWN_PREFIX)
}

/// The refusal of a request no route can be chosen for as an upstream would read it: a
/// target that is not an absolute path (`CONNECT host:port`, or `GET host` which hyper
/// reads as authority-form, path empty, while the upstream is sent `/`; `OPTIONS *`),
/// a `CONNECT` that is not a WebSocket over HTTP/2, a method in lower case (`get`,
/// which some frameworks fold into the `GET` a route may not allow).
fn unroutable<B>(req: &Request<B>) -> Option<Response<ProxyBody>> {
    if req.method() == http::Method::CONNECT && !upstream::is_h2_websocket(req) {
        return Some(problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT: this is not a forward proxy",
        ));
    }
    if !req.uri().path().starts_with('/') {
        return Some(problem(
            StatusCode::BAD_REQUEST,
            "the request target must be an absolute path",
        ));
    }
    if req
        .method()
        .as_str()
        .bytes()
        .any(|b| b.is_ascii_lowercase())
    {
        return Some(problem(
            StatusCode::BAD_REQUEST,
            "a method in lower case (methods are case-sensitive)",
        ));
    }
    // Rails, Laravel, Symfony and Express's method-override read the method to run from
    // `_method`: a `POST` admitted as one would run as the `DELETE` it names.
    let overrides = req.uri().query().is_some_and(|q| {
        q.split('&').any(|pair| {
            pair.split('=')
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("_method"))
        })
    });
    if overrides {
        return Some(problem(
            StatusCode::BAD_REQUEST,
            "a `_method` parameter: the route is chosen by the request's own method",
        ));
    }
    None
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

impl Service<Request<crate::deadline::InBody>> for Proxy {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<crate::deadline::InBody>) -> BoxFuture {
        upstream::note_peer(&mut req);
        if let Some(refused) = unroutable(&req) {
            return Box::pin(async move { Ok(refused) });
        }
        let path = req.uri().path();
        // The proxy's own answers are marked by their endpoint service; a route's here,
        // with its label.
        let (mut route, label) = match self.pending_route(path) {
            // A pending URL's label is `/aauth`, whatever its id.
            Some(r) => (r.service.clone(), RouteLabel::new(route_label(path))),
            None if own_path(path) => {
                let answer = self.own.call(req);
                return Box::pin(async move { Ok(answer.await?.map(ProxyBody::stream)) });
            }
            None if routes::ambiguous_path(path) => {
                let r = problem(
                    StatusCode::BAD_REQUEST,
                    "a path with dot or encoded segments",
                );
                return Box::pin(async move { Ok(r) });
            }
            None => {
                // A WebSocket over HTTP/2 is routed as the `GET` it stands for.
                let method = if upstream::is_h2_websocket(&req) {
                    &http::Method::GET
                } else {
                    req.method()
                };
                let path = routes::match_form(path, self.fold_case);
                match self
                    .routes
                    .iter()
                    .find(|r| r.matcher.matches(method, &path))
                {
                    Some(r) => (r.service.clone(), RouteLabel::new(r.label.clone())),
                    None => {
                        let r = problem(StatusCode::NOT_FOUND, "no route for this request");
                        return Box::pin(async move { Ok(r) });
                    }
                }
            }
        };
        Box::pin(async move {
            std::future::poll_fn(|cx| {
                Service::<Request<crate::deadline::InBody>>::poll_ready(&mut route, cx)
            })
            .await?;
            let mut answer = route.call(req).await?;
            answer.extensions_mut().insert(Routed);
            answer.extensions_mut().insert(label);
            Ok(answer)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{pending_index, unroutable};

    /// Targets and methods no route is chosen for: refused before any route is looked
    /// at, with what was wrong.
    #[test]
    fn targets_that_are_not_paths_and_methods_in_lower_case_are_refused() {
        let status = |method: &str, target: &str| {
            let req = http::Request::builder()
                .method(method)
                .uri(target)
                .body(())
                .unwrap();
            unroutable(&req).map(|r| r.status().as_u16())
        };
        // `GET resource.example` (authority-form: no path) would go upstream as `/`.
        assert_eq!(status("GET", "resource.example:443"), Some(400));
        assert_eq!(status("OPTIONS", "*"), Some(400));
        assert_eq!(status("CONNECT", "upstream.internal:22"), Some(405));
        assert_eq!(status("get", "/admin"), Some(400));
        assert_eq!(status("GET", "/admin"), None);
        assert_eq!(status("GET", "https://resource.example/admin"), None);
        assert_eq!(status("PROPFIND", "/dav/"), None);
        assert_eq!(status("POST", "/items/1?_method=DELETE"), Some(400));
        assert_eq!(status("POST", "/items/1?a=1&_METHOD=delete"), Some(400));
        assert_eq!(status("GET", "/items?my_method=x"), None);
    }

    #[test]
    fn only_a_pending_url_as_the_proxy_writes_it_is_a_routes() {
        assert_eq!(pending_index("/aauth/pending/2/AbC-_9"), Some(2));
        assert_eq!(pending_index("/aauth/pending/2/AbC-_9.1796485401"), Some(2));
        for path in [
            "/aauth/pending/2/../../../admin/users",
            "/aauth/pending/+2/x",
            "/aauth/pending/02/x",
            "/aauth/pending/2/a/b",
            "/aauth/pending/2/",
            "/aauth/pending/2/a%2e",
            "/aauth/pending/2/..",
            "/aauth/pending/2/a.",
            "/aauth/pending/2/.1",
            "/aauth/pending/2/a.1.2",
            "/aauth/pending/2/a.b",
            "/aauth/pending/x/y",
            "/files/aauth/pending/2/x",
        ] {
            assert_eq!(pending_index(path), None, "{path}");
        }
    }
}
