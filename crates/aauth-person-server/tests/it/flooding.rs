//! Flooding a Person Server (outside review, catalogue Z6/Z7), over the memory, SQLite
//! and PostgreSQL stores: a mission's log stays at its cap however many entries its agent
//! sends, and over-long texts are refused; deferred requests of agents no person here is
//! known for are bounded per agent provider and in all, whatever the number of agent
//! identifiers (a second provider is still served, a bound agent too), a refused request
//! changes nothing, and a deferred proposal keeps none of the padding that came with it.

use std::sync::Arc;
use std::time::Duration;

use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::UnixTime;
use aauth_person_server::{
    AUDIT_PATH, AuditQuery, INTERACTION_PATH, MAX_MISSION_LOG, MAX_PROPOSAL_TEXT, MISSION_PATH,
    MemoryStore, PENDING_KEPT, PERMISSION_PATH, PERSON_TOKEN_PATH, Pending, PendingCaps,
    PendingCreated, PendingRequest, Proposal, PsStore, SqliteStore, TerminationReason,
};
use aauth_tokens::{AgentId, AgentTokenBuilder};
use http::StatusCode;

use crate::postgres::Db;
use crate::stores::{PENDING_BEFORE_PROVIDER, scratch_dir};
use crate::{NOW, World, id, json_of, world_over};

/// A store each test runs over: its name, the store, the memory store again (its state
/// readable), the PostgreSQL schema to drop at the end.
struct Over {
    name: &'static str,
    store: Arc<dyn PsStore>,
    mem: Option<Arc<MemoryStore>>,
    db: Option<Db>,
}

/// The stores each test runs over: memory, SQLite, and PostgreSQL when the machine has
/// one (a schema of the test's own).
async fn stores(test: &str) -> Vec<Over> {
    let mem = Arc::new(MemoryStore::default());
    let mut all = vec![
        Over {
            name: "memory",
            store: Arc::clone(&mem) as Arc<dyn PsStore>,
            mem: Some(mem),
            db: None,
        },
        Over {
            name: "sqlite",
            store: Arc::new(SqliteStore::in_memory().unwrap()),
            mem: None,
            db: None,
        },
    ];
    if let Some(db) = Db::new(test) {
        all.push(Over {
            name: "postgres",
            store: db.store().await,
            mem: None,
            db: Some(db),
        });
    }
    all
}

/// The world over `o`'s store, its consent pages served (so that requests can wait for
/// the person).
fn world_on(o: &Over) -> World {
    let mut w = world_over(Arc::clone(&o.store), None);
    w.ps = w.ps.consent_pages(Duration::from_secs(600));
    w.mem.clone_from(&o.mem);
    w
}

impl Over {
    async fn done(self) {
        if let Some(db) = self.db {
            db.drop_schema().await;
        }
    }
}

