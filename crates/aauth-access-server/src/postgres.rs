//! The PostgreSQL store (feature `postgres`): what several Access Server instances share.
//!
//! - **Every rule is the database's.** Of two instances taking one waiting request, one
//!   gets it (a conditional `UPDATE … RETURNING` that leases it, [`TAKE_LEASE`]); a
//!   Person Server's count of waiting requests is checked and the request inserted under
//!   a transaction-scoped advisory lock on that Person Server, and the count of every
//!   request kept under one more lock, on the schema's waiting requests, when that count
//!   bounds the request; a revocation's expiry only grows (`GREATEST`).
//! - **One round trip a token**: recording an issued token is one statement, and the four
//!   questions a token request asks ([`AsStore::standing`]) are one query.
//! - **Expired rows are swept off the request path**: a task deletes them in batches of
//!   1,000 (up to 16 of each kind) once a minute, one instance at a time.
//! - **Migrations** run at [`PgStore::connect`], each once, whichever instance starts
//!   first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aauth_keys::time::{Clock, SystemClock, UnixTime};
use aauth_metadata::audit::{AUDIT_RETENTION, AuditEvent, AuditPage, AuditQuery};
use aauth_metadata::store::postgres::{
    Background, FromSql, Migration, Pg, PgOpenError, PgOptions, PgRow, ToSql,
};
use aauth_tokens::ServerId;
use async_trait::async_trait;

use crate::store::{
    AsStore, Awaiting, BindError, IssuedRecord, RECORD_GRACE, Standing, StandingQuery, StoreError,
    TAKE_LEASE, WAITING_KEPT, WaitingCaps, WaitingCreated, WaitingPut, WaitingRecord,
};

/// Which store a [`StoreError`] names.
const STORE: &str = "access-server postgres";

/// The component the migrations are recorded under.
const COMPONENT: &str = "access-server";

/// How often the sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The rows one sweep statement deletes at most (its `LIMIT`).
const SWEEP_BATCH: u64 = 1000;

/// How many batches of one kind a sweep deletes at most: a full batch is followed by
/// another, so that rows expiring faster than a batch a minute (a store kept full of
/// waiting requests) do not pile up.
const SWEEP_BATCHES: usize = 16;

/// Every migration, in order. Times are Unix seconds in `BIGINT` columns.
const MIGRATIONS: &[Migration] = &[
    Migration::new(
        1,
        "access-server tables",
        "
CREATE TABLE issued (
  jti TEXT PRIMARY KEY, ps TEXT NOT NULL, presented_jti TEXT NOT NULL, aud TEXT NOT NULL,
  exp BIGINT NOT NULL);
CREATE INDEX issued_presented ON issued (ps, presented_jti);
CREATE INDEX issued_exp ON issued (exp);
CREATE TABLE revoked (
  iss TEXT NOT NULL, jti TEXT NOT NULL, exp BIGINT NOT NULL, PRIMARY KEY (iss, jti));
CREATE INDEX revoked_exp ON revoked (exp);
CREATE TABLE waiting (
  id TEXT PRIMARY KEY, ps TEXT NOT NULL, expires BIGINT NOT NULL,
  rt_iss TEXT NOT NULL, rt_jti TEXT NOT NULL, code TEXT UNIQUE, awaiting TEXT NOT NULL,
  data TEXT NOT NULL);
CREATE INDEX waiting_ps ON waiting (ps, expires);
CREATE INDEX waiting_rt ON waiting (rt_iss, rt_jti);
CREATE INDEX waiting_awaiting ON waiting (awaiting, expires);
CREATE INDEX waiting_expires ON waiting (expires);
CREATE TABLE bindings (
  ps TEXT NOT NULL, resource TEXT NOT NULL, sub TEXT NOT NULL, account TEXT NOT NULL,
  PRIMARY KEY (ps, resource, sub));
CREATE TABLE billed (ps TEXT PRIMARY KEY);
",
    ),
    Migration::new(
        2,
        "access-server audit log",
        aauth_metadata::audit::postgres::TABLE,
    ),
    Migration::new(
        3,
        "access-server audit scope and request",
        aauth_metadata::audit::postgres::SCOPE_AND_REQUEST,
    ),
    Migration::new(
        4,
        "access-server audit events by agent and account in their order",
        aauth_metadata::audit::postgres::SEQ_INDEXES,
    ),
    // Rows written before are not taken.
    Migration::new(
        5,
        "access-server waiting requests leased while decided",
        "ALTER TABLE waiting ADD COLUMN taken_until BIGINT;",
    ),
];

