//! The operator's queries on the SQLite store: bindings, the issued records and the audit
//! log, each on the connection (the store's trait methods run them on the blocking pool).

use aauth_keys::time::UnixTime;
use aauth_tokens::AgentId;
use rusqlite::{Connection, params};

use super::err;
use crate::audit::{AUDIT_RETENTION, AuditAction, AuditEvent, AuditQuery};
use crate::rows::{
    AUTH_COLUMNS, PERSON_COLUMNS, auth_record, auth_row, i, person_record, person_row, server, u,
    unreadable,
};
use crate::store::{AuthTokenRecord, Binding, PersonTokenRecord, RECORD_GRACE, StoreError};

/// The agent `agent` of a row, read back.
fn agent_id(agent: &str) -> Result<AgentId, StoreError> {
    AgentId::parse(agent).map_err(unreadable("agent identifier"))
}

pub(super) fn bindings(c: &Connection, account: Option<&str>) -> Result<Vec<Binding>, StoreError> {
    let mut stmt = c
        .prepare(
            "SELECT provider, agent, account FROM bindings
             WHERE ?1 IS NULL OR account = ?1 ORDER BY account, provider, agent",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map(params![account], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    rows.into_iter()
        .map(|(provider, agent, account)| {
            Ok(Binding {
                provider: server(&provider)?,
                agent: agent_id(&agent)?,
                account,
            })
        })
        .collect()
}

pub(super) fn issued_records(
    c: &Connection,
    account: Option<&str>,
    now: UnixTime,
) -> Result<(Vec<PersonTokenRecord>, Vec<AuthTokenRecord>), StoreError> {
    let live = params![account, i(RECORD_GRACE), i(now.as_secs())];
    let mut stmt = c
        .prepare(&format!(
            "SELECT {PERSON_COLUMNS} FROM person_tokens
             WHERE (?1 IS NULL OR account = ?1) AND exp + ?2 > ?3 ORDER BY exp"
        ))
        .map_err(err)?;
    let person = stmt
        .query_map(live, person_row)
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?
        .into_iter()
        .map(person_record)
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut stmt = c
        .prepare(&format!(
            "SELECT {AUTH_COLUMNS} FROM auth_tokens
             WHERE (?1 IS NULL OR account = ?1) AND exp + ?2 > ?3 ORDER BY exp"
        ))
        .map_err(err)?;
    let auth = stmt
        .query_map(live, auth_row)
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?
        .into_iter()
        .map(auth_record)
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((person, auth))
}

/// Appends `e`; with `sweep`, first drops the events past [`AUDIT_RETENTION`].
pub(super) fn record_event(c: &Connection, e: &AuditEvent, sweep: bool) -> Result<(), StoreError> {
    if sweep {
        c.execute(
            "DELETE FROM audit WHERE at < ?1",
            params![i(e.at.saturating_sub(AUDIT_RETENTION.as_secs()))],
        )
        .map_err(err)?;
    }
    c.execute(
        "INSERT INTO audit (at, action, account, agent, resource, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            i(e.at),
            e.action.as_str(),
            e.account,
            e.agent,
            e.resource,
            e.detail
        ],
    )
    .map(drop)
    .map_err(err)
}

pub(super) fn audit(c: &Connection, q: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
    let mut stmt = c
        .prepare(
            "SELECT at, action, account, agent, resource, detail FROM audit
             WHERE (?1 IS NULL OR agent = ?1) AND (?2 IS NULL OR resource = ?2)
               AND (?3 IS NULL OR account = ?3) AND (?4 IS NULL OR action = ?4)
               AND (?5 IS NULL OR at >= ?5) AND (?6 IS NULL OR at <= ?6)
             ORDER BY at DESC, seq DESC LIMIT ?7",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map(
            params![
                q.agent,
                q.resource,
                q.account,
                q.action.map(AuditAction::as_str),
                q.since.map(i),
                q.until.map(i),
                i64::try_from(q.effective_limit()).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                ))
            },
        )
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    rows.into_iter()
        .map(|(at, action, account, agent, resource, detail)| {
            let action = action.parse().map_err(unreadable("audit action"))?;
            let mut e = AuditEvent::new(u(at), action, detail);
            e.account = account;
            e.agent = agent;
            e.resource = resource;
            Ok(e)
        })
        .collect()
}
