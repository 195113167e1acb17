//! Serving a role (agent provider, Person Server, Access Server) over any tower stack.
//!
//! Each role is a sans-IO [`Endpoint`]: a request's head and whole body in, a response
//! out, with the time passed in. [`EndpointService`] is the one adapter from that to a
//! [`tower_service::Service`], so a role mounts on an axum `Router` (as its
//! `fallback_service`, or `nest_service` under a prefix the role's URLs already name), on
//! plain hyper through `hyper-util`'s `TowerToHyperService`, or behind any tower layer.
//! It reads the body into one buffer, up to a bound ([`DEFAULT_BODY_LIMIT`]: a larger one
//! is answered `413` before the role sees it), the bodies it holds at once bounded by a
//! [`BodyBudget`] (past it `503` with `Retry-After`).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aauth_keys::time::{Clock, UnixTime};
use bytes::{Buf, Bytes};
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};

use crate::budget::{BodyBudget, BudgetHold};

/// What failed inside a server (not the caller's fault): `500 server_error`. The
/// response says only which kind of failure it was; the cause stays in this error (its
/// `source`, for the server's logs), never on the wire.
///
/// ```
/// use aauth_metadata::serve::InternalError;
/// let e = InternalError::unreadable("stored agent key", "not a JWK");
/// assert_eq!(e.to_string(), "a stored agent key could not be read");
/// assert!(std::error::Error::source(&e).is_some());
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InternalError {
    /// Something this server wrote (a stored key, a proposal, a waiting request) does
    /// not read back.
    #[error("a {what} could not be read")]
    Unreadable {
        /// What.
        what: &'static str,
        /// Why.
        #[source]
        source: crate::store::StoreSource,
    },
    /// A token, a signature or a document could not be produced.
    #[error("could not produce {what}")]
    Produce {
        /// What.
        what: &'static str,
        /// Why.
        #[source]
        source: crate::store::StoreSource,
    },
    /// Keys another party publishes could not be fetched now (the caller may retry).
    #[error("the {whose} keys are unavailable")]
    KeysUnavailable {
        /// Whose keys (`agent provider's`, `resource's`, `issuer's`).
        whose: &'static str,
        /// What the fetch reported (for logs).
        reason: String,
    },
    /// The server is configured in a way that cannot answer this request (a policy
    /// asking for a step the server cannot take, a grant wider than the offer).
    #[error("misconfigured: {0}")]
    Misconfigured(&'static str),
    /// A rule of the server's own code did not hold (a bug): which one.
    #[error("internal invariant: {0}")]
    Invariant(&'static str),
}

impl InternalError {
    /// `what` did not read back, because of `source`.
    pub fn unreadable(
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Unreadable {
            what,
            source: Arc::from(source.into()),
        }
    }

    /// `what` could not be produced, because of `source`.
    pub fn produce(
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Produce {
            what,
            source: Arc::from(source.into()),
        }
    }
}

/// The largest request body an [`EndpointService`] reads by default: 64 KiB, well above
/// any AAuth token request, form or mission proposal.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// A JSON response (`application/json`) with `Cache-Control: no-store`: every answer
/// of a role carries a token, a pending URL or a person's state, none of it cacheable.
///
/// ```
/// use aauth_metadata::serve::json_response;
///
/// let r = json_response(http::StatusCode::OK, &serde_json::json!({ "ok": true }));
/// assert_eq!(r.headers()["content-type"], "application/json");
/// assert_eq!(r.headers()["cache-control"], "no-store");
/// assert_eq!(r.body().as_ref(), br#"{"ok":true}"#);
/// ```
#[must_use]
pub fn json_response(status: StatusCode, json: &serde_json::Value) -> Response<Bytes> {
    typed_json_response(status, json, "application/json")
}

/// Reports a server-side failure to the operator's log, with every cause in its chain: a
/// `500`'s body says only what failed, never why (a path, a database message, a peer's
/// answer), so the why goes here. A role calls it as it turns the failure into its
/// response; it logs only with the `ops` feature (a `tracing` subscriber then receives
/// it at `error`), and does nothing otherwise.
pub fn report_failure(failure: &(dyn std::error::Error + 'static)) {
    #[cfg(feature = "ops")]
    {
        let mut chain = failure.to_string();
        let mut source = failure.source();
        while let Some(s) = source {
            let said = s.to_string();
            if !chain.contains(&said) {
                chain.push_str(": ");
                chain.push_str(&said);
            }
            source = s.source();
        }
        // The Debug form keeps what Display leaves out for callers (a fetch's reason).
        tracing::error!(error = %chain, detail = ?failure, "the request failed on this server");
    }
    #[cfg(not(feature = "ops"))]
    let _ = failure;
}

/// An RFC 9457 problem (`application/problem+json`) with `Cache-Control: no-store`.
#[must_use]
pub fn problem_response(status: StatusCode, json: &serde_json::Value) -> Response<Bytes> {
    typed_json_response(status, json, "application/problem+json")
}

fn typed_json_response(
    status: StatusCode,
    json: &serde_json::Value,
    content_type: &'static str,
) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(json.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A role answering whole requests: sans-IO, the clock passed in.
#[async_trait::async_trait]
pub trait Endpoint: Send + Sync {
    /// The response to one request, or `None` when `parts` names none of the role's
    /// paths (the service then answers `404`).
    async fn respond(&self, parts: &Parts, body: &[u8], now: UnixTime) -> Option<Response<Bytes>>;

    /// The service is shutting down: answer the requests this role is holding (long
    /// polls) now, as they stand, and hold no new ones, so that in-flight requests end
    /// within the shutdown's deadline. The default holds nothing and does nothing.
    fn stop_holding(&self) {}
}

/// An [`Endpoint`] as a tower service (cheap to clone: three `Arc`s). It reads each body
/// whole, into one buffer, before the endpoint sees it: one past
/// [`EndpointService::body_limit`] is `413`, one whose reader gave up waiting for it (an
/// `io::Error` of kind `TimedOut` from the body, as a server's body deadline ends one)
/// `408`, any other failure `400`; one that would take the bodies held at once past the
/// service's [`BodyBudget`] ([`EndpointService::body_budget`]) `503` with `Retry-After`.
/// The body's buffer, and its share of the budget, are given back once the endpoint has
/// answered.
///
/// The endpoint's own answers carry [`Routed`] in their extensions; the service's (`404`
/// for a path the endpoint does not serve, and the refusals above) do not.
///
/// ```
/// use std::sync::Arc;
/// use aauth_keys::time::{FixedClock, UnixTime};
/// use aauth_metadata::serve::{Endpoint, EndpointService};
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use tower_service::Service;
///
/// struct Hello;
///
/// #[async_trait::async_trait]
/// impl Endpoint for Hello {
///     async fn respond(
///         &self,
///         parts: &http::request::Parts,
///         body: &[u8],
///         _now: UnixTime,
///     ) -> Option<http::Response<Bytes>> {
///         (parts.uri.path() == "/hello")
///             .then(|| http::Response::new(Bytes::from(format!("{} bytes", body.len()))))
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut svc = EndpointService::new(Arc::new(Hello), Arc::new(FixedClock::new(UnixTime(0))));
/// let req = http::Request::post("/hello").body(Full::new(Bytes::from_static(b"abc"))).unwrap();
/// let resp = svc.call(req).await.unwrap();
/// assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "3 bytes");
/// let req = http::Request::get("/other").body(Full::new(Bytes::new())).unwrap();
/// assert_eq!(svc.call(req).await.unwrap().status(), 404);
/// # });
/// ```
pub struct EndpointService<E: ?Sized> {
    endpoint: Arc<E>,
    clock: Arc<dyn Clock>,
    body_limit: usize,
    budget: BodyBudget,
}

impl<E: ?Sized> Clone for EndpointService<E> {
    fn clone(&self) -> Self {
        Self {
            endpoint: Arc::clone(&self.endpoint),
            clock: Arc::clone(&self.clock),
            body_limit: self.body_limit,
            budget: self.budget.clone(),
        }
    }
}

impl<E: ?Sized> fmt::Debug for EndpointService<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointService")
            .field("body_limit", &self.body_limit)
            .field("budget_available", &self.budget.available())
            .finish_non_exhaustive()
    }
}

impl<E: Endpoint + ?Sized> EndpointService<E> {
    /// Serves `endpoint`, reading the time from `clock`, with a [`BodyBudget`] of its own
    /// of [`DEFAULT_BODY_BUDGET`](crate::budget::DEFAULT_BODY_BUDGET) (shared by the
    /// service's clones: one per connection, say).
    #[must_use]
    pub fn new(endpoint: Arc<E>, clock: Arc<dyn Clock>) -> Self {
        Self {
            endpoint,
            clock,
            body_limit: DEFAULT_BODY_LIMIT,
            budget: BodyBudget::default(),
        }
    }

    /// Reads bodies up to `bytes` ([`DEFAULT_BODY_LIMIT`] by default); a larger one is
    /// answered `413` without reaching the endpoint.
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Holds the bodies being read and answered within `budget` (shared with every other
    /// service given it): a body that would take the bytes held past it is answered `503`
    /// with `Retry-After: 1` without reaching the endpoint. What a body holds is its
    /// buffer's size, taken before the buffer grows.
    #[must_use]
    pub fn body_budget(mut self, budget: BodyBudget) -> Self {
        self.budget = budget;
        self
    }
}

/// In a response's extensions: the response is the answer of a route its service knows
/// (an [`Endpoint`]'s own answer, through [`EndpointService`]), not a refusal of the
/// request before any route was chosen. The request metrics take their `route` labels
/// only from such answers (and from successes), so that paths a client makes up never
/// take one (`ops::RequestLogLayer`, feature `ops`). A service of its own marks its
/// routes' answers with it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed;

/// An RFC 9457 problem response from the adapter itself.
fn problem(status: StatusCode, error: &str, detail: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "type": "about:blank", "error": error, "detail": detail });
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

impl<E, B> tower_service::Service<http::Request<B>> for EndpointService<E>
where
    E: Endpoint + ?Sized + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            // The buffer and its share of the budget are kept until the endpoint answered.
            let (body, _held) = match read_body(body, this.body_limit, &this.budget).await {
                Ok(read) => read,
                Err(refused) => return Ok(refused),
            };
            let now = this.clock.now();
            Ok(match this.endpoint.respond(&parts, &body, now).await {
                Some(mut resp) => {
                    resp.extensions_mut().insert(Routed);
                    resp.map(Full::new)
                }
                None => problem(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
            })
        })
    }
}

