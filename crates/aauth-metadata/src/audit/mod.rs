//! The operator's audit log, shared by the Person Server and the Access Server: what a
//! server decided, issued, refused and revoked, and what its operator changed, one
//! [`AuditEvent`] each, kept by the server's store for its retention ([`AUDIT_RETENTION`]
//! unless configured) and read back by filters ([`AuditQuery`]), a page at a time
//! ([`AuditPage`], [`AuditCursor`]). Events name the person's account (or directed
//! `sub`), the agent, the resource, the scope and the request by identifier; never a
//! token, a signature or a password.
//!
//! Operators read it through the server's store (`aauth admin audit`), or over HTTP at
//! [`operator::OPERATOR_AUDIT_PATH`], signing with a configured operator key.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How long audit events are kept unless the store is told otherwise: 90 days. Older ones
/// are swept as new ones are written (or, at PostgreSQL, by the store's sweep).
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
    /// A mission changed: approved, updated, completed, terminated or expired; the detail
    /// names it by its `s256`.
    Mission,
}

impl AuditAction {
    /// Every action, in the order of their names.
    pub const ALL: [Self; 7] = [
        Self::Account,
        Self::Approved,
        Self::Denied,
        Self::Issued,
        Self::Mission,
        Self::Refused,
        Self::Revoked,
    ];

    /// Its name: `approved`, `denied`, `issued`, `refused`, `revoked`, `account` or
    /// `mission`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Issued => "issued",
            Self::Revoked => "revoked",
            Self::Account => "account",
            Self::Refused => "refused",
            Self::Mission => "mission",
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
            "{:?} is not an audit action (approved, denied, issued, refused, revoked, account \
             or mission)",
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
    /// The scope concerned (a token's, a request's), when there is one.
    pub scope: Option<String>,
    /// The request concerned: a pending request's id, when there is one.
    pub request: Option<String>,
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
            scope: None,
            request: None,
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

    /// Names the scope, when there is one (an empty scope names none).
    #[must_use]
    pub fn scope<'a>(mut self, scope: impl Into<Option<&'a str>>) -> Self {
        self.scope = scope.into().filter(|s| !s.is_empty()).map(str::to_owned);
        self
    }

    /// Names the request (a pending request's id).
    #[must_use]
    pub fn request(mut self, request: impl Into<String>) -> Self {
        self.request = Some(request.into());
        self
    }

    /// The event as one JSON object: `at`, `action`, `account`, `agent`, `resource`,
    /// `scope`, `request` (`null` when the event names none) and `detail`; one line of
    /// the log's JSON-lines export.
    ///
    /// ```
    /// use aauth_metadata::audit::{AuditAction, AuditEvent};
    /// let e = AuditEvent::new(100, AuditAction::Issued, "auth token j1").scope("read");
    /// assert_eq!(e.to_json()["scope"], "read");
    /// assert!(e.to_json()["agent"].is_null());
    /// ```
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "at": self.at,
            "action": self.action.as_str(),
            "account": self.account,
            "agent": self.agent,
            "resource": self.resource,
            "scope": self.scope,
            "request": self.request,
            "detail": self.detail,
        })
    }
}

