//! The operator disables an account while a token is issued in its name: the issuance
//! passed its check of the account, and the disabling (mark, then read the records to
//! revoke) runs to its end before the token is recorded. The token is never delivered,
//! and it is revoked, in every store.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use aauth_keys::time::UnixTime;
use aauth_person_server::{
    AccountRecord, Admin, AuditAction, AuditEvent, AuditPage, AuditQuery, AuthTokenRecord, Binding,
    Issuance, MemoryStore, Mission, PERSON_TOKEN_PATH, Pending, PendingCaps, PendingChanges,
    PendingCreated, PersonTokenRecord, PsStore, SqliteStore, StoreError, TokenRecord, WebSession,
};
use aauth_tokens::{AgentId, PersonClaims, ServerId};
use async_trait::async_trait;
use http::StatusCode;

use crate::{AUTH_TOKEN_PATH, NOW, world_over};

/// A store whose next issuance (while `armed`) waits for the operator to disable the
/// account it is in the name of, and only then is recorded: the interleaving the race
/// takes. Everything else is `inner`'s.
struct DisabledBeforeRecord {
    inner: Arc<dyn PsStore>,
    armed: AtomicBool,
    /// How many tokens the disabling revoked, once it ran.
    revoked: Mutex<Option<usize>>,
}

impl DisabledBeforeRecord {
    fn new(inner: Arc<dyn PsStore>) -> Self {
        Self {
            inner,
            armed: AtomicBool::new(false),
            revoked: Mutex::new(None),
        }
    }
}

