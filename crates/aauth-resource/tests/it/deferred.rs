//! The deferred `requirement=auth-token`: the invocation is held behind a `202`, run once
//! on the first poll with a valid auth token, and its result replayed to that token.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use aauth_headers::{AAuthRequirement, Requirement, Scheme};
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::FixedClock;
use aauth_resource::{AAuthLayer, Admitted, DeferredAuth, MemoryHeldStore};
use aauth_tokens::{AuthIssuer, AuthTokenBuilder, Minted, PersonTokenBuilder, ServerId};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower_layer::Layer;
use tower_service::Service;

use crate::modes::{Modes, modes};
use crate::{NOW, header, signed};

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

fn service(m: &Modes, store: Arc<MemoryHeldStore>, echo: &Echo) -> Svc {
    let resource = m.w.resource.clone().resource_tokens(m.tokens());
    AAuthLayer::new(
        resource.route(
            aauth_resource::RoutePolicy::new(aauth_resource::Access::AuthToken).scope("write"),
        ),
        Arc::new(FixedClock::new(NOW)),
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
    let m = modes();
    let store = Arc::new(MemoryHeldStore::default());
    let echo = Echo::default();
    let mut svc = service(&m, store, &echo);
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
    let (s, h, _) = send(&mut svc, signed("GET", &location, b"", &m.w.agent, &person)).await;
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
        &mut svc,
        signed("GET", &location, b"", &other, &Scheme::jwt(other_person)),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // An auth token for another person is refused.
    let stranger = auth(&m, "person-7", &m.w.agent);
    let (s, _, _) = send(
        &mut svc,
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
        &mut svc,
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
        &mut svc,
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
        &mut svc,
        signed("GET", &location, b"", &m.w.agent, &Scheme::jwt(b.token)),
    )
    .await;
    assert_eq!(s, StatusCode::GONE);
    assert_eq!(echo.0.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_cancelled_hold_is_gone_and_a_full_store_fails_closed() {
    let m = modes();
    let echo = Echo::default();
    let mut svc = service(&m, Arc::new(MemoryHeldStore::new(1)), &echo);
    let person = Scheme::jwt(m.person_token().token);
    let (_, h, _) = send(&mut svc, signed("GET", "/doc", b"", &m.w.agent, &person)).await;
    let location = header(&h, "location");

    // The store holds one: the next hold is refused with 503, nothing lost.
    let (s, h, _) = send(&mut svc, signed("GET", "/doc2", b"", &m.w.agent, &person)).await;
    assert_eq!(
        (s, header(&h, "retry-after").as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "1")
    );

    let (s, _, _) = send(
        &mut svc,
        signed("DELETE", &location, b"", &m.w.agent, &person),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let a = auth(&m, "person-42", &m.w.agent);
    let (s, _, _) = send(
        &mut svc,
        signed("GET", &location, b"", &m.w.agent, &Scheme::jwt(a.token)),
    )
    .await;
    assert_eq!(s, StatusCode::GONE);
    let (s, _, _) = send(
        &mut svc,
        signed("GET", "/aauth/pending/unknown", b"", &m.w.agent, &person),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(echo.0.load(Ordering::SeqCst), 0);
}
