//! The PostgreSQL store (feature `postgres`): what several Person Server instances share.
//!
//! - **Every rule is the database's.** A pending request's version is compared and set
//!   in its `UPDATE` (two instances' writers: one wins); an agent's count of open
//!   requests (and, where they bound the request, its provider's and the count of every
//!   request kept) is checked and the request inserted under transaction-scoped advisory
//!   locks on the agent (its provider, the total); a revocation's expiry only grows
//!   (`GREATEST`); an agent token is
//!   recorded unless revoked in one statement. No rule rests on a lock in one process.
//! - **Long polls on any instance wake** on a change made by another: every successful
//!   [`update_pending`](PsStore::update_pending) sends `NOTIFY` with the request's id in
//!   the same statement, and each instance listens on its own connection
//!   ([`Pg::listen`]), waking its waiters (all of them after a reconnection, since
//!   notifications sent meanwhile are lost).
//! - **One round trip a token**: recording an issued token is one statement; the checks on
//!   the request path are one query each.
//! - **Expired rows are swept off the request path**: a task deletes them in batches of
//!   1,000 once a minute, each kind's again while its batch comes back full (at most 32
//!   batches of a kind a minute, each its own transaction), one instance at a time (an
//!   advisory lock).
//! - **Migrations** run at [`PgStore::connect`] (and with `aauth admin migrate`), each
//!   once, whichever instance starts first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aauth_keys::time::{SystemClock, UnixTime};
use aauth_metadata::store::postgres::{
    Background, FromSql, Listener, Pg, PgOpenError, PgOptions, PgRow, ToSql,
};
use aauth_tokens::{AgentId, ServerId};
use async_trait::async_trait;

use crate::audit::{AUDIT_RETENTION, AuditEvent, AuditPage, AuditQuery};
use crate::changes::{ChangeHub, PendingChanges};
use crate::mission::Mission;
use crate::pending::{Pending, WebSession};
use crate::rows::{
    AUTH_COLUMNS, MissionRow, PERSON_COLUMNS, PendingRow, i, pending_from_json, server, u,
    unreadable,
};
use crate::store::{
    AccountRecord, AuthTokenRecord, Binding, Issuance, IssuedToken, PendingCaps, PendingCreated,
    PersonTokenRecord, PsStore, RECORD_GRACE, Standing, StoreError, TokenRecord,
};

mod pending;
mod schema;

use schema::{COMPONENT, MIGRATIONS, PENDING_CHANNEL, sweep};

/// Which store a [`StoreError`] names.
const STORE: &str = "person-server postgres";

/// How often the sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A [`PsStore`] in a PostgreSQL database, shared by every instance that connects to it.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use aauth_metadata::store::postgres::PgOptions;
/// use aauth_person_server::{PgStore, PsStore};
/// let options = PgOptions::new("postgres://aauth@db.internal/aauth?sslmode=require")
///     .schema("person_server");
/// // Applies the migrations this database lacks, then listens for changes.
/// let store = PgStore::connect(&options).await?;
/// assert_eq!(store.password_hash("nobody").await?, None);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PgStore {
    pg: Pg,
    changes: Arc<ChangeHub>,
    /// How long audit events are kept, in seconds (read by the sweep).
    audit_retention: Arc<AtomicU64>,
    /// The listener and the sweep: they stop with the last clone of the store.
    _tasks: Arc<Tasks>,
}

struct Tasks {
    _listener: Listener,
    _sweep: Background,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pg", &self.pg)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database `options` names, applies the migrations it lacks, starts
    /// listening for pending-request changes and the sweep. Must be called within a Tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// [`PgOpenError`].
    pub async fn connect(options: &PgOptions) -> Result<Self, PgOpenError> {
        let pg = Pg::new(STORE, options)?;
        pg.migrate(COMPONENT, MIGRATIONS).await?;
        Ok(Self::start(pg))
    }

