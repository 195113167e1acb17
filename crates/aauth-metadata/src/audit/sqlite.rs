//! The audit log in an SQLite database (feature `sqlite`): the table, its append, sweep
//! and query, shared by the servers' SQLite stores, and the set-up of such a store's
//! database ([`set_up`], [`has_column`]).

use std::time::Duration;

use rusqlite::{Connection, params};

use super::{AuditAction, AuditEvent, AuditPage, AuditQuery};
use crate::store::StoreError;

/// The table and its indexes, created when missing (in a store's schema); [`migrate`]
/// then adds what a file an earlier version created lacks.
pub const TABLE: &str = "
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, action TEXT NOT NULL,
  account TEXT, agent TEXT, resource TEXT, detail TEXT NOT NULL,
  scope TEXT, request TEXT);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE INDEX IF NOT EXISTS audit_agent ON audit (agent, at);
CREATE INDEX IF NOT EXISTS audit_resource ON audit (resource, at);
CREATE INDEX IF NOT EXISTS audit_account ON audit (account, at);
CREATE INDEX IF NOT EXISTS audit_agent_seq ON audit (agent, seq);
CREATE INDEX IF NOT EXISTS audit_account_seq ON audit (account, seq);
";

fn secs(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// Adds the columns a file an earlier version created lacks (`scope`, `request`).
///
/// # Errors
///
/// [`StoreError`] (`store` names the store).
pub fn migrate(c: &Connection, store: &'static str) -> Result<(), StoreError> {
    if !has_column(c, "audit", "scope", store)? {
        c.execute_batch(
            "ALTER TABLE audit ADD COLUMN scope TEXT;
             ALTER TABLE audit ADD COLUMN request TEXT;",
        )
        .map_err(|e| StoreError::backend(store, e))?;
    }
    Ok(())
}

/// Whether `table` (a name the store's own code writes, never input) has `column`: what
/// a migration checks before adding a column to a file an earlier version created.
///
/// # Errors
///
/// [`StoreError`] (`store` names the store).
pub fn has_column(
    c: &Connection,
    table: &str,
    column: &str,
    store: &'static str,
) -> Result<bool, StoreError> {
    let columns = c
        .prepare(&format!("PRAGMA table_info({table})"))
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(1))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| StoreError::backend(store, e))?;
    Ok(columns.iter().any(|n| n == column))
}

/// Sets up a server's SQLite database on `conn`: `pragmas` first, outside any
/// transaction (the journal mode cannot change inside one; while another process
/// changes it SQLite answers `SQLITE_BUSY` at once, calling no busy handler, so they are
/// tried again every 50 ms for up to five seconds); then, in one `BEGIN IMMEDIATE`
/// transaction, the store's own tables and what later versions added to them
/// (`schema`, which checks each column inside the transaction, [`has_column`]), and the
/// audit log's table and columns. A crash part way leaves the file as it was, and two
/// processes opening the same earlier file at once (a server starting while `aauth
/// admin` runs) take turns, the second finding the columns there; it waits within the
/// connection's busy timeout (rusqlite's default, five seconds).
///
/// # Errors
///
/// [`StoreError`] (`store` names the store), or what `schema` returns.
pub fn set_up(
    conn: &mut Connection,
    store: &'static str,
    pragmas: &str,
    schema: impl FnOnce(&Connection) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let err = |e| StoreError::backend(store, e);
    let mut tries = 0;
    loop {
        match conn.execute_batch(pragmas) {
            Ok(()) => break,
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 100 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(err(e)),
        }
    }
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    schema(&tx)?;
    tx.execute_batch(TABLE).map_err(err)?;
    migrate(&tx, store)?;
    tx.commit().map_err(err)
}

/// Appends `e`; with `sweep`, first drops the events older than `retention` before it.
///
/// # Errors
///
/// [`StoreError`] (`store` names the store).
pub fn record(
    c: &Connection,
    store: &'static str,
    e: &AuditEvent,
    sweep: Option<Duration>,
) -> Result<(), StoreError> {
    let err = |e| StoreError::backend(store, e);
    if let Some(retention) = sweep {
        c.prepare_cached("DELETE FROM audit WHERE at < ?1")
            .and_then(|mut s| s.execute(params![secs(e.at.saturating_sub(retention.as_secs()))]))
            .map_err(err)?;
    }
    c.prepare_cached(
        "INSERT INTO audit (at, action, account, agent, resource, scope, request, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            secs(e.at),
            e.action.as_str(),
            e.account,
            e.agent,
            e.resource,
            e.scope,
            e.request,
            e.detail
        ])
    })
    .map(drop)
    .map_err(err)
}

/// A row as read: seq, at, action, account, agent, resource, scope, request, detail.
type Row = (
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

/// The page of events `q` selects, newest first (in the order they were recorded), or
/// oldest first when it asks.
///
/// # Errors
///
/// [`StoreError`] (`store` names the store).
pub fn query(c: &Connection, store: &'static str, q: &AuditQuery) -> Result<AuditPage, StoreError> {
    let err = |e| StoreError::backend(store, e);
    let (sql, values) = super::select::select(q, '?');
    let values = values.into_iter().map(|v| match v {
        super::select::Value::Text(s) => rusqlite::types::Value::Text(s.to_owned()),
        super::select::Value::Int(i) => rusqlite::types::Value::Integer(i),
    });
    let mut stmt = c.prepare_cached(&sql).map_err(err)?;
    let rows: Vec<Row> = stmt
        .query_map(rusqlite::params_from_iter(values), |r| {
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
        })
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let unreadable =
        |what, e: Box<dyn std::error::Error + Send + Sync>| StoreError::unreadable(store, what, e);
    let rows = rows
        .into_iter()
        .map(
            |(seq, at, action, account, agent, resource, scope, request, detail)| {
                let action = action
                    .parse::<AuditAction>()
                    .map_err(|e| unreadable("audit action", Box::new(e) as _))?;
                let unsigned =
                    |v: i64, what| u64::try_from(v).map_err(|e| unreadable(what, Box::new(e) as _));
                let mut e = AuditEvent::new(unsigned(at, "audit time")?, action, detail);
                e.account = account;
                e.agent = agent;
                e.resource = resource;
                e.scope = scope;
                e.request = request;
                Ok((unsigned(seq, "audit sequence")?, e))
            },
        )
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(AuditPage::from_rows(q, rows))
}
