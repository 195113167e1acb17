//! The deferred `requirement=auth-token`: the invocation is held behind a `202`, run once
//! on the first poll with a valid auth token, and its result replayed to that token.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use aauth_headers::{AAuthRequirement, Requirement, Scheme};
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_resource::{AAuthLayer, Admitted, DeferredAuth, HeldStore, MemoryHeldStore};
use aauth_tokens::{AuthIssuer, AuthTokenBuilder, Minted, PersonTokenBuilder, ServerId};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower_layer::Layer;
use tower_service::Service;

use crate::modes::{Modes, modes};
use crate::{NOW, header, signed};
use aauth_test_support::time::fixed_clock;

/// Echoes what it ran: method, path, body, and the person.
#[derive(Clone, Default)]
struct Echo(Arc<AtomicUsize>);

impl Service<Request<Full<Bytes>>> for Echo {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        let person = req
            .extensions()
            .get::<Admitted>()
            .and_then(|a| a.person().map(|(_, sub)| sub.to_owned()))
            .unwrap_or_default();
        let head = format!("{} {} {person} run {n} ", req.method(), req.uri().path());
        Box::pin(async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let mut r = Response::new(Full::new(Bytes::from(
                head + &String::from_utf8_lossy(&body),
            )));
            *r.status_mut() = StatusCode::CREATED;
            Ok(r)
        })
    }
}

type Svc = aauth_resource::AAuthService<Echo>;

fn service(m: &Modes, store: Arc<dyn HeldStore>, echo: &Echo) -> Svc {
    let resource = m.w.resource.clone().resource_tokens(m.tokens());
    AAuthLayer::new(
        resource.route(
            aauth_resource::RoutePolicy::new(aauth_resource::Access::AuthToken).scope("write"),
        ),
        fixed_clock(),
    )
    .defer_auth_token(DeferredAuth::new(store, "/aauth/pending/"))
    .layer(echo.clone())
}

async fn send(svc: &mut Svc, req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, String) {
    let resp = svc.call(req).await.unwrap();
    let (p, b) = resp.into_parts();
    let b = b.collect().await.unwrap().to_bytes();
    (
        p.status,
        p.headers,
        String::from_utf8_lossy(&b).into_owned(),
    )
}

fn auth(m: &Modes, sub: &str, key: &PrivateKey) -> Minted {
    AuthTokenBuilder::new(
        AuthIssuer::PersonServer,
        ServerId::parse("https://ps.example").unwrap(),
        ServerId::parse("https://resource.example").unwrap(),
        ServerId::parse("https://ps.example").unwrap(),
        sub,
        key.public_key(),
    )
    .scope("write")
    .sign(m.ps_key(), "ps-1", NOW, &mut OsRandom)
    .unwrap()
}

#[tokio::test]
async fn the_invocation_is_held_run_once_and_replayed() {
    let store = Arc::new(MemoryHeldStore::default());
    held_run_once(store.clone(), store).await;
}

