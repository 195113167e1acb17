//! Missions (draft -11, "Missions"): what a person approved an agent to do, pinned by the
//! SHA-256 of the exact bytes the Person Server persists, with power-of-attorney
//! constraints (the model of GAuth, a Python authorization SDK) as a namespaced member of
//! the blob so that `s256` pins them too, enforced at token time by a deterministic
//! policy engine.

use aauth_metadata::serve::InternalError;
use aauth_tokens::{AgentId, ServerId};
use serde::{Deserialize, Serialize};

/// The blob member holding the power-of-attorney constraints.
pub const CONSTRAINTS_MEMBER: &str = "aauth-rs:constraints";

/// What an agent proposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Proposal {
    /// What the agent will do (Markdown; shown escaped).
    pub description: String,
    /// Tools it expects to use.
    #[serde(default)]
    pub tools: Vec<Tool>,
    /// Resources it expects to call (server identifiers).
    #[serde(default)]
    pub resources: Vec<String>,
}

/// A tool named in a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
}

/// Power-of-attorney constraints (GAuth's terms, AAuth's mechanics): each is checked when
/// a token is requested under the mission; absent means unconstrained.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Constraints {
    /// Not before (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub valid_from: Option<u64>,
    /// Not after (Unix seconds); also the mission's `expires_at`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub valid_until: Option<u64>,
    /// The only resources tokens may be issued for.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resources: Option<Vec<String>>,
    /// The only scope values (tools) an auth token may grant.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tools: Option<Vec<String>>,
    /// The most auth tokens the mission may obtain (a grant budget, kept in a ledger).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max_grants: Option<u32>,
    /// Whether sub-agents may act under the mission (delegation depth 0 or 1).
    #[serde(default)]
    pub allow_subagents: bool,
    /// The most the mission may spend in all (draft-hardt-aauth-budgets: the PS's
    /// ceiling). Each auth token for a resource that offers a budget in this denomination
    /// is granted at most what remains; the ledger counts what each grant consumed once
    /// the resource reports it, what was granted until then.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub budget: Option<aauth_tokens::Budget>,
}

/// One budget grant in a mission's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Allocation {
    /// The auth token's `jti`.
    pub jti: String,
    /// What it was granted.
    pub granted: u64,
    /// What the resource reported it consumed (at most `granted`), once it has.
    pub consumed: Option<u64>,
    /// The resource it was granted for: only that resource's reports count for it (a
    /// report names grants by `jti`, which the agent knows, so another resource could
    /// otherwise "report" someone else's grants unspent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

/// A standing approval the person gave within a mission ("approve for this mission"):
/// later auth tokens for `scope` at `resource` under the mission are issued without asking
/// again, while the mission is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MissionApproval {
    /// The resource.
    pub resource: String,
    /// The scope approved (as the resource token asked it; `""` for none).
    pub scope: String,
    /// When the person approved it (Unix seconds).
    pub at: u64,
}

/// Why a mission has ended (stored outside the blob).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TerminationReason {
    /// The person accepted the agent's completion.
    Completed,
    /// The person (or an administrator) revoked it.
    Revoked,
    /// It passed `expires_at`.
    Expired,
    /// A new mission replaced it.
    Superseded,
}

impl TerminationReason {
    /// The draft's value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Superseded => "superseded",
        }
    }

    /// Reads a stored value.
    #[must_use]
    pub fn from_value(v: &str) -> Option<Self> {
        Some(match v {
            "completed" => Self::Completed,
            "revoked" => Self::Revoked,
            "expired" => Self::Expired,
            "superseded" => Self::Superseded,
            _ => return None,
        })
    }
}

/// One entry of the mission log: what was asked and what was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogEntry {
    /// When (Unix seconds).
    pub at: u64,
    /// What happened: `person_token`, `auth_token`, `update`, `completion`, `terminated`.
    pub event: String,
    /// The resource, when a token was asked for.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resource: Option<String>,
    /// `permit` or `deny`.
    pub decision: String,
    /// The violation code of a denial, the text of an update or a summary.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

