//! Two instances of one resource over one Redis (each with its own connection, as two
//! processes would have), and Redis cut off in the middle of the flow by a TCP proxy.

use std::sync::Arc;
use std::time::Duration;

use aauth_headers::Scheme;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::FixedClock;
use aauth_metadata::store::redis::Redis;
use aauth_resource::{
    AAuthLayer, AAuthService, Access, Held, HeldStore, HoldError, RedisHeldStore,
    RedisReplayAndRevocations, RedisReplayStore, RedisRevocationList, RedisSessionStore,
    RoutePolicy, Session, SessionStore,
};
use aauth_signing::RevocationList;
use http::StatusCode;
use tower_layer::Layer;

use crate::replay::{copy, post};
use crate::shared::config;
use crate::{Handler, NOW, World, assert_sig_error, handler, header, send, signed, world};
use aauth_test_support::services::{Cuttable, redis_url};

/// One instance: its own connection to the Redis at `url`, under `prefix`.
async fn connect(url: &str, prefix: &str) -> Redis {
    Redis::connect(&config(url).prefix(prefix)).await.unwrap()
}

/// The layer of an instance over `redis`: replay cache and revocations shared there,
/// asked together (one round trip for a token-bearing POST).
fn instance(w: &World, redis: &Redis, calls: &Handler) -> AAuthService<Handler> {
    let both = RedisReplayAndRevocations::new(
        RedisReplayStore::new(redis.clone()),
        RedisRevocationList::new(redis.clone(), 60, 1000),
    );
    layer(
        w.resource.clone().revocations_and_replay(Arc::new(both)),
        calls,
    )
}

/// The same with the two stores asked apart (two round trips).
fn instance_apart(w: &World, redis: &Redis, calls: &Handler) -> AAuthService<Handler> {
    let resource = w
        .resource
        .clone()
        .replay_store(Arc::new(RedisReplayStore::new(redis.clone())))
        .revocations(Arc::new(RedisRevocationList::new(redis.clone(), 60, 1000)));
    layer(resource, calls)
}

fn layer(resource: aauth_resource::Resource, calls: &Handler) -> AAuthService<Handler> {
    AAuthLayer::new(
        resource.route(RoutePolicy::new(Access::AgentToken)),
        Arc::new(FixedClock::new(NOW)),
    )
    .layer(calls.clone())
}

/// Two instances' Redis connections (one prefix), or `None` when the test skips.
async fn two(test: &str) -> Option<(Redis, Redis)> {
    let url = redis_url(test)?;
    let prefix = crate::shared::fresh_prefix();
    Some((connect(&url, &prefix).await, connect(&url, &prefix).await))
}

