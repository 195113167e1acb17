//! The embedded SQLite store (feature `sqlite`, on by default): what an Access Server
//! keeps across restarts. One connection behind a mutex, used from Tokio's blocking
//! pool; WAL journaling with `synchronous = NORMAL` (a commit survives the process
//! crashing).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use aauth_keys::time::UnixTime;
use aauth_metadata::audit::{AUDIT_RETENTION, AuditEvent, AuditPage, AuditQuery};
use aauth_tokens::ServerId;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use crate::store::{
    AsStore, Awaiting, BindError, IssuedRecord, RECORD_GRACE, Standing, StandingQuery, StoreError,
    TAKE_LEASE, WAITING_KEPT, WaitingCaps, WaitingCreated, WaitingPut, WaitingRecord,
};

/// Set on every connection, outside the set-up transaction (the journal mode cannot be
/// changed inside one).
const PRAGMAS: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
";

/// The tables as this version creates them (on a new file).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS issued (
  jti TEXT PRIMARY KEY, ps TEXT NOT NULL, presented_jti TEXT NOT NULL, aud TEXT NOT NULL,
  exp INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS issued_presented ON issued (ps, presented_jti);
CREATE INDEX IF NOT EXISTS issued_exp ON issued (exp);
CREATE TABLE IF NOT EXISTS revoked (
  iss TEXT NOT NULL, jti TEXT NOT NULL, exp INTEGER NOT NULL, PRIMARY KEY (iss, jti));
CREATE INDEX IF NOT EXISTS revoked_exp ON revoked (exp);
CREATE TABLE IF NOT EXISTS waiting (
  id TEXT PRIMARY KEY, ps TEXT NOT NULL, expires INTEGER NOT NULL,
  rt_iss TEXT NOT NULL, rt_jti TEXT NOT NULL, code TEXT UNIQUE, awaiting TEXT NOT NULL,
  data TEXT NOT NULL, taken_until INTEGER);
CREATE INDEX IF NOT EXISTS waiting_rt ON waiting (rt_iss, rt_jti);
CREATE INDEX IF NOT EXISTS waiting_expires ON waiting (expires);
CREATE INDEX IF NOT EXISTS waiting_ps ON waiting (ps, expires);
CREATE TABLE IF NOT EXISTS bindings (
  ps TEXT NOT NULL, resource TEXT NOT NULL, sub TEXT NOT NULL, account TEXT NOT NULL,
  PRIMARY KEY (ps, resource, sub));
CREATE TABLE IF NOT EXISTS billed (ps TEXT PRIMARY KEY);
";

/// An [`AsStore`] in an SQLite database file.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use aauth_access_server::{AsStore, SqliteStore};
/// use aauth_tokens::ServerId;
/// let dir = std::env::temp_dir().join(format!("aauth-as-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("as.sqlite");
/// let ps = ServerId::parse("https://ps.example")?;
/// SqliteStore::open(&path)?.bill(&ps).await?;
/// // Reopened (a restart): the billing relationship is still there.
/// assert!(SqliteStore::open(&path)?.is_billed(&ps).await?);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Writes so far: expired rows are swept every [`SWEEP_EVERY`] writes, not on each.
    writes: Arc<std::sync::atomic::AtomicU32>,
    /// How long audit events are kept.
    audit_retention: std::time::Duration,
}

/// How many writes pass between two sweeps of expired rows.
const SWEEP_EVERY: u32 = 256;

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// Which store a [`StoreError`] names.
const STORE: &str = "access-server sqlite";

/// A failure of the database itself.
fn err(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::backend(STORE, e)
}

/// A stored `record` that does not read back.
fn unreadable<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    record: &'static str,
) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::unreadable(STORE, record, e)
}

/// Seconds as SQLite's signed integer (saturating: no time here is past 2^63).
fn secs(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn server_id(s: &str) -> Result<ServerId, StoreError> {
    ServerId::parse(s).map_err(unreadable("server identifier"))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the file cannot be opened or the schema created.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::with_connection(Connection::open(path).map_err(err)?)
    }

    /// An in-memory database (tests).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::with_connection(Connection::open_in_memory().map_err(err)?)
    }

    fn with_connection(mut conn: Connection) -> Result<Self, StoreError> {
        set_up(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            writes: Arc::default(),
            audit_retention: AUDIT_RETENTION,
        })
    }

    /// Keeps audit events for `retention` instead of [`AUDIT_RETENTION`] (90 days).
    #[must_use]
    pub fn audit_retention(mut self, retention: std::time::Duration) -> Self {
        self.audit_retention = retention;
        self
    }

    /// Whether this write should also sweep expired rows.
    fn sweep(&self) -> bool {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
    }

    /// Runs `f` on the connection in the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        aauth_metadata::store::blocking(STORE, move || {
            let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&conn)
        })
        .await
    }
}

