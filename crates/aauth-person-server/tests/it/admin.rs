//! The operator's work ([`Admin`]): accounts disabled and reset, agents and tokens revoked
//! (and the revocation sent on), the audit log written by the server and read by filters,
//! on the memory store and the SQLite store alike.

use std::sync::{Arc, Mutex};

use aauth_person_server::{
    Admin, AdminError, AuditAction, AuditEvent, AuditQuery, AuthTokenRecord, MemoryStore,
    PERSON_TOKEN_PATH, PersonTokenRecord, PsStore, RevocationNotifier, SqliteStore,
};
use aauth_tokens::{AgentId, ServerId};
use async_trait::async_trait;
use http::StatusCode;

use crate::consent::{Browser, approve, code_of, consenting_world};
use crate::{NOW, id};

const ASSISTANT: &str = "aauth:assistant@agent.example";

fn assistant() -> (ServerId, AgentId) {
    (
        id("https://agent.example"),
        AgentId::parse(ASSISTANT).unwrap(),
    )
}

/// What the store keeps for the operator, on either store.
pub(crate) async fn admin_contract(store: Arc<dyn PsStore>) {
    let (provider, agent) = assistant();
    // Accounts: created once, disabled and enabled, listed by name.
    assert!(store.create_account("bob", "$phc-b").await.unwrap());
    assert!(store.create_account("alice", "$phc-a").await.unwrap());
    assert!(!store.create_account("alice", "$other").await.unwrap());
    assert_eq!(
        store.password_hash("alice").await.unwrap().as_deref(),
        Some("$phc-a"),
        "a second create changes nothing"
    );
    assert!(store.set_account_disabled("alice", true).await.unwrap());
    assert!(!store.set_account_disabled("nobody", true).await.unwrap());
    assert!(store.account_disabled("alice").await.unwrap());
    assert!(!store.account_disabled("nobody").await.unwrap());
    store.set_password_hash("alice", "$phc-new").await.unwrap();
    assert!(
        store.account_disabled("alice").await.unwrap(),
        "a new password does not enable the account"
    );
    let names: Vec<(String, bool)> = store
        .accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.name, a.disabled))
        .collect();
    assert_eq!(
        names,
        [("alice".to_owned(), true), ("bob".to_owned(), false)]
    );
    assert!(store.set_account_disabled("alice", false).await.unwrap());
    assert!(!store.account_disabled("alice").await.unwrap());

    // People at OpenID Providers: linked by (issuer, subject), once.
    let op = "https://op.example";
    assert_eq!(store.linked_account(op, "s-1").await.unwrap(), None);
    assert!(store.link_account(op, "s-1", "bob").await.unwrap());
    assert!(
        !store.link_account(op, "s-1", "alice").await.unwrap(),
        "a linked pair is not linked again"
    );
    assert!(
        store
            .link_account("https://other.example", "s-1", "alice")
            .await
            .unwrap()
    );
    assert_eq!(
        store.linked_account(op, "s-1").await.unwrap().as_deref(),
        Some("bob")
    );
    assert_eq!(
        store
            .linked_account("https://other.example", "s-1")
            .await
            .unwrap()
            .as_deref(),
        Some("alice"),
        "the same subject at another issuer is another person"
    );
    assert_eq!(store.linked_account(op, "S-1").await.unwrap(), None);

    // Sessions end with the account's.
    let session = aauth_person_server::WebSession::new("alice", "c", NOW.as_secs() + 600);
    store.put_session("s1", session).await.unwrap();
    store.drop_sessions("bob").await.unwrap();
    assert!(store.session("s1", NOW).await.unwrap().is_some());
    store.drop_sessions("alice").await.unwrap();
    assert!(store.session("s1", NOW).await.unwrap().is_none());

    // Bindings: listed, filtered by account, removed once.
    let other = AgentId::parse("aauth:other@agent.example").unwrap();
    store.bind(&provider, &agent, "alice").await.unwrap();
    store.bind(&provider, &other, "bob").await.unwrap();
    assert_eq!(store.bindings(None).await.unwrap().len(), 2);
    let alices = store.bindings(Some("alice")).await.unwrap();
    assert_eq!(alices.len(), 1);
    assert_eq!(alices[0].agent, agent);
    assert!(store.unbind(&provider, &agent).await.unwrap());
    assert!(!store.unbind(&provider, &agent).await.unwrap());
    assert_eq!(store.binding(&provider, &agent).await.unwrap(), None);

    // Issued records: the live ones, by account.
    let resource = id("https://resource.example");
    for (jti, account, exp) in [("p1", "alice", 60), ("p2", "bob", 120), ("p3", "alice", 30)] {
        store
            .record_person_token(PersonTokenRecord::new(
                jti,
                resource.clone(),
                "sub",
                account,
                (provider.clone(), agent.clone()),
                NOW.as_secs() + exp,
            ))
            .await
            .unwrap();
    }
    store
        .record_auth_token(AuthTokenRecord::new(
            "a1",
            resource.clone(),
            "sub",
            "alice",
            "p1",
            NOW.as_secs() + 60,
        ))
        .await
        .unwrap();
    let (person, auth) = store.issued_records(Some("alice"), NOW).await.unwrap();
    let jtis: Vec<&str> = person.iter().map(|r| r.jti.as_str()).collect();
    assert_eq!(jtis, ["p3", "p1"], "alice's, soonest expiry first");
    assert_eq!(auth.len(), 1);
    let (person, _) = store.issued_records(None, NOW).await.unwrap();
    assert_eq!(person.len(), 3);
    let (person, auth) = store
        .issued_records(None, NOW.plus(60 + 301))
        .await
        .unwrap();
    assert_eq!(
        (person.len(), auth.len()),
        (1, 0),
        "past exp + grace, no longer listed"
    );

    // The audit log: newest first, every filter applied, limited.
    let at = NOW.as_secs();
    for (i, (action, agent_, resource_)) in [
        (AuditAction::Issued, ASSISTANT, "https://resource.example"),
        (AuditAction::Denied, ASSISTANT, "https://other.example"),
        (
            AuditAction::Issued,
            "aauth:other@agent.example",
            "https://resource.example",
        ),
        (AuditAction::Approved, ASSISTANT, "https://resource.example"),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .record_event(
                AuditEvent::new(at + i as u64, action, format!("event {i}"))
                    .account("alice")
                    .agent(agent_)
                    .resource(resource_),
            )
            .await
            .unwrap();
    }
    let details =
        |events: Vec<AuditEvent>| -> Vec<String> { events.into_iter().map(|e| e.detail).collect() };
    assert_eq!(
        details(store.audit(&AuditQuery::default()).await.unwrap().events),
        ["event 3", "event 2", "event 1", "event 0"]
    );
    assert_eq!(
        details(
            store
                .audit(&AuditQuery::default().agent(ASSISTANT))
                .await
                .unwrap()
                .events
        ),
        ["event 3", "event 1", "event 0"]
    );
    assert_eq!(
        details(
            store
                .audit(
                    &AuditQuery::default()
                        .resource("https://resource.example")
                        .action(AuditAction::Issued)
                )
                .await
                .unwrap()
                .events
        ),
        ["event 2", "event 0"]
    );
    assert_eq!(
        details(
            store
                .audit(&AuditQuery::default().since(at + 1).until(at + 2))
                .await
                .unwrap()
                .events
        ),
        ["event 2", "event 1"]
    );
    assert_eq!(
        details(
            store
                .audit(&AuditQuery::default().limit(1))
                .await
                .unwrap()
                .events
        ),
        ["event 3"]
    );
    assert!(
        store
            .audit(&AuditQuery::default().account("bob"))
            .await
            .unwrap()
            .events
            .is_empty()
    );
}

