//! A held call while it runs: a `DELETE` of its pending URL is answered truthfully (`409`:
//! a call that has started is not cancelled, it may have acted), and a call that outlasts
//! its hold keeps its result for the auth token it ran for (draft -11 §Deferred Delivery:
//! the result is kept until the auth token's `exp`).

use std::sync::Arc;
use std::time::Duration;

use aauth_headers::Scheme;
use aauth_keys::PrivateKey;
use aauth_keys::time::{FixedClock, UnixTime};
use aauth_resource::{AAuthLayer, DeferredAuth, HeldStore, MemoryHeldStore, RedisHeldStore};
use aauth_test_support::time::fixed_clock;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower_layer::Layer;
use tower_service::Service;

use crate::held_runs::{Act, Inner, Svc, held, send};
use crate::modes::{Modes, modes};
use crate::shared::redis;
use crate::{NOW, signed};

/// A deferring layer over `store` in front of `inner`, on `clock`, whose holds last
/// `ttl` seconds.
fn service(
    m: &Modes,
    store: Arc<dyn HeldStore>,
    inner: &Inner,
    clock: Arc<FixedClock>,
    ttl: u64,
) -> Svc {
    let resource = m.w.resource.clone().resource_tokens(m.tokens());
    AAuthLayer::new(
        resource.route(
            aauth_resource::RoutePolicy::new(aauth_resource::Access::AuthToken).scope("write"),
        ),
        clock,
    )
    .defer_auth_token(DeferredAuth::new(store, "/aauth/pending/").ttl(Duration::from_secs(ttl)))
    .layer(inner.clone())
}

/// A request without a body, signed by `key` at `at`.
fn signed_at(
    method: &str,
    path: &str,
    key: &PrivateKey,
    scheme: &Scheme,
    at: UnixTime,
) -> Request<Full<Bytes>> {
    let req =
        aauth_test_support::request::build(method, &format!("https://resource.example{path}"), b"");
    aauth_test_support::request::signed(req, key, scheme, at).map(|b| Full::new(Bytes::from(b)))
}

fn error_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["error"].as_str().unwrap_or_default().to_owned()
}

/// Starts the poll that runs the held call at `location` with `auth` (the call then waits
/// to be released), and answers its task once the call has started.
async fn run_in_background(
    m: &Modes,
    svc: &mut Svc,
    inner: &Inner,
    location: &str,
    auth: &Scheme,
) -> tokio::task::JoinHandle<(StatusCode, String)> {
    let poll = svc.call(signed("GET", location, b"", &m.w.agent, auth));
    let task = tokio::spawn(async move {
        let (p, b) = poll.await.unwrap().into_parts();
        let b = b.collect().await.unwrap().to_bytes();
        (p.status, String::from_utf8_lossy(&b).into_owned())
    });
    inner.started().await;
    task
}

/// A `DELETE` of a call a poll is already running does not say it was cancelled: it is
/// `409 invalid_request`, whatever the agent presents, and the call runs to its end; its
/// result is answered to the poll that ran it and kept, replayed to its auth token (not
/// `410` as a cancelled call would be), and it runs once. A `DELETE` once it has run is
/// `410`.
async fn a_delete_while_it_runs_is_refused(store: Arc<dyn HeldStore>) {
    let m = modes();
    let inner = Inner::new(Act::AnswerWhenReleased(7));
    let mut svc = service(&m, store, &inner, fixed_clock(), 600);
    let (location, auth) = held(&m, &mut svc).await;
    let running = run_in_background(&m, &mut svc, &inner, &location, &auth).await;
    let person = Scheme::jwt(m.person_token().token);
    for (what, scheme) in [("auth token", &auth), ("person token", &person)] {
        let (s, body) = send(
            &mut svc,
            signed("DELETE", &location, b"", &m.w.agent, scheme),
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT, "{what}: {body}");
        assert_eq!(error_of(&body), "invalid_request", "{what}");
        assert!(body.contains("already running"), "{body}");
    }
    // Still running: a poll is told to come back.
    let (s, _) = send(&mut svc, signed("GET", &location, b"", &m.w.agent, &auth)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    inner.release();
    assert_eq!(running.await.unwrap(), (StatusCode::OK, "r".repeat(7)));
    let (s, body) = send(&mut svc, signed("GET", &location, b"", &m.w.agent, &auth)).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "rrrrrrr"));
    // (Signed a second later: the same `DELETE` again would be a replay.)
    let again = signed_at("DELETE", &location, &m.w.agent, &auth, NOW.plus(1));
    let (s, body) = send(&mut svc, again).await;
    assert_eq!(s, StatusCode::GONE, "{body}");
    assert_eq!(inner.calls(), 1);
}

#[tokio::test]
async fn a_delete_while_the_held_call_runs_is_refused_in_memory() {
    a_delete_while_it_runs_is_refused(Arc::new(MemoryHeldStore::default())).await;
}

#[tokio::test]
async fn a_delete_while_the_held_call_runs_is_refused_in_redis() {
    let Some(r) = redis("a_delete_while_the_held_call_runs_is_refused_in_redis").await else {
        return;
    };
    a_delete_while_it_runs_is_refused(Arc::new(RedisHeldStore::new(r, 100))).await;
}

/// A call started just before its hold (60 s) expires and ending after it keeps its
/// result: a poll meanwhile is told it still runs (`202`, not `410` from a tombstone), and
/// once it has ended its result is replayed to its auth token (kept until the token's
/// `exp`, an hour); it runs once.
async fn a_call_outlasting_its_hold_keeps_its_result(store: Arc<dyn HeldStore>) {
    let m = modes();
    let inner = Inner::new(Act::AnswerWhenReleased(5));
    let clock = fixed_clock();
    let mut svc = service(&m, store, &inner, Arc::clone(&clock), 60);
    let (location, auth) = held(&m, &mut svc).await;
    let running = run_in_background(&m, &mut svc, &inner, &location, &auth).await;
    // Past the hold's time: every request sweeps what has expired.
    let t = NOW.plus(120);
    clock.set(t);
    let key = &m.w.agent;
    let (s, body) = send(&mut svc, signed_at("GET", &location, key, &auth, t)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "while it runs: {body}");
    inner.release();
    assert_eq!(running.await.unwrap(), (StatusCode::OK, "r".repeat(5)));
    for _ in 0..2 {
        let (s, body) = send(&mut svc, signed_at("GET", &location, key, &auth, t)).await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "rrrrr"));
    }
    // Still kept near the auth token's `exp` (NOW + 3595).
    let t = NOW.plus(3500);
    clock.set(t);
    let (s, body) = send(&mut svc, signed_at("GET", &location, key, &auth, t)).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "rrrrr"));
    assert_eq!(inner.calls(), 1);
}

#[tokio::test]
async fn a_held_call_outlasting_its_hold_keeps_its_result_in_memory() {
    a_call_outlasting_its_hold_keeps_its_result(Arc::new(MemoryHeldStore::default())).await;
}

#[tokio::test]
async fn a_held_call_outlasting_its_hold_keeps_its_result_in_redis() {
    let Some(r) = redis("a_held_call_outlasting_its_hold_keeps_its_result_in_redis").await else {
        return;
    };
    a_call_outlasting_its_hold_keeps_its_result(Arc::new(RedisHeldStore::new(r, 100))).await;
}
