//! A waiting request taken to be decided again is leased, never removed, until what
//! became of it is written: a store failure (or a crash) between the take and the write
//! leaves it for a poll after the lease runs out; a poll while another holds it is told
//! to poll again (`202`), not `404`; a revocation while it is held still ends it. Against
//! the in-memory store, SQLite and PostgreSQL.

use aauth_access_server::{
    AsStore, Awaiting, MemoryStore, PgStore, SqliteStore, TAKE_LEASE, WaitingCaps, WaitingCreated,
    WaitingPut, WaitingRecord,
};
use aauth_test_support::services::PgSchema;

use super::flaky::Flaky;
use super::*;

/// Asserts that `(status, headers, json)` is the `202` of a request held by another
/// poll: poll again in a second, at the same URL.
fn poll_again(answer: &(StatusCode, http::HeaderMap, serde_json::Value), location: &str) {
    let (s, h, json) = answer;
    assert_eq!(*s, StatusCode::ACCEPTED, "{json}");
    assert_eq!(json["status"], "pending", "{json}");
    assert_eq!(h["retry-after"], "1");
    assert_eq!(h["location"], location);
}

/// A world over a [`Flaky`] store over `inner` whose request was approved out of band:
/// its resource token, its pending URL and its pending id.
async fn approved(inner: Arc<dyn AsStore>) -> (World, Arc<Flaky>, String, String, String) {
    let store = Arc::new(Flaky::new(inner));
    let mut w = world();
    w.server = w
        .server
        .policy(Arc::new(ApproverFirst))
        .store(store.clone());
    let t = w.tokens(3000);
    let rt = w.resource_token(&t, |b| b);
    let request = serde_json::json!({"resource_token": rt, "agent_token": t.agent, "presented_token": t.person});
    let (location, id) = w.deferred(&request).await;
    assert!(w.server.decide_approval(&id, true, NOW).await.unwrap());
    (w, store, rt, location, id)
}

/// The store fails while the request is decided again, and again while it is written
/// back (as it was, for the retry): the request is not lost. Polls while the lease lasts
/// are told to poll again; the first after it runs out decides it again and gets the
/// token, issued once.
async fn a_failed_write_back_leaves_the_request_pollable(inner: Arc<dyn AsStore>) {
    let (w, store, _, location, _) = approved(inner).await;
    store.fail_next_standing();
    store.fail_next_put_taken();
    let (s, _, json) = w.poll_at(&location, NOW).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("temporarily_unavailable")
        ),
        "{json}"
    );
    // Still held by the failed decision: pending, not `404`.
    poll_again(&w.poll_at(&location, NOW.plus(1)).await, &location);
    poll_again(
        &w.poll_at(&location, NOW.plus(TAKE_LEASE - 1)).await,
        &location,
    );
    assert_eq!(w.server.issued().await.unwrap(), 0);
    // The lease ran out: decided again, the token issued once.
    let late = NOW.plus(TAKE_LEASE);
    let (s, _, json) = w.poll_at(&location, late).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert!(json["auth_token"].is_string(), "{json}");
    let (s, _, json) = w.poll_at(&location, late.plus(1)).await;
    assert_eq!(s, StatusCode::GONE, "answered: {json}");
    assert_eq!(w.server.issued().await.unwrap(), 1);
}