/// A mission as the Person Server keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mission {
    /// `base64url(SHA-256(blob))`.
    pub s256: String,
    /// The exact bytes approved.
    pub blob: Vec<u8>,
    /// The agent (provider, identifier) that owns it.
    pub agent: (ServerId, AgentId),
    /// The person's account.
    pub account: String,
    /// The constraints read back from the blob.
    pub constraints: Constraints,
    /// `None` while active; the reason once terminated (never active again).
    pub terminated: Option<TerminationReason>,
    /// Auth tokens issued under it (the grant ledger): counted when issued, never for a
    /// request that was denied or ended unanswered.
    pub grants: u32,
    /// Budget grants (the spending ledger), oldest first.
    pub ledger: Vec<Allocation>,
    /// The mission log: read with [`Mission::log_entries`], written only through
    /// [`Mission::log()`] and [`Mission::log_agent`], which keep it within its cap.
    log: Vec<LogEntry>,
    /// What the person approved for the whole mission.
    pub approvals: Vec<MissionApproval>,
    /// How many changes the stored mission has had: a change is written only over the
    /// version it was read at ([`crate::PsStore::replace_mission`]), so two changes made
    /// at once, on one instance or several, never lose one another.
    pub version: u64,
}

/// What a mission has done so far, as a store keeps it.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) struct Progress {
    /// Why it ended, once it has.
    pub(crate) terminated: Option<TerminationReason>,
    /// How many tokens it has granted.
    pub(crate) grants: u32,
    /// Its budget ledger.
    pub(crate) ledger: Vec<Allocation>,
    /// Its log.
    pub(crate) log: Vec<LogEntry>,
    /// Its standing approvals.
    pub(crate) approvals: Vec<MissionApproval>,
    /// Its version.
    pub(crate) version: u64,
}

impl Mission {
    /// A new, active mission over `blob` (its `s256` computed here).
    #[must_use]
    pub fn new(
        blob: Vec<u8>,
        agent: (ServerId, AgentId),
        account: impl Into<String>,
        constraints: Constraints,
    ) -> Self {
        Self {
            s256: s256(&blob),
            blob,
            agent,
            account: account.into(),
            constraints,
            terminated: None,
            grants: 0,
            ledger: Vec::new(),
            log: Vec::new(),
            approvals: Vec::new(),
            version: 0,
        }
    }

    /// Whether the person approved `scope` at `resource` for this whole mission, and it is
    /// still active.
    #[must_use]
    pub fn approved_for(&self, resource: &str, scope: &str) -> bool {
        self.terminated.is_none()
            && self
                .approvals
                .iter()
                .any(|a| a.resource == resource && a.scope == scope)
    }

    /// Records that the person approved `scope` at `resource` for the rest of the mission
    /// (once; logged).
    pub fn approve_for_mission(&mut self, resource: &ServerId, scope: &str, now: u64) {
        if self.approved_for(resource.as_str(), scope) {
            return;
        }
        self.approvals.push(MissionApproval {
            resource: resource.as_str().to_owned(),
            scope: scope.to_owned(),
            at: now,
        });
        self.log(
            now,
            "approved_for_mission",
            Some(resource),
            "permit",
            Some(scope.to_owned()),
        );
    }

