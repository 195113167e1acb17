//! The PostgreSQL store against the machine's PostgreSQL (`AAUTH_POSTGRES_URL`): the
//! store contract and the operator's records exactly as the memory and SQLite stores keep
//! them, migrations applied once by instances starting together, and two Person Servers
//! over one database: a long poll on one woken by the approval on the other, a token
//! delivered once to twenty polls racing on both. Each test works in a schema of its own.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aauth_keys::time::UnixTime;
use aauth_person_server::{PERSON_TOKEN_PATH, PgStore, PsStore};
use aauth_test_support::services::{Cuttable, PgSchema};
use http::StatusCode;

use crate::consent::{approve, code_of, poll};
use crate::{NOW, World};

/// A schema of its own for one test, dropped at its end.
pub(crate) struct Db(PgSchema);

impl Db {
    /// A fresh schema, or `None` (the test skips, loudly) without a PostgreSQL URL.
    pub(crate) fn new(test: &str) -> Option<Self> {
        PgSchema::new(test).map(Self)
    }

    pub(crate) async fn store(&self) -> Arc<PgStore> {
        Arc::new(PgStore::connect(&self.0.options).await.unwrap())
    }

    pub(crate) async fn drop_schema(self) {
        self.0.drop_schema().await;
    }
}

#[tokio::test]
async fn the_postgres_store_keeps_the_contract() {
    let Some(db) = Db::new("the_postgres_store_keeps_the_contract") else {
        return;
    };
    crate::stores::contract(db.store().await).await;
    db.drop_schema().await;
}

#[tokio::test]
async fn the_postgres_store_keeps_the_operators_records() {
    let Some(db) = Db::new("the_postgres_store_keeps_the_operators_records") else {
        return;
    };
    crate::admin::admin_contract(db.store().await).await;
    db.drop_schema().await;
}

/// A configured retention: the sweep drops the events older than it, and only those.
#[tokio::test]
async fn the_sweep_keeps_the_configured_retention() {
    use aauth_person_server::{AuditAction, AuditEvent, AuditQuery};
    let Some(db) = Db::new("the_sweep_keeps_the_configured_retention") else {
        return;
    };
    let day = 24 * 3600;
    let store = PgStore::connect(&db.0.options)
        .await
        .unwrap()
        .audit_retention(Duration::from_secs(day));
    for (at, detail) in [(NOW.as_secs(), "old"), (NOW.as_secs() + day, "kept")] {
        store
            .record_event(AuditEvent::new(at, AuditAction::Issued, detail))
            .await
            .unwrap();
    }
    store.sweep_once(NOW.plus(day + day / 2)).await.unwrap();
    let left: Vec<String> = store
        .audit(&AuditQuery::default())
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.detail)
        .collect();
    assert_eq!(left, ["kept"]);
    db.drop_schema().await;
}