/// A call held through `at` (one instance's store) and polled through `poll` (another's,
/// or the same).
pub(crate) async fn held_run_once(at: Arc<dyn HeldStore>, poll: Arc<dyn HeldStore>) {
    let m = modes();
    let echo = Echo::default();
    let mut svc = service(&m, at, &echo);
    let mut poller = service(&m, poll, &echo);
    let person = Scheme::jwt(m.person_token().token);

    let (s, h, body) = send(
        &mut svc,
        signed("POST", "/doc", br#"{"title":"q3"}"#, &m.w.agent, &person),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(body, r#"{"status":"pending"}"#);
    assert_eq!(
        (
            header(&h, "retry-after").as_str(),
            header(&h, "cache-control").as_str()
        ),
        ("0", "no-store")
    );
    let location = header(&h, "location");
    assert!(
        location.starts_with("/aauth/pending/") && location.len() > 30,
        "{location}"
    );
    let req = AAuthRequirement::parse(&header(&h, "aauth-requirement")).unwrap();
    assert!(matches!(req.requirement, Requirement::AuthToken { .. }));
    assert_eq!(echo.0.load(Ordering::SeqCst), 0, "held, not run");

    // Polling with the person token: still pending, with a fresh resource token.
    let (s, h, _) = send(
        &mut poller,
        signed("GET", &location, b"", &m.w.agent, &person),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(header(&h, "aauth-requirement").starts_with("requirement=auth-token"));

    // Another agent key learns nothing.
    let other = PrivateKey::ed25519_from_seed(&[33; 32]);
    let other_person = PersonTokenBuilder::new(
        ServerId::parse("https://ps.example").unwrap(),
        ServerId::parse("https://resource.example").unwrap(),
        "person-42",
        other.public_key(),
    )
    .sign(m.ps_key(), "ps-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    let (s, _, _) = send(
        &mut poller,
        signed("GET", &location, b"", &other, &Scheme::jwt(other_person)),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // An auth token for another person is refused.
    let stranger = auth(&m, "person-7", &m.w.agent);
    let (s, _, _) = send(
        &mut poller,
        signed(
            "GET",
            &location,
            b"",
            &m.w.agent,
            &Scheme::jwt(stranger.token),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(echo.0.load(Ordering::SeqCst), 0);

    // The first poll with a valid auth token runs the held POST, as it arrived.
    let a = auth(&m, "person-42", &m.w.agent);
    let (s, _, body) = send(
        &mut poller,
        signed(
            "GET",
            &location,
            b"",
            &m.w.agent,
            &Scheme::jwt(a.token.clone()),
        ),
    )
    .await;
    assert_eq!(
        (s, body.as_str()),
        (
            StatusCode::CREATED,
            r#"POST /doc person-42 run 1 {"title":"q3"}"#
        )
    );
    // Repeated with the same auth token: the same result, not run again.
    let (s, _, body) = send(
        &mut poller,
        signed("GET", &location, b"", &m.w.agent, &Scheme::jwt(a.token)),
    )
    .await;
    assert_eq!(
        (s, body.as_str()),
        (
            StatusCode::CREATED,
            r#"POST /doc person-42 run 1 {"title":"q3"}"#
        )
    );
    assert_eq!(echo.0.load(Ordering::SeqCst), 1);
    // Another auth token cannot run it again.
    let b = auth(&m, "person-42", &m.w.agent);
    let (s, _, _) = send(
        &mut poller,
        signed("GET", &location, b"", &m.w.agent, &Scheme::jwt(b.token)),
    )
    .await;
    assert_eq!(s, StatusCode::GONE);
    assert_eq!(echo.0.load(Ordering::SeqCst), 1);
}

/// The plain `401 requirement=auth-token` of a call that is not held: a resource token,
/// no pending URL.
#[track_caller]
fn plain_challenge(s: StatusCode, h: &http::HeaderMap) {
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(h.get("location").is_none());
    let req = AAuthRequirement::parse(&header(h, "aauth-requirement")).unwrap();
    assert!(matches!(req.requirement, Requirement::AuthToken { .. }));
}

#[tokio::test]
async fn a_cancelled_hold_is_gone_and_a_full_store_answers_the_plain_challenge() {
    let m = modes();
    let echo = Echo::default();
    let store = Arc::new(MemoryHeldStore::new(1));
    let mut svc = service(&m, store.clone(), &echo);
    let person = Scheme::jwt(m.person_token().token);
    let (_, h, _) = send(&mut svc, signed("GET", "/doc", b"", &m.w.agent, &person)).await;
    let location = header(&h, "location");

    // The store holds one: the next call is not held but gets the plain challenge, and
    // the agent comes back with its auth token.
    let (s, h, _) = send(&mut svc, signed("GET", "/doc2", b"", &m.w.agent, &person)).await;
    plain_challenge(s, &h);
    assert_eq!(store.len(), 1);

    let (s, _, _) = send(
        &mut svc,
        signed("DELETE", &location, b"", &m.w.agent, &person),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let a = auth(&m, "person-42", &m.w.agent);
    let (s, _, body) = send(
        &mut svc,
        signed("GET", &location, b"", &m.w.agent, &Scheme::jwt(a.token)),
    )
    .await;
    // Draft -11 §Polling Error Codes: `410` is `invalid_code`.
    assert_eq!(s, StatusCode::GONE);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "invalid_code", "{body}");
    let (s, _, _) = send(
        &mut svc,
        signed("GET", "/aauth/pending/unknown", b"", &m.w.agent, &person),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(echo.0.load(Ordering::SeqCst), 0);
}

/// Draft -11 §Polling Error Codes: a hold polled after it expired is `408 expired` (the
/// agent may start afresh), not `404` as for an id that never was; it is not run.
#[tokio::test]
async fn an_expired_hold_is_told_expired() {
    let m = modes();
    let echo = Echo::default();
    let store = Arc::new(MemoryHeldStore::new(8));
    // Held for no time at all: expired by its first poll.
    let mut svc = service_with(&m, store, &echo, |d| d.ttl(Duration::ZERO));
    let person = Scheme::jwt(m.person_token().token);
    let (s, h, _) = send(&mut svc, signed("GET", "/doc", b"", &m.w.agent, &person)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = header(&h, "location");
    let a = auth(&m, "person-42", &m.w.agent);
    let (s, _, body) = send(
        &mut svc,
        signed("GET", &location, b"", &m.w.agent, &Scheme::jwt(a.token)),
    )
    .await;
    assert_eq!(s, StatusCode::REQUEST_TIMEOUT, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "expired", "{body}");
    // An id whose time has not come, and which was never held, is still unknown.
    let (s, _, _) = send(
        &mut svc,
        signed(
            "GET",
            &format!("/aauth/pending/unknown.{}", NOW.as_secs() + 60),
            b"",
            &m.w.agent,
            &person,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(echo.0.load(Ordering::SeqCst), 0);
}

/// A deferring service over `store`, with `tune` applied to the deferral settings.
fn service_with(
    m: &Modes,
    store: Arc<MemoryHeldStore>,
    echo: &Echo,
    tune: impl FnOnce(DeferredAuth) -> DeferredAuth,
) -> Svc {
    let resource = m.w.resource.clone().resource_tokens(m.tokens());
    AAuthLayer::new(
        resource.route(
            aauth_resource::RoutePolicy::new(aauth_resource::Access::AuthToken).scope("write"),
        ),
        fixed_clock(),
    )
    .defer_auth_token(tune(DeferredAuth::new(store, "/aauth/pending/")))
    .layer(echo.clone())
}

/// A person token for `sub` at the test Person Server, bound to `key`: what anyone who
/// runs a Person Server can mint for the resource.
fn person(m: &Modes, sub: &str, key: &PrivateKey) -> Scheme {
    Scheme::jwt(
        PersonTokenBuilder::new(
            ServerId::parse("https://ps.example").unwrap(),
            ServerId::parse("https://resource.example").unwrap(),
            sub,
            key.public_key(),
        )
        .sign(m.ps_key(), "ps-1", NOW, &mut OsRandom)
        .unwrap()
        .token,
    )
}

fn problem_error(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn one_presenter_cannot_fill_the_store_and_others_still_get_holds() {
    let m = modes();
    let echo = Echo::default();
    let store = Arc::new(MemoryHeldStore::default().quota(3));
    let mut svc = service_with(&m, Arc::clone(&store), &echo, |d| d);
    let key_a = &m.w.agent;
    let key_b = PrivateKey::ed25519_from_seed(&[34; 32]);

    // The flood: one person, one key, as many requests as it likes.
    let flood = person(&m, "person-42", key_a);
    let mut held = Vec::new();
    for i in 0..10 {
        let (s, h, body) = send(
            &mut svc,
            signed("POST", &format!("/doc/{i}"), b"{}", key_a, &flood),
        )
        .await;
        if i < 3 {
            assert_eq!(s, StatusCode::ACCEPTED, "{body}");
            held.push(header(&h, "location"));
        } else {
            // Past the quota: 429, told to come back when its oldest hold expires.
            assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
            assert_eq!(header(&h, "retry-after"), "600");
            assert_eq!(problem_error(&body), "rate_limited");
            assert!(body.contains("person"), "{body}");
        }
    }
    assert_eq!(store.len(), 3);

    // The same key for another person it minted: the key's quota is spent.
    let (s, _, body) = send(
        &mut svc,
        signed(
            "POST",
            "/doc/x",
            b"{}",
            key_a,
            &person(&m, "person-43", key_a),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("agent key"), "{body}");
    // The same person through another key: the person's quota is spent.
    let (s, _, _) = send(
        &mut svc,
        signed(
            "POST",
            "/doc/y",
            b"{}",
            &key_b,
            &person(&m, "person-42", &key_b),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);

    // Anyone else is still held.
    let (s, _, _) = send(
        &mut svc,
        signed(
            "POST",
            "/doc/z",
            b"{}",
            &key_b,
            &person(&m, "person-44", &key_b),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);

    // A settled hold frees its slot: cancelled, the flooder may hold one more.
    let (s, _, _) = send(&mut svc, signed("DELETE", &held[0], b"", key_a, &flood)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = send(&mut svc, signed("POST", "/doc/again", b"{}", key_a, &flood)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(echo.0.load(Ordering::SeqCst), 0, "nothing ran");
}

#[tokio::test]
async fn past_the_byte_budget_calls_are_not_held_but_challenged() {
    let m = modes();
    let echo = Echo::default();
    // Room for two holds of 4 KiB bodies (with their header fields), not three.
    let store = Arc::new(MemoryHeldStore::default().byte_budget(2 * 4096 + 4096));
    let mut svc = service_with(&m, Arc::clone(&store), &echo, |d| d);
    let body = vec![b'x'; 4096];
    let mut statuses = Vec::new();
    for i in 0..4u8 {
        // A fresh person and key each time: quotas do not help, the budget does.
        let key = PrivateKey::ed25519_from_seed(&[40 + i; 32]);
        let scheme = person(&m, &format!("person-{i}"), &key);
        let (s, h, b) = send(
            &mut svc,
            signed("POST", &format!("/doc/{i}"), &body, &key, &scheme),
        )
        .await;
        if s != StatusCode::ACCEPTED {
            plain_challenge(s, &h);
            assert!(b.contains("auth token"), "{b}");
        }
        statuses.push(s);
        assert!(store.bytes() <= 3 * 4096, "{} bytes held", store.bytes());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::ACCEPTED,
            StatusCode::ACCEPTED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED
        ]
    );
    assert_eq!(store.len(), 2);
    assert_eq!(
        echo.0.load(Ordering::SeqCst),
        0,
        "a refused hold never runs"
    );
}

/// Anyone who runs a Person Server can mint a fresh person (and key) for every call and
/// fill the store, which no quota stops. Then calls are no longer held but answered with
/// the plain challenge, so everyone else still gets through with an auth token (a
/// presenter past its own quota still gets `429`, as above).
#[tokio::test]
async fn a_store_filled_by_fresh_people_leaves_the_service_working() {
    let m = modes();
    let echo = Echo::default();
    let store = Arc::new(MemoryHeldStore::new(8).quota(2));
    let mut svc = service_with(&m, Arc::clone(&store), &echo, |d| d);
    for i in 0..8u8 {
        let key = PrivateKey::ed25519_from_seed(&[60 + i; 32]);
        let scheme = person(&m, &format!("flood-{i}"), &key);
        let (s, _, _) = send(&mut svc, signed("POST", "/doc", b"{}", &key, &scheme)).await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    assert_eq!(store.len(), 8);

    // The person the resource serves: not held, told to come back with an auth token.
    let scheme = person(&m, "person-42", &m.w.agent);
    let (s, h, b) = send(
        &mut svc,
        signed("POST", "/doc", br#"{"n":1}"#, &m.w.agent, &scheme),
    )
    .await;
    plain_challenge(s, &h);
    assert_ne!(problem_error(&b), "temporarily_unavailable", "{b}");
    // With it, the call runs at once.
    let a = auth(&m, "person-42", &m.w.agent);
    let (s, _, body) = send(
        &mut svc,
        signed(
            "POST",
            "/doc",
            br#"{"n":1}"#,
            &m.w.agent,
            &Scheme::jwt(a.token),
        ),
    )
    .await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::CREATED, r#"POST /doc person-42 run 1 {"n":1}"#)
    );
    assert_eq!(store.len(), 8, "nothing more held");
}

#[tokio::test]
async fn a_body_over_the_held_cap_gets_the_plain_challenge() {
    let m = modes();
    let echo = Echo::default();
    let store = Arc::new(MemoryHeldStore::default());
    let mut svc = service_with(&m, Arc::clone(&store), &echo, |d| d);
    let scheme = person(&m, "person-42", &m.w.agent);

    // One byte over the default cap (and well under the layer's 1 MiB): not held, the
    // plain 401 with a resource token, so the agent comes back with its auth token.
    let big = vec![b'x'; aauth_resource::DEFAULT_MAX_HELD_BODY + 1];
    let (s, h, _) = send(&mut svc, signed("POST", "/big", &big, &m.w.agent, &scheme)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(h.get("location").is_none());
    let req = AAuthRequirement::parse(&header(&h, "aauth-requirement")).unwrap();
    assert!(matches!(req.requirement, Requirement::AuthToken { .. }));
    assert!(store.is_empty());
    // At the cap, it is held.
    let fits = vec![b'x'; aauth_resource::DEFAULT_MAX_HELD_BODY];
    let (s, _, _) = send(
        &mut svc,
        signed("POST", "/fits", &fits, &m.w.agent, &scheme),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(store.len(), 1);

    // The cap is configurable, separately from the layer's.
    let mut small = service_with(&m, Arc::new(MemoryHeldStore::default()), &echo, |d| {
        d.max_held_body(10)
    });
    let (s, _, _) = send(
        &mut small,
        signed("POST", "/eleven", b"{\"a\":12345}", &m.w.agent, &scheme),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = send(
        &mut small,
        signed("POST", "/ten", b"{\"a\":1234}", &m.w.agent, &scheme),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(echo.0.load(Ordering::SeqCst), 0);
}

/// An upgrade is never held: its connection is the point, and over HTTP/2 a `202` to an
/// extended `CONNECT` would open the tunnel instead of naming the pending URL. It gets
/// the plain challenge, and comes back with its auth token.
#[tokio::test]
async fn an_upgrade_is_not_held_but_challenged() {
    let m = modes();
    let echo = Echo::default();
    let store = Arc::new(MemoryHeldStore::default());
    let mut svc = service_with(&m, Arc::clone(&store), &echo, |d| d);
    let scheme = person(&m, "person-42", &m.w.agent);
    let mut http1 = signed("GET", "/ws", b"", &m.w.agent, &scheme);
    for (name, value) in [("connection", "Upgrade"), ("upgrade", "websocket")] {
        http1
            .headers_mut()
            .insert(name, http::HeaderValue::from_static(value));
    }
    let h2 = signed("CONNECT", "/ws", b"", &m.w.agent, &scheme);
    for req in [http1, h2] {
        let (s, h, _) = send(&mut svc, req).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(h.get("location").is_none());
        let req = AAuthRequirement::parse(&header(&h, "aauth-requirement")).unwrap();
        assert!(matches!(req.requirement, Requirement::AuthToken { .. }));
    }
    assert!(store.is_empty());
    assert_eq!(echo.0.load(Ordering::SeqCst), 0);
}

/// A "random" source that fills every buffer with one byte.
struct Constant(u8);

impl aauth_keys::rand::RandomSource for Constant {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), aauth_keys::rand::RandomError> {
        dest.fill(self.0);
        Ok(())
    }
}

#[tokio::test]
async fn pending_ids_and_resource_token_jtis_come_from_the_injected_sources() {
    use aauth_keys::rand::SharedRandom;
    let m = modes();
    let tokens = m.tokens().random(SharedRandom::new(Constant(1)));
    let mut svc = AAuthLayer::new(
        m.w.resource.clone().resource_tokens(tokens).route(
            aauth_resource::RoutePolicy::new(aauth_resource::Access::AuthToken).scope("write"),
        ),
        fixed_clock(),
    )
    .defer_auth_token(
        DeferredAuth::new(Arc::new(MemoryHeldStore::default()), "/aauth/pending/")
            .random(SharedRandom::new(Constant(2))),
    )
    .layer(Echo::default());
    let person = Scheme::jwt(m.person_token().token);
    let (s, h, _) = send(&mut svc, signed("POST", "/doc", b"{}", &m.w.agent, &person)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    // 16 bytes of 0x02, base64url: the pending id, then when the hold expires.
    assert_eq!(
        header(&h, "location"),
        format!(
            "/aauth/pending/{}.{}",
            "AgICAgICAgICAgICAgICAg",
            NOW.as_secs() + 600
        )
    );
    // 16 bytes of 0x01: the resource token's jti.
    let req = AAuthRequirement::parse(&header(&h, "aauth-requirement")).unwrap();
    let Requirement::AuthToken { resource_token } = req.requirement else {
        panic!("expected requirement=auth-token, got {req:?}");
    };
    let claims = aauth_tokens::Unverified::<aauth_tokens::ResourceClaims>::decode(
        &resource_token,
        &aauth_tokens::Validation::new(NOW),
    )
    .unwrap();
    assert_eq!(claims.unverified_claims().jti, "AQEBAQEBAQEBAQEBAQEBAQ");
}

/// A deferring layer holding in `store` under `prefix`, in front of `echo`.
fn service_under(m: &Modes, store: Arc<dyn HeldStore>, echo: &Echo, prefix: &str) -> Svc {
    let resource = m.w.resource.clone().resource_tokens(m.tokens());
    AAuthLayer::new(
        resource.route(
            aauth_resource::RoutePolicy::new(aauth_resource::Access::AuthToken).scope("write"),
        ),
        fixed_clock(),
    )
    .defer_auth_token(DeferredAuth::new(store, prefix))
    .layer(echo.clone())
}

/// Two layers sharing one store, each under its own prefix (an "admin" route and a
/// "read" one, with the same scope so that the gate alone would not tell them apart): a
/// call held by one is neither polled, run, cancelled nor replayed through the other,
/// whose inner service would run it.
async fn a_hold_is_bound_to_its_layer(store: Arc<dyn HeldStore>) {
    let m = modes();
    let (admin_calls, read_calls) = (Echo::default(), Echo::default());
    let mut admin = service_under(&m, Arc::clone(&store), &admin_calls, "/admin/pending/");
    let mut read = service_under(&m, store, &read_calls, "/read/pending/");
    let person = Scheme::jwt(m.person_token().token);
    let (s, h, _) = send(
        &mut admin,
        signed("POST", "/admin/doc", b"{}", &m.w.agent, &person),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = header(&h, "location");
    let id = location.strip_prefix("/admin/pending/").unwrap();
    let elsewhere = format!("/read/pending/{id}");
    let token = Scheme::jwt(auth(&m, "person-42", &m.w.agent).token);
    for method in ["GET", "DELETE", "GET"] {
        let (s, _, body) = send(
            &mut read,
            signed(method, &elsewhere, b"", &m.w.agent, &token),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method}: {body}");
    }
    assert_eq!(
        read_calls.0.load(Ordering::SeqCst),
        0,
        "run by the other layer"
    );
    // Through its own layer it is still pending (not cancelled), and runs there.
    let (s, _, body) = send(
        &mut admin,
        signed("GET", &location, b"", &m.w.agent, &token),
    )
    .await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::CREATED, "POST /admin/doc person-42 run 1 {}")
    );
    // Its result is not replayed through the other layer either.
    let (s, _, _) = send(
        &mut read,
        signed("GET", &elsewhere, b"", &m.w.agent, &token),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(read_calls.0.load(Ordering::SeqCst), 0);
    assert_eq!(admin_calls.0.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_hold_is_polled_only_through_its_own_layer_in_memory() {
    a_hold_is_bound_to_its_layer(Arc::new(MemoryHeldStore::default())).await;
}

#[tokio::test]
async fn a_hold_is_polled_only_through_its_own_layer_in_redis() {
    let Some(r) =
        crate::shared::redis("a_hold_is_polled_only_through_its_own_layer_in_redis").await
    else {
        return;
    };
    a_hold_is_bound_to_its_layer(Arc::new(aauth_resource::RedisHeldStore::new(r, 100))).await;
}

/// A record kept in Redis before records named their pending prefix reads back with
/// none, which no layer serves: it is refused (`404`), never run through whichever layer
/// serves its URL.
#[tokio::test]
async fn a_redis_hold_that_names_no_prefix_is_refused() {
    use aauth_keys::rand::SharedRandom;
    use aauth_metadata::store::redis::client::Cmd;
    let Some(r) = crate::shared::redis("a_redis_hold_that_names_no_prefix_is_refused").await else {
        return;
    };
    let m = modes();
    let echo = Echo::default();
    let store = Arc::new(aauth_resource::RedisHeldStore::new(r.clone(), 100));
    let mut svc = AAuthLayer::new(
        m.w.resource.clone().resource_tokens(m.tokens()).route(
            aauth_resource::RoutePolicy::new(aauth_resource::Access::AuthToken).scope("write"),
        ),
        fixed_clock(),
    )
    .defer_auth_token(
        DeferredAuth::new(store, "/aauth/pending/").random(SharedRandom::new(Constant(3))),
    )
    .layer(echo.clone());
    let person = Scheme::jwt(m.person_token().token);
    let (s, h, _) = send(&mut svc, signed("POST", "/doc", b"{}", &m.w.agent, &person)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = header(&h, "location");
    let id = location.strip_prefix("/aauth/pending/").unwrap();
    // The record as an older version wrote it: its owner without a prefix.
    let meta = r.key(&["held", "meta"]);
    let owner: String = r.query("test", &Cmd::hget(&meta, id)).await.unwrap();
    let mut owner: serde_json::Value = serde_json::from_str(&owner).unwrap();
    assert_eq!(owner["prefix"], "/aauth/pending/");
    owner.as_object_mut().unwrap().remove("prefix");
    let _: i64 = r
        .query("test", &Cmd::hset(&meta, id, owner.to_string()))
        .await
        .unwrap();
    let token = Scheme::jwt(auth(&m, "person-42", &m.w.agent).token);
    let (s, _, _) = send(&mut svc, signed("GET", &location, b"", &m.w.agent, &token)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(echo.0.load(Ordering::SeqCst), 0);
}

/// A deferring layer over `store` whose clock the test moves.
fn service_clocked(
    m: &Modes,
    store: Arc<dyn HeldStore>,
    echo: &Echo,
    clock: Arc<aauth_keys::time::FixedClock>,
) -> Svc {
    let resource = m.w.resource.clone().resource_tokens(m.tokens());
    AAuthLayer::new(
        resource.route(
            aauth_resource::RoutePolicy::new(aauth_resource::Access::AuthToken).scope("write"),
        ),
        clock,
    )
    .defer_auth_token(DeferredAuth::new(store, "/aauth/pending/"))
    .layer(echo.clone())
}

/// A request signed by `key` at `at`.
fn signed_at(
    method: &str,
    path: &str,
    key: &PrivateKey,
    scheme: &Scheme,
    at: aauth_keys::time::UnixTime,
) -> Request<Full<Bytes>> {
    let req =
        aauth_test_support::request::build(method, &format!("https://resource.example{path}"), b"");
    aauth_test_support::request::signed(req, key, scheme, at).map(|b| Full::new(Bytes::from(b)))
}

/// What the agent whose call is held may present at `at`: a person token, an agent
/// token, and an auth token for the person the call was held for.
fn presentations(m: &Modes, at: aauth_keys::time::UnixTime) -> [(&'static str, Scheme); 3] {
    let key = &m.w.agent;
    let person = PersonTokenBuilder::new(
        ServerId::parse("https://ps.example").unwrap(),
        ServerId::parse("https://resource.example").unwrap(),
        "person-42",
        key.public_key(),
    )
    .sign(m.ps_key(), "ps-1", at, &mut OsRandom)
    .unwrap();
    let agent = aauth_test_support::tokens::assistant(key.public_key())
        .sign(&m.w.provider, "key-1", at, &mut OsRandom)
        .unwrap();
    let auth = AuthTokenBuilder::new(
        AuthIssuer::PersonServer,
        ServerId::parse("https://ps.example").unwrap(),
        ServerId::parse("https://resource.example").unwrap(),
        ServerId::parse("https://ps.example").unwrap(),
        "person-42",
        key.public_key(),
    )
    .scope("write")
    .sign(m.ps_key(), "ps-1", at, &mut OsRandom)
    .unwrap();
    [
        ("person token", Scheme::jwt(person.token)),
        ("agent token", Scheme::jwt(agent.token)),
        ("another auth token", Scheme::jwt(auth.token)),
    ]
}

/// Draft -11 §Pending URL Security: once a held call has run, its pending URL is `410
/// invalid_code` to every poll of its agent (a person token is not told "pending" with a
/// fresh resource token, an agent token is not challenged, a `DELETE` does not drop the
/// result), but for the replay to the auth token it ran for (RS-36); and past the time
/// the result was kept, `410` still (a tombstone), never `404` nor `408 expired`, which
/// would let the agent send a call that already ran again. Another agent key learns
/// nothing more than before: `404`, then `408` once the id's time has passed.
async fn a_call_that_ran_is_gone_but_to_its_auth_token(store: Arc<dyn HeldStore>) {
    let m = modes();
    let echo = Echo::default();
    let clock = fixed_clock();
    let mut svc = service_clocked(&m, store, &echo, Arc::clone(&clock));
    let key = &m.w.agent;
    let stranger = PrivateKey::ed25519_from_seed(&[35; 32]);
    let (s, h, _) = send(
        &mut svc,
        signed("POST", "/doc", b"{}", key, &person(&m, "person-42", key)),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = header(&h, "location");
    // The auth token it runs for, whose result is kept until its `exp` (NOW + 300), before
    // the hold's own expiry (NOW + 600).
    let ran = AuthTokenBuilder::new(
        AuthIssuer::PersonServer,
        ServerId::parse("https://ps.example").unwrap(),
        ServerId::parse("https://resource.example").unwrap(),
        ServerId::parse("https://ps.example").unwrap(),
        "person-42",
        key.public_key(),
    )
    .scope("write")
    .lifetime(Duration::from_secs(300))
    .sign(m.ps_key(), "ps-1", NOW, &mut OsRandom)
    .unwrap();
    let ran = Scheme::jwt(ran.token);
    let (s, _, body) = send(&mut svc, signed("GET", &location, b"", key, &ran)).await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::CREATED, "POST /doc person-42 run 1 {}")
    );

    let gone = |(s, h, body): (StatusCode, http::HeaderMap, String), what: &str| {
        assert_eq!(s, StatusCode::GONE, "{what}: {body}");
        assert_eq!(problem_error(&body), "invalid_code", "{what}: {body}");
        assert!(h.get("aauth-requirement").is_none(), "{what}: {h:?}");
        assert!(h.get("location").is_none(), "{what}: {h:?}");
    };
    for (what, scheme) in presentations(&m, NOW) {
        gone(
            send(&mut svc, signed("GET", &location, b"", key, &scheme)).await,
            what,
        );
    }
    gone(
        send(&mut svc, signed("DELETE", &location, b"", key, &ran)).await,
        "DELETE",
    );
    // The replay to its auth token, as before (and not dropped by the `DELETE`).
    let (s, _, body) = send(&mut svc, signed("GET", &location, b"", key, &ran)).await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::CREATED, "POST /doc person-42 run 1 {}")
    );
    let foreign = person(&m, "person-43", &stranger);
    let (s, _, _) = send(&mut svc, signed("GET", &location, b"", &stranger, &foreign)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Past the result's retention (the auth token's `exp`), then past the hold's own
    // expiry: `410` to the agent, whatever it presents, and nothing runs.
    for (secs, stranger_sees) in [
        (400, StatusCode::NOT_FOUND),
        (900, StatusCode::REQUEST_TIMEOUT),
    ] {
        let t = NOW.plus(secs);
        clock.set(t);
        for (what, scheme) in presentations(&m, t) {
            let what = format!("{what} at +{secs}");
            gone(
                send(&mut svc, signed_at("GET", &location, key, &scheme, t)).await,
                &what,
            );
        }
        let foreign = PersonTokenBuilder::new(
            ServerId::parse("https://ps.example").unwrap(),
            ServerId::parse("https://resource.example").unwrap(),
            "person-43",
            stranger.public_key(),
        )
        .sign(m.ps_key(), "ps-1", t, &mut OsRandom)
        .unwrap();
        let (s, _, body) = send(
            &mut svc,
            signed_at("GET", &location, &stranger, &Scheme::jwt(foreign.token), t),
        )
        .await;
        assert_eq!(s, stranger_sees, "a stranger at +{secs}: {body}");
    }
    assert_eq!(echo.0.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_call_that_ran_is_gone_but_to_its_auth_token_in_memory() {
    a_call_that_ran_is_gone_but_to_its_auth_token(Arc::new(MemoryHeldStore::default())).await;
}

#[tokio::test]
async fn a_call_that_ran_is_gone_but_to_its_auth_token_in_redis() {
    let Some(r) =
        crate::shared::redis("a_call_that_ran_is_gone_but_to_its_auth_token_in_redis").await
    else {
        return;
    };
    a_call_that_ran_is_gone_but_to_its_auth_token(Arc::new(aauth_resource::RedisHeldStore::new(
        r, 100,
    )))
    .await;
}
