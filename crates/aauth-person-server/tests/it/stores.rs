//! The store contract, run against the memory store and the SQLite store alike, and a
//! Person Server restart in the middle of a deferred request.

use std::sync::Arc;
use std::time::Duration;

use aauth_keys::PrivateKey;
use aauth_person_server::{
    AuditAction, AuditEvent, AuditQuery, AuthTokenRecord, ChatTurn, Constraints, Issuance,
    MemoryStore, Mission, Pending, PendingCaps, PendingCreated, PendingRequest, PendingState,
    PersonServer, PersonTokenRecord, PsStore, SqliteStore, TerminationReason, TokenRecord,
    WebSession,
};
use aauth_tokens::{AgentId, StaticIssuerKeys};
use http::StatusCode;

use crate::{NOW, id};
use aauth_test_support::verify::issuer_keys;

/// A directory of this process's own for `what`'s files, under the system's temporary
/// directory (each test names its own).
pub(crate) fn scratch_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("aauth-ps-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `pending` table as the version before the `provider` column made it.
pub(crate) const PENDING_BEFORE_PROVIDER: &str = "CREATE TABLE pending (
   id TEXT PRIMARY KEY, code TEXT NOT NULL UNIQUE, expires INTEGER NOT NULL,
   data TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 0,
   agent TEXT NOT NULL DEFAULT '');";

fn pending(id_: &str, code: &str, state: PendingState, request: PendingRequest) -> Pending {
    let mut p = Pending::new(
        id_.to_owned(),
        code.to_owned(),
        (
            id("https://agent.example"),
            AgentId::parse("aauth:assistant@agent.example").unwrap(),
        ),
        PrivateKey::ed25519_from_seed(&[2; 32])
            .public_key()
            .to_jwk(),
        NOW.as_secs() + 1800,
        request,
        NOW.as_secs() + 600,
    );
    p.state = state;
    p
}

/// Only the per-agent bound.
fn caps(per_agent: usize) -> PendingCaps {
    PendingCaps::new(per_agent)
}

