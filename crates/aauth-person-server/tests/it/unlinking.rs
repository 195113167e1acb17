//! Unlinking an agent from its person ends what it holds in their name: its sub-agents'
//! tokens are revoked with its own (those on record from before their parent was kept
//! with them too, found by name) and their resources told, a token issued before
//! obtains nothing more (draft -11 §Sub-Agents: "revoking the parent's grant causes the
//! next sub-agent authorization to fail"), and its missions end. Over the memory, SQLite
//! and PostgreSQL stores; and an Access Server cannot write over a record by its `jti`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_person_server::{
    AUDIT_PATH, AUTH_TOKEN_PATH, Admin, MISSION_PATH, MemoryStore, PERMISSION_PATH,
    PERSON_TOKEN_PATH, PersonTokenRecord, PsStore, RevocationNotifier, SqliteStore,
    TerminationReason,
};
use aauth_tokens::{AgentId, AgentTokenBuilder, PersonClaims, ResourceTokenBuilder, ServerId};
use async_trait::async_trait;
use http::StatusCode;

use crate::postgres::Db;
use crate::{NOW, World, id, world_over};

const ASSISTANT: &str = "aauth:assistant@agent.example";
/// The assistant's sub-agent.
const SEARCH: &str = "aauth:assistant+search@agent.example";

/// Records what is revoked at which resource.
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

fn assistant() -> (ServerId, AgentId) {
    (
        id("https://agent.example"),
        AgentId::parse(ASSISTANT).unwrap(),
    )
}

fn sub_key() -> PrivateKey {
    PrivateKey::ed25519_from_seed(&[31; 32])
}

/// The assistant's sub-agent's agent token.
fn sub_agent_token(w: &World) -> String {
    AgentTokenBuilder::new(
        id("https://agent.example"),
        AgentId::parse(SEARCH).unwrap(),
        sub_key().public_key(),
    )
    .parent_agent(AgentId::parse(ASSISTANT).unwrap())
    .lifetime(Duration::from_secs(1200))
    .sign(&w.provider, "key-1", NOW.minus(20), &mut OsRandom)
    .unwrap()
    .token
}

/// The parent's request for its sub-agent's person token: the token and its claims.
async fn sub_person_token(w: &World, subagent: &str) -> (String, PersonClaims) {
    let (s, json) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example", "subagent_token": subagent}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let token = json["person_token"].as_str().unwrap().to_owned();
    let pc = w.read(&token, "https://resource.example");
    (token, pc)
}

/// The parent's auth-token request for its sub-agent, with a fresh resource token for
/// the sub-agent's person token.
async fn sub_auth_token(
    w: &World,
    subagent: &str,
    (person, pc): (&str, &PersonClaims),
) -> (StatusCode, serde_json::Value) {
    let rt = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://ps.example"),
        id("https://ps.example"),
        pc.sub.clone(),
        pc.jti.clone(),
        sub_key().public_key(),
        "read",
    )
    .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    w.post(
        AUTH_TOKEN_PATH,
        serde_json::json!({"resource_token": rt, "presented_token": person, "subagent_token": subagent}),
    )
    .await
}

