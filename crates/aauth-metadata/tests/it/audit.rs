//! The audit log's queries, pages and the operator endpoint: the query string read and
//! written back, pages that cover exactly what one query selects (in memory and in
//! SQLite, against a model), and `GET /admin/audit` refusing whoever is not an operator.

use std::sync::Mutex;

use aauth_keys::PrivateKey;
use aauth_keys::time::UnixTime;
use aauth_metadata::audit::operator::{AuditSource, OPERATOR_AUDIT_PATH, Operators};
use aauth_metadata::audit::{
    AuditAction, AuditCursor, AuditEvent, AuditPage, AuditQuery, MemoryAuditLog, QueryError,
};
use aauth_metadata::store::StoreError;
use aauth_signing::{SignOptions, SigningKey, hwk_scheme, sign};
use aauth_tokens::ServerId;
use proptest::prelude::*;

const NOW: UnixTime = UnixTime(1_800_000_000);
const AGENTS: [&str; 3] = [
    "aauth:a@agent.example",
    "aauth:b@agent.example",
    "aauth:c@other.example",
];
const RESOURCES: [&str; 2] = ["https://api.example", "https://files.example"];

fn event(i: u64, action: AuditAction, agent: usize, resource: usize) -> AuditEvent {
    AuditEvent::new(NOW.as_secs() + i, action, format!("event {i}"))
        .agent(AGENTS[agent % AGENTS.len()])
        .resource(RESOURCES[resource % RESOURCES.len()])
        .account("alice")
        .scope(if i.is_multiple_of(2) {
            Some("read")
        } else {
            None
        })
        .request(format!("req-{i}"))
}

/// Every page of `q` from `read`, concatenated, checking that each page but the last is
/// full and that the cursors only go one way (down, or up oldest first).
fn all_pages(q: &AuditQuery, mut read: impl FnMut(&AuditQuery) -> AuditPage) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    let mut q = q.clone();
    let mut last: Option<AuditCursor> = None;
    for _ in 0..1000 {
        let page = read(&q);
        out.extend(page.events.iter().cloned());
        match page.next {
            Some(next) => {
                assert_eq!(
                    page.events.len(),
                    q.effective_limit(),
                    "a page before the last is full"
                );
                assert!(
                    last.is_none_or(|l| if q.oldest_first { next > l } else { next < l }),
                    "cursors go one way"
                );
                last = Some(next);
                q = q.before(next);
            }
            None => return out,
        }
    }
    panic!("more than 1000 pages");
}

/// What `q` selects from `events` (recorded in order), newest first (or oldest first):
/// the model.
fn model(events: &[AuditEvent], q: &AuditQuery) -> Vec<AuditEvent> {
    let mut selected: Vec<AuditEvent> = events.iter().filter(|e| q.matches(e)).cloned().collect();
    if !q.oldest_first {
        selected.reverse();
    }
    selected
}

fn arb_events() -> impl Strategy<Value = Vec<AuditEvent>> {
    proptest::collection::vec((0usize..6, 0usize..3, 0usize..2, 0u64..20), 0..40).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (a, agent, resource, jitter))| {
                let mut e = event(i as u64 + jitter, AuditAction::ALL[a], agent, resource);
                e.detail = format!("event {i}");
                e
            })
            .collect()
    })
}

fn arb_query() -> impl Strategy<Value = AuditQuery> {
    (
        proptest::option::of(0usize..3),
        proptest::option::of(0usize..2),
        proptest::option::of(0usize..6),
        proptest::option::of(0u64..30),
        1usize..7,
        proptest::bool::ANY,
    )
        .prop_map(|(agent, resource, action, since, limit, oldest_first)| {
            let mut q = AuditQuery::default().limit(limit);
            if oldest_first {
                q = q.oldest_first();
            }
            if let Some(a) = agent {
                q = q.agent(AGENTS[a]);
            }
            if let Some(r) = resource {
                q = q.resource(RESOURCES[r]);
            }
            if let Some(a) = action {
                q = q.action(AuditAction::ALL[a]);
            }
            if let Some(s) = since {
                q = q.since(NOW.as_secs() + s);
            }
            q
        })
}

