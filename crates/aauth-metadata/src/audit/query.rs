//! Pages of the log and queries as URL query strings (the operator endpoint's and its
//! clients').

use std::fmt;
use std::str::FromStr;

use super::{AuditAction, AuditEvent, AuditQuery, UnknownAction};

/// Where a page of the log ended: give it to [`AuditQuery::before`] for the next page.
/// Opaque to the operator (a decimal number on the wire); valid while the events it
/// names are kept.
///
/// ```
/// use aauth_metadata::audit::AuditCursor;
/// let c: AuditCursor = "42".parse()?;
/// assert_eq!(c.to_string(), "42");
/// assert!("x".parse::<AuditCursor>().is_err());
/// # Ok::<(), aauth_metadata::audit::QueryError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuditCursor(u64);

impl AuditCursor {
    /// The cursor after the event a store numbered `seq`.
    #[must_use]
    pub fn new(seq: u64) -> Self {
        Self(seq)
    }

    /// The store's number of the last event of the page before.
    #[must_use]
    pub fn seq(self) -> u64 {
        self.0
    }
}

impl fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for AuditCursor {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        number("before", s).map(Self)
    }
}

/// One page of the log: events in the query's order (newest first unless
/// [`AuditQuery::oldest_first`]), and the cursor of the next page when there are more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditPage {
    /// The events, in the query's order.
    pub events: Vec<AuditEvent>,
    /// The next page's cursor ([`AuditQuery::before`]); `None` on the last page.
    pub next: Option<AuditCursor>,
}

impl AuditPage {
    /// The page out of the rows a store read for `q`: `(seq, event)`, in `q`'s order, at
    /// most [`AuditQuery::fetch_limit`] of them. The row past the limit, if read, only
    /// says that there is a next page.
    ///
    /// ```
    /// use aauth_metadata::audit::{AuditAction, AuditCursor, AuditEvent, AuditPage, AuditQuery};
    /// let q = AuditQuery::default().limit(2);
    /// let e = |at| AuditEvent::new(at, AuditAction::Issued, "t");
    /// let page = AuditPage::from_rows(&q, vec![(9, e(3)), (8, e(2)), (7, e(1))]);
    /// assert_eq!(page.events.len(), 2);
    /// assert_eq!(page.next, Some(AuditCursor::new(8)));
    /// assert_eq!(AuditPage::from_rows(&q, vec![(9, e(3))]).next, None);
    /// ```
    #[must_use]
    pub fn from_rows(q: &AuditQuery, mut rows: Vec<(u64, AuditEvent)>) -> Self {
        let limit = q.effective_limit();
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more {
            rows.last().map(|(seq, _)| AuditCursor(*seq))
        } else {
            None
        };
        Self {
            events: rows.into_iter().map(|(_, e)| e).collect(),
            next,
        }
    }
}

/// An answer of the operator endpoint that is not an [`AuditPage`]: what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a page of the audit log: {0}")]
pub struct MalformedPage(pub String);

impl AuditPage {
    /// The page the operator endpoint answered, read back from its JSON
    /// (`{"events": [...], "next": "CURSOR"|null}`, each event [`AuditEvent::to_json`]'s).
    ///
    /// ```
    /// use aauth_metadata::audit::{AuditAction, AuditEvent, AuditPage};
    /// let e = AuditEvent::new(7, AuditAction::Denied, "no").agent("aauth:a@agent.example");
    /// let json = serde_json::json!({ "events": [e.to_json()], "next": "3" });
    /// let page = AuditPage::from_json(&json)?;
    /// assert_eq!(page.events, vec![e]);
    /// assert_eq!(page.next.map(|c| c.seq()), Some(3));
    /// assert!(AuditPage::from_json(&serde_json::json!({ "events": 1 })).is_err());
    /// # Ok::<(), aauth_metadata::audit::MalformedPage>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`MalformedPage`] naming the member that is missing or of the wrong type.
    pub fn from_json(json: &serde_json::Value) -> Result<Self, MalformedPage> {
        let bad = |what: &str| MalformedPage(what.to_owned());
        let events = json["events"]
            .as_array()
            .ok_or_else(|| bad("events is not an array"))?
            .iter()
            .map(event_from_json)
            .collect::<Result<Vec<_>, _>>()?;
        let next = match &json["next"] {
            serde_json::Value::Null => None,
            serde_json::Value::String(c) => {
                Some(c.parse().map_err(|_| bad("next is not a cursor"))?)
            }
            _ => return Err(bad("next is not a string")),
        };
        Ok(Self { events, next })
    }
}

fn event_from_json(v: &serde_json::Value) -> Result<AuditEvent, MalformedPage> {
    let bad = |what: &str| MalformedPage(format!("an event's {what}"));
    let text = |name: &str| -> Result<Option<String>, MalformedPage> {
        match &v[name] {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::String(s) => Ok(Some(s.clone())),
            _ => Err(bad(name)),
        }
    };
    let at = v["at"].as_u64().ok_or_else(|| bad("at"))?;
    let action = v["action"]
        .as_str()
        .and_then(|a| a.parse::<AuditAction>().ok())
        .ok_or_else(|| bad("action"))?;
    let detail = text("detail")?.ok_or_else(|| bad("detail"))?;
    let mut e = AuditEvent::new(at, action, detail);
    e.account = text("account")?;
    e.agent = text("agent")?;
    e.resource = text("resource")?;
    e.scope = text("scope")?;
    e.request = text("request")?;
    Ok(e)
}

