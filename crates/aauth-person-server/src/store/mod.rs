//! What a Person Server keeps, behind one trait ([`PsStore`]): agent–person bindings,
//! issuance records and revocations, pending requests (with their change notifications),
//! sessions and password hashes, missions, call chains. [`MemoryStore`] here for a single
//! process and tests; the embedded SQLite store (`SqliteStore`, feature `sqlite`) in
//! `sqlite/`.

use crate::changes::PendingChanges;

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
    /// When it was issued to a sub-agent: the parent agent that asked for it (of the same
    /// provider), so that unlinking the parent revokes it too. `None` for a token issued to
    /// the agent that asked, and in records written before it was kept (a sub-agent's
    /// such record is found as its parent's by its name: [`PsStore::tokens_of_agent`]).
    pub parent: Option<AgentId>,
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
            parent: None,
            mission_s256: None,
            exp,
        }
    }

    /// The same record, of a token a parent agent asked for its sub-agent `parent`.
    #[must_use]
    pub fn with_parent(mut self, parent: AgentId) -> Self {
        self.parent = Some(parent);
        self
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

    /// Binds an agent to `account` unless it is bound already, at once (two people
    /// approving the same unbound agent's requests: the first binds it, the second is
    /// told); returns the account it is bound to now. The default reads, then binds,
    /// which is not atomic: a store that several instances share overrides it.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn bind_if_unbound(
        &self,
        provider: &ServerId,
        agent: &AgentId,
        account: &str,
    ) -> Result<String, StoreError> {
        if let Some(bound) = self.binding(provider, agent).await? {
            return Ok(bound);
        }
        self.bind(provider, agent, account).await?;
        Ok(account.to_owned())
    }

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

    /// Stores the new deferred request `p` (its `version` 0) within `caps` at `now`:
    /// unless its agent (`p.agent`) already has [`PendingCaps::per_agent`] requests that
    /// have not expired ([`PendingCreated::AgentFull`]), or, when
    /// [`PendingCaps::per_provider`] is set, the agents of its provider (`p.agent.0`) have
    /// that many together ([`PendingCreated::ProviderFull`]), or, when
    /// [`PendingCaps::total`] is set, the store already keeps that many requests of every
    /// agent, unexpired or kept past their expiry (until `expires` plus [`PENDING_KEPT`])
    /// ([`PendingCreated::Full`]), or its id or interaction code is another request's
    /// ([`PendingCreated::Taken`]); nothing is stored then. Counted and stored as one
    /// step, across every instance sharing the store. Requests expired more than
    /// [`PENDING_KEPT`] before `now` may be dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn create_pending(
        &self,
        p: Pending,
        caps: PendingCaps,
        now: UnixTime,
    ) -> Result<PendingCreated, StoreError>;

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

    /// The deferred requests the agent `(provider, agent)` made (as their signer) that
    /// the store still holds, expired ones included until they are dropped: latest
    /// expiry first, at most [`MAX_PENDING_LISTED`]. What unlinking the agent ends.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn pending_of_agent(
        &self,
        provider: &ServerId,
        agent: &AgentId,
    ) -> Result<Vec<Pending>, StoreError>;

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

    /// Counts one wrong interaction code against the session under `key`, if it still
    /// lasts: never writes back a session ended meanwhile (signed out, its account
    /// disabled). The default reads and writes back, which a shared store overrides with
    /// one conditional update.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn count_bad_code(&self, key: &str, now: UnixTime) -> Result<(), StoreError> {
        if let Some(mut s) = self.session(key, now).await? {
            s.bad_codes = s.bad_codes.saturating_add(1);
            self.put_session(key, s).await?;
        }
        Ok(())
    }

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

    /// Every person token issued to the agent `(provider, agent)` or, at its request, to
    /// one of its sub-agents ([`PersonTokenRecord::parent`]; in a record without one, from
    /// before it was kept, a sub-agent named as the agent's: `aauth:<local>+…@<domain>`),
    /// and every auth token obtained by presenting one of them (or an auth token so
    /// obtained): `(jti, aud, exp)`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn tokens_of_agent(
        &self,
        provider: &ServerId,
        agent: &AgentId,
    ) -> Result<Vec<(String, ServerId, u64)>, StoreError>;

    /// Stores or replaces the mission `m.s256`, unless the stored one is terminated: a
    /// terminated mission is final, so a copy read before its termination (a budget
    /// spent, an audit entry, an approval made at the same moment) can never revive it.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn put_mission(&self, m: Mission) -> Result<(), StoreError>;

    /// Writes `m` as the next version of the stored mission (`m.version + 1`), only if
    /// the stored one is still at `m.version` and not terminated; `false` when it changed
    /// meanwhile, ended, or is gone (the caller reads it again and redoes its change).
    /// One conditional write: several instances change one mission without losing a
    /// change (a budget allocation, a log entry, a grant counted).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn replace_mission(&self, m: &Mission) -> Result<bool, StoreError>;

    /// The mission `s256`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn mission(&self, s256: &str) -> Result<Option<Mission>, StoreError>;

    /// The missions of `account` (every state), newest approval first where the store
    /// knows it; at most [`MAX_MISSIONS_LISTED`].
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn missions_of(&self, account: &str) -> Result<Vec<Mission>, StoreError>;

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

/// The most missions [`PsStore::missions_of`] returns.
pub const MAX_MISSIONS_LISTED: usize = 500;

/// The most deferred requests of one agent [`PsStore::pending_of_agent`] answers (an
/// agent has at most its open requests' bound unexpired, and those that expired in the
/// last [`PENDING_KEPT`]).
pub const MAX_PENDING_LISTED: usize = 1000;

/// How long records outlive their token's `exp` (clock skew, PS-13).
pub const RECORD_GRACE: u64 = 300;

mod caps;
mod memory;

pub use caps::{PendingCaps, PendingCreated};
pub use memory::{MemoryStore, PENDING_KEPT};