/// Four instances starting at once over an empty schema: every one starts, each
/// migration is recorded once, and running the migrations again applies none.
#[tokio::test]
async fn instances_starting_together_migrate_once() {
    let Some(db) = Db::new("instances_starting_together_migrate_once") else {
        return;
    };
    let starts = (0..4).map(|_| {
        let options = db.0.options.clone();
        async move { PgStore::connect(&options).await.map(drop) }
    });
    for started in futures_join_all(starts).await {
        started.unwrap();
    }
    let pg = db.0.pg();
    let rows = pg
        .client()
        .await
        .unwrap()
        .query(
            "SELECT version FROM aauth_migrations WHERE component = 'person-server' ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7]);
    // `migrate` also makes the tables the instances share (which `serve` makes at its
    // first start); then there is nothing left to apply.
    assert_eq!(PgStore::migrate(&db.0.options).await.unwrap(), 2);
    assert_eq!(PgStore::migrate(&db.0.options).await.unwrap(), 0);
    assert_eq!(pg.schema_version("person-server").await.unwrap(), 7);

    // A database a newer version migrated further is refused, with the reason.
    db.0.sql("INSERT INTO aauth_migrations (component, version, name) VALUES ('person-server', 99, 'future')")
        .await;
    let refused = PgStore::connect(&db.0.options).await.unwrap_err();
    let chain = error_chain(&refused);
    assert!(
        chain.contains("version 99, newer than this build knows (7)"),
        "{chain}"
    );
    db.drop_schema().await;
}

/// Awaits every future (the tests' own, to keep dependencies out).
/// `aauth admin migrate` (`PgStore::migrate`) run by a role that may create, then the
/// instances started by a role that may only read and write rows: they start (a current
/// schema is only read), with the replay cache and the pending revocations they share,
/// whose tables the migration made too.
#[tokio::test]
async fn instances_start_without_create_on_a_migrated_database() {
    use aauth_metadata::cascade::CascadeStore;
    use aauth_metadata::store::postgres::PgOptions;
    use aauth_person_server::{AuditAction, AuditEvent};
    let Some(db) = Db::new("instances_start_without_create_on_a_migrated_database") else {
        return;
    };
    assert_eq!(PgStore::migrate(&db.0.options).await.unwrap(), 9);
    let (schema, role) = (db.0.name().to_owned(), format!("{}_app", db.0.name()));
    db.0.sql(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'app';
         GRANT USAGE ON SCHEMA {schema} TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role};"
    ))
    .await;
    let url = db.0.url();
    let (scheme, rest) = url.split_once("://").unwrap();
    let rest = rest.split_once('@').map_or(rest, |(_, host)| host);
    let app = PgOptions::new(format!("{scheme}://{role}:app@{rest}")).schema(schema.clone());

    let started = PgStore::connect(&app).await;
    let shared = match &started {
        Ok(store) => Some((store.replay_store().await, store.cascade_store().await)),
        Err(_) => None,
    };
    let worked = match (&started, shared) {
        (Ok(store), Some((Ok(_replay), Ok(cascade)))) => {
            let event = store
                .record_event(AuditEvent::new(NOW.as_secs(), AuditAction::Issued, "app"))
                .await;
            let begun = cascade.begin("c1", "https://as.example", NOW).await;
            format!("{event:?} {begun:?}")
        }
        (started, shared) => format!("{:?} {shared:?}", started.as_ref().err()),
    };
    db.0.sql(&format!("DROP OWNED BY {role}; DROP ROLE {role};"))
        .await;
    db.drop_schema().await;
    assert_eq!(worked, "Ok(()) Ok(())");
}

async fn futures_join_all<F: Future + Send + 'static>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut at = e.source();
    while let Some(c) = at {
        s.push_str(": ");
        s.push_str(&c.to_string());
        at = c.source();
    }
    s
}

/// The sweep drops what nothing reads any more, and only that.
#[tokio::test]
async fn the_sweep_drops_expired_rows_only() {
    let Some(db) = Db::new("the_sweep_drops_expired_rows_only") else {
        return;
    };
    let store = db.store().await;
    let grace = aauth_person_server::RECORD_GRACE;
    store
        .revoke("old", NOW.as_secs() - grace - 1, NOW)
        .await
        .unwrap();
    store.revoke("live", NOW.as_secs() + 60, NOW).await.unwrap();
    let deleted = store.sweep_once(NOW).await.unwrap();
    assert_eq!(deleted, 1);
    assert!(store.is_revoked("live", NOW).await.unwrap());
    // The expired record was gone from the table, not merely filtered out.
    assert!(!store.is_revoked("old", UnixTime(0)).await.unwrap());
    db.drop_schema().await;
}

