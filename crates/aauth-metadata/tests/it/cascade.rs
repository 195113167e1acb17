//! The bounds of [`Cascades`]: a finished answer kept for its time and no longer, a full
//! table evicting finished cascades before refusing, a cascade stopped past its longest
//! run. On Tokio's paused clock, so the minutes pass at once.

use std::future::Future;
use std::time::Duration;

use aauth_keys::rand::SharedRandom;
use aauth_keys::time::UnixTime;
use aauth_metadata::cascade::{
    CascadeError, Cascades, FINISHED_CASCADE_TTL, MAX_CASCADE_RUN, caller_of,
};
use aauth_signing::KeyIdentity;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

const CALLER: &str = "https://ps.example aauth-person.json";

/// A cascade that answers `200 done` after `ms` milliseconds.
fn taking(ms: u64) -> aauth_metadata::cascade::Cascade {
    Box::pin(async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        http::Response::new(Bytes::from_static(b"done"))
    })
}

/// Starts a cascade taking `secs` seconds on `c` (held 1 s): its pending URL.
async fn started(c: &Cascades, secs: u64) -> Result<String, CascadeError> {
    let r = c
        .run(
            CALLER,
            &HeaderMap::new(),
            &SharedRandom::default(),
            taking(secs),
        )
        .await?;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    Ok(r.headers()["location"].to_str().unwrap().to_owned())
}

async fn poll(c: &Cascades, location: &str) -> http::Response<Bytes> {
    let id = location.strip_prefix("/revocation/").unwrap();
    c.poll(id, CALLER, &HeaderMap::new()).await
}

#[tokio::test(start_paused = true)]
async fn a_final_answer_is_given_once_then_gone_for_its_time_then_not_found() {
    let c = Cascades::new("/revocation/").hold(Duration::from_secs(1));
    let location = started(&c, 1500).await.unwrap();
    let r = poll(&c, &location).await;
    assert_eq!(
        (r.status(), r.body().as_ref()),
        (StatusCode::OK, &b"done"[..])
    );
    // Once a terminal response is returned, the pending URL is gone (-11 §Pending URL
    // Security), and stays so for the caller while the entry is kept.
    assert_eq!(poll(&c, &location).await.status(), StatusCode::GONE);
    tokio::time::sleep(FINISHED_CASCADE_TTL - Duration::from_secs(1)).await;
    assert_eq!(poll(&c, &location).await.status(), StatusCode::GONE);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = poll(&c, &location).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.body(), Cascades::not_found().body());
    assert_eq!(c.pending(), 0, "dropped from the table");
}

