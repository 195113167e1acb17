//! The rows the SQLite and PostgreSQL stores keep: pending requests and missions as JSON documents
//! (identifiers as strings, parsed back on read, each failure a named
//! [`StoreError::Unreadable`]).

use crate::mission::{Constraints, LogEntry, Mission, TerminationReason};
use crate::pending::{ChatTurn, Pending, PendingRequest, PendingState};
use crate::store::StoreError;
use aauth_keys::Jwk;
use aauth_tokens::{AgentId, ServerId};
use serde::{Deserialize, Serialize};

/// The store a row's errors name: whichever backend keeps the rows (a deployment has one).
const STORE: &str = "person-server";

/// A stored `record` that does not read back.
pub(crate) fn unreadable<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    record: &'static str,
) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::unreadable(STORE, record, e)
}

/// A stored time or count (a signed 64-bit column) as unsigned; a negative one is 0.
pub(crate) fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// An unsigned time or count as a signed 64-bit column, saturating.
pub(crate) fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// What the identifiers of `agent`'s sub-agents begin and end with (`aauth:<local>+` and
/// `@<domain>`: draft -11 §Agent Identifiers reserves `+` for them), so that the records
/// of sub-agents' person tokens written before their parent was kept with them (migration
/// 6) are found as the parent's; matched by exact comparison of both ends, with a
/// non-empty discriminator between (no `LIKE` pattern, so no wildcard in an identifier
/// can widen it). `None` for an agent that is itself a sub-agent (one level deep: it has
/// none). This only widens what unlinking the parent revokes; nothing is granted on it.
pub(crate) fn subagent_affixes(agent: &AgentId) -> Option<(String, String)> {
    (!agent.local().contains('+')).then(|| {
        (
            format!("aauth:{}+", agent.local()),
            format!("@{}", agent.domain()),
        )
    })
}

/// A deferred request as stored (identifiers as strings, parsed back on read).
#[derive(Serialize, Deserialize)]
pub(crate) struct PendingRow {
    id: String,
    code: String,
    provider: String,
    agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subagent: Option<String>,
    key: Jwk,
    jkt: String,
    agent_exp: u64,
    account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    viewer: Option<String>,
    request: RequestRow,
    state: StateRow,
    expires: u64,
    attempts: u32,
    #[serde(default)]
    clarification: bool,
    #[serde(default)]
    chat: Vec<(String, Option<String>)>,
    #[serde(default)]
    revision: u32,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    device: Option<String>,
}

/// A four-party request as stored.
#[derive(Serialize, Deserialize)]
pub(crate) struct FourPartyRow {
    access_server: String,
    resource_token: String,
    agent_token: String,
    presented_token: String,
    subagent_token: Option<String>,
    upstream_token: Option<String>,
    // Stored under their first names: rows written before the rename read back.
    #[serde(default, rename = "as_pending")]
    access_server_pending: Option<String>,
    #[serde(default, rename = "as_question")]
    access_server_question: Option<(String, Option<String>)>,
}