    /// A mission read back from a store.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn restore(
        s256: String,
        blob: Vec<u8>,
        agent: (ServerId, AgentId),
        account: String,
        constraints: Constraints,
        progress: Progress,
    ) -> Self {
        let Progress {
            terminated,
            grants,
            ledger,
            log,
            approvals,
            version,
        } = progress;
        Self {
            s256,
            blob,
            agent,
            account,
            constraints,
            terminated,
            grants,
            ledger,
            log,
            approvals,
            version,
        }
    }

    /// What the mission has spent: each grant's reported consumption, or the grant
    /// itself until the resource reports it.
    #[must_use]
    pub fn spent(&self) -> u64 {
        self.ledger
            .iter()
            .map(|a| a.consumed.unwrap_or(a.granted))
            .fold(0, u64::saturating_add)
    }

    /// [`Mission::spent`] with `resource`'s consumption `records` taken into account
    /// (not recorded).
    fn spent_with(&self, records: &[aauth_tokens::Consumption], resource: &ServerId) -> u64 {
        self.ledger
            .iter()
            .map(|a| Self::reported(a, records, resource).unwrap_or(a.granted))
            .fold(0, u64::saturating_add)
    }

    /// What grant `a` consumed, with `resource`'s `records`: a report counts only from the
    /// resource the grant was for, never above the grant, and never below what that
    /// resource reported before (consumption does not shrink).
    fn reported(
        a: &Allocation,
        records: &[aauth_tokens::Consumption],
        resource: &ServerId,
    ) -> Option<u64> {
        let fresh = records
            .iter()
            .filter(|_| a.resource.as_deref() == Some(resource.as_str()))
            .find(|r| r.jti == a.jti)
            .map(|r| r.consumed.min(a.granted));
        match (a.consumed, fresh) {
            (Some(before), Some(now)) => Some(before.max(now)),
            (before, now) => now.or(before),
        }
    }

    /// The budget an auth token may be granted now against `offer` (the resource
    /// token's `budget`, with its consumption `records`, which count only when in the
    /// ceiling's denomination): the offer itself when the mission sets no ceiling;
    /// nothing when the resource meters nothing; otherwise the offer lowered to what
    /// remains.
    ///
    /// # Errors
    ///
    /// [`violation::BUDGET_UNIT_MISMATCH`] when the resource denominates otherwise than
    /// the ceiling, [`violation::BUDGET_EXHAUSTED`] when nothing remains.
    pub fn allocate(
        &self,
        offer: Option<&aauth_tokens::Budget>,
        records: &[aauth_tokens::Consumption],
        resource: &ServerId,
    ) -> Result<Option<aauth_tokens::Budget>, &'static str> {
        let (Some(ceiling), Some(offer)) = (&self.constraints.budget, offer) else {
            return Ok(offer.cloned());
        };
        if !ceiling.same_denomination(offer) {
            return Err(violation::BUDGET_UNIT_MISMATCH);
        }
        let remaining = ceiling
            .amount
            .saturating_sub(self.spent_with(records, resource));
        if remaining == 0 {
            return Err(violation::BUDGET_EXHAUSTED);
        }
        Ok(Some(offer.with_amount(offer.amount.min(remaining))))
    }

    /// Records a grant of `granted` to auth token `jti` for `resource` (when the mission
    /// sets a ceiling).
    pub fn record_allocation(&mut self, jti: &str, granted: u64, resource: &ServerId) {
        if self.constraints.budget.is_some() {
            self.ledger.push(Allocation {
                jti: jti.to_owned(),
                granted,
                consumed: None,
                resource: Some(resource.as_str().to_owned()),
            });
        }
    }

    /// Takes `resource`'s consumption records (from its resource token, in `offer`'s
    /// denomination) for the grants it was given; records of other resources' grants,
    /// and of grants not in the ledger, are ignored. Consumption above a grant counts as
    /// the grant (the budget is a hard cap); a report never lowers an earlier one.
    pub fn record_consumption(
        &mut self,
        offer: Option<&aauth_tokens::Budget>,
        records: &[aauth_tokens::Consumption],
        resource: &ServerId,
    ) {
        let same = match (&self.constraints.budget, offer) {
            (Some(c), Some(o)) => c.same_denomination(o),
            _ => false,
        };
        if !same {
            return;
        }
        for a in &mut self.ledger {
            a.consumed = Self::reported(a, records, resource);
        }
    }

    /// Ends the mission for `reason` at `at`, logging its termination.
    pub fn terminate(&mut self, reason: TerminationReason, at: u64) {
        self.terminated = Some(reason);
        self.log(
            at,
            "terminated",
            None,
            "permit",
            Some(reason.as_str().to_owned()),
        );
    }

    /// Appends to the mission log what the person or this server did (a standing
    /// approval, a budget grant, the completion, the termination): recorded while the log
    /// holds fewer than [`MAX_MISSION_LOG`] + [`MISSION_LOG_RESERVE`] entries, past which
    /// it is not (the mission's state still changes; only its line is not written).
    pub fn log(
        &mut self,
        at: u64,
        event: &str,
        resource: Option<&ServerId>,
        decision: &str,
        detail: Option<String>,
    ) {
        let entry = LogEntry::new(at, event, resource, decision, detail);
        // Not recorded past the reserve: the log stays bounded whoever writes to it.
        let _ = self.push(entry, MAX_MISSION_LOG.saturating_add(MISSION_LOG_RESERVE));
    }

    /// Appends to the mission log what its agent asked or reported (a token request under
    /// the mission, a permission request, an audit record, an update).
    ///
    /// # Errors
    ///
    /// [`LogFull`] when the log already holds [`MAX_MISSION_LOG`] entries: nothing is
    /// recorded, and the caller refuses the agent's request (the log is the person's
    /// record of what the agent did; it is never rewritten to make room).
    pub fn log_agent(
        &mut self,
        at: u64,
        event: &str,
        resource: Option<&ServerId>,
        decision: &str,
        detail: Option<String>,
    ) -> Result<(), LogFull> {
        let entry = LogEntry::new(at, event, resource, decision, detail);
        if self.push(entry, MAX_MISSION_LOG) {
            Ok(())
        } else {
            Err(LogFull)
        }
    }

    /// Whether the log takes no more of the agent's entries ([`Mission::log_agent`]).
    #[must_use]
    pub fn log_full(&self) -> bool {
        self.log.len() >= MAX_MISSION_LOG
    }

    /// The mission log, oldest entry first.
    #[must_use]
    pub fn log_entries(&self) -> &[LogEntry] {
        &self.log
    }

    /// The mission log, oldest entry first, taken from the mission.
    #[must_use]
    pub fn into_log(self) -> Vec<LogEntry> {
        self.log
    }

    /// The one place an entry joins the log: only while it holds fewer than `cap`.
    fn push(&mut self, entry: LogEntry, cap: usize) -> bool {
        if self.log.len() >= cap {
            return false;
        }
        self.log.push(entry);
        true
    }
}