type WaitingRow = (
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<i64>,
);

fn waiting_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WaitingRow> {
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

fn waiting_record(
    (id, ps, expires, rt_iss, rt_jti, code, awaiting, data, taken_until): WaitingRow,
) -> Result<WaitingRecord, StoreError> {
    Ok(WaitingRecord {
        id,
        ps: server_id(&ps)?,
        expires: u64::try_from(expires).map_err(unreadable("waiting request"))?,
        resource_token: (rt_iss, rt_jti),
        code,
        awaiting: Awaiting::parse(&awaiting).ok_or_else(|| {
            StoreError::unreadable(STORE, "waiting request", format!("the step {awaiting:?}"))
        })?,
        data,
        taken_until: taken_until
            .map(u64::try_from)
            .transpose()
            .map_err(unreadable("waiting request's lease"))?,
    })
}

const WAITING_COLUMNS: &str = "id, ps, expires, rt_iss, rt_jti, code, awaiting, data, taken_until";

/// The account the binding of `(ps, resource, sub)` names, if it exists.
fn bound_account(
    conn: &Connection,
    ps: &str,
    resource: &str,
    sub: &str,
) -> Result<Option<String>, StoreError> {
    conn.prepare_cached("SELECT account FROM bindings WHERE ps = ?1 AND resource = ?2 AND sub = ?3")
        .and_then(|mut s| {
            s.query_row(params![ps, resource, sub], |r| r.get(0))
                .optional()
        })
        .map_err(err)
}

/// A new waiting request, unless its id or its interaction code is another row's (then
/// nothing is written).
const INSERT_NEW_WAITING: &str = "INSERT OR IGNORE INTO waiting \
     (id, ps, expires, rt_iss, rt_jti, code, awaiting, data) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// A waiting request, over the row of its id if there is one. Never `INSERT OR REPLACE`:
/// its conflict on the code would delete the other row that holds it; here that
/// conflict fails the statement and writes nothing (the id's is the update).
const UPSERT_WAITING: &str = "INSERT INTO waiting \
     (id, ps, expires, rt_iss, rt_jti, code, awaiting, data) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
     ON CONFLICT (id) DO UPDATE SET ps = excluded.ps, expires = excluded.expires, \
     rt_iss = excluded.rt_iss, rt_jti = excluded.rt_jti, code = excluded.code, \
     awaiting = excluded.awaiting, data = excluded.data, taken_until = NULL";

/// A taken waiting request written back (`?9`: its lease, as taken), not taken any more;
/// nothing when it is no longer taken so. Its code's conflict with another row's fails
/// the statement, as in [`UPSERT_WAITING`].
const PUT_TAKEN: &str = "UPDATE waiting SET ps = ?2, expires = ?3, rt_iss = ?4, rt_jti = ?5, \
     code = ?6, awaiting = ?7, data = ?8, taken_until = NULL \
     WHERE id = ?1 AND taken_until = ?9";

/// Runs `sql` (one of the two above) with `record`'s columns; the rows written.
fn write_waiting(conn: &Connection, sql: &str, record: &WaitingRecord) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params![
        record.id,
        record.ps.as_str(),
        secs(record.expires),
        record.resource_token.0,
        record.resource_token.1,
        record.code,
        record.awaiting.as_str(),
        record.data
    ])
}

/// Writes `record` in place of the row of its id, if there is one, unless its
/// interaction code is another row's ([`WaitingPut::CodeTaken`]: nothing is written).
fn put_waiting_row(conn: &Connection, record: &WaitingRecord) -> Result<WaitingPut, StoreError> {
    code_conflict(write_waiting(conn, UPSERT_WAITING, record).map(|_| WaitingPut::Stored))
}