#[async_trait]
impl PsStore for DisabledBeforeRecord {
    async fn record_issuance(&self, issuance: Issuance) -> Result<(), StoreError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            let account = match &issuance.token {
                TokenRecord::Person(r) => r.account.clone(),
                TokenRecord::Auth(r) => r.account.clone(),
                _ => panic!("a token record of a kind this test does not know"),
            };
            let revoked = Admin::new(Arc::clone(&self.inner))
                .set_disabled(&account, true, NOW)
                .await
                .unwrap();
            *self.revoked.lock().unwrap() = Some(revoked);
        }
        self.inner.record_issuance(issuance).await
    }
    async fn bind(
        &self,
        provider: &ServerId,
        agent: &AgentId,
        account: &str,
    ) -> Result<(), StoreError> {
        self.inner.bind(provider, agent, account).await
    }
    async fn bind_if_unbound(
        &self,
        provider: &ServerId,
        agent: &AgentId,
        account: &str,
    ) -> Result<String, StoreError> {
        self.inner.bind_if_unbound(provider, agent, account).await
    }
    async fn binding(
        &self,
        provider: &ServerId,
        agent: &AgentId,
    ) -> Result<Option<String>, StoreError> {
        self.inner.binding(provider, agent).await
    }
    async fn record_person_token(&self, r: PersonTokenRecord) -> Result<(), StoreError> {
        self.inner.record_person_token(r).await
    }
    async fn person_token(
        &self,
        jti: &str,
        now: UnixTime,
    ) -> Result<Option<PersonTokenRecord>, StoreError> {
        self.inner.person_token(jti, now).await
    }
    async fn record_auth_token(&self, r: AuthTokenRecord) -> Result<(), StoreError> {
        self.inner.record_auth_token(r).await
    }
    async fn auth_token(
        &self,
        jti: &str,
        now: UnixTime,
    ) -> Result<Option<AuthTokenRecord>, StoreError> {
        self.inner.auth_token(jti, now).await
    }
    async fn revoke(&self, jti: &str, exp: u64, now: UnixTime) -> Result<(), StoreError> {
        self.inner.revoke(jti, exp, now).await
    }
    async fn is_revoked(&self, jti: &str, now: UnixTime) -> Result<bool, StoreError> {
        self.inner.is_revoked(jti, now).await
    }
    async fn create_pending(
        &self,
        p: Pending,
        caps: PendingCaps,
        now: UnixTime,
    ) -> Result<PendingCreated, StoreError> {
        self.inner.create_pending(p, caps, now).await
    }
    async fn update_pending(&self, p: &mut Pending) -> Result<bool, StoreError> {
        self.inner.update_pending(p).await
    }
    async fn pending(&self, id: &str) -> Result<Option<Pending>, StoreError> {
        self.inner.pending(id).await
    }
    fn pending_changes(&self, id: &str) -> PendingChanges {
        self.inner.pending_changes(id)
    }
    async fn pending_by_code(&self, code: &str) -> Result<Option<Pending>, StoreError> {
        self.inner.pending_by_code(code).await
    }
    async fn pending_of_agent(
        &self,
        provider: &ServerId,
        agent: &AgentId,
    ) -> Result<Vec<Pending>, StoreError> {
        self.inner.pending_of_agent(provider, agent).await
    }
    async fn set_password_hash(&self, account: &str, phc: &str) -> Result<(), StoreError> {
        self.inner.set_password_hash(account, phc).await
    }
    async fn password_hash(&self, account: &str) -> Result<Option<String>, StoreError> {
        self.inner.password_hash(account).await
    }
    async fn put_session(&self, key: &str, s: WebSession) -> Result<(), StoreError> {
        self.inner.put_session(key, s).await
    }
    async fn session(&self, key: &str, now: UnixTime) -> Result<Option<WebSession>, StoreError> {
        self.inner.session(key, now).await
    }
    async fn count_bad_code(&self, key: &str, now: UnixTime) -> Result<(), StoreError> {
        self.inner.count_bad_code(key, now).await
    }
    async fn record_agent_token(
        &self,
        iss: &ServerId,
        jti: &str,
        agent: &AgentId,
        exp: u64,
    ) -> Result<(), StoreError> {
        self.inner.record_agent_token(iss, jti, agent, exp).await
    }
    async fn agent_of_token(
        &self,
        iss: &ServerId,
        jti: &str,
    ) -> Result<Option<AgentId>, StoreError> {
        self.inner.agent_of_token(iss, jti).await
    }
    async fn see_agent_token(
        &self,
        token: (&ServerId, &str),
        agent: &AgentId,
        exp: u64,
        revoked_key: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        self.inner
            .see_agent_token(token, agent, exp, revoked_key, now)
            .await
    }
    async fn standing(
        &self,
        resource_token_key: &str,
        jti: &str,
        person: bool,
        now: UnixTime,
    ) -> Result<aauth_person_server::Standing, StoreError> {
        self.inner
            .standing(resource_token_key, jti, person, now)
            .await
    }
    async fn record_presentation(
        &self,
        jti: &str,
        access_server: &ServerId,
        exp: u64,
    ) -> Result<(), StoreError> {
        self.inner
            .record_presentation(jti, access_server, exp)
            .await
    }
    async fn presentations(&self, jti: &str) -> Result<Vec<ServerId>, StoreError> {
        self.inner.presentations(jti).await
    }
    async fn record_chain(
        &self,
        jti: &str,
        chain: &[ServerId],
        exp: u64,
    ) -> Result<(), StoreError> {
        self.inner.record_chain(jti, chain, exp).await
    }
    async fn chain(&self, jti: &str) -> Result<Vec<ServerId>, StoreError> {
        self.inner.chain(jti).await
    }
    async fn tokens_of_agent(
        &self,
        provider: &ServerId,
        agent: &AgentId,
    ) -> Result<Vec<(String, ServerId, u64)>, StoreError> {
        self.inner.tokens_of_agent(provider, agent).await
    }
    async fn put_mission(&self, m: Mission) -> Result<(), StoreError> {
        self.inner.put_mission(m).await
    }
    async fn replace_mission(&self, m: &Mission) -> Result<bool, StoreError> {
        self.inner.replace_mission(m).await
    }
    async fn mission(&self, s256: &str) -> Result<Option<Mission>, StoreError> {
        self.inner.mission(s256).await
    }
    async fn missions_of(&self, account: &str) -> Result<Vec<Mission>, StoreError> {
        self.inner.missions_of(account).await
    }
    async fn owned_mission(
        &self,
        s256: &str,
        owner: &(ServerId, AgentId),
    ) -> Result<Option<Mission>, StoreError> {
        self.inner.owned_mission(s256, owner).await
    }
    async fn create_account(&self, account: &str, phc: &str) -> Result<bool, StoreError> {
        self.inner.create_account(account, phc).await
    }
    async fn set_account_disabled(
        &self,
        account: &str,
        disabled: bool,
    ) -> Result<bool, StoreError> {
        self.inner.set_account_disabled(account, disabled).await
    }
    async fn account_disabled(&self, account: &str) -> Result<bool, StoreError> {
        self.inner.account_disabled(account).await
    }
    async fn accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        self.inner.accounts().await
    }
    async fn linked_account(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        self.inner.linked_account(issuer, subject).await
    }
    async fn link_account(
        &self,
        issuer: &str,
        subject: &str,
        account: &str,
    ) -> Result<bool, StoreError> {
        self.inner.link_account(issuer, subject, account).await
    }
    async fn drop_sessions(&self, account: &str) -> Result<(), StoreError> {
        self.inner.drop_sessions(account).await
    }
    async fn bindings(&self, account: Option<&str>) -> Result<Vec<Binding>, StoreError> {
        self.inner.bindings(account).await
    }
    async fn unbind(&self, provider: &ServerId, agent: &AgentId) -> Result<bool, StoreError> {
        self.inner.unbind(provider, agent).await
    }
    async fn issued_records(
        &self,
        account: Option<&str>,
        now: UnixTime,
    ) -> Result<(Vec<PersonTokenRecord>, Vec<AuthTokenRecord>), StoreError> {
        self.inner.issued_records(account, now).await
    }
    async fn record_event(&self, e: AuditEvent) -> Result<(), StoreError> {
        self.inner.record_event(e).await
    }
    async fn audit(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.inner.audit(q).await
    }
}

