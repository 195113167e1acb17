//! The Access Server's stores: one contract, checked against the in-memory store and
//! SQLite; and a server restarted over the same SQLite file carries on with its waiting
//! requests, its bindings and billing, and its issuance records (the revocation cascade
//! still reaches tokens issued before the restart).

use aauth_access_server::{
    AsStore, Awaiting, IssuedRecord, MemoryStore, PgStore, RECORD_GRACE, SqliteStore, TAKE_LEASE,
    WAITING_KEPT, WaitingCaps, WaitingCreated, WaitingPut, WaitingRecord,
};
use aauth_test_support::services::PgSchema;

use super::*;

fn record(
    id: &str,
    expires: u64,
    code: Option<&str>,
    awaiting: Awaiting,
    rt: &str,
) -> WaitingRecord {
    WaitingRecord::new(
        id.to_owned(),
        id_of("https://ps.example"),
        expires,
        ("https://resource.example".to_owned(), rt.to_owned()),
        code.map(str::to_owned),
        awaiting,
        format!("{{\"n\":\"{id}\"}}"),
    )
}

use aauth_test_support::id as id_of;

/// At most `n` unexpired requests per Person Server, and no total.
fn per_ps(n: usize) -> WaitingCaps {
    WaitingCaps::new(n, None)
}