fn sqlite_log(events: &[AuditEvent]) -> rusqlite::Connection {
    let c = rusqlite::Connection::open_in_memory().unwrap();
    c.execute_batch(aauth_metadata::audit::sqlite::TABLE)
        .unwrap();
    for e in events {
        aauth_metadata::audit::sqlite::record(&c, "test", e, None).unwrap();
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Page after page, a query returns exactly what it selects, in its order, once
    /// each: in memory and in SQLite.
    #[test]
    fn pages_cover_the_query_exactly(events in arb_events(), q in arb_query()) {
        let want = model(&events, &q);
        let mut log = MemoryAuditLog::default();
        for e in &events {
            log.record(e.clone());
        }
        prop_assert_eq!(&all_pages(&q, |q| log.query(q)), &want);
        let c = sqlite_log(&events);
        prop_assert_eq!(
            &all_pages(&q, |q| aauth_metadata::audit::sqlite::query(&c, "test", q).unwrap()),
            &want
        );
    }

    /// Whatever the query string, reading it never panics, and what reads writes back
    /// to the same query.
    #[test]
    fn query_strings_read_back(s in "[a-z=&%0-9A-F:@./+_-]{0,80}") {
        if let Ok(q) = AuditQuery::from_query_string(&s) {
            prop_assert_eq!(AuditQuery::from_query_string(&q.to_query_string()), Ok(q));
        }
    }

    /// Every query writes to a string that reads back to it.
    #[test]
    fn queries_round_trip(q in arb_query(), before in proptest::option::of(1u64..1000)) {
        let q = match before {
            Some(b) => q.before(AuditCursor::new(b)),
            None => q,
        };
        prop_assert_eq!(AuditQuery::from_query_string(&q.to_query_string()), Ok(q));
    }
}

#[test]
fn query_strings_are_refused_by_name() {
    let refused = |s: &str| AuditQuery::from_query_string(s).unwrap_err();
    assert_eq!(refused("agnet=x"), QueryError::Unknown("agnet".to_owned()));
    assert_eq!(refused("agent=a&agent=b"), QueryError::Repeated("agent"));
    assert_eq!(refused("since="), QueryError::Empty("since"));
    assert_eq!(refused("limit=0"), QueryError::ZeroLimit);
    assert!(matches!(
        refused("limit=-1"),
        QueryError::NotANumber { name: "limit", .. }
    ));
    assert!(matches!(
        refused("since=1e9"),
        QueryError::NotANumber { name: "since", .. }
    ));
    assert!(matches!(refused("action=rejected"), QueryError::Action(_)));
    assert_eq!(
        refused("since=10&until=5"),
        QueryError::Backwards {
            since: 10,
            until: 5
        }
    );
    assert!(matches!(
        refused("before=x"),
        QueryError::NotANumber { name: "before", .. }
    ));
    assert_eq!(AuditQuery::from_query_string(""), Ok(AuditQuery::default()));
    assert_eq!(
        refused("order=sideways"),
        QueryError::Order("sideways".to_owned())
    );
    assert_eq!(
        AuditQuery::from_query_string("order=oldest"),
        Ok(AuditQuery::default().oldest_first())
    );
    assert_eq!(
        AuditQuery::from_query_string("order=newest"),
        Ok(AuditQuery::default())
    );
}

#[test]
fn a_file_an_earlier_version_wrote_gains_scope_and_request() {
    let c = rusqlite::Connection::open_in_memory().unwrap();
    // The table as the previous release created it.
    c.execute_batch(
        "CREATE TABLE audit (
           seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, action TEXT NOT NULL,
           account TEXT, agent TEXT, resource TEXT, detail TEXT NOT NULL);
         INSERT INTO audit (at, action, detail) VALUES (5, 'issued', 'old');",
    )
    .unwrap();
    c.execute_batch(aauth_metadata::audit::sqlite::TABLE)
        .unwrap();
    aauth_metadata::audit::sqlite::migrate(&c, "test").unwrap();
    aauth_metadata::audit::sqlite::migrate(&c, "test").unwrap(); // twice: nothing to do
    let new = event(1, AuditAction::Denied, 0, 0);
    aauth_metadata::audit::sqlite::record(&c, "test", &new, None).unwrap();
    let page = aauth_metadata::audit::sqlite::query(&c, "test", &AuditQuery::default()).unwrap();
    assert_eq!(page.events.len(), 2);
    assert_eq!(page.events[0], new, "scope and request kept");
    assert_eq!(page.events[1].detail, "old");
    assert_eq!(page.events[1].scope, None);
}

