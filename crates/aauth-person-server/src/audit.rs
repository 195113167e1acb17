//! The operator's audit log: what this Person Server decided, issued and revoked, and
//! what its operator changed, one [`AuditEvent`] each, kept by the store
//! ([`PsStore::record_event`](crate::PsStore::record_event)) for [`AUDIT_RETENTION`] and
//! read back by filters ([`AuditQuery`]). Events name the person's account, the agent and
//! the resource by identifier; never a token, a signature or a password.

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
}

impl AuditAction {
    /// Every action, in the order of their names.
    pub const ALL: [Self; 5] = [
        Self::Account,
        Self::Approved,
        Self::Denied,
        Self::Issued,
        Self::Revoked,
    ];

    /// Its name: `approved`, `denied`, `issued`, `revoked` or `account`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Issued => "issued",
            Self::Revoked => "revoked",
            Self::Account => "account",
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
            "{:?} is not an audit action (approved, denied, issued, revoked or account)",
            self.0
        )
    }
}

impl std::error::Error for UnknownAction {}

impl FromStr for AuditAction {
    type Err = UnknownAction;

    /// ```
    /// use aauth_person_server::AuditAction;
    /// assert_eq!("denied".parse::<AuditAction>(), Ok(AuditAction::Denied));
    /// assert!("refused".parse::<AuditAction>().is_err());
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
/// use aauth_person_server::{AuditAction, AuditEvent, AuditQuery};
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