#[tokio::test]
async fn the_memory_store_keeps_the_operators_records() {
    admin_contract(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_operators_records() {
    admin_contract(Arc::new(SqliteStore::in_memory().unwrap())).await;
}

/// A database an earlier version wrote (a `passwords` table without `disabled`) is
/// migrated on open: its accounts are there, enabled, and can be disabled.
#[tokio::test]
async fn accounts_an_earlier_version_stored_can_be_disabled() {
    let dir = crate::stores::scratch_dir("admin-migrate");
    let path = dir.join("ps.sqlite");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE passwords (account TEXT PRIMARY KEY, phc TEXT NOT NULL);
             INSERT INTO passwords VALUES ('alice', '$phc');",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert!(!store.account_disabled("alice").await.unwrap());
    assert!(store.set_account_disabled("alice", true).await.unwrap());
    assert!(
        SqliteStore::open(&path)
            .unwrap()
            .account_disabled("alice")
            .await
            .unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A disabled account signs in to nothing and is issued nothing; enabled again, it is
/// served as before. The server's decisions are in the audit log.
#[tokio::test]
async fn a_disabled_account_is_issued_nothing_and_every_decision_is_audited() {
    let w = consenting_world(None).await;
    let admin = Admin::new(Arc::clone(w.ps.store()));
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    let (status, headers, _) = w.post_full(PERSON_TOKEN_PATH, ask.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let code = code_of(&headers);

    admin.set_disabled("alice", true, NOW).await.unwrap();
    let page = Browser::default()
        .sign_in(&w, &code, "alice", "correct horse battery")
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.html);
    assert!(page.html.contains("disabled"), "{}", page.html);
    let wrong = Browser::default()
        .sign_in(&w, &code, "alice", "a wrong password")
        .await;
    assert_eq!(
        wrong.status,
        StatusCode::UNAUTHORIZED,
        "without the password, a disabled account looks like any other"
    );

    admin.set_disabled("alice", false, NOW).await.unwrap();
    approve(&w, &code, "alice", "correct horse battery").await;
    let (status, body) = w.post(PERSON_TOKEN_PATH, ask.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    admin.set_disabled("alice", true, NOW).await.unwrap();
    let (status, body) = w.post(PERSON_TOKEN_PATH, ask.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "denied", "{body}");

    let log = admin
        .audit(&AuditQuery::default().agent(ASSISTANT))
        .await
        .unwrap()
        .events;
    let actions: Vec<AuditAction> = log.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [AuditAction::Issued, AuditAction::Approved],
        "{log:?}"
    );
    assert_eq!(log[0].account.as_deref(), Some("alice"));
    assert_eq!(log[0].resource.as_deref(), Some("https://resource.example"));
    assert!(log[0].detail.starts_with("person token "), "{log:?}");
    assert!(log[1].detail.contains("approved by the person"), "{log:?}");
    let accounts = admin
        .audit(&AuditQuery::default().action(AuditAction::Account))
        .await
        .unwrap()
        .events;
    assert_eq!(
        accounts
            .iter()
            .map(|e| e.detail.as_str())
            .collect::<Vec<_>>(),
        ["disabled", "enabled", "disabled"]
    );
}

/// Records what is revoked where.
#[derive(Default)]
struct Sent(Mutex<Vec<(String, String)>>);

#[async_trait]
impl RevocationNotifier for Sent {
    async fn notify(&self, resource: &ServerId, jti: &str, _: u64) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .push((resource.as_str().to_owned(), jti.to_owned()));
        Ok(())
    }
}

/// An agent the operator revokes loses its binding and every token issued to it, here
/// and at the resource; it must ask the person again.
#[tokio::test]
async fn a_revoked_agent_loses_its_tokens_and_its_binding() {
    let w = consenting_world(None).await;
    let sent = Arc::new(Sent::default());
    let admin = Admin::new(Arc::clone(w.ps.store())).notifier(Arc::clone(&sent) as _);
    w.bind(ASSISTANT, "alice").await;
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    let (status, _) = w.post(PERSON_TOKEN_PATH, ask.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let listing = admin.tokens(Some("alice"), NOW).await.unwrap();
    assert_eq!(listing.person.len(), 1);
    let (record, revoked) = &listing.person[0];
    assert!(!revoked);
    let jti = record.jti.clone();

    let (provider, agent) = assistant();
    assert_eq!(admin.revoke_agent(&provider, &agent, NOW).await.unwrap(), 1);
    assert!(w.ps.store().is_revoked(&jti, NOW).await.unwrap());
    assert_eq!(
        *sent.0.lock().unwrap(),
        [("https://resource.example".to_owned(), jti.clone())]
    );
    assert!(admin.tokens(None, NOW).await.unwrap().person[0].1);
    assert!(admin.agents(Some("alice")).await.unwrap().is_empty());
    let (status, _, _) = w.post_full(PERSON_TOKEN_PATH, ask).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the person is asked again");
    let stranger = AgentId::parse("aauth:stranger@agent.example").unwrap();
    assert!(matches!(
        admin.revoke_agent(&provider, &stranger, NOW).await,
        Err(AdminError::NotBound(_))
    ));
    assert!(matches!(
        admin.revoke_token("no-such-jti", NOW).await,
        Err(AdminError::NoSuchToken(_))
    ));
    let revoked = admin
        .audit(&AuditQuery::default().action(AuditAction::Revoked))
        .await
        .unwrap()
        .events;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].account.as_deref(), Some("alice"));
}

/// A token revoked by the operator is refused where this server checks it and sent on
/// to its resource; account names and passwords are checked before anything is stored.
#[tokio::test]
async fn a_token_is_revoked_and_bad_accounts_are_refused() {
    let w = consenting_world(None).await;
    let sent = Arc::new(Sent::default());
    let admin = Admin::new(Arc::clone(w.ps.store())).notifier(Arc::clone(&sent) as _);
    w.bind(ASSISTANT, "alice").await;
    let (status, _) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let jti = admin.tokens(None, NOW).await.unwrap().person[0]
        .0
        .jti
        .clone();
    admin.revoke_token(&jti, NOW).await.unwrap();
    assert!(w.ps.store().is_revoked(&jti, NOW).await.unwrap());
    assert_eq!(sent.0.lock().unwrap().len(), 1);

    for bad in ["", " alice", "a\nb", &"x".repeat(129)] {
        assert!(matches!(
            admin.create_account(bad, "pw", NOW).await,
            Err(AdminError::InvalidAccount(_))
        ));
    }
    assert!(matches!(
        admin.create_account("carol", "", NOW).await,
        Err(AdminError::EmptyPassword)
    ));
    assert!(matches!(
        admin.reset_password("nobody", "pw", NOW).await,
        Err(AdminError::NoSuchAccount(_))
    ));
    let before = admin.accounts().await.unwrap();
    assert!(matches!(
        admin.create_account("alice", "pw", NOW).await,
        Err(AdminError::AccountExists(_))
    ));
    assert_eq!(admin.accounts().await.unwrap(), before, "nothing changed");
    admin
        .create_account("carol", "carol's pw", NOW)
        .await
        .unwrap();
    admin.reset_password("carol", "new pw", NOW).await.unwrap();
    assert_eq!(admin.accounts().await.unwrap().len(), before.len() + 1);
}

/// `GET /admin/audit` after a three-party flow: the operator reads the person token and
/// the auth token issued (with its scope), newest first; nobody else reads anything.
#[tokio::test]
async fn operators_read_the_audit_log_over_http() {
    use aauth_metadata::audit::AuditPage;
    use aauth_metadata::audit::operator::OPERATOR_AUDIT_PATH;
    let w = crate::world();
    w.bind(ASSISTANT, "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: aauth_tokens::PersonClaims = w.read(&person, "https://resource.example");
    let rt = w.resource_token(&pc.jti, &pc.sub, |b| b);
    let (s, json) = w
        .post(
            aauth_person_server::AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": rt, "presented_token": person}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");

    let get = |key: Option<&aauth_keys::PrivateKey>, query: &str| {
        aauth_test_support::request::operator_get(
            &format!("https://ps.example{OPERATOR_AUDIT_PATH}?{query}"),
            key,
            NOW,
        )
    };
    // A refused token request is recorded with its code, never with the token.
    let forged = "eyJhbGciOiJFZDI1NTE5In0.eyJpc3MiOiJodHRwczovL2V2aWwuZXhhbXBsZSJ9.c2ln";
    let (s, json) = w
        .post(
            aauth_person_server::AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": forged, "presented_token": person}),
        )
        .await;
    assert_eq!(json["error"], "invalid_resource_token", "{s} {json}");
    let refused = w
        .mem
        .as_ref()
        .unwrap()
        .audit(&AuditQuery::default().action(AuditAction::Refused))
        .await
        .unwrap()
        .events;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0]
            .detail
            .starts_with("invalid_resource_token: auth token refused"),
        "{refused:?}"
    );
    assert_eq!(refused[0].agent.as_deref(), Some(ASSISTANT));
    assert!(
        !refused[0].detail.contains("eyJ"),
        "never a token: {refused:?}"
    );

    let unsigned = w.ps.handle(&get(None, ""), &[], NOW).await.unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    let agent =
        w.ps.handle(&get(Some(&w.agent), ""), &[], NOW)
            .await
            .unwrap();
    assert_eq!(
        agent.status(),
        StatusCode::FORBIDDEN,
        "an agent is no operator"
    );

    let r =
        w.ps.handle(
            &get(Some(&crate::operator()), "action=issued&limit=1"),
            &[],
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = AuditPage::from_json(&serde_json::from_slice(r.body()).unwrap()).unwrap();
    let auth = &page.events[0];
    assert!(auth.detail.starts_with("auth token "), "{auth:?}");
    assert_eq!(auth.scope.as_deref(), Some("read"));
    assert_eq!(auth.agent.as_deref(), Some(ASSISTANT));
    assert_eq!(auth.account.as_deref(), Some("alice"));
    let next = page.next.expect("the person token is on the next page");
    let r =
        w.ps.handle(
            &get(
                Some(&crate::operator()),
                &format!("action=issued&limit=1&before={next}"),
            ),
            &[],
            NOW,
        )
        .await
        .unwrap();
    let page = AuditPage::from_json(&serde_json::from_slice(r.body()).unwrap()).unwrap();
    assert_eq!(page.events.len(), 1);
    assert!(page.events[0].detail.starts_with("person token "));
    assert_eq!(
        page.events[0].resource.as_deref(),
        Some("https://resource.example")
    );
    assert_eq!(page.next, None);
}

/// Unlinking an agent ends what it asked in the person's name: a request approved and not
/// yet delivered delivers nothing, a request still waiting is denied at its next poll and
/// can no longer be approved. An approval that raced the unlinking (the binding gone, the
/// request still approved) delivers nothing either.
#[tokio::test]
async fn unlinking_an_agent_ends_its_waiting_and_approved_requests() {
    let w = consenting_world(Some(Arc::new(aauth_person_server::AlwaysAsk))).await;
    let (provider, agent) = assistant();
    w.bind(ASSISTANT, "alice").await;
    let ask = serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]});
    let (s, approved, _) = w.post_full(PERSON_TOKEN_PATH, ask.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    approve(&w, &code_of(&approved), "alice", "correct horse battery").await;
    let (_, waiting, _) = w.post_full(PERSON_TOKEN_PATH, ask.clone()).await;
    let code = code_of(&waiting);
    let mut alice = Browser::default();
    let page = alice
        .sign_in(&w, &code, "alice", "correct horse battery")
        .await;
    let consent = alice
        .go(
            &w,
            "GET",
            &crate::consent::header_of(&page.headers, "location"),
            &[],
        )
        .await;
    assert_eq!(consent.status, StatusCode::OK);
    let csrf = consent.hidden("csrf");

    let admin = Admin::new(Arc::clone(w.ps.store()));
    admin.revoke_agent(&provider, &agent, NOW).await.unwrap();
    let denied = |(s, json): (StatusCode, serde_json::Value)| {
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("denied")),
            "{json}"
        );
    };
    for headers in [&approved, &waiting] {
        let location = crate::consent::header_of(headers, "location");
        let (s, _, json) =
            crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
        denied((s, json));
    }
    let late = crate::consent::decide(&mut alice, &w, &code, &csrf, "grant").await;
    assert_eq!(late.status, StatusCode::GONE, "{}", late.html);
    assert_eq!(w.ps.store().binding(&provider, &agent).await.unwrap(), None);

    // Linked again, approved, and the binding removed before the poll (as if the
    // unlinking read the agent's requests just before this approval): nothing delivered.
    w.bind(ASSISTANT, "alice").await;
    let (_, raced, _) = w.post_full(PERSON_TOKEN_PATH, ask.clone()).await;
    approve(&w, &code_of(&raced), "alice", "correct horse battery").await;
    assert!(w.ps.store().unbind(&provider, &agent).await.unwrap());
    let location = crate::consent::header_of(&raced, "location");
    let (s, _, json) =
        crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    denied((s, json));
    let (s, _, _) =
        crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::GONE, "ended once");

    // And a request the person opens after a rebinding to someone else: alice, who asked
    // before, cannot approve it into a token of hers.
    w.bind(ASSISTANT, "alice").await;
    let (_, before, _) = w.post_full(PERSON_TOKEN_PATH, ask.clone()).await;
    let code = code_of(&before);
    let mut alice = Browser::default();
    let page = alice
        .sign_in(&w, &code, "alice", "correct horse battery")
        .await;
    let consent = alice
        .go(
            &w,
            "GET",
            &crate::consent::header_of(&page.headers, "location"),
            &[],
        )
        .await;
    let csrf = consent.hidden("csrf");
    assert!(w.ps.store().unbind(&provider, &agent).await.unwrap());
    w.bind(ASSISTANT, "mallory").await;
    let refused = crate::consent::decide(&mut alice, &w, &code, &csrf, "grant").await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.html);
    let location = crate::consent::header_of(&before, "location");
    let (s, _, json) =
        crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    denied((s, json));
}