/// Reads `body` whole into one buffer of at most `limit` bytes, the buffer's size taken
/// from `budget` before it grows: the body and what holds it of the budget, or the
/// refusal to answer with. Each frame is copied in and let go, so a body sent in many
/// small frames (HTTP/2 `DATA` frames, HTTP/1.1 chunks) costs its bytes, not a
/// bookkeeping entry per frame, and pins nothing of the connection's buffers.
async fn read_body<B>(
    body: B,
    limit: usize,
    budget: &BodyBudget,
) -> Result<(Bytes, BudgetHold), Response<Full<Bytes>>>
where
    B: http_body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut held = budget.hold();
    let mut read = Vec::new();
    let announced = body.size_hint().lower();
    if usize::try_from(announced).map_or(true, |n| n > limit) {
        // A `Content-Length` past the limit: refused before a byte is read.
        return Err(too_large());
    }
    // A body of announced length (`Content-Length`) is read into a buffer of that size.
    let announced = usize::try_from(announced).unwrap_or(0);
    if !make_room(&mut read, &mut held, announced, limit) {
        return Err(busy());
    }
    let mut body = std::pin::pin!(Limited::new(body, limit));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_error(&*e))?;
        // Trailers: not the body's bytes.
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        if !make_room(&mut read, &mut held, data.remaining(), limit) {
            return Err(busy());
        }
        while data.has_remaining() {
            let chunk = data.chunk();
            let n = chunk.len();
            read.extend_from_slice(chunk);
            data.advance(n);
        }
    }
    Ok((Bytes::from(read), held))
}

