//! The tower layer: verifies each request before the inner service sees it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aauth_keys::time::Clock;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use tower_layer::Layer;
use tower_service::Service;

use aauth_keys::time::UnixTime;
use aauth_signing::{BodyHint, KeyIdentity, VerifiedRequest};
use aauth_tokens::BoundToken;

use crate::deferred::{
    Cancel, Claim, DeferredAuth, Held, HeldState, HoldError, StoredResponse, pending_response,
    problem,
};
use crate::gate::{Gated, Outcome};
use crate::{Admitted, Refusal, Route};

/// The default cap on a request body the layer buffers for the digest check (1 MiB).
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Verifies every request against a [`Route`]; admitted requests reach the inner service
/// with an [`crate::Admitted`] in their extensions and the body buffered; refused ones are
/// answered by the layer and never reach it.
///
/// The body is read whole (up to [`DEFAULT_MAX_BODY`], else `413`) because
/// `Content-Digest` must be checked before the handler runs; it is read only once the
/// request's signature verified (an unsigned request, a stranger's key or a bad signature
/// is refused with the body unread), and the rest (the digest, the token's revocation, the
/// replay check, the route's token gate) is checked after.
#[derive(Clone)]
pub struct AAuthLayer {
    /// Shared: a layer (and its service) is cloned per request.
    route: Arc<Route>,
    clock: Arc<dyn Clock>,
    max_body: usize,
    budget: Option<crate::BodyBudget>,
    deferred: Option<Arc<DeferredAuth>>,
    #[cfg(feature = "oauth")]
    oauth: Option<Arc<crate::OAuthAccess>>,
}

