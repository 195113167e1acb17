//! The in-memory [`PsStore`]: tests, demos, a single process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use aauth_keys::time::UnixTime;
use aauth_tokens::{AgentId, ServerId};
use async_trait::async_trait;

use super::{
    AccountRecord, AuthTokenRecord, Binding, PendingCaps, PendingCreated, PersonTokenRecord,
    PsStore, RECORD_GRACE, StoreError,
};
use crate::audit::{AuditEvent, AuditPage, AuditQuery};
use crate::changes::{ChangeHub, PendingChanges};
use crate::mission::Mission;
use crate::pending::{Pending, WebSession};

/// Expired records are dropped every this many inserts (amortized: a sweep per insert
/// would make issuance quadratic in the records held).
const SWEEP_EVERY: u32 = 512;

#[derive(Debug, Default)]
struct Inner {
    inserts: u32,
    bindings: BTreeMap<(ServerId, AgentId), String>,
    person_tokens: BTreeMap<String, PersonTokenRecord>,
    auth_tokens: BTreeMap<String, AuthTokenRecord>,
    revoked: BTreeMap<String, u64>,
    pending: BTreeMap<String, Pending>,
    /// Interaction code → pending id.
    codes: BTreeMap<String, String>,
    /// Pending ids by expiry, to drop old ones without a scan.
    pending_by_expiry: BTreeSet<(u64, String)>,
    /// Each agent's pending requests by expiry, to count the open ones.
    pending_of_agent: BTreeMap<(ServerId, AgentId), BTreeSet<(u64, String)>>,
    /// Each provider's pending requests (all its agents') by expiry, likewise.
    pending_of_provider: BTreeMap<ServerId, BTreeSet<(u64, String)>>,
    passwords: BTreeMap<String, String>,
    disabled: BTreeSet<String>,
    /// `(issuer, subject)` at an OpenID Provider → account.
    links: BTreeMap<(String, String), String>,
    audit: aauth_metadata::audit::MemoryAuditLog,
    sessions: BTreeMap<String, WebSession>,
    missions: BTreeMap<String, Mission>,
    agent_tokens: BTreeMap<(String, String), (AgentId, u64)>,
    /// Person token `jti` → the Access Servers it was presented to, with its `exp`.
    presentations: BTreeMap<String, (BTreeSet<ServerId>, u64)>,
    /// Token `jti` → the call chain it was issued through, with its `exp`.
    chains: BTreeMap<String, (Vec<ServerId>, u64)>,
}

/// How long a pending request is kept past its expiry (late polls get `408`/`410`).
pub const PENDING_KEPT: u64 = 2 * 3600;

impl Inner {
    /// Drops pending requests that expired before `floor`, in expiry order.
    fn drop_pending_before(&mut self, floor: u64) {
        while let Some((expires, id)) = self.pending_by_expiry.first().cloned() {
            if expires >= floor {
                break;
            }
            self.pending_by_expiry.pop_first();
            if let Some(p) = self.pending.remove(&id) {
                self.codes.remove(&p.code);
                if let Some(set) = self.pending_of_provider.get_mut(&p.agent.0) {
                    set.remove(&(expires, id.clone()));
                    if set.is_empty() {
                        self.pending_of_provider.remove(&p.agent.0);
                    }
                }
                if let Some(set) = self.pending_of_agent.get_mut(&p.agent) {
                    set.remove(&(expires, id));
                    if set.is_empty() {
                        self.pending_of_agent.remove(&p.agent);
                    }
                }
            }
        }
    }

    /// Whether `p` may be stored within `caps` at `now` (what is kept having been swept).
    fn admits(&self, p: &Pending, caps: PendingCaps, now: u64) -> PendingCreated {
        // Unexpired: past `now` (a range from the index, never a scan of the rest).
        let open = |set: Option<&BTreeSet<(u64, String)>>| {
            set.map_or(0, |set| {
                set.range((now.saturating_add(1), String::new())..).count()
            })
        };
        if open(self.pending_of_agent.get(&p.agent)) >= caps.per_agent {
            return PendingCreated::AgentFull;
        }
        if caps
            .per_provider
            .is_some_and(|max| open(self.pending_of_provider.get(&p.agent.0)) >= max)
        {
            return PendingCreated::ProviderFull;
        }
        // After the sweep, every request left is kept: the total's count.
        if caps.total.is_some_and(|max| self.pending.len() >= max) {
            return PendingCreated::Full;
        }
        if self.pending.contains_key(&p.id) || self.codes.contains_key(&p.code) {
            return PendingCreated::Taken;
        }
        PendingCreated::Created
    }