#[test]
fn the_retention_drops_old_events() {
    let day = 24 * 3600;
    let mut log = MemoryAuditLog::default().retention(std::time::Duration::from_secs(day));
    log.record(AuditEvent::new(NOW.as_secs(), AuditAction::Issued, "old"));
    log.record(AuditEvent::new(
        NOW.as_secs() + day - 1,
        AuditAction::Issued,
        "kept",
    ));
    log.record(AuditEvent::new(
        NOW.as_secs() + day + 1,
        AuditAction::Issued,
        "new",
    ));
    let details: Vec<String> = log
        .query(&AuditQuery::default())
        .events
        .into_iter()
        .map(|e| e.detail)
        .collect();
    assert_eq!(details, ["new", "kept"]);

    let c = sqlite_log(&[AuditEvent::new(NOW.as_secs(), AuditAction::Issued, "old")]);
    let later = AuditEvent::new(NOW.as_secs() + day + 1, AuditAction::Issued, "new");
    let retention = Some(std::time::Duration::from_secs(day));
    aauth_metadata::audit::sqlite::record(&c, "test", &later, retention).unwrap();
    let page = aauth_metadata::audit::sqlite::query(&c, "test", &AuditQuery::default()).unwrap();
    assert_eq!(page.events, vec![later]);
}

/// A log in memory, or one whose store is down.
struct Log {
    log: Mutex<MemoryAuditLog>,
    down: bool,
}

#[async_trait::async_trait]
impl AuditSource for Log {
    async fn audit_page(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        if self.down {
            return Err(StoreError::backend("test", "cut"));
        }
        Ok(self.log.lock().unwrap().query(q))
    }
}

fn server() -> ServerId {
    ServerId::parse("https://ps.example").unwrap()
}

fn request(query: &str, key: Option<&PrivateKey>, accept: &str) -> http::request::Parts {
    let (mut parts, ()) =
        http::Request::get(format!("https://ps.example{OPERATOR_AUDIT_PATH}?{query}"))
            .header("accept", accept)
            .body(())
            .unwrap()
            .into_parts();
    if let Some(key) = key {
        let scheme = hwk_scheme(key.public_key());
        sign(
            &mut parts,
            &[],
            &[SigningKey::new("sig", key, &scheme)],
            &SignOptions::default().with_query(),
            NOW,
        )
        .unwrap();
    }
    parts
}

fn json(r: &http::Response<bytes::Bytes>) -> serde_json::Value {
    serde_json::from_slice(r.body()).unwrap()
}