impl std::fmt::Debug for AAuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AAuthLayer")
            .field("route", &self.route)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl AAuthLayer {
    /// A layer for `route`, reading the time from `clock`.
    #[must_use]
    pub fn new(route: Route, clock: Arc<dyn Clock>) -> Self {
        Self {
            route: Arc::new(route),
            clock,
            max_body: DEFAULT_MAX_BODY,
            budget: None,
            deferred: None,
            #[cfg(feature = "oauth")]
            oauth: None,
        }
    }

    /// Admits OAuth clients beside AAuth agents on this route (feature `oauth`): a
    /// request with `Authorization: Bearer` and no AAuth signature is checked by `oauth`
    /// instead of the AAuth verifier, and every `401` carries both `AAuth-Requirement`
    /// and `WWW-Authenticate: Bearer` (see [`crate::OAuthAccess`]).
    #[cfg(feature = "oauth")]
    #[must_use]
    pub fn oauth(mut self, oauth: crate::OAuthAccess) -> Self {
        self.oauth = Some(Arc::new(oauth));
        self
    }

    /// The route's OAuth side, if it has one.
    #[cfg(feature = "oauth")]
    pub(crate) fn oauth_access(&self) -> Option<&crate::OAuthAccess> {
        self.oauth.as_deref()
    }

    /// `resp`, with the `Bearer` challenge added to a `401` when the route also takes
    /// OAuth tokens.
    pub(crate) fn answer(&self, resp: Response<Bytes>) -> Response<Bytes> {
        #[cfg(feature = "oauth")]
        if let Some(oauth) = &self.oauth {
            return oauth.add_challenge(resp, self.clock.now());
        }
        resp
    }

    /// Delivers `requirement=auth-token` as a `202` that holds the invocation (draft -11
    /// §8.2): the first poll of the pending URL presenting a valid auth token runs it,
    /// and its result is replayed to that auth token until it expires. The layer must
    /// also see the requests to `deferred`'s pending URLs.
    #[must_use]
    pub fn defer_auth_token(mut self, deferred: DeferredAuth) -> Self {
        self.deferred = Some(Arc::new(deferred));
        self
    }

    /// The largest body accepted, in bytes.
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Bounds the bodies held read whole at once by every layer (and role service)
    /// sharing `budget` (see [`crate::BodyBudget`]): past it, `503` with `Retry-After`
    /// ([`crate::Refusal::Busy`]), as the body's bytes arrive; a request's bytes are
    /// given back when its answer is ready. Without one, only [`AAuthLayer::max_body`]
    /// bounds each: a layer reads a body whole when its decision needs it (a
    /// `Content-Digest` to check, a route that requires body coverage, a call to hold),
    /// which the request's head decides, and that costs a client nothing to write, so
    /// many requests at once (two hundred HTTP/2 streams on one connection, each up to
    /// `max_body`) make the server hold that much memory until the bodies' deadlines,
    /// verified or not.
    #[must_use]
    pub fn body_budget(mut self, budget: crate::BodyBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    pub(crate) fn route(&self) -> &Route {
        &self.route
    }

    pub(crate) fn deferred(&self) -> Option<&DeferredAuth> {
        self.deferred.as_deref()
    }

    pub(crate) fn now(&self) -> UnixTime {
        self.clock.now()
    }
}

impl<S> AAuthService<S> {
    /// `inner` behind `layer`.
    pub(crate) fn new(inner: S, layer: AAuthLayer) -> Self {
        Self { inner, layer }
    }
}

/// `resp` with the rolled session token, if one was issued, in `AAuth-Access`, unless
/// the inner service answered with a session of its own (a new grant replaces the
/// session it was made on; one response carries one credential, draft -11
/// §AAuth-Access Response Header).
pub(crate) fn with_rolled<B>(
    mut resp: Response<B>,
    rolled: Option<aauth_headers::SessionToken>,
) -> Response<B> {
    if let Some(token) = rolled
        && let Ok(mut v) = http::HeaderValue::from_str(token.secret())
    {
        v.set_sensitive(true);
        resp.headers_mut()
            .entry(aauth_headers::names::AAUTH_ACCESS)
            .or_insert(v);
    }
    resp
}

impl<S> Layer<S> for AAuthLayer {
    type Service = AAuthService<S>;

    fn layer(&self, inner: S) -> AAuthService<S> {
        AAuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AAuthLayer`] produces.
#[derive(Clone)]
pub struct AAuthService<S> {
    inner: S,
    layer: AAuthLayer,
}

impl<S> std::fmt::Debug for AAuthService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AAuthService")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResB> Service<Request<B>> for AAuthService<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResB: From<Bytes> + Body<Data = Bytes> + Send + 'static,
    ResB::Error: std::fmt::Display,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            // A pending URL is polled by the agent whose call is held, signing: an OAuth
            // token there is not looked at (the signature check answers), so that a
            // client with the route's scope is never passed on to the inner service at
            // the layer's pending prefix.
            let pending = layer
                .deferred
                .as_ref()
                .is_some_and(|d| d.id_of(parts.uri.path()).is_some());
            #[cfg(feature = "oauth")]
            if let Some(oauth) = layer.oauth.as_ref().filter(|_| !pending) {
                match oauth.step(&parts, layer.clock.now()).await {
                    crate::oauth::OAuthStep::NotOAuth => {}
                    crate::oauth::OAuthStep::Admit(caller) => {
                        let (bytes, _held) = match read_body(body, &layer).await {
                            Ok(read) => read,
                            Err(refusal) => {
                                return Ok(refusal.into_http_response().map(ResB::from));
                            }
                        };
                        parts.extensions.insert(*caller);
                        return inner
                            .call(Request::from_parts(parts, Full::new(bytes)))
                            .await;
                    }
                    crate::oauth::OAuthStep::Refuse(resp) => {
                        return Ok(with_requirement(&layer.route, &parts, resp).map(ResB::from));
                    }
                }
            }
            // An unsigned request is answered without reading its body.
            if let Some(refusal) = layer.route.precheck(&parts) {
                return Ok(layer.answer(refusal.into_http_response()).map(ResB::from));
            }
            // The signature first: a body is read (and held against the budget) only for
            // a request whose signer is known and whose signature verified.
            let hint = {
                let size = body.size_hint();
                BodyHint::from_size(size.exact(), size.lower())
            };
            let head = match layer
                .route
                .verify_head(&parts, hint, layer.clock.now())
                .await
            {
                Ok(head) => head,
                Err(refusal) => {
                    return Ok(layer.answer(refusal.into_http_response()).map(ResB::from));
                }
            };
            // Held until the answer is ready (the bytes are the request's until then).
            let (bytes, _held) = match read_body(body, &layer).await {
                Ok(read) => read,
                Err(refusal) => return Ok(refusal.into_http_response().map(ResB::from)),
            };
            let now = layer.clock.now();
            if pending
                && let Some(d) = &layer.deferred
                && let Some(id) = d.id_of(parts.uri.path())
            {
                let request = match layer.route.verify_body(head, &parts, &bytes, now).await {
                    Ok(request) => request,
                    Err(refusal) => return Ok(refusal.into_http_response().map(ResB::from)),
                };
                let id = id.to_owned();
                return poll_pending(&layer.route, d, &id, parts, request, now, inner).await;
            }
            match layer
                .route
                .decide_with_body(head, &parts, &bytes, now)
                .await
            {
                Outcome::Admit(admitted) => {
                    let rolled = admitted.rolled.clone();
                    parts.extensions.insert(*admitted);
                    let resp = inner
                        .call(Request::from_parts(parts, Full::new(bytes)))
                        .await?;
                    Ok(with_rolled(resp, rolled))
                }
                Outcome::AuthChallenge {
                    resource_token,
                    request,
                } => Ok(match &layer.deferred {
                    // A call not held gets the plain `401`: with the `Bearer` challenge
                    // too when the route takes OAuth.
                    Some(d) => {
                        layer.answer(hold(d, parts, bytes, &resource_token, &request, now).await)
                    }
                    None => layer.answer(
                        Refusal::Challenge {
                            requirement: aauth_headers::Requirement::AuthToken { resource_token },
                        }
                        .into_http_response(),
                    ),
                }
                .map(ResB::from)),
                Outcome::Refuse(refusal) => {
                    Ok(layer.answer(refusal.into_http_response()).map(ResB::from))
                }
            }
        })
    }
}

/// Reads the body whole, up to the layer's `max_body` bytes (`413` beyond), holding its
/// bytes of the layer's budget (`503` when it runs out) until the hold is dropped.
async fn read_body<B>(
    body: B,
    layer: &AAuthLayer,
) -> Result<(Bytes, Option<aauth_metadata::budget::BudgetHold>), Refusal>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max = layer.max_body;
    let mut held = layer.budget.as_ref().map(crate::BodyBudget::hold);
    let mut body = std::pin::pin!(Limited::new(body, max));
    let mut read = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                // Trailers: not the body's bytes.
                Err(_) => continue,
            },
            Err(e) => return Err(body_error(e, max)),
        };
        if let Some(h) = &mut held
            && !h.grow(data.len())
        {
            return Err(Refusal::Busy {
                reason: "the server holds as many request bodies as it may; try again".to_owned(),
            });
        }
        read.extend_from_slice(&data);
    }
    Ok((read.freeze(), held))
}

/// What a body that could not be read whole is refused as.
fn body_error(e: Box<dyn std::error::Error + Send + Sync>, max: usize) -> Refusal {
    if e.downcast_ref::<http_body_util::LengthLimitError>()
        .is_some()
    {
        Refusal::TooLarge { limit: max }
    } else if e
        .downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    {
        Refusal::BodyTimedOut {
            reason: e.to_string(),
        }
    } else {
        Refusal::UnreadableBody {
            reason: e.to_string(),
        }
    }
}

/// An OAuth `401` with the route's `AAuth-Requirement` beside its `WWW-Authenticate`:
/// the same answer an unsigned request gets, so an AAuth agent knows what to do too.
#[cfg(feature = "oauth")]
pub(crate) fn with_requirement(
    route: &Route,
    parts: &http::request::Parts,
    mut resp: Response<Bytes>,
) -> Response<Bytes> {
    if resp.status() == StatusCode::UNAUTHORIZED
        && let Some(refusal) = route.precheck(parts)
        && let Some(v) = refusal
            .into_http_response()
            .headers()
            .get(aauth_headers::names::AAUTH_REQUIREMENT)
    {
        resp.headers_mut()
            .insert(aauth_headers::names::AAUTH_REQUIREMENT, v.clone());
    }
    resp
}

fn requirement_value(resource_token: String) -> Option<http::HeaderValue> {
    aauth_headers::AAuthRequirement::new(aauth_headers::Requirement::AuthToken { resource_token })
        .serialize()
        .ok()
        .and_then(|v| http::HeaderValue::from_str(&v).ok())
}

/// The person a verified person or auth token names: `(ps, sub)`.
fn person_of(request: &VerifiedRequest) -> Option<(String, String)> {
    match &request.identity {
        KeyIdentity::Token(t) => match t.as_ref() {
            BoundToken::Person(p) => Some((p.claims.iss.as_str().to_owned(), p.claims.sub.clone())),
            BoundToken::Auth(a) => Some((a.claims.ps.as_str().to_owned(), a.claims.sub.clone())),
            _ => None,
        },
        _ => None,
    }
}

/// Holds the invocation and answers `202` with its pending URL.
async fn hold(
    d: &DeferredAuth,
    parts: http::request::Parts,
    body: Bytes,
    resource_token: &str,
    request: &VerifiedRequest,
    now: UnixTime,
) -> Response<Bytes> {
    // Only what is cheap to keep is held: a larger request is told to come back with an
    // auth token, which is what the deferral would have waited for anyway. So is an
    // upgrade (a WebSocket over HTTP/1.1, or over HTTP/2 as an extended `CONNECT`): its
    // connection is the point and cannot be run at a poll, and over HTTP/2 a `202` to a
    // `CONNECT` is a success, which opens the tunnel instead of carrying the pending URL.
    let upgrade =
        parts.method == Method::CONNECT || parts.headers.contains_key(http::header::UPGRADE);
    if upgrade || body.len() > d.max_held_body {
        return challenge(resource_token);
    }
    let Some((ps, sub)) = person_of(request) else {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "no person to hold for",
        );
    };
    let expires = now.plus(d.ttl);
    let id = match d.new_id(expires) {
        Ok(id) => id,
        Err(e) => return unavailable(&e.reason),
    };
    let held = Held::new(
        parts,
        body,
        request.key.thumbprint().as_str(),
        &ps,
        &sub,
        expires,
    )
    .under(&d.prefix);
    match d.store.hold(&id, held, now).await {
        Ok(()) => pending_response(
            &format!("{}{id}", d.prefix),
            requirement_value(resource_token.to_owned()),
            0,
        ),
        // The store is at its bounds: anyone who runs a Person Server can fill it with
        // fresh people. The call is not held, and the agent is told to come back with an
        // auth token (the stateless answer), so the service goes on without holding.
        Err(e @ (HoldError::Full { .. } | HoldError::OverBudget { .. })) => {
            tracing::debug!(error = %e, "not held: the plain auth-token challenge instead");
            challenge(resource_token)
        }
        Err(e) => not_held(&e),
    }
}

/// The plain `401 requirement=auth-token` with `resource_token`: the answer to a call
/// that is not held. The agent obtains its auth token and sends the call again.
fn challenge(resource_token: &str) -> Response<Bytes> {
    Refusal::Challenge {
        requirement: aauth_headers::Requirement::AuthToken {
            resource_token: resource_token.to_owned(),
        },
    }
    .into_http_response()
}

/// The answer to a request the store would not hold for any other reason than its
/// bounds: `429` for a presenter past its quota, `503` for a store that cannot answer,
/// each with `Retry-After`.
fn not_held(e: &HoldError) -> Response<Bytes> {
    let status = e.status();
    let error = if status == StatusCode::TOO_MANY_REQUESTS {
        "rate_limited"
    } else {
        "temporarily_unavailable"
    };
    let mut r = problem(status, error, &e.to_string());
    r.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(e.retry_after()),
    );
    r
}

fn unavailable(reason: &str) -> Response<Bytes> {
    let mut r = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        reason,
    );
    r.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    r
}

fn replay<ResB: From<Bytes>>(stored: StoredResponse) -> Response<ResB> {
    let mut r = Response::new(ResB::from(stored.body));
    *r.status_mut() = stored.status;
    *r.headers_mut() = stored.headers;
    r
}

/// `410` for a pending URL that has ended (cancelled, run, or past the time its result
/// was kept): draft -11 §Pending URL Security (`410 Gone` once ended) with its §Polling
/// Error Codes `invalid_code`.
fn ended() -> Response<Bytes> {
    problem(
        StatusCode::GONE,
        "invalid_code",
        "this pending request has ended",
    )
}

/// `409` for a `DELETE` of a call a poll is already running ([`Cancel::Running`]): it may
/// have acted, so it is not cancelled; it runs to its end and its result is kept for the
/// auth token it runs for. The draft names no code for this (its §Polling Error Codes have
/// none that fits): `invalid_request`, as the Person Server answers its own conflicts.
fn too_late_to_cancel() -> Response<Bytes> {
    problem(
        StatusCode::CONFLICT,
        "invalid_request",
        "this held request is already running and can no longer be cancelled; it runs to \
         its end, and its result is kept for the auth token it runs for: poll with that \
         token for it",
    )
}

/// The answer for a pending id with no record of it the agent may see: draft -11 §Polling
/// Error Codes, `408 expired` once the time in its id has passed (the agent may start
/// afresh), whoever asks; `404` before.
fn absent(id: &str, now: UnixTime) -> Response<Bytes> {
    if DeferredAuth::expired_id(id, now) {
        problem(
            StatusCode::REQUEST_TIMEOUT,
            "expired",
            "this pending request expired before an auth token came",
        )
    } else {
        problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such pending request",
        )
    }
}

/// The pending request `id` as the agent of a verified poll (`request`) may see it: the
/// request its own, the method `GET` (a `DELETE` is answered here: cancelled if still
/// pending, [`Cancel`]). `Err` is the answer when there is nothing more to do: for the
/// agent whose request it is, `410` once it has ended (draft -11 §Pending URL Security),
/// whatever the method or the token; only a `GET` of a call that has run goes on, to
/// [`replayable`].
async fn pollable(
    d: &DeferredAuth,
    id: &str,
    parts: &http::request::Parts,
    request: &VerifiedRequest,
    now: UnixTime,
) -> Result<(Held, HeldState), Response<Bytes>> {
    let thumbprint = request.key.thumbprint();
    let (held, state) = match d.store.get(id, now).await {
        // Only the agent key that made the request may see it, and only through the layer
        // it was held by (layers sharing a store do not run each other's calls); anyone
        // else learns nothing.
        Ok(Some((h, s))) if h.jkt == thumbprint.as_str() && h.prefix == d.prefix => (h, s),
        Ok(_) => return Err(absent(id, now)),
        Err(e) => return Err(unavailable(&e.reason)),
    };
    // Ended: `410`, before the token gate (which would answer a person token with a fresh
    // resource token, as for a call still pending). A `GET` of a call that has run may be
    // the replay to its auth token.
    let replay = parts.method == Method::GET && matches!(state, HeldState::Done { .. });
    if !(state.is_open() || replay) {
        return Err(ended());
    }
    if parts.method == Method::DELETE {
        // Answered here, an `Err` only in the sense of "nothing more to do". What the
        // store found when it cancelled (in one step) decides: the state read above may
        // have changed since (a poll claimed it, or its time ran out).
        return Err(match d.store.cancel(id, now).await {
            Ok(Cancel::Cancelled) => {
                let mut r = Response::new(Bytes::new());
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
            Ok(Cancel::Running) => too_late_to_cancel(),
            Ok(Cancel::Ended) => ended(),
            Ok(Cancel::Missing) => absent(id, now),
            Err(e) => unavailable(&e.reason),
        });
    }
    if parts.method != Method::GET {
        let mut r = problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "GET or DELETE",
        );
        r.headers_mut().insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, DELETE"),
        );
        return Err(r);
    }
    Ok((held, state))
}

/// A poll of a call that has run for the auth token `done`: its kept result only to that
/// auth token, presented by the agent that made the request for the person it was held
/// for and admitted by the route as when it ran (RS-36); `410` to anything else (draft
/// -11 §Pending URL Security), never a `202` with a fresh resource token. `Err` is the
/// answer; `Ok` is the replay.
fn replayable(
    route: &Route,
    d: &DeferredAuth,
    id: &str,
    request: &VerifiedRequest,
    held: &Held,
    done: &str,
    now: UnixTime,
) -> Result<(), Box<Response<Bytes>>> {
    let presented = match &request.identity {
        KeyIdentity::Token(t) => match t.as_ref() {
            BoundToken::Auth(a) => Some(a.claims.jti.as_str()),
            _ => None,
        },
        _ => None,
    };
    if presented != Some(done) {
        return Err(Box::new(ended()));
    }
    match holder(route, d, id, request, held, now) {
        Ok(_) => Ok(()),
        Err(r) if r.status() == StatusCode::ACCEPTED => Err(Box::new(ended())),
        Err(r) => Err(r),
    }
}

/// The `(jti, exp)` of the auth token a poll presents for the held request: the route
/// admits it and it is for the person the request was held for. `Err` is the answer
/// otherwise (still pending, with a fresh resource token, or refused).
fn holder(
    route: &Route,
    d: &DeferredAuth,
    id: &str,
    request: &VerifiedRequest,
    held: &Held,
    now: UnixTime,
) -> Result<(String, u64), Box<Response<Bytes>>> {
    match route.gate(request, now) {
        Ok(()) => {}
        // Still no (sufficient) auth token: still pending, with a fresh resource token.
        Err(Gated::AuthChallenge(resource_token)) => {
            return Err(Box::new(pending_response(
                &format!("{}{id}", d.prefix),
                requirement_value(resource_token),
                5,
            )));
        }
        Err(Gated::Refuse(r)) => return Err(Box::new(r.into_http_response())),
    }
    let token = match &request.identity {
        KeyIdentity::Token(t) => Some(t.as_ref()),
        _ => None,
    };
    let Some(BoundToken::Auth(auth)) = token else {
        return Err(Box::new(problem(
            StatusCode::FORBIDDEN,
            "invalid_request",
            "an auth token is required",
        )));
    };
    if auth.claims.ps.as_str() != held.ps || auth.claims.sub != held.sub {
        return Err(Box::new(
            Refusal::Forbidden {
                detail: "the auth token is for another person than the held request".to_owned(),
            }
            .into_http_response(),
        ));
    }
    Ok((auth.claims.jti.clone(), auth.claims.exp))
}

/// A poll (or cancel) of a pending URL.
async fn poll_pending<S, ResB>(
    route: &Route,
    d: &DeferredAuth,
    id: &str,
    parts: http::request::Parts,
    request: VerifiedRequest,
    now: UnixTime,
    inner: S,
) -> Result<Response<ResB>, S::Error>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>>,
    ResB: From<Bytes> + Body<Data = Bytes>,
    ResB::Error: std::fmt::Display,
{
    let answer = |r: Response<Bytes>| Ok(r.map(ResB::from));
    let (held, state) = match pollable(d, id, &parts, &request, now).await {
        Ok(found) => found,
        Err(r) => return answer(r),
    };
    if let HeldState::Done { jti, response } = state {
        return match replayable(route, d, id, &request, &held, &jti, now) {
            Ok(()) => Ok(replay(response)),
            Err(r) => answer(*r),
        };
    }
    let (jti, exp) = match holder(route, d, id, &request, &held, now) {
        Ok(t) => t,
        Err(r) => return answer(*r),
    };
    let settled = match d.store.claim(id, &jti, UnixTime(exp), now).await {
        Ok(c) => c,
        Err(e) => return answer(unavailable(&e.reason)),
    };
    match settled {
        Claim::Run => {}
        Claim::Busy => return answer(pending_response(&format!("{}{id}", d.prefix), None, 1)),
        Claim::Settled(HeldState::Done {
            jti: done,
            response,
        }) if done == jti => {
            return Ok(replay(response));
        }
        Claim::Settled(_) => return answer(ended()),
    }
    // From here the invocation runs: whatever happens, it is settled, never released.
    let mut running = RunGuard::new(d, id, &jti, UnixTime(exp));
    let stored = run_held(held, request, inner, d.max_held_result).await;
    // Should the result not be kept now, the guard tries once more when it is dropped.
    running.result = Some(stored.clone());
    if let Err(e) = d
        .store
        .finish(id, &jti, stored.clone(), UnixTime(exp))
        .await
    {
        return answer(unavailable(&e.reason));
    }
    running.settled = true;
    Ok(replay(stored))
}

/// Runs the held invocation as the auth token's holder: its response, or the `500
/// server_error` (the status the draft's error table gives the code) that stands for it
/// when the inner service fails, its response cannot be read (it may have acted: the
/// failure is the result, kept and replayed, never a retry), or its body is larger than
/// `max_result` bytes (too large to keep until the auth token's `exp`).
async fn run_held<S, ResB>(
    held: Held,
    request: VerifiedRequest,
    mut inner: S,
    max_result: usize,
) -> StoredResponse
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>>,
    ResB: Body<Data = Bytes>,
    ResB::Error: std::fmt::Display,
{
    let mut req = Request::new(Full::new(held.body));
    *req.method_mut() = held.method;
    *req.uri_mut() = held.uri;
    *req.version_mut() = held.version;
    *req.headers_mut() = held.headers;
    req.extensions_mut().insert(Admitted {
        request,
        session: None,
        rolled: None,
    });
    let Ok(resp) = inner.call(req).await else {
        tracing::warn!("a held request failed to run: the service behind the layer failed");
        return stored(problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the held request failed to run; whether it took effect is unknown, and it is \
             not run again",
        ));
    };
    let (rparts, rbody) = resp.into_parts();
    match read_capped(rbody, max_result).await {
        Ok(Some(body)) => StoredResponse::new(rparts.status, rparts.headers, body),
        Ok(None) => {
            tracing::warn!(
                limit = max_result,
                status = rparts.status.as_u16(),
                "a held request's result is larger than the layer keeps: a 500 is kept in its place"
            );
            stored(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                &format!(
                    "the held request ran, but its result was larger than the {max_result} \
                     bytes this resource keeps for a held request; it is not run again"
                ),
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "a held request's response could not be read");
            stored(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                &format!(
                    "the held request ran, but its response could not be read ({e}); it is \
                     not run again"
                ),
            ))
        }
    }
}

/// The body read whole, up to `max` bytes; `None` past them (the rest is left unread).
/// Trailers are dropped, as a kept result has none.
async fn read_capped<B: Body<Data = Bytes>>(
    body: B,
    max: usize,
) -> Result<Option<Bytes>, B::Error> {
    let mut body = std::pin::pin!(body);
    let mut kept = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if kept.len().saturating_add(data.len()) > max {
                return Ok(None);
            }
            kept.extend_from_slice(&data);
        }
    }
    Ok(Some(kept.freeze()))
}

