//! A store that lets a test land another writer's change at a chosen moment
//! ([`Hooked`]): here, when an agent is bound, that agent's requests are written once
//! more, as the agent updating its request at that same moment would (the approval's
//! compare-and-set then fails); and, when asked, lookups by code that yield as a store
//! over the network does, counted. Everything else is the inner store's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aauth_keys::time::UnixTime;
use aauth_person_server::{
    AccountRecord, AuditEvent, AuditPage, AuditQuery, AuthTokenRecord, Binding, Issuance,
    IssuedToken, Mission, Pending, PendingCaps, PendingChanges, PendingCreated, PersonTokenRecord,
    PsStore, Standing, StoreError, WebSession,
};
use aauth_tokens::{AgentId, ServerId};
use async_trait::async_trait;

/// What a [`Hooked`] store does at the moments a test chooses, besides its inner store's
/// own work. Each does nothing unless a test says otherwise.
#[async_trait]
pub(crate) trait Hooks: Send + Sync {
    /// Just after the inner store bound `agent` (`bind` or `bind_if_unbound`).
    async fn bound(
        &self,
        _inner: &Arc<dyn PsStore>,
        _provider: &ServerId,
        _agent: &AgentId,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// Just before a lookup by code.
    async fn looking_up_code(&self) {}

    /// Just before the inner store records `issuance`.
    async fn recording(&self, _inner: &Arc<dyn PsStore>, _issuance: &Issuance) {}
}

/// A store that is `inner` in everything (each of its own implementations, the trait's
/// defaulted ones too), with `hooks` run at their moments.
pub(crate) struct Hooked<H> {
    pub(crate) inner: Arc<dyn PsStore>,
    pub(crate) hooks: H,
}

/// The hooks whose next binding of an agent (once, while `armed`) is followed at once by
/// another write of each of that agent's requests.
pub(crate) struct ChangedOnBind {
    pub(crate) armed: AtomicBool,
    /// Whether a lookup by code yields to the runtime first, as a store over the network
    /// does (requests in flight at once then interleave at their lookups).
    pub(crate) slow_lookups: AtomicBool,
    /// How many lookups by code were made.
    pub(crate) lookups: AtomicUsize,
}

impl ChangedOnBind {
    /// Over `inner`, armed or not; lookups at full speed.
    pub(crate) fn over(inner: Arc<dyn PsStore>, armed: bool) -> Hooked<Self> {
        Hooked {
            inner,
            hooks: Self {
                armed: AtomicBool::new(armed),
                slow_lookups: AtomicBool::new(false),
                lookups: AtomicUsize::new(0),
            },
        }
    }
}

#[async_trait]
impl Hooks for ChangedOnBind {
    /// Writes each of the agent's requests again (a new version, nothing else changed),
    /// if armed; disarms.
    async fn bound(
        &self,
        inner: &Arc<dyn PsStore>,
        provider: &ServerId,
        agent: &AgentId,
    ) -> Result<(), StoreError> {
        if !self.armed.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        for mut p in inner.pending_of_agent(provider, agent).await? {
            assert!(inner.update_pending(&mut p).await?, "the change lands");
        }
        Ok(())
    }

    async fn looking_up_code(&self) {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if self.slow_lookups.load(Ordering::SeqCst) {
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
        }
    }
}

#[async_trait]
impl<H: Hooks> PsStore for Hooked<H> {
    async fn bind(
        &self,
        provider: &ServerId,
        agent: &AgentId,
        account: &str,
    ) -> Result<(), StoreError> {
        self.inner.bind(provider, agent, account).await?;
        self.hooks.bound(&self.inner, provider, agent).await
    }
    async fn bind_if_unbound(
        &self,
        provider: &ServerId,
        agent: &AgentId,
        account: &str,
    ) -> Result<String, StoreError> {
        let bound = self.inner.bind_if_unbound(provider, agent, account).await?;
        self.hooks.bound(&self.inner, provider, agent).await?;
        Ok(bound)
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
        self.hooks.looking_up_code().await;
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
    async fn record_issuance(&self, issuance: Issuance) -> Result<(), StoreError> {
        self.hooks.recording(&self.inner, &issuance).await;
        self.inner.record_issuance(issuance).await
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
    async fn issued(
        &self,
        jti: &str,
        person: bool,
        now: UnixTime,
    ) -> Result<IssuedToken, StoreError> {
        self.inner.issued(jti, person, now).await
    }
    async fn standing(
        &self,
        resource_token_key: &str,
        jti: &str,
        person: bool,
        now: UnixTime,
    ) -> Result<Standing, StoreError> {
        self.inner
            .standing(resource_token_key, jti, person, now)
            .await
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