#[tokio::test]
async fn a_post_replayed_to_the_other_instance_is_refused() {
    let Some((ra, rb)) = two("a_post_replayed_to_the_other_instance_is_refused").await else {
        return;
    };
    let w = world();
    let calls = handler();
    // The stores asked together and apart: the same answers.
    let pairs = [
        (instance(&w, &ra, &calls), instance(&w, &rb, &calls)),
        (
            instance_apart(&w, &ra, &calls),
            instance_apart(&w, &rb, &calls),
        ),
    ];
    for (n, (mut a, mut b)) in pairs.into_iter().enumerate() {
        let req = post(
            &w,
            &w.agent_token(3600),
            format!("{{\"n\":{n}}}").as_bytes(),
        );
        assert_eq!(send(&mut a, copy(&req)).await.0, StatusCode::OK);
        let (s, h, body) = send(&mut b, copy(&req)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(header(&h, "signature-error"), "error=invalid_signature");
        assert!(body.contains("replay"), "{body}");
        // And back again.
        assert_eq!(send(&mut a, copy(&req)).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(calls.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_copies_over_two_instances_admit_exactly_one() {
    let Some((ra, rb)) = two("fifty_concurrent_copies_over_two_instances_admit_exactly_one").await
    else {
        return;
    };
    let w = world();
    let calls = handler();
    let (a, b) = (instance(&w, &ra, &calls), instance(&w, &rb, &calls));
    let req = post(&w, &w.agent_token(3600), br#"{"amount":100}"#);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let mut svc = if i % 2 == 0 { a.clone() } else { b.clone() };
            let copy = copy(&req);
            tokio::spawn(async move {
                let (s, _, body) = send(&mut svc, copy).await;
                (s, body)
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let admitted = statuses.iter().filter(|s| s.0 == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| s.0 == StatusCode::UNAUTHORIZED && s.1.contains("replay"))
        .count();
    assert_eq!((admitted, refused), (1, 49), "{statuses:?}");
    assert_eq!(calls.calls(), 1);
}

#[tokio::test]
async fn a_revocation_through_one_instance_is_enforced_by_the_other() {
    let Some((ra, rb)) = two("a_revocation_through_one_instance_is_enforced_by_the_other").await
    else {
        return;
    };
    crate::revocation::revoked_at_once(
        Arc::new(RedisRevocationList::new(ra, 60, 1000)),
        Arc::new(RedisRevocationList::new(rb, 60, 1000)),
    )
    .await;
}

/// The revocation check made in the replay check's round trip reads Redis on every
/// request: a revocation recorded through one instance stops the other's next POST, and
/// that refused POST records nothing.
#[tokio::test]
async fn a_revocation_through_one_instance_stops_the_others_next_post() {
    let Some((ra, rb)) = two("a_revocation_through_one_instance_stops_the_others_next_post").await
    else {
        return;
    };
    let w = world();
    let calls = handler();
    let mut b = instance(&w, &rb, &calls);
    let minted = aauth_test_support::tokens::assistant(w.agent.public_key())
        .lifetime(Duration::from_secs(3600))
        .sign(&w.provider, "key-1", NOW.minus(10), &mut OsRandom)
        .unwrap();
    assert_eq!(
        send(&mut b, copy(&post_n(&w, &minted.token, 0))).await.0,
        StatusCode::OK
    );
    RedisRevocationList::new(ra, 60, 1000)
        .revoke(
            &crate::id("https://agent.example"),
            &minted.jti,
            minted.exp,
            NOW,
        )
        .await
        .unwrap();
    let (s, h, _) = send(&mut b, copy(&post_n(&w, &minted.token, 1))).await;
    assert_sig_error(s, &h, "revoked_jwt");
    assert_eq!(calls.calls(), 1);
    assert_eq!(
        RedisReplayStore::new(rb).entries().await.unwrap(),
        1,
        "the refused POST recorded nothing"
    );
}

#[tokio::test]
async fn a_call_held_by_one_instance_is_run_once_through_the_other() {
    let Some((ra, rb)) = two("a_call_held_by_one_instance_is_run_once_through_the_other").await
    else {
        return;
    };
    crate::deferred::held_run_once(
        Arc::new(RedisHeldStore::new(ra, 100)),
        Arc::new(RedisHeldStore::new(rb, 100)),
    )
    .await;
}

/// The stores of an instance whose Redis is behind `cutter`.
struct Behind {
    svc: AAuthService<Handler>,
    sessions: RedisSessionStore,
    held: RedisHeldStore,
    revocations: RedisRevocationList,
}

/// A signed POST with a fresh body (`n`), or the same again.
fn post_n(w: &World, token: &str, n: u32) -> http::Request<Vec<u8>> {
    post(w, token, format!("{{\"n\":{n}}}").as_bytes())
}

fn a_session(w: &World) -> Session {
    Session::new(
        aauth_tokens::AgentId::parse("aauth:assistant@agent.example").unwrap(),
        w.agent.public_key().thumbprint(),
        None,
        NOW.plus(600),
    )
}

fn a_hold() -> Held {
    let (parts, ()) = http::Request::post("/doc").body(()).unwrap().into_parts();
    Held::new(
        parts,
        bytes::Bytes::from_static(b"{}"),
        "jkt",
        "https://ps.example",
        "person-1",
        NOW.plus(600),
    )
}

#[tokio::test]
async fn with_redis_cut_off_every_request_is_a_503_and_service_resumes_when_it_returns() {
    let test = "with_redis_cut_off_every_request_is_a_503_and_service_resumes_when_it_returns";
    let Some(url) = redis_url(test) else {
        return;
    };
    let cutter = Cuttable::to(&url, 6379).await;
    let redis = connect(&cutter.url(&url), &crate::shared::fresh_prefix()).await;
    let w = world();
    let calls = handler();
    let s = Behind {
        svc: instance(&w, &redis, &calls),
        sessions: RedisSessionStore::new(redis.clone(), 100),
        held: RedisHeldStore::new(redis.clone(), 100),
        revocations: RedisRevocationList::new(redis.clone(), 60, 1000),
    };
    let token = w.agent_token(3600);
    // Working: one POST admitted.
    let mut svc = s.svc.clone();
    assert_eq!(
        send(&mut svc, copy(&post_n(&w, &token, 0))).await.0,
        StatusCode::OK
    );

    cutter.cut();
    let refused = post_n(&w, &token, 1);
    for _ in 0..3 {
        // A state-changing request (the replay check), and a read (the revocation check).
        let (st, h, _) = send(&mut svc, copy(&refused)).await;
        assert_eq!(
            (st, header(&h, "retry-after")),
            (StatusCode::SERVICE_UNAVAILABLE, "1".to_owned())
        );
        let get = signed("GET", "/data", b"", &w.agent, &Scheme::jwt(token.clone()));
        let (st, h, _) = send(&mut svc, get).await;
        assert_eq!(
            (st, header(&h, "retry-after")),
            (StatusCode::SERVICE_UNAVAILABLE, "1".to_owned())
        );
        // Each store answers its unavailable error, never a verdict.
        assert!(s.sessions.issue(a_session(&w), NOW).await.is_err());
        assert!(s.sessions.lookup("any", NOW).await.is_err());
        let e = s.held.hold("h1", a_hold(), NOW).await.unwrap_err();
        assert!(matches!(e, HoldError::Store(_)), "{e:?}");
        assert_eq!(
            (e.status(), e.retry_after()),
            (StatusCode::SERVICE_UNAVAILABLE, 1)
        );
        assert!(s.held.get("h1", NOW).await.is_err());
        assert!(
            s.revocations
                .is_revoked(&crate::id("https://ps.example"), "j")
                .await
                .is_err()
        );
    }
    assert_eq!(calls.calls(), 1, "nothing admitted while Redis was away");

    cutter.restore();
    // The connection comes back by itself: within a bounded number of tries (the first
    // may still meet the connection that was cut), the same stores answer again.
    let mut back = false;
    for _ in 0..100 {
        let get = signed("GET", "/data", b"", &w.agent, &Scheme::jwt(token.clone()));
        if send(&mut svc, get).await.0 == StatusCode::OK {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "the resource did not come back with Redis");
    // Nothing half-written: the POST refused while Redis was away was never recorded, so
    // it is admitted now, once.
    assert_eq!(send(&mut svc, copy(&refused)).await.0, StatusCode::OK);
    assert_eq!(
        send(&mut svc, copy(&refused)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let t = s.sessions.issue(a_session(&w), NOW).await.unwrap();
    assert!(s.sessions.lookup(t.secret(), NOW).await.unwrap().is_some());
    assert!(
        s.held.get("h1", NOW).await.unwrap().is_none(),
        "no hold half-kept"
    );
    s.held.hold("h1", a_hold(), NOW).await.unwrap();
    assert!(s.held.get("h1", NOW).await.unwrap().is_some());
    assert!(
        !s.revocations
            .is_revoked(&crate::id("https://ps.example"), "j")
            .await
            .unwrap()
    );
}