/// The sweep: each statement deletes at most a batch of rows older than `$1` (now less
/// how long past its time each is kept: the grace for records, [`WAITING_KEPT`] for
/// waiting requests, never one whose lease lasts, [`TAKE_LEASE`] being shorter).
const SWEEPS: &[(u64, &str)] = &[
    (
        RECORD_GRACE,
        "DELETE FROM issued WHERE jti IN (SELECT jti FROM issued WHERE exp < $1 LIMIT 1000)",
    ),
    (
        RECORD_GRACE,
        "DELETE FROM revoked WHERE (iss, jti) IN
           (SELECT iss, jti FROM revoked WHERE exp < $1 LIMIT 1000)",
    ),
    (
        WAITING_KEPT,
        "DELETE FROM waiting WHERE id IN (SELECT id FROM waiting WHERE expires <= $1 LIMIT 1000)",
    ),
];

/// The audit sweep: events past the retention (`$1`: now less it).
const AUDIT_SWEEP: &str =
    "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE at < $1 LIMIT 1000)";

const WAITING_COLUMNS: &str = "id, ps, expires, rt_iss, rt_jti, code, awaiting, data, taken_until";

/// The SQLSTATE of a uniqueness violation (`unique_violation`).
const UNIQUE_VIOLATION: &str = "23505";

