//! The resource layer end to end in process: each refusal with its exact status, headers
//! and code, and the handler never run for a refused request.
#![allow(
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use aauth_headers::Scheme;
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{FixedClock, UnixTime};
use aauth_resource::{AAuthLayer, Access, Admitted, Resource, RoutePolicy};
use aauth_signing::{hwk_scheme, sign_request};
use aauth_test_support::request::{self, header};
use aauth_test_support::service::Answering;
use aauth_test_support::time::fixed_clock;
use aauth_test_support::{NOW, id, tokens};
use aauth_tokens::{AgentId, AgentTokenBuilder, PersonTokenBuilder, StaticIssuerKeys};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower_layer::Layer;
use tower_service::Service;

mod deferred;
mod held;
mod held_running;
mod held_runs;
mod instances;
mod modes;
mod oauth;
mod shared;
mod stores;
mod streaming;

/// The protected handler: counts its calls and names who it served.
type Handler = Answering;

fn handler() -> Handler {
    Answering::new(|req| {
        req.extensions()
            .get::<Admitted>()
            .map(|a| {
                a.agent()
                    .map(|id| id.as_str().to_owned())
                    .or_else(|| {
                        a.person()
                            .map(|(iss, sub)| format!("person {} {sub}", iss.as_str()))
                    })
                    .or_else(|| a.pseudonym().map(|t| format!("pseudonym {}", t.as_str())))
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    })
}

struct World {
    provider: PrivateKey,
    agent: PrivateKey,
    resource: Resource,
}

fn world() -> World {
    let provider = PrivateKey::ed25519_from_seed(&[1; 32]);
    let iss = id("https://agent.example");
    let keys = StaticIssuerKeys::new()
        .with(
            &iss,
            "aauth-agent.json",
            "key-1",
            provider.public_key().clone(),
        )
        // The same issuer as a Person Server, so that a person token verifies and is then
        // refused for its type where an agent token is required.
        .with(
            &iss,
            "aauth-person.json",
            "key-1",
            provider.public_key().clone(),
        );
    World {
        provider,
        agent: PrivateKey::ed25519_from_seed(&[2; 32]),
        resource: Resource::new(id("https://resource.example"), Arc::new(keys)),
    }
}

impl World {
    fn agent_token(&self, lifetime: u64) -> String {
        tokens::assistant(self.agent.public_key())
            .lifetime(Duration::from_secs(lifetime))
            .sign(&self.provider, "key-1", NOW.minus(10), &mut OsRandom)
            .unwrap()
            .token
    }

    fn service(&self, access: Access, calls: &Handler) -> aauth_resource::AAuthService<Handler> {
        let layer = AAuthLayer::new(self.resource.route(RoutePolicy::new(access)), fixed_clock())
            .max_body(1024);
        layer.layer(calls.clone())
    }
}

/// A request as the server receives it: origin-form URI and a Host header.
fn signed(
    method: &str,
    path: &str,
    body: &[u8],
    signer: &PrivateKey,
    scheme: &Scheme,
) -> Request<Full<Bytes>> {
    let req = request::build(method, &format!("https://resource.example{path}"), body);
    full(request::signed(req, signer, scheme, NOW))
}

fn to_server(req: Request<Vec<u8>>) -> Request<Full<Bytes>> {
    full(request::to_server(req))
}

fn full(req: Request<Vec<u8>>) -> Request<Full<Bytes>> {
    req.map(|b| Full::new(Bytes::from(b)))
}

async fn send(
    svc: &mut aauth_resource::AAuthService<Handler>,
    req: Request<Full<Bytes>>,
) -> (StatusCode, http::HeaderMap, String) {
    let resp = svc.call(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// A 401 with `Signature-Error: error=<code>`.
#[track_caller]
fn assert_sig_error(status: StatusCode, h: &http::HeaderMap, code: &str) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{h:?}");
    assert_eq!(header(h, "signature-error"), format!("error={code}"));
}

#[tokio::test]
async fn an_unsigned_request_is_told_to_present_an_agent_token() {
    let w = world();
    let calls = handler();
    let mut svc = w.service(Access::AgentToken, &calls);
    let req = to_server(
        Request::get("https://resource.example/data")
            .body(Vec::new())
            .unwrap(),
    );
    let (status, h, body) = send(&mut svc, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&h, "aauth-requirement"), "requirement=agent-token");
    assert_eq!(header(&h, "content-type"), "application/problem+json");
    assert!(h.get("signature-error").is_none());
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["status"], 401);
    assert_eq!(calls.calls(), 0);
}

#[tokio::test]
async fn an_agent_with_its_token_is_admitted_and_named() {
    let w = world();
    let calls = handler();
    let mut svc = w.service(Access::AgentToken, &calls);
    let req = signed(
        "GET",
        "/data",
        b"",
        &w.agent,
        &Scheme::jwt(w.agent_token(3600)),
    );
    let (status, _, body) = send(&mut svc, req).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "aauth:assistant@agent.example")
    );
    // With a body: content-digest and content-type are covered by default.
    let req = signed(
        "POST",
        "/data",
        br#"{"a":1}"#,
        &w.agent,
        &Scheme::jwt(w.agent_token(3600)),
    );
    assert_eq!(send(&mut svc, req).await.0, StatusCode::OK);
    assert_eq!(calls.calls(), 2);
}

#[tokio::test]
async fn pseudonymous_keys_only_where_the_route_accepts_them() {
    let w = world();
    let calls = handler();
    let key = PrivateKey::ed25519_from_seed(&[5; 32]);
    let mut open = w.service(Access::Pseudonymous, &calls);
    let (status, _, body) = send(
        &mut open,
        signed("GET", "/data", b"", &key, &hwk_scheme(key.public_key())),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        format!("pseudonym {}", key.public_key().thumbprint().as_str())
    );
    // Unsigned at a pseudonymous endpoint: invalid_signature, nothing to ask for.
    let req = to_server(
        Request::get("https://resource.example/data")
            .body(Vec::new())
            .unwrap(),
    );
    let (status, h, _) = send(&mut open, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&h, "signature-error"), "error=invalid_signature");
    // hwk where an agent token is required: unsupported_scheme, and what is accepted.
    let mut agents_only = w.service(Access::AgentToken, &calls);
    let (status, h, _) = send(
        &mut agents_only,
        signed("GET", "/data", b"", &key, &hwk_scheme(key.public_key())),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&h, "signature-error"), "error=unsupported_scheme");
    assert_eq!(header(&h, "accept-signature-scheme"), "jwt");
    assert_eq!(calls.calls(), 1);
}