/// A mission of the bound assistant, approved at once: its `s256`.
async fn mission(w: &World) -> String {
    w.bind("aauth:assistant@agent.example", "alice").await;
    let (s, json) = w
        .post(
            MISSION_PATH,
            serde_json::json!({"description": "tidy my files"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    json["s256"].as_str().unwrap().to_owned()
}

/// What the store keeps of mission `s256`.
async fn stored(w: &World, s256: &str) -> aauth_person_server::Mission {
    w.ps.store().mission(s256).await.unwrap().unwrap()
}

/// Texts one byte over their bound are refused (`400 invalid_request`) and change
/// nothing; the mission's log stays at its cap under a flood of permission requests, and
/// past it the agent's audit records, updates and token requests under the mission are
/// refused (`403 denied`, `mission_log_full`, no `Retry-After`: the log never empties)
/// without changing it or the audit log, while the person can still end the mission.
#[tokio::test]
async fn a_missions_log_stays_at_its_cap_and_over_long_texts_are_refused() {
    for o in stores("a_missions_log_stays_at_its_cap").await {
        let (name, w) = (o.name, world_on(&o));
        let s256 = mission(&w).await;
        let url = format!("{MISSION_PATH}/{s256}");
        let long = "x".repeat(MAX_PROPOSAL_TEXT + 1);
        let before = stored(&w, &s256).await;
        for (path, body) in [
            (
                PERMISSION_PATH,
                serde_json::json!({"action": "a".repeat(257), "mission_s256": s256}),
            ),
            (
                PERMISSION_PATH,
                serde_json::json!({"action": "ReadFile", "description": long, "mission_s256": s256}),
            ),
            (
                AUDIT_PATH,
                serde_json::json!({"action": "a".repeat(257), "mission_s256": s256}),
            ),
            (
                url.as_str(),
                serde_json::json!({"action": "update", "description": long}),
            ),
            (
                url.as_str(),
                serde_json::json!({"action": "completion", "summary": long}),
            ),
            (
                INTERACTION_PATH,
                serde_json::json!({"type": "question", "question": long, "capabilities": ["interaction"]}),
            ),
        ] {
            let (s, json) = w.post_path(path, body).await;
            assert_eq!(
                (s, json["error"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_request")),
                "{name} {path}: {json}"
            );
        }
        assert_eq!(stored(&w, &s256).await, before, "{name}: nothing changed");
        // At the bound itself, accepted.
        let (s, json) = w
            .post(
                PERMISSION_PATH,
                serde_json::json!({"action": "a".repeat(256), "mission_s256": s256}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{name}: {json}");

        // The log three entries short of its cap (written as the person's entries are).
        let mut m = stored(&w, &s256).await;
        while m.log_entries().len() < MAX_MISSION_LOG - 3 {
            m.log(NOW.as_secs(), "audit", None, "record", None);
        }
        assert!(w.ps.store().replace_mission(&m).await.unwrap(), "{name}");
        let flood = serde_json::json!({"action": "ReadFile", "mission_s256": s256});
        let mut answers = Vec::new();
        for _ in 0..8 {
            let (s, json) = w.post(PERMISSION_PATH, flood.clone()).await;
            answers.push((
                s,
                json["error"].as_str().map(str::to_owned),
                json["violation"].as_str().map(str::to_owned),
            ));
        }
        let granted = (StatusCode::OK, None, None);
        // Final, not a rate limit: the log never empties, so a retry would never pass.
        let refused = (
            StatusCode::FORBIDDEN,
            Some("denied".to_owned()),
            Some("mission_log_full".to_owned()),
        );
        assert_eq!(
            answers,
            [&granted, &granted, &granted]
                .into_iter()
                .chain([&refused; 5])
                .cloned()
                .collect::<Vec<_>>(),
            "{name}"
        );
        let full = stored(&w, &s256).await;
        assert_eq!(full.log_entries().len(), MAX_MISSION_LOG, "{name}");
        let audited = w.ps.store().audit(&AuditQuery::default()).await.unwrap();
        for (path, body) in [
            (
                AUDIT_PATH,
                serde_json::json!({"action": "Sent", "mission_s256": s256}),
            ),
            (
                url.as_str(),
                serde_json::json!({"action": "update", "description": "more"}),
            ),
            (
                PERSON_TOKEN_PATH,
                serde_json::json!({"resource": "https://resource.example", "mission_s256": s256}),
            ),
        ] {
            let resp = w
                .respond("POST", path, Some(&body), (&w.agent, &w.agent_token), NOW)
                .await;
            let json = json_of(&resp);
            assert_eq!(
                (
                    resp.status(),
                    json["error"].as_str(),
                    json["violation"].as_str()
                ),
                (
                    StatusCode::FORBIDDEN,
                    Some("denied"),
                    Some("mission_log_full")
                ),
                "{name} {path}: {json}"
            );
            assert!(
                !resp.headers().contains_key("retry-after"),
                "{name} {path}: nothing to wait for"
            );
        }
        assert_eq!(
            stored(&w, &s256).await,
            full,
            "{name}: refused, nothing changed"
        );
        assert_eq!(
            w.ps.store().audit(&AuditQuery::default()).await.unwrap(),
            audited,
            "{name}: a flood at a full log is not a flood of audit events"
        );
        // The person's own entry still goes in (the log's reserve).
        w.ps.terminate_mission(&s256, TerminationReason::Revoked, NOW)
            .await
            .unwrap();
        let ended = stored(&w, &s256).await;
        assert_eq!(ended.terminated, Some(TerminationReason::Revoked), "{name}");
        assert_eq!(ended.log_entries().len(), MAX_MISSION_LOG + 1, "{name}");
        assert_eq!(
            ended.log_entries().last().unwrap().event,
            "terminated",
            "{name}"
        );
        drop(w);
        o.done().await;
    }
}

/// An agent token for `agent` at `provider` (agent.example's key, or resource.example's
/// own agent provider's), bound to `key`, issued at `at`.
fn token(w: &World, provider: &str, agent: &str, key: &PrivateKey, at: UnixTime) -> String {
    let (signer, kid) = if provider == "https://agent.example" {
        (&w.provider, "key-1")
    } else {
        (&w.rs, "rs-agents")
    };
    AgentTokenBuilder::new(
        id(provider),
        AgentId::parse(agent).unwrap(),
        key.public_key(),
    )
    .person_server(id("https://ps.example"))
    .lifetime(Duration::from_secs(3600))
    .sign(signer, kid, at.minus(5), &mut OsRandom)
    .unwrap()
    .token
}

/// Agent `n` of `provider` (a fresh identifier each): its agent token, issued at `at`.
fn fresh(w: &World, provider: &str, n: usize, at: UnixTime) -> String {
    let host = provider.trim_start_matches("https://");
    token(w, provider, &format!("aauth:fresh{n}@{host}"), &w.agent, at)
}

/// Agent `n` of `provider` asks the person a question at `at`: the response's status,
/// `Retry-After` and `error`.
async fn ask(w: &World, provider: &str, n: usize, at: UnixTime) -> (StatusCode, String, String) {
    ask_as(w, &fresh(w, provider, n, at), at).await
}

/// The agent of `token` asks the person a question at `at`.
async fn ask_as(w: &World, token: &str, at: UnixTime) -> (StatusCode, String, String) {
    let body = serde_json::json!({"type": "question", "question": "may I?", "capabilities": ["interaction"]});
    let resp = w
        .respond("POST", INTERACTION_PATH, Some(&body), (&w.agent, token), at)
        .await;
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let json = json_of(&resp);
    (
        resp.status(),
        retry,
        json["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// How many requests agent `n` of `provider` has stored.
async fn stored_of(w: &World, provider: &str, n: usize) -> usize {
    let host = provider.trim_start_matches("https://");
    let agent = AgentId::parse(&format!("aauth:fresh{n}@{host}")).unwrap();
    w.ps.store()
        .pending_of_agent(&id(provider), &agent)
        .await
        .unwrap()
        .len()
}

/// Fresh agent identifiers at one provider fill its share, not the server: past it their
/// requests are refused (`429`, `Retry-After`) and change nothing, while another
/// provider's are served until the total kept is reached, and an agent bound to a person
/// here is served past both; the total counts the records kept for late polls, and
/// frees up once they go.
#[tokio::test]
async fn deferred_requests_are_bounded_per_provider_and_in_all() {
    const A: &str = "https://agent.example";
    const B: &str = "https://resource.example";
    let refused = |s: (StatusCode, String, String)| {
        assert_eq!(
            s,
            (
                StatusCode::TOO_MANY_REQUESTS,
                "600".to_owned(),
                "rate_limited".to_owned()
            )
        );
    };
    for o in stores("deferred_requests_are_bounded_per_provider").await {
        let (name, mut w) = (o.name, world_on(&o));
        w.ps = w.ps.max_pending_per_provider(4).max_pending_total(6);
        for n in 0..4 {
            assert_eq!(
                ask(&w, A, n, NOW).await.0,
                StatusCode::ACCEPTED,
                "{name} {n}"
            );
        }
        // Provider A's share is taken: a fifth fresh identifier is refused, and stores
        // nothing. (Its agent token seen first, by a request that defers nothing: its
        // record is the verification's, not the refusal's.)
        let token = fresh(&w, A, 4, NOW);
        let relay = serde_json::json!({"type": "payment"});
        let resp = w
            .respond(
                "POST",
                INTERACTION_PATH,
                Some(&relay),
                (&w.agent, &token),
                NOW,
            )
            .await;
        assert_eq!(resp.status(), StatusCode::FAILED_DEPENDENCY, "{name}");
        let before = w.mem.as_ref().map(|_| w.state());
        refused(ask_as(&w, &token, NOW).await);
        assert_eq!(stored_of(&w, A, 4).await, 0, "{name}");
        if let Some(before) = before {
            assert_eq!(w.state(), before, "a refused request changes nothing");
        }
        // Provider B is still served, up to the total.
        for n in 0..2 {
            assert_eq!(
                ask(&w, B, n, NOW).await.0,
                StatusCode::ACCEPTED,
                "{name} B{n}"
            );
        }
        refused(ask(&w, B, 2, NOW).await);
        assert_eq!(stored_of(&w, B, 2).await, 0, "{name}");
        // An agent a person here bound is held only to its own bound.
        w.bind("aauth:assistant@agent.example", "alice").await;
        let (s, json) = w
            .post(
                INTERACTION_PATH,
                serde_json::json!({"type": "question", "question": "may I?", "capabilities": ["interaction"]}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{name}: {json}");
        // Once A's requests expire, its share is free, but the total still counts them
        // (kept for late polls) until they go.
        let later = NOW.plus(601);
        refused(ask(&w, A, 5, later).await);
        let gone = NOW.plus(601 + PENDING_KEPT);
        assert_eq!(ask(&w, A, 6, gone).await.0, StatusCode::ACCEPTED, "{name}");
        drop(w);
        o.done().await;
    }
}

/// What a deferred proposal keeps is the proposal read and written again: none of the
/// padding that came with it.
#[tokio::test]
async fn a_deferred_proposal_keeps_no_padding() {
    for o in stores("a_deferred_proposal_keeps_no_padding").await {
        let (name, w) = (o.name, world_on(&o));
        let body = serde_json::json!({
            "description": "tidy my files",
            "resources": ["https://resource.example"],
            "padding": "p".repeat(48 * 1024),
            "capabilities": ["interaction"],
        });
        let (s, json) = w.post(MISSION_PATH, body).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{name}: {json}");
        let kept =
            w.ps.store()
                .pending_of_agent(
                    &id("https://agent.example"),
                    &AgentId::parse("aauth:assistant@agent.example").unwrap(),
                )
                .await
                .unwrap();
        let [p] = kept.as_slice() else {
            panic!("{name}: one request kept, not {kept:?}")
        };
        let PendingRequest::Mission { proposal } = &p.request else {
            panic!("{name}: {:?}", p.request)
        };
        assert!(
            proposal.len() < 256,
            "{name}: {} bytes kept",
            proposal.len()
        );
        let expected: Proposal = serde_json::from_value(serde_json::json!({
            "description": "tidy my files",
            "resources": ["https://resource.example"],
        }))
        .unwrap();
        assert_eq!(
            serde_json::from_str::<Proposal>(proposal).unwrap(),
            expected
        );
        drop(w);
        o.done().await;
    }
}

/// A database an earlier version wrote (pending requests without their provider column)
/// is migrated on open: its open requests count towards their provider's share.
#[tokio::test]
async fn requests_an_earlier_version_stored_count_for_their_provider() {
    let dir = scratch_dir("provider");
    let path = dir.join("old.sqlite");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(PENDING_BEFORE_PROVIDER).unwrap();
    c.execute(
        "INSERT INTO pending VALUES ('old', 'OLDC0DE1', ?1, '{}', 0,
           'https://agent.example aauth:old@agent.example')",
        [i64::try_from(NOW.as_secs() + 600).unwrap()],
    )
    .unwrap();
    drop(c);
    let store = SqliteStore::open(&path).unwrap();
    let p = Pending::new(
        "new".to_owned(),
        "NEWC0DE1".to_owned(),
        (
            id("https://agent.example"),
            AgentId::parse("aauth:new@agent.example").unwrap(),
        ),
        PrivateKey::ed25519_from_seed(&[2; 32])
            .public_key()
            .to_jwk(),
        NOW.as_secs() + 1800,
        PendingRequest::Question {
            question: "q".to_owned(),
            mission_s256: None,
        },
        NOW.as_secs() + 600,
    );
    let within = |n| PendingCaps::new(16).with_per_provider(n);
    assert_eq!(
        store
            .create_pending(p.clone(), within(1), NOW)
            .await
            .unwrap(),
        PendingCreated::ProviderFull
    );
    assert_eq!(
        store.create_pending(p, within(2), NOW).await.unwrap(),
        PendingCreated::Created
    );
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}