/// An [`AsStore`] in a PostgreSQL database, shared by every instance that connects to it.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use aauth_access_server::{AsStore, PgStore};
/// use aauth_metadata::store::postgres::PgOptions;
/// let store = PgStore::connect(&PgOptions::new("postgres://aauth@db.internal/aauth").schema("access_server")).await?;
/// assert!(!store.is_billed(&aauth_tokens::ServerId::parse("https://ps.example")?).await?);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PgStore {
    pg: Pg,
    /// How long audit events are kept, in seconds (read by the sweep).
    audit_retention: Arc<AtomicU64>,
    _sweep: Arc<Background>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pg", &self.pg)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database `options` names, applies the migrations it lacks and
    /// starts the sweep. Must be called within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`PgOpenError`].
    pub async fn connect(options: &PgOptions) -> Result<Self, PgOpenError> {
        let pg = Pg::new(STORE, options)?;
        pg.migrate(COMPONENT, MIGRATIONS).await?;
        let audit_retention = Arc::new(AtomicU64::new(AUDIT_RETENTION.as_secs()));
        let retention = Arc::clone(&audit_retention);
        let sweep = pg.every(SWEEP_EVERY, move |pg| {
            let retention = retention.load(Ordering::Relaxed);
            async move { sweep(&pg, SystemClock.now(), retention).await }
        });
        Ok(Self {
            pg,
            audit_retention,
            _sweep: Arc::new(sweep),
        })
    }

    /// Keeps audit events for `retention` instead of
    /// [`AUDIT_RETENTION`] (90 days): the sweep drops older ones.
    #[must_use]
    pub fn audit_retention(self, retention: Duration) -> Self {
        self.audit_retention
            .store(retention.as_secs(), Ordering::Relaxed);
        self
    }

    /// The replay cache of this Access Server's signed requests, in the same database and over
    /// the same connections: a request one instance accepted is a replay at every other.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn replay_store(&self) -> Result<aauth_metadata::store::PgReplayStore, StoreError> {
        aauth_metadata::store::PgReplayStore::over(&self.pg).await
    }

    /// The pending revocations of this Access Server, in the same database and over the same
    /// connections: a revocation cascade one instance answered `202` is polled at any
    /// of them (`shared_revocations`).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn cascade_store(&self) -> Result<aauth_metadata::store::PgCascadeStore, StoreError> {
        aauth_metadata::store::PgCascadeStore::over(&self.pg).await
    }

    /// Applies the migrations the database lacks and returns how many (`aauth admin
    /// migrate`): the Access Server's own, and those of the replay cache and the pending
    /// revocations its instances share ([`Self::replay_store`], [`Self::cascade_store`]),
    /// so that instances whose database role cannot `CREATE` start on a migrated
    /// database.
    ///
    /// # Errors
    ///
    /// [`PgOpenError`].
    pub async fn migrate(options: &PgOptions) -> Result<usize, PgOpenError> {
        let pg = Pg::new(STORE, options)?;
        let own = pg.migrate(COMPONENT, MIGRATIONS).await?;
        Ok(own + aauth_metadata::store::PgCascadeStore::migrate_shared(&pg).await?)
    }

    /// Deletes one batch of every kind of expired row (what the background sweep does
    /// once a minute), unless another instance is sweeping; returns how many it deleted.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn sweep_once(&self, now: UnixTime) -> Result<u64, StoreError> {
        sweep(&self.pg, now, self.audit_retention.load(Ordering::Relaxed)).await
    }

    async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        self.pg.execute(sql, params).await
    }

    /// Runs `sql`, a write of a waiting request over the row of its id (an update, or an
    /// insert whose conflict on the id is an update): the rows written, or `None` when
    /// its interaction code is another row's (the code's uniqueness refused it, and
    /// nothing was written; the id's is never the conflict left).
    async fn write_waiting(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<u64>, StoreError> {
        self.pg
            .timed(async {
                let c = self.pg.client().await?;
                let stmt = c.prepare_cached(sql).await.map_err(|e| self.pg.err(e))?;
                match c.execute(&stmt, params).await {
                    Ok(n) => Ok(Some(n)),
                    Err(e) if e.code().is_some_and(|s| s.code() == UNIQUE_VIOLATION) => Ok(None),
                    Err(e) => Err(self.pg.err(e)),
                }
            })
            .await
    }

    async fn all(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<PgRow>, StoreError> {
        self.pg.query(sql, params).await
    }

    async fn one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<PgRow, StoreError> {
        self.all(sql, params)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                self.pg
                    .err("a query that always returns a row returned none")
            })
    }

    fn get<'a, T: FromSql<'a>>(&self, row: &'a PgRow, idx: usize) -> Result<T, StoreError> {
        self.pg.get(row, idx, "row")
    }

    fn server(&self, s: &str) -> Result<ServerId, StoreError> {
        ServerId::parse(s).map_err(|e| StoreError::unreadable(STORE, "server identifier", e))
    }

    fn waiting_record(&self, r: &PgRow) -> Result<WaitingRecord, StoreError> {
        let awaiting: String = self.get(r, 6)?;
        Ok(WaitingRecord {
            id: self.get(r, 0)?,
            ps: self.server(&self.get::<String>(r, 1)?)?,
            expires: u64::try_from(self.get::<i64>(r, 2)?)
                .map_err(|e| StoreError::unreadable(STORE, "waiting request", e))?,
            resource_token: (self.get(r, 3)?, self.get(r, 4)?),
            code: self.get(r, 5)?,
            awaiting: Awaiting::parse(&awaiting).ok_or_else(|| {
                StoreError::unreadable(STORE, "waiting request", format!("the step {awaiting:?}"))
            })?,
            data: self.get(r, 7)?,
            taken_until: self
                .get::<Option<i64>>(r, 8)?
                .map(u64::try_from)
                .transpose()
                .map_err(|e| StoreError::unreadable(STORE, "waiting request's lease", e))?,
        })
    }

    async fn waiting_where(
        &self,
        condition: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<WaitingRecord>, StoreError> {
        let sql = format!("SELECT {WAITING_COLUMNS} FROM waiting WHERE {condition}");
        self.all(&sql, params)
            .await?
            .iter()
            .map(|r| self.waiting_record(r))
            .collect()
    }
}