/// Whether `b` is signed in (its session still stands).
async fn signed_in(b: &mut Browser, w: &crate::World) -> bool {
    let page = b
        .go(w, "GET", aauth_person_server::INTERACT_PATH, &[])
        .await;
    page.html.contains("Signed in as")
}

/// An account's password as the operator's configuration declares it (`aauth serve`'s
/// `[[person_server.accounts]]`, at every start): the same password again keeps its hash
/// and the account's sessions; a new one, or none (the account then signs in only
/// through its OpenID Provider), replaces the old one, which opens nothing from then on,
/// and ends the account's sessions.
#[tokio::test]
async fn a_declared_password_replaced_or_removed_opens_nothing_and_ends_the_sessions() {
    let w = consenting_world(None).await;
    let store = Arc::clone(w.ps.store());
    let hash = store.password_hash("alice").await.unwrap();
    assert!(
        !w.ps
            .declare_password("alice", Some("correct horse battery"))
            .await
            .unwrap()
    );
    assert_eq!(store.password_hash("alice").await.unwrap(), hash, "kept");
    let mut alice = Browser::default();
    let page = alice
        .sign_in(&w, "", "alice", "correct horse battery")
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(signed_in(&mut alice, &w).await);
    assert!(
        !w.ps
            .declare_password("alice", Some("correct horse battery"))
            .await
            .unwrap()
    );
    assert!(signed_in(&mut alice, &w).await, "nothing changed");

    assert!(
        w.ps.declare_password("alice", Some("new words"))
            .await
            .unwrap()
    );
    assert!(!signed_in(&mut alice, &w).await, "the session ended");
    let mut b = Browser::default();
    let page = b.sign_in(&w, "", "alice", "correct horse battery").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    let mut alice = Browser::default();
    let page = alice.sign_in(&w, "", "alice", "new words").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);

    // No password declared any more: the account signs in only through its provider.
    assert!(w.ps.declare_password("alice", None).await.unwrap());
    assert!(!signed_in(&mut alice, &w).await, "the session ended");
    let page = b.sign_in(&w, "", "alice", "new words").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(!w.ps.declare_password("alice", None).await.unwrap());
    // A new account without a password is created, opened by none.
    assert!(w.ps.declare_password("carol", None).await.unwrap());
    assert!(store.password_hash("carol").await.unwrap().is_some());
    let page = b.sign_in(&w, "", "carol", "").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
}

