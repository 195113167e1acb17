//! What a Person Server keeps, behind one trait ([`PsStore`]): agent–person bindings,
//! issuance records and revocations, pending requests (with their change notifications),
//! sessions and password hashes, missions, call chains. [`MemoryStore`] here for a single
//! process and tests; the embedded SQLite store (`SqliteStore`, feature `sqlite`) in
//! `sqlite/`.

use crate::changes::{ChangeHub, PendingChanges};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use aauth_keys::time::UnixTime;

use crate::audit::{AuditEvent, AuditPage, AuditQuery};
use crate::mission::Mission;
use crate::pending::{Pending, WebSession};
use aauth_tokens::{AgentId, ServerId};
use async_trait::async_trait;

/// An issued person token, kept until `exp` plus skew (PS-13).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PersonTokenRecord {
    /// Its `jti`.
    pub jti: String,
    /// The resource (`aud`).
    pub aud: ServerId,
    /// The directed `sub`.
    pub sub: String,
    /// The person's account at this Person Server.
    pub account: String,
    /// The agent it was issued to: (provider, agent).
    pub agent: (ServerId, AgentId),
    /// The mission, if any.
    pub mission_s256: Option<String>,
    /// Expiry.
    pub exp: u64,
}

impl PersonTokenRecord {
    /// A record of a person token (no mission).
    #[must_use]
    pub fn new(
        jti: impl Into<String>,
        aud: ServerId,
        sub: impl Into<String>,
        account: impl Into<String>,
        agent: (ServerId, AgentId),
        exp: u64,
    ) -> Self {
        Self {
            jti: jti.into(),
            aud,
            sub: sub.into(),
            account: account.into(),
            agent,
            mission_s256: None,
            exp,
        }
    }
}

/// A token this server issued, as it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRecord {
    /// A person token.
    Person(PersonTokenRecord),
    /// An auth token.
    Auth(AuthTokenRecord),
}

impl TokenRecord {
    /// The token's `jti`.
    #[must_use]
    pub fn jti(&self) -> &str {
        match self {
            Self::Person(r) => &r.jti,
            Self::Auth(r) => &r.jti,
        }
    }

    /// When it expires.
    #[must_use]
    pub fn exp(&self) -> u64 {
        match self {
            Self::Person(r) => r.exp,
            Self::Auth(r) => r.exp,
        }
    }
}

/// What one issuance writes: the token's record, the call chain it was issued through
/// (empty outside call chaining) and its audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Issuance {
    /// The token's record.
    pub token: TokenRecord,
    /// The intermediaries, first to last (see [`PsStore::record_chain`]).
    pub chain: Vec<ServerId>,
    /// Its `issued` audit event.
    pub event: AuditEvent,
}

impl Issuance {
    /// The issuance of `token`, through `chain`, logged as `event`.
    #[must_use]
    pub fn new(token: TokenRecord, chain: Vec<ServerId>, event: AuditEvent) -> Self {
        Self {
            token,
            chain,
            event,
        }
    }
}

/// An issued auth token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthTokenRecord {
    /// Its `jti`.
    pub jti: String,
    /// The resource (`aud`).
    pub aud: ServerId,
    /// The directed `sub`.
    pub sub: String,
    /// The person's account.
    pub account: String,
    /// The `jti` of the token presented to obtain it.
    pub presented_jti: String,
    /// Expiry.
    pub exp: u64,
}

impl AuthTokenRecord {
    /// A record of an auth token.
    #[must_use]
    pub fn new(
        jti: impl Into<String>,
        aud: ServerId,
        sub: impl Into<String>,
        account: impl Into<String>,
        presented_jti: impl Into<String>,
        exp: u64,
    ) -> Self {
        Self {
            jti: jti.into(),
            aud,
            sub: sub.into(),
            account: account.into(),
            presented_jti: presented_jti.into(),
            exp,
        }
    }
}