/// Makes room in `read` for `more` bytes, taking what its buffer grows by from `held`
/// first: `false`, and nothing allocated, when the budget has not that much left. The
/// buffer doubles (few copies), but never past `limit` unless `more` needs it.
fn make_room(read: &mut Vec<u8>, held: &mut BudgetHold, more: usize, limit: usize) -> bool {
    let needed = read.len().saturating_add(more);
    if needed <= read.capacity() {
        return true;
    }
    let size = read.capacity().saturating_mul(2).min(limit).max(needed);
    if !held.grow(size - read.capacity()) {
        return false;
    }
    read.reserve_exact(size - read.len());
    true
}

/// `413`: the body is larger than the service reads.
fn too_large() -> Response<Full<Bytes>> {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request",
        "the request body is larger than this server reads",
    )
}

/// `503` with `Retry-After: 1`: the service holds as many bodies as its budget allows.
fn busy() -> Response<Full<Bytes>> {
    let mut r = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "the server holds as many request bodies as it may; try again",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// What a body that could not be read whole is answered with.
fn body_error(e: &(dyn std::error::Error + 'static)) -> Response<Full<Bytes>> {
    if e.is::<http_body_util::LengthLimitError>() {
        too_large()
    } else if e
        .downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    {
        // A reader's deadline (an `io::Error` of kind `TimedOut`).
        problem(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request",
            "the request body did not arrive in time",
        )
    } else {
        problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request body could not be read",
        )
    }
}
