//! The audit log in PostgreSQL (feature `postgres`): the table a store's migrations
//! create, and its append, query and sweep, shared by the servers' PostgreSQL stores.

use super::{AuditAction, AuditEvent, AuditPage, AuditQuery};
use crate::store::StoreError;
use crate::store::postgres::Pg;
use tokio_postgres::types::ToSql;

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

/// The scope and the request of each event (a later migration than [`TABLE`]'s).
pub const SCOPE_AND_REQUEST: &str =
    "ALTER TABLE audit ADD COLUMN scope TEXT, ADD COLUMN request TEXT;";

/// Indexes in the order events are recorded, per agent and per account (a later
/// migration than [`SCOPE_AND_REQUEST`]): an agent's newest or oldest event for a
/// dashboard, or a page of them, is read from the index, not sorted from all of them.
pub const SEQ_INDEXES: &str = "
CREATE INDEX audit_agent_seq ON audit (agent, seq);
CREATE INDEX audit_account_seq ON audit (account, seq);
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
        "INSERT INTO audit (at, action, account, agent, resource, scope, request, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &secs(e.at),
            &e.action.as_str(),
            &e.account,
            &e.agent,
            &e.resource,
            &e.scope,
            &e.request,
            &e.detail,
        ],
    )
    .await
    .map(drop)
}

/// The page of events `q` selects, newest first (by the order they were recorded in), or
/// oldest first when it asks.
///
/// # Errors
///
/// [`StoreError`].
pub async fn query(pg: &Pg, q: &AuditQuery) -> Result<AuditPage, StoreError> {
    let (sql, values) = super::select::select(q, '$');
    let params: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|v| match v {
            super::select::Value::Text(s) => s as &(dyn ToSql + Sync),
            super::select::Value::Int(i) => i as &(dyn ToSql + Sync),
        })
        .collect();
    let rows = pg.query(&sql, &params).await?;
    let rows = rows
        .iter()
        .map(|r| {
            let seq: i64 = pg.get(r, 0, "audit event")?;
            let at: i64 = pg.get(r, 1, "audit event")?;
            let action: String = pg.get(r, 2, "audit event")?;
            let action = action
                .parse::<AuditAction>()
                .map_err(|e| StoreError::unreadable(pg.store(), "audit action", e))?;
            let unsigned = |v: i64, what| {
                u64::try_from(v).map_err(|e| StoreError::unreadable(pg.store(), what, e))
            };
            let mut e = AuditEvent::new(
                unsigned(at, "audit time")?,
                action,
                pg.get::<String>(r, 8, "audit event")?,
            );
            e.account = pg.get(r, 3, "audit event")?;
            e.agent = pg.get(r, 4, "audit event")?;
            e.resource = pg.get(r, 5, "audit event")?;
            e.scope = pg.get(r, 6, "audit event")?;
            e.request = pg.get(r, 7, "audit event")?;
            Ok((unsigned(seq, "audit sequence")?, e))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(AuditPage::from_rows(q, rows))
}