/// What this Person Server knows of a person or auth token it issued ([`PsStore::issued`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssuedToken {
    /// Revoked.
    Revoked,
    /// Not on record (never issued here, or its record expired).
    Unknown,
    /// On record: its resource, directed `sub` and the person's account.
    Known {
        /// Its `aud`.
        aud: ServerId,
        /// Its `sub`.
        sub: String,
        /// The person's account.
        account: String,
    },
}

/// The answers of [`PsStore::standing`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Standing {
    /// Whether the resource token was revoked.
    pub resource_token_revoked: bool,
    /// The presented token's record.
    pub presented: IssuedToken,
    /// Whether the account of that record is disabled (`false` when there is no record).
    pub account_disabled: bool,
}

impl Standing {
    /// The answers, as a store reads them.
    #[must_use]
    pub fn new(
        resource_token_revoked: bool,
        presented: IssuedToken,
        account_disabled: bool,
    ) -> Self {
        Self {
            resource_token_revoked,
            presented,
            account_disabled,
        }
    }
}

pub use aauth_metadata::store::StoreError;

/// Everything the Person Server keeps. Implementations must be safe to share.
#[async_trait]
pub trait PsStore: Send + Sync {
    /// Binds an agent (its provider and identifier) to a person's account.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn bind(
        &self,
        provider: &ServerId,
        agent: &AgentId,
        account: &str,
    ) -> Result<(), StoreError>;

    /// The account an agent is bound to.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn binding(
        &self,
        provider: &ServerId,
        agent: &AgentId,
    ) -> Result<Option<String>, StoreError>;

    /// Records an issued person token.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn record_person_token(&self, r: PersonTokenRecord) -> Result<(), StoreError>;

    /// The person-token record for `jti`, while kept.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn person_token(
        &self,
        jti: &str,
        now: UnixTime,
    ) -> Result<Option<PersonTokenRecord>, StoreError>;

    /// Records an issued auth token.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn record_auth_token(&self, r: AuthTokenRecord) -> Result<(), StoreError>;

    /// The auth-token record for `jti`, while kept.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn auth_token(
        &self,
        jti: &str,
        now: UnixTime,
    ) -> Result<Option<AuthTokenRecord>, StoreError>;

    /// Marks the token `jti` revoked until `exp` (kept [`RECORD_GRACE`] longer), at `now`:
    /// records that ended before `now` may be dropped (the table is bounded by time, as
    /// every `exp` is capped by the caller).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn revoke(&self, jti: &str, exp: u64, now: UnixTime) -> Result<(), StoreError>;

    /// Whether `jti` was revoked.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn is_revoked(&self, jti: &str, now: UnixTime) -> Result<bool, StoreError>;

    /// Stores the new deferred request `p` (its `version` 0), unless its agent
    /// (`p.agent`) already has `max_open` requests that have not expired at `now`:
    /// `Ok(false)` then, and nothing is stored. Checked and stored atomically.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn create_pending(
        &self,
        p: Pending,
        max_open: usize,
        now: UnixTime,
    ) -> Result<bool, StoreError>;

    /// Replaces the deferred request `p.id` if it is still at `p.version`, and advances
    /// `p.version`; `Ok(false)` when another writer changed it first (nothing written).
    /// Every change of a pending request goes through here, so that two writers (two
    /// polls, a poll and the person's approval) never both win.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn update_pending(&self, p: &mut Pending) -> Result<bool, StoreError>;

    /// The deferred request `id` (expired ones included: the caller answers `408`).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn pending(&self, id: &str) -> Result<Option<Pending>, StoreError>;

    /// A subscription to the changes of the deferred request `id`: a long poll subscribes,
    /// reads the request, and waits on it until the request changes. Stores that notify
    /// do so after every successful [`update_pending`](Self::update_pending) of `id`, on
    /// every instance that shares the store. The default cannot notify: its waiters
    /// re-read once a second ([`PendingChanges::polling`]).
    fn pending_changes(&self, id: &str) -> PendingChanges {
        let _ = id;
        PendingChanges::polling()
    }

    /// The deferred request whose interaction code is `code` (normalized).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn pending_by_code(&self, code: &str) -> Result<Option<Pending>, StoreError>;

    /// Sets `account`'s password hash (PHC string).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn set_password_hash(&self, account: &str, phc: &str) -> Result<(), StoreError>;

    /// `account`'s password hash.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn password_hash(&self, account: &str) -> Result<Option<String>, StoreError>;

    /// Stores a consent-page session under the hash of its cookie.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn put_session(&self, key: &str, s: WebSession) -> Result<(), StoreError>;

    /// The session stored under `key`, while it lasts.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn session(&self, key: &str, now: UnixTime) -> Result<Option<WebSession>, StoreError>;

    /// Records an agent token this server accepted: `(iss, jti)` → the agent, until `exp`
    /// plus skew (PS-115), so that a revocation by `jti` names the agent to cascade to.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn record_agent_token(
        &self,
        iss: &ServerId,
        jti: &str,
        agent: &AgentId,
        exp: u64,
    ) -> Result<(), StoreError>;

    /// The agent an accepted agent token `(iss, jti)` named.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn agent_of_token(
        &self,
        iss: &ServerId,
        jti: &str,
    ) -> Result<Option<AgentId>, StoreError>;

    /// Records that person token `jti` (expiring at `exp`) was presented to Access Server
    /// `access_server` (PS-13: revoking it later means revoking it there too).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn record_presentation(
        &self,
        jti: &str,
        access_server: &ServerId,
        exp: u64,
    ) -> Result<(), StoreError>;

    /// The Access Servers person token `jti` was presented to.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn presentations(&self, jti: &str) -> Result<Vec<ServerId>, StoreError>;

    /// Records an issued token, its call chain and its audit event as one step: a
    /// database writes all three in one transaction (after a crash, all or none; one
    /// round trip). The default writes them one after the other.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn record_issuance(&self, issuance: Issuance) -> Result<(), StoreError> {
        let (jti, exp) = (issuance.token.jti().to_owned(), issuance.token.exp());
        match issuance.token {
            TokenRecord::Person(r) => self.record_person_token(r).await?,
            TokenRecord::Auth(r) => self.record_auth_token(r).await?,
        }
        if !issuance.chain.is_empty() {
            self.record_chain(&jti, &issuance.chain, exp).await?;
        }
        self.record_event(issuance.event).await
    }

    /// Records the call chain token `jti` (expiring at `exp`) was issued through: the
    /// intermediaries, first to last (M8: depth and cycles are checked against it when
    /// the token comes back as an `upstream_token`).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn record_chain(&self, jti: &str, chain: &[ServerId], exp: u64)
    -> Result<(), StoreError>;

    /// The call chain token `jti` was issued through (empty when it was not chained).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn chain(&self, jti: &str) -> Result<Vec<ServerId>, StoreError>;

    /// A request's agent token `(iss, jti)`: whether it is revoked (`revoked_key` in the
    /// revocations), and, when not, recorded as `agent`'s if it was not yet. One call per
    /// request: the default asks and records step by step; a database should do it in one
    /// round trip.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn see_agent_token(
        &self,
        (iss, jti): (&ServerId, &str),
        agent: &AgentId,
        exp: u64,
        revoked_key: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        if self.is_revoked(revoked_key, now).await? {
            return Ok(true);
        }
        if self.agent_of_token(iss, jti).await?.is_none() {
            self.record_agent_token(iss, jti, agent, exp).await?;
        }
        Ok(false)
    }

    /// The person token (`person`) or auth token `jti` this server issued: revoked,
    /// unknown, or what its record says. The default asks step by step; a database should
    /// answer in one round trip.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn issued(
        &self,
        jti: &str,
        person: bool,
        now: UnixTime,
    ) -> Result<IssuedToken, StoreError> {
        if self.is_revoked(jti, now).await? {
            return Ok(IssuedToken::Revoked);
        }
        let known = if person {
            self.person_token(jti, now)
                .await?
                .map(|r| (r.aud, r.sub, r.account))
        } else {
            self.auth_token(jti, now)
                .await?
                .map(|r| (r.aud, r.sub, r.account))
        };
        Ok(known.map_or(IssuedToken::Unknown, |(aud, sub, account)| {
            IssuedToken::Known { aud, sub, account }
        }))
    }

    /// What a three-party auth-token request asks of the records, at once: whether the
    /// resource token (its revocation key, `resource_token_key`) was revoked, the record
    /// of the presented token `jti` ([`PsStore::issued`]; `person`: a person token), and
    /// whether that record's account is disabled. The default asks the three in turn; a
    /// database should answer in one round trip.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn standing(
        &self,
        resource_token_key: &str,
        jti: &str,
        person: bool,
        now: UnixTime,
    ) -> Result<Standing, StoreError> {
        let resource_token_revoked = self.is_revoked(resource_token_key, now).await?;
        let presented = self.issued(jti, person, now).await?;
        let account_disabled = match &presented {
            IssuedToken::Known { account, .. } => self.account_disabled(account).await?,
            _ => false,
        };
        Ok(Standing {
            resource_token_revoked,
            presented,
            account_disabled,
        })
    }

    /// Every person token issued to the agent `(provider, agent)`, and every auth token
    /// obtained by presenting one of them (or an auth token so obtained): `(jti, aud, exp)`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn tokens_of_agent(
        &self,
        provider: &ServerId,
        agent: &AgentId,
    ) -> Result<Vec<(String, ServerId, u64)>, StoreError>;

    /// Stores or replaces the mission `m.s256`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn put_mission(&self, m: Mission) -> Result<(), StoreError>;

    /// The mission `s256`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn mission(&self, s256: &str) -> Result<Option<Mission>, StoreError>;

    /// The mission `s256` if `owner` (the agent provider and agent) owns it. The owner
    /// is part of the lookup, not a filter applied to what a lookup found: a mission
    /// that does not exist and one another agent owns must take the same path, so that
    /// the mission endpoint is no existence oracle by timing (draft -11 §8.7 Mission
    /// Endpoint Errors; threat M1 in `docs/conformance.md`).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn owned_mission(
        &self,
        s256: &str,
        owner: &(ServerId, AgentId),
    ) -> Result<Option<Mission>, StoreError>;

    /// Creates `account` with the password hash `phc`, enabled; `false` (nothing changed)
    /// when the account exists.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn create_account(&self, account: &str, phc: &str) -> Result<bool, StoreError>;

    /// Disables (or enables again) `account`: a disabled account signs in to nothing and
    /// is issued nothing. `false` when there is no such account.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn set_account_disabled(&self, account: &str, disabled: bool)
    -> Result<bool, StoreError>;

    /// Whether `account` is disabled (`false` for an account that does not exist: whether
    /// it exists is the password's question).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn account_disabled(&self, account: &str) -> Result<bool, StoreError>;

    /// Every account, by name.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn accounts(&self) -> Result<Vec<AccountRecord>, StoreError>;

    /// The account the person `(issuer, subject)` at an OpenID Provider signs in as
    /// (linked by the pair, never by an email address).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn linked_account(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Links the person `(issuer, subject)` to `account` (which need not exist yet:
    /// create it with [`PsStore::create_account`]). `false`, and nothing changed, when the
    /// pair is linked already (to any account): a link is changed only by removing it.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn link_account(
        &self,
        issuer: &str,
        subject: &str,
        account: &str,
    ) -> Result<bool, StoreError>;

    /// Ends every consent-page session of `account` (a disabled account, a reset password).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn drop_sessions(&self, account: &str) -> Result<(), StoreError>;

    /// The agents bound to `account` (to any account when `None`), by provider and agent.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn bindings(&self, account: Option<&str>) -> Result<Vec<Binding>, StoreError>;

    /// Removes an agent's binding; `false` when it was not bound.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn unbind(&self, provider: &ServerId, agent: &AgentId) -> Result<bool, StoreError>;

    /// The person and auth tokens on record at `now` (of `account` when given), oldest
    /// first.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn issued_records(
        &self,
        account: Option<&str>,
        now: UnixTime,
    ) -> Result<(Vec<PersonTokenRecord>, Vec<AuthTokenRecord>), StoreError>;

    /// Appends `e` to the audit log (events older than the store's retention,
    /// [`AUDIT_RETENTION`](crate::AUDIT_RETENTION) unless set, before `e.at` may be
    /// dropped).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn record_event(&self, e: AuditEvent) -> Result<(), StoreError>;

    /// The page of audit events `q` selects, newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn audit(&self, q: &AuditQuery) -> Result<AuditPage, StoreError>;
}

