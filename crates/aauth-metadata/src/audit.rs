//! The operator's audit log, shared by the Person Server and the Access Server: what a
//! server decided, issued, refused and revoked, and what its operator changed, one
//! [`AuditEvent`] each, kept by the server's store for [`AUDIT_RETENTION`] and read back
//! by filters ([`AuditQuery`]). Events name the person's account (or directed `sub`), the
//! agent and the resource by identifier; never a token, a signature or a password.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How long audit events are kept: 90 days. Older ones are swept as new ones are written.
pub const AUDIT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// The most events the in-memory store keeps (the oldest go first).
pub const MEMORY_AUDIT_CAP: usize = 10_000;

/// The most events one [`AuditQuery`] returns, whatever its `limit`.
pub const MAX_AUDIT_QUERY: usize = 10_000;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditAction {
    /// The person (or the policy) approved a request.
    Approved,
    /// The person (or the policy) denied a request.
    Denied,
    /// A token was issued; the detail names its type and `jti`.
    Issued,
    /// A token or an agent was revoked; the detail says which and by whom.
    Revoked,
    /// The operator changed an account (created, disabled, enabled, password reset).
    Account,
    /// A request was refused; the detail starts with the draft's error code.
    Refused,
}

impl AuditAction {
    /// Every action, in the order of their names.
    pub const ALL: [Self; 6] = [
        Self::Account,
        Self::Approved,
        Self::Denied,
        Self::Issued,
        Self::Refused,
        Self::Revoked,
    ];

    /// Its name: `approved`, `denied`, `issued`, `refused`, `revoked` or `account`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Issued => "issued",
            Self::Revoked => "revoked",
            Self::Account => "account",
            Self::Refused => "refused",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an [`AuditAction`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAction(pub String);

impl fmt::Display for UnknownAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an audit action (approved, denied, issued, refused, revoked or account)",
            self.0
        )
    }
}

impl std::error::Error for UnknownAction {}

impl FromStr for AuditAction {
    type Err = UnknownAction;

    /// ```
    /// use aauth_metadata::audit::AuditAction;
    /// assert_eq!("denied".parse::<AuditAction>(), Ok(AuditAction::Denied));
    /// assert!("rejected".parse::<AuditAction>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAction(s.to_owned()))
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditEvent {
    /// When (seconds since the epoch).
    pub at: u64,
    /// What happened.
    pub action: AuditAction,
    /// The person's account, when one is concerned.
    pub account: Option<String>,
    /// The agent (its `aauth:` identifier), when one is concerned.
    pub agent: Option<String>,
    /// The resource, when one is concerned.
    pub resource: Option<String>,
    /// What exactly, in words (a token's type and `jti`, who decided, why).
    pub detail: String,
}

impl AuditEvent {
    /// An event at `at` with nothing but its action and detail.
    #[must_use]
    pub fn new(at: u64, action: AuditAction, detail: impl Into<String>) -> Self {
        Self {
            at,
            action,
            account: None,
            agent: None,
            resource: None,
            detail: detail.into(),
        }
    }

    /// Names the person's account.
    #[must_use]
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }

    /// Names the agent.
    #[must_use]
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Names the resource.
    #[must_use]
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }
}

/// Which events to read: every filter given must match; newest first, at most `limit`.
///
/// ```
/// use aauth_metadata::audit::{AuditAction, AuditEvent, AuditQuery};
/// let e = AuditEvent::new(100, AuditAction::Issued, "person token j1")
///     .agent("aauth:a@agent.example")
///     .resource("https://api.example");
/// let q = AuditQuery::default().agent("aauth:a@agent.example").since(50);
/// assert!(q.matches(&e));
/// assert!(!q.clone().action(AuditAction::Denied).matches(&e));
/// assert!(!q.until(99).matches(&e));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditQuery {
    /// Only this agent's events.
    pub agent: Option<String>,
    /// Only this resource's events.
    pub resource: Option<String>,
    /// Only this account's events.
    pub account: Option<String>,
    /// Only this action.
    pub action: Option<AuditAction>,
    /// Only events at or after this time.
    pub since: Option<u64>,
    /// Only events at or before this time.
    pub until: Option<u64>,
    /// At most this many (capped at [`MAX_AUDIT_QUERY`]).
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self {
            agent: None,
            resource: None,
            account: None,
            action: None,
            since: None,
            until: None,
            limit: 100,
        }
    }
}