#[tokio::test]
async fn negative_cases_get_their_exact_code_and_never_reach_the_handler() {
    let w = world();
    let calls = handler();
    let mut svc = w.service(Access::AgentToken, &calls);
    let token = w.agent_token(3600);

    // Tampered @path.
    let mut req = signed("GET", "/data", b"", &w.agent, &Scheme::jwt(token.clone()));
    *req.uri_mut() = "/admin".parse().unwrap();
    let (s, h, _) = send(&mut svc, req).await;
    assert_sig_error(s, &h, "invalid_signature");

    // Swapped Signature-Key: another agent's token on this agent's signature.
    let other = PrivateKey::ed25519_from_seed(&[3; 32]);
    let other_token = AgentTokenBuilder::new(
        id("https://agent.example"),
        AgentId::parse("aauth:other@agent.example").unwrap(),
        other.public_key(),
    )
    .sign(&w.provider, "key-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    let mut req = signed("GET", "/data", b"", &w.agent, &Scheme::jwt(token.clone()));
    let swapped = signed("GET", "/data", b"", &other, &Scheme::jwt(other_token));
    req.headers_mut()
        .insert("signature-key", swapped.headers()["signature-key"].clone());
    let (s, h, _) = send(&mut svc, req).await;
    assert_sig_error(s, &h, "invalid_signature");

    // Expired token (issued 10 s before now with a 5 s lifetime).
    let (s, h, _) = send(
        &mut svc,
        signed(
            "GET",
            "/data",
            b"",
            &w.agent,
            &Scheme::jwt(w.agent_token(5)),
        ),
    )
    .await;
    assert_sig_error(s, &h, "expired_jwt");

    // Wrong typ: a person token where an agent token is required.
    let person = PersonTokenBuilder::new(
        id("https://agent.example"),
        id("https://resource.example"),
        "user-1",
        w.agent.public_key(),
    )
    .sign(&w.provider, "key-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    // Draft -11 §Agent Token Required: not an agent token, so the agent is asked for one.
    let (s, h, _) = send(
        &mut svc,
        signed("GET", "/data", b"", &w.agent, &Scheme::jwt(person)),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&h, "aauth-requirement"), "requirement=agent-token");
    assert!(h.get("signature-error").is_none(), "{h:?}");

    // A body without content-digest where the route requires body coverage: invalid_input
    // naming what must be covered.
    let mut covered = AAuthLayer::new(
        w.resource
            .route(RoutePolicy::new(Access::AgentToken).require_body_coverage()),
        fixed_clock(),
    )
    .layer(calls.clone());
    let (s, h, _) = send(&mut covered, uncovered_body(&w, &token)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let se = header(&h, "signature-error");
    assert!(se.starts_with("error=invalid_input"), "{h:?}");
    assert!(se.contains("\"content-digest\""), "{se}");

    // A body over the route's cap.
    let big = vec![b'x'; 2000];
    let (s, _, _) = send(
        &mut svc,
        signed("POST", "/data", &big, &w.agent, &Scheme::jwt(token)),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);

    assert_eq!(calls.calls(), 0, "the handler ran for a refused request");
}

/// A POST whose signature covers the profile's four components and not the body (as an
/// agent signs toward a resource that declares nothing, draft -11 §Covered Components).
fn uncovered_body(w: &World, token: &str) -> Request<Full<Bytes>> {
    let mut req = Request::post("https://resource.example/data")
        .header("content-type", "application/json")
        .body(Vec::new())
        .unwrap();
    sign_request(&mut req, &w.agent, &Scheme::jwt(token.to_owned()), NOW).unwrap();
    let mut req = to_server(req);
    *req.body_mut() = Full::new(Bytes::from_static(br#"{"transfer":100}"#));
    req
}

#[tokio::test]
async fn a_resource_takes_a_body_its_route_does_not_require_covered() {
    // Draft -11 §Covered Components: body coverage is a PS and AS rule; a resource declares
    // what it needs. A route that declares nothing admits the request...
    let w = world();
    let calls = handler();
    let mut svc = w.service(Access::AgentToken, &calls);
    let token = w.agent_token(3600);
    let (s, h, _) = send(&mut svc, uncovered_body(&w, &token)).await;
    assert_eq!(s, StatusCode::OK, "{h:?}");
    assert_eq!(calls.calls(), 1);
    // ...while a Content-Digest that is present is still checked against the body.
    let mut req = signed(
        "POST",
        "/data",
        br#"{"a":1}"#,
        &w.agent,
        &Scheme::jwt(token),
    );
    *req.body_mut() = Full::new(Bytes::from_static(br#"{"a":2}"#));
    let (s, h, _) = send(&mut svc, req).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(h.contains_key("signature-error"), "{h:?}");
    assert_eq!(calls.calls(), 1);
}

#[tokio::test]
async fn unreachable_issuer_keys_are_a_503_not_a_verdict() {
    let w = world();
    // An issuer the resource has no keys for: StaticIssuerKeys answers Untrusted (401);
    // a resolver that cannot reach the issuer answers Unavailable (503).
    struct Down;
    #[async_trait::async_trait]
    impl aauth_tokens::IssuerKeyResolver for Down {
        async fn resolve(
            &self,
            _: &aauth_tokens::KeyRequest<'_>,
        ) -> Result<aauth_keys::PublicKey, aauth_tokens::ResolveError> {
            Err(aauth_tokens::ResolveError::Unavailable {
                reason: "connection refused".to_owned(),
            })
        }
    }
    let resource = Resource::new(id("https://resource.example"), Arc::new(Down));
    let calls = handler();
    let mut svc = AAuthLayer::new(
        resource.route(RoutePolicy::new(Access::AgentToken)),
        fixed_clock(),
    )
    .layer(calls.clone());
    let (s, h, body) = send(
        &mut svc,
        signed(
            "GET",
            "/data",
            b"",
            &w.agent,
            &Scheme::jwt(w.agent_token(3600)),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(h.get("signature-error").is_none());
    assert!(body.contains("unavailable"), "{body}");
    assert_eq!(calls.calls(), 0);
}

mod replay {
    use super::*;
    use aauth_resource::{MemoryReplayStore, ReplayStore, ReplayStoreError};
    use aauth_signing::ReplayUse;

    pub(crate) fn service(
        w: &World,
        store: Arc<dyn ReplayStore>,
        clock: &FixedClock,
        calls: &Handler,
    ) -> aauth_resource::AAuthService<Handler> {
        let route = w
            .resource
            .route(RoutePolicy::new(Access::AgentToken))
            .replay_store(store);
        AAuthLayer::new(route, Arc::new(clock.clone())).layer(calls.clone())
    }

    pub(crate) fn post(w: &World, token: &str, body: &[u8]) -> Request<Vec<u8>> {
        let mut req = Request::post("https://resource.example/transfer")
            .header("content-type", "application/json")
            .body(body.to_vec())
            .unwrap();
        sign_request(&mut req, &w.agent, &Scheme::jwt(token.to_owned()), NOW).unwrap();
        req
    }

    pub(crate) fn copy(req: &Request<Vec<u8>>) -> Request<Full<Bytes>> {
        let mut b = Request::builder().method(req.method()).uri(req.uri());
        for (k, v) in req.headers() {
            b = b.header(k, v);
        }
        to_server(b.body(req.body().clone()).unwrap())
    }

    #[tokio::test]
    async fn the_same_signed_post_is_accepted_once() {
        accepted_once(Arc::new(MemoryReplayStore::new(100))).await;
    }

    /// The replay check over `store`, through the layer.
    pub(crate) async fn accepted_once(store: Arc<dyn ReplayStore>) {
        let w = world();
        let calls = handler();
        let clock = FixedClock::new(NOW);
        let mut svc = service(&w, store, &clock, &calls);
        let token = w.agent_token(3600);
        let req = post(&w, &token, br#"{"amount":100}"#);
        assert_eq!(send(&mut svc, copy(&req)).await.0, StatusCode::OK);
        // R1: the exact bytes again, within the window.
        clock.advance(Duration::from_secs(30));
        let (s, h, body) = send(&mut svc, copy(&req)).await;
        assert_sig_error(s, &h, "invalid_signature");
        assert!(body.contains("replay"), "{body}");
        // R5: a different body under the same created is a different request.
        assert_eq!(
            send(&mut svc, copy(&post(&w, &token, br#"{"amount":5}"#)))
                .await
                .0,
            StatusCode::OK
        );
        // Safe methods are not checked: the same signed GET twice.
        let get = signed(
            "GET",
            "/balance",
            b"",
            &w.agent,
            &Scheme::jwt(token.clone()),
        );
        let (parts, body) = get.into_parts();
        let again = Request::from_parts(parts.clone(), body.clone());
        assert_eq!(
            send(&mut svc, Request::from_parts(parts, body)).await.0,
            StatusCode::OK
        );
        assert_eq!(send(&mut svc, again).await.0, StatusCode::OK);
        // After the window the replay is refused by the window itself, not the cache.
        clock.advance(Duration::from_secs(31));
        let (s, h, _) = send(&mut svc, copy(&req)).await;
        assert_sig_error(s, &h, "invalid_signature");
        assert_eq!(calls.calls(), 4);
    }

    #[tokio::test]
    async fn forgeries_do_not_burn_the_victims_request() {
        // R6: bad-signature copies of the victim's request arrive first.
        let w = world();
        let calls = handler();
        let clock = FixedClock::new(NOW);
        let store = Arc::new(MemoryReplayStore::new(100));
        let mut svc = service(&w, store.clone(), &clock, &calls);
        let req = post(&w, &w.agent_token(3600), br#"{"amount":100}"#);
        for _ in 0..20 {
            let mut forged = copy(&req);
            forged
                .headers_mut()
                .insert("signature", "sig=:AAAA:".parse().unwrap());
            assert_eq!(send(&mut svc, forged).await.0, StatusCode::UNAUTHORIZED);
        }
        assert!(store.is_empty(), "a failed verification recorded a key");
        assert_eq!(send(&mut svc, copy(&req)).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn an_unavailable_or_full_store_fails_closed() {
        // R10: the store cannot answer.
        struct Down;
        #[async_trait::async_trait]
        impl ReplayStore for Down {
            async fn first_use(
                &self,
                _: &ReplayUse<'_>,
                _: UnixTime,
            ) -> Result<bool, ReplayStoreError> {
                Err(ReplayStoreError::Unavailable {
                    reason: "connection refused".to_owned(),
                })
            }
        }
        let w = world();
        let calls = handler();
        let clock = FixedClock::new(NOW);
        let token = w.agent_token(3600);
        let mut svc = service(&w, Arc::new(Down), &clock, &calls);
        let (s, h, _) = send(&mut svc, copy(&post(&w, &token, b"{}"))).await;
        assert_eq!(
            (s, header(&h, "retry-after")),
            (StatusCode::SERVICE_UNAVAILABLE, "1".to_owned())
        );
        // Reads are not held hostage by the replay store.
        assert_eq!(
            send(
                &mut svc,
                signed(
                    "GET",
                    "/balance",
                    b"",
                    &w.agent,
                    &Scheme::jwt(token.clone())
                )
            )
            .await
            .0,
            StatusCode::OK
        );
        assert_eq!(calls.calls(), 1);

        // A full store refuses rather than forget a live key; once keys expire, it accepts.
        let calls = handler();
        let mut svc = service(&w, Arc::new(MemoryReplayStore::new(2)), &clock, &calls);
        for body in [&b"{\"n\":1}"[..], b"{\"n\":2}"] {
            assert_eq!(
                send(&mut svc, copy(&post(&w, &token, body))).await.0,
                StatusCode::OK
            );
        }
        assert_eq!(
            send(&mut svc, copy(&post(&w, &token, b"{\"n\":3}")))
                .await
                .0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(calls.calls(), 2);
    }

    #[tokio::test]
    async fn a_clock_moving_backwards_does_not_readmit() {
        clock_backwards(&MemoryReplayStore::new(10)).await;
    }

    pub(crate) async fn clock_backwards(store: &dyn ReplayStore) {
        // C8: entries expire on absolute time.
        assert!(
            store
                .first_use(
                    &ReplayUse::new("k", [7; 32], UnixTime(1_060)),
                    UnixTime(1_000)
                )
                .await
                .unwrap()
        );
        assert!(
            !store
                .first_use(
                    &ReplayUse::new("k", [7; 32], UnixTime(1_060)),
                    UnixTime(400)
                )
                .await
                .unwrap()
        );
        assert!(
            !store
                .first_use(
                    &ReplayUse::new("k", [7; 32], UnixTime(1_060)),
                    UnixTime(1_059)
                )
                .await
                .unwrap()
        );
        assert!(
            store
                .first_use(
                    &ReplayUse::new("k", [7; 32], UnixTime(1_120)),
                    UnixTime(1_060)
                )
                .await
                .unwrap()
        );
    }
}

mod token_cache {
    use super::*;
    use aauth_resource::{TokenCacheConfig, VerifiedTokenCache};
    use aauth_signing::{JwtResolver, SchemeResolver};
    use aauth_tokens::{IssuerKeyResolver, KeyRequest, ResolveError, TokenType};

    /// Issuer keys that count lookups: one lookup per token verification.
    struct Counting(StaticIssuerKeys, AtomicUsize);

    #[async_trait::async_trait]
    impl IssuerKeyResolver for Counting {
        async fn resolve(
            &self,
            req: &KeyRequest<'_>,
        ) -> Result<aauth_keys::PublicKey, ResolveError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.resolve(req).await
        }
    }

    fn setup(max_entries: usize) -> (World, Arc<Counting>, Arc<VerifiedTokenCache>) {
        let w = world();
        let iss = id("https://agent.example");
        let keys = Arc::new(Counting(
            StaticIssuerKeys::new().with(
                &iss,
                "aauth-agent.json",
                "key-1",
                w.provider.public_key().clone(),
            ),
            AtomicUsize::new(0),
        ));
        let mut config = TokenCacheConfig::default();
        config.max_entries = max_entries;
        let schemes =
            SchemeResolver::new().jwt(JwtResolver::new(keys.clone(), &[TokenType::Agent]));
        let cache = Arc::new(VerifiedTokenCache::new(Arc::new(schemes), config));
        (w, keys, cache)
    }

    fn svc(
        cache: &Arc<VerifiedTokenCache>,
        clock: &FixedClock,
        calls: &Handler,
    ) -> aauth_resource::AAuthService<Handler> {
        let resource = Resource::with_resolver(id("https://resource.example"), cache.clone());
        AAuthLayer::new(
            resource.route(RoutePolicy::new(Access::AgentToken)),
            Arc::new(clock.clone()),
        )
        .layer(calls.clone())
    }

    #[tokio::test]
    async fn a_token_is_verified_once_and_each_request_still_checked() {
        let (w, keys, cache) = setup(100);
        let calls = handler();
        let clock = FixedClock::new(NOW);
        let mut s = svc(&cache, &clock, &calls);
        let token = w.agent_token(3600);
        for path in ["/a", "/b", "/c"] {
            assert_eq!(
                send(
                    &mut s,
                    signed("GET", path, b"", &w.agent, &Scheme::jwt(token.clone()))
                )
                .await
                .0,
                StatusCode::OK
            );
        }
        assert_eq!(
            keys.1.load(Ordering::SeqCst),
            1,
            "the token was verified more than once"
        );
        assert_eq!(cache.counts(), (2, 1));
        // The request signature is still checked on a cache hit: another key, same token.
        let other = PrivateKey::ed25519_from_seed(&[9; 32]);
        let (st, h, _) = send(
            &mut s,
            signed("GET", "/d", b"", &other, &Scheme::jwt(token.clone())),
        )
        .await;
        assert_sig_error(st, &h, "invalid_signature");
        assert_eq!(keys.1.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn entries_end_at_exp_and_at_max_age() {
        let (w, keys, cache) = setup(100);
        let calls = handler();
        let clock = FixedClock::new(NOW);
        let mut s = svc(&cache, &clock, &calls);
        // max_age (300 s): the token is verified again after it.
        let long = w.agent_token(3600);
        let req = |t: &str, now: UnixTime| {
            let mut r = Request::get("https://resource.example/x")
                .body(Vec::new())
                .unwrap();
            sign_request(&mut r, &w.agent, &Scheme::jwt(t.to_owned()), now).unwrap();
            to_server(r)
        };
        assert_eq!(send(&mut s, req(&long, NOW)).await.0, StatusCode::OK);
        clock.advance(Duration::from_secs(299));
        assert_eq!(
            send(&mut s, req(&long, NOW.plus(299))).await.0,
            StatusCode::OK
        );
        assert_eq!(keys.1.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            send(&mut s, req(&long, NOW.plus(300))).await.0,
            StatusCode::OK
        );
        assert_eq!(keys.1.load(Ordering::SeqCst), 2);
        // exp, without tolerance: a token issued at NOW-10 for 100 s ends at NOW+90.
        let short = w.agent_token(100);
        clock.set(NOW.plus(89));
        assert_eq!(
            send(&mut s, req(&short, NOW.plus(89))).await.0,
            StatusCode::OK
        );
        clock.set(NOW.plus(90));
        let (st, h, _) = send(&mut s, req(&short, NOW.plus(90))).await;
        assert_sig_error(st, &h, "expired_jwt");
    }

    #[tokio::test]
    async fn failures_are_not_cached_and_the_size_is_bounded() {
        let (w, keys, cache) = setup(2);
        let calls = handler();
        let clock = FixedClock::new(NOW);
        let mut s = svc(&cache, &clock, &calls);
        // A token the issuer never signed: verified (and refused) each time.
        let rogue = AgentTokenBuilder::new(
            id("https://agent.example"),
            AgentId::parse("aauth:assistant@agent.example").unwrap(),
            w.agent.public_key(),
        )
        .sign(
            &PrivateKey::ed25519_from_seed(&[8; 32]),
            "key-1",
            NOW,
            &mut OsRandom,
        )
        .unwrap()
        .token;
        for _ in 0..2 {
            assert_eq!(
                send(
                    &mut s,
                    signed("GET", "/x", b"", &w.agent, &Scheme::jwt(rogue.clone()))
                )
                .await
                .0,
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(cache.counts(), (0, 2));
        // Three distinct tokens through a cache of two: the least recently used goes.
        let tokens: Vec<String> = (0..3).map(|_| w.agent_token(3600)).collect();
        for t in &tokens {
            assert_eq!(
                send(
                    &mut s,
                    signed("GET", "/x", b"", &w.agent, &Scheme::jwt(t.clone()))
                )
                .await
                .0,
                StatusCode::OK
            );
        }
        let before = keys.1.load(Ordering::SeqCst);
        assert_eq!(
            send(
                &mut s,
                signed("GET", "/x", b"", &w.agent, &Scheme::jwt(tokens[2].clone()))
            )
            .await
            .0,
            StatusCode::OK
        );
        assert_eq!(
            keys.1.load(Ordering::SeqCst),
            before,
            "the newest token was evicted"
        );
        assert_eq!(
            send(
                &mut s,
                signed("GET", "/x", b"", &w.agent, &Scheme::jwt(tokens[0].clone()))
            )
            .await
            .0,
            StatusCode::OK
        );
        assert_eq!(
            keys.1.load(Ordering::SeqCst),
            before + 1,
            "the oldest token was kept"
        );
    }
}

mod axum_router {
    use super::*;
    use aauth_resource::CallingAgent;

    async fn data(CallingAgent(agent): CallingAgent) -> String {
        format!("hello {agent}")
    }

    async fn whoever(admitted: Admitted) -> String {
        admitted
            .pseudonym()
            .map_or_else(String::new, |t| t.as_str().to_owned())
    }

    async fn unprotected(CallingAgent(agent): CallingAgent) -> String {
        agent.to_string()
    }

    async fn call(router: &mut axum::Router, req: Request<Full<Bytes>>) -> (StatusCode, String) {
        let resp = Service::call(router, req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_layer_and_extractors_on_an_axum_router() {
        let w = world();
        let clock: Arc<dyn aauth_keys::time::Clock> = fixed_clock();
        let agents = AAuthLayer::new(
            w.resource.route(RoutePolicy::new(Access::AgentToken)),
            Arc::clone(&clock),
        );
        let open = AAuthLayer::new(
            w.resource.route(RoutePolicy::new(Access::Pseudonymous)),
            clock,
        );
        let mut app = axum::Router::new()
            .route("/data", axum::routing::get(data).layer(agents))
            .route(
                "/open",
                axum::routing::get(whoever).route_layer(open.clone()),
            )
            .route("/open-agent", axum::routing::get(data).route_layer(open))
            .route("/misconfigured", axum::routing::get(unprotected));

        let token = Scheme::jwt(w.agent_token(3600));
        let (s, body) = call(&mut app, signed("GET", "/data", b"", &w.agent, &token)).await;
        assert_eq!(
            (s, body.as_str()),
            (StatusCode::OK, "hello aauth:assistant@agent.example")
        );

        let unsigned = to_server(
            Request::get("https://resource.example/data")
                .body(Vec::new())
                .unwrap(),
        );
        assert_eq!(call(&mut app, unsigned).await.0, StatusCode::UNAUTHORIZED);

        let key = PrivateKey::ed25519_from_seed(&[5; 32]);
        let (s, body) = call(
            &mut app,
            signed("GET", "/open", b"", &key, &hwk_scheme(key.public_key())),
        )
        .await;
        assert_eq!(
            (s, body),
            (
                StatusCode::OK,
                key.public_key().thumbprint().as_str().to_owned()
            )
        );
        // A pseudonymous caller where the handler wants an agent: 403.
        let (s, body) = call(
            &mut app,
            signed(
                "GET",
                "/open-agent",
                b"",
                &key,
                &hwk_scheme(key.public_key()),
            ),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
        // A handler asking for the caller on a route without the layer: 500, not a pass.
        let (s, body) = call(
            &mut app,
            signed("GET", "/misconfigured", b"", &w.agent, &token),
        )
        .await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    }
}

mod revocation {
    use super::*;
    use aauth_resource::{MemoryRevocationList, RevocationEndpoint};
    use aauth_signing::{KeyIdentity, KeyResolver, ResolveContext, ResolvedKey, VerifyError};

    /// `jwks_uri` resolution for the test: known signers and their keys (the metadata
    /// crate's DiscoveryResolver does this over HTTPS).
    pub(crate) struct Signers(pub(crate) Vec<(String, aauth_keys::PublicKey)>);

    #[async_trait::async_trait]
    impl KeyResolver for Signers {
        async fn resolve(
            &self,
            scheme: &Scheme,
            _: &ResolveContext<'_>,
        ) -> Result<ResolvedKey, VerifyError> {
            match scheme {
                Scheme::JwksUri { id, dwk, kid } => self
                    .0
                    .iter()
                    .find(|(i, _)| i == id)
                    .map(|(_, k)| {
                        ResolvedKey::new(
                            k.clone(),
                            KeyIdentity::JwksUri {
                                id: id.clone(),
                                dwk: dwk.clone(),
                                kid: kid.clone(),
                            },
                        )
                    })
                    .ok_or(VerifyError::UnsupportedScheme { scheme: None }),
                other => Err(VerifyError::UnsupportedScheme {
                    scheme: Some(other.name().to_owned()),
                }),
            }
        }
    }

    pub(crate) fn jwks_uri(id: &str) -> Scheme {
        Scheme::JwksUri {
            id: id.to_owned(),
            dwk: "aauth-agent.json".to_owned(),
            kid: "key-1".to_owned(),
        }
    }

    pub(crate) fn revoke_request(
        signer: &PrivateKey,
        scheme: &Scheme,
        body: &str,
    ) -> (http::request::Parts, Vec<u8>) {
        let mut req = Request::post("https://resource.example/revoke")
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .unwrap();
        sign_request(&mut req, signer, scheme, NOW).unwrap();
        let (mut parts, body) = req.into_parts();
        parts.uri = "/revoke".parse().unwrap();
        parts
            .headers
            .insert("host", "resource.example".parse().unwrap());
        (parts, body)
    }

    #[tokio::test]
    async fn a_trusted_issuer_revokes_and_the_token_is_refused_at_once() {
        let list = Arc::new(MemoryRevocationList::new(60, 1000));
        revoked_at_once(list.clone(), list).await;
    }

    /// A revocation recorded into `record` (by the endpoint of one instance) is enforced
    /// through `enforce` (by the gate of, possibly, another).
    pub(crate) async fn revoked_at_once(
        record: Arc<dyn aauth_resource::RevocationStore>,
        enforce: Arc<dyn aauth_signing::RevocationList>,
    ) {
        let w = world();
        let agent_iss = id("https://agent.example");
        let endpoint = RevocationEndpoint::new(
            w.resource.id(),
            Arc::new(Signers(vec![
                (
                    "https://agent.example".to_owned(),
                    w.provider.public_key().clone(),
                ),
                (
                    "https://other.example".to_owned(),
                    PrivateKey::ed25519_from_seed(&[6; 32]).public_key().clone(),
                ),
            ])),
            [&agent_iss],
            record,
        );
        let resource = w.resource.clone().revocations(enforce);
        let calls = handler();
        let mut svc = AAuthLayer::new(
            resource.route(RoutePolicy::new(Access::AgentToken)),
            fixed_clock(),
        )
        .layer(calls.clone());

        let minted = AgentTokenBuilder::new(
            agent_iss.clone(),
            AgentId::parse("aauth:assistant@agent.example").unwrap(),
            w.agent.public_key(),
        )
        .sign(&w.provider, "key-1", NOW, &mut OsRandom)
        .unwrap();
        let token = Scheme::jwt(minted.token.clone());
        // Admitted (and now in the verified-token cache).
        assert_eq!(
            send(&mut svc, signed("GET", "/data", b"", &w.agent, &token))
                .await
                .0,
            StatusCode::OK
        );

        let body = format!(r#"{{"jti":"{}","exp":{}}}"#, minted.jti, minted.exp);
        let (parts, b) = revoke_request(&w.provider, &jwks_uri("https://agent.example"), &body);
        let resp = endpoint.handle(&parts, &b, NOW).await;
        assert_eq!((resp.status(), resp.body().len()), (StatusCode::OK, 0));
        // The same signed request again is a replay, refused like any other...
        let replayed = endpoint.handle(&parts, &b, NOW).await;
        assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            replayed.headers()["signature-error"],
            "error=invalid_signature"
        );
        // ...while a new request revoking the same token again is idempotent, and a token
        // never seen is recorded too.
        let again = format!(r#"{{"jti": "{}", "exp": {}}}"#, minted.jti, minted.exp);
        let (p1, b1) = revoke_request(&w.provider, &jwks_uri("https://agent.example"), &again);
        assert_eq!(
            endpoint.handle(&p1, &b1, NOW).await.status(),
            StatusCode::OK
        );
        let (p2, b2) = revoke_request(
            &w.provider,
            &jwks_uri("https://agent.example"),
            r#"{"jti":"never-seen","exp":1800000600}"#,
        );
        assert_eq!(
            endpoint.handle(&p2, &b2, NOW).await.status(),
            StatusCode::OK
        );

        // The revoked token is refused although its verification was cached.
        let (s, h, _) = send(&mut svc, signed("GET", "/data", b"", &w.agent, &token)).await;
        assert_sig_error(s, &h, "revoked_jwt");
        assert_eq!(calls.calls(), 1);
    }

    #[tokio::test]
    async fn refusals_of_the_revocation_endpoint() {
        let w = world();
        let other = PrivateKey::ed25519_from_seed(&[6; 32]);
        let list = Arc::new(MemoryRevocationList::new(60, 1000));
        let agent_iss = id("https://agent.example");
        let endpoint = RevocationEndpoint::new(
            w.resource.id(),
            Arc::new(Signers(vec![
                (
                    "https://agent.example".to_owned(),
                    w.provider.public_key().clone(),
                ),
                (
                    "https://other.example".to_owned(),
                    other.public_key().clone(),
                ),
            ])),
            [&agent_iss],
            list,
        );
        let status_and_error = |resp: Response<Bytes>| {
            let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
            // Draft -11 §Error Response Format: problem details with `error`.
            if !resp.status().is_success() {
                assert_eq!(
                    resp.headers()["content-type"],
                    "application/problem+json",
                    "{v}"
                );
                assert!(v["error"].is_string(), "{v}");
            }
            (
                resp.status(),
                v["error"].as_str().unwrap_or_default().to_owned(),
                resp.headers()
                    .get("signature-error")
                    .map(|h| h.to_str().unwrap().to_owned()),
            )
        };
        // An issuer this resource does not trust.
        let (p, b) = revoke_request(
            &other,
            &jwks_uri("https://other.example"),
            r#"{"jti":"x","exp":1800000600}"#,
        );
        assert_eq!(
            status_and_error(endpoint.handle(&p, &b, NOW).await),
            (StatusCode::FORBIDDEN, "unsupported_iss".to_owned(), None)
        );
        // Bad bodies.
        for body in [
            r#"{"jti":"x"}"#,
            r#"{"jti":"","exp":1}"#,
            r#"{"jti":"x","exp":"1"}"#,
            r#"["x",1]"#,
        ] {
            let (p, b) = revoke_request(&w.provider, &jwks_uri("https://agent.example"), body);
            assert_eq!(
                status_and_error(endpoint.handle(&p, &b, NOW).await).0,
                StatusCode::BAD_REQUEST,
                "{body}"
            );
        }
        // A member the draft does not define is an extension, ignored.
        let (p, b) = revoke_request(
            &w.provider,
            &jwks_uri("https://agent.example"),
            r#"{"jti":"x","exp":1800000600,"reason":"compromised"}"#,
        );
        assert_eq!(
            status_and_error(endpoint.handle(&p, &b, NOW).await).0,
            StatusCode::OK
        );
        // Signed with an agent token instead of as the issuer: unsupported_scheme.
        let (p, b) = revoke_request(
            &w.agent,
            &Scheme::jwt(w.agent_token(3600)),
            r#"{"jti":"x","exp":1800000600}"#,
        );
        let (s, _, se) = status_and_error(endpoint.handle(&p, &b, NOW).await);
        assert_eq!(
            (s, se.as_deref()),
            (StatusCode::UNAUTHORIZED, Some("error=unsupported_scheme"))
        );
        // The body must be covered.
        let mut req = Request::post("https://resource.example/revoke")
            .header("content-type", "application/json")
            .body(Vec::new())
            .unwrap();
        sign_request(
            &mut req,
            &w.provider,
            &jwks_uri("https://agent.example"),
            NOW,
        )
        .unwrap();
        let (p, _) = to_server(req).into_parts();
        let (s, _, se) = status_and_error(
            endpoint
                .handle(&p, br#"{"jti":"x","exp":1800000600}"#, NOW)
                .await,
        );
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(se.unwrap_or_default().starts_with("error=invalid_input"));
    }

    /// Counts the key lookups it passes on.
    struct Counting(AtomicUsize, Signers);

    #[async_trait::async_trait]
    impl KeyResolver for Counting {
        async fn resolve(
            &self,
            scheme: &Scheme,
            ctx: &ResolveContext<'_>,
        ) -> Result<ResolvedKey, VerifyError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1.resolve(scheme, ctx).await
        }
    }

    #[tokio::test]
    async fn an_untrusted_issuer_is_refused_before_its_keys_are_looked_up() {
        let w = world();
        let stranger = PrivateKey::ed25519_from_seed(&[6; 32]);
        let agent_iss = id("https://agent.example");
        let resolver = Arc::new(Counting(
            AtomicUsize::new(0),
            Signers(vec![
                (
                    "https://agent.example".to_owned(),
                    w.provider.public_key().clone(),
                ),
                (
                    "https://stranger.example".to_owned(),
                    stranger.public_key().clone(),
                ),
            ]),
        ));
        let endpoint = RevocationEndpoint::new(
            w.resource.id(),
            resolver.clone(),
            [&agent_iss],
            Arc::new(MemoryRevocationList::new(60, 1000)),
        );
        // Anyone can name any jwks_uri id: each would be a metadata and JWKS fetch to a
        // host of their choosing. Refused as an untrusted issuer, with no lookup.
        for id in [
            "https://stranger.example",
            "https://victim.example",
            "https://agent.example.evil.example",
        ] {
            let (p, b) =
                revoke_request(&stranger, &jwks_uri(id), r#"{"jti":"x","exp":1800000600}"#);
            let resp = endpoint.handle(&p, &b, NOW).await;
            let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
            assert_eq!(
                (resp.status(), v["error"].as_str()),
                (StatusCode::FORBIDDEN, Some("unsupported_iss")),
                "{id}"
            );
            assert!(resp.headers().get("signature-error").is_none());
        }
        assert_eq!(resolver.0.load(Ordering::SeqCst), 0, "a key was looked up");
        // A trusted issuer is resolved, once.
        let (p, b) = revoke_request(
            &w.provider,
            &jwks_uri("https://agent.example"),
            r#"{"jti":"x","exp":1800000600}"#,
        );
        assert_eq!(endpoint.handle(&p, &b, NOW).await.status(), StatusCode::OK);
        assert_eq!(resolver.0.load(Ordering::SeqCst), 1);
    }
}

/// A body that fails if anything reads it.
struct Untouchable;

impl http_body::Body for Untouchable {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::other("the body was read"))))
    }
}

#[tokio::test]
async fn an_unsigned_request_is_refused_before_its_body_is_read() {
    let w = world();
    let calls = handler();
    let mut svc = w.service(Access::AgentToken, &calls);
    let req = Request::post("/upload")
        .header("host", "resource.example")
        .body(Untouchable)
        .unwrap();
    let resp = svc.call(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(resp.headers(), "aauth-requirement"),
        "requirement=agent-token"
    );
    // A signed request's body is read (and here it fails: 400, not a pass).
    let signed_head = signed(
        "GET",
        "/upload",
        b"",
        &w.agent,
        &Scheme::jwt(w.agent_token(3600)),
    );
    let (parts, _) = signed_head.into_parts();
    let resp = svc
        .call(Request::from_parts(parts, Untouchable))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(calls.calls(), 0);
}

mod two_party {
    use super::*;
    use aauth_resource::{MemorySessionStore, Route, SessionStore};
    use aauth_signing::{SignOptions, SigningKey, sign};

    pub(crate) struct Rig {
        w: World,
        clock: FixedClock,
        authorize: Route,
        data: aauth_resource::AAuthService<Handler>,
        calls: Handler,
    }

    fn rig() -> Rig {
        rig_with(Arc::new(MemorySessionStore::new(100)))
    }

    pub(crate) fn rig_with(store: Arc<dyn SessionStore>) -> Rig {
        let w = world();
        let clock = FixedClock::new(NOW);
        // The resource's own authorization step: an agent-token route that issues sessions.
        let authorize = w
            .resource
            .route(RoutePolicy::new(Access::AgentToken))
            .sessions(Arc::clone(&store), false);
        let calls = handler();
        let data = AAuthLayer::new(
            w.resource
                .route(RoutePolicy::new(Access::SessionToken))
                .sessions(store, true),
            Arc::new(clock.clone()),
        )
        .layer(calls.clone());
        Rig {
            w,
            clock,
            authorize,
            data,
            calls,
        }
    }

    /// A request carrying `Authorization: AAuth <token>`, covered by the signature (the
    /// signer covers `authorization` when present) unless `cover` is false, in which case
    /// the header is added after signing.
    fn with_session(
        signer: &PrivateKey,
        token: &str,
        session: &str,
        cover: bool,
        now: UnixTime,
    ) -> Request<Full<Bytes>> {
        let mut req = Request::get("https://resource.example/data")
            .body(())
            .unwrap();
        let credential = http::HeaderValue::from_str(&format!("AAuth {session}")).unwrap();
        if cover {
            req.headers_mut()
                .insert("authorization", credential.clone());
        }
        let (mut parts, ()) = req.into_parts();
        let scheme = Scheme::jwt(token.to_owned());
        sign(
            &mut parts,
            b"",
            &[SigningKey::new("sig", signer, &scheme)],
            &SignOptions::default(),
            now,
        )
        .unwrap();
        if !cover {
            parts.headers.insert("authorization", credential);
        }
        to_server(Request::from_parts(parts, Vec::new()))
    }

    async fn issue(r: &Rig, token: &str) -> String {
        let (parts, _) = signed(
            "POST",
            "/authorize",
            b"{}",
            &r.w.agent,
            &Scheme::jwt(token.to_owned()),
        )
        .into_parts();
        let admitted = r.authorize.check(&parts, b"{}", NOW).await.unwrap();
        r.authorize
            .issue_session(&admitted, Some("data.read".to_owned()), 3600, NOW)
            .await
            .unwrap()
            .secret()
            .to_owned()
    }

    /// Another agent of the same provider, with its own valid token and key: what a
    /// stolen session token is presented with.
    fn thief(r: &Rig) -> (PrivateKey, String) {
        let thief = PrivateKey::ed25519_from_seed(&[7; 32]);
        let token = AgentTokenBuilder::new(
            id("https://agent.example"),
            AgentId::parse("aauth:thief@agent.example").unwrap(),
            thief.public_key(),
        )
        .sign(&r.w.provider, "key-1", NOW, &mut OsRandom)
        .unwrap()
        .token;
        (thief, token)
    }

    /// A session-token route's scope is checked against what the resource granted the
    /// session; a scope on a route whose credential carries none is a misconfiguration
    /// (`500`), never silently ignored.
    #[tokio::test]
    async fn a_session_routes_scope_is_within_what_the_session_was_granted() {
        let store: Arc<dyn SessionStore> = Arc::new(MemorySessionStore::new(100));
        let r = rig_with(Arc::clone(&store));
        let token = r.w.agent_token(3600);
        let session = issue(&r, &token).await; // granted "data.read"
        let calls = handler();
        let routed = |policy: RoutePolicy| {
            AAuthLayer::new(
                r.w.resource
                    .route(policy)
                    .sessions(Arc::clone(&store), false),
                Arc::new(r.clock.clone()),
            )
            .layer(calls.clone())
        };
        let present = || with_session(&r.w.agent, &token, &session, true, NOW);
        let mut write = routed(RoutePolicy::new(Access::SessionToken).scope("data.write"));
        let (s, _, body) = send(&mut write, present()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("scope"), "{body}");
        // A good session short of a route's scope is a plain refusal: the agent keeps it.
        assert!(body.contains(r#""error":"forbidden""#), "{body}");
        let mut read = routed(RoutePolicy::new(Access::SessionToken).scope("data.read"));
        assert_eq!(send(&mut read, present()).await.0, StatusCode::OK);
        assert_eq!(calls.calls(), 1);

        let mut agent_only = routed(RoutePolicy::new(Access::AgentToken).scope("data.read"));
        let req = signed("GET", "/data", b"", &r.w.agent, &Scheme::jwt(token.clone()));
        let (s, _, body) = send(&mut agent_only, req).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert_eq!(calls.calls(), 1);
    }

    #[tokio::test]
    async fn a_session_is_issued_presented_covered_and_rolled() {
        issued_presented_covered_and_rolled(rig()).await;
    }

    pub(crate) async fn issued_presented_covered_and_rolled(mut r: Rig) {
        let token = r.w.agent_token(3600);
        let session = issue(&r, &token).await;
        assert!(session.len() >= 43, "{session}");

        let req = with_session(&r.w.agent, &token, &session, true, NOW);
        let (s, h, body) = send(&mut r.data, req).await;
        assert_eq!(
            (s, body.as_str()),
            (StatusCode::OK, "aauth:assistant@agent.example")
        );
        let rolled = header(&h, "aauth-access");
        assert!(
            !rolled.is_empty() && rolled != session,
            "no new token: {rolled:?}"
        );

        // The new token works; the old one for the grace period only.
        r.clock.advance(Duration::from_secs(10));
        let later = NOW.plus(10);
        assert_eq!(
            send(
                &mut r.data,
                with_session(&r.w.agent, &token, &rolled, true, later)
            )
            .await
            .0,
            StatusCode::OK
        );
        assert_eq!(
            send(
                &mut r.data,
                with_session(&r.w.agent, &token, &session, true, later)
            )
            .await
            .0,
            StatusCode::OK
        );
        r.clock
            .advance(Duration::from_secs(aauth_resource::ROLL_GRACE));
        let after = NOW.plus(10 + aauth_resource::ROLL_GRACE);
        let (s, h, body) = send(
            &mut r.data,
            with_session(&r.w.agent, &token, &session, true, after),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        // The session itself refused, before the handler: the agent drops it.
        assert!(body.contains(r#""error":"invalid_session""#), "{body}");
        assert!(h.get("signature-error").is_none());
        assert_eq!(r.calls.calls(), 3);
    }

    /// Resource-managed access where the resource already uses OAuth (draft -11
    /// §Drop-In Replacement: it "returns its existing token opaquely via the
    /// `AAuth-Access` header"): the session wraps the access token the resource holds;
    /// the agent holds only the session token, and the handler gets the access token back
    /// with each request the agent signs. Another agent presenting the session token
    /// reaches nothing.
    #[tokio::test]
    async fn a_session_wraps_the_resources_own_oauth_token() {
        const OAUTH: &str = "eyJhbGciOiJSUzI1NiJ9.the-resources-own-access-token.c2ln";
        let r = rig();
        let store: Arc<dyn SessionStore> = Arc::new(MemorySessionStore::new(10));
        let authorize =
            r.w.resource
                .route(RoutePolicy::new(Access::AgentToken))
                .sessions(Arc::clone(&store), false);
        let unwrapped = Answering::new(|req| {
            req.extensions()
                .get::<Admitted>()
                .and_then(|a| a.session.as_ref()?.wrapped.as_ref())
                .map(|w| w.secret().to_owned())
                .unwrap_or_default()
        });
        let mut data = AAuthLayer::new(
            r.w.resource
                .route(RoutePolicy::new(Access::SessionToken))
                .sessions(store, false),
            Arc::new(r.clock.clone()),
        )
        .layer(unwrapped.clone());

        let token = r.w.agent_token(3600);
        let (parts, _) = signed(
            "POST",
            "/authorize",
            b"{}",
            &r.w.agent,
            &Scheme::jwt(token.clone()),
        )
        .into_parts();
        let admitted = authorize.check(&parts, b"{}", NOW).await.unwrap();
        let session = admitted
            .session_for(Some("data.read".to_owned()), NOW.plus(600))
            .unwrap()
            .wrapping(aauth_resource::Wrapped::new(OAUTH));
        let access = authorize.keep_session(session, NOW).await.unwrap();
        let access = access.secret().to_owned();
        assert!(
            access != OAUTH && !access.contains("the-resources-own"),
            "the agent sees only the session token: {access}"
        );

        let (s, _, body) = send(
            &mut data,
            with_session(&r.w.agent, &token, &access, true, NOW),
        )
        .await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, OAUTH));

        let (thief, thief_token) = thief(&r);
        let (s, _, _) = send(
            &mut data,
            with_session(&thief, &thief_token, &access, true, NOW),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(
            unwrapped.calls(),
            1,
            "the handler saw the agent's request only"
        );
    }

    #[tokio::test]
    async fn the_credential_must_be_covered_bound_and_well_formed() {
        let mut r = rig();
        let token = r.w.agent_token(3600);
        let session = issue(&r, &token).await;

        // Not covered by the signature: invalid_input naming authorization.
        let (s, h, _) = send(
            &mut r.data,
            with_session(&r.w.agent, &token, &session, false, NOW),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(
            header(&h, "signature-error").contains("authorization"),
            "{h:?}"
        );

        // Another agent (its own valid token and key) presenting the stolen session token.
        let (thief, thief_token) = thief(&r);
        let (s, _, body) = send(
            &mut r.data,
            with_session(&thief, &thief_token, &session, true, NOW),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}");

        // No credential: authenticated, but no session (403); a made-up one; malformed ones.
        let no_session = signed("GET", "/data", b"", &r.w.agent, &Scheme::jwt(token.clone()));
        let (s, _, body) = send(&mut r.data, no_session).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(body.contains("session token is required"), "{body}");
        assert_eq!(
            send(
                &mut r.data,
                with_session(&r.w.agent, &token, "bm90LWEtc2Vzc2lvbg", true, NOW)
            )
            .await
            .0,
            StatusCode::FORBIDDEN
        );
        for bad in ["a b", "x,y", ""] {
            let req = with_session(&r.w.agent, &token, bad, true, NOW);
            assert_eq!(
                send(&mut r.data, req).await.0,
                StatusCode::BAD_REQUEST,
                "{bad:?}"
            );
        }
        assert_eq!(r.calls.calls(), 0);
    }
}

#[tokio::test]
async fn a_session_route_without_a_store_is_a_500_not_an_admission() {
    let w = world();
    let calls = handler();
    let mut svc = w.service(Access::SessionToken, &calls);
    let req = signed(
        "GET",
        "/data",
        b"",
        &w.agent,
        &Scheme::jwt(w.agent_token(3600)),
    );
    assert_eq!(
        send(&mut svc, req).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(calls.calls(), 0);
}