/// A burst of expired pending requests larger than a batch (1 000 rows a statement) is
/// gone after one sweep, not one batch a minute; a request still kept for late polls
/// stays.
#[tokio::test]
async fn one_sweep_drops_a_burst_larger_than_a_batch() {
    let Some(db) = Db::new("one_sweep_drops_a_burst_larger_than_a_batch") else {
        return;
    };
    let store = db.store().await;
    let gone = NOW.as_secs() - aauth_person_server::PENDING_KEPT - 1;
    let kept = NOW.as_secs() - 1;
    db.0.sql(&format!(
        "INSERT INTO pending (id, code, expires, data, version, agent, provider)
           SELECT 'p' || n, 'c' || n, CASE WHEN n = 0 THEN {kept} ELSE {gone} END, '{{}}', 0,
                  'https://agent.example aauth:a' || n, 'https://agent.example'
           FROM generate_series(0, 2500) AS n"
    ))
    .await;
    assert_eq!(store.sweep_once(NOW).await.unwrap(), 2500);
    let left: Vec<String> =
        db.0.pg()
            .client()
            .await
            .unwrap()
            .query("SELECT id FROM pending", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(left, ["p0"]);
    db.drop_schema().await;
}

/// Two Person Servers over one database, as behind a load balancer.
async fn two_instances(db: &Db) -> (Arc<World>, Arc<World>) {
    let a = crate::world_over(db.store().await, None);
    let b = crate::world_over(db.store().await, None);
    let (mut a, mut b) = (a, b);
    a.ps = a.ps.consent_pages(Duration::from_secs(600));
    b.ps = b.ps.consent_pages(Duration::from_secs(600));
    a.ps.set_password("alice", "correct horse battery")
        .await
        .unwrap();
    (Arc::new(a), Arc::new(b))
}

/// The agent asks instance `w` for a person token that needs the person: the pending
/// URL and the interaction code.
async fn ask(w: &World) -> (String, String) {
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    let (s, headers, _) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = headers["location"].to_str().unwrap().to_owned();
    (location, code_of(&headers))
}

/// The agent's long poll on A returns as soon as the person approves on B: B's change
/// reaches A through the database's notification (without it, A's poll would wait out
/// its twenty seconds, since A's own process changed nothing).
#[tokio::test]
async fn a_long_poll_on_one_instance_wakes_on_the_approval_on_another() {
    let Some(db) = Db::new("a_long_poll_on_one_instance_wakes_on_the_approval_on_another") else {
        return;
    };
    let (a, b) = two_instances(&db).await;
    let (location, code) = ask(&a).await;
    let (wa, loc) = (Arc::clone(&a), location.clone());
    let waiter = tokio::spawn(async move {
        let r = poll(
            &wa,
            "GET",
            &loc,
            &wa.agent,
            &wa.agent_token,
            Some("wait=20"),
            NOW,
        )
        .await;
        (r.0, r.2, Instant::now())
    });
    // The poll is waiting on A before the person acts on B.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());
    approve(&b, &code, "alice", "correct horse battery").await;
    let approved = Instant::now();
    let (status, json, answered) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{json}");
    assert!(json["person_token"].is_string());
    let after = answered.saturating_duration_since(approved);
    // Woken, not timed out: far inside the poll's twenty seconds (the notification
    // typically arrives in a few milliseconds; the bound leaves room for a busy machine).
    assert!(
        after < Duration::from_secs(3),
        "answered {after:?} after the approval"
    );
    db.drop_schema().await;
}

/// Twenty polls race on both instances for one approved request: exactly one gets the
/// token; every other gets an answer that carries none.
#[tokio::test]
async fn twenty_racing_polls_on_two_instances_get_the_token_once() {
    let Some(db) = Db::new("twenty_racing_polls_on_two_instances_get_the_token_once") else {
        return;
    };
    let (a, b) = two_instances(&db).await;
    let (location, code) = ask(&a).await;
    approve(&b, &code, "alice", "correct horse battery").await;
    let polls = (0..20).map(|n| {
        let w = if n % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        let loc = location.clone();
        async move { poll(&w, "GET", &loc, &w.agent, &w.agent_token, None, NOW).await }
    });
    let answers = futures_join_all(polls).await;
    let tokens = answers
        .iter()
        .filter(|(s, _, json)| *s == StatusCode::OK && json["person_token"].is_string())
        .count();
    assert_eq!(
        tokens,
        1,
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    for (s, _, json) in &answers {
        assert!(
            json.get("person_token").is_none() || *s == StatusCode::OK,
            "{s} {json}"
        );
    }
    db.drop_schema().await;
}

/// PostgreSQL unreachable mid-flow (its connections cut, new ones refused): every request
/// that needs it answers `503` with `Retry-After` (the agent retries, draft -11's polling
/// rules) and issues nothing; once it is back, the same store serves again with no
/// restart, and only what was answered `200` was recorded.
#[tokio::test]
async fn an_unreachable_database_fails_closed_and_recovers() {
    let Some(db) = Db::new("an_unreachable_database_fails_closed_and_recovers") else {
        return;
    };
    // Migrated directly; the store under test reaches the database through the cut.
    drop(db.store().await);
    let cut = Cuttable::to(db.0.url(), 5432).await;
    let url = cut.url(db.0.url());
    let options = aauth_metadata::store::postgres::PgOptions::new(url)
        .schema(db.0.name())
        .connect_timeout(Duration::from_secs(1));
    let store = Arc::new(PgStore::connect(&options).await.unwrap());
    let w = crate::world_over(Arc::clone(&store) as Arc<dyn PsStore>, None);
    w.bind("aauth:assistant@agent.example", "alice").await;
    let ask = || {
        w.post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example"}),
        )
    };
    assert_eq!(ask().await.0, StatusCode::OK);

    cut.cut();
    for _ in 0..3 {
        let (status, headers, json) = w
            .post_full(
                PERSON_TOKEN_PATH,
                serde_json::json!({"resource": "https://resource.example"}),
            )
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
        assert_eq!(json["error"], "temporarily_unavailable");
        assert_eq!(headers["retry-after"], "2");
    }

    cut.restore();
    assert_eq!(ask().await.0, StatusCode::OK);
    let (persons, _) = store.issued_records(None, NOW).await.unwrap();
    assert_eq!(persons.len(), 2, "only the answered requests were recorded");
    db.drop_schema().await;
}

/// With the replay cache in the database, a signed request one instance accepted is a
/// replay at the other; of twenty concurrent copies of one request spread over both, one
/// is accepted.
#[tokio::test]
async fn a_request_replayed_to_another_instance_is_refused() {
    let Some(db) = Db::new("a_request_replayed_to_another_instance_is_refused") else {
        return;
    };
    let replay = Arc::new(
        aauth_metadata::store::PgReplayStore::connect(&db.0.options)
            .await
            .unwrap(),
    );
    let instance = |store: Arc<PgStore>| {
        let mut w = crate::world_over(store, None);
        w.ps = w.ps.replay_store(Arc::clone(&replay) as _);
        Arc::new(w)
    };
    let a = instance(db.store().await);
    let b = instance(db.store().await);
    a.bind("aauth:assistant@agent.example", "alice").await;
    let signed = || {
        crate::arriving(
            "POST",
            PERSON_TOKEN_PATH,
            Some(&serde_json::json!({"resource": "https://resource.example"})),
            &a.agent,
            &aauth_headers::Scheme::jwt(a.agent_token.clone()),
            NOW,
        )
    };
    let (parts, body) = signed();
    assert_eq!(a.ps.handle(&parts, &body, NOW).await.unwrap().status(), 200);
    let again = b.ps.handle(&parts, &body, NOW).await.unwrap();
    assert_eq!(again.status(), 401);
    assert!(
        again.headers()["signature-error"]
            .to_str()
            .unwrap()
            .contains("invalid_signature"),
        "{:?}",
        again.headers()
    );

    let (parts, body) = signed();
    let copies = (0..20).map(|n| {
        let w = if n % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        let (parts, body) = (parts.clone(), body.clone());
        async move { w.ps.handle(&parts, &body, NOW).await.unwrap().status() }
    });
    let statuses = futures_join_all(copies).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    db.drop_schema().await;
}