#[tokio::test]
async fn only_operators_read_the_log_over_http() {
    let operator = PrivateKey::ed25519_from_seed(&[1; 32]);
    let stranger = PrivateKey::ed25519_from_seed(&[2; 32]);
    let ops = Operators::new(&server(), [operator.public_key().clone()]);
    let mut log = MemoryAuditLog::default();
    let events: Vec<AuditEvent> = (0..7)
        .map(|i| event(i, AuditAction::ALL[(i % 6) as usize], (i % 2) as usize, 0))
        .collect();
    for e in &events {
        log.record(e.clone());
    }
    let source = Log {
        log: Mutex::new(log),
        down: false,
    };

    // No signature: 401, with the draft's Signature-Error.
    let r = ops
        .answer(&source, &request("", None, "application/json"), &[], NOW)
        .await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("signature-error"));

    // A good signature by a key that is not an operator's: 403.
    let r = ops
        .answer(
            &source,
            &request("", Some(&stranger), "application/json"),
            &[],
            NOW,
        )
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(json(&r)["error"], "access_denied");

    // The operator's signature, replayed outside its window: 401.
    let parts = request("", Some(&operator), "application/json");
    let late = UnixTime(NOW.as_secs() + 3600);
    assert_eq!(ops.answer(&source, &parts, &[], late).await.status(), 401);

    // A query changed after signing (the query is covered): 401.
    let mut tampered = request(
        "agent=aauth%3Aa%40agent.example",
        Some(&operator),
        "application/json",
    );
    tampered.uri = format!("https://ps.example{OPERATOR_AUDIT_PATH}?limit=1000")
        .parse()
        .unwrap();
    assert_eq!(ops.answer(&source, &tampered, &[], NOW).await.status(), 401);

    // A filter that does not parse: 400, naming it.
    let r = ops
        .answer(
            &source,
            &request("limit=many", Some(&operator), "application/json"),
            &[],
            NOW,
        )
        .await;
    assert_eq!(r.status(), 400);
    assert!(json(&r)["detail"].as_str().unwrap().contains("limit"));

    // Pages of two of agent a's events, followed by their cursors: exactly the model.
    let q = AuditQuery::default().agent(AGENTS[0]).limit(2);
    let want = model(&events, &q);
    assert_eq!(want.len(), 4);
    let mut got = Vec::new();
    let mut query = q.to_query_string();
    loop {
        let r = ops
            .answer(
                &source,
                &request(&query, Some(&operator), "application/json"),
                &[],
                NOW,
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let page = AuditPage::from_json(&json(&r)).unwrap();
        got.extend(page.events.clone());
        let Some(next) = page.next else {
            assert!(!r.headers().contains_key("link"));
            break;
        };
        let link = r.headers()["link"].to_str().unwrap().to_owned();
        let next_query = q.clone().before(next).to_query_string();
        assert_eq!(
            link,
            format!("<{OPERATOR_AUDIT_PATH}?{next_query}>; rel=\"next\"")
        );
        query = next_query;
    }
    assert_eq!(got, want);

    // The JSON-lines export: one event per line.
    let r = ops
        .answer(
            &source,
            &request("", Some(&operator), "application/jsonl"),
            &[],
            NOW,
        )
        .await;
    assert_eq!(r.headers()["content-type"], "application/jsonl");
    let lines: Vec<serde_json::Value> = std::str::from_utf8(r.body())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), events.len());
    assert_eq!(lines[0], events[6].to_json());

    // Another method: 405.
    let mut post = request("", Some(&operator), "application/json");
    post.method = http::Method::POST;
    assert_eq!(ops.answer(&source, &post, &[], NOW).await.status(), 405);

    // A store that cannot answer: 503 with Retry-After.
    let down = Log {
        log: Mutex::new(MemoryAuditLog::default()),
        down: true,
    };
    let r = ops
        .answer(
            &down,
            &request("", Some(&operator), "application/json"),
            &[],
            NOW,
        )
        .await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_signature_for_another_server_is_refused() {
    let operator = PrivateKey::ed25519_from_seed(&[1; 32]);
    let ops = Operators::new(
        &ServerId::parse("https://as.example").unwrap(),
        [operator.public_key().clone()],
    );
    let source = Log {
        log: Mutex::new(MemoryAuditLog::default()),
        down: false,
    };
    // Signed for ps.example, presented to as.example.
    let r = ops
        .answer(
            &source,
            &request("", Some(&operator), "application/json"),
            &[],
            NOW,
        )
        .await;
    assert_eq!(r.status(), 401);
}
