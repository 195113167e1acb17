//! `AAuthLayer::streaming`: a body the decision does not need reaches the inner service
//! as it arrives, beyond the cap; a body with a `Content-Digest`, or on a route that
//! requires body coverage, is read whole and checked first, and a refused request never
//! reaches it.

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use aauth_headers::Scheme;
use aauth_resource::{AAuthLayer, Access, ForwardBody, RoutePolicy};
use aauth_test_support::request::header;
use aauth_test_support::time::fixed_clock;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower_layer::Layer;
use tower_service::Service;

use crate::{signed, uncovered_body, world};

/// The inner service: records how each body came (`read` or `streamed`), answers 200.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<&'static str>>>);

impl Recorder {
    fn seen(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().clone()
    }
}

impl Service<Request<ForwardBody<Full<Bytes>>>> for Recorder {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ForwardBody<Full<Bytes>>>) -> Self::Future {
        let how = match req.body() {
            ForwardBody::Read(_) => "read",
            ForwardBody::Streamed(_) => "streamed",
            _ => "other",
        };
        self.0.lock().unwrap().push(how);
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    }
}

async fn status<S>(svc: &mut S, req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap)
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible>,
{
    let resp = svc.call(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let _ = body.collect().await;
    (parts.status, parts.headers)
}

#[tokio::test]
async fn a_body_the_decision_does_not_need_streams_and_a_digested_one_is_read_first() {
    let w = world();
    let token = w.agent_token(3600);
    let inner = Recorder::default();
    let mut svc = AAuthLayer::new(
        w.resource.route(RoutePolicy::new(Access::AgentToken)),
        fixed_clock(),
    )
    .max_body(8)
    .streaming()
    .layer(inner.clone());

    // Signed without its body (no Content-Digest): passed on unread, past the 8-byte cap.
    let (s, h) = status(&mut svc, uncovered_body(&w, &token)).await;
    assert_eq!(s, StatusCode::OK, "{h:?}");
    assert_eq!(inner.seen(), ["streamed"]);

    // With a Content-Digest: read whole and checked, so the cap applies...
    let (s, _) = status(
        &mut svc,
        signed(
            "POST",
            "/data",
            br#"{"a":1}"#,
            &w.agent,
            &Scheme::jwt(token.clone()),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(inner.seen(), ["streamed", "read"]);
    let (s, _) = status(
        &mut svc,
        signed(
            "POST",
            "/data",
            b"0123456789",
            &w.agent,
            &Scheme::jwt(token.clone()),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // ...and a body that is not the one digested never reaches the inner service.
    let mut tampered = signed(
        "POST",
        "/data",
        br#"{"a":1}"#,
        &w.agent,
        &Scheme::jwt(token.clone()),
    );
    *tampered.body_mut() = Full::new(Bytes::from_static(br#"{"a":2}"#));
    let (s, h) = status(&mut svc, tampered).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(header(&h, "signature-error").starts_with("error="), "{h:?}");

    // Unsigned: refused before anything.
    let unsigned = Request::post("/data")
        .header("host", "resource.example")
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    let (s, _) = status(&mut svc, unsigned).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        inner.seen(),
        ["streamed", "read"],
        "refused requests never reach it"
    );
}

#[tokio::test]
async fn a_route_that_requires_body_coverage_reads_every_body() {
    let w = world();
    let token = w.agent_token(3600);
    let inner = Recorder::default();
    let mut svc = AAuthLayer::new(
        w.resource
            .route(RoutePolicy::new(Access::AgentToken).require_body_coverage()),
        fixed_clock(),
    )
    .streaming()
    .layer(inner.clone());
    // A body signed without coverage: refused (it would have streamed elsewhere).
    let (s, h) = status(&mut svc, uncovered_body(&w, &token)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        header(&h, "signature-error").starts_with("error=invalid_input"),
        "{h:?}"
    );
    // Covered: read whole, checked, passed on.
    let (s, _) = status(
        &mut svc,
        signed(
            "POST",
            "/data",
            br#"{"a":1}"#,
            &w.agent,
            &Scheme::jwt(token),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(inner.seen(), ["read"]);
}

/// The inner service: answers once a permit of its gate is free.
#[derive(Clone)]
struct Gated(Arc<tokio::sync::Semaphore>);

type GatedFuture =
    std::pin::Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

impl Service<Request<ForwardBody<Full<Bytes>>>> for Gated {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = GatedFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<ForwardBody<Full<Bytes>>>) -> GatedFuture {
        let gate = Arc::clone(&self.0);
        Box::pin(async move {
            let _open = gate.acquire().await;
            Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
        })
    }
}

/// A budget shared by the routes bounds the bodies held read whole at once: a request's
/// bytes are held until its answer is ready, one that would take more is refused `503`
/// with `Retry-After` before it reaches the inner service, and the bytes come back.
#[tokio::test]
async fn bodies_read_whole_are_held_within_the_shared_budget() {
    let w = world();
    let token = w.agent_token(3600);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let budget = aauth_resource::BodyBudget::new(10);
    let svc = AAuthLayer::new(
        w.resource.route(RoutePolicy::new(Access::AgentToken)),
        fixed_clock(),
    )
    .max_body(64)
    .body_budget(budget.clone())
    .streaming()
    .layer(Gated(Arc::clone(&gate)));
    // Seven bytes each, each its own request (a replay would be refused).
    let seven =
        |body: &[u8; 7]| signed("POST", "/data", body, &w.agent, &Scheme::jwt(token.clone()));
    // A waits in the inner service, holding its 7 bytes.
    let mut a = svc.clone();
    let first = seven(br#"{"a":1}"#);
    let waiting = tokio::spawn(async move { status(&mut a, first).await.0 });
    for _ in 0..200 {
        if budget.available() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(budget.available(), 3);
    // B's 7 bytes do not fit beside them.
    let (s, h) = status(&mut svc.clone(), seven(br#"{"a":2}"#)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{h:?}");
    assert_eq!(header(&h, "retry-after"), "1");
    // A answered, its bytes are back, and C fits.
    gate.add_permits(10);
    assert_eq!(waiting.await.unwrap(), StatusCode::OK);
    assert_eq!(budget.available(), 10);
    let (s, _) = status(&mut svc.clone(), seven(br#"{"a":3}"#)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(budget.available(), 10);
}

/// The layer's budget is the roles' (`aauth_metadata::budget::BodyBudget`, one type): a
/// server shares one between its role's services and its resource layers, and the bytes
/// a service holds of it are not the layer's to take.
#[tokio::test]
async fn the_layer_and_a_roles_services_share_one_budget() {
    let w = world();
    let token = w.agent_token(3600);
    let budget = aauth_metadata::budget::BodyBudget::new(10);
    let svc = AAuthLayer::new(
        w.resource.route(RoutePolicy::new(Access::AgentToken)),
        fixed_clock(),
    )
    .max_body(64)
    .body_budget(budget.clone())
    .streaming()
    .layer(Gated(Arc::new(tokio::sync::Semaphore::new(10))));
    let seven =
        |body: &[u8; 7]| signed("POST", "/data", body, &w.agent, &Scheme::jwt(token.clone()));
    // A role's service reads a body of 4 bytes: 7 more do not fit beside it.
    let mut held = budget.hold();
    assert!(held.grow(4));
    let (s, h) = status(&mut svc.clone(), seven(br#"{"a":1}"#)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{h:?}");
    // Its answer ready, its bytes are back, and the layer's body fits.
    drop(held);
    let (s, _) = status(&mut svc.clone(), seven(br#"{"a":2}"#)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(budget.available(), 10);
}

/// A body that never arrives, counting how often it was asked for a frame: a request
/// the layer answers without reading its body answers at once, and leaves it unpolled.
#[derive(Clone)]
struct Never {
    polled: Arc<std::sync::atomic::AtomicUsize>,
    len: u64,
}

impl http_body::Body for Never {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.polled
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Poll::Pending
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.len)
    }
}

/// Answers 200 to whatever reaches it, whatever its body.
#[derive(Clone)]
struct Ok200;

impl<B> Service<Request<B>> for Ok200 {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        std::future::ready(Ok(Response::new(Full::new(Bytes::new()))))
    }
}

/// The signature is checked before a body that must be read whole (a `Content-Digest`
/// to check) is read: a request whose signature fails, or whose signer is unknown, is
/// refused without a byte of its body read or held against the budget, so strangers
/// cannot fill the memory the budget bounds. A request that verifies then has its body
/// read.
#[tokio::test]
async fn a_digested_body_is_read_only_after_its_signature_verified() {
    let w = world();
    let token = w.agent_token(3600);
    let budget = aauth_resource::BodyBudget::new(1 << 20);
    let layer = AAuthLayer::new(
        w.resource.route(RoutePolicy::new(Access::AgentToken)),
        fixed_clock(),
    )
    .body_budget(budget.clone());
    let body = br#"{"transfer":100}"#;
    let good = signed("POST", "/data", body, &w.agent, &Scheme::jwt(token.clone()));
    assert!(good.headers().contains_key("content-digest"));
    let never = |req: &Request<Full<Bytes>>| {
        let polled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (parts, _) = req.clone().into_parts();
        let body = Never {
            polled: Arc::clone(&polled),
            len: 1 << 20,
        };
        (Request::from_parts(parts, body), polled)
    };
    let mut refusals = Vec::new();
    // The signature broken (another path than the one signed); a stranger's key
    // (an agent token whose key is not the signer's).
    let mut moved = good.clone();
    *moved.uri_mut() = "https://resource.example/other".parse().unwrap();
    refusals.push(moved);
    let stranger = aauth_keys::PrivateKey::ed25519_from_seed(&[9; 32]);
    refusals.push(signed(
        "POST",
        "/data",
        body,
        &stranger,
        &Scheme::jwt(token.clone()),
    ));
    for (streaming, req) in [false, true]
        .into_iter()
        .flat_map(|s| refusals.iter().map(move |r| (s, r)))
    {
        let (req, polled) = never(req);
        let call = async {
            if streaming {
                layer.clone().streaming().layer(Ok200).call(req).await
            } else {
                layer.clone().layer(Ok200).call(req).await
            }
        };
        let resp = tokio::time::timeout(std::time::Duration::from_secs(5), call)
            .await
            .expect("answered without waiting for the body")
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "{:?}",
            resp.headers()
        );
        assert_eq!(polled.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(budget.available(), 1 << 20);
    }
    // The request that verifies: its body is read and checked, then it is admitted.
    let resp = layer
        .clone()
        .streaming()
        .layer(Ok200)
        .call(good)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{:?}", resp.headers());
}
