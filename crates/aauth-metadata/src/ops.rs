//! Running a role as a service (feature `ops`): a request id and one log line per request
//! ([`RequestLogLayer`], with `tracing`), and the health endpoints ([`WithHealth`]:
//! `/healthz` and `/readyz`). The `aauth` command serves every role with them; an
//! application that embeds a role in its own axum or hyper server adds the same.
//!
//! What is logged is chosen so that a log never carries a credential: the method, the
//! path without its query (an interaction code travels in one), the status, the time
//! taken, the request id, and the error code and requirement a refusal names
//! (`Signature-Error`'s `error`, `AAuth-Requirement`'s `requirement`). No header value,
//! token, signature or body is logged.
//!
//! ```
//! use std::sync::Arc;
//! use aauth_keys::time::{FixedClock, UnixTime};
//! use aauth_metadata::ops::{RequestLogLayer, WithHealth};
//! use aauth_metadata::serve::{Endpoint, EndpointService};
//! use tower_layer::Layer;
//!
//! struct Role;
//! #[async_trait::async_trait]
//! impl Endpoint for Role {
//!     async fn respond(
//!         &self,
//!         _: &http::request::Parts,
//!         _: &[u8],
//!         _: UnixTime,
//!     ) -> Option<http::Response<bytes::Bytes>> {
//!         None
//!     }
//! }
//!
//! let role = Arc::new(WithHealth::new(Arc::new(Role)));
//! let service = RequestLogLayer::new("person-server")
//!     .layer(EndpointService::new(role, Arc::new(FixedClock::new(UnixTime(0)))));
//! # drop(service);
//! ```

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aauth_keys::rand::{OsRandom, random_id};
use aauth_keys::time::UnixTime;
use bytes::Bytes;
use http::header::HeaderName;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use tracing::Instrument;

use crate::serve::{Endpoint, json_response};

/// The request-id header: taken from the request when it is a sane id (1–128 characters
/// of `A–Z a–z 0–9 - _ .`), otherwise generated; always returned on the response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id, in the request's extensions for the service to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Whether `v` is an id this service keeps (else it makes its own).
fn acceptable(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A fresh id: 16 random bytes, base64url.
fn fresh_id() -> String {
    // A failing operating-system RNG leaves the request unidentified, not refused.
    random_id(&mut OsRandom, 16).unwrap_or_else(|_| "unidentified".to_owned())
}

/// The tower layer that gives each request its id and logs it once it is answered.
#[derive(Debug, Clone)]
pub struct RequestLogLayer {
    role: &'static str,
    routes: RouteLabels,
}

impl RequestLogLayer {
    /// Log lines name `role` (e.g. `person-server`).
    #[must_use]
    pub fn new(role: &'static str) -> Self {
        Self {
            role,
            routes: RouteLabels::default(),
        }
    }
}

impl<S> tower_layer::Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> RequestLog<S> {
        RequestLog {
            inner,
            role: self.role,
            routes: self.routes.clone(),
        }
    }
}

/// The service of [`RequestLogLayer`].
#[derive(Debug, Clone)]
pub struct RequestLog<S> {
    inner: S,
    role: &'static str,
    routes: RouteLabels,
}

/// At most this many values of the metrics' `route` label per [`RequestLogLayer`];
/// requests to routes first seen past it are counted as `other`.
pub const MAX_ROUTE_LABELS: usize = 64;

/// The `route` label values a layer has used: bounded, so that clients asking for paths
/// of their own invention cannot grow the metrics without end (a Prometheus series per
/// value, never dropped), and taken only from answers of routes the service knows, so
/// that such clients cannot fill it either and leave the real routes counted as `other`.
#[derive(Debug, Clone, Default)]
struct RouteLabels(Arc<Mutex<BTreeSet<String>>>);