/// Which events to read: every filter given must match; newest first (or, with
/// `oldest_first`, oldest first), at most `limit`, past `before` (the cursor of the page
/// before, [`AuditPage::next`]).
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
    /// Only events past the one this cursor names in the query's order (recorded before
    /// it, or after it with `oldest_first`): the next page.
    pub before: Option<AuditCursor>,
    /// Oldest first instead of newest first: `limit(1)` reads an agent's first event in
    /// one step, however many it has.
    pub oldest_first: bool,
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
            before: None,
            oldest_first: false,
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

    /// Only events recorded before the one `cursor` names (the page after the one whose
    /// [`AuditPage::next`] it is).
    #[must_use]
    pub fn before(mut self, cursor: AuditCursor) -> Self {
        self.before = Some(cursor);
        self
    }

    /// Oldest first (the next page's cursor then leads to later events).
    ///
    /// ```
    /// use aauth_metadata::audit::{AuditAction, AuditEvent, AuditQuery, MemoryAuditLog};
    /// let mut log = MemoryAuditLog::default();
    /// for at in [10, 20, 30] {
    ///     log.record(AuditEvent::new(at, AuditAction::Issued, "t").agent("aauth:a@agent.example"));
    /// }
    /// let q = AuditQuery::default().agent("aauth:a@agent.example").oldest_first().limit(1);
    /// let first = log.query(&q);
    /// assert_eq!(first.events[0].at, 10);
    /// assert_eq!(log.query(&q.before(first.next.unwrap())).events[0].at, 20);
    /// ```
    #[must_use]
    pub fn oldest_first(mut self) -> Self {
        self.oldest_first = true;
        self
    }

    /// Whether the event a store numbered `seq` is past the query's cursor, in its order.
    fn past_cursor(&self, seq: u64) -> bool {
        match (self.before, self.oldest_first) {
            (None, _) => true,
            (Some(c), false) => seq < c.seq(),
            (Some(c), true) => seq > c.seq(),
        }
    }

    /// The limit a store applies: `limit`, capped at [`MAX_AUDIT_QUERY`].
    #[must_use]
    pub fn effective_limit(&self) -> usize {
        self.limit.min(MAX_AUDIT_QUERY)
    }

    /// How many rows a store reads: one more than [`AuditQuery::effective_limit`], to
    /// know whether there is a next page ([`AuditPage::from_rows`]).
    #[must_use]
    pub fn fetch_limit(&self) -> usize {
        self.effective_limit() + 1
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
/// go first), none older than its retention ([`AUDIT_RETENTION`] unless set) before the
/// newest.
///
/// ```
/// use aauth_metadata::audit::{AuditAction, AuditEvent, AuditQuery, MemoryAuditLog};
/// let mut log = MemoryAuditLog::default();
/// log.record(AuditEvent::new(10, AuditAction::Issued, "auth token a"));
/// log.record(AuditEvent::new(20, AuditAction::Refused, "invalid_request"));
/// let page = log.query(&AuditQuery::default().limit(1));
/// assert_eq!(page.events[0].action, AuditAction::Refused);
/// let rest = log.query(&AuditQuery::default().limit(1).before(page.next.unwrap()));
/// assert_eq!(rest.events[0].action, AuditAction::Issued);
/// assert_eq!(rest.next, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryAuditLog {
    events: std::collections::VecDeque<(u64, AuditEvent)>,
    next_seq: u64,
    retention: Duration,
}

impl Default for MemoryAuditLog {
    fn default() -> Self {
        Self {
            events: std::collections::VecDeque::new(),
            next_seq: 1,
            retention: AUDIT_RETENTION,
        }
    }
}

impl MemoryAuditLog {
    /// Keeps events for `retention` instead of [`AUDIT_RETENTION`].
    #[must_use]
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Appends `e`, dropping what is past the cap or the retention.
    pub fn record(&mut self, e: AuditEvent) {
        let floor = e.at.saturating_sub(self.retention.as_secs());
        while self
            .events
            .front()
            .is_some_and(|(_, old)| old.at < floor || self.events.len() >= MEMORY_AUDIT_CAP)
        {
            self.events.pop_front();
        }
        self.events.push_back((self.next_seq, e));
        self.next_seq += 1;
    }

    /// The page of events `q` selects, newest first (oldest first when it asks).
    #[must_use]
    pub fn query(&self, q: &AuditQuery) -> AuditPage {
        let in_order: Box<dyn Iterator<Item = &(u64, AuditEvent)>> = if q.oldest_first {
            Box::new(self.events.iter())
        } else {
            Box::new(self.events.iter().rev())
        };
        let rows = in_order
            .filter(|(seq, e)| q.past_cursor(*seq) && q.matches(e))
            .take(q.fetch_limit())
            .map(|(seq, e)| (*seq, e.clone()))
            .collect();
        AuditPage::from_rows(q, rows)
    }
}

#[cfg(feature = "postgres")]
pub mod postgres;

#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod select;

#[cfg(feature = "runtime")]
pub mod operator;

mod query;
pub use query::{AuditCursor, AuditPage, MalformedPage, QueryError};