/// A person's account as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccountRecord {
    /// Its name (what the person signs in with).
    pub name: String,
    /// Whether the operator disabled it.
    pub disabled: bool,
}

/// An agent bound to a person's account.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Binding {
    /// The agent's provider.
    pub provider: ServerId,
    /// The agent.
    pub agent: AgentId,
    /// The person's account.
    pub account: String,
}

/// How long records outlive their token's `exp` (clock skew, PS-13).
pub const RECORD_GRACE: u64 = 300;

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
                if let Some(set) = self.pending_of_agent.get_mut(&p.agent) {
                    set.remove(&(expires, id));
                    if set.is_empty() {
                        self.pending_of_agent.remove(&p.agent);
                    }
                }
            }
        }
    }

    /// Whether this insert sweeps expired records.
    fn sweep(&mut self) -> bool {
        self.inserts = self.inserts.wrapping_add(1);
        self.inserts.is_multiple_of(SWEEP_EVERY)
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
        if inner.sweep() {
            inner
                .person_tokens
                .retain(|_, t| t.exp.saturating_add(RECORD_GRACE) > now_floor);
            inner
                .auth_tokens
                .retain(|_, t| t.exp.saturating_add(RECORD_GRACE) > now_floor);
        }
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
        if inner.sweep() {
            inner
                .person_tokens
                .retain(|_, t| t.exp.saturating_add(RECORD_GRACE) > now_floor);
            inner
                .auth_tokens
                .retain(|_, t| t.exp.saturating_add(RECORD_GRACE) > now_floor);
        }
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
        max_open: usize,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        inner.drop_pending_before(now.as_secs().saturating_sub(PENDING_KEPT));
        let agent = p.agent.clone();
        let open = inner.pending_of_agent.get(&agent).map_or(0, |set| {
            set.range((now.as_secs().saturating_add(1), String::new())..)
                .count()
        });
        if open >= max_open
            || inner.pending.contains_key(&p.id)
            || inner.codes.contains_key(&p.code)
        {
            return Ok(false);
        }
        p.version = 0;
        inner.codes.insert(p.code.clone(), p.id.clone());
        inner.pending_by_expiry.insert((p.expires, p.id.clone()));
        inner
            .pending_of_agent
            .entry(agent)
            .or_default()
            .insert((p.expires, p.id.clone()));
        inner.pending.insert(p.id.clone(), p);
        Ok(true)
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
            .filter(|t| t.agent.0 == *provider && t.agent.1 == *agent)
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
        self.lock().missions.insert(m.s256.clone(), m);
        Ok(())
    }

    async fn mission(&self, s256: &str) -> Result<Option<Mission>, StoreError> {
        Ok(self.lock().missions.get(s256).cloned())
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