/// A held invocation a poll is running. Dropped before it is settled (the poll's future
/// dropped when its client went away, or the result not kept), it settles the record
/// through [`crate::HeldStore::abandon`]: with the result when there is one, else a
/// `500` saying the outcome is unknown. The record neither stays running until its hold
/// expires nor runs again.
struct RunGuard {
    store: Arc<dyn crate::HeldStore>,
    id: String,
    jti: String,
    keep_until: UnixTime,
    result: Option<StoredResponse>,
    settled: bool,
}

impl RunGuard {
    fn new(d: &DeferredAuth, id: &str, jti: &str, keep_until: UnixTime) -> Self {
        Self {
            store: Arc::clone(&d.store),
            id: id.to_owned(),
            jti: jti.to_owned(),
            keep_until,
            result: None,
            settled: false,
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let response = self.result.take().unwrap_or_else(|| {
            stored(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the poll running this held request ended before its result was kept; \
                 whether it took effect is unknown, and it is not run again",
            ))
        });
        self.store
            .abandon(&self.id, &self.jti, response, self.keep_until);
    }
}

/// A response as a kept result.
fn stored(resp: Response<Bytes>) -> StoredResponse {
    let (parts, body) = resp.into_parts();
    StoredResponse::new(parts.status, parts.headers, body)
}
