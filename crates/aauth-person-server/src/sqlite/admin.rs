//! The operator's queries on the SQLite store: bindings and the issued records, each on
//! the connection (the store's trait methods run them on the blocking pool). The audit
//! log is `aauth_metadata::audit::sqlite`'s.

use aauth_keys::time::UnixTime;
use aauth_tokens::AgentId;
use rusqlite::{Connection, params};

use super::err;
use crate::rows::{
    AUTH_COLUMNS, PERSON_COLUMNS, auth_record, auth_row, i, person_record, person_row, server,
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