impl RouteLabels {
    /// The label of an answered request to `route` ([`route_label`]). A new label is
    /// taken only from the answer of a route the service knows (marked
    /// [`Routed`](crate::serve::Routed): a role's own answer, its refusals included) or a
    /// success (`2xx`, `3xx`: what a service that marks nothing, a proxy's upstream,
    /// answered); any other answer (a refusal before routing: `400`, `408`, `413`, `503`;
    /// a refusal of a made-up path) is counted under its route only if that route
    /// already has its label, else as `other`. A `404` (a path nothing serves) is always
    /// `other`, as is a route first seen once the set is full.
    fn label(&self, route: String, status: StatusCode, routed: bool) -> String {
        if status == StatusCode::NOT_FOUND || route == OTHER {
            return OTHER.to_owned();
        }
        let Ok(mut seen) = self.0.lock() else {
            return OTHER.to_owned();
        };
        let may_add = routed || status.is_success() || status.is_redirection();
        if seen.contains(&route) {
            route
        } else if may_add && seen.len() < MAX_ROUTE_LABELS {
            seen.insert(route.clone());
            route
        } else {
            OTHER.to_owned()
        }
    }
}

impl RouteLabels {
    /// The label a service chose for its answer ([`RouteLabel`]): its own, whatever the
    /// status, while the set has room.
    fn chosen(&self, route: &RouteLabel) -> String {
        let Ok(mut seen) = self.0.lock() else {
            return OTHER.to_owned();
        };
        if seen.contains(&route.0) || seen.len() < MAX_ROUTE_LABELS {
            seen.insert(route.0.clone());
            route.0.clone()
        } else {
            OTHER.to_owned()
        }
    }
}

/// In a response's extensions: the metrics' `route` label of the configured route that
/// answered, chosen by the service in place of the one [`route_label`] reads off the
/// request's path. A service whose routes are patterns (a proxy's `/api/*`, served by
/// an upstream that answers any path under it) sets it, so that the paths its clients
/// ask for never become labels. Keep the values few: one per configured route.
///
/// ```
/// use aauth_metadata::ops::RouteLabel;
///
/// let mut answer = http::Response::new(());
/// answer.extensions_mut().insert(RouteLabel::new("/api"));
/// assert_eq!(answer.extensions().get::<RouteLabel>().map(RouteLabel::as_str), Some("/api"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLabel(String);

impl RouteLabel {
    /// The label `label` (a route's name, such as its pattern's [`route_label`]).
    #[must_use]
    pub fn new(label: impl Into<String>) -> Self {
        Self(label.into())
    }

    /// The label.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The label of a request whose route is not counted by itself.
const OTHER: &str = "other";

impl<S, B, R> tower_service::Service<Request<B>> for RequestLog<S>
where
    S: tower_service::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| acceptable(v))
            .map_or_else(fresh_id, str::to_owned);
        if let Ok(v) = HeaderValue::from_str(&id) {
            req.headers_mut().insert(REQUEST_ID, v);
        }
        req.extensions_mut().insert(RequestId(id.clone()));
        let span = tracing::info_span!(
            "request",
            role = self.role,
            request_id = %id,
            method = %req.method(),
            path = %req.uri().path(),
        );
        let started = Instant::now();
        let (role, route) = (self.role, route_label(req.uri().path()));
        let routes = self.routes.clone();
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Box::pin(
            async move {
                let result = future.await;
                let took = started.elapsed();
                match result {
                    Ok(mut resp) => {
                        let route = match resp.extensions().get::<RouteLabel>() {
                            Some(chosen) => routes.chosen(chosen),
                            None => {
                                let routed =
                                    resp.extensions().get::<crate::serve::Routed>().is_some();
                                routes.label(route, resp.status(), routed)
                            }
                        };
                        log_response(&resp, took, role, &route);
                        if let Ok(v) = HeaderValue::from_str(&id) {
                            resp.headers_mut().insert(REQUEST_ID, v);
                        }
                        Ok(resp)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, took_ms = millis(took), "the service failed");
                        Err(e)
                    }
                }
            }
            .instrument(span),
        )
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The `route` of `path`: its first segment (letters, digits, `-`, `_` and `.`, such as
/// `/jwks.json`, starting with a letter or digit), or a whole `/.well-known/` path (few
/// values: never an identifier). Unknown shapes are `other`. As a metrics label it is also
/// bounded by the layer ([`MAX_ROUTE_LABELS`]).
pub fn route_label(path: &str) -> String {
    if path.starts_with("/.well-known/") && path.len() <= 64 {
        return path.to_owned();
    }
    let first = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    if first.is_empty() {
        "/".to_owned()
    } else if first.len() <= 32
        && first
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && first
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        format!("/{first}")
    } else {
        OTHER.to_owned()
    }
}