#[tokio::test(start_paused = true)]
async fn a_full_table_evicts_a_finished_cascade_and_refuses_when_all_run() {
    let c = Cascades::new("/revocation/")
        .hold(Duration::from_secs(1))
        .max_pending(2);
    let first = started(&c, 10_000).await.unwrap();
    let _second = started(&c, 100_000).await.unwrap();
    assert_eq!(
        started(&c, 100_000).await,
        Err(CascadeError::Busy { retry_after: 1 }),
        "both still running"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    // The first has finished: it makes room (its answer is no longer kept).
    let _third = started(&c, 100_000).await.unwrap();
    assert_eq!(c.pending(), 2);
    assert_eq!(poll(&c, &first).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn a_cascade_past_its_longest_run_is_stopped_and_answered_500() {
    let c = Cascades::new("/revocation/").hold(Duration::from_secs(1));
    let location = started(&c, MAX_CASCADE_RUN.as_millis() as u64 * 2)
        .await
        .unwrap();
    tokio::time::sleep(MAX_CASCADE_RUN).await;
    let r = poll(&c, &location).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let json: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(json["error"], "server_error");
}

#[test]
fn without_a_runtime_the_cascade_runs_to_its_end_in_its_request() {
    let c = Cascades::new("/revocation/").hold(Duration::ZERO);
    let cascade: aauth_metadata::cascade::Cascade =
        Box::pin(async { http::Response::new(Bytes::from_static(b"done")) });
    let r =
        futures_lite_block_on(c.run(CALLER, &HeaderMap::new(), &SharedRandom::default(), cascade))
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Runs `fut` to its end on this thread, outside any Tokio runtime.
fn futures_lite_block_on<F: Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[test]
fn the_caller_is_the_jwks_uri_signer_by_identifier_and_document() {
    let id = |id: &str, dwk: &str, kid: &str| KeyIdentity::JwksUri {
        id: id.to_owned(),
        dwk: dwk.to_owned(),
        kid: kid.to_owned(),
    };
    let ps = caller_of(&id("https://ps.example", "aauth-person.json", "k1"));
    assert_eq!(ps.as_deref(), Some(CALLER));
    assert_eq!(
        caller_of(&id("https://ps.example", "aauth-person.json", "k2")),
        ps,
        "a rotated key is the same caller"
    );
    assert_ne!(
        caller_of(&id("https://ps.example", "aauth-resource.json", "k1")),
        ps
    );
    let jwks = KeyIdentity::Jwks {
        url: "https://ps.example/jwks.json".to_owned(),
        kid: "k1".to_owned(),
    };
    assert_eq!(caller_of(&jwks), None);
}

/// Two instances sharing their pending revocations in PostgreSQL: the one that answered
/// `202` runs the cascade; a poll at the other is held until it ends and given its
/// answer, once across both; another caller, or an id nobody recorded, gets `404`.
#[tokio::test]
async fn a_cascade_answered_202_by_one_instance_is_polled_at_another() {
    use aauth_metadata::store::PgCascadeStore;
    let Some(db) = aauth_test_support::services::PgSchema::new(
        "a_cascade_answered_202_by_one_instance_is_polled_at_another",
    ) else {
        return;
    };
    let store = std::sync::Arc::new(PgCascadeStore::connect(&db.options).await.unwrap());
    let a = Cascades::new("/revocation/")
        .hold(Duration::ZERO)
        .shared(store.clone());
    let b = Cascades::new("/revocation/")
        .hold(Duration::from_secs(10))
        .shared(store.clone());
    let r = a
        .run(
            CALLER,
            &HeaderMap::new(),
            &SharedRandom::default(),
            taking(1500),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let id = location.strip_prefix("/revocation/").unwrap();

    let other = "https://other.example aauth-person.json";
    let none = HeaderMap::new();
    assert_eq!(
        b.poll(id, other, &none).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        b.poll("nobody", CALLER, &none).await.status(),
        StatusCode::NOT_FOUND
    );
    let mut at_once = HeaderMap::new();
    at_once.insert("prefer", http::HeaderValue::from_static("wait=0"));
    let r = b.poll(id, CALLER, &at_once).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["location"], location.as_str());

    // Held at the other instance until the cascade ends there.
    let r = b.poll(id, CALLER, &none).await;
    assert_eq!(
        (r.status(), r.body().as_ref()),
        (StatusCode::OK, &b"done"[..])
    );
    // Given once, across both.
    assert_eq!(a.poll(id, CALLER, &none).await.status(), StatusCode::GONE);
    assert_eq!(b.poll(id, CALLER, &none).await.status(), StatusCode::GONE);
    db.drop_schema().await;
}

/// A cascade whose instance ended before it did (recorded, never finished) is answered
/// `500` at another once its longest run is past, so that the sender resends.
#[tokio::test]
async fn a_cascade_whose_instance_is_gone_is_answered_500_past_its_longest_run() {
    use aauth_keys::time::{Clock, SystemClock};
    use aauth_metadata::cascade::CascadeStore;
    use aauth_metadata::store::PgCascadeStore;
    let Some(db) = aauth_test_support::services::PgSchema::new(
        "a_cascade_whose_instance_is_gone_is_answered_500_past_its_longest_run",
    ) else {
        return;
    };
    let store = std::sync::Arc::new(PgCascadeStore::connect(&db.options).await.unwrap());
    let now = SystemClock.now();
    store
        .begin(
            "lost",
            CALLER,
            UnixTime(now.as_secs() - MAX_CASCADE_RUN.as_secs() - 1),
        )
        .await
        .unwrap();
    store.begin("running", CALLER, now).await.unwrap();
    let b = Cascades::new("/revocation/")
        .hold(Duration::ZERO)
        .shared(store.clone());
    let r = b.poll("lost", CALLER, &HeaderMap::new()).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let r = b.poll("running", CALLER, &HeaderMap::new()).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    db.drop_schema().await;
}