/// The contract every store keeps.
async fn contract(s: &dyn AsStore) {
    let now = NOW.as_secs();
    let (rs, other) = (
        id_of("https://resource.example"),
        id_of("https://other.example"),
    );

    // Issuance records: found by the token they were issued against, until exp + grace.
    s.record_issued(
        IssuedRecord::new(
            "a1".into(),
            id_of("https://ps.example"),
            "p1".into(),
            rs.clone(),
            now + 100,
        ),
        NOW,
    )
    .await
    .unwrap();
    s.record_issued(
        IssuedRecord::new(
            "a2".into(),
            id_of("https://ps.example"),
            "p1".into(),
            other.clone(),
            now + 10,
        ),
        NOW,
    )
    .await
    .unwrap();
    s.record_issued(
        IssuedRecord::new(
            "a3".into(),
            id_of("https://ps.example"),
            "p2".into(),
            rs.clone(),
            now + 100,
        ),
        NOW,
    )
    .await
    .unwrap();
    let mut against: Vec<String> = s
        .issued_against(&id_of("https://ps.example"), "p1", NOW)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.jti)
        .collect();
    against.sort();
    assert_eq!(against, ["a1", "a2"]);
    let later = NOW.plus(10 + RECORD_GRACE + 1);
    let against: Vec<String> = s
        .issued_against(&id_of("https://ps.example"), "p1", later)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.jti)
        .collect();
    assert_eq!(against, ["a1"], "a2 is past exp + grace");
    // One record by the jti of the token it is of, until exp + grace.
    assert_eq!(
        s.issued_record("a2", NOW).await.unwrap(),
        Some(IssuedRecord::new(
            "a2".into(),
            id_of("https://ps.example"),
            "p1".into(),
            other.clone(),
            now + 10,
        ))
    );
    assert_eq!(s.issued_record("a2", later).await.unwrap(), None);
    assert_eq!(s.issued_record("nope", NOW).await.unwrap(), None);
    // Another Person Server's revocation of the same jti reaches nothing.
    assert!(
        s.issued_against(&id_of("https://ps2.example"), "p1", NOW)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.issued_count().await.unwrap(), 3);

    // Revocations: by (issuer, jti), until exp + grace.
    s.revoke("https://ps.example", "p1", now + 5, NOW)
        .await
        .unwrap();
    assert!(s.is_revoked("https://ps.example", "p1", NOW).await.unwrap());
    assert!(
        !s.is_revoked("https://ps2.example", "p1", NOW)
            .await
            .unwrap(),
        "another issuer"
    );
    assert!(!s.is_revoked("https://ps.example", "p2", NOW).await.unwrap());
    assert!(
        !s.is_revoked("https://ps.example", "p1", NOW.plus(5 + RECORD_GRACE + 1))
            .await
            .unwrap()
    );
    // A revocation repeated with an earlier exp never shortens the record: it is kept
    // until the latest exp either named.
    s.revoke("https://ps.example", "p3", now + 100, NOW)
        .await
        .unwrap();
    s.revoke("https://ps.example", "p3", now + 5, NOW)
        .await
        .unwrap();
    assert!(
        s.is_revoked("https://ps.example", "p3", NOW.plus(5 + RECORD_GRACE + 1))
            .await
            .unwrap(),
        "kept until the later exp"
    );
    s.revoke("https://ps.example", "p3", now + 200, NOW)
        .await
        .unwrap();
    assert!(
        s.is_revoked("https://ps.example", "p3", NOW.plus(100 + RECORD_GRACE + 1))
            .await
            .unwrap(),
        "a later exp extends it"
    );

    // Waiting requests: by id, by code, by what they wait for, by resource token.
    for r in [
        record(
            "w1",
            now + 600,
            Some("ABCD2345"),
            Awaiting::Interaction,
            "rt1",
        ),
        record("w2", now + 600, None, Awaiting::Payment, "rt1"),
        record("w3", now + 5, None, Awaiting::Payment, "rt2"),
    ] {
        assert_eq!(s.put_waiting(r, NOW).await.unwrap(), WaitingPut::Stored);
    }
    assert_eq!(
        s.waiting("w1", NOW).await.unwrap(),
        Some(record(
            "w1",
            now + 600,
            Some("ABCD2345"),
            Awaiting::Interaction,
            "rt1"
        ))
    );
    assert_eq!(s.waiting("nope", NOW).await.unwrap(), None);
    assert_eq!(
        s.waiting_by_code("ABCD2345", NOW)
            .await
            .unwrap()
            .map(|r| r.id),
        Some("w1".to_owned())
    );
    assert_eq!(s.waiting_by_code("ZZZZZZZZ", NOW).await.unwrap(), None);
    let on: Vec<String> = s
        .waiting_on(Awaiting::Payment, NOW)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(on, ["w2", "w3"]);
    let mut with: Vec<String> = s
        .waiting_with("https://resource.example", "rt1")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    with.sort();
    assert_eq!(with, ["w1", "w2"]);
    // Expired: gone for every lookup.
    let later = NOW.plus(6);
    assert_eq!(s.waiting("w3", later).await.unwrap(), None);
    assert_eq!(
        s.waiting_on(Awaiting::Payment, later).await.unwrap().len(),
        1
    );
    // ...but kept a while past its expiry, for a late poll: found as it was, neither
    // taken nor removed by a take, not counted against its Person Server's share.
    assert_eq!(
        s.waiting_kept("w3", later).await.unwrap(),
        Some(record("w3", now + 5, None, Awaiting::Payment, "rt2"))
    );
    assert_eq!(s.take_waiting("w3", later).await.unwrap(), None);
    assert!(s.waiting_kept("w3", later).await.unwrap().is_some());
    assert_eq!(
        s.waiting_kept("w3", NOW.plus(5 + WAITING_KEPT))
            .await
            .unwrap(),
        None,
        "no longer kept"
    );
    assert_eq!(
        s.waiting_kept("w2", later).await.unwrap().map(|r| r.id),
        Some("w2".to_owned()),
        "a live one too"
    );
    assert_eq!(s.waiting_kept("nope", later).await.unwrap(), None);
    assert_eq!(
        s.create_waiting(
            record("w4", now + 600, None, Awaiting::Answered, "rt3"),
            per_ps(3),
            later
        )
        .await
        .unwrap(),
        WaitingCreated::Created,
        "w1 and w2 count, w3 no longer"
    );
    assert!(s.take_waiting("w4", later).await.unwrap().is_some());
    // Replaced in place (a later step), then taken.
    assert_eq!(
        s.put_waiting(record("w1", now + 600, None, Awaiting::Claims, "rt1"), NOW)
            .await
            .unwrap(),
        WaitingPut::Stored
    );
    assert_eq!(
        s.waiting_by_code("ABCD2345", NOW).await.unwrap(),
        None,
        "the code is spent"
    );
    assert_eq!(
        s.waiting("w1", NOW).await.unwrap().map(|r| r.awaiting),
        Some(Awaiting::Claims)
    );
    // Replaced from a read: only over the data read, only while it is there.
    let read = s.waiting("w1", NOW).await.unwrap().unwrap().data;
    let mut next = record("w1", now + 600, None, Awaiting::Approval, "rt1");
    next.data = "{\"n\":\"approved\"}".to_owned();
    assert!(
        !s.replace_waiting(next.clone(), "{\"n\":\"stale\"}", NOW)
            .await
            .unwrap(),
        "not over another step"
    );
    assert!(s.replace_waiting(next.clone(), &read, NOW).await.unwrap());
    assert_eq!(s.waiting("w1", NOW).await.unwrap(), Some(next.clone()));
    assert!(
        !s.replace_waiting(next.clone(), &read, NOW).await.unwrap(),
        "twice from one read: once"
    );
    // Taken: kept, under its lease, and not written over from a read.
    let mut taken = next.clone();
    taken.taken_until = Some(now + TAKE_LEASE);
    assert_eq!(
        s.take_waiting("w1", NOW).await.unwrap(),
        Some(taken.clone())
    );
    assert_eq!(s.waiting("w1", NOW).await.unwrap(), Some(taken.clone()));
    assert!(
        !s.replace_waiting(next.clone(), &next.data, NOW)
            .await
            .unwrap(),
        "a request taken meanwhile is not written over"
    );
    assert_eq!(s.waiting("w1", NOW).await.unwrap(), Some(taken));

    // Bindings and billing.
    let ps = id_of("https://ps.example");
    assert_eq!(s.bound_account(&ps, &rs, "alice").await.unwrap(), None);
    s.bind(&ps, &rs, "alice", "alice@as").await.unwrap();
    s.bind(&ps, &rs, "alice", "alice@as").await.unwrap();
    assert_eq!(
        s.bound_account(&ps, &rs, "alice").await.unwrap().as_deref(),
        Some("alice@as")
    );
    // Never rebound to another account: refused, and the binding stays alice@as's.
    assert!(matches!(
        s.bind(&ps, &rs, "alice", "mallory@as").await,
        Err(aauth_access_server::BindError::BoundToAnotherAccount)
    ));
    s.bind(&ps, &rs, "alice", "alice@as").await.unwrap();
    assert!(
        matches!(
            s.bind(&ps, &rs, "alice", "mallory@as").await,
            Err(aauth_access_server::BindError::BoundToAnotherAccount)
        ),
        "still alice@as's"
    );
    assert_eq!(
        s.bound_account(&ps, &rs, "alice").await.unwrap().as_deref(),
        Some("alice@as")
    );
    // Another person of the same Person Server, or at another resource: theirs to bind.
    s.bind(&ps, &other, "alice", "mallory@as").await.unwrap();
    assert_eq!(
        s.bound_account(&ps, &other, "alice")
            .await
            .unwrap()
            .as_deref(),
        Some("mallory@as")
    );
    assert_eq!(s.bound_account(&ps, &rs, "bob").await.unwrap(), None);
    assert!(!s.is_billed(&ps).await.unwrap());
    s.bill(&ps).await.unwrap();
    assert!(s.is_billed(&ps).await.unwrap());
    assert!(!s.is_billed(&id_of("https://ps2.example")).await.unwrap());

    // All of one request's questions at once, the same answers.
    s.revoke("https://resource.example", "rt-x", now + 100, NOW)
        .await
        .unwrap();
    let ps2 = id_of("https://ps2.example");
    let query = |who, presented| aauth_access_server::StandingQuery {
        ps: who,
        resource: &rs,
        sub: "alice",
        resource_token_jti: "rt-x",
        presented_jti: presented,
    };
    assert_eq!(
        s.standing(&query(&ps, "p1"), NOW).await.unwrap(),
        aauth_access_server::Standing {
            resource_token_revoked: true,
            presented_token_revoked: true,
            bound_account: Some("alice@as".to_owned()),
            billed: true,
        }
    );
    assert_eq!(
        s.standing(&query(&ps2, "p2"), NOW).await.unwrap(),
        aauth_access_server::Standing {
            resource_token_revoked: true,
            ..aauth_access_server::Standing::default()
        }
    );

    // The audit log: appended, filtered, newest first.
    use aauth_metadata::audit::{AuditAction, AuditEvent, AuditQuery};
    let issued = AuditEvent::new(now, AuditAction::Issued, "auth token j9")
        .account("sub-1")
        .resource("https://resource.example");
    let refused = AuditEvent::new(now + 1, AuditAction::Refused, "invalid_request: no body");
    s.record_event(issued.clone()).await.unwrap();
    s.record_event(refused.clone()).await.unwrap();
    assert_eq!(
        s.audit(&AuditQuery::default()).await.unwrap().events,
        vec![refused.clone(), issued.clone()]
    );
    assert_eq!(
        s.audit(&AuditQuery::default().action(AuditAction::Issued))
            .await
            .unwrap()
            .events,
        vec![issued.clone()]
    );
    assert_eq!(
        s.audit(
            &AuditQuery::default()
                .resource("https://resource.example")
                .until(now)
        )
        .await
        .unwrap()
        .events,
        vec![issued]
    );
    assert!(
        s.audit(&AuditQuery::default().since(now + 2))
            .await
            .unwrap()
            .events
            .is_empty()
    );
    assert_eq!(
        s.audit(&AuditQuery::default().limit(1))
            .await
            .unwrap()
            .events,
        vec![refused]
    );
    // An issuance and its audit event, written as one step.
    let event = AuditEvent::new(now + 5, AuditAction::Issued, "auth token j10")
        .resource("https://resource.example")
        .scope("read");
    s.record_issuance(
        IssuedRecord::new(
            "j10".into(),
            id_of("https://ps.example"),
            "p10".into(),
            id_of("https://resource.example"),
            now + 100,
        ),
        event.clone(),
        NOW,
    )
    .await
    .unwrap();
    let against = s
        .issued_against(&id_of("https://ps.example"), "p10", NOW)
        .await
        .unwrap();
    assert_eq!(against.len(), 1);
    assert_eq!(against[0].jti, "j10");
    assert_eq!(
        s.audit(&AuditQuery::default().limit(1))
            .await
            .unwrap()
            .events,
        vec![event]
    );
    aauth_test_support::audit::pages_contract(
        now,
        |e| async move { s.record_event(e).await.unwrap() },
        |q| async move { s.audit(&q).await.unwrap() },
    )
    .await;
    a_code_is_never_taken_from_another_request(s).await;
}