impl LogEntry {
    fn new(
        at: u64,
        event: &str,
        resource: Option<&ServerId>,
        decision: &str,
        detail: Option<String>,
    ) -> Self {
        Self {
            at,
            event: event.to_owned(),
            resource: resource.map(|r| r.as_str().to_owned()),
            decision: decision.to_owned(),
            detail,
        }
    }
}

/// The most entries a mission's log takes from its agent (its token requests under the
/// mission, refused ones included, its permission requests, audit records and updates):
/// past it each of these is refused ([`Mission::log_agent`]); no entry is dropped to make
/// room, so an agent cannot push its earlier actions out of the person's record by
/// flooding it.
pub const MAX_MISSION_LOG: usize = 10_000;

/// The room a mission's log keeps past [`MAX_MISSION_LOG`] for what the person and this
/// server record ([`Mission::log()`]): the person's standing approvals, budget grants, the
/// completion, the termination. Past it nothing more is recorded.
pub const MISSION_LOG_RESERVE: usize = 256;

/// A mission's log refused an entry of its agent: it holds [`MAX_MISSION_LOG`] already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this mission's log holds {MAX_MISSION_LOG} entries; propose a new mission")]
#[non_exhaustive]
pub struct LogFull;

/// The violation codes of the policy engine, stable across versions.
pub mod violation {
    /// The mission has ended.
    pub const TERMINATED: &str = "mission_terminated";
    /// Before `valid_from`.
    pub const NOT_YET_VALID: &str = "not_yet_valid";
    /// After `valid_until`.
    pub const EXPIRED: &str = "mission_expired";
    /// The resource is not among the approved ones.
    pub const RESOURCE_NOT_APPROVED: &str = "resource_not_approved";
    /// A scope value is not among the approved tools.
    pub const TOOL_NOT_APPROVED: &str = "tool_not_approved";
    /// The grant budget, or the mission's spending budget, is spent.
    pub const BUDGET_EXHAUSTED: &str = "budget_exhausted";
    /// The resource's budget is in another unit or scale than the mission's.
    pub const BUDGET_UNIT_MISMATCH: &str = "budget_unit_mismatch";
    /// A sub-agent acted and the mission does not allow delegation.
    pub const DELEGATION_NOT_ALLOWED: &str = "delegation_not_allowed";
    /// The mission's log takes no more of its agent's entries (not a check of the
    /// engine: [`super::Mission::log_agent`] refuses it, [`super::LogFull`]); the agent
    /// proposes a new mission to go on.
    pub const LOG_FULL: &str = "mission_log_full";
}

/// What the engine is asked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Check<'a> {
    pub(crate) now: u64,
    pub(crate) resource: &'a ServerId,
    /// The scope asked for (auth tokens); `None` for a person token.
    pub(crate) scope: Option<&'a str>,
    /// Whether a sub-agent is acting.
    pub(crate) subagent: bool,
    /// The budget the resource offers (auth tokens).
    pub(crate) offer: Option<&'a aauth_tokens::Budget>,
    /// The resource's consumption reports alongside it.
    pub(crate) consumed: &'a [aauth_tokens::Consumption],
}

