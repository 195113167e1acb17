//! The Person Server's SQLite schema and its migrations (each applied once, in order, at
//! open).

use aauth_metadata::store::StoreError;
use rusqlite::{Connection, params};

use super::err;
use crate::rows::MissionRow;

/// The connection's settings, set outside any transaction (the journal mode cannot change
/// inside one).
const PRAGMAS: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;
";

/// The tables as this version creates them (on a new file).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bindings (
  provider TEXT NOT NULL, agent TEXT NOT NULL, account TEXT NOT NULL,
  PRIMARY KEY (provider, agent));
CREATE TABLE IF NOT EXISTS person_tokens (
  jti TEXT PRIMARY KEY, aud TEXT NOT NULL, sub TEXT NOT NULL, account TEXT NOT NULL,
  provider TEXT NOT NULL, agent TEXT NOT NULL, mission TEXT, exp INTEGER NOT NULL,
  parent TEXT);
CREATE TABLE IF NOT EXISTS auth_tokens (
  jti TEXT PRIMARY KEY, aud TEXT NOT NULL, sub TEXT NOT NULL, account TEXT NOT NULL,
  presented_jti TEXT NOT NULL, exp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS revoked (jti TEXT PRIMARY KEY, exp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending (
  id TEXT PRIMARY KEY, code TEXT NOT NULL UNIQUE, expires INTEGER NOT NULL, data TEXT NOT NULL,
  version INTEGER NOT NULL DEFAULT 0, agent TEXT NOT NULL DEFAULT '',
  provider TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS agent_tokens (
  iss TEXT NOT NULL, jti TEXT NOT NULL, agent TEXT NOT NULL, exp INTEGER NOT NULL,
  PRIMARY KEY (iss, jti));
CREATE INDEX IF NOT EXISTS person_tokens_agent ON person_tokens (provider, agent);
CREATE INDEX IF NOT EXISTS auth_tokens_presented ON auth_tokens (presented_jti);
CREATE TABLE IF NOT EXISTS missions (
  s256 TEXT PRIMARY KEY, data TEXT NOT NULL,
  owner_provider TEXT NOT NULL DEFAULT '', owner_agent TEXT NOT NULL DEFAULT '',
  account TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS passwords (account TEXT PRIMARY KEY, phc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS person_tokens_exp ON person_tokens (exp);
CREATE INDEX IF NOT EXISTS auth_tokens_exp ON auth_tokens (exp);
CREATE INDEX IF NOT EXISTS pending_expires ON pending (expires);
CREATE TABLE IF NOT EXISTS chains (
  jti TEXT PRIMARY KEY, chain TEXT NOT NULL, exp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS presentations (
  jti TEXT NOT NULL, access_server TEXT NOT NULL, exp INTEGER NOT NULL,
  PRIMARY KEY (jti, access_server));
CREATE TABLE IF NOT EXISTS sessions (
  key TEXT PRIMARY KEY, account TEXT NOT NULL, csrf TEXT NOT NULL,
  expires INTEGER NOT NULL, bad_codes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS oidc_links (
  issuer TEXT NOT NULL, subject TEXT NOT NULL, account TEXT NOT NULL,
  PRIMARY KEY (issuer, subject));
";

/// Sets up the database of `conn` ([`aauth_metadata::audit::sqlite::set_up`]): the tables
/// (audit log included), and what later versions keep added to a file an earlier version
/// created, all in one `BEGIN IMMEDIATE` transaction: a crash part way leaves the file as
/// it was, and two processes opening the same old file at once (the server starting
/// while `aauth admin` runs) take turns, the second finding the columns there (each one
/// is checked inside the transaction).
pub(super) fn set_up(conn: &mut Connection, store: &'static str) -> Result<(), StoreError> {
    aauth_metadata::audit::sqlite::set_up(conn, store, PRAGMAS, |c| {
        c.execute_batch(SCHEMA).map_err(err)?;
        migrate(c)
    })
}

/// Adds what later versions keep to a database an earlier version created (inside
/// [`set_up`]'s transaction).
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let has = |table: &str, column: &str| {
        aauth_metadata::audit::sqlite::has_column(conn, table, column, super::STORE)
    };
    if !has("pending", "version")? {
        conn.execute_batch(
            "ALTER TABLE pending ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE pending ADD COLUMN agent TEXT NOT NULL DEFAULT '';",
        )
        .map_err(err)?;
    }
    if !has("pending", "provider")? {
        // The provider is the agent column's first word (`"{provider} {agent}"`).
        conn.execute_batch(
            "ALTER TABLE pending ADD COLUMN provider TEXT NOT NULL DEFAULT '';
             UPDATE pending SET provider = substr(agent, 1, instr(agent, ' ') - 1)
               WHERE instr(agent, ' ') > 0;",
        )
        .map_err(err)?;
    }
    if !has("missions", "owner_agent")? {
        conn.execute_batch(
            "ALTER TABLE missions ADD COLUMN owner_provider TEXT NOT NULL DEFAULT '';
             ALTER TABLE missions ADD COLUMN owner_agent TEXT NOT NULL DEFAULT '';",
        )
        .map_err(err)?;
    }
    if !has("missions", "account")? {
        conn.execute_batch("ALTER TABLE missions ADD COLUMN account TEXT NOT NULL DEFAULT '';")
            .map_err(err)?;
    }
    if !has("passwords", "disabled")? {
        conn.execute_batch("ALTER TABLE passwords ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;")
            .map_err(err)?;
    }
    // Rows written before have none: their sub-agent tokens expire within the hour.
    if !has("person_tokens", "parent")? {
        conn.execute_batch("ALTER TABLE person_tokens ADD COLUMN parent TEXT;")
            .map_err(err)?;
    }
    backfill_mission_owners(conn)?;
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS pending_agent ON pending (agent, expires);
         CREATE INDEX IF NOT EXISTS pending_provider ON pending (provider, expires);
         CREATE INDEX IF NOT EXISTS person_tokens_parent ON person_tokens (provider, parent);
         CREATE INDEX IF NOT EXISTS missions_account ON missions (account);",
    )
    .map_err(err)
}

/// Copies each mission's owner out of its JSON into the columns the owner-keyed lookup
/// reads (rows an earlier version wrote have them empty). A row that does not read back
/// keeps them empty, so no agent owns it, and fails where it is read by `s256`.
fn backfill_mission_owners(conn: &Connection) -> Result<(), StoreError> {
    let rows = {
        let mut stmt = conn
            .prepare("SELECT s256, data FROM missions WHERE owner_agent = '' OR account = ''")
            .map_err(err)?;
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?
    };
    for (s256, data) in rows {
        let Ok(m) = serde_json::from_str::<MissionRow>(&data).map(MissionRow::into_mission) else {
            continue;
        };
        let Ok(m) = m else { continue };
        conn.execute(
            "UPDATE missions SET owner_provider = ?2, owner_agent = ?3, account = ?4 WHERE s256 = ?1",
            params![s256, m.agent.0.as_str(), m.agent.1.as_str(), m.account],
        )
        .map_err(err)?;
    }
    Ok(())
}