/// Unlinking the parent revokes its sub-agent's person and auth tokens with its own, and
/// tells their resource, as it does for the parent's.
async fn unlinking_revokes_the_sub_agents_tokens(store: Arc<dyn PsStore>) {
    let w = world_over(Arc::clone(&store), None);
    w.bind(ASSISTANT, "alice").await;
    let own = w.person_token("https://resource.example").await;
    let own: PersonClaims = w.read(&own, "https://resource.example");
    let subagent = sub_agent_token(&w);
    let (person, pc) = sub_person_token(&w, &subagent).await;
    let (s, json) = sub_auth_token(&w, &subagent, (&person, &pc)).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let auth = crate::federation::auth_jti(json["auth_token"].as_str().unwrap());
    // A sub-agent's token on record from before the parent was kept with it (migration 6):
    // found by the sub-agent's name.
    let (provider, agent) = assistant();
    let legacy = "legacy-sub-agent-token".to_owned();
    store
        .record_person_token(PersonTokenRecord::new(
            legacy.clone(),
            id("https://resource.example"),
            "sub-legacy",
            "alice",
            (provider.clone(), AgentId::parse(SEARCH).unwrap()),
            NOW.as_secs() + 600,
        ))
        .await
        .unwrap();

    let sent = Arc::new(Sent::default());
    let admin = Admin::new(Arc::clone(&store)).notifier(Arc::clone(&sent) as _);
    assert_eq!(
        admin.revoke_agent(&provider, &agent, NOW).await.unwrap(),
        4,
        "the parent's person token, its sub-agent's (the one on record without its parent \
         too), and the auth token obtained with it"
    );
    for jti in [&own.jti, &pc.jti, &auth, &legacy] {
        assert!(store.is_revoked(jti, NOW).await.unwrap(), "{jti} revoked");
    }
    let mut told = sent.0.lock().unwrap().clone();
    told.sort();
    let mut expected: Vec<(String, String)> = [&own.jti, &pc.jti, &auth, &legacy]
        .iter()
        .map(|j| ("https://resource.example".to_owned(), (*j).clone()))
        .collect();
    expected.sort();
    assert_eq!(told, expected, "each revoked at its resource");
    // The attack: the parent, still holding a valid agent token, asks again with its
    // sub-agent's person token.
    let (s, json) = sub_auth_token(&w, &subagent, (&person, &pc)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{json}");
    assert!(json["auth_token"].is_null());
}

#[tokio::test]
async fn unlinking_a_parent_revokes_its_sub_agents_tokens_in_memory() {
    unlinking_revokes_the_sub_agents_tokens(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn unlinking_a_parent_revokes_its_sub_agents_tokens_in_sqlite() {
    unlinking_revokes_the_sub_agents_tokens(Arc::new(SqliteStore::in_memory().unwrap())).await;
}

#[tokio::test]
async fn unlinking_a_parent_revokes_its_sub_agents_tokens_in_postgres() {
    let Some(db) = Db::new("unlinking_a_parent_revokes_its_sub_agents_tokens") else {
        return;
    };
    unlinking_revokes_the_sub_agents_tokens(db.store().await).await;
    db.drop_schema().await;
}

/// A person token still unrevoked after its agent was unlinked (one on record from
/// before the parent was kept with it, or an unlinking on another instance at the same
/// moment) obtains nothing: the signer must be linked to the person it names, now.
async fn an_unlinked_parent_obtains_nothing(store: Arc<dyn PsStore>) {
    let w = world_over(Arc::clone(&store), None);
    w.bind(ASSISTANT, "alice").await;
    let subagent = sub_agent_token(&w);
    let (person, pc) = sub_person_token(&w, &subagent).await;
    let (provider, agent) = assistant();
    store.unbind(&provider, &agent).await.unwrap();
    let (s, json) = sub_auth_token(&w, &subagent, (&person, &pc)).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied")),
        "{json}"
    );
    // Linked to someone else since: alice's token is still not the agent's to use.
    w.bind(ASSISTANT, "bob").await;
    let (s, json) = sub_auth_token(&w, &subagent, (&person, &pc)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{json}");
    // Linked to her again: it is.
    w.bind(ASSISTANT, "alice").await;
    let (s, json) = sub_auth_token(&w, &subagent, (&person, &pc)).await;
    assert_eq!(s, StatusCode::OK, "{json}");
}

#[tokio::test]
async fn an_unlinked_parent_obtains_nothing_in_memory() {
    an_unlinked_parent_obtains_nothing(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn an_unlinked_parent_obtains_nothing_in_sqlite() {
    an_unlinked_parent_obtains_nothing(Arc::new(SqliteStore::in_memory().unwrap())).await;
}

#[tokio::test]
async fn an_unlinked_parent_obtains_nothing_in_postgres() {
    let Some(db) = Db::new("an_unlinked_parent_obtains_nothing") else {
        return;
    };
    an_unlinked_parent_obtains_nothing(db.store().await).await;
    db.drop_schema().await;
}

/// alice's mission for the assistant, approved at once: its `s256`.
async fn alices_mission(w: &World) -> String {
    w.bind(ASSISTANT, "alice").await;
    let proposal = serde_json::json!({
        "description": "Plan the offsite.",
        "tools": [{"name": "read", "description": "read availability"}],
        "resources": ["https://resource.example"],
    });
    let (s, json) = w.post(MISSION_PATH, proposal).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    json["s256"].as_str().unwrap().to_owned()
}

/// Unlinking ends the agent's missions for the person (`revoked`): no permission, audit
/// entry or update under them afterwards.
async fn unlinking_ends_the_agents_missions(store: Arc<dyn PsStore>) {
    let w = world_over(Arc::clone(&store), None);
    let m = alices_mission(&w).await;
    let permission = serde_json::json!({"action": "read", "mission_s256": m});
    let (s, json) = w.post_path(PERMISSION_PATH, permission.clone()).await;
    assert_eq!(
        (s, json["permission"].as_str()),
        (StatusCode::OK, Some("granted"))
    );
    let (provider, agent) = assistant();
    Admin::new(Arc::clone(&store))
        .revoke_agent(&provider, &agent, NOW)
        .await
        .unwrap();
    let ended = store.mission(&m).await.unwrap().unwrap();
    assert_eq!(ended.terminated, Some(TerminationReason::Revoked));
    let (s, json) = w.post_path(PERMISSION_PATH, permission).await;
    assert_eq!(
        (
            s,
            json["error"].as_str(),
            json["termination_reason"].as_str()
        ),
        (
            StatusCode::FORBIDDEN,
            Some("mission_terminated"),
            Some("revoked")
        ),
        "{json}"
    );
    let (s, _) = w
        .post_path(
            AUDIT_PATH,
            serde_json::json!({"mission_s256": m, "action": "read"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unlinking_ends_the_agents_missions_in_memory() {
    unlinking_ends_the_agents_missions(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn unlinking_ends_the_agents_missions_in_sqlite() {
    unlinking_ends_the_agents_missions(Arc::new(SqliteStore::in_memory().unwrap())).await;
}

#[tokio::test]
async fn unlinking_ends_the_agents_missions_in_postgres() {
    let Some(db) = Db::new("unlinking_ends_the_agents_missions") else {
        return;
    };
    unlinking_ends_the_agents_missions(db.store().await).await;
    db.drop_schema().await;
}

/// An agent no longer linked to a mission's person (its mission not ended: one beyond
/// what an unlinking reads, or ended before this was done) acts in it no more.
#[tokio::test]
async fn an_unlinked_agent_acts_in_no_mission_of_its_former_person() {
    let w = world_over(Arc::new(MemoryStore::default()), None);
    let m = alices_mission(&w).await;
    let (provider, agent) = assistant();
    w.ps.store().unbind(&provider, &agent).await.unwrap();
    let (s, json) = w
        .post_path(
            PERMISSION_PATH,
            serde_json::json!({"action": "read", "mission_s256": m}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{json}"
    );
    let (s, _) = w
        .post_path(
            AUDIT_PATH,
            serde_json::json!({"mission_s256": m, "action": "read"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, json) = w
        .post_path(
            &format!("{MISSION_PATH}/{m}"),
            serde_json::json!({"action": "update", "description": "Plan it for bob."}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("mission_not_found")),
        "{json}"
    );
    let log = w.ps.store().mission(&m).await.unwrap().unwrap().into_log();
    assert!(
        log.iter()
            .all(|e| e.event != "audit" && e.event != "update"),
        "nothing written to alice's mission: {log:?}"
    );
}

/// The agent, unlinked from alice, asks for a person token under her mission; mallory
/// approves (linking the agent to herself): no token carries alice's mission for her.
#[tokio::test]
async fn a_deferred_person_token_never_carries_another_persons_mission() {
    let w = crate::consent::consenting_world(None).await;
    let m = alices_mission(&w).await;
    let (provider, agent) = assistant();
    w.ps.store().unbind(&provider, &agent).await.unwrap();
    let (s, headers, json) = w
        .post_full(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example", "mission_s256": m, "capabilities": ["interaction"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let location = aauth_test_support::request::header(&headers, "location");
    crate::consent::approve(
        &w,
        &crate::consent::code_of(&headers),
        "mallory",
        "mallory's password",
    )
    .await;
    let (s, _, json) =
        crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert!(json["person_token"].is_null(), "{json}");
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{json}"
    );
    // Ended: a later poll gets nothing either.
    let (s, _, json) =
        crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert!(json["person_token"].is_null(), "{json}");
    assert_ne!(s, StatusCode::OK);
}

/// An Access Server answering with the `jti` of an auth token this Person Server issued
/// (and sent it) is refused: the record of that token stays as it was.
#[tokio::test]
async fn an_access_server_cannot_write_over_a_record_by_its_jti() {
    use crate::federation::{as_token, federated_world, ok, request, scripted};
    let holder: Arc<Mutex<Option<String>>> = Arc::default();
    let h = Arc::clone(&holder);
    let transport = scripted(Box::new(move |_| {
        ok(&serde_json::json!({"auth_token": h.lock().unwrap().clone().unwrap(), "expires_in": 60}))
    }));
    let w = federated_world(transport);
    let (four_party, pc) = request(&w).await;
    // A three-party auth token the PS issued with the same person token: U.
    let rt = w.resource_token(&pc.jti, &pc.sub, |b| b);
    let person = four_party["presented_token"].as_str().unwrap();
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": rt, "presented_token": person}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let u = crate::federation::auth_jti(json["auth_token"].as_str().unwrap());
    let before = w.ps.store().auth_token(&u, NOW).await.unwrap().unwrap();
    // The Access Server's token claims U's jti, with another lifetime.
    *holder.lock().unwrap() = Some(as_token(&w, &pc, |b| {
        b.jti(u.clone())
            .not_after(aauth_keys::time::UnixTime(before.exp - 100))
    }));
    let (s, json) = w.post(AUTH_TOKEN_PATH, four_party).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("as_unreachable")),
        "{json}"
    );
    assert_eq!(
        w.ps.store().auth_token(&u, NOW).await.unwrap(),
        Some(before),
        "U's record as it was"
    );
}