impl Mission {
    /// The policy engine: the checks in a fixed order, the first failure's stable code.
    pub(crate) fn check(&self, c: &Check<'_>) -> Result<(), &'static str> {
        let k = &self.constraints;
        if self.terminated.is_some() {
            return Err(violation::TERMINATED);
        }
        if k.valid_from.is_some_and(|f| c.now < f) {
            return Err(violation::NOT_YET_VALID);
        }
        if k.valid_until.is_some_and(|u| c.now >= u) {
            return Err(violation::EXPIRED);
        }
        if k.resources
            .as_ref()
            .is_some_and(|rs| !rs.iter().any(|r| r == c.resource.as_str()))
        {
            return Err(violation::RESOURCE_NOT_APPROVED);
        }
        if let (Some(tools), Some(scope)) = (&k.tools, c.scope)
            && scope
                .split(' ')
                .filter(|v| !v.is_empty())
                .any(|v| !tools.iter().any(|t| t == v))
        {
            return Err(violation::TOOL_NOT_APPROVED);
        }
        if c.scope.is_some() && self.grants_spent() {
            return Err(violation::BUDGET_EXHAUSTED);
        }
        if c.subagent && !k.allow_subagents {
            return Err(violation::DELEGATION_NOT_ALLOWED);
        }
        if c.scope.is_some() {
            self.allocate(c.offer, c.consumed, c.resource)?;
        }
        Ok(())
    }

    /// Whether the grant budget (`max_grants`) is spent: no more auth tokens under it.
    #[must_use]
    pub fn grants_spent(&self) -> bool {
        self.constraints
            .max_grants
            .is_some_and(|m| self.grants >= m)
    }

    /// The names of the blob's `approved_tools`: what the agent may do without asking at
    /// the permission endpoint (draft -11 §Permission Endpoint). Not a limit on what it
    /// does; a blob without the member pre-approves nothing.
    ///
    /// # Errors
    ///
    /// [`InternalError::Unreadable`] for a stored blob that is not the JSON this server
    /// wrote.
    pub fn approved_tools(&self) -> Result<Vec<String>, InternalError> {
        #[derive(serde::Deserialize)]
        struct Tool {
            name: String,
        }
        #[derive(serde::Deserialize)]
        struct Blob {
            #[serde(default)]
            approved_tools: Vec<Tool>,
        }
        serde_json::from_slice::<Blob>(&self.blob)
            .map(|b| b.approved_tools.into_iter().map(|t| t.name).collect())
            .map_err(|e| InternalError::unreadable("stored mission blob", e))
    }

    /// The latest a token under this mission may expire.
    #[must_use]
    pub fn expires_at(&self) -> Option<u64> {
        self.constraints.valid_until
    }
}

/// `base64url(SHA-256(bytes))`.
#[must_use]
pub fn s256(bytes: &[u8]) -> String {
    aauth_keys::digest::s256(bytes)
}

/// An ISO 8601 UTC timestamp (`YYYY-MM-DDTHH:MM:SSZ`) for Unix seconds `t`.
#[must_use]
pub fn iso8601(t: u64) -> String {
    let days = t / 86_400;
    let secs = t % 86_400;
    // Civil from days (Howard Hinnant's algorithm), for 1970 onwards.
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// The approved blob for `proposal` by `agent`: the draft's members, the approved tools and
/// resources, `expires_at`, and the constraints under [`CONSTRAINTS_MEMBER`]. Serialized
/// once; the bytes are what `s256` covers.
pub(crate) fn blob(
    agent: &AgentId,
    proposal: &Proposal,
    constraints: &Constraints,
    now: u64,
) -> Vec<u8> {
    let mut m = serde_json::Map::new();
    m.insert("agent".to_owned(), agent.as_str().into());
    m.insert("approved_at".to_owned(), iso8601(now).into());
    m.insert(
        "description".to_owned(),
        proposal.description.clone().into(),
    );
    if let Some(u) = constraints.valid_until {
        m.insert("expires_at".to_owned(), iso8601(u).into());
    }
    if !proposal.tools.is_empty() {
        m.insert(
            "approved_tools".to_owned(),
            serde_json::to_value(&proposal.tools).unwrap_or_default(), // default: plain data always serializes
        );
    }
    // Drawn from the proposal's `resources` (draft -11 §Mission Approval), within the
    // person's own limits when they set any.
    let approved: Vec<&String> = proposal
        .resources
        .iter()
        .filter(|r| constraints.resources.as_ref().is_none_or(|l| l.contains(r)))
        .collect();
    if !approved.is_empty() {
        m.insert(
            "approved_resources".to_owned(),
            approved
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .into(),
        );
    }
    m.insert(
        CONSTRAINTS_MEMBER.to_owned(),
        serde_json::to_value(constraints).unwrap_or_default(), // default: plain data always serializes
    );
    serde_json::Value::Object(m).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
    }
}