    /// The replay cache of this Person Server's signed requests, in the same database and over
    /// the same connections: a request one instance accepted is a replay at every other.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn replay_store(&self) -> Result<aauth_metadata::store::PgReplayStore, StoreError> {
        aauth_metadata::store::PgReplayStore::over(&self.pg).await
    }

    /// The pending revocations of this Person Server, in the same database and over the same
    /// connections: a revocation cascade one instance answered `202` is polled at any
    /// of them (`shared_revocations`).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn cascade_store(&self) -> Result<aauth_metadata::store::PgCascadeStore, StoreError> {
        aauth_metadata::store::PgCascadeStore::over(&self.pg).await
    }

    /// Applies the migrations the database lacks and returns how many, without starting
    /// a store (`aauth admin migrate`): the Person Server's own, and those of the replay
    /// cache and the pending revocations its instances share ([`Self::replay_store`],
    /// [`Self::cascade_store`]), so that instances whose database role cannot `CREATE`
    /// start on a migrated database.
    ///
    /// # Errors
    ///
    /// [`PgOpenError`].
    pub async fn migrate(options: &PgOptions) -> Result<usize, PgOpenError> {
        let pg = Pg::new(STORE, options)?;
        let own = pg.migrate(COMPONENT, MIGRATIONS).await?;
        Ok(own + aauth_metadata::store::PgCascadeStore::migrate_shared(&pg).await?)
    }

    fn start(pg: Pg) -> Self {
        let changes = Arc::new(ChangeHub::default());
        let hub = Arc::clone(&changes);
        let listener = pg.listen(
            PENDING_CHANNEL,
            Arc::new(move |id: Option<&str>| match id {
                Some(id) => hub.notify(id),
                None => hub.notify_all(),
            }),
        );
        let audit_retention = Arc::new(AtomicU64::new(AUDIT_RETENTION.as_secs()));
        let retention = Arc::clone(&audit_retention);
        let sweep = pg.every(SWEEP_EVERY, move |pg| {
            let retention = retention.load(Ordering::Relaxed);
            async move { sweep(&pg, aauth_keys::time::Clock::now(&SystemClock), retention).await }
        });
        Self {
            pg,
            changes,
            audit_retention,
            _tasks: Arc::new(Tasks {
                _listener: listener,
                _sweep: sweep,
            }),
        }
    }

    /// Deletes the expired rows of every kind, in batches, as the background sweep does
    /// once a minute (a kind's batches until one comes back short, at most 32 a call),
    /// unless another instance is sweeping; returns how many rows it deleted.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn sweep_once(&self, now: UnixTime) -> Result<u64, StoreError> {
        sweep(&self.pg, now, self.audit_retention.load(Ordering::Relaxed)).await
    }

    /// Keeps audit events for `retention` instead of
    /// [`AUDIT_RETENTION`](crate::AUDIT_RETENTION) (90 days): the sweep drops older ones.
    #[must_use]
    pub fn audit_retention(self, retention: Duration) -> Self {
        self.audit_retention
            .store(retention.as_secs(), Ordering::Relaxed);
        self
    }

    async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        self.pg.execute(sql, params).await
    }

    async fn opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<PgRow>, StoreError> {
        self.pg.query_opt(sql, params).await
    }

    async fn all(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<PgRow>, StoreError> {
        self.pg.query(sql, params).await
    }

    /// Column `idx` of `row`, as `T`.
    fn get<'a, T: FromSql<'a>>(&self, row: &'a PgRow, idx: usize) -> Result<T, StoreError> {
        self.pg.get(row, idx, "row")
    }
}

/// The person-token record of a row of [`PERSON_COLUMNS`].
fn person(s: &PgStore, r: &PgRow) -> Result<PersonTokenRecord, StoreError> {
    crate::rows::person_record((
        s.get(r, 0)?,
        s.get(r, 1)?,
        s.get(r, 2)?,
        s.get(r, 3)?,
        s.get(r, 4)?,
        s.get(r, 5)?,
        s.get(r, 6)?,
        s.get(r, 7)?,
        s.get(r, 8)?,
    ))
}

/// The auth-token record of a row of [`AUTH_COLUMNS`].
fn auth(s: &PgStore, r: &PgRow) -> Result<AuthTokenRecord, StoreError> {
    crate::rows::auth_record((
        s.get(r, 0)?,
        s.get(r, 1)?,
        s.get(r, 2)?,
        s.get(r, 3)?,
        s.get(r, 4)?,
        s.get(r, 5)?,
    ))
}

/// The pending request of a `(data, version)` row.
fn pending_of(s: &PgStore, r: &PgRow) -> Result<Pending, StoreError> {
    pending_from_json(&s.get::<String>(r, 0)?, s.get(r, 1)?)
}

/// A mission row's JSON, read back.
fn mission_of(data: &str) -> Result<Mission, StoreError> {
    serde_json::from_str::<MissionRow>(data)
        .map_err(unreadable("mission"))?
        .into_mission()
}