#[tokio::test]
async fn a_failed_write_back_leaves_the_request_pollable_in_memory() {
    a_failed_write_back_leaves_the_request_pollable(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn a_failed_write_back_leaves_the_request_pollable_in_sqlite() {
    a_failed_write_back_leaves_the_request_pollable(Arc::new(SqliteStore::in_memory().unwrap()))
        .await;
}

#[tokio::test]
async fn a_failed_write_back_leaves_the_request_pollable_in_postgres() {
    let Some(db) = PgSchema::new("a_failed_write_back_leaves_the_request_pollable") else {
        return;
    };
    let store = PgStore::connect(&db.options).await.unwrap();
    a_failed_write_back_leaves_the_request_pollable(Arc::new(store)).await;
    db.drop_schema().await;
}

/// A poll that arrives while another poll holds the request (taken, being decided) is
/// told to poll again (`202`, `Retry-After: 1`), never `404`, which would end the Person
/// Server's request; the holder gets the token, issued once, and a later poll `410`.
async fn a_poll_while_another_holds_the_request_is_pending(inner: Arc<dyn AsStore>) {
    let (w, store, _, location, _) = approved(inner).await;
    let hold = store.hold_next_take();
    let holder = w.poll_at(&location, NOW);
    let other = async {
        hold.bound.notified().await;
        let answer = w.poll_at(&location, NOW).await;
        hold.release.notify_one();
        answer
    };
    let ((s, _, json), other) = tokio::join!(holder, other);
    poll_again(&other, &location);
    assert_eq!(s, StatusCode::OK, "{json}");
    assert!(json["auth_token"].is_string(), "{json}");
    let (s, _, json) = w.poll_at(&location, NOW.plus(1)).await;
    assert_eq!(s, StatusCode::GONE, "answered: {json}");
    assert_eq!(w.server.issued().await.unwrap(), 1);
}

#[tokio::test]
async fn a_poll_while_another_holds_the_request_is_pending_in_memory() {
    a_poll_while_another_holds_the_request_is_pending(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn a_poll_while_another_holds_the_request_is_pending_in_sqlite() {
    a_poll_while_another_holds_the_request_is_pending(Arc::new(SqliteStore::in_memory().unwrap()))
        .await;
}

#[tokio::test]
async fn a_poll_while_another_holds_the_request_is_pending_in_postgres() {
    let Some(db) = PgSchema::new("a_poll_while_another_holds_the_request_is_pending") else {
        return;
    };
    let store = PgStore::connect(&db.options).await.unwrap();
    a_poll_while_another_holds_the_request_is_pending(Arc::new(store)).await;
    db.drop_schema().await;
}

/// AS-42 while the request is leased by a taker that never writes it back (it crashed):
/// the revocation is accepted, polls while the lease lasts are told to poll again, and
/// the first poll after it runs out ends the request `403 revoked`, issuing nothing.
async fn a_revocation_while_leased_ends_the_request(inner: Arc<dyn AsStore>) {
    let (w, store, rt, location, id) = approved(inner).await;
    // The taker: takes it, then is gone.
    assert!(store.take_waiting(&id, NOW).await.unwrap().is_some());
    assert_eq!(w.revoke_resource_token(&rt).await, StatusCode::OK);
    poll_again(&w.poll_at(&location, NOW.plus(1)).await, &location);
    let late = NOW.plus(TAKE_LEASE);
    let (s, _, json) = w.poll_at(&location, late).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked")),
        "{json}"
    );
    let (s, _, json) = w.poll_at(&location, late.plus(1)).await;
    assert_eq!(s, StatusCode::GONE, "ended: {json}");
    assert_eq!(w.server.issued().await.unwrap(), 0);
}

#[tokio::test]
async fn a_revocation_while_leased_ends_the_request_in_memory() {
    a_revocation_while_leased_ends_the_request(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn a_revocation_while_leased_ends_the_request_in_sqlite() {
    a_revocation_while_leased_ends_the_request(Arc::new(SqliteStore::in_memory().unwrap())).await;
}

#[tokio::test]
async fn a_revocation_while_leased_ends_the_request_in_postgres() {
    let Some(db) = PgSchema::new("a_revocation_while_leased_ends_the_request") else {
        return;
    };
    let store = PgStore::connect(&db.options).await.unwrap();
    a_revocation_while_leased_ends_the_request(Arc::new(store)).await;
    db.drop_schema().await;
}

/// The `jti` of auth token `token` (its payload as sent).
fn jti_of(token: &str) -> String {
    let jws = aauth_tokens::jws::CompactJws::parse(token).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&jws.payload).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// How the write that closes a request decided again, with its token minted, goes.
#[derive(Clone, Copy)]
enum Close {
    /// The store fails (`503`).
    Fails,
    /// The request is no longer taken as it was (its lease ran out, another poll took
    /// it): nothing written (`202`, poll again).
    Lost,
}

/// The token minted for a request decided again is delivered only once the request is
/// closed under the taker's lease: when that write fails or lands nowhere, the token is
/// recorded revoked and not delivered, the Person Server polls again, and the poll after
/// the lease runs out decides the request once: one live token in the end, the one
/// delivered.
async fn a_token_is_delivered_only_once_its_request_is_closed(
    inner: Arc<dyn AsStore>,
    close: Close,
) {
    let (w, store, _, location, _) = approved(inner).await;
    match close {
        Close::Fails => store.fail_next_put_taken(),
        Close::Lost => store.lose_next_put_taken(),
    }
    let answer = w.poll_at(&location, NOW).await;
    match close {
        Close::Fails => assert_eq!(
            (answer.0, answer.2["error"].as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("temporarily_unavailable")
            ),
            "{}",
            answer.2
        ),
        Close::Lost => poll_again(&answer, &location),
    }
    assert!(answer.2.get("auth_token").is_none(), "{}", answer.2);
    let minted = store.issued();
    assert_eq!(minted.len(), 1, "minted, then not delivered");
    assert!(
        store
            .is_revoked("https://as.example", &minted[0].0, NOW)
            .await
            .unwrap()
    );
    // Still taken while the lease lasts; then decided again, once.
    poll_again(&w.poll_at(&location, NOW.plus(1)).await, &location);
    let late = NOW.plus(TAKE_LEASE);
    let (s, _, json) = w.poll_at(&location, late).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let delivered = jti_of(json["auth_token"].as_str().unwrap());
    let (s, _, json) = w.poll_at(&location, late.plus(1)).await;
    assert_eq!(s, StatusCode::GONE, "answered: {json}");
    let mut live = Vec::new();
    for (jti, _) in store.issued() {
        if !store
            .is_revoked("https://as.example", &jti, late)
            .await
            .unwrap()
        {
            live.push(jti);
        }
    }
    assert_eq!(live, vec![delivered], "one live token, the one delivered");
}

/// A close written but answered with a failure (the connection lost after its
/// `COMMIT`): read back, the request is closed as answered under this taker, so its token
/// is delivered rather than revoked with the request lost.
async fn a_close_written_but_answered_failed_still_delivers(inner: Arc<dyn AsStore>) {
    let (w, store, _, location, _) = approved(inner).await;
    store.fail_after_next_put_taken();
    let (s, _, json) = w.poll_at(&location, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let delivered = jti_of(json["auth_token"].as_str().unwrap());
    assert!(
        !store
            .is_revoked("https://as.example", &delivered, NOW)
            .await
            .unwrap()
    );
    assert_eq!(store.issued().len(), 1);
    let (s, _, json) = w.poll_at(&location, NOW.plus(1)).await;
    assert_eq!(s, StatusCode::GONE, "answered: {json}");
}

#[tokio::test]
async fn a_close_written_but_answered_failed_still_delivers_in_memory_and_sqlite() {
    a_close_written_but_answered_failed_still_delivers(Arc::new(MemoryStore::default())).await;
    a_close_written_but_answered_failed_still_delivers(Arc::new(SqliteStore::in_memory().unwrap()))
        .await;
}

#[tokio::test]
async fn a_token_is_delivered_only_once_its_request_is_closed_in_memory() {
    for close in [Close::Fails, Close::Lost] {
        a_token_is_delivered_only_once_its_request_is_closed(
            Arc::new(MemoryStore::default()),
            close,
        )
        .await;
    }
}

#[tokio::test]
async fn a_token_is_delivered_only_once_its_request_is_closed_in_sqlite() {
    for close in [Close::Fails, Close::Lost] {
        a_token_is_delivered_only_once_its_request_is_closed(
            Arc::new(SqliteStore::in_memory().unwrap()),
            close,
        )
        .await;
    }
}

#[tokio::test]
async fn a_token_is_delivered_only_once_its_request_is_closed_in_postgres() {
    for (close, name) in [
        (Close::Fails, "a_token_is_delivered_only_once_closed_fails"),
        (Close::Lost, "a_token_is_delivered_only_once_closed_lost"),
    ] {
        let Some(db) = PgSchema::new(name) else {
            return;
        };
        let store = PgStore::connect(&db.options).await.unwrap();
        a_token_is_delivered_only_once_its_request_is_closed(Arc::new(store), close).await;
        db.drop_schema().await;
    }
}

/// A decision that ends the request (its resource token revoked meanwhile, recorded
/// without a mark on the request) whose write of the end lands nowhere (the lease ran
/// out, another poll took it) tells the Person Server to poll again, not of an end that
/// was not written; the poll after the lease runs out ends it `403 revoked`.
async fn an_end_not_written_under_the_lease_is_not_told(inner: Arc<dyn AsStore>) {
    let (w, store, rt, location, _) = approved(inner).await;
    let jws = aauth_tokens::jws::CompactJws::parse(&rt).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&jws.payload).unwrap();
    let (iss, jti) = (
        claims["iss"].as_str().unwrap(),
        claims["jti"].as_str().unwrap(),
    );
    store
        .revoke(iss, jti, NOW.as_secs() + 3600, NOW)
        .await
        .unwrap();
    store.lose_next_put_taken();
    poll_again(&w.poll_at(&location, NOW).await, &location);
    let late = NOW.plus(TAKE_LEASE);
    let (s, _, json) = w.poll_at(&location, late).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked")),
        "{json}"
    );
    let (s, _, json) = w.poll_at(&location, late.plus(1)).await;
    assert_eq!(s, StatusCode::GONE, "ended: {json}");
    assert_eq!(w.server.issued().await.unwrap(), 0);
}

#[tokio::test]
async fn an_end_not_written_under_the_lease_is_not_told_in_memory() {
    an_end_not_written_under_the_lease_is_not_told(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn an_end_not_written_under_the_lease_is_not_told_in_sqlite() {
    an_end_not_written_under_the_lease_is_not_told(Arc::new(SqliteStore::in_memory().unwrap()))
        .await;
}

#[tokio::test]
async fn an_end_not_written_under_the_lease_is_not_told_in_postgres() {
    let Some(db) = PgSchema::new("an_end_not_written_under_the_lease_is_not_told") else {
        return;
    };
    let store = PgStore::connect(&db.options).await.unwrap();
    an_end_not_written_under_the_lease_is_not_told(Arc::new(store)).await;
    db.drop_schema().await;
}

/// A request moved on between a poll's read and its take (here: refused on the
/// person's behalf) is not decided from the read: it goes back as taken, the poll is
/// told to poll again, and the next poll is answered from what is there (`403 denied`),
/// nothing issued.
async fn a_request_moved_on_before_its_take_is_not_decided_from_the_read(inner: Arc<dyn AsStore>) {
    let (w, store, _, location, id) = approved(inner).await;
    let read = store.waiting(&id, NOW).await.unwrap().unwrap();
    let mut data: serde_json::Value = serde_json::from_str(&read.data).unwrap();
    data["step"] = serde_json::json!({ "Refused": "the person said no" });
    store.move_before_next_take(data.to_string());
    poll_again(&w.poll_at(&location, NOW).await, &location);
    assert!(store.issued().is_empty(), "nothing minted");
    let (s, _, json) = w.poll_at(&location, NOW.plus(1)).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied")),
        "{json}"
    );
    assert_eq!(w.server.issued().await.unwrap(), 0);
}

#[tokio::test]
async fn a_request_moved_on_before_its_take_is_not_decided_from_the_read_in_memory() {
    a_request_moved_on_before_its_take_is_not_decided_from_the_read(Arc::new(
        MemoryStore::default(),
    ))
    .await;
}

#[tokio::test]
async fn a_request_moved_on_before_its_take_is_not_decided_from_the_read_in_sqlite() {
    a_request_moved_on_before_its_take_is_not_decided_from_the_read(Arc::new(
        SqliteStore::in_memory().unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn a_request_moved_on_before_its_take_is_not_decided_from_the_read_in_postgres() {
    let Some(db) = PgSchema::new("a_request_moved_on_before_its_take") else {
        return;
    };
    let store = PgStore::connect(&db.options).await.unwrap();
    a_request_moved_on_before_its_take_is_not_decided_from_the_read(Arc::new(store)).await;
    db.drop_schema().await;
}

/// A waiting request of ps.example, unexpired until `expires`.
fn waiting(id: &str, expires: u64) -> WaitingRecord {
    WaitingRecord::new(
        id.to_owned(),
        aauth_test_support::id("https://ps.example"),
        expires,
        ("https://resource.example".to_owned(), format!("rt-{id}")),
        None,
        Awaiting::Approval,
        format!("{{\"n\":\"{id}\"}}"),
    )
}

/// The lease, at the store: a take marks the request taken (kept, seen by every lookup
/// with its lease) and a second take gets nothing; a write from a read does not land on
/// it; a lease run out makes it takeable again, and the write back of the earlier take
/// then lands nowhere; the taker's own write clears the lease; creates (and their
/// sweeps) while it is taken leave it.
async fn the_lease(s: &dyn AsStore) {
    let now = NOW.as_secs();
    let caps = WaitingCaps::new(10_000, None);
    assert_eq!(
        s.create_waiting(waiting("l1", now + 600), caps, NOW)
            .await
            .unwrap(),
        WaitingCreated::Created
    );
    let first = s.take_waiting("l1", NOW).await.unwrap().unwrap();
    assert_eq!(first.taken_until, Some(now + TAKE_LEASE));
    assert_eq!(s.take_waiting("l1", NOW).await.unwrap(), None, "held");
    let later = NOW.plus(TAKE_LEASE - 1);
    assert_eq!(s.take_waiting("l1", later).await.unwrap(), None, "held");
    let seen = s.waiting("l1", later).await.unwrap().unwrap();
    assert!(seen.taken_at(later) && !seen.taken_at(NOW.plus(TAKE_LEASE)));
    assert_eq!(
        s.waiting_kept("l1", later).await.unwrap(),
        Some(seen.clone())
    );
    assert_eq!(
        s.waiting_with("https://resource.example", "rt-l1")
            .await
            .unwrap(),
        vec![seen.clone()]
    );
    let mut marked = waiting("l1", now + 600);
    marked.data = "{\"n\":\"marked\"}".to_owned();
    assert!(
        !s.replace_waiting(marked.clone(), &seen.data, later)
            .await
            .unwrap(),
        "not over a taken request"
    );

    // Creates while it is taken, each a sweep in the in-memory store and every 256th in
    // SQLite's: it stays.
    for n in 0..300 {
        let w = waiting(&format!("s{n}"), later.as_secs() + 600);
        assert_eq!(
            s.create_waiting(w, caps, later).await.unwrap(),
            WaitingCreated::Created
        );
    }
    assert_eq!(s.waiting("l1", later).await.unwrap(), Some(seen));

    // The lease ran out (its taker crashed): takeable again, as it was.
    let expired = NOW.plus(TAKE_LEASE);
    let second = s.take_waiting("l1", expired).await.unwrap().unwrap();
    assert_eq!(second.data, first.data);
    assert_eq!(
        second.taken_until,
        Some(expired.as_secs() + TAKE_LEASE),
        "a lease of its own"
    );
    let mut next = waiting("l1", now + 600);
    next.data = "{\"n\":\"next\"}".to_owned();
    assert_eq!(
        s.put_taken(next.clone(), &first).await.unwrap(),
        WaitingPut::NoLongerTaken,
        "the first take's write lands nowhere"
    );
    assert_eq!(
        s.waiting("l1", expired).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        s.put_taken(next.clone(), &second).await.unwrap(),
        WaitingPut::Stored
    );
    assert_eq!(
        s.waiting("l1", expired).await.unwrap(),
        Some(next.clone()),
        "written back, no longer taken"
    );
    assert_eq!(
        s.put_taken(next.clone(), &second).await.unwrap(),
        WaitingPut::NoLongerTaken,
        "once"
    );
    // Taken again, and a write from a read (a revocation's mark) once the lease ran out:
    // the taker's write then lands nowhere.
    let third = s.take_waiting("l1", expired).await.unwrap().unwrap();
    let past = expired.plus(TAKE_LEASE);
    assert!(
        s.replace_waiting(marked.clone(), &next.data, past)
            .await
            .unwrap()
    );
    assert_eq!(
        s.put_taken(next.clone(), &third).await.unwrap(),
        WaitingPut::NoLongerTaken
    );
    assert_eq!(s.waiting("l1", past).await.unwrap(), Some(marked));

    // An expired request is not taken; one taken as it expires is kept past its expiry
    // as any other.
    assert_eq!(
        s.create_waiting(waiting("l2", now + 5), caps, NOW)
            .await
            .unwrap(),
        WaitingCreated::Created
    );
    assert!(s.take_waiting("l2", NOW.plus(4)).await.unwrap().is_some());
    assert_eq!(s.take_waiting("l2", NOW.plus(5)).await.unwrap(), None);
    assert!(
        s.waiting_kept("l2", NOW.plus(6))
            .await
            .unwrap()
            .is_some_and(|r| r.taken_at(NOW.plus(6)))
    );
}

#[tokio::test]
async fn the_in_memory_store_leases_what_it_takes() {
    the_lease(&MemoryStore::default()).await;
}

#[tokio::test]
async fn the_sqlite_store_leases_what_it_takes() {
    the_lease(&SqliteStore::in_memory().unwrap()).await;
}

#[tokio::test]
async fn the_postgres_store_leases_what_it_takes() {
    let Some(db) = PgSchema::new("the_postgres_store_leases_what_it_takes") else {
        return;
    };
    let store = PgStore::connect(&db.options).await.unwrap();
    the_lease(&store).await;
    // Its sweep while the request is taken leaves it too.
    let taken = NOW.plus(3 * TAKE_LEASE);
    assert!(store.take_waiting("s0", taken).await.unwrap().is_some());
    store.sweep_once(taken.plus(1)).await.unwrap();
    assert!(store.waiting("s0", taken.plus(1)).await.unwrap().is_some());
    db.drop_schema().await;
}

/// A database file an earlier version created (its waiting requests without a lease):
/// opened, it gains the lease, and its requests are taken and leased as any.
#[tokio::test]
async fn an_earlier_sqlite_file_gains_the_lease() {
    let dir = std::env::temp_dir().join(format!(
        "aauth-as-lease-{}-{}",
        std::process::id(),
        NOW.as_secs()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("as.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE waiting (
           id TEXT PRIMARY KEY, ps TEXT NOT NULL, expires INTEGER NOT NULL,
           rt_iss TEXT NOT NULL, rt_jti TEXT NOT NULL, code TEXT UNIQUE, awaiting TEXT NOT NULL,
           data TEXT NOT NULL);",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO waiting VALUES ('old', 'https://ps.example', ?1, 'https://resource.example', 'rt-old', NULL, 'approval', '{}')",
        [i64::try_from(NOW.as_secs() + 600).unwrap()],
    )
    .unwrap();
    drop(conn);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(
        s.waiting("old", NOW).await.unwrap().unwrap().taken_until,
        None
    );
    let taken = s.take_waiting("old", NOW).await.unwrap().unwrap();
    assert_eq!(taken.taken_until, Some(NOW.as_secs() + TAKE_LEASE));
    assert_eq!(s.take_waiting("old", NOW).await.unwrap(), None);
    drop(s);
    // Opened again: migrated once, the lease kept.
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.waiting("old", NOW).await.unwrap(), Some(taken));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Stores opening the same file an earlier version created at once (processes
/// starting together): the set-up is one `BEGIN IMMEDIATE` transaction that checks for
/// the lease column inside it, so all open it, the column added once.
#[test]
fn stores_opening_an_earlier_sqlite_file_at_once_all_open_it() {
    // More than two, and many rounds: without the transaction, the window between the
    // check and the `ALTER TABLE` is narrow.
    const OPENERS: usize = 6;
    for round in 0..20 {
        let dir = std::env::temp_dir().join(format!(
            "aauth-as-lease-race-{}-{round}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("as.sqlite");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE waiting (
                   id TEXT PRIMARY KEY, ps TEXT NOT NULL, expires INTEGER NOT NULL,
                   rt_iss TEXT NOT NULL, rt_jti TEXT NOT NULL, code TEXT UNIQUE,
                   awaiting TEXT NOT NULL, data TEXT NOT NULL);",
            )
            .unwrap();
        let start = Arc::new(std::sync::Barrier::new(OPENERS));
        let opens: Vec<_> = (0..OPENERS)
            .map(|_| {
                let (path, start) = (path.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    SqliteStore::open(&path).map(drop)
                })
            })
            .collect();
        for open in opens {
            open.join().unwrap().unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