impl FourPartyRow {
    fn into_four_party(self) -> Result<Box<crate::pending::FourParty>, StoreError> {
        Ok(Box::new(crate::pending::FourParty {
            access_server: server(&self.access_server)?,
            resource_token: self.resource_token,
            agent_token: self.agent_token,
            presented_token: self.presented_token,
            subagent_token: self.subagent_token,
            upstream_token: self.upstream_token,
            access_server_pending: self.access_server_pending,
            access_server_question: self.access_server_question,
        }))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind")]
#[allow(
    clippy::large_enum_variant,
    reason = "a row lives only while it is encoded or decoded"
)]
pub(crate) enum RequestRow {
    PersonToken {
        resource: String,
        #[serde(default)]
        mission_s256: Option<String>,
        #[serde(default)]
        chain: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upstream_jti: Option<Box<str>>,
    },
    AuthToken {
        resource: String,
        sub: String,
        scope: Option<String>,
        account_claim: Option<String>,
        mission_s256: Option<String>,
        tenant: Option<String>,
        presented_jti: String,
        presented_exp: u64,
        #[serde(default)]
        resource_token_jti: Option<Box<str>>,
        #[serde(default)]
        resource_interaction: Option<(String, String, String, bool)>,
        #[serde(default)]
        budget: Option<aauth_tokens::Budget>,
        #[serde(default)]
        budget_consumed: Vec<aauth_tokens::Consumption>,
        #[serde(default)]
        four_party: Option<Box<FourPartyRow>>,
        #[serde(default)]
        chain: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upstream_jti: Option<Box<str>>,
    },
    Mission {
        proposal: String,
    },
    Completion {
        s256: String,
        summary: String,
    },
    Permission {
        action: String,
        description: Option<String>,
        mission_s256: Option<String>,
    },
    Question {
        question: String,
        mission_s256: Option<String>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state")]
pub(crate) enum StateRow {
    Pending,
    Interacting,
    Approved { account: String },
    Answered { answer: String },
    Denied,
    Delivering { account: String, since: u64 },
    Done,
    Ended { error: String },
    Expired,
}

impl StateRow {
    fn from(state: &PendingState) -> Self {
        match state {
            PendingState::Pending => Self::Pending,
            PendingState::Interacting => Self::Interacting,
            PendingState::Approved { account } => Self::Approved {
                account: account.clone(),
            },
            PendingState::Answered { answer } => Self::Answered {
                answer: answer.clone(),
            },
            PendingState::Denied => Self::Denied,
            PendingState::Delivering { account, since } => Self::Delivering {
                account: account.clone(),
                since: *since,
            },
            PendingState::Ended { error } => Self::Ended {
                error: error.clone(),
            },
            PendingState::Expired => Self::Expired,
            // A state a later version adds is kept as ended, never as approved.
            _ => Self::Done,
        }
    }

    fn into_state(self) -> PendingState {
        match self {
            Self::Pending => PendingState::Pending,
            Self::Interacting => PendingState::Interacting,
            Self::Approved { account } => PendingState::Approved { account },
            Self::Answered { answer } => PendingState::Answered { answer },
            Self::Denied => PendingState::Denied,
            Self::Delivering { account, since } => PendingState::Delivering { account, since },
            Self::Done => PendingState::Done,
            Self::Ended { error } => PendingState::Ended { error },
            Self::Expired => PendingState::Expired,
        }
    }
}

pub(crate) fn server(s: &str) -> Result<ServerId, StoreError> {
    ServerId::parse(s).map_err(unreadable("server identifier"))
}

impl PendingRow {
    pub(crate) fn from(p: &Pending) -> Self {
        Self {
            id: p.id.clone(),
            code: p.code.clone(),
            provider: p.agent.0.as_str().to_owned(),
            agent: p.agent.1.as_str().to_owned(),
            subagent: p.subagent.as_ref().map(|a| a.as_str().to_owned()),
            key: p.key.clone(),
            jkt: p.jkt.clone(),
            agent_exp: p.agent_exp,
            account: p.account.clone(),
            viewer: p.viewer.clone(),
            request: match &p.request {
                PendingRequest::PersonToken {
                    resource,
                    mission_s256,
                    chain,
                    upstream_jti,
                } => RequestRow::PersonToken {
                    resource: resource.as_str().to_owned(),
                    mission_s256: mission_s256.clone(),
                    chain: chain.iter().map(|s| s.as_str().to_owned()).collect(),
                    upstream_jti: upstream_jti.clone(),
                },
                PendingRequest::AuthToken {
                    resource,
                    sub,
                    scope,
                    account_claim,
                    mission_s256,
                    tenant,
                    presented_jti,
                    resource_token_jti,
                    resource_interaction,
                    presented_exp,
                    budget,
                    budget_consumed,
                    four_party,
                    chain,
                    upstream_jti,
                } => RequestRow::AuthToken {
                    upstream_jti: upstream_jti.clone(),
                    resource_interaction: resource_interaction
                        .as_ref()
                        .map(|i| (i.url.clone(), i.code.clone(), i.flow.clone(), i.done)),
                    chain: chain.iter().map(|s| s.as_str().to_owned()).collect(),
                    resource: resource.as_str().to_owned(),
                    sub: sub.clone(),
                    scope: scope.clone(),
                    account_claim: account_claim.clone(),
                    mission_s256: mission_s256.clone(),
                    tenant: tenant.clone(),
                    presented_jti: presented_jti.clone(),
                    resource_token_jti: resource_token_jti.clone(),
                    presented_exp: *presented_exp,
                    budget: budget.clone(),
                    budget_consumed: budget_consumed.clone(),
                    four_party: four_party.as_ref().map(|f| {
                        Box::new(FourPartyRow {
                            access_server: f.access_server.as_str().to_owned(),
                            resource_token: f.resource_token.clone(),
                            agent_token: f.agent_token.clone(),
                            presented_token: f.presented_token.clone(),
                            subagent_token: f.subagent_token.clone(),
                            upstream_token: f.upstream_token.clone(),
                            access_server_pending: f.access_server_pending.clone(),
                            access_server_question: f.access_server_question.clone(),
                        })
                    }),
                },
                PendingRequest::Mission { proposal } => RequestRow::Mission {
                    proposal: proposal.clone(),
                },
                PendingRequest::Completion { s256, summary } => RequestRow::Completion {
                    s256: s256.clone(),
                    summary: summary.clone(),
                },
                PendingRequest::Permission {
                    action,
                    description,
                    mission_s256,
                } => RequestRow::Permission {
                    action: action.clone(),
                    description: description.clone(),
                    mission_s256: mission_s256.clone(),
                },
                PendingRequest::Question {
                    question,
                    mission_s256,
                } => RequestRow::Question {
                    question: question.clone(),
                    mission_s256: mission_s256.clone(),
                },
            },
            state: StateRow::from(&p.state),
            expires: p.expires,
            attempts: p.attempts,
            clarification: p.clarification,
            chat: p
                .chat
                .iter()
                .map(|t| (t.question.clone(), t.answer.clone()))
                .collect(),
            revision: p.revision,
            justification: p.justification.clone(),
            platform: p.platform.clone(),
            device: p.device.clone(),
        }
    }

    pub(crate) fn into_pending(self) -> Result<Pending, StoreError> {
        Ok(Pending {
            id: self.id,
            code: self.code,
            agent: (
                server(&self.provider)?,
                AgentId::parse(&self.agent).map_err(unreadable("agent identifier"))?,
            ),
            subagent: self
                .subagent
                .as_deref()
                .map(AgentId::parse)
                .transpose()
                .map_err(unreadable("sub-agent identifier"))?,
            key: self.key,
            jkt: self.jkt,
            agent_exp: self.agent_exp,
            account: self.account,
            viewer: self.viewer,
            request: match self.request {
                RequestRow::PersonToken {
                    resource,
                    mission_s256,
                    chain,
                    upstream_jti,
                } => PendingRequest::PersonToken {
                    resource: server(&resource)?,
                    mission_s256,
                    chain: chain.iter().map(|s| server(s)).collect::<Result<_, _>>()?,
                    upstream_jti,
                },
                RequestRow::AuthToken {
                    resource,
                    sub,
                    scope,
                    account_claim,
                    mission_s256,
                    tenant,
                    presented_jti,
                    resource_token_jti,
                    resource_interaction,
                    presented_exp,
                    budget,
                    budget_consumed,
                    four_party,
                    chain,
                    upstream_jti,
                } => PendingRequest::AuthToken {
                    upstream_jti,
                    resource_interaction: resource_interaction.map(|(url, code, flow, done)| {
                        let mut i = crate::pending::ResourceInteraction::new(url, code, flow);
                        i.done = done;
                        Box::new(i)
                    }),
                    chain: chain.iter().map(|s| server(s)).collect::<Result<_, _>>()?,
                    resource: server(&resource)?,
                    sub,
                    scope,
                    account_claim,
                    mission_s256,
                    tenant,
                    presented_jti,
                    resource_token_jti,
                    presented_exp,
                    budget,
                    budget_consumed,
                    four_party: four_party.map(|f| f.into_four_party()).transpose()?,
                },
                RequestRow::Mission { proposal } => PendingRequest::Mission { proposal },
                RequestRow::Completion { s256, summary } => {
                    PendingRequest::Completion { s256, summary }
                }
                RequestRow::Permission {
                    action,
                    description,
                    mission_s256,
                } => PendingRequest::Permission {
                    action,
                    description,
                    mission_s256,
                },
                RequestRow::Question {
                    question,
                    mission_s256,
                } => PendingRequest::Question {
                    question,
                    mission_s256,
                },
            },
            state: self.state.into_state(),
            expires: self.expires,
            attempts: self.attempts,
            clarification: self.clarification,
            chat: self
                .chat
                .into_iter()
                .map(|(q, a)| {
                    let mut t = ChatTurn::new(q);
                    t.answer = a;
                    t
                })
                .collect(),
            revision: self.revision,
            justification: self.justification,
            platform: self.platform,
            device: self.device,
            // The row's column, set by the reader.
            version: 0,
        })
    }
}

/// A mission as stored: the blob as base64url, identifiers as strings.
#[derive(Serialize, Deserialize)]
pub(crate) struct MissionRow {
    s256: String,
    blob: String,
    provider: String,
    agent: String,
    account: String,
    constraints: Constraints,
    terminated: Option<String>,
    grants: u32,
    #[serde(default)]
    ledger: Vec<crate::mission::Allocation>,
    log: Vec<LogEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    approvals: Vec<crate::mission::MissionApproval>,
    /// Rows written before missions had versions read as version 0.
    #[serde(default)]
    version: u64,
}

impl MissionRow {
    pub(crate) fn from(m: &Mission) -> Self {
        Self {
            s256: m.s256.clone(),
            blob: aauth_keys::base64url::encode(&m.blob),
            provider: m.agent.0.as_str().to_owned(),
            agent: m.agent.1.as_str().to_owned(),
            account: m.account.clone(),
            constraints: m.constraints.clone(),
            terminated: m.terminated.map(|r| r.as_str().to_owned()),
            grants: m.grants,
            ledger: m.ledger.clone(),
            log: m.log_entries().to_vec(),
            approvals: m.approvals.clone(),
            version: m.version,
        }
    }

    pub(crate) fn into_mission(self) -> Result<Mission, StoreError> {
        let blob = aauth_keys::base64url::decode(&self.blob).map_err(unreadable("mission"))?;
        // The stored bytes must still be the ones the digest names.
        if crate::mission::s256(&blob) != self.s256 {
            return Err(StoreError::unreadable(
                STORE,
                "mission",
                "its blob does not match its s256",
            ));
        }
        Ok(Mission::restore(
            self.s256,
            blob,
            (
                server(&self.provider)?,
                AgentId::parse(&self.agent).map_err(unreadable("agent identifier"))?,
            ),
            self.account,
            self.constraints,
            crate::mission::Progress {
                terminated: self
                    .terminated
                    .as_deref()
                    .map(|r| {
                        TerminationReason::from_value(r).ok_or_else(|| {
                            StoreError::unreadable(STORE, "mission", "unknown termination reason")
                        })
                    })
                    .transpose()?,
                grants: self.grants,
                ledger: self.ledger,
                log: self.log,
                approvals: self.approvals,
                version: self.version,
            },
        ))
    }
}

pub(crate) fn pending_from_json(data: &str, version: i64) -> Result<Pending, StoreError> {
    let mut p = serde_json::from_str::<PendingRow>(data)
        .map_err(unreadable("pending request"))?
        .into_pending()?;
    p.version = u(version);
    Ok(p)
}

/// The columns of a person-token record, in [`person_row`]'s order.
pub(crate) const PERSON_COLUMNS: &str =
    "jti, aud, sub, account, provider, agent, mission, exp, parent";

/// A `person_tokens` row as read.
pub(crate) type PersonRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<String>,
);

/// Reads [`PERSON_COLUMNS`].
#[cfg(feature = "sqlite")]
pub(crate) fn person_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PersonRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

/// A person-token row, read back.
pub(crate) fn person_record(row: PersonRow) -> Result<crate::PersonTokenRecord, StoreError> {
    let (jti, aud, sub, account, provider, agent, mission, exp, parent) = row;
    Ok(crate::PersonTokenRecord {
        jti,
        aud: server(&aud)?,
        sub,
        account,
        agent: (
            server(&provider)?,
            AgentId::parse(&agent).map_err(unreadable("agent identifier"))?,
        ),
        parent: parent
            .map(|p| AgentId::parse(&p).map_err(unreadable("parent agent identifier")))
            .transpose()?,
        mission_s256: mission,
        exp: u(exp),
    })
}

/// The columns of an auth-token record, in [`auth_row`]'s order.
pub(crate) const AUTH_COLUMNS: &str = "jti, aud, sub, account, presented_jti, exp";

/// An `auth_tokens` row as read.
pub(crate) type AuthRow = (String, String, String, String, String, i64);

/// Reads [`AUTH_COLUMNS`].
#[cfg(feature = "sqlite")]
pub(crate) fn auth_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuthRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

/// An auth-token row, read back.
pub(crate) fn auth_record(row: AuthRow) -> Result<crate::AuthTokenRecord, StoreError> {
    let (jti, aud, sub, account, presented_jti, exp) = row;
    Ok(crate::AuthTokenRecord {
        jti,
        aud: server(&aud)?,
        sub,
        account,
        presented_jti,
        exp: u(exp),
    })
}