/// A query string that is not an [`AuditQuery`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A parameter this query does not take.
    #[error(
        "{0:?} is not a filter of the audit log (agent, account, resource, action, since, \
         until, limit, before, order)"
    )]
    Unknown(String),
    /// A parameter given twice.
    #[error("{0} is given twice")]
    Repeated(&'static str),
    /// A parameter given with no value.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// A number that is not one (times are seconds since the epoch).
    #[error("{name}: {value:?} is not a whole number")]
    NotANumber {
        /// The parameter.
        name: &'static str,
        /// What it said.
        value: String,
    },
    /// An action that is not one.
    #[error("action: {0}")]
    Action(#[from] UnknownAction),
    /// `limit=0`: a page that could hold nothing.
    #[error("limit is 0: a page holds at least one event")]
    ZeroLimit,
    /// An order that is neither `newest` nor `oldest`.
    #[error("order: {0:?} is not newest or oldest")]
    Order(String),
    /// `since` after `until`.
    #[error("since ({since}) is after until ({until})")]
    Backwards {
        /// `since`.
        since: u64,
        /// `until`.
        until: u64,
    },
}

fn number(name: &'static str, value: &str) -> Result<u64, QueryError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QueryError::NotANumber {
            name,
            value: value.chars().take(40).collect(),
        });
    }
    value.parse().map_err(|_| QueryError::NotANumber {
        name,
        value: value.chars().take(40).collect(),
    })
}

/// The parameter names, in the order [`AuditQuery::to_query_string`] writes them.
const NAMES: [&str; 9] = [
    "agent", "account", "resource", "action", "since", "until", "limit", "before", "order",
];

impl AuditQuery {
    /// The query a URL's query string (`application/x-www-form-urlencoded`) asks: the
    /// filters `agent`, `account`, `resource`, `action`, `since` and `until` (seconds
    /// since the epoch), `limit`, `before` (a page's cursor) and `order` (`newest`, the
    /// default, or `oldest`). A parameter left out does not filter; `limit` defaults to
    /// 100.
    ///
    /// ```
    /// use aauth_metadata::audit::{AuditAction, AuditQuery};
    /// let q = AuditQuery::from_query_string("agent=aauth%3Aa%40agent.example&action=denied&limit=5")?;
    /// assert_eq!(q.agent.as_deref(), Some("aauth:a@agent.example"));
    /// assert_eq!((q.action, q.limit), (Some(AuditAction::Denied), 5));
    /// assert_eq!(AuditQuery::from_query_string(&q.to_query_string())?, q);
    /// assert!(AuditQuery::from_query_string("agnet=x").is_err());
    /// # Ok::<(), aauth_metadata::audit::QueryError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`QueryError`]: an unknown, repeated or empty parameter, a number, an action or an
    /// order that is not one, a `limit` of 0, `since` after `until`.
    pub fn from_query_string(query: &str) -> Result<Self, QueryError> {
        let mut q = Self::default();
        let mut seen = [false; NAMES.len()];
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let Some(i) = NAMES.iter().position(|n| *n == name) else {
                return Err(QueryError::Unknown(name.chars().take(40).collect()));
            };
            let name = NAMES[i];
            if std::mem::replace(&mut seen[i], true) {
                return Err(QueryError::Repeated(name));
            }
            if value.is_empty() {
                return Err(QueryError::Empty(name));
            }
            let text = Some(value.clone().into_owned());
            match name {
                "agent" => q.agent = text,
                "account" => q.account = text,
                "resource" => q.resource = text,
                "action" => q.action = Some(value.parse::<AuditAction>()?),
                "since" => q.since = Some(number(name, &value)?),
                "until" => q.until = Some(number(name, &value)?),
                "limit" => {
                    q.limit = usize::try_from(number(name, &value)?).unwrap_or(usize::MAX);
                    if q.limit == 0 {
                        return Err(QueryError::ZeroLimit);
                    }
                }
                "order" => {
                    q.oldest_first = match &*value {
                        "newest" => false,
                        "oldest" => true,
                        other => return Err(QueryError::Order(other.chars().take(40).collect())),
                    };
                }
                _ => q.before = Some(value.parse()?),
            }
        }
        if let (Some(since), Some(until)) = (q.since, q.until)
            && since > until
        {
            return Err(QueryError::Backwards { since, until });
        }
        Ok(q)
    }

    /// The query as a URL query string ([`AuditQuery::from_query_string`] reads it
    /// back): every filter set, `limit` always, and `order=oldest` when it is.
    #[must_use]
    pub fn to_query_string(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        let text = [&self.agent, &self.account, &self.resource];
        for (name, value) in NAMES.iter().zip(text) {
            if let Some(v) = value {
                out.append_pair(name, v);
            }
        }
        if let Some(a) = self.action {
            out.append_pair("action", a.as_str());
        }
        if let Some(t) = self.since {
            out.append_pair("since", &t.to_string());
        }
        if let Some(t) = self.until {
            out.append_pair("until", &t.to_string());
        }
        out.append_pair("limit", &self.limit.to_string());
        if let Some(c) = self.before {
            out.append_pair("before", &c.to_string());
        }
        if self.oldest_first {
            out.append_pair("order", "oldest");
        }
        out.finish()
    }
}