/// A request written with an interaction code another request holds (a code drawn
/// afresh for its next step): refused ([`WaitingPut::CodeTaken`]), and nothing written,
/// neither over the other request, which stays reachable by its code, nor over the
/// request's own earlier record. The same written from a read: not replaced.
async fn a_code_is_never_taken_from_another_request(s: &dyn AsStore) {
    let now = NOW.as_secs();
    let holder = record(
        "c1",
        now + 600,
        Some("HELD2345"),
        Awaiting::Interaction,
        "rc1",
    );
    let earlier = record("c2", now + 600, None, Awaiting::Claims, "rc2");
    let clash = record(
        "c2",
        now + 600,
        Some("HELD2345"),
        Awaiting::Interaction,
        "rc2",
    );
    for r in [&holder, &earlier] {
        assert_eq!(
            s.put_waiting(r.clone(), NOW).await.unwrap(),
            WaitingPut::Stored
        );
    }
    let held = &holder;
    let intact = |at: UnixTime| async move {
        assert_eq!(
            s.waiting_by_code("HELD2345", at).await.unwrap().as_ref(),
            Some(held),
            "the holder is found by its code"
        );
        assert_eq!(s.waiting("c1", at).await.unwrap().as_ref(), Some(held));
    };
    assert_eq!(
        s.put_waiting(clash.clone(), NOW).await.unwrap(),
        WaitingPut::CodeTaken
    );
    intact(NOW).await;
    assert_eq!(
        s.waiting("c2", NOW).await.unwrap(),
        Some(earlier.clone()),
        "its own earlier record as it was"
    );
    assert!(
        !s.replace_waiting(clash.clone(), &earlier.data, NOW)
            .await
            .unwrap(),
        "not from a read either"
    );
    intact(NOW).await;
    assert_eq!(s.waiting("c2", NOW).await.unwrap(), Some(earlier.clone()));
    // Taken first (as the server takes a request it decides again): its write back is
    // refused all the same, and it stays as taken.
    let taken = s.take_waiting("c2", NOW).await.unwrap().unwrap();
    assert_eq!(taken.data, earlier.data);
    assert_eq!(
        s.put_taken(clash.clone(), &taken).await.unwrap(),
        WaitingPut::CodeTaken
    );
    assert_eq!(s.waiting_kept("c2", NOW).await.unwrap(), Some(taken));
    intact(NOW).await;
    // An expired request, kept for its late polls, holds its code as well.
    let expired = record("c3", now + 5, Some("KEPT2345"), Awaiting::Answered, "rc3");
    assert_eq!(
        s.put_waiting(expired.clone(), NOW).await.unwrap(),
        WaitingPut::Stored
    );
    let later = NOW.plus(6);
    let mut on_kept = clash.clone();
    on_kept.code = Some("KEPT2345".to_owned());
    assert_eq!(
        s.put_waiting(on_kept, later).await.unwrap(),
        WaitingPut::CodeTaken
    );
    assert_eq!(s.waiting_kept("c3", later).await.unwrap(), Some(expired));
    // Under a code of its own: stored, and stored again as it is (its own code).
    let mut own = clash;
    own.code = Some("FREE2345".to_owned());
    for _ in 0..2 {
        assert_eq!(
            s.put_waiting(own.clone(), later).await.unwrap(),
            WaitingPut::Stored
        );
    }
    assert_eq!(
        s.waiting_by_code("FREE2345", later).await.unwrap(),
        Some(own)
    );
    intact(later).await;
}