/// A token revoked by hand takes with it every auth token obtained with it, however many
/// step-ups deep (P → A1 → A2 → A3), and nothing else.
#[tokio::test]
async fn a_token_revoked_by_hand_takes_every_step_up_obtained_with_it() {
    let stores: [Arc<dyn PsStore>; 2] = [
        Arc::new(MemoryStore::default()),
        Arc::new(SqliteStore::in_memory().unwrap()),
    ];
    for store in stores {
        record_a_chain(
            store.as_ref(),
            &[("a1", "p"), ("a2", "a1"), ("a3", "a2"), ("b", "other")],
        )
        .await;
        Admin::new(Arc::clone(&store))
            .revoke_token("p", NOW)
            .await
            .unwrap();
        let jtis = ["p", "a1", "a2", "a3", "b"];
        let revoked = revoked_of(store.as_ref(), &jtis).await;
        assert_eq!(
            jtis.into_iter().zip(revoked).collect::<Vec<_>>(),
            [
                ("p", true),
                ("a1", true),
                ("a2", true),
                ("a3", true),
                ("b", false)
            ]
        );
    }
}

/// Alice's person token `p` for resource.example, issued to the assistant, and the auth
/// tokens `(jti, presented)` (each obtained with the token named `presented`), in
/// `store`.
async fn record_a_chain(store: &dyn PsStore, auth: &[(&str, &str)]) {
    let resource = id("https://resource.example");
    let exp = NOW.as_secs() + 600;
    store
        .record_person_token(PersonTokenRecord::new(
            "p",
            resource.clone(),
            "sub",
            "alice",
            assistant(),
            exp,
        ))
        .await
        .unwrap();
    for &(jti, presented) in auth {
        store
            .record_auth_token(AuthTokenRecord::new(
                jti,
                resource.clone(),
                "sub",
                "alice",
                presented,
                exp,
            ))
            .await
            .unwrap();
    }
}