/// One line for the answered request (its status, time, and what a refusal names), and
/// the request metrics ([`crate::metric`]).
fn log_response<R>(resp: &Response<R>, took: Duration, role: &'static str, route: &str) {
    let status = resp.status().as_u16();
    let signature_error = member(resp, "signature-error", "error");
    let requirement = member(resp, "aauth-requirement", "requirement");
    let oauth_error = oauth_error(resp);
    let took_ms = millis(took);
    metrics::counter!(
        crate::metric::HTTP_REQUESTS,
        "role" => role,
        "route" => route.to_owned(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!(crate::metric::HTTP_DURATION, "role" => role, "route" => route.to_owned())
        .record(took.as_secs_f64());
    if signature_error.is_some() || requirement.is_some() || oauth_error.is_some() {
        metrics::counter!(
            crate::metric::REFUSALS,
            "role" => role,
            "signature_error" => signature_error.unwrap_or_default(),
            "requirement" => requirement.unwrap_or_default(),
            "oauth_error" => oauth_error.unwrap_or_default()
        )
        .increment(1);
    }
    if let Some(e) = oauth_error {
        tracing::info!(status, took_ms, oauth_error = e, requirement, "refused");
        return;
    }
    match (signature_error, requirement) {
        (None, None) if resp.status().is_server_error() => {
            tracing::warn!(status, took_ms, "answered");
        }
        (None, None) => tracing::info!(status, took_ms, "answered"),
        (Some(e), None) => tracing::info!(status, took_ms, signature_error = e, "refused"),
        (None, Some(r)) => tracing::info!(status, took_ms, requirement = r, "refused"),
        (Some(e), Some(r)) => tracing::info!(
            status,
            took_ms,
            signature_error = e,
            requirement = r,
            "refused"
        ),
    }
}

/// The value of `key=` in the structured-field header `name` of `resp`, if it is a
/// token (a code the draft defines, never a credential); anything else is not logged.
fn member<R>(resp: &Response<R>, name: &str, key: &str) -> Option<&'static str> {
    let value = resp.headers().get(name)?.to_str().ok()?;
    let token = value.split([';', ',']).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k == key).then(|| v.trim_matches('"'))
    })?;
    CODES.iter().copied().find(|c| *c == token)
}

/// The RFC 6750 / RFC 9449 `error` of the response's `WWW-Authenticate` challenges
/// (`Bearer` or `DPoP`), if one names a code of [`OAUTH_CODES`].
fn oauth_error<R>(resp: &Response<R>) -> Option<&'static str> {
    resp.headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (_, rest) = v.split_once("error=\"")?;
            let code = rest.split('"').next()?;
            OAUTH_CODES.iter().copied().find(|c| *c == code)
        })
}

/// The OAuth error codes a log line may name (RFC 6750 §3.1, RFC 9449 §7.1, §9).
const OAUTH_CODES: &[&str] = &[
    "invalid_request",
    "invalid_token",
    "insufficient_scope",
    "invalid_dpop_proof",
    "use_dpop_nonce",
];

/// The codes a log line may name (anything else is left out rather than copied from a
/// header into a log).
const CODES: &[&str] = &[
    // Signature-Error (Signature-Key -09 §5.4, draft -11 §11.3.4)
    "unsupported_algorithm",
    "unsupported_scheme",
    "invalid_signature",
    "invalid_input",
    "invalid_request",
    "invalid_key",
    "unknown_key",
    "invalid_jwt",
    "expired_jwt",
    "revoked_jwt",
    "clock_skew",
    "issuer_missing",
    "issuer_mismatch",
    "cache_miss",
    // AAuth-Requirement
    "agent-token",
    "person-token",
    "auth-token",
    "session-token",
    "interaction",
    "approval",
    "clarification",
    "claims",
];