/// A binding is removed by `unbind_if` only while it names the account given: another
/// account's, another person's, or none, is left as it is; once removed, the person may
/// be bound again.
async fn unbinding(s: &dyn AsStore) {
    let (ps, rs) = (id_of("https://ps.example"), id_of("https://unbind.example"));
    let other = id_of("https://unbind-other.example");
    assert!(
        !s.unbind_if(&ps, &rs, "carol", "carol@as").await.unwrap(),
        "none"
    );
    s.bind(&ps, &rs, "carol", "carol@as").await.unwrap();
    s.bind(&ps, &other, "carol", "carol@as").await.unwrap();
    s.bind(&ps, &rs, "dave", "carol@as").await.unwrap();
    assert!(
        !s.unbind_if(&ps, &rs, "carol", "mallory@as").await.unwrap(),
        "another account's"
    );
    assert_eq!(
        s.bound_account(&ps, &rs, "carol").await.unwrap().as_deref(),
        Some("carol@as")
    );
    assert!(s.unbind_if(&ps, &rs, "carol", "carol@as").await.unwrap());
    assert_eq!(s.bound_account(&ps, &rs, "carol").await.unwrap(), None);
    assert!(
        !s.unbind_if(&ps, &rs, "carol", "carol@as").await.unwrap(),
        "once"
    );
    // The same person at another resource, and another person: still bound.
    for (resource, sub) in [(&other, "carol"), (&rs, "dave")] {
        assert_eq!(
            s.bound_account(&ps, resource, sub)
                .await
                .unwrap()
                .as_deref(),
            Some("carol@as"),
            "{sub} at {resource}"
        );
    }
    // Unbound, the person may be bound again, to any account.
    s.bind(&ps, &rs, "carol", "erin@as").await.unwrap();
    assert_eq!(
        s.bound_account(&ps, &rs, "carol").await.unwrap().as_deref(),
        Some("erin@as")
    );
}