    /// Whether this insert sweeps expired records.
    fn sweep(&mut self) -> bool {
        self.inserts = self.inserts.wrapping_add(1);
        self.inserts.is_multiple_of(SWEEP_EVERY)
    }

    /// Counts an insert of a person or auth token record; on a sweep's turn, drops the
    /// records that expired (with their grace) before `floor`.
    fn sweep_records(&mut self, floor: u64) {
        if self.sweep() {
            self.person_tokens
                .retain(|_, t| t.exp.saturating_add(RECORD_GRACE) > floor);
            self.auth_tokens
                .retain(|_, t| t.exp.saturating_add(RECORD_GRACE) > floor);
        }
    }
}

/// An in-memory [`PsStore`] (tests, demos, a single process).
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    changes: ChangeHub,
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps audit events for `retention` instead of
    /// [`AUDIT_RETENTION`](crate::AUDIT_RETENTION) (90 days).
    #[must_use]
    pub fn audit_retention(self, retention: std::time::Duration) -> Self {
        {
            let mut inner = self.lock();
            let log = std::mem::take(&mut inner.audit);
            inner.audit = log.retention(retention);
        }
        self
    }
}

#[async_trait]
impl PsStore for MemoryStore {
    async fn bind(
        &self,
        provider: &ServerId,
        agent: &AgentId,
        account: &str,
    ) -> Result<(), StoreError> {
        self.lock()
            .bindings
            .insert((provider.clone(), agent.clone()), account.to_owned());
        Ok(())
    }

    async fn bind_if_unbound(
        &self,
        provider: &ServerId,
        agent: &AgentId,
        account: &str,
    ) -> Result<String, StoreError> {
        Ok(self
            .lock()
            .bindings
            .entry((provider.clone(), agent.clone()))
            .or_insert_with(|| account.to_owned())
            .clone())
    }