pub(crate) async fn contract(store: Arc<dyn PsStore>) {
    let provider = id("https://agent.example");
    let agent = AgentId::parse("aauth:assistant@agent.example").unwrap();
    assert_eq!(store.binding(&provider, &agent).await.unwrap(), None);
    store.bind(&provider, &agent, "alice").await.unwrap();
    store.bind(&provider, &agent, "bob").await.unwrap();
    assert_eq!(
        store.binding(&provider, &agent).await.unwrap().as_deref(),
        Some("bob")
    );
    // Binding only an unbound agent: the existing binding stands and is answered.
    assert_eq!(
        store
            .bind_if_unbound(&provider, &agent, "carol")
            .await
            .unwrap(),
        "bob"
    );
    let fresh = AgentId::parse("aauth:fresh@agent.example").unwrap();
    let racing = (0..8).map(|i| {
        let (store, provider, fresh) = (Arc::clone(&store), provider.clone(), fresh.clone());
        tokio::spawn(async move {
            store
                .bind_if_unbound(&provider, &fresh, &format!("person-{i}"))
                .await
                .unwrap()
        })
    });
    let mut winners = Vec::new();
    for r in racing.collect::<Vec<_>>() {
        winners.push(r.await.unwrap());
    }
    winners.dedup();
    assert_eq!(
        winners.len(),
        1,
        "one person binds it, all are told who: {winners:?}"
    );
    assert_eq!(
        store.binding(&provider, &fresh).await.unwrap().as_ref(),
        winners.first()
    );

    let rec = PersonTokenRecord::new(
        "jti-1",
        id("https://resource.example"),
        "sub-1",
        "bob",
        (provider.clone(), agent.clone()),
        NOW.as_secs() + 60,
    );
    store.record_person_token(rec.clone()).await.unwrap();
    assert_eq!(store.person_token("jti-1", NOW).await.unwrap(), Some(rec));
    assert_eq!(
        store
            .person_token("jti-1", NOW.plus(60 + 301))
            .await
            .unwrap(),
        None,
        "kept until exp + grace only"
    );
    assert_eq!(store.person_token("nope", NOW).await.unwrap(), None);

    let auth = AuthTokenRecord::new(
        "jti-2",
        id("https://resource.example"),
        "sub-1",
        "bob",
        "jti-1",
        NOW.as_secs() + 60,
    );
    store.record_auth_token(auth.clone()).await.unwrap();
    assert_eq!(store.auth_token("jti-2", NOW).await.unwrap(), Some(auth));

    // Accepted agent tokens, and the tokens issued to an agent (a chain through
    // presented_jti: person token jti-1 → auth token jti-2 → step-up auth token jti-3).
    store
        .record_agent_token(&provider, "agent-jti", &agent, NOW.as_secs() + 600)
        .await
        .unwrap();
    assert_eq!(
        store.agent_of_token(&provider, "agent-jti").await.unwrap(),
        Some(agent.clone())
    );
    assert_eq!(
        store
            .agent_of_token(&id("https://other.example"), "agent-jti")
            .await
            .unwrap(),
        None
    );
    let step_up = AuthTokenRecord::new(
        "jti-3",
        id("https://resource.example"),
        "sub-1",
        "bob",
        "jti-2",
        NOW.as_secs() + 60,
    );
    store.record_auth_token(step_up).await.unwrap();
    let mut of_agent = store.tokens_of_agent(&provider, &agent).await.unwrap();
    of_agent.sort();
    let jtis: Vec<&str> = of_agent.iter().map(|(j, _, _)| j.as_str()).collect();
    assert!(
        of_agent
            .iter()
            .all(|(_, aud, _)| aud.as_str() == "https://resource.example")
    );
    assert_eq!(jtis, ["jti-1", "jti-2", "jti-3"]);

    assert!(!store.is_revoked("jti-1", NOW).await.unwrap());
    // What a token request asks of an issued token, in one call.
    let known = |account: &str| aauth_person_server::IssuedToken::Known {
        aud: id("https://resource.example"),
        sub: "sub-1".to_owned(),
        account: account.to_owned(),
    };
    assert_eq!(
        store.issued("jti-1", true, NOW).await.unwrap(),
        known("bob")
    );
    assert_eq!(
        store.issued("jti-2", false, NOW).await.unwrap(),
        known("bob")
    );
    assert_eq!(
        store.issued("jti-2", true, NOW).await.unwrap(),
        aauth_person_server::IssuedToken::Unknown,
        "an auth token is not a person token"
    );
    store
        .revoke("jti-1", NOW.as_secs() + 60, NOW)
        .await
        .unwrap();
    assert_eq!(
        store.issued("jti-1", true, NOW).await.unwrap(),
        aauth_person_server::IssuedToken::Revoked
    );
    // A request's agent token: recorded once if not revoked; revoked refuses.
    let other = AgentId::parse("aauth:other@agent.example").unwrap();
    assert!(
        !store
            .see_agent_token(
                (&provider, "seen-jti"),
                &agent,
                NOW.as_secs() + 600,
                "agent k1",
                NOW
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .see_agent_token(
                (&provider, "seen-jti"),
                &other,
                NOW.as_secs() + 600,
                "agent k1",
                NOW
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store.agent_of_token(&provider, "seen-jti").await.unwrap(),
        Some(agent.clone()),
        "the first record is kept"
    );
    store
        .revoke("agent k2", NOW.as_secs() + 600, NOW)
        .await
        .unwrap();
    assert!(
        store
            .see_agent_token(
                (&provider, "late-jti"),
                &agent,
                NOW.as_secs() + 600,
                "agent k2",
                NOW
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store.agent_of_token(&provider, "late-jti").await.unwrap(),
        None,
        "a revoked token is not recorded"
    );
    // Where person tokens were presented (four-party).
    assert!(store.presentations("pt-9").await.unwrap().is_empty());
    store
        .record_presentation("pt-9", &id("https://as.example"), NOW.as_secs() + 60)
        .await
        .unwrap();
    store
        .record_presentation("pt-9", &id("https://as.example"), NOW.as_secs() + 60)
        .await
        .unwrap();
    store
        .record_presentation("pt-9", &id("https://as2.example"), NOW.as_secs() + 60)
        .await
        .unwrap();
    assert_eq!(
        store.presentations("pt-9").await.unwrap(),
        vec![id("https://as.example"), id("https://as2.example")]
    );
    assert!(store.is_revoked("jti-1", NOW).await.unwrap());
    // Call chains, by the jti of the token issued through them.
    assert!(store.chain("at-9").await.unwrap().is_empty());
    let chain = [id("https://travel.example"), id("https://other.example")];
    store
        .record_chain("at-9", &chain, NOW.as_secs() + 60)
        .await
        .unwrap();
    assert_eq!(store.chain("at-9").await.unwrap(), chain.to_vec());

    let request = PendingRequest::AuthToken {
        resource: id("https://resource.example"),
        sub: "sub-1".to_owned(),
        scope: Some("read write".to_owned()),
        account_claim: Some("acct".to_owned()),
        mission_s256: Some("m".to_owned()),
        tenant: None,
        presented_jti: "jti-1".to_owned(),
        resource_token_jti: Some("rt-1".into()),
        resource_interaction: Some(Box::new(aauth_person_server::ResourceInteraction::new(
            "https://resource.example/consent".to_owned(),
            "RC-1".to_owned(),
            "flow-1".to_owned(),
        ))),
        presented_exp: NOW.as_secs() + 60,
        budget: Some(aauth_tokens::Budget::new(5_000_000, "USD", 6).unwrap()),
        budget_consumed: vec![aauth_tokens::Consumption::new("at-0", 1)],
        chain: vec![id("https://travel.example")],
        upstream_jti: Some("up-1".into()),
        four_party: Some(Box::new({
            let mut f = aauth_person_server::FourParty::new(
                id("https://as.example"),
                "rt".to_owned(),
                "at".to_owned(),
                "pt".to_owned(),
            );
            f.upstream_token = Some("up".to_owned());
            f
        })),
    };
    let mut p = pending(
        "p1",
        "ABCD1234",
        PendingState::Approved {
            account: "bob".to_owned(),
        },
        request,
    );
    p.account = Some("bob".to_owned());
    p.attempts = 2;
    p.clarification = true;
    let mut answered = ChatTurn::new("why?");
    answered.answer = Some("because".to_owned());
    p.chat = vec![answered, ChatTurn::new("and then?")];
    p.revision = 2;
    p.justification = Some("narrower".to_owned());
    p.subagent = Some(AgentId::parse("aauth:assistant+search@agent.example").unwrap());
    assert_eq!(
        store
            .create_pending(p.clone(), caps(16), NOW)
            .await
            .unwrap(),
        PendingCreated::Created
    );
    assert_eq!(store.pending("p1").await.unwrap(), Some(p.clone()));
    assert_eq!(
        store.pending_by_code("ABCD1234").await.unwrap(),
        Some(p.clone())
    );
    // An id or code already taken is not stored again.
    assert_eq!(
        store
            .create_pending(p.clone(), caps(16), NOW)
            .await
            .unwrap(),
        PendingCreated::Taken
    );
    // Every change is a compare-and-set on the version read: of two writers holding
    // the same version, exactly one wins; the loser writes nothing.
    let mut first = store.pending("p1").await.unwrap().unwrap();
    let mut second = first.clone();
    first.state = PendingState::Delivering {
        account: "bob".to_owned(),
        since: NOW.as_secs(),
    };
    second.state = PendingState::Denied;
    assert!(store.update_pending(&mut first).await.unwrap());
    assert_eq!(first.version, p.version + 1);
    assert!(!store.update_pending(&mut second).await.unwrap());
    assert_eq!(
        second.version, p.version,
        "the loser's version is unchanged"
    );
    assert_eq!(store.pending("p1").await.unwrap(), Some(first.clone()));
    first.state = PendingState::Done;
    assert!(store.update_pending(&mut first).await.unwrap());
    assert_eq!(
        store
            .pending("p1")
            .await
            .unwrap()
            .map(|q| (q.state, q.version)),
        Some((PendingState::Done, p.version + 2))
    );
    // Ended by its expiry: kept as such, and still found by its code (the person's page
    // tells them it expired).
    first.state = PendingState::Expired;
    assert!(store.update_pending(&mut first).await.unwrap());
    assert_eq!(
        store
            .pending_by_code("ABCD1234")
            .await
            .unwrap()
            .map(|q| q.state),
        Some(PendingState::Expired)
    );
    assert_eq!(store.pending_by_code("ZZZZ9999").await.unwrap(), None);
    // A pending request never stored cannot be updated.
    let mut ghost = pending(
        "p-ghost",
        "GGGG1111",
        PendingState::Pending,
        PendingRequest::Question {
            question: "q".to_owned(),
            mission_s256: None,
        },
    );
    assert!(!store.update_pending(&mut ghost).await.unwrap());

    // Each agent has a bounded number of open requests: past `max_open`, nothing is
    // stored; another agent is unaffected; once they expire, there is room again.
    let question = || PendingRequest::Question {
        question: "q".to_owned(),
        mission_s256: None,
    };
    for n in 0..3 {
        let q = pending(
            &format!("q{n}"),
            &format!("QQQQ000{n}"),
            PendingState::Pending,
            question(),
        );
        assert_eq!(
            store.create_pending(q, caps(4), NOW).await.unwrap(),
            PendingCreated::Created,
            "q{n}"
        );
    }
    // p1 (same agent, not expired) is the fourth.
    let q = pending("q3", "QQQQ0003", PendingState::Pending, question());
    assert_eq!(
        store.create_pending(q.clone(), caps(4), NOW).await.unwrap(),
        PendingCreated::AgentFull
    );
    assert_eq!(store.pending("q3").await.unwrap(), None);
    let mut other = pending("o1", "OOOO0001", PendingState::Pending, question());
    other.agent.1 = AgentId::parse("aauth:other@agent.example").unwrap();
    // The account that first presented the code of a request no person was known for.
    other.viewer = Some("carol".to_owned());
    assert_eq!(
        store
            .create_pending(other.clone(), caps(4), NOW)
            .await
            .unwrap(),
        PendingCreated::Created
    );
    assert_eq!(store.pending("o1").await.unwrap(), Some(other));
    assert_eq!(
        store
            .create_pending(q, caps(4), NOW.plus(601))
            .await
            .unwrap(),
        PendingCreated::Created
    );
    // An agent's requests, whatever their state or expiry (what unlinking it ends), and
    // no other agent's.
    let ids_of = |agent: &AgentId| {
        let (store, provider, agent) = (Arc::clone(&store), provider.clone(), agent.clone());
        async move {
            let mut ids: Vec<String> = store
                .pending_of_agent(&provider, &agent)
                .await
                .unwrap()
                .into_iter()
                .map(|p| p.id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(ids_of(&agent).await, ["p1", "q0", "q1", "q2", "q3"]);
    let listed = store.pending_of_agent(&provider, &agent).await.unwrap();
    assert_eq!(
        listed.into_iter().find(|p| p.id == "p1"),
        store.pending("p1").await.unwrap(),
        "each as stored, at its version"
    );
    assert_eq!(
        ids_of(&AgentId::parse("aauth:other@agent.example").unwrap()).await,
        ["o1"]
    );
    assert!(
        ids_of(&AgentId::parse("aauth:nobody@agent.example").unwrap())
            .await
            .is_empty()
    );
    assert!(
        store
            .pending_of_agent(&id("https://other-provider.example"), &agent)
            .await
            .unwrap()
            .is_empty()
    );

    let mut m = Mission::new(
        br#"{"agent":"aauth:assistant@agent.example","description":"d"}"#.to_vec(),
        (provider.clone(), agent.clone()),
        "bob",
        Constraints::default(),
    );
    m.log(NOW.as_secs(), "proposal", None, "permit", None);
    store.put_mission(m.clone()).await.unwrap();
    assert_eq!(store.mission(&m.s256).await.unwrap(), Some(m.clone()));
    // Owner-keyed: another agent (or the same agent name at another provider) finds
    // nothing, exactly as for a mission that does not exist.
    let owner = (provider.clone(), agent.clone());
    assert_eq!(
        store.owned_mission(&m.s256, &owner).await.unwrap(),
        Some(m.clone())
    );
    let stranger = AgentId::parse("aauth:other@agent.example").unwrap();
    assert_eq!(
        store
            .owned_mission(&m.s256, &(provider.clone(), stranger))
            .await
            .unwrap(),
        None
    );
    let elsewhere = id("https://other-provider.example");
    assert_eq!(
        store
            .owned_mission(&m.s256, &(elsewhere, agent.clone()))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.owned_mission("nope", &owner).await.unwrap(), None);
    m.terminated = Some(TerminationReason::Completed);
    m.grants = 3;
    // The spending ledger survives too (the constraints carry the ceiling).
    let mut c = Constraints::default();
    c.budget = Some(aauth_tokens::Budget::new(10, "EUR", 2).unwrap());
    m.constraints = c;
    m.record_allocation("at-1", 4, &id("https://resource.example"));
    m.record_consumption(
        Some(&aauth_tokens::Budget::new(10, "EUR", 2).unwrap()),
        &[aauth_tokens::Consumption::new("at-1", 3)],
        &id("https://resource.example"),
    );
    assert_eq!(m.spent(), 3);
    // A copy read before the termination, written back after it (a spend, an audit entry
    // racing the person's Terminate): the terminated mission stays as it is.
    let mut stale = store.mission(&m.s256).await.unwrap().unwrap();
    store.put_mission(m.clone()).await.unwrap();
    assert_eq!(store.mission(&m.s256).await.unwrap(), Some(m.clone()));
    stale.grants = 9;
    store.put_mission(stale).await.unwrap();
    assert_eq!(
        store.mission(&m.s256).await.unwrap(),
        Some(m.clone()),
        "a terminated mission is final"
    );
    assert!(
        !store.replace_mission(&m).await.unwrap(),
        "nor replaced at its version"
    );
    assert_eq!(store.mission("nope").await.unwrap(), None);
    missions_change_without_losing_one(&store).await;
    // Listed by account: bob's (changed, not copied), and nobody else's.
    let alices = Mission::new(
        br#"{"agent":"aauth:assistant@agent.example","description":"alice's"}"#.to_vec(),
        (provider.clone(), agent.clone()),
        "alice",
        Constraints::default(),
    );
    store.put_mission(alices.clone()).await.unwrap();
    assert_eq!(store.missions_of("bob").await.unwrap(), vec![m]);
    assert_eq!(store.missions_of("alice").await.unwrap(), vec![alices]);
    assert!(store.missions_of("carol").await.unwrap().is_empty());

    store.set_password_hash("bob", "$argon2id$x").await.unwrap();
    assert_eq!(
        store.password_hash("bob").await.unwrap().as_deref(),
        Some("$argon2id$x")
    );
    let s = WebSession::new("bob", "csrf-1", NOW.as_secs() + 3600);
    store.put_session("k1", s.clone()).await.unwrap();
    assert_eq!(store.session("k1", NOW).await.unwrap(), Some(s.clone()));
    assert_eq!(store.session("k1", NOW.plus(3600)).await.unwrap(), None);
    // Wrong codes count against a session that lasts, and never make one that does not.
    store.count_bad_code("k1", NOW).await.unwrap();
    store.count_bad_code("k1", NOW).await.unwrap();
    assert_eq!(
        store.session("k1", NOW).await.unwrap().map(|s| s.bad_codes),
        Some(2)
    );
    store.count_bad_code("gone", NOW).await.unwrap();
    assert_eq!(store.session("gone", NOW).await.unwrap(), None);
    store.count_bad_code("k1", NOW.plus(3600)).await.unwrap();
    assert_eq!(
        store.session("k1", NOW).await.unwrap().map(|s| s.bad_codes),
        Some(2),
        "an expired session is not counted against (nor brought back)"
    );

    issuance_contract(store.as_ref()).await;
    sub_agent_records_contract(store.as_ref()).await;
}

/// The tokens of an agent include its sub-agents' from records written before their
/// parent was kept with them (no `parent`), found by the sub-agent's name
/// (`aauth:<parent local>+…@<parent domain>`, exactly); not another agent's whose name
/// only looks alike, nor one whose record names another parent.
async fn sub_agent_records_contract(store: &dyn PsStore) {
    let provider = id("https://agent.example");
    let agent = |s: &str| AgentId::parse(s).unwrap();
    let record = |jti: &str, of: &str| {
        PersonTokenRecord::new(
            jti,
            id("https://resource.example"),
            "sub-9",
            "dave",
            (provider.clone(), agent(of)),
            NOW.as_secs() + 600,
        )
    };
    let parent = agent("aauth:planner_1@agent.example");
    for rec in [
        // Its sub-agent's, before the parent was kept, and after.
        record("legacy-sub", "aauth:planner_1+search@agent.example"),
        record("kept-sub", "aauth:planner_1+fetch@agent.example").with_parent(parent.clone()),
        // `_` is a wildcard to LIKE; the match is exact: not these.
        record("look-alike", "aauth:plannerX1+search@agent.example"),
        record("longer", "aauth:planner_12+search@agent.example"),
        // Identifiers are compared as they are, never case-folded (draft -11 §5.2: the local part may hold A-Z).
        record("other-case", "aauth:Planner_1+search@agent.example"),
        // Another domain's agent of that name (a record of this provider).
        record("other-domain", "aauth:planner_1+search@other.example"),
        // A record that names its parent, another one.
        record("other-parent", "aauth:planner_1+odd@agent.example")
            .with_parent(agent("aauth:other@agent.example")),
    ] {
        store.record_person_token(rec).await.unwrap();
    }
    let jtis = |tokens: Vec<(String, _, u64)>| {
        let mut j: Vec<String> = tokens.into_iter().map(|(j, _, _)| j).collect();
        j.sort();
        j
    };
    assert_eq!(
        jtis(store.tokens_of_agent(&provider, &parent).await.unwrap()),
        ["kept-sub", "legacy-sub"]
    );
    // A sub-agent has no sub-agents of its own (one level deep).
    assert_eq!(
        jtis(
            store
                .tokens_of_agent(&provider, &agent("aauth:planner_1+search@agent.example"))
                .await
                .unwrap()
        ),
        ["legacy-sub"]
    );
}

/// A mission changed by many at once, each reading it, adding its log entry and writing
/// it over the version it read (as instances of one Person Server do): every change is
/// kept, none written over a version it did not read.
async fn missions_change_without_losing_one(store: &Arc<dyn PsStore>) {
    let owner = (
        id("https://agent.example"),
        AgentId::parse("aauth:assistant@agent.example").unwrap(),
    );
    let m = Mission::new(
        br#"{"agent":"aauth:assistant@agent.example","description":"shared"}"#.to_vec(),
        owner,
        "dave",
        Constraints::default(),
    );
    assert!(!store.replace_mission(&m).await.unwrap(), "not stored yet");
    store.put_mission(m.clone()).await.unwrap();
    let stale = store.mission(&m.s256).await.unwrap().unwrap();
    let writers = (0..8).map(|i| {
        let (store, s256) = (Arc::clone(store), m.s256.clone());
        tokio::spawn(async move {
            loop {
                let mut now = store.mission(&s256).await.unwrap().unwrap();
                now.log(
                    NOW.as_secs(),
                    "audit",
                    None,
                    "record",
                    Some(format!("w{i}")),
                );
                if store.replace_mission(&now).await.unwrap() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
    });
    for w in writers.collect::<Vec<_>>() {
        w.await.unwrap();
    }
    let after = store.mission(&m.s256).await.unwrap().unwrap();
    assert_eq!(after.version, 8);
    let mut written: Vec<_> = after
        .log_entries()
        .iter()
        .filter_map(|e| e.detail.clone())
        .collect();
    written.sort();
    assert_eq!(written, (0..8).map(|i| format!("w{i}")).collect::<Vec<_>>());
    // A copy read before them all is refused, and changes nothing.
    let mut late = stale;
    late.grants = 99;
    assert!(!store.replace_mission(&late).await.unwrap());
    assert_eq!(store.mission(&m.s256).await.unwrap(), Some(after));
}

/// An issuance writes the token's record, its chain and its audit event together.
async fn issuance_contract(store: &dyn PsStore) {
    let agent = (
        id("https://agent.example"),
        AgentId::parse("aauth:assistant@agent.example").unwrap(),
    );
    let person = PersonTokenRecord::new(
        "issued-p",
        id("https://resource.example"),
        "sub-1",
        "carol",
        agent.clone(),
        NOW.as_secs() + 600,
    );
    let chain = vec![id("https://resource.example"), id("https://other.example")];
    let event = AuditEvent::new(NOW.as_secs(), AuditAction::Issued, "person token issued-p")
        .account("carol")
        .agent(agent.1.as_str())
        .resource("https://resource.example");
    store
        .record_issuance(Issuance::new(
            TokenRecord::Person(person.clone()),
            chain.clone(),
            event.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(
        store.person_token("issued-p", NOW).await.unwrap(),
        Some(person)
    );
    assert_eq!(store.chain("issued-p").await.unwrap(), chain);
    let auth = AuthTokenRecord::new(
        "issued-a",
        id("https://resource.example"),
        "sub-1",
        "carol",
        "issued-p",
        NOW.as_secs() + 300,
    );
    let auth_event = AuditEvent::new(
        NOW.as_secs() + 1,
        AuditAction::Issued,
        "auth token issued-a",
    )
    .account("carol");
    store
        .record_issuance(Issuance::new(
            TokenRecord::Auth(auth.clone()),
            Vec::new(),
            auth_event.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(store.auth_token("issued-a", NOW).await.unwrap(), Some(auth));
    assert!(store.chain("issued-a").await.unwrap().is_empty());
    let logged = store
        .audit(&AuditQuery::default().account("carol"))
        .await
        .unwrap()
        .events;
    assert_eq!(logged, vec![auth_event, event]);

    // What an auth-token request asks of the records, at once: as the questions apart.
    let standing = |rt_key: &'static str, jti: &'static str, person: bool| async move {
        store.standing(rt_key, jti, person, NOW).await.unwrap()
    };
    let known = aauth_person_server::IssuedToken::Known {
        aud: id("https://resource.example"),
        sub: "sub-1".to_owned(),
        account: "carol".to_owned(),
    };
    assert_eq!(
        standing("rt-key", "issued-p", true).await,
        aauth_person_server::Standing::new(false, known.clone(), false)
    );
    assert_eq!(
        standing("rt-key", "nobody", true).await,
        aauth_person_server::Standing::new(false, aauth_person_server::IssuedToken::Unknown, false)
    );
    store
        .set_password_hash("carol", "$argon2id$x")
        .await
        .unwrap();
    assert!(store.set_account_disabled("carol", true).await.unwrap());
    store
        .revoke("rt-key", NOW.as_secs() + 60, NOW)
        .await
        .unwrap();
    assert_eq!(
        standing("rt-key", "issued-p", true).await,
        aauth_person_server::Standing::new(true, known, true)
    );
    store
        .revoke("issued-a", NOW.as_secs() + 60, NOW)
        .await
        .unwrap();
    assert_eq!(
        standing("other-rt", "issued-a", false).await,
        aauth_person_server::Standing::new(false, aauth_person_server::IssuedToken::Revoked, false)
    );
    aauth_test_support::audit::pages_contract(
        NOW.as_secs(),
        |e| async move { store.record_event(e).await.unwrap() },
        |q| async move { store.audit(&q).await.unwrap() },
    )
    .await;
}

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    contract(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_contract() {
    contract(Arc::new(SqliteStore::in_memory().unwrap())).await;
}

/// A database an earlier version wrote (missions without owner columns) is migrated on
/// open: its missions are found by their owner, and by no one else.
#[tokio::test]
async fn missions_an_earlier_version_stored_are_found_by_their_owner() {
    let dir = scratch_dir("migrate-owners");
    let (new, old) = (dir.join("new.sqlite"), dir.join("old.sqlite"));
    let provider = id("https://agent.example");
    let agent = AgentId::parse("aauth:assistant@agent.example").unwrap();
    let m = Mission::new(
        br#"{"agent":"aauth:assistant@agent.example","description":"d"}"#.to_vec(),
        (provider.clone(), agent.clone()),
        "bob",
        Constraints::default(),
    );
    SqliteStore::open(&new)
        .unwrap()
        .put_mission(m.clone())
        .await
        .unwrap();
    let data: String = rusqlite::Connection::open(&new)
        .unwrap()
        .query_row("SELECT data FROM missions", [], |r| r.get(0))
        .unwrap();
    let c = rusqlite::Connection::open(&old).unwrap();
    c.execute_batch("CREATE TABLE missions (s256 TEXT PRIMARY KEY, data TEXT NOT NULL);")
        .unwrap();
    c.execute(
        "INSERT INTO missions (s256, data) VALUES (?1, ?2)",
        rusqlite::params![m.s256, data],
    )
    .unwrap();
    drop(c);

    let store = SqliteStore::open(&old).unwrap();
    let owner = (provider.clone(), agent);
    assert_eq!(
        store.owned_mission(&m.s256, &owner).await.unwrap(),
        Some(m.clone())
    );
    let stranger = (
        provider,
        AgentId::parse("aauth:other@agent.example").unwrap(),
    );
    assert_eq!(store.owned_mission(&m.s256, &stranger).await.unwrap(), None);

    // The owner is part of the lookup, not a filter on what was read: another agent's
    // mission is never decoded (a row that does not read back fails only its owner).
    rusqlite::Connection::open(&old)
        .unwrap()
        .execute("UPDATE missions SET data = 'not json'", [])
        .unwrap();
    assert_eq!(store.owned_mission(&m.s256, &stranger).await.unwrap(), None);
    assert!(store.owned_mission(&m.s256, &owner).await.is_err());
    std::fs::remove_dir_all(&dir).ok();
}

/// A deferred request survives the Person Server's restart: the person approves on the
/// new process, the agent's poll there gets the token.
#[tokio::test]
async fn a_pending_request_survives_a_restart() {
    let dir = scratch_dir("restart");
    let path = dir.join("ps.sqlite");
    let w = crate::world();
    let start = |keys: StaticIssuerKeys| {
        PersonServer::new(
            id("https://ps.example"),
            Arc::new(PrivateKey::ed25519_from_seed(&[4; 32])),
            "ps-1",
            Arc::new(keys),
            Arc::new(SqliteStore::open(&path).unwrap()),
            [9; 32],
        )
        .unwrap()
        .policy(Arc::new(aauth_person_server::dangerous::AutoApprove))
        .consent_pages(Duration::from_secs(600))
    };
    let keys = || {
        issuer_keys(&[(
            "https://agent.example",
            "aauth-agent.json",
            "key-1",
            aauth_test_support::key(1).public_key(),
        )])
    };
    let before = crate::World {
        ps: start(keys()),
        mem: None,
        ..w
    };
    before.ps.set_password("alice", "pw").await.unwrap();
    let (s, headers, _) = before
        .post_full(aauth_person_server::PERSON_TOKEN_PATH, serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = headers["location"].to_str().unwrap().to_owned();
    let code = crate::consent::code_of(&headers);

    // Restart: a new process over the same file.
    let after = crate::World {
        ps: start(keys()),
        ..before
    };
    crate::consent::approve(&after, &code, "alice", "pw").await;
    let (s, _, json) = crate::consent::poll(
        &after,
        "GET",
        &location,
        &after.agent,
        &after.agent_token,
        None,
        NOW,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert!(json["person_token"].is_string());
    // And the binding made by the approval persists too.
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(
        reopened
            .binding(
                &id("https://agent.example"),
                &AgentId::parse("aauth:assistant@agent.example").unwrap()
            )
            .await
            .unwrap()
            .as_deref(),
        Some("alice")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A database an earlier version wrote (pending requests without their provider, accounts
/// without `disabled`, missions without owners, person tokens without parents), in the
/// rollback journal or already in WAL, opened by several
/// processes at once (the server starting while `aauth admin` runs): every one opens
/// it, each migration is made once, and the rows are filled.
#[test]
fn an_old_database_opened_by_several_at_once_is_migrated_once() {
    let dir = scratch_dir("migrate-at-once");
    for round in 0..16 {
        let path = dir.join(format!("old-{round}.sqlite"));
        let c = rusqlite::Connection::open(&path).unwrap();
        if round % 2 == 1 {
            c.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        }
        c.execute_batch(
            "CREATE TABLE pending (
               id TEXT PRIMARY KEY, code TEXT NOT NULL UNIQUE, expires INTEGER NOT NULL,
               data TEXT NOT NULL);
             INSERT INTO pending VALUES ('old', 'OLDC0DE1', 1, '{}');
             CREATE TABLE passwords (account TEXT PRIMARY KEY, phc TEXT NOT NULL);
             INSERT INTO passwords VALUES ('alice', '$phc');
             CREATE TABLE missions (s256 TEXT PRIMARY KEY, data TEXT NOT NULL);
             CREATE TABLE person_tokens (
               jti TEXT PRIMARY KEY, aud TEXT NOT NULL, sub TEXT NOT NULL,
               account TEXT NOT NULL, provider TEXT NOT NULL, agent TEXT NOT NULL,
               mission TEXT, exp INTEGER NOT NULL);",
        )
        .unwrap();
        drop(c);
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            let opened: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        SqliteStore::open(&path).map(drop)
                    })
                })
                .collect();
            for o in opened {
                o.join().unwrap().unwrap();
            }
        });
        let c = rusqlite::Connection::open(&path).unwrap();
        let columns = |table: &str| -> Vec<String> {
            c.prepare(&format!("PRAGMA table_info({table})"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(1))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(
            columns("pending"),
            [
                "id", "code", "expires", "data", "version", "agent", "provider"
            ]
        );
        assert!(columns("passwords").contains(&"disabled".to_owned()));
        assert!(columns("person_tokens").contains(&"parent".to_owned()));
        assert!(columns("missions").contains(&"account".to_owned()));
        let disabled: i64 = c
            .query_row(
                "SELECT disabled FROM passwords WHERE account = 'alice'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(disabled, 0);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A migration that fails part way (here: a `provider` column that cannot be filled, as
/// by a crash between adding it and filling it) leaves the file as it was: opened
/// again, it is migrated whole.
#[test]
fn a_migration_cut_part_way_leaves_the_old_file_as_it_was() {
    let dir = scratch_dir("migrate-cut");
    let path = dir.join("old.sqlite");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(PENDING_BEFORE_PROVIDER).unwrap();
    c.execute_batch(
        "INSERT INTO pending VALUES ('old', 'OLDC0DE1', 1, '{}', 0,
           'https://agent.example aauth:old@agent.example');
         CREATE TABLE passwords (account TEXT PRIMARY KEY, phc TEXT NOT NULL);
         -- Refuses the filling of the new column, once it is there.
         CREATE TRIGGER no_provider BEFORE UPDATE OF provider ON pending
           BEGIN SELECT RAISE(ABORT, 'cut'); END;",
    )
    .unwrap();
    drop(c);
    assert!(SqliteStore::open(&path).is_err());
    let c = rusqlite::Connection::open(&path).unwrap();
    let has = |table: &str, column: &str| -> i64 {
        c.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(
        has("pending", "provider"),
        0,
        "the column added went with the failure"
    );
    assert_eq!(
        has("passwords", "disabled"),
        0,
        "nothing of the migration stays"
    );
    c.execute_batch("DROP TRIGGER no_provider;").unwrap();
    drop(c);
    SqliteStore::open(&path).unwrap();
    let provider: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT provider FROM pending WHERE id = 'old'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(provider, "https://agent.example");
    std::fs::remove_dir_all(&dir).ok();
}