impl AuditQuery {
    /// Only `agent`'s events.
    #[must_use]
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Only `resource`'s events.
    #[must_use]
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Only `account`'s events.
    #[must_use]
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }

    /// Only `action`.
    #[must_use]
    pub fn action(mut self, action: AuditAction) -> Self {
        self.action = Some(action);
        self
    }

    /// Only events at or after `at`.
    #[must_use]
    pub fn since(mut self, at: u64) -> Self {
        self.since = Some(at);
        self
    }

    /// Only events at or before `at`.
    #[must_use]
    pub fn until(mut self, at: u64) -> Self {
        self.until = Some(at);
        self
    }

    /// At most `limit` events.
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The limit a store applies: `limit`, capped at [`MAX_AUDIT_QUERY`].
    #[must_use]
    pub fn effective_limit(&self) -> usize {
        self.limit.min(MAX_AUDIT_QUERY)
    }

    /// Whether `e` passes every filter.
    #[must_use]
    pub fn matches(&self, e: &AuditEvent) -> bool {
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        same(&self.agent, &e.agent)
            && same(&self.resource, &e.resource)
            && same(&self.account, &e.account)
            && self.action.is_none_or(|a| a == e.action)
            && self.since.is_none_or(|s| e.at >= s)
            && self.until.is_none_or(|u| e.at <= u)
    }
}

/// The audit log of an in-memory store: at most [`MEMORY_AUDIT_CAP`] events (the oldest
/// go first), none older than [`AUDIT_RETENTION`] before the newest.
///
/// ```
/// use aauth_metadata::audit::{AuditAction, AuditEvent, AuditQuery, MemoryAuditLog};
/// let mut log = MemoryAuditLog::default();
/// log.record(AuditEvent::new(10, AuditAction::Issued, "auth token a"));
/// log.record(AuditEvent::new(20, AuditAction::Refused, "invalid_request"));
/// let newest = log.query(&AuditQuery::default().limit(1));
/// assert_eq!(newest[0].action, AuditAction::Refused);
/// ```
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemoryAuditLog(std::collections::VecDeque<AuditEvent>);

impl MemoryAuditLog {
    /// Appends `e`, dropping what is past the cap or the retention.
    pub fn record(&mut self, e: AuditEvent) {
        let floor = e.at.saturating_sub(AUDIT_RETENTION.as_secs());
        while self
            .0
            .front()
            .is_some_and(|old| old.at < floor || self.0.len() >= MEMORY_AUDIT_CAP)
        {
            self.0.pop_front();
        }
        self.0.push_back(e);
    }

    /// The events `q` selects, newest first.
    #[must_use]
    pub fn query(&self, q: &AuditQuery) -> Vec<AuditEvent> {
        self.0
            .iter()
            .rev()
            .filter(|e| q.matches(e))
            .take(q.effective_limit())
            .cloned()
            .collect()
    }
}

/// The audit log in PostgreSQL (feature `postgres`): the table a store's migration
/// creates, and its append and query, shared by the servers' PostgreSQL stores.
#[cfg(feature = "postgres")]
pub mod postgres {
    use super::{AuditAction, AuditEvent, AuditQuery};
    use crate::store::StoreError;
    use crate::store::postgres::Pg;

    /// The table and its indexes (in a store's migration).
    pub const TABLE: &str = "
CREATE TABLE audit (
  seq BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, action TEXT NOT NULL,
  account TEXT, agent TEXT, resource TEXT, detail TEXT NOT NULL);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_agent ON audit (agent, at);
CREATE INDEX audit_resource ON audit (resource, at);
CREATE INDEX audit_account ON audit (account, at);
";

    fn secs(t: u64) -> i64 {
        i64::try_from(t).unwrap_or(i64::MAX)
    }

    /// Appends `e`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn record(pg: &Pg, e: &AuditEvent) -> Result<(), StoreError> {
        pg.execute(
            "INSERT INTO audit (at, action, account, agent, resource, detail)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &secs(e.at),
                &e.action.as_str(),
                &e.account,
                &e.agent,
                &e.resource,
                &e.detail,
            ],
        )
        .await
        .map(drop)
    }

    /// The events `q` selects, newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn query(pg: &Pg, q: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let limit = i64::try_from(q.effective_limit()).unwrap_or(i64::MAX);
        let rows = pg
            .query(
                "SELECT at, action, account, agent, resource, detail FROM audit
                 WHERE ($1::text IS NULL OR agent = $1) AND ($2::text IS NULL OR resource = $2)
                   AND ($3::text IS NULL OR account = $3) AND ($4::text IS NULL OR action = $4)
                   AND ($5::bigint IS NULL OR at >= $5) AND ($6::bigint IS NULL OR at <= $6)
                 ORDER BY at DESC, seq DESC LIMIT $7",
                &[
                    &q.agent,
                    &q.resource,
                    &q.account,
                    &q.action.map(AuditAction::as_str),
                    &q.since.map(secs),
                    &q.until.map(secs),
                    &limit,
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let action: String = pg.get(r, 1, "audit event")?;
                let action = action
                    .parse::<AuditAction>()
                    .map_err(|e| StoreError::unreadable(pg.store(), "audit action", e))?;
                let at: i64 = pg.get(r, 0, "audit event")?;
                let detail: String = pg.get(r, 5, "audit event")?;
                let mut e = AuditEvent::new(u64::try_from(at).unwrap_or(0), action, detail);
                e.account = pg.get(r, 2, "audit event")?;
                e.agent = pg.get(r, 3, "audit event")?;
                e.resource = pg.get(r, 4, "audit event")?;
                Ok(e)
            })
            .collect()
    }
}