/// Writes `record` back over the row of `taken` while it holds `taken`'s lease
/// ([`WaitingPut::NoLongerTaken`] otherwise), unless its interaction code is another
/// row's ([`WaitingPut::CodeTaken`]); nothing is written then.
fn put_taken_row(
    conn: &Connection,
    record: &WaitingRecord,
    taken: &WaitingRecord,
) -> Result<WaitingPut, StoreError> {
    if record.id != taken.id {
        return Ok(WaitingPut::NoLongerTaken);
    }
    let written = conn.prepare_cached(PUT_TAKEN).and_then(|mut s| {
        s.execute(params![
            record.id,
            record.ps.as_str(),
            secs(record.expires),
            record.resource_token.0,
            record.resource_token.1,
            record.code,
            record.awaiting.as_str(),
            record.data,
            taken.taken_until.map(secs)
        ])
    });
    code_conflict(written.map(|n| {
        if n == 1 {
            WaitingPut::Stored
        } else {
            WaitingPut::NoLongerTaken
        }
    }))
}

/// A write's outcome, its failure on another row's interaction code being
/// [`WaitingPut::CodeTaken`].
fn code_conflict(written: rusqlite::Result<WaitingPut>) -> Result<WaitingPut, StoreError> {
    match written {
        Ok(put) => Ok(put),
        // The id is the primary key (its conflicts `SQLITE_CONSTRAINT_PRIMARYKEY`, and
        // the update): a uniqueness conflict is the code's.
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            Ok(WaitingPut::CodeTaken)
        }
        Err(e) => Err(err(e)),
    }
}

fn waiting_query(
    conn: &Connection,
    condition: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<WaitingRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {WAITING_COLUMNS} FROM waiting WHERE {condition}"
        ))
        .map_err(err)?;
    let rows = stmt
        .query_map(params, waiting_row)
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    rows.into_iter().map(waiting_record).collect()
}

#[async_trait]
impl AsStore for SqliteStore {
    async fn record_issued(&self, record: IssuedRecord, now: UnixTime) -> Result<(), StoreError> {
        let sweep = self.sweep();
        self.run(move |c| insert_issued(c, &record, sweep.then_some(now)))
            .await
    }

    async fn record_issuance(
        &self,
        record: IssuedRecord,
        event: AuditEvent,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let sweep = self.sweep();
        let retention = self.audit_retention;
        self.run(move |c| {
            // One transaction: the record and its audit event, or neither.
            let tx = c.unchecked_transaction().map_err(err)?;
            insert_issued(&tx, &record, sweep.then_some(now))?;
            aauth_metadata::audit::sqlite::record(&tx, STORE, &event, sweep.then_some(retention))?;
            tx.commit().map_err(err)
        })
        .await
    }