    async fn binding(
        &self,
        provider: &ServerId,
        agent: &AgentId,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()
            .bindings
            .get(&(provider.clone(), agent.clone()))
            .cloned())
    }

    async fn record_person_token(&self, r: PersonTokenRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let now_floor = r
            .exp
            .saturating_sub(aauth_tokens::PERSON_TOKEN_MAX_LIFETIME);
        inner.sweep_records(now_floor);
        inner.person_tokens.insert(r.jti.clone(), r);
        Ok(())
    }

    async fn person_token(
        &self,
        jti: &str,
        now: UnixTime,
    ) -> Result<Option<PersonTokenRecord>, StoreError> {
        Ok(self
            .lock()
            .person_tokens
            .get(jti)
            .filter(|t| t.exp.saturating_add(RECORD_GRACE) > now.as_secs())
            .cloned())
    }

    async fn record_auth_token(&self, r: AuthTokenRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let now_floor = r.exp.saturating_sub(aauth_tokens::AUTH_TOKEN_MAX_LIFETIME);
        inner.sweep_records(now_floor);
        inner.auth_tokens.insert(r.jti.clone(), r);
        Ok(())
    }

    async fn auth_token(
        &self,
        jti: &str,
        now: UnixTime,
    ) -> Result<Option<AuthTokenRecord>, StoreError> {
        Ok(self
            .lock()
            .auth_tokens
            .get(jti)
            .filter(|t| t.exp.saturating_add(RECORD_GRACE) > now.as_secs())
            .cloned())
    }

    async fn revoke(&self, jti: &str, exp: u64, now: UnixTime) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.sweep() {
            let now = now.as_secs();
            inner
                .revoked
                .retain(|_, e| e.saturating_add(RECORD_GRACE) > now);
        }
        let entry = inner.revoked.entry(jti.to_owned()).or_insert(exp);
        *entry = (*entry).max(exp);
        Ok(())
    }

    async fn is_revoked(&self, jti: &str, now: UnixTime) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .revoked
            .get(jti)
            .is_some_and(|exp| exp.saturating_add(RECORD_GRACE) > now.as_secs()))
    }

    async fn create_pending(
        &self,
        mut p: Pending,
        caps: PendingCaps,
        now: UnixTime,
    ) -> Result<PendingCreated, StoreError> {
        let mut inner = self.lock();
        inner.drop_pending_before(now.as_secs().saturating_sub(PENDING_KEPT));
        let created = inner.admits(&p, caps, now.as_secs());
        if created != PendingCreated::Created {
            return Ok(created);
        }
        p.version = 0;
        inner.codes.insert(p.code.clone(), p.id.clone());
        inner.pending_by_expiry.insert((p.expires, p.id.clone()));
        inner
            .pending_of_provider
            .entry(p.agent.0.clone())
            .or_default()
            .insert((p.expires, p.id.clone()));
        inner
            .pending_of_agent
            .entry(p.agent.clone())
            .or_default()
            .insert((p.expires, p.id.clone()));
        inner.pending.insert(p.id.clone(), p);
        Ok(PendingCreated::Created)
    }

    async fn update_pending(&self, p: &mut Pending) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(stored) = inner.pending.get_mut(&p.id) else {
            return Ok(false);
        };
        if stored.version != p.version || stored.code != p.code || stored.expires != p.expires {
            // Another writer was first (or the caller changed what indexes it: refused).
            return Ok(false);
        }
        p.version = p.version.wrapping_add(1);
        *stored = p.clone();
        drop(inner);
        self.changes.notify(&p.id);
        Ok(true)
    }

    fn pending_changes(&self, id: &str) -> PendingChanges {
        self.changes.subscribe(id)
    }

    async fn pending(&self, id: &str) -> Result<Option<Pending>, StoreError> {
        Ok(self.lock().pending.get(id).cloned())
    }

    async fn pending_by_code(&self, code: &str) -> Result<Option<Pending>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .codes
            .get(code)
            .and_then(|id| inner.pending.get(id))
            .cloned())
    }

    async fn pending_of_agent(
        &self,
        provider: &ServerId,
        agent: &AgentId,
    ) -> Result<Vec<Pending>, StoreError> {
        let inner = self.lock();
        let Some(ids) = inner
            .pending_of_agent
            .get(&(provider.clone(), agent.clone()))
        else {
            return Ok(Vec::new());
        };
        Ok(ids
            .iter()
            .rev()
            .filter_map(|(_, id)| inner.pending.get(id))
            .take(super::MAX_PENDING_LISTED)
            .cloned()
            .collect())
    }

    async fn set_password_hash(&self, account: &str, phc: &str) -> Result<(), StoreError> {
        self.lock()
            .passwords
            .insert(account.to_owned(), phc.to_owned());
        Ok(())
    }

    async fn password_hash(&self, account: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().passwords.get(account).cloned())
    }

    async fn put_session(&self, key: &str, s: WebSession) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let floor = s.expires.saturating_sub(24 * 3600);
        inner.sessions.retain(|_, t| t.expires > floor);
        inner.sessions.insert(key.to_owned(), s);
        Ok(())
    }

    async fn count_bad_code(&self, key: &str, now: UnixTime) -> Result<(), StoreError> {
        if let Some(s) = self
            .lock()
            .sessions
            .get_mut(key)
            .filter(|s| s.expires > now.as_secs())
        {
            s.bad_codes = s.bad_codes.saturating_add(1);
        }
        Ok(())
    }

    async fn session(&self, key: &str, now: UnixTime) -> Result<Option<WebSession>, StoreError> {
        Ok(self
            .lock()
            .sessions
            .get(key)
            .filter(|s| s.expires > now.as_secs())
            .cloned())
    }

    async fn record_agent_token(
        &self,
        iss: &ServerId,
        jti: &str,
        agent: &AgentId,
        exp: u64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.sweep() {
            let floor = exp.saturating_sub(aauth_tokens::AGENT_TOKEN_MAX_LIFETIME);
            inner
                .agent_tokens
                .retain(|_, (_, e)| e.saturating_add(RECORD_GRACE) > floor);
        }
        inner.agent_tokens.insert(
            (iss.as_str().to_owned(), jti.to_owned()),
            (agent.clone(), exp),
        );
        Ok(())
    }

    async fn agent_of_token(
        &self,
        iss: &ServerId,
        jti: &str,
    ) -> Result<Option<AgentId>, StoreError> {
        Ok(self
            .lock()
            .agent_tokens
            .get(&(iss.as_str().to_owned(), jti.to_owned()))
            .map(|(a, _)| a.clone()))
    }

    async fn record_presentation(
        &self,
        jti: &str,
        access_server: &ServerId,
        exp: u64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.sweep() {
            let floor = exp.saturating_sub(aauth_tokens::PERSON_TOKEN_MAX_LIFETIME);
            inner
                .presentations
                .retain(|_, (_, e)| e.saturating_add(RECORD_GRACE) > floor);
        }
        let entry = inner
            .presentations
            .entry(jti.to_owned())
            .or_insert_with(|| (BTreeSet::new(), exp));
        entry.0.insert(access_server.clone());
        Ok(())
    }

    async fn presentations(&self, jti: &str) -> Result<Vec<ServerId>, StoreError> {
        Ok(self
            .lock()
            .presentations
            .get(jti)
            .map(|(s, _)| s.iter().cloned().collect())
            .unwrap_or_default()) // default: never presented to an Access Server
    }

    async fn record_chain(
        &self,
        jti: &str,
        chain: &[ServerId],
        exp: u64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.sweep() {
            let floor = exp.saturating_sub(aauth_tokens::PERSON_TOKEN_MAX_LIFETIME);
            inner
                .chains
                .retain(|_, (_, e)| e.saturating_add(RECORD_GRACE) > floor);
        }
        inner.chains.insert(jti.to_owned(), (chain.to_vec(), exp));
        Ok(())
    }

    async fn chain(&self, jti: &str) -> Result<Vec<ServerId>, StoreError> {
        Ok(self
            .lock()
            .chains
            .get(jti)
            .map(|(c, _)| c.clone())
            .unwrap_or_default()) // default: a token issued without a chain
    }

    async fn tokens_of_agent(
        &self,
        provider: &ServerId,
        agent: &AgentId,
    ) -> Result<Vec<(String, ServerId, u64)>, StoreError> {
        let inner = self.lock();
        let mut out: Vec<(String, ServerId, u64)> = inner
            .person_tokens
            .values()
            .filter(|t| {
                t.agent.0 == *provider
                    && (t.agent.1 == *agent
                        || t.parent.as_ref() == Some(agent)
                        // Its sub-agents' records from before their parent was kept: by name.
                        || (t.parent.is_none() && t.agent.1.is_named_subagent_of(agent)))
            })
            .map(|t| (t.jti.clone(), t.aud.clone(), t.exp))
            .collect();
        // Auth tokens chain through presented_jti (step-ups present auth tokens).
        let mut frontier: Vec<String> = out.iter().map(|(j, _, _)| j.clone()).collect();
        while !frontier.is_empty() {
            let next: Vec<(String, ServerId, u64)> = inner
                .auth_tokens
                .values()
                .filter(|a| {
                    frontier.contains(&a.presented_jti) && !out.iter().any(|(j, _, _)| *j == a.jti)
                })
                .map(|a| (a.jti.clone(), a.aud.clone(), a.exp))
                .collect();
            frontier = next.iter().map(|(j, _, _)| j.clone()).collect();
            out.extend(next);
        }
        Ok(out)
    }

    async fn put_mission(&self, m: Mission) -> Result<(), StoreError> {
        let mut inner = self.lock();
        // A terminated mission is final.
        if inner
            .missions
            .get(&m.s256)
            .is_none_or(|stored| stored.terminated.is_none())
        {
            inner.missions.insert(m.s256.clone(), m);
        }
        Ok(())
    }

    async fn replace_mission(&self, m: &Mission) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(stored) = inner.missions.get_mut(&m.s256) else {
            return Ok(false);
        };
        if stored.version != m.version || stored.terminated.is_some() {
            return Ok(false);
        }
        *stored = m.clone();
        stored.version = m.version.saturating_add(1);
        Ok(true)
    }

    async fn mission(&self, s256: &str) -> Result<Option<Mission>, StoreError> {
        Ok(self.lock().missions.get(s256).cloned())
    }

    async fn missions_of(&self, account: &str) -> Result<Vec<Mission>, StoreError> {
        Ok(self
            .lock()
            .missions
            .values()
            .filter(|m| m.account == account)
            .take(super::MAX_MISSIONS_LISTED)
            .cloned()
            .collect())
    }

    async fn owned_mission(
        &self,
        s256: &str,
        owner: &(ServerId, AgentId),
    ) -> Result<Option<Mission>, StoreError> {
        // Compared before anything is copied: another agent's mission costs what a
        // missing one does.
        Ok(self
            .lock()
            .missions
            .get(s256)
            .filter(|m| m.agent == *owner)
            .cloned())
    }

    async fn create_account(&self, account: &str, phc: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner.passwords.contains_key(account) {
            return Ok(false);
        }
        inner.passwords.insert(account.to_owned(), phc.to_owned());
        inner.disabled.remove(account);
        Ok(true)
    }

    async fn set_account_disabled(
        &self,
        account: &str,
        disabled: bool,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if !inner.passwords.contains_key(account) {
            return Ok(false);
        }
        if disabled {
            inner.disabled.insert(account.to_owned());
        } else {
            inner.disabled.remove(account);
        }
        Ok(true)
    }

    async fn account_disabled(&self, account: &str) -> Result<bool, StoreError> {
        Ok(self.lock().disabled.contains(account))
    }

    async fn linked_account(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()
            .links
            .get(&(issuer.to_owned(), subject.to_owned()))
            .cloned())
    }

    async fn link_account(
        &self,
        issuer: &str,
        subject: &str,
        account: &str,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let key = (issuer.to_owned(), subject.to_owned());
        if inner.links.contains_key(&key) {
            return Ok(false);
        }
        inner.links.insert(key, account.to_owned());
        Ok(true)
    }

    async fn accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .passwords
            .keys()
            .map(|name| AccountRecord {
                name: name.clone(),
                disabled: inner.disabled.contains(name),
            })
            .collect())
    }

    async fn drop_sessions(&self, account: &str) -> Result<(), StoreError> {
        self.lock().sessions.retain(|_, s| s.account != account);
        Ok(())
    }

    async fn bindings(&self, account: Option<&str>) -> Result<Vec<Binding>, StoreError> {
        Ok(self
            .lock()
            .bindings
            .iter()
            .filter(|(_, a)| account.is_none_or(|want| want == a.as_str()))
            .map(|((provider, agent), a)| Binding {
                provider: provider.clone(),
                agent: agent.clone(),
                account: a.clone(),
            })
            .collect())
    }

    async fn unbind(&self, provider: &ServerId, agent: &AgentId) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .bindings
            .remove(&(provider.clone(), agent.clone()))
            .is_some())
    }

    async fn issued_records(
        &self,
        account: Option<&str>,
        now: UnixTime,
    ) -> Result<(Vec<PersonTokenRecord>, Vec<AuthTokenRecord>), StoreError> {
        let inner = self.lock();
        let kept = |exp: u64| exp.saturating_add(RECORD_GRACE) > now.as_secs();
        let mine = |a: &str| account.is_none_or(|want| want == a);
        let mut person: Vec<PersonTokenRecord> = inner
            .person_tokens
            .values()
            .filter(|r| kept(r.exp) && mine(&r.account))
            .cloned()
            .collect();
        let mut auth: Vec<AuthTokenRecord> = inner
            .auth_tokens
            .values()
            .filter(|r| kept(r.exp) && mine(&r.account))
            .cloned()
            .collect();
        person.sort_by_key(|r| r.exp);
        auth.sort_by_key(|r| r.exp);
        Ok((person, auth))
    }

    async fn record_event(&self, e: AuditEvent) -> Result<(), StoreError> {
        self.lock().audit.record(e);
        Ok(())
    }

    async fn audit(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        Ok(self.lock().audit.query(q))
    }
}