#[async_trait]
impl PsStore for PgStore {
    async fn bind(
        &self,
        provider: &ServerId,
        agent: &AgentId,
        account: &str,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO bindings (provider, agent, account) VALUES ($1, $2, $3)
             ON CONFLICT (provider, agent) DO UPDATE SET account = excluded.account",
            &[&provider.as_str(), &agent.as_str(), &account],
        )
        .await
        .map(drop)
    }

    async fn bind_if_unbound(
        &self,
        provider: &ServerId,
        agent: &AgentId,
        account: &str,
    ) -> Result<String, StoreError> {
        // The inserted row, or (the insert kept the existing one) the existing row: the
        // statement's snapshot does not see its own insert, so exactly one side answers.
        let row = self
            .opt(
                "WITH ins AS (INSERT INTO bindings (provider, agent, account) VALUES ($1, $2, $3)
                              ON CONFLICT (provider, agent) DO NOTHING RETURNING account)
                 SELECT account FROM ins
                 UNION ALL
                 SELECT account FROM bindings WHERE provider = $1 AND agent = $2
                 LIMIT 1",
                &[&provider.as_str(), &agent.as_str(), &account],
            )
            .await?;
        match row {
            Some(r) => self.get(&r, 0),
            // Bound by a transaction that committed while this statement waited on its
            // row: after its snapshot, so read again.
            None => self
                .binding(provider, agent)
                .await?
                .ok_or_else(|| self.pg.err("the binding vanished while it was made")),
        }
    }

    async fn binding(
        &self,
        provider: &ServerId,
        agent: &AgentId,
    ) -> Result<Option<String>, StoreError> {
        self.opt(
            "SELECT account FROM bindings WHERE provider = $1 AND agent = $2",
            &[&provider.as_str(), &agent.as_str()],
        )
        .await?
        .map(|r| self.get(&r, 0))
        .transpose()
    }

    async fn record_person_token(&self, r: PersonTokenRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO person_tokens (jti, aud, sub, account, provider, agent, mission, exp, parent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (jti) DO UPDATE SET aud = excluded.aud, sub = excluded.sub,
               account = excluded.account, provider = excluded.provider,
               agent = excluded.agent, mission = excluded.mission, exp = excluded.exp,
               parent = excluded.parent",
            &[
                &r.jti,
                &r.aud.as_str(),
                &r.sub,
                &r.account,
                &r.agent.0.as_str(),
                &r.agent.1.as_str(),
                &r.mission_s256,
                &i(r.exp),
                &r.parent.as_ref().map(AgentId::as_str),
            ],
        )
        .await
        .map(drop)
    }

    async fn record_issuance(&self, issuance: Issuance) -> Result<(), StoreError> {
        // One statement (one round trip, one transaction): the record, its chain, its
        // audit event.
        let chain = issuance
            .chain
            .iter()
            .map(ServerId::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        let e = &issuance.event;
        let (at, action) = (i(e.at), e.action.as_str());
        match &issuance.token {
            TokenRecord::Person(r) => {
                self.exec(
                    "WITH t AS (
                   INSERT INTO person_tokens (jti, aud, sub, account, provider, agent, mission, exp, parent)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $18)
                   ON CONFLICT (jti) DO UPDATE SET aud = excluded.aud, sub = excluded.sub,
                     account = excluded.account, provider = excluded.provider,
                     agent = excluded.agent, mission = excluded.mission, exp = excluded.exp,
                     parent = excluded.parent),
                 c AS (
                   INSERT INTO chains (jti, chain, exp) SELECT $1, $9, $8 WHERE $9 <> ''
                   ON CONFLICT (jti) DO UPDATE SET chain = excluded.chain, exp = excluded.exp)
                 INSERT INTO audit (at, action, account, agent, resource, scope, request, detail)
                 VALUES ($10, $11, $12, $13, $14, $16, $17, $15)",
                    &[
                        &r.jti,
                        &r.aud.as_str(),
                        &r.sub,
                        &r.account,
                        &r.agent.0.as_str(),
                        &r.agent.1.as_str(),
                        &r.mission_s256,
                        &i(r.exp),
                        &chain,
                        &at,
                        &action,
                        &e.account,
                        &e.agent,
                        &e.resource,
                        &e.detail,
                        &e.scope,
                        &e.request,
                        &r.parent.as_ref().map(AgentId::as_str),
                    ],
                )
                .await
            }
            TokenRecord::Auth(r) => {
                self.exec(
                    "WITH t AS (
                   INSERT INTO auth_tokens (jti, aud, sub, account, presented_jti, exp)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (jti) DO UPDATE SET aud = excluded.aud, sub = excluded.sub,
                     account = excluded.account, presented_jti = excluded.presented_jti,
                     exp = excluded.exp),
                 c AS (
                   INSERT INTO chains (jti, chain, exp) SELECT $1, $7, $6 WHERE $7 <> ''
                   ON CONFLICT (jti) DO UPDATE SET chain = excluded.chain, exp = excluded.exp)
                 INSERT INTO audit (at, action, account, agent, resource, scope, request, detail)
                 VALUES ($8, $9, $10, $11, $12, $14, $15, $13)",
                    &[
                        &r.jti,
                        &r.aud.as_str(),
                        &r.sub,
                        &r.account,
                        &r.presented_jti,
                        &i(r.exp),
                        &chain,
                        &at,
                        &action,
                        &e.account,
                        &e.agent,
                        &e.resource,
                        &e.detail,
                        &e.scope,
                        &e.request,
                    ],
                )
                .await
            }
        }
        .map(drop)
    }

    async fn person_token(
        &self,
        jti: &str,
        now: UnixTime,
    ) -> Result<Option<PersonTokenRecord>, StoreError> {
        let sql =
            format!("SELECT {PERSON_COLUMNS} FROM person_tokens WHERE jti = $1 AND exp + $2 > $3");
        self.opt(&sql, &[&jti, &i(RECORD_GRACE), &i(now.as_secs())])
            .await?
            .map(|r| person(self, &r))
            .transpose()
    }

    async fn record_auth_token(&self, r: AuthTokenRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO auth_tokens (jti, aud, sub, account, presented_jti, exp)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (jti) DO UPDATE SET aud = excluded.aud, sub = excluded.sub,
               account = excluded.account, presented_jti = excluded.presented_jti,
               exp = excluded.exp",
            &[
                &r.jti,
                &r.aud.as_str(),
                &r.sub,
                &r.account,
                &r.presented_jti,
                &i(r.exp),
            ],
        )
        .await
        .map(drop)
    }

    async fn auth_token(
        &self,
        jti: &str,
        now: UnixTime,
    ) -> Result<Option<AuthTokenRecord>, StoreError> {
        let sql =
            format!("SELECT {AUTH_COLUMNS} FROM auth_tokens WHERE jti = $1 AND exp + $2 > $3");
        self.opt(&sql, &[&jti, &i(RECORD_GRACE), &i(now.as_secs())])
            .await?
            .map(|r| auth(self, &r))
            .transpose()
    }

    async fn revoke(&self, jti: &str, exp: u64, _now: UnixTime) -> Result<(), StoreError> {
        // A later `exp` extends a record; an earlier one never shortens it.
        self.exec(
            "INSERT INTO revoked (jti, exp) VALUES ($1, $2)
             ON CONFLICT (jti) DO UPDATE SET exp = GREATEST(revoked.exp, excluded.exp)",
            &[&jti, &i(exp)],
        )
        .await
        .map(drop)
    }

    async fn is_revoked(&self, jti: &str, now: UnixTime) -> Result<bool, StoreError> {
        Ok(self
            .opt(
                "SELECT 1 FROM revoked WHERE jti = $1 AND exp + $2 > $3",
                &[&jti, &i(RECORD_GRACE), &i(now.as_secs())],
            )
            .await?
            .is_some())
    }

    async fn create_pending(
        &self,
        p: Pending,
        caps: PendingCaps,
        now: UnixTime,
    ) -> Result<PendingCreated, StoreError> {
        self.insert_pending(p, caps, now).await
    }

    async fn update_pending(&self, p: &mut Pending) -> Result<bool, StoreError> {
        let data = serde_json::to_string(&PendingRow::from(&*p)).map_err(|e| self.pg.err(e))?;
        let version = i(p.version);
        // The version compare-and-set is the database's: one writer wins; the
        // notification goes out with the commit, to every instance.
        let written = self
            .opt(
                "WITH updated AS (
                   UPDATE pending SET data = $1, version = version + 1
                   WHERE id = $2 AND version = $3 RETURNING id)
                 SELECT pg_notify($4, id) FROM updated",
                &[&data, &p.id, &version, &PENDING_CHANNEL],
            )
            .await?
            .is_some();
        if written {
            p.version = p.version.wrapping_add(1);
            // This instance's waiters at once; the others through the notification.
            self.changes.notify(&p.id);
        }
        Ok(written)
    }

    fn pending_changes(&self, id: &str) -> PendingChanges {
        self.changes.subscribe(id)
    }

    async fn pending(&self, id: &str) -> Result<Option<Pending>, StoreError> {
        self.opt("SELECT data, version FROM pending WHERE id = $1", &[&id])
            .await?
            .map(|r| pending_of(self, &r))
            .transpose()
    }

    async fn pending_by_code(&self, code: &str) -> Result<Option<Pending>, StoreError> {
        self.opt(
            "SELECT data, version FROM pending WHERE code = $1",
            &[&code],
        )
        .await?
        .map(|r| pending_of(self, &r))
        .transpose()
    }

    async fn pending_of_agent(
        &self,
        provider: &ServerId,
        agent: &AgentId,
    ) -> Result<Vec<Pending>, StoreError> {
        let agent = format!("{} {}", provider.as_str(), agent.as_str());
        let limit = i64::try_from(crate::store::MAX_PENDING_LISTED).unwrap_or(i64::MAX);
        self.all(
            "SELECT data, version FROM pending WHERE agent = $1 ORDER BY expires DESC LIMIT $2",
            &[&agent, &limit],
        )
        .await?
        .iter()
        .map(|r| pending_of(self, r))
        .collect()
    }

    async fn set_password_hash(&self, account: &str, phc: &str) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO passwords (account, phc) VALUES ($1, $2)
             ON CONFLICT (account) DO UPDATE SET phc = excluded.phc",
            &[&account, &phc],
        )
        .await
        .map(drop)
    }

    async fn password_hash(&self, account: &str) -> Result<Option<String>, StoreError> {
        self.opt("SELECT phc FROM passwords WHERE account = $1", &[&account])
            .await?
            .map(|r| self.get(&r, 0))
            .transpose()
    }

    async fn put_session(&self, key: &str, s: WebSession) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO sessions (key, account, csrf, expires, bad_codes) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (key) DO UPDATE SET account = excluded.account, csrf = excluded.csrf,
               expires = excluded.expires, bad_codes = excluded.bad_codes",
            &[&key, &s.account, &s.csrf, &i(s.expires), &i64::from(s.bad_codes)],
        )
        .await
        .map(drop)
    }

    async fn count_bad_code(&self, key: &str, now: UnixTime) -> Result<(), StoreError> {
        self.exec(
            "UPDATE sessions SET bad_codes = bad_codes + 1 WHERE key = $1 AND expires > $2",
            &[&key, &i(now.as_secs())],
        )
        .await
        .map(drop)
    }

    async fn session(&self, key: &str, now: UnixTime) -> Result<Option<WebSession>, StoreError> {
        let Some(r) = self
            .opt(
                "SELECT account, csrf, expires, bad_codes FROM sessions WHERE key = $1 AND expires > $2",
                &[&key, &i(now.as_secs())],
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(WebSession {
            account: self.get(&r, 0)?,
            csrf: self.get(&r, 1)?,
            expires: u(self.get(&r, 2)?),
            bad_codes: u32::try_from(self.get::<i64>(&r, 3)?).unwrap_or(u32::MAX),
        }))
    }

    async fn record_agent_token(
        &self,
        iss: &ServerId,
        jti: &str,
        agent: &AgentId,
        exp: u64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO agent_tokens (iss, jti, agent, exp) VALUES ($1, $2, $3, $4)
             ON CONFLICT (iss, jti) DO UPDATE SET agent = excluded.agent, exp = excluded.exp",
            &[&iss.as_str(), &jti, &agent.as_str(), &i(exp)],
        )
        .await
        .map(drop)
    }

    async fn see_agent_token(
        &self,
        (iss, jti): (&ServerId, &str),
        agent: &AgentId,
        exp: u64,
        revoked_key: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        // One statement: revoked, or recorded once (an existing row and its agent kept).
        let r = self
            .opt(
                "WITH r AS (SELECT 1 FROM revoked WHERE jti = $5 AND exp + $6 > $7),
                 ins AS (INSERT INTO agent_tokens (iss, jti, agent, exp)
                         SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM r)
                         ON CONFLICT DO NOTHING)
                 SELECT EXISTS (SELECT 1 FROM r)",
                &[
                    &iss.as_str(),
                    &jti,
                    &agent.as_str(),
                    &i(exp),
                    &revoked_key,
                    &i(RECORD_GRACE),
                    &i(now.as_secs()),
                ],
            )
            .await?;
        match r {
            Some(r) => self.get(&r, 0),
            None => Err(self.pg.err("the agent-token statement returned no row")),
        }
    }

    async fn issued(
        &self,
        jti: &str,
        person: bool,
        now: UnixTime,
    ) -> Result<IssuedToken, StoreError> {
        let table = if person {
            "person_tokens"
        } else {
            "auth_tokens"
        };
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM revoked WHERE jti = $1 AND exp + $2 > $3),
                    t.aud, t.sub, t.account
             FROM (SELECT 1) one LEFT JOIN {table} t ON t.jti = $1 AND t.exp + $2 > $3"
        );
        let Some(r) = self
            .opt(&sql, &[&jti, &i(RECORD_GRACE), &i(now.as_secs())])
            .await?
        else {
            return Err(self.pg.err("the issued-token query returned no row"));
        };
        if self.get::<bool>(&r, 0)? {
            return Ok(IssuedToken::Revoked);
        }
        let aud: Option<String> = self.get(&r, 1)?;
        Ok(match aud {
            None => IssuedToken::Unknown,
            Some(aud) => IssuedToken::Known {
                aud: server(&aud)?,
                sub: self.get(&r, 2)?,
                account: self.get(&r, 3)?,
            },
        })
    }

    async fn standing(
        &self,
        resource_token_key: &str,
        jti: &str,
        person: bool,
        now: UnixTime,
    ) -> Result<Standing, StoreError> {
        let table = if person {
            "person_tokens"
        } else {
            "auth_tokens"
        };
        // One round trip: both revocations, the record, and its account's standing.
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM revoked WHERE jti = $4 AND exp + $2 > $3),
                    EXISTS (SELECT 1 FROM revoked WHERE jti = $1 AND exp + $2 > $3),
                    t.aud, t.sub, t.account,
                    COALESCE((SELECT p.disabled FROM passwords p WHERE p.account = t.account),
                             false)
             FROM (SELECT 1) one LEFT JOIN {table} t ON t.jti = $1 AND t.exp + $2 > $3"
        );
        let Some(r) = self
            .opt(
                &sql,
                &[
                    &jti,
                    &i(RECORD_GRACE),
                    &i(now.as_secs()),
                    &resource_token_key,
                ],
            )
            .await?
        else {
            return Err(self.pg.err("the standing query returned no row"));
        };
        let presented = if self.get::<bool>(&r, 1)? {
            IssuedToken::Revoked
        } else {
            match self.get::<Option<String>>(&r, 2)? {
                None => IssuedToken::Unknown,
                Some(aud) => IssuedToken::Known {
                    aud: server(&aud)?,
                    sub: self.get(&r, 3)?,
                    account: self.get(&r, 4)?,
                },
            }
        };
        let disabled = matches!(presented, IssuedToken::Known { .. }) && self.get::<bool>(&r, 5)?;
        Ok(Standing::new(self.get(&r, 0)?, presented, disabled))
    }

    async fn agent_of_token(
        &self,
        iss: &ServerId,
        jti: &str,
    ) -> Result<Option<AgentId>, StoreError> {
        let Some(r) = self
            .opt(
                "SELECT agent FROM agent_tokens WHERE iss = $1 AND jti = $2",
                &[&iss.as_str(), &jti],
            )
            .await?
        else {
            return Ok(None);
        };
        let agent: String = self.get(&r, 0)?;
        AgentId::parse(&agent)
            .map(Some)
            .map_err(unreadable("agent identifier"))
    }

    async fn record_presentation(
        &self,
        jti: &str,
        access_server: &ServerId,
        exp: u64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO presentations (jti, access_server, exp) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&jti, &access_server.as_str(), &i(exp)],
        )
        .await
        .map(drop)
    }

    async fn presentations(&self, jti: &str) -> Result<Vec<ServerId>, StoreError> {
        self.all(
            "SELECT access_server FROM presentations WHERE jti = $1",
            &[&jti],
        )
        .await?
        .iter()
        .map(|r| server(&self.get::<String>(r, 0)?))
        .collect()
    }

    async fn record_chain(
        &self,
        jti: &str,
        chain: &[ServerId],
        exp: u64,
    ) -> Result<(), StoreError> {
        // Server identifiers hold no spaces: the chain is one space-separated column.
        let chain = chain
            .iter()
            .map(ServerId::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        self.exec(
            "INSERT INTO chains (jti, chain, exp) VALUES ($1, $2, $3)
             ON CONFLICT (jti) DO UPDATE SET chain = excluded.chain, exp = excluded.exp",
            &[&jti, &chain, &i(exp)],
        )
        .await
        .map(drop)
    }

    async fn chain(&self, jti: &str) -> Result<Vec<ServerId>, StoreError> {
        let Some(r) = self
            .opt("SELECT chain FROM chains WHERE jti = $1", &[&jti])
            .await?
        else {
            // No row: a token issued without a chain.
            return Ok(Vec::new());
        };
        self.get::<String>(&r, 0)?
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(server)
            .collect()
    }

    async fn tokens_of_agent(
        &self,
        provider: &ServerId,
        agent: &AgentId,
    ) -> Result<Vec<(String, ServerId, u64)>, StoreError> {
        // The agent's person tokens (its sub-agents' among them, by name those from before
        // their parent was kept) and, transitively, every auth token issued against one of
        // them; `UNION` ends the recursion on a cycle.
        let (head, tail) = crate::rows::subagent_affixes(agent).unzip();
        self.all(
            "WITH RECURSIVE t (jti, aud, exp) AS (
               SELECT jti, aud, exp FROM person_tokens
                 WHERE provider = $1 AND (agent = $2 OR parent = $2
                   OR (parent IS NULL AND length(agent) > length($3::text) + length($4::text)
                       AND left(agent, length($3::text)) = $3::text
                       AND right(agent, length($4::text)) = $4::text))
               UNION
               SELECT a.jti, a.aud, a.exp FROM auth_tokens a JOIN t ON a.presented_jti = t.jti)
             SELECT jti, aud, exp FROM t",
            &[&provider.as_str(), &agent.as_str(), &head, &tail],
        )
        .await?
        .iter()
        .map(|r| {
            Ok((
                self.get(r, 0)?,
                server(&self.get::<String>(r, 1)?)?,
                u(self.get(r, 2)?),
            ))
        })
        .collect()
    }

    async fn put_mission(&self, m: Mission) -> Result<(), StoreError> {
        let data = serde_json::to_string(&MissionRow::from(&m)).map_err(|e| self.pg.err(e))?;
        self.exec(
            "INSERT INTO missions (s256, data, owner_provider, owner_agent, account)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (s256) DO UPDATE SET data = excluded.data,
               owner_provider = excluded.owner_provider, owner_agent = excluded.owner_agent,
               account = excluded.account
             WHERE (missions.data::jsonb ->> 'terminated') IS NULL",
            &[
                &m.s256,
                &data,
                &m.agent.0.as_str(),
                &m.agent.1.as_str(),
                &m.account,
            ],
        )
        .await
        .map(drop)
    }

    async fn replace_mission(&self, m: &Mission) -> Result<bool, StoreError> {
        let mut next = m.clone();
        next.version = m.version.saturating_add(1);
        let data = serde_json::to_string(&MissionRow::from(&next)).map_err(|e| self.pg.err(e))?;
        // One statement: the row is locked while its version is compared, so of two
        // changes read at one version exactly one is written.
        self.exec(
            "UPDATE missions SET data = $2 WHERE s256 = $1
               AND COALESCE((data::jsonb ->> 'version')::bigint, 0) = $3
               AND (data::jsonb ->> 'terminated') IS NULL",
            &[&m.s256, &data, &i(m.version)],
        )
        .await
        .map(|n| n == 1)
    }

    async fn mission(&self, s256: &str) -> Result<Option<Mission>, StoreError> {
        self.opt("SELECT data FROM missions WHERE s256 = $1", &[&s256])
            .await?
            .map(|r| mission_of(&self.get::<String>(&r, 0)?))
            .transpose()
    }

    async fn missions_of(&self, account: &str) -> Result<Vec<Mission>, StoreError> {
        let limit = i64::try_from(crate::store::MAX_MISSIONS_LISTED).unwrap_or(i64::MAX);
        self.all(
            "SELECT data FROM missions WHERE account = $1 ORDER BY approved_seq DESC LIMIT $2",
            &[&account, &limit],
        )
        .await?
        .iter()
        .map(|r| mission_of(&self.get::<String>(r, 0)?))
        .collect()
    }

    async fn owned_mission(
        &self,
        s256: &str,
        owner: &(ServerId, AgentId),
    ) -> Result<Option<Mission>, StoreError> {
        // The owner is part of the lookup: another agent's mission is not found, exactly
        // as a missing one is, and is never read or decoded.
        self.opt(
            "SELECT data FROM missions WHERE s256 = $1 AND owner_provider = $2 AND owner_agent = $3",
            &[&s256, &owner.0.as_str(), &owner.1.as_str()],
        )
        .await?
        .map(|r| mission_of(&self.get::<String>(&r, 0)?))
        .transpose()
    }

    async fn linked_account(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        self.opt(
            "SELECT account FROM oidc_links WHERE issuer = $1 AND subject = $2",
            &[&issuer, &subject],
        )
        .await?
        .map(|r| self.get(&r, 0))
        .transpose()
    }

    async fn link_account(
        &self,
        issuer: &str,
        subject: &str,
        account: &str,
    ) -> Result<bool, StoreError> {
        Ok(self
            .exec(
                "INSERT INTO oidc_links (issuer, subject, account) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&issuer, &subject, &account],
            )
            .await?
            == 1)
    }

    async fn create_account(&self, account: &str, phc: &str) -> Result<bool, StoreError> {
        Ok(self
            .exec(
                "INSERT INTO passwords (account, phc, disabled) VALUES ($1, $2, false)
                 ON CONFLICT DO NOTHING",
                &[&account, &phc],
            )
            .await?
            == 1)
    }

    async fn set_account_disabled(
        &self,
        account: &str,
        disabled: bool,
    ) -> Result<bool, StoreError> {
        Ok(self
            .exec(
                "UPDATE passwords SET disabled = $2 WHERE account = $1",
                &[&account, &disabled],
            )
            .await?
            == 1)
    }

    async fn account_disabled(&self, account: &str) -> Result<bool, StoreError> {
        match self
            .opt(
                "SELECT disabled FROM passwords WHERE account = $1",
                &[&account],
            )
            .await?
        {
            Some(r) => self.get(&r, 0),
            None => Ok(false),
        }
    }

    async fn accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        self.all(
            "SELECT account, disabled FROM passwords ORDER BY account",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(AccountRecord {
                name: self.get(r, 0)?,
                disabled: self.get(r, 1)?,
            })
        })
        .collect()
    }

    async fn drop_sessions(&self, account: &str) -> Result<(), StoreError> {
        self.exec("DELETE FROM sessions WHERE account = $1", &[&account])
            .await
            .map(drop)
    }

    async fn bindings(&self, account: Option<&str>) -> Result<Vec<Binding>, StoreError> {
        self.all(
            "SELECT provider, agent, account FROM bindings
             WHERE $1::text IS NULL OR account = $1 ORDER BY account, provider, agent",
            &[&account],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Binding {
                provider: server(&self.get::<String>(r, 0)?)?,
                agent: AgentId::parse(&self.get::<String>(r, 1)?)
                    .map_err(unreadable("agent identifier"))?,
                account: self.get(r, 2)?,
            })
        })
        .collect()
    }

    async fn unbind(&self, provider: &ServerId, agent: &AgentId) -> Result<bool, StoreError> {
        Ok(self
            .exec(
                "DELETE FROM bindings WHERE provider = $1 AND agent = $2",
                &[&provider.as_str(), &agent.as_str()],
            )
            .await?
            == 1)
    }

    async fn issued_records(
        &self,
        account: Option<&str>,
        now: UnixTime,
    ) -> Result<(Vec<PersonTokenRecord>, Vec<AuthTokenRecord>), StoreError> {
        let (grace, now) = (i(RECORD_GRACE), i(now.as_secs()));
        let live: [&(dyn ToSql + Sync); 3] = [&account, &grace, &now];
        let sql = format!(
            "SELECT {PERSON_COLUMNS} FROM person_tokens
             WHERE ($1::text IS NULL OR account = $1) AND exp + $2 > $3 ORDER BY exp"
        );
        let persons = self
            .all(&sql, &live)
            .await?
            .iter()
            .map(|r| person(self, r))
            .collect::<Result<Vec<_>, _>>()?;
        let sql = format!(
            "SELECT {AUTH_COLUMNS} FROM auth_tokens
             WHERE ($1::text IS NULL OR account = $1) AND exp + $2 > $3 ORDER BY exp"
        );
        let auths = self
            .all(&sql, &live)
            .await?
            .iter()
            .map(|r| auth(self, r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((persons, auths))
    }

    async fn record_event(&self, e: AuditEvent) -> Result<(), StoreError> {
        aauth_metadata::audit::postgres::record(&self.pg, &e).await
    }

    async fn audit(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        aauth_metadata::audit::postgres::query(&self.pg, q).await
    }
}