/// Whether the service is ready: each check is asked on `/readyz`.
#[async_trait::async_trait]
pub trait ReadyCheck: Send + Sync {
    /// `Ok` when what it checks is reachable; `Err` with a short reason (no secrets: it
    /// is shown to whoever asks `/readyz`).
    async fn check(&self) -> Result<(), String>;
}

/// How long `/readyz` waits for each check before calling it failed.
pub const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A role with `/healthz` (the process answers) and `/readyz` (every [`ReadyCheck`]
/// passes within [`READY_CHECK_TIMEOUT`]: `200`, else `503` naming the checks that
/// failed). Every other path goes to the role.
pub struct WithHealth<E: ?Sized> {
    role: Arc<E>,
    checks: Vec<(&'static str, Arc<dyn ReadyCheck>)>,
    /// The last answer of `/readyz` and when it was made: checks run at most once per
    /// [`READY_ANSWER_KEPT`], however often they are asked.
    last: tokio::sync::Mutex<Option<(Instant, StatusCode, serde_json::Value)>>,
}

/// How long `/readyz` keeps its answer: an endpoint anyone may ask, whose checks reach
/// the store and Redis, turns a flood into at most one round of checks per this.
pub const READY_ANSWER_KEPT: Duration = Duration::from_secs(1);

impl<E: ?Sized> std::fmt::Debug for WithHealth<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.checks.iter().map(|(n, _)| *n).collect();
        f.debug_struct("WithHealth")
            .field("checks", &names)
            .finish_non_exhaustive()
    }
}

impl<E: ?Sized> WithHealth<E> {
    /// `role`, with no readiness checks yet (`/readyz` then answers as `/healthz`).
    pub fn new(role: Arc<E>) -> Self {
        Self {
            role,
            checks: Vec::new(),
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Adds a readiness check, named in `/readyz`'s answer.
    #[must_use]
    pub fn check(mut self, name: &'static str, check: Arc<dyn ReadyCheck>) -> Self {
        self.checks.push((name, check));
        self
    }

    /// The role.
    pub fn role(&self) -> &Arc<E> {
        &self.role
    }

    async fn ready(&self) -> Response<Bytes> {
        // One caller runs the checks; those who ask meanwhile get its answer.
        let mut last = self.last.lock().await;
        if let Some((at, status, body)) = last.as_ref()
            && at.elapsed() < READY_ANSWER_KEPT
        {
            return json_response(*status, body);
        }
        let (status, body) = self.run_checks().await;
        let answer = json_response(status, &body);
        *last = Some((Instant::now(), status, body));
        answer
    }

    async fn run_checks(&self) -> (StatusCode, serde_json::Value) {
        let mut failed = Vec::new();
        for (name, check) in &self.checks {
            let outcome = tokio::time::timeout(READY_CHECK_TIMEOUT, check.check())
                .await
                .unwrap_or_else(|_| Err("no answer in time".to_owned()));
            if let Err(reason) = outcome {
                failed.push(serde_json::json!({ "check": name, "reason": reason }));
            }
        }
        if failed.is_empty() {
            (StatusCode::OK, serde_json::json!({ "status": "ready" }))
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "status": "unavailable", "failed": failed }),
            )
        }
    }
}

#[async_trait::async_trait]
impl<E: Endpoint + ?Sized> Endpoint for WithHealth<E> {
    async fn respond(&self, parts: &Parts, body: &[u8], now: UnixTime) -> Option<Response<Bytes>> {
        match (parts.method == http::Method::GET, parts.uri.path()) {
            (true, "/healthz") => Some(json_response(
                StatusCode::OK,
                &serde_json::json!({ "status": "ok" }),
            )),
            (true, "/readyz") => Some(self.ready().await),
            _ => self.role.respond(parts, body, now).await,
        }
    }

    fn stop_holding(&self) {
        self.role.stop_holding();
    }
}