/// Seconds as a signed `BIGINT` (saturating: no time here is past 2^63).
fn secs(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// One pass of the sweep, under a lock that lets one instance sweep at a time.
async fn sweep(pg: &Pg, now: UnixTime, audit_retention: u64) -> Result<u64, StoreError> {
    pg.timed(async {
        let mut c = pg.client().await?;
        let tx = c.transaction().await.map_err(|e| pg.err(e))?;
        if !pg.try_sweep_lock(&tx, COMPONENT).await? {
            return Ok(0);
        }
        let mut deleted = 0;
        for (kept, sql) in SWEEPS {
            let floor = now.as_secs().saturating_sub(*kept);
            for _ in 0..SWEEP_BATCHES {
                let batch = tx
                    .execute(*sql, &[&secs(floor)])
                    .await
                    .map_err(|e| pg.err(e))?;
                deleted += batch;
                if batch < SWEEP_BATCH {
                    break;
                }
            }
        }
        let floor = now.as_secs().saturating_sub(audit_retention);
        deleted += tx
            .execute(AUDIT_SWEEP, &[&secs(floor)])
            .await
            .map_err(|e| pg.err(e))?;
        tx.commit().await.map_err(|e| pg.err(e))?;
        Ok(deleted)
    })
    .await
}

/// The insert of a waiting request (its eight columns as `$1`…`$8`).
const INSERT_WAITING: &str =
    "INSERT INTO waiting (id, ps, expires, rt_iss, rt_jti, code, awaiting, data)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// A waiting record's columns as statement parameters, `$1`–`$8` in [`INSERT_WAITING`]'s
/// order (a statement adds its own after them).
struct WaitingColumns<'a> {
    r: &'a WaitingRecord,
    ps: &'a str,
    expires: i64,
    awaiting: &'static str,
}

impl<'a> WaitingColumns<'a> {
    fn of(r: &'a WaitingRecord) -> Self {
        Self {
            r,
            ps: r.ps.as_str(),
            expires: secs(r.expires),
            awaiting: r.awaiting.as_str(),
        }
    }