/// `a1`, obtained with `p`, and `a2`, stepped up from `a1`.
const STEPPED_UP: &[(&str, &str)] = &[("a1", "p"), ("a2", "a1")];

/// Whether each of `jtis` is revoked in `store`.
async fn revoked_of(store: &dyn PsStore, jtis: &[&str]) -> Vec<bool> {
    let mut out = Vec::new();
    for jti in jtis {
        out.push(store.is_revoked(jti, NOW).await.unwrap());
    }
    out
}

/// A token revoked by hand, and an agent unlinked, while a resource never answers the
/// second notice (the operator's command interrupted there): every token of the chain,
/// every token of the agent, is revoked here all the same.
#[tokio::test(start_paused = true)]
async fn revocations_cut_short_leave_no_token_live_here() {
    let cut = std::time::Duration::from_secs(5);
    for unlinked in [false, true] {
        let store: Arc<dyn PsStore> = Arc::new(MemoryStore::default());
        record_a_chain(store.as_ref(), STEPPED_UP).await;
        let admin = Admin::new(Arc::clone(&store)).notifier(crate::cascade::HangsAfterFirst::new());
        let (provider, agent) = assistant();
        let finished = if unlinked {
            store.bind(&provider, &agent, "alice").await.unwrap();
            tokio::time::timeout(cut, admin.revoke_agent(&provider, &agent, NOW))
                .await
                .is_ok()
        } else {
            tokio::time::timeout(cut, admin.revoke_token("p", NOW))
                .await
                .is_ok()
        };
        assert!(!finished, "unlinked: {unlinked}: cut while a notice hangs");
        assert_eq!(
            revoked_of(store.as_ref(), &["p", "a1", "a2"]).await,
            [true; 3],
            "unlinked: {unlinked}"
        );
    }
}