#[cfg(test)]
mod tests {
    use super::{
        HeaderValue, MAX_ROUTE_LABELS, Response, RouteLabel, RouteLabels, StatusCode, acceptable,
        oauth_error, route_label,
    };

    #[tokio::test]
    async fn readyz_runs_its_checks_at_most_once_per_interval() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        use super::{ReadyCheck, WithHealth};
        use crate::serve::Endpoint;

        struct Counting(AtomicUsize);
        #[async_trait::async_trait]
        impl ReadyCheck for Counting {
            async fn check(&self) -> Result<(), String> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Err("down".to_owned())
            }
        }
        struct Nothing;
        #[async_trait::async_trait]
        impl Endpoint for Nothing {
            async fn respond(
                &self,
                _: &http::request::Parts,
                _: &[u8],
                _: aauth_keys::time::UnixTime,
            ) -> Option<Response<bytes::Bytes>> {
                None
            }
        }
        let count = Arc::new(Counting(AtomicUsize::new(0)));
        let health = WithHealth::new(Arc::new(Nothing)).check("store", count.clone());
        let parts = http::Request::get("/readyz")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        for _ in 0..3 {
            let r = health
                .respond(&parts, b"", aauth_keys::time::UnixTime(0))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "answered from the last round"
        );
    }

    /// A label the service chose is used whatever the status (its route's `404`
    /// included), still within the bound.
    #[test]
    fn a_chosen_label_is_taken_whatever_the_status_within_the_bound() {
        let routes = RouteLabels::default();
        assert_eq!(routes.chosen(&RouteLabel::new("/api")), "/api");
        for i in 1..MAX_ROUTE_LABELS {
            assert_eq!(
                routes.chosen(&RouteLabel::new(format!("/r{i}"))),
                format!("/r{i}")
            );
        }
        assert_eq!(routes.chosen(&RouteLabel::new("/late")), "other");
        assert_eq!(routes.chosen(&RouteLabel::new("/api")), "/api");
        assert_eq!(
            routes.label("/api".into(), StatusCode::NOT_FOUND, true),
            "other",
            "a path-read label's 404 stays other"
        );
    }

    #[test]
    fn route_labels_are_bounded_and_paths_nothing_serves_are_other() {
        let routes = RouteLabels::default();
        assert_eq!(
            routes.label("/pending".into(), StatusCode::OK, false),
            "/pending"
        );
        assert_eq!(
            routes.label("/junk".into(), StatusCode::NOT_FOUND, true),
            "other"
        );
        for i in 1..MAX_ROUTE_LABELS {
            let route = format!("/r{i}");
            assert_eq!(
                routes.label(route.clone(), StatusCode::UNAUTHORIZED, true),
                route
            );
        }
        // Full: a new route is other, a known one keeps its label.
        assert_eq!(routes.label("/late".into(), StatusCode::OK, true), "other");
        assert_eq!(
            routes.label("/pending".into(), StatusCode::OK, true),
            "/pending"
        );
        // Every connection's service shares one set.
        let fresh = RouteLabels::default();
        let shared = fresh.clone();
        assert_eq!(shared.label("/a".into(), StatusCode::OK, false), "/a");
        assert!(fresh.0.lock().unwrap().contains("/a"));
    }

    /// Refusals of made-up paths before any route was chosen (`400`, `408`, `413`,
    /// `503`, not marked as a route's answer) never take a label: however many there
    /// are, the real routes still get theirs, and are counted under them when refused.
    #[test]
    fn refusals_before_routing_take_no_label() {
        let routes = RouteLabels::default();
        let refusals = [
            StatusCode::BAD_REQUEST,
            StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::REQUEST_TIMEOUT,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::UNAUTHORIZED,
        ];
        for i in 0..4 * MAX_ROUTE_LABELS {
            let status = refusals[i % refusals.len()];
            assert_eq!(
                routes.label(format!("/made-up-{i}"), status, false),
                "other"
            );
        }
        assert!(routes.0.lock().unwrap().is_empty());
        for i in 0..MAX_ROUTE_LABELS {
            let route = format!("/real{i}");
            assert_eq!(
                routes.label(route.clone(), StatusCode::BAD_REQUEST, true),
                route
            );
        }
        // A route with its label keeps it for a refusal before routing too.
        assert_eq!(
            routes.label("/real0".into(), StatusCode::PAYLOAD_TOO_LARGE, false),
            "/real0"
        );
    }

    /// Through the layer: a made-up path answered by the service itself (a `413` of its
    /// body) takes no label; the role's own answer does.
    #[tokio::test]
    async fn only_the_roles_own_answers_take_a_label() {
        use std::sync::Arc;

        use bytes::Bytes;
        use http_body_util::Full;
        use tower_layer::Layer;
        use tower_service::Service;

        use crate::serve::{Endpoint, EndpointService};

        struct Known;
        #[async_trait::async_trait]
        impl Endpoint for Known {
            async fn respond(
                &self,
                parts: &http::request::Parts,
                _: &[u8],
                _: aauth_keys::time::UnixTime,
            ) -> Option<Response<Bytes>> {
                (parts.uri.path() == "/token").then(|| {
                    let mut r = Response::new(Bytes::new());
                    *r.status_mut() = StatusCode::BAD_REQUEST;
                    r
                })
            }
        }
        let clock = Arc::new(aauth_keys::time::FixedClock::new(
            aauth_keys::time::UnixTime(0),
        ));
        let layer = super::RequestLogLayer::new("test");
        let routes = layer.routes.clone();
        let mut svc = layer.layer(EndpointService::new(Arc::new(Known), clock).body_limit(4));
        for i in 0..2 * MAX_ROUTE_LABELS {
            let req = http::Request::post(format!("/junk{i}"))
                .body(Full::new(Bytes::from_static(b"too large")))
                .unwrap();
            assert_eq!(svc.call(req).await.unwrap().status(), 413);
        }
        assert!(
            routes.0.lock().unwrap().is_empty(),
            "no made-up path labelled"
        );
        let req = http::Request::post("/token")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(svc.call(req).await.unwrap().status(), 400);
        assert!(routes.0.lock().unwrap().contains("/token"));
    }

    #[test]
    fn route_labels_never_carry_an_identifier() {
        assert_eq!(route_label("/pending/3f9aXy"), "/pending");
        assert_eq!(route_label("/revocation/abc"), "/revocation");
        assert_eq!(route_label("/"), "/");
        assert_eq!(
            route_label("/.well-known/aauth-person.json"),
            "/.well-known/aauth-person.json"
        );
        assert_eq!(route_label(&format!("/{}", "x".repeat(40))), "other");
        assert_eq!(route_label("/a%20b/c"), "other");
        assert_eq!(route_label("/jwks.json"), "/jwks.json");
        assert_eq!(route_label("/../etc"), "other");
        assert_eq!(route_label("/.hidden"), "other");
    }

    #[test]
    fn oauth_refusals_name_their_code_and_nothing_else() {
        let with = |values: &[&str]| {
            let mut r = Response::new(());
            for v in values {
                r.headers_mut().append(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            oauth_error(&r)
        };
        assert_eq!(
            with(&[
                r#"Bearer realm="api", scope="read""#,
                r#"DPoP error="use_dpop_nonce", algs="ES256""#
            ]),
            Some("use_dpop_nonce")
        );
        assert_eq!(
            with(&[r#"Bearer error="invalid_token", error_description="expired""#]),
            Some("invalid_token")
        );
        assert_eq!(
            with(&[r#"Bearer error="eyJ.a-token""#]),
            None,
            "never copied"
        );
        assert_eq!(with(&[]), None);
    }

    #[test]
    fn only_plain_ids_are_kept() {
        assert!(acceptable("abc-123_X.y"));
        assert!(!acceptable(""));
        assert!(!acceptable(&"a".repeat(129)));
        for bad in ["a b", "a\nb", "a;b", "ä", "a\"b"] {
            assert!(!acceptable(bad), "{bad:?}");
        }
    }
}