#[tokio::test]
async fn the_in_memory_store_keeps_the_contract() {
    contract(&MemoryStore::default()).await;
    unbinding(&MemoryStore::default()).await;
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_contract() {
    contract(&SqliteStore::in_memory().unwrap()).await;
    unbinding(&SqliteStore::in_memory().unwrap()).await;
}

#[tokio::test]
async fn the_postgres_store_keeps_the_contract() {
    let Some(db) = PgSchema::new("the_postgres_store_keeps_the_contract") else {
        return;
    };
    let store = PgStore::connect(&db.options).await.unwrap();
    contract(&store).await;
    unbinding(&store).await;
    // Nothing expired in the contract's data at its own time; far later, everything.
    assert_eq!(store.sweep_once(NOW).await.unwrap(), 0);
    assert!(store.sweep_once(NOW.plus(400 * 24 * 3600)).await.unwrap() > 0);
    assert_eq!(store.issued_count().await.unwrap(), 0);
    db.drop_schema().await;
}

/// A store whose requests are only ever created (never put back: each is answered or
/// abandoned) still drops the expired ones as it goes: after a few hundred creates, an
/// abandoned request (and its body) is gone once no longer kept, not only hidden.
async fn expired_requests_are_swept_by_creates(s: &dyn AsStore) {
    let old = record("old", NOW.as_secs() + 5, None, Awaiting::Approval, "rt-old");
    assert_eq!(
        s.create_waiting(old, per_ps(10_000), NOW).await.unwrap(),
        WaitingCreated::Created
    );
    // Kept a while past its expiry (a late poll is told it expired), then dropped.
    let later = NOW.plus(5 + WAITING_KEPT);
    for n in 0..300 {
        let w = record(
            &format!("c{n}"),
            later.as_secs() + 600,
            None,
            Awaiting::Approval,
            "rt-new",
        );
        assert_eq!(
            s.create_waiting(w, per_ps(10_000), later).await.unwrap(),
            WaitingCreated::Created
        );
    }
    assert!(
        s.waiting_with("https://resource.example", "rt-old")
            .await
            .unwrap()
            .is_empty(),
        "the expired request was deleted"
    );
}

#[tokio::test]
async fn the_in_memory_store_sweeps_expired_requests_as_it_creates() {
    expired_requests_are_swept_by_creates(&MemoryStore::default()).await;
}

#[tokio::test]
async fn the_sqlite_store_sweeps_expired_requests_as_it_creates() {
    expired_requests_are_swept_by_creates(&SqliteStore::in_memory().unwrap()).await;
}

/// Two instances over one database: of twenty concurrent takes of one waiting request,
/// spread over both, exactly one gets it (what keeps one step's completion to one token).
#[tokio::test]
async fn two_instances_take_a_waiting_request_once() {
    let Some(db) = PgSchema::new("two_instances_take_a_waiting_request_once") else {
        return;
    };
    let a = Arc::new(PgStore::connect(&db.options).await.unwrap());
    let b = Arc::new(PgStore::connect(&db.options).await.unwrap());
    let w = record(
        "w1",
        NOW.as_secs() + 600,
        Some("CODE"),
        Awaiting::Approval,
        "rt1",
    );
    assert_eq!(
        a.create_waiting(w, per_ps(10), NOW).await.unwrap(),
        WaitingCreated::Created
    );
    let takes: Vec<_> = (0..20)
        .map(|n| {
            let s = if n % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            tokio::spawn(async move { s.take_waiting("w1", NOW).await.unwrap() })
        })
        .collect();
    let mut got = 0;
    for t in takes {
        if t.await.unwrap().is_some() {
            got += 1;
        }
    }
    assert_eq!(got, 1);
    // And the per-Person-Server bound holds across instances: three at most (w1, taken,
    // still counts), whichever instance creates them, however many race.
    let creates: Vec<_> = (0..10)
        .map(|n| {
            let s = if n % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            let w = record(
                &format!("c{n}"),
                NOW.as_secs() + 600,
                None,
                Awaiting::Approval,
                "rt2",
            );
            tokio::spawn(async move { s.create_waiting(w, per_ps(3), NOW).await.unwrap() })
        })
        .collect();
    let mut created = 0;
    for c in creates {
        if c.await.unwrap() == WaitingCreated::Created {
            created += 1;
        }
    }
    assert_eq!(created, 2);
    db.drop_schema().await;
}

/// Approves each request out of band; wants the person's Person Server bound first.
struct BoundThenApproved;
impl AccessPolicy for BoundThenApproved {
    fn decide(&self, r: &AccessRequest<'_>) -> AccessDecision {
        if !r.bound {
            AccessDecision::RequireInteraction
        } else if !r.approved {
            AccessDecision::RequireApproval
        } else {
            AccessDecision::Grant
        }
    }
}

#[tokio::test]
async fn a_restarted_access_server_carries_on_from_its_sqlite_file() {
    let dir = std::env::temp_dir().join(format!(
        "aauth-as-restart-{}-{}",
        std::process::id(),
        NOW.as_secs()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("as.sqlite");
    let restart = |w: &mut World| {
        let fresh = world();
        w.server = fresh
            .server
            .policy(Arc::new(BoundThenApproved))
            .store(Arc::new(SqliteStore::open(&path).unwrap()));
    };
    let mut w = world();
    restart(&mut w);
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (location, code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;

    // Restarted: the person's code still opens the page, and the approval binds.
    restart(&mut w);
    let (s, _) = w
        .page("POST", "/interact", &format!("code={code}&decision=grant"))
        .await;
    assert_eq!(s, StatusCode::OK);

    // Restarted: the poll moves the request on to the approval, at the same URL.
    restart(&mut w);
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let pending = location
        .trim_start_matches(aauth_access_server::PENDING_PATH)
        .to_owned();
    restart(&mut w);
    assert_eq!(
        w.server.awaiting_approval(NOW).await.unwrap(),
        vec![pending.clone()]
    );
    assert!(w.server.decide_approval(&pending, true, NOW).await.unwrap());
    restart(&mut w);
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(w.server.issued().await.unwrap(), 1);

    // Restarted: the binding holds (the next request goes straight to the approval),
    // and revoking the person token still cascades to the token issued before.
    restart(&mut w);
    let (s, h, _) = w
        .post_path(AUTH_TOKEN_PATH, &request, "https://ps.example", &w.ps)
        .await;
    assert_eq!(
        (s, h["aauth-requirement"].to_str().unwrap()),
        (StatusCode::ACCEPTED, "requirement=approval")
    );
    let (s, json) = w
        .revoke(
            &t.person_jti,
            "https://ps.example",
            "aauth-person.json",
            "ps-1",
            &w.ps,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        json,
        serde_json::json!({"downstream": [{"recipient": "https://resource.example", "error": "revocation_unsupported"}]})
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Lets another instance of the server (over the same store) take the resource token's
/// revocation while a decision is made, once: at the request's first decision (`first`,
/// then asks for an approval: the new waiting request is written after the revocation
/// looked for waiting requests), or when it is decided again with its approval (then
/// asks a question: the request goes back to the store for that step after the
/// revocation came, while it was taken, between the decision's read and its write).
struct RevokedWhileDeciding {
    other: Arc<World>,
    rt: std::sync::Mutex<String>,
    fired: std::sync::atomic::AtomicBool,
    first: bool,
}

impl AccessPolicy for RevokedWhileDeciding {
    fn decide(&self, r: &AccessRequest<'_>) -> AccessDecision {
        if !self.first && !r.approved {
            return AccessDecision::RequireApproval;
        }
        if !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let rt = self.rt.lock().unwrap().clone();
            let other = Arc::clone(&self.other);
            let status = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current()
                    .block_on(async move { other.revoke_resource_token(&rt).await })
            });
            assert_eq!(status, StatusCode::OK);
        }
        if self.first {
            return AccessDecision::RequireApproval;
        }
        AccessDecision::RequireClarification {
            question: "What for?".to_owned(),
            options: Vec::new(),
        }
    }
}

/// A server over `store` deciding with [`RevokedWhileDeciding`] (`first` as there), its
/// policy, and an auth-token request whose resource token the policy revokes.
fn revocation_race(
    store: Arc<dyn AsStore>,
    first: bool,
) -> (World, Arc<RevokedWhileDeciding>, serde_json::Value) {
    let mut other = world();
    other.server = other.server.store(Arc::clone(&store));
    let policy = Arc::new(RevokedWhileDeciding {
        other: Arc::new(other),
        rt: std::sync::Mutex::default(),
        fired: std::sync::atomic::AtomicBool::new(false),
        first,
    });
    let mut w = world();
    w.server = w.server.store(store).policy(policy.clone());
    let t = w.tokens(600);
    let rt = w.resource_token(&t, |b| b);
    policy.rt.lock().unwrap().clone_from(&rt);
    let request = serde_json::json!({"resource_token": rt, "agent_token": t.agent, "presented_token": t.person});
    (w, policy, request)
}

/// AS-42 against a decision in flight: the resource token is revoked while the request
/// is taken to be decided again, and the request ends revoked, with no token issued,
/// rather than going on to its next step.
async fn a_revocation_while_the_request_is_decided_ends_it(store: Arc<dyn AsStore>) {
    let (w, policy, request) = revocation_race(store, false);
    let (s, h, _) = w
        .post_path(AUTH_TOKEN_PATH, &request, "https://ps.example", &w.ps)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = h["location"].to_str().unwrap().to_owned();
    let pending = location
        .trim_start_matches(aauth_access_server::PENDING_PATH)
        .to_owned();
    assert!(w.server.decide_approval(&pending, true, NOW).await.unwrap());

    // The poll takes the request; the revocation comes while the policy decides. The
    // pending URL answers `403 revoked` (draft -11 §11.9.4 Polling Error Codes).
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert!(policy.fired.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked")),
        "{json}"
    );
    assert!(
        json["detail"].as_str().unwrap().contains("resource_token"),
        "{json}"
    );
    let (s, _) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::GONE, "ended");
    assert_eq!(w.server.issued().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_while_deciding_ends_the_request_in_memory() {
    a_revocation_while_the_request_is_decided_ends_it(Arc::new(MemoryStore::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_while_deciding_ends_the_request_in_sqlite() {
    a_revocation_while_the_request_is_decided_ends_it(Arc::new(SqliteStore::in_memory().unwrap()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_while_deciding_ends_the_request_in_postgres() {
    let Some(db) = PgSchema::new("a_revocation_while_deciding_ends_the_request") else {
        return;
    };
    let store = PgStore::connect(&db.options).await.unwrap();
    a_revocation_while_the_request_is_decided_ends_it(Arc::new(store)).await;
    db.drop_schema().await;
}

/// AS-42 against a request being created: revoked between its check and its record, it
/// ends at once (`revoked_resource_token`), rather than waiting for an approver.
async fn a_revocation_while_the_request_is_created_ends_it(store: Arc<dyn AsStore>) {
    let (w, policy, request) = revocation_race(store, true);
    let (s, _, json) = w
        .post_path(AUTH_TOKEN_PATH, &request, "https://ps.example", &w.ps)
        .await;
    assert!(policy.fired.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked_resource_token")),
        "{json}"
    );
    assert_eq!(w.server.issued().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_while_creating_ends_the_request_in_memory() {
    a_revocation_while_the_request_is_created_ends_it(Arc::new(MemoryStore::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_while_creating_ends_the_request_in_postgres() {
    let Some(db) = PgSchema::new("a_revocation_while_creating_ends_the_request") else {
        return;
    };
    let store = PgStore::connect(&db.options).await.unwrap();
    a_revocation_while_the_request_is_created_ends_it(Arc::new(store)).await;
    db.drop_schema().await;
}