    /// The eight, then `more`.
    fn with<'p>(&'p self, more: &[&'p (dyn ToSql + Sync)]) -> Vec<&'p (dyn ToSql + Sync)> {
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![
            &self.r.id,
            &self.ps,
            &self.expires,
            &self.r.resource_token.0,
            &self.r.resource_token.1,
            &self.r.code,
            &self.awaiting,
            &self.r.data,
        ];
        all.extend_from_slice(more);
        all
    }
}

#[async_trait]
impl AsStore for PgStore {
    async fn record_issued(&self, record: IssuedRecord, _now: UnixTime) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO issued (jti, ps, presented_jti, aud, exp) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (jti) DO UPDATE SET ps = excluded.ps,
               presented_jti = excluded.presented_jti, aud = excluded.aud, exp = excluded.exp",
            &[
                &record.jti,
                &record.ps.as_str(),
                &record.presented_jti,
                &record.aud.as_str(),
                &secs(record.exp),
            ],
        )
        .await
        .map(drop)
    }

    async fn record_issuance(
        &self,
        record: IssuedRecord,
        event: AuditEvent,
        _now: UnixTime,
    ) -> Result<(), StoreError> {
        // One statement (one round trip, one transaction): the record and its event.
        self.exec(
            "WITH t AS (
               INSERT INTO issued (jti, ps, presented_jti, aud, exp) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (jti) DO UPDATE SET ps = excluded.ps,
                 presented_jti = excluded.presented_jti, aud = excluded.aud, exp = excluded.exp)
             INSERT INTO audit (at, action, account, agent, resource, scope, request, detail)
             VALUES ($6, $7, $8, $9, $10, $11, $12, $13)",
            &[
                &record.jti,
                &record.ps.as_str(),
                &record.presented_jti,
                &record.aud.as_str(),
                &secs(record.exp),
                &secs(event.at),
                &event.action.as_str(),
                &event.account,
                &event.agent,
                &event.resource,
                &event.scope,
                &event.request,
                &event.detail,
            ],
        )
        .await
        .map(drop)
    }

    async fn issued_against(
        &self,
        ps: &ServerId,
        presented_jti: &str,
        now: UnixTime,
    ) -> Result<Vec<IssuedRecord>, StoreError> {
        self.all(
            "SELECT jti, presented_jti, aud, exp FROM issued
             WHERE ps = $1 AND presented_jti = $2 AND exp + $4 >= $3",
            &[
                &ps.as_str(),
                &presented_jti,
                &secs(now.as_secs()),
                &secs(RECORD_GRACE),
            ],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(IssuedRecord::new(
                self.get(r, 0)?,
                ps.clone(),
                self.get(r, 1)?,
                self.server(&self.get::<String>(r, 2)?)?,
                u64::try_from(self.get::<i64>(r, 3)?)
                    .map_err(|e| StoreError::unreadable(STORE, "issuance record", e))?,
            ))
        })
        .collect()
    }

    async fn issued_record(
        &self,
        jti: &str,
        now: UnixTime,
    ) -> Result<Option<IssuedRecord>, StoreError> {
        self.all(
            "SELECT ps, presented_jti, aud, exp FROM issued WHERE jti = $1 AND exp + $3 >= $2",
            &[&jti, &secs(now.as_secs()), &secs(RECORD_GRACE)],
        )
        .await?
        .first()
        .map(|r| {
            Ok(IssuedRecord::new(
                jti.to_owned(),
                self.server(&self.get::<String>(r, 0)?)?,
                self.get(r, 1)?,
                self.server(&self.get::<String>(r, 2)?)?,
                u64::try_from(self.get::<i64>(r, 3)?)
                    .map_err(|e| StoreError::unreadable(STORE, "issuance record", e))?,
            ))
        })
        .transpose()
    }

    async fn issued_count(&self) -> Result<usize, StoreError> {
        let r = self.one("SELECT count(*) FROM issued", &[]).await?;
        Ok(usize::try_from(self.get::<i64>(&r, 0)?).unwrap_or(usize::MAX))
    }

    async fn revoke(
        &self,
        iss: &str,
        jti: &str,
        exp: u64,
        _now: UnixTime,
    ) -> Result<(), StoreError> {
        // A later `exp` extends a record; an earlier one never shortens it.
        self.exec(
            "INSERT INTO revoked (iss, jti, exp) VALUES ($1, $2, $3)
             ON CONFLICT (iss, jti) DO UPDATE SET exp = GREATEST(revoked.exp, excluded.exp)",
            &[&iss, &jti, &secs(exp)],
        )
        .await
        .map(drop)
    }

    async fn is_revoked(&self, iss: &str, jti: &str, now: UnixTime) -> Result<bool, StoreError> {
        Ok(!self
            .all(
                "SELECT 1 FROM revoked WHERE iss = $1 AND jti = $2 AND exp + $4 >= $3",
                &[&iss, &jti, &secs(now.as_secs()), &secs(RECORD_GRACE)],
            )
            .await?
            .is_empty())
    }

    async fn put_waiting(
        &self,
        record: WaitingRecord,
        _now: UnixTime,
    ) -> Result<WaitingPut, StoreError> {
        let sql = format!(
            "{INSERT_WAITING} ON CONFLICT (id) DO UPDATE SET ps = excluded.ps,
               expires = excluded.expires, rt_iss = excluded.rt_iss, rt_jti = excluded.rt_jti,
               code = excluded.code, awaiting = excluded.awaiting, data = excluded.data,
               taken_until = NULL"
        );
        Ok(
            match self
                .write_waiting(&sql, &WaitingColumns::of(&record).with(&[]))
                .await?
            {
                Some(_) => WaitingPut::Stored,
                None => WaitingPut::CodeTaken,
            },
        )
    }

    async fn replace_waiting(
        &self,
        record: WaitingRecord,
        read: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        self.write_waiting(
            "UPDATE waiting SET ps = $2, expires = $3, rt_iss = $4, rt_jti = $5, code = $6,
               awaiting = $7, data = $8, taken_until = NULL
             WHERE id = $1 AND data = $9 AND expires > $10
               AND (taken_until IS NULL OR taken_until <= $10)",
            &WaitingColumns::of(&record).with(&[&read, &secs(now.as_secs())]),
        )
        .await
        .map(|n| n == Some(1))
    }

    async fn waiting(&self, id: &str, now: UnixTime) -> Result<Option<WaitingRecord>, StoreError> {
        Ok(self
            .waiting_where("id = $1 AND expires > $2", &[&id, &secs(now.as_secs())])
            .await?
            .pop())
    }

    async fn waiting_kept(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<WaitingRecord>, StoreError> {
        let floor = secs(now.as_secs().saturating_sub(WAITING_KEPT));
        Ok(self
            .waiting_where("id = $1 AND expires > $2", &[&id, &floor])
            .await?
            .pop())
    }

    async fn waiting_by_code(
        &self,
        code: &str,
        now: UnixTime,
    ) -> Result<Option<WaitingRecord>, StoreError> {
        Ok(self
            .waiting_where("code = $1 AND expires > $2", &[&code, &secs(now.as_secs())])
            .await?
            .pop())
    }

    async fn waiting_on(
        &self,
        awaiting: Awaiting,
        now: UnixTime,
    ) -> Result<Vec<WaitingRecord>, StoreError> {
        self.waiting_where(
            "awaiting = $1 AND expires > $2 ORDER BY id",
            &[&awaiting.as_str(), &secs(now.as_secs())],
        )
        .await
    }

    async fn waiting_with(&self, iss: &str, jti: &str) -> Result<Vec<WaitingRecord>, StoreError> {
        self.waiting_where("rt_iss = $1 AND rt_jti = $2", &[&iss, &jti])
            .await
    }

    async fn create_waiting(
        &self,
        record: WaitingRecord,
        caps: WaitingCaps,
        now: UnixTime,
    ) -> Result<WaitingCreated, StoreError> {
        let max = i64::try_from(caps.per_person_server).unwrap_or(i64::MAX);
        let total = caps.total.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        let columns = WaitingColumns::of(&record);
        let ps = columns.ps;
        let floor = secs(now.as_secs().saturating_sub(WAITING_KEPT));
        let now = secs(now.as_secs());
        self.pg
            .timed(async {
                let mut c = self.pg.client().await?;
                let tx = c.transaction().await.map_err(|e| self.pg.err(e))?;
                // The counts and the insert are one decision for this Person Server, and
                // (bounded by the total) for every Person Server, whichever instance makes
                // it. The locks are always taken in this order: the Person Server's, then
                // the total's.
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('aauth_as_waiting'), hashtext($1))",
                    &[&ps],
                )
                .await
                .map_err(|e| self.pg.err(e))?;
                if total.is_some() {
                    tx.execute(
                        "SELECT pg_advisory_xact_lock(hashtext('aauth_as_waiting_total'),
                           hashtext(COALESCE(current_schema(), '')))",
                        &[],
                    )
                    .await
                    .map_err(|e| self.pg.err(e))?;
                }
                let counts = tx
                    .query_one(
                        "SELECT (SELECT count(*) FROM waiting WHERE ps = $1 AND expires > $2),
                           CASE WHEN $3 THEN (SELECT count(*) FROM waiting WHERE expires > $4)
                             ELSE 0 END",
                        &[&ps, &now, &total.is_some(), &floor],
                    )
                    .await
                    .map_err(|e| self.pg.err(e))?;
                let (open, kept): (i64, i64) = (self.get(&counts, 0)?, self.get(&counts, 1)?);
                let created = if open >= max {
                    WaitingCreated::PersonServerFull
                } else if total.is_some_and(|t| kept >= t) {
                    WaitingCreated::Full
                } else {
                    let sql = format!("{INSERT_WAITING} ON CONFLICT DO NOTHING");
                    let inserted = tx
                        .execute(&sql, &columns.with(&[]))
                        .await
                        .map_err(|e| self.pg.err(e))?;
                    if inserted == 1 {
                        WaitingCreated::Created
                    } else {
                        WaitingCreated::Taken
                    }
                };
                tx.commit().await.map_err(|e| self.pg.err(e))?;
                Ok(created)
            })
            .await
    }

    async fn take_waiting(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<WaitingRecord>, StoreError> {
        // One statement: of two instances taking it, one marks it taken and gets it. An
        // expired request is not taken, kept for its late polls (then the sweep).
        let sql = format!(
            "UPDATE waiting SET taken_until = $3 WHERE id = $1 AND expires > $2
               AND (taken_until IS NULL OR taken_until <= $2) RETURNING {WAITING_COLUMNS}"
        );
        Ok(self
            .all(
                &sql,
                &[
                    &id,
                    &secs(now.as_secs()),
                    &secs(now.as_secs().saturating_add(TAKE_LEASE)),
                ],
            )
            .await?
            .iter()
            .map(|r| self.waiting_record(r))
            .collect::<Result<Vec<_>, _>>()?
            .pop())
    }

    async fn put_taken(
        &self,
        record: WaitingRecord,
        taken: &WaitingRecord,
    ) -> Result<WaitingPut, StoreError> {
        if record.id != taken.id {
            return Ok(WaitingPut::NoLongerTaken);
        }
        // One statement, over the row only while it holds this take's lease.
        let lease = taken.taken_until.map(secs);
        Ok(
            match self
                .write_waiting(
                    "UPDATE waiting SET ps = $2, expires = $3, rt_iss = $4, rt_jti = $5,
                       code = $6, awaiting = $7, data = $8, taken_until = NULL
                     WHERE id = $1 AND taken_until = $9",
                    &WaitingColumns::of(&record).with(&[&lease]),
                )
                .await?
            {
                Some(1) => WaitingPut::Stored,
                Some(_) => WaitingPut::NoLongerTaken,
                None => WaitingPut::CodeTaken,
            },
        )
    }

    async fn bind(
        &self,
        ps: &ServerId,
        resource: &ServerId,
        sub: &str,
        account: &str,
    ) -> Result<(), BindError> {
        // One statement: a new binding, the same one again, or (another account's) none.
        let written = self
            .exec(
                "INSERT INTO bindings (ps, resource, sub, account) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (ps, resource, sub) DO UPDATE SET account = excluded.account
                 WHERE bindings.account = excluded.account",
                &[&ps.as_str(), &resource.as_str(), &sub, &account],
            )
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
        // One statement: the binding goes only if it is still this account's.
        let deleted = self
            .exec(
                "DELETE FROM bindings WHERE ps = $1 AND resource = $2 AND sub = $3 AND account = $4",
                &[&ps.as_str(), &resource.as_str(), &sub, &account],
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn bound_account(
        &self,
        ps: &ServerId,
        resource: &ServerId,
        sub: &str,
    ) -> Result<Option<String>, StoreError> {
        self.all(
            "SELECT account FROM bindings WHERE ps = $1 AND resource = $2 AND sub = $3",
            &[&ps.as_str(), &resource.as_str(), &sub],
        )
        .await?
        .first()
        .map(|r| self.get(r, 0))
        .transpose()
    }

    async fn bill(&self, ps: &ServerId) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO billed (ps) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&ps.as_str()],
        )
        .await
        .map(drop)
    }

    async fn is_billed(&self, ps: &ServerId) -> Result<bool, StoreError> {
        Ok(!self
            .all("SELECT 1 FROM billed WHERE ps = $1", &[&ps.as_str()])
            .await?
            .is_empty())
    }

    async fn record_event(&self, e: AuditEvent) -> Result<(), StoreError> {
        aauth_metadata::audit::postgres::record(&self.pg, &e).await
    }

    async fn audit(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        aauth_metadata::audit::postgres::query(&self.pg, q).await
    }

    async fn standing(&self, q: &StandingQuery<'_>, now: UnixTime) -> Result<Standing, StoreError> {
        // The four questions of a token request in one round trip.
        let r = self
            .one(
                "SELECT
                   EXISTS (SELECT 1 FROM revoked WHERE iss = $1 AND jti = $2 AND exp + $6 >= $5),
                   EXISTS (SELECT 1 FROM revoked WHERE iss = $3 AND jti = $4 AND exp + $6 >= $5),
                   (SELECT account FROM bindings WHERE ps = $3 AND resource = $1 AND sub = $7),
                   EXISTS (SELECT 1 FROM billed WHERE ps = $3)",
                &[
                    &q.resource.as_str(),
                    &q.resource_token_jti,
                    &q.ps.as_str(),
                    &q.presented_jti,
                    &secs(now.as_secs()),
                    &secs(RECORD_GRACE),
                    &q.sub,
                ],
            )
            .await?;
        Ok(Standing {
            resource_token_revoked: self.get(&r, 0)?,
            presented_token_revoked: self.get(&r, 1)?,
            bound_account: self.get(&r, 2)?,
            billed: self.get(&r, 3)?,
        })
    }
}