/// Disabling an account revokes every token on record in its name, here and at the
/// resources (the count is returned): its person token is refused as a presented token.
/// Another account's tokens are untouched.
#[tokio::test]
async fn disabling_an_account_revokes_its_tokens() {
    use aauth_person_server::AUTH_TOKEN_PATH;
    let w = crate::world();
    for account in ["alice", "bob"] {
        assert!(w.ps.store().create_account(account, "$phc").await.unwrap());
    }
    w.bind(ASSISTANT, "alice").await;
    w.bind("aauth:helper@agent.example", "bob").await;
    let resource = "https://resource.example";
    let alice_person = w.person_token(resource).await;
    let alice_pc: aauth_tokens::PersonClaims = w.read(&alice_person, resource);
    // The auth-token request of the holder of `key`, presenting `person` (its claims `pc`).
    let ask = |person: &str, pc: &aauth_tokens::PersonClaims, key: &aauth_keys::PrivateKey| {
        let rt = w.resource_token_for(resource, pc, key, "read");
        serde_json::json!({"resource_token": rt, "presented_token": person})
    };
    let alice_asks = || w.post(AUTH_TOKEN_PATH, ask(&alice_person, &alice_pc, &w.agent));
    let (s, json) = alice_asks().await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let helper_key = aauth_keys::PrivateKey::ed25519_from_seed(&[5; 32]);
    let helper = crate::agent_token(&w.provider, "aauth:helper@agent.example", &helper_key, 1800);
    let (s, json) = w
        .post_as(
            PERSON_TOKEN_PATH,
            &serde_json::json!({"resource": resource}),
            &helper_key,
            &helper,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let bob_person = json["person_token"].as_str().unwrap().to_owned();
    let bob_pc: aauth_tokens::PersonClaims = w.read(&bob_person, resource);

    let sent = Arc::new(Sent::default());
    let admin = Admin::new(Arc::clone(w.ps.store())).notifier(Arc::clone(&sent) as _);
    assert_eq!(admin.set_disabled("alice", true, NOW).await.unwrap(), 2);
    let alice = admin.tokens(Some("alice"), NOW).await.unwrap();
    assert_eq!((alice.person.len(), alice.auth.len()), (1, 1));
    assert!(
        alice.person.iter().all(|(_, revoked)| *revoked),
        "{alice:?}"
    );
    assert!(alice.auth.iter().all(|(_, revoked)| *revoked), "{alice:?}");
    let mut notified: Vec<String> = sent
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(_, j)| j.clone())
        .collect();
    notified.sort();
    let mut expected = vec![alice.person[0].0.jti.clone(), alice.auth[0].0.jti.clone()];
    expected.sort();
    assert_eq!(notified, expected, "sent on to the resource");
    let (s, json) = alice_asks().await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked_presented_token")),
        "{json}"
    );
    let revoked = admin
        .audit(&AuditQuery::default().action(AuditAction::Revoked))
        .await
        .unwrap()
        .events;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0].account.as_deref(), Some("alice"));

    // Bob's token is untouched.
    let bob = admin.tokens(Some("bob"), NOW).await.unwrap();
    assert!(!bob.person[0].1, "{bob:?}");
    let (s, json) = w
        .post_as(
            AUTH_TOKEN_PATH,
            &ask(&bob_person, &bob_pc, &helper_key),
            &helper_key,
            &helper,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    // Enabled again: nothing more is revoked, and alice's tokens stay revoked.
    assert_eq!(admin.set_disabled("alice", false, NOW).await.unwrap(), 0);
    assert!(admin.tokens(Some("alice"), NOW).await.unwrap().person[0].1);
}