    async fn issued_against(
        &self,
        ps: &ServerId,
        presented_jti: &str,
        now: UnixTime,
    ) -> Result<Vec<IssuedRecord>, StoreError> {
        let (ps, presented_jti) = (ps.clone(), presented_jti.to_owned());
        self.run(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT jti, presented_jti, aud, exp FROM issued \
                     WHERE ps = ?1 AND presented_jti = ?2 AND exp + ?4 >= ?3",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map(
                    params![
                        ps.as_str(),
                        presented_jti,
                        secs(now.as_secs()),
                        secs(RECORD_GRACE)
                    ],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    },
                )
                .map_err(err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            rows.into_iter()
                .map(|(jti, presented, aud, exp)| {
                    Ok(IssuedRecord::new(
                        jti,
                        ps.clone(),
                        presented,
                        server_id(&aud)?,
                        u64::try_from(exp).map_err(unreadable("issuance record"))?,
                    ))
                })
                .collect()
        })
        .await
    }

    async fn issued_record(
        &self,
        jti: &str,
        now: UnixTime,
    ) -> Result<Option<IssuedRecord>, StoreError> {
        let jti = jti.to_owned();
        self.run(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT ps, presented_jti, aud, exp FROM issued WHERE jti = ?1 AND exp + ?3 >= ?2",
                )
                .map_err(err)?
                .query_row(
                    params![jti, secs(now.as_secs()), secs(RECORD_GRACE)],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    },
                )
                .optional()
                .map_err(err)?;
            row.map(|(ps, presented, aud, exp)| {
                Ok(IssuedRecord::new(
                    jti,
                    server_id(&ps)?,
                    presented,
                    server_id(&aud)?,
                    u64::try_from(exp).map_err(unreadable("issuance record"))?,
                ))
            })
            .transpose()
        })
        .await
    }

    async fn issued_count(&self) -> Result<usize, StoreError> {
        self.run(|c| {
            let n: i64 = c
                .query_row("SELECT COUNT(*) FROM issued", [], |r| r.get(0))
                .map_err(err)?;
            Ok(usize::try_from(n).unwrap_or_default()) // default: COUNT(*) is never negative
        })
        .await
    }

    async fn revoke(
        &self,
        iss: &str,
        jti: &str,
        exp: u64,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let (iss, jti) = (iss.to_owned(), jti.to_owned());
        let sweep = self.sweep();
        self.run(move |c| {
            c.execute(
                // A later `exp` extends a record; an earlier one never shortens it.
                "INSERT INTO revoked (iss, jti, exp) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (iss, jti) DO UPDATE SET exp = MAX(exp, excluded.exp)",
                params![iss, jti, secs(exp)],
            )
            .map_err(err)?;
            if sweep {
                // `exp < cutoff`, so that the index on `exp` serves it.
                c.execute(
                    "DELETE FROM revoked WHERE exp < ?1",
                    params![secs(now.as_secs().saturating_sub(RECORD_GRACE))],
                )
                .map_err(err)?;
            }
            Ok(())
        })
        .await
    }

    async fn is_revoked(&self, iss: &str, jti: &str, now: UnixTime) -> Result<bool, StoreError> {
        let (iss, jti) = (iss.to_owned(), jti.to_owned());
        self.run(move |c| {
            c.query_row(
                "SELECT 1 FROM revoked WHERE iss = ?1 AND jti = ?2 AND exp + ?4 >= ?3",
                params![iss, jti, secs(now.as_secs()), secs(RECORD_GRACE)],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(err)
        })
        .await
    }

    async fn put_waiting(
        &self,
        record: WaitingRecord,
        now: UnixTime,
    ) -> Result<WaitingPut, StoreError> {
        let sweep = self.sweep();
        self.run(move |c| {
            if sweep {
                sweep_waiting(c, now)?;
            }
            put_waiting_row(c, &record)
        })
        .await
    }

    async fn replace_waiting(
        &self,
        record: WaitingRecord,
        read: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let read = read.to_owned();
        // One transaction: the row as read, then the same write as put_waiting's.
        self.run(move |c| {
            let tx = c.unchecked_transaction().map_err(err)?;
            let as_read = tx
                .query_row(
                    "SELECT 1 FROM waiting WHERE id = ?1 AND data = ?2 AND expires > ?3 \
                     AND (taken_until IS NULL OR taken_until <= ?3)",
                    params![record.id, read, secs(now.as_secs())],
                    |_| Ok(()),
                )
                .optional()
                .map_err(err)?
                .is_some();
            let replaced = as_read && put_waiting_row(&tx, &record)? == WaitingPut::Stored;
            tx.commit().map_err(err)?;
            Ok(replaced)
        })
        .await
    }

    async fn waiting(&self, id: &str, now: UnixTime) -> Result<Option<WaitingRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |c| {
            Ok(waiting_query(
                c,
                "id = ?1 AND expires > ?2",
                params![id, secs(now.as_secs())],
            )?
            .pop())
        })
        .await
    }

    async fn waiting_kept(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<WaitingRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |c| {
            Ok(waiting_query(
                c,
                "id = ?1 AND expires > ?2",
                params![id, secs(now.as_secs().saturating_sub(WAITING_KEPT))],
            )?
            .pop())
        })
        .await
    }

    async fn waiting_by_code(
        &self,
        code: &str,
        now: UnixTime,
    ) -> Result<Option<WaitingRecord>, StoreError> {
        let code = code.to_owned();
        self.run(move |c| {
            Ok(waiting_query(
                c,
                "code = ?1 AND expires > ?2",
                params![code, secs(now.as_secs())],
            )?
            .pop())
        })
        .await
    }

    async fn waiting_on(
        &self,
        awaiting: Awaiting,
        now: UnixTime,
    ) -> Result<Vec<WaitingRecord>, StoreError> {
        self.run(move |c| {
            waiting_query(
                c,
                "awaiting = ?1 AND expires > ?2 ORDER BY id",
                params![awaiting.as_str(), secs(now.as_secs())],
            )
        })
        .await
    }

    async fn waiting_with(&self, iss: &str, jti: &str) -> Result<Vec<WaitingRecord>, StoreError> {
        let (iss, jti) = (iss.to_owned(), jti.to_owned());
        self.run(move |c| waiting_query(c, "rt_iss = ?1 AND rt_jti = ?2", params![iss, jti]))
            .await
    }

    async fn create_waiting(
        &self,
        record: WaitingRecord,
        caps: WaitingCaps,
        now: UnixTime,
    ) -> Result<WaitingCreated, StoreError> {
        // Swept here too (every SWEEP_EVERY writes): a server whose requests are only
        // created, never put back, would keep every abandoned one (and its body) forever.
        let sweep = self.sweep();
        self.run(move |c| {
            // One transaction on the one connection: the counts and the insert are one
            // step.
            let tx = c.unchecked_transaction().map_err(err)?;
            if sweep {
                sweep_waiting(&tx, now)?;
            }
            let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<usize, StoreError> {
                let n: i64 = tx
                    .prepare_cached(sql)
                    .and_then(|mut s| s.query_row(p, |r| r.get(0)))
                    .map_err(err)?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            };
            let open = count(
                "SELECT COUNT(*) FROM waiting WHERE ps = ?1 AND expires > ?2",
                &[&record.ps.as_str(), &secs(now.as_secs())],
            )?;
            if open >= caps.per_person_server {
                return Ok(WaitingCreated::PersonServerFull);
            }
            if let Some(total) = caps.total {
                // Every request kept (the index on `expires` serves it).
                let kept = count(
                    "SELECT COUNT(*) FROM waiting WHERE expires > ?1",
                    &[&secs(now.as_secs().saturating_sub(WAITING_KEPT))],
                )?;
                if kept >= total {
                    return Ok(WaitingCreated::Full);
                }
            }
            let inserted = write_waiting(&tx, INSERT_NEW_WAITING, &record).map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(if inserted == 1 {
                WaitingCreated::Created
            } else {
                WaitingCreated::Taken
            })
        })
        .await
    }

    async fn take_waiting(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<WaitingRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |c| {
            // One statement: of two callers, one marks it taken and gets it. An expired
            // one is not taken, kept for its late polls (then the sweep).
            let mut stmt = c
                .prepare_cached(&format!(
                    "UPDATE waiting SET taken_until = ?3 WHERE id = ?1 AND expires > ?2 \
                     AND (taken_until IS NULL OR taken_until <= ?2) RETURNING {WAITING_COLUMNS}"
                ))
                .map_err(err)?;
            let rows = stmt
                .query_map(
                    params![
                        id,
                        secs(now.as_secs()),
                        secs(now.as_secs().saturating_add(TAKE_LEASE))
                    ],
                    waiting_row,
                )
                .map_err(err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            rows.into_iter().map(waiting_record).next().transpose()
        })
        .await
    }

    async fn put_taken(
        &self,
        record: WaitingRecord,
        taken: &WaitingRecord,
    ) -> Result<WaitingPut, StoreError> {
        let taken = taken.clone();
        self.run(move |c| put_taken_row(c, &record, &taken)).await
    }

    async fn bind(
        &self,
        ps: &ServerId,
        resource: &ServerId,
        sub: &str,
        account: &str,
    ) -> Result<(), BindError> {
        let row = (
            ps.as_str().to_owned(),
            resource.as_str().to_owned(),
            sub.to_owned(),
            account.to_owned(),
        );
        // One statement: a new binding, the same one again, or (another account's) none.
        let written = self
            .run(move |c| {
                c.execute(
                    "INSERT INTO bindings (ps, resource, sub, account) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (ps, resource, sub) DO UPDATE SET account = excluded.account \
                     WHERE bindings.account = excluded.account",
                    params![row.0, row.1, row.2, row.3],
                )
                .map_err(err)
            })
            .await?;
        if written == 0 {
            return Err(BindError::BoundToAnotherAccount);
        }
        Ok(())
    }

    async fn unbind_if(
        &self,
        ps: &ServerId,
        resource: &ServerId,
        sub: &str,
        account: &str,
    ) -> Result<bool, StoreError> {
        let row = (
            ps.as_str().to_owned(),
            resource.as_str().to_owned(),
            sub.to_owned(),
            account.to_owned(),
        );
        // One statement: the binding goes only if it is still this account's.
        let deleted = self
            .run(move |c| {
                c.execute(
                    "DELETE FROM bindings WHERE ps = ?1 AND resource = ?2 AND sub = ?3 \
                     AND account = ?4",
                    params![row.0, row.1, row.2, row.3],
                )
                .map_err(err)
            })
            .await?;
        Ok(deleted > 0)
    }

    async fn bound_account(
        &self,
        ps: &ServerId,
        resource: &ServerId,
        sub: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = (
            ps.as_str().to_owned(),
            resource.as_str().to_owned(),
            sub.to_owned(),
        );
        self.run(move |c| bound_account(c, &row.0, &row.1, &row.2))
            .await
    }

    async fn bill(&self, ps: &ServerId) -> Result<(), StoreError> {
        let ps = ps.as_str().to_owned();
        self.run(move |c| {
            c.execute("INSERT OR IGNORE INTO billed (ps) VALUES (?1)", params![ps])
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn standing(&self, q: &StandingQuery<'_>, now: UnixTime) -> Result<Standing, StoreError> {
        let (ps, resource, sub) = (
            q.ps.as_str().to_owned(),
            q.resource.as_str().to_owned(),
            q.sub.to_owned(),
        );
        let (rt_jti, presented_jti) = (q.resource_token_jti.to_owned(), q.presented_jti.to_owned());
        self.run(move |c| {
            let exists = |sql: &str, p: &[&dyn rusqlite::ToSql]| {
                c.prepare_cached(sql)
                    .and_then(|mut s| s.exists(p))
                    .map_err(err)
            };
            let (now, grace) = (secs(now.as_secs()), secs(RECORD_GRACE));
            let revoked = "SELECT 1 FROM revoked WHERE iss = ?1 AND jti = ?2 AND exp + ?4 >= ?3";
            Ok(Standing {
                resource_token_revoked: exists(revoked, &[&resource, &rt_jti, &now, &grace])?,
                presented_token_revoked: exists(revoked, &[&ps, &presented_jti, &now, &grace])?,
                bound_account: bound_account(c, &ps, &resource, &sub)?,
                billed: exists("SELECT 1 FROM billed WHERE ps = ?1", &[&ps])?,
            })
        })
        .await
    }

    async fn record_event(&self, e: AuditEvent) -> Result<(), StoreError> {
        let sweep = self.sweep().then_some(self.audit_retention);
        self.run(move |c| aauth_metadata::audit::sqlite::record(c, STORE, &e, sweep))
            .await
    }

    async fn audit(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        let q = q.clone();
        self.run(move |c| aauth_metadata::audit::sqlite::query(c, STORE, &q))
            .await
    }

    async fn is_billed(&self, ps: &ServerId) -> Result<bool, StoreError> {
        let ps = ps.as_str().to_owned();
        self.run(move |c| {
            c.query_row(
                "SELECT 1 FROM billed WHERE ps = ?1",
                params![ps],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(err)
        })
        .await
    }
}

/// Sets up the database of `conn` ([`aauth_metadata::audit::sqlite::set_up`]: one `BEGIN
/// IMMEDIATE` transaction, so two processes opening the same earlier file at once take
/// turns): the tables (audit log included), and what later versions keep added to a file
/// an earlier version created: the lease of a waiting request taken to be decided again
/// (`taken_until`; rows written before are not taken).
fn set_up(conn: &mut Connection) -> Result<(), StoreError> {
    aauth_metadata::audit::sqlite::set_up(conn, STORE, PRAGMAS, |c| {
        c.execute_batch(SCHEMA).map_err(err)?;
        if !aauth_metadata::audit::sqlite::has_column(c, "waiting", "taken_until", STORE)? {
            c.execute_batch("ALTER TABLE waiting ADD COLUMN taken_until INTEGER;")
                .map_err(err)?;
        }
        Ok(())
    })
}

/// Deletes the waiting requests no longer kept at `now` (expired [`WAITING_KEPT`] ago;
/// never one whose lease lasts, [`TAKE_LEASE`] being shorter than that).
fn sweep_waiting(c: &Connection, now: UnixTime) -> Result<(), StoreError> {
    c.execute(
        "DELETE FROM waiting WHERE expires <= ?1",
        params![secs(now.as_secs().saturating_sub(WAITING_KEPT))],
    )
    .map_err(err)?;
    Ok(())
}

/// Inserts (or replaces) an issuance record; with `sweep`, first drops the records past
/// their grace at that time (`exp < cutoff`, so that the index on `exp` serves it).
fn insert_issued(
    c: &Connection,
    record: &IssuedRecord,
    sweep: Option<UnixTime>,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO issued (jti, ps, presented_jti, aud, exp) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            record.jti,
            record.ps.as_str(),
            record.presented_jti,
            record.aud.as_str(),
            secs(record.exp)
        ])
    })
    .map_err(err)?;
    if let Some(now) = sweep {
        c.execute(
            "DELETE FROM issued WHERE exp < ?1",
            params![secs(now.as_secs().saturating_sub(RECORD_GRACE))],
        )
        .map_err(err)?;
    }
    Ok(())
}
