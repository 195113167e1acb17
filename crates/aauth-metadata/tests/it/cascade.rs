//! The bounds of [`Cascades`]: a finished answer kept for its time and no longer, a full
//! table evicting finished cascades before refusing, a cascade stopped past its longest
//! run. On Tokio's paused clock, so the minutes pass at once.

use std::future::Future;
use std::time::Duration;

use aauth_keys::rand::SharedRandom;
use aauth_keys::time::UnixTime;
use aauth_metadata::cascade::{
    CascadeError, CascadeStore, Cascades, FINISHED_CASCADE_TTL, Kept, KeptAnswer, MAX_CASCADE_RUN,
    STOPPED_GRACE, caller_of,
};
use aauth_metadata::store::StoreError;
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
/// `500` at another once its longest run and the grace after it are past, so that the
/// sender resends.
#[tokio::test]
async fn a_cascade_whose_instance_is_gone_is_answered_500_past_its_longest_run() {
    use aauth_keys::time::{Clock, SystemClock};
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
            UnixTime(now.as_secs() - MAX_CASCADE_RUN.as_secs() - STOPPED_GRACE.as_secs() - 1),
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

/// A [`CascadeStore`] in memory that counts its reads, and whose `finish` can fail.
#[derive(Default)]
struct TestStore {
    rows: std::sync::Mutex<std::collections::BTreeMap<String, (String, Kept)>>,
    reads: std::sync::atomic::AtomicUsize,
    fail_finish: std::sync::atomic::AtomicBool,
}

impl TestStore {
    fn reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl CascadeStore for TestStore {
    async fn begin(&self, id: &str, caller: &str, now: UnixTime) -> Result<(), StoreError> {
        let kept = Kept::Running { since: now };
        self.rows
            .lock()
            .unwrap()
            .insert(id.to_owned(), (caller.to_owned(), kept));
        Ok(())
    }

    async fn finish(&self, id: &str, answer: &KeptAnswer, _: UnixTime) -> Result<(), StoreError> {
        if self.fail_finish.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::unreadable(
                "test",
                "cascade",
                "the store is down",
            ));
        }
        if let Some(row) = self.rows.lock().unwrap().get_mut(id) {
            row.1 = Kept::Finished {
                answer: answer.clone(),
                delivered: false,
            };
        }
        Ok(())
    }

    async fn read(&self, id: &str, caller: &str, _: UnixTime) -> Result<Option<Kept>, StoreError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let rows = self.rows.lock().unwrap();
        Ok(rows
            .get(id)
            .filter(|(c, _)| c == caller)
            .map(|(_, k)| k.clone()))
    }

    async fn deliver(&self, id: &str) -> Result<bool, StoreError> {
        let mut rows = self.rows.lock().unwrap();
        match rows.get_mut(id) {
            Some((_, Kept::Finished { delivered, .. })) if !*delivered => {
                *delivered = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Starts a cascade on `c` (hold zero: `202` at once): its id.
async fn pending_id(c: &Cascades, cascade: aauth_metadata::cascade::Cascade) -> String {
    let r = c
        .run(CALLER, &HeaderMap::new(), &SharedRandom::default(), cascade)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap();
    location.strip_prefix("/revocation/").unwrap().to_owned()
}

/// A held poll of a cascade another instance runs reads the store every
/// `SHARED_POLL_EVERY`, not as fast as it can, and is `202` at the end of its hold.
#[tokio::test]
async fn a_held_poll_reads_the_shared_store_at_its_pace() {
    let store = std::sync::Arc::new(TestStore::default());
    let a = Cascades::new("/revocation/")
        .hold(Duration::ZERO)
        .shared(store.clone());
    let b = Cascades::new("/revocation/")
        .hold(Duration::from_secs(2))
        .shared(store.clone());
    let id = pending_id(&a, taking(60_000)).await;
    let r = b.poll(&id, CALLER, &HeaderMap::new()).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!((4..=6).contains(&store.reads()), "{} reads", store.reads());
}

/// The instance that ran a cascade whose end the store could not record gives its
/// answer itself, once; a cascade whose task here ended without an answer is `500` at
/// once, without reading the store over and over.
#[tokio::test]
async fn an_unrecorded_end_is_answered_where_it_ran_and_a_lost_task_at_once() {
    let store = std::sync::Arc::new(TestStore::default());
    store
        .fail_finish
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let a = Cascades::new("/revocation/")
        .hold(Duration::from_secs(10))
        .shared(store.clone());
    let mut at_once = HeaderMap::new();
    at_once.insert("prefer", http::HeaderValue::from_static("wait=0"));
    let r = a
        .run(CALLER, &at_once, &SharedRandom::default(), taking(200))
        .await
        .unwrap();
    let id = r.headers()["location"].to_str().unwrap()["/revocation/".len()..].to_owned();
    let r = a.poll(&id, CALLER, &HeaderMap::new()).await;
    assert_eq!(
        (r.status(), r.body().as_ref()),
        (StatusCode::OK, &b"done"[..])
    );
    assert_eq!(
        a.poll(&id, CALLER, &HeaderMap::new()).await.status(),
        StatusCode::GONE
    );

    let lost: aauth_metadata::cascade::Cascade = Box::pin(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        panic!("the cascade's task ends without an answer")
    });
    let r = a
        .run(CALLER, &at_once, &SharedRandom::default(), lost)
        .await
        .unwrap();
    let id = r.headers()["location"].to_str().unwrap()["/revocation/".len()..].to_owned();
    let before = store.reads();
    let started = std::time::Instant::now();
    let r = a.poll(&id, CALLER, &HeaderMap::new()).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        store.reads() - before <= 3,
        "{} reads",
        store.reads() - before
    );
}

/// A server stopping ([`Cascades::stop_holding`]) answers the request it holds and the
/// polls it holds at once, `202` with the pending URL (the sender polls again, or
/// resends), and holds none from then on; a cascade done at once still gets its own
/// answer.
#[tokio::test(start_paused = true)]
async fn stopping_answers_held_requests_and_polls_at_once() {
    let c = Cascades::new("/revocation/").hold(Duration::from_secs(20));
    let start = tokio::time::Instant::now();
    // A cascade answered 202 at once (`Prefer: wait=0`): its poll will be held.
    let mut at_once = HeaderMap::new();
    at_once.insert("prefer", http::HeaderValue::from_static("wait=0"));
    let r = c
        .run(CALLER, &at_once, &SharedRandom::default(), taking(600_000))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    // A request held, and that poll held, both answered when the server stops at 2 s.
    let (none, random) = (HeaderMap::new(), SharedRandom::default());
    let (held, polled, ()) = tokio::join!(
        c.run(CALLER, &none, &random, taking(600_000)),
        poll(&c, &location),
        async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            c.stop_holding();
        }
    );
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "answered at the stop"
    );
    let held = held.unwrap();
    assert_eq!(held.status(), StatusCode::ACCEPTED);
    assert!(
        held.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/revocation/")
    );
    assert_eq!(polled.status(), StatusCode::ACCEPTED);
    assert_eq!(polled.headers()["location"], location.as_str());

    // From then on nothing is held: a new request and a poll are answered at once.
    let at = start.elapsed();
    let again = started(&c, 600_000).await.unwrap();
    assert_eq!(poll(&c, &again).await.status(), StatusCode::ACCEPTED);
    assert_eq!(start.elapsed(), at, "not held");
    // A cascade done at its first step is still answered as it ends.
    let r = c
        .run(
            CALLER,
            &HeaderMap::new(),
            &SharedRandom::default(),
            Box::pin(async { http::Response::new(Bytes::from_static(b"done")) }),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status(), r.body().as_ref()),
        (StatusCode::OK, &b"done"[..])
    );
}

/// A poll held on a cascade another instance runs (the shared store) is answered `202`
/// at once when this instance stops.
#[tokio::test(start_paused = true)]
async fn stopping_answers_a_shared_poll_at_once() {
    let store = std::sync::Arc::new(TestStore::default());
    let a = Cascades::new("/revocation/")
        .hold(Duration::ZERO)
        .shared(store.clone());
    let b = Cascades::new("/revocation/")
        .hold(Duration::from_secs(20))
        .shared(store.clone());
    let id = pending_id(&a, taking(600_000)).await;
    let start = tokio::time::Instant::now();
    let none = HeaderMap::new();
    let (r, ()) = tokio::join!(b.poll(&id, CALLER, &none), async {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        b.stop_holding();
    });
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(start.elapsed(), Duration::from_millis(1200));
    let r = b.poll(&id, CALLER, &HeaderMap::new()).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(start.elapsed(), Duration::from_millis(1200), "not held");
}