/// A person token, then an auth token, each checked against alice's account just before
/// the operator disables it and recorded just after the disabling read her records: each
/// request is refused (`403 denied`), its token revoked and the revocation audited.
async fn issued_as_the_account_is_disabled(store: Arc<dyn PsStore>) {
    let hook = Arc::new(DisabledBeforeRecord::new(Arc::clone(&store)));
    let w = world_over(Arc::clone(&hook) as Arc<dyn PsStore>, None);
    let admin = Admin::new(Arc::clone(&store));
    assert!(store.create_account("alice", "$phc").await.unwrap());
    w.bind("aauth:assistant@agent.example", "alice").await;
    let resource = "https://resource.example";
    let refused = |s: StatusCode, json: &serde_json::Value, what: &str| {
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("denied")),
            "{what}: {json}"
        );
        assert!(json.get("person_token").is_none() && json.get("auth_token").is_none());
    };

    hook.armed.store(true, Ordering::SeqCst);
    let (s, json) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({ "resource": resource }),
        )
        .await;
    refused(s, &json, "person token");
    assert_eq!(
        *hook.revoked.lock().unwrap(),
        Some(0),
        "the disabling found nothing on record"
    );
    let tokens = admin.tokens(Some("alice"), NOW).await.unwrap();
    assert_eq!(tokens.person.len(), 1, "{tokens:?}");
    assert!(tokens.person[0].1, "revoked: {tokens:?}");

    // Enabled again, a person token; then an auth token races the next disabling.
    admin.set_disabled("alice", false, NOW).await.unwrap();
    let person = w.person_token(resource).await;
    let pc: PersonClaims = w.read(&person, resource);
    let rt = w.resource_token(&pc.jti, &pc.sub, |b| b);
    hook.armed.store(true, Ordering::SeqCst);
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({ "resource_token": rt, "presented_token": person }),
        )
        .await;
    refused(s, &json, "auth token");
    assert_eq!(
        *hook.revoked.lock().unwrap(),
        Some(2),
        "the disabling revoked both person tokens, not the auth token, not yet on record"
    );
    let tokens = admin.tokens(Some("alice"), NOW).await.unwrap();
    assert_eq!(tokens.auth.len(), 1, "{tokens:?}");
    assert!(tokens.auth[0].1, "revoked: {tokens:?}");

    let revoked: Vec<String> = admin
        .audit(&AuditQuery::default().action(AuditAction::Revoked))
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.detail)
        .filter(|d| d.ends_with("revoked: the account was disabled as it was issued"))
        .collect();
    assert_eq!(revoked.len(), 2, "{revoked:?}");
    assert!(
        revoked.iter().any(|d| d.starts_with("auth token ")),
        "{revoked:?}"
    );
    assert!(
        revoked.iter().any(|d| d.starts_with("person token ")),
        "{revoked:?}"
    );
}

#[tokio::test]
async fn an_issuance_racing_the_disabling_of_its_account_is_revoked_in_memory() {
    issued_as_the_account_is_disabled(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn an_issuance_racing_the_disabling_of_its_account_is_revoked_in_sqlite() {
    issued_as_the_account_is_disabled(Arc::new(SqliteStore::in_memory().unwrap())).await;
}

#[tokio::test]
async fn an_issuance_racing_the_disabling_of_its_account_is_revoked_in_postgres() {
    let Some(db) = crate::postgres::Db::new("issuance_racing_the_disabling") else {
        return;
    };
    issued_as_the_account_is_disabled(db.store().await).await;
    db.drop_schema().await;
}
