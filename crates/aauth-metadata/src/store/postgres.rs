//! PostgreSQL for stores that several instances of a role share (feature `postgres`):
//! the connection pool, versioned migrations, `LISTEN` with reconnection, and the store
//! metrics every call records. The Person Server's and the Access Server's PostgreSQL
//! stores are built on it.
//!
//! - **Connections** come from a pool ([`deadpool_postgres`]) of at most
//!   [`PgOptions::pool_size`] connections; none is opened until the first call, so a
//!   service starts while the database is still coming up and answers `/readyz` with the
//!   database's state.
//! - **TLS** through rustls: the Mozilla roots plus, if given, the certificates of
//!   [`PgOptions::ca_file`]. The URL's `sslmode` decides whether it is used: `disable`,
//!   `prefer` (tokio-postgres's default: TLS if the server offers it) or `require`, which
//!   a deployment across a network should set (the certificate and host name are then
//!   always verified).
//! - **A schema** per deployment ([`PgOptions::schema`]): every connection's
//!   `search_path`, created by [`Pg::migrate`], so that several services (or tests)
//!   share one database without seeing each other's tables.
//! - **Migrations** are numbered; [`Pg::migrate`] applies the ones a database lacks, each
//!   in its own transaction, under an advisory lock (two instances starting at once apply
//!   each migration once), and refuses a database that a newer version migrated further
//!   than this build knows.
//!
//! ```
//! use aauth_metadata::store::postgres::{Migration, PgOptions};
//!
//! let options = PgOptions::new("postgres://aauth@db.internal/aauth?sslmode=require")
//!     .schema("person_server")
//!     .pool_size(16);
//! assert_eq!(options.redacted_url(), "postgres://aauth@db.internal/aauth?sslmode=require");
//! assert!(PgOptions::new("postgres://u:hunter2@db/x").redacted_url().contains("u:<redacted>@"));
//! // A schema is an identifier, never SQL.
//! assert!(PgOptions::new("postgres://db/x").schema("a; DROP TABLE t").check().is_err());
//!
//! const MIGRATIONS: &[Migration] = &[Migration::new(1, "tokens", "CREATE TABLE t (jti TEXT PRIMARY KEY)")];
//! # let _ = MIGRATIONS;
//! ```

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aauth_keys::time::{Clock, SystemClock};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::StoreError;
use crate::metric;

pub use deadpool_postgres::{Object as PgClient, Transaction as PgTransaction};
pub use tokio_postgres::Row as PgRow;
pub use tokio_postgres::types::{FromSql, ToSql};

/// The default number of pooled connections.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// The default wait for a connection (the pool's and the server's).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`Pg::listen`] calls: `Some(payload)` for a notification, `None` when listening
/// (re)starts.
pub type OnNotice = Arc<dyn Fn(Option<&str>) + Send + Sync>;

/// The lock every migration step holds to its commit (one database-wide key).
const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('aauth_migrations'), 0)";

/// How to reach the database.
#[derive(Clone)]
pub struct PgOptions {
    url: String,
    schema: Option<String>,
    pool_size: usize,
    ca_file: Option<PathBuf>,
    connect_timeout: Duration,
    password: Option<zeroize::Zeroizing<String>>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &self.redacted_url())
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl PgOptions {
    /// The database at `url` (`postgres://user:password@host:port/db?sslmode=...`, or
    /// libpq's `key=value` form), the `public` schema, [`DEFAULT_POOL_SIZE`] connections.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: None,
            pool_size: DEFAULT_POOL_SIZE,
            ca_file: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            password: None,
        }
    }

    /// Keeps the tables in `schema` (created if missing): letters, digits and `_`,
    /// not starting with a digit, at most 63 bytes.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// At most `n` pooled connections (at least one).
    #[must_use]
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// Uses `password` (read from a file, say) rather than one in the URL.
    #[must_use]
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(zeroize::Zeroizing::new(password.to_owned()));
        self
    }

    /// Also trusts the PEM certificates in `path` (a private CA).
    #[must_use]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// How long to wait for a connection before the call fails.
    #[must_use]
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// The URL with any password replaced by `<redacted>`, for logs and `aauth config
    /// check`.
    #[must_use]
    pub fn redacted_url(&self) -> String {
        super::redact_url(&self.url)
    }

    /// Checks the options without connecting: the URL parses, the schema is an
    /// identifier.
    ///
    /// # Errors
    ///
    /// [`PgOptionsError`].
    pub fn check(&self) -> Result<(), PgOptionsError> {
        tokio_postgres::Config::from_str(&self.url).map_err(|e| PgOptionsError::Url {
            reason: e.to_string(),
        })?;
        if let Some(s) = &self.schema {
            let mut chars = s.chars();
            let ok = s.len() <= 63
                && chars
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(PgOptionsError::Schema { schema: s.clone() });
            }
        }
        Ok(())
    }
}

/// Why [`PgOptions`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PgOptionsError {
    /// The URL does not parse.
    #[error("the PostgreSQL URL does not parse: {reason}")]
    Url {
        /// tokio-postgres's reason.
        reason: String,
    },
    /// The schema is not a plain identifier.
    #[error(
        "the PostgreSQL schema {schema:?} is not a plain identifier (a-z, 0-9 and _, not starting with a digit, at most 63 bytes)"
    )]
    Schema {
        /// The schema as given.
        schema: String,
    },
    /// The CA file cannot be read or holds no certificate.
    #[error("the PostgreSQL CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// One numbered step of a store's schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number: migrations run in order, each once.
    pub version: u32,
    /// What it does, for the operator.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

impl Migration {
    /// Migration `version`, named `name`, running `sql`.
    #[must_use]
    pub const fn new(version: u32, name: &'static str, sql: &'static str) -> Self {
        Self { version, name, sql }
    }
}

/// A pool of connections to one database, for the store named `store`.
#[derive(Clone)]
pub struct Pg {
    pool: Pool,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    schema: Option<String>,
    store: &'static str,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg")
            .field("store", &self.store)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Pg {
    /// A pool for `store` (named in its errors and metrics) over `options`. Opens no
    /// connection.
    ///
    /// # Errors
    ///
    /// [`PgOptionsError`] when the options do not hold.
    pub fn new(store: &'static str, options: &PgOptions) -> Result<Self, PgOptionsError> {
        options.check()?;
        let mut config =
            tokio_postgres::Config::from_str(&options.url).map_err(|e| PgOptionsError::Url {
                reason: e.to_string(),
            })?;
        // The URL's own `connect_timeout` wins over the default.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        if let Some(schema) = &options.schema {
            // Beside any `options` the URL gives.
            let given = config.get_options().map(str::to_owned);
            config.options(match given {
                Some(o) if !o.is_empty() => format!("{o} -c search_path={schema}"),
                _ => format!("-c search_path={schema}"),
            });
        }
        if let Some(password) = &options.password {
            config.password(password.as_bytes());
        }
        let tls = MakeRustlsConnect::new(tls_config(options.ca_file.as_ref())?);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| PgOptionsError::Url {
                reason: e.to_string(),
            })?;
        Ok(Self {
            pool,
            config,
            tls,
            schema: options.schema.clone(),
            store,
        })
    }

    /// The same pool, for another store (named `store` in its errors and metrics): stores
    /// of one service share its connections rather than each opening its own.
    #[must_use]
    pub fn named(&self, store: &'static str) -> Self {
        Self {
            store,
            ..self.clone()
        }
    }

    /// The store's name, as its errors give it.
    #[must_use]
    pub fn store(&self) -> &'static str {
        self.store
    }

    /// A failure of this store's database.
    pub fn err(&self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
        StoreError::backend(self.store, e)
    }

    /// A pooled connection.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when none can be had within the connect timeout.
    pub async fn client(&self) -> Result<PgClient, StoreError> {
        self.pool.get().await.map_err(|e| self.err(e))
    }

    /// Runs `call` and records its duration and any failure in the store metrics
    /// (`aauth_store_call_duration_seconds`, `aauth_store_errors_total`).
    ///
    /// # Errors
    ///
    /// What `call` returns.
    pub async fn timed<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let outcome = call.await;
        metrics::histogram!(metric::STORE_DURATION, "store" => self.store)
            .record(started.elapsed().as_secs_f64());
        if outcome.is_err() {
            metrics::counter!(metric::STORE_ERRORS, "store" => self.store).increment(1);
        }
        outcome
    }

    /// Whether this instance may sweep `component`'s expired rows now: a lock held to the
    /// end of `tx`, taken only if free, so that one instance per schema and component
    /// sweeps at a time (services in other schemas of the same database sweep their own,
    /// unhindered; with no schema on the path, as when it was dropped under us, one
    /// shared key, never a NULL answer). `false`: another instance is sweeping.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the database does not answer.
    pub async fn try_sweep_lock(
        &self,
        tx: &PgTransaction<'_>,
        component: &str,
    ) -> Result<bool, StoreError> {
        Ok(tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock(
                     hashtext('aauth_sweep ' || COALESCE(current_schema(), '')),
                     hashtext($1))",
                &[&component],
            )
            .await
            .map_err(|e| self.err(e))?
            .get(0))
    }

    /// Applies the `migrations` of `component` this database lacks, in order, and returns
    /// how many it applied. Creates the schema first if one is configured. A database
    /// already current is only read (no DDL, no lock): a database role without `CREATE`
    /// starts on a database migrated beforehand (`aauth admin migrate`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when a migration fails (that migration is rolled back;
    /// the ones before it stay), or when the database is at a version of `component`
    /// newer than the last of `migrations`.
    pub async fn migrate(
        &self,
        component: &str,
        migrations: &[Migration],
    ) -> Result<usize, StoreError> {
        let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
        let at = self.schema_version(component).await?;
        if at > known {
            return Err(self.newer(component, at, known));
        }
        if at == known {
            return Ok(0);
        }
        let mut client = self.client().await?;
        // `IF NOT EXISTS` does not make two concurrent creations safe: every step runs
        // under one advisory lock, whichever instance (or component) starts first.
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        tx.execute(MIGRATION_LOCK, &[])
            .await
            .map_err(|e| self.err(e))?;
        if let Some(schema) = &self.schema {
            // Checked to be a plain identifier by `PgOptions::check`.
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
                .map_err(|e| self.err(e))?;
        }
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS aauth_migrations (
               component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,
               applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
               PRIMARY KEY (component, version))",
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        let mut applied = 0;
        for m in migrations {
            let tx = client.transaction().await.map_err(|e| self.err(e))?;
            tx.execute(MIGRATION_LOCK, &[])
                .await
                .map_err(|e| self.err(e))?;
            let at: Option<i32> = tx
                .query_one(
                    "SELECT max(version) FROM aauth_migrations WHERE component = $1",
                    &[&component],
                )
                .await
                .map_err(|e| self.err(e))?
                .get(0);
            let at = u32::try_from(at.unwrap_or(0)).unwrap_or(0);
            if at > known {
                return Err(self.newer(component, at, known));
            }
            if m.version <= at {
                continue;
            }
            tx.batch_execute(m.sql).await.map_err(|e| {
                self.err(format!(
                    "migration {} ({}) of {component}: {e}",
                    m.version, m.name
                ))
            })?;
            let version = i32::try_from(m.version).unwrap_or(i32::MAX);
            tx.execute(
                "INSERT INTO aauth_migrations (component, version, name) VALUES ($1, $2, $3)",
                &[&component, &version, &m.name],
            )
            .await
            .map_err(|e| self.err(e))?;
            tx.commit().await.map_err(|e| self.err(e))?;
            applied += 1;
        }
        Ok(applied)
    }

    /// Runs the statement `sql` (prepared once per connection) and returns how many rows
    /// it changed, counted in the store metrics.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`].
    pub async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.timed(async {
            let c = self.client().await?;
            let stmt = c.prepare_cached(sql).await.map_err(|e| self.err(e))?;
            c.execute(&stmt, params).await.map_err(|e| self.err(e))
        })
        .await
    }

    /// Runs the query `sql` and returns its one row, if any (more than one is an error).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`].
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<PgRow>, StoreError> {
        self.timed(async {
            let c = self.client().await?;
            let stmt = c.prepare_cached(sql).await.map_err(|e| self.err(e))?;
            c.query_opt(&stmt, params).await.map_err(|e| self.err(e))
        })
        .await
    }

    /// Runs the query `sql` and returns its rows.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`].
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<PgRow>, StoreError> {
        self.timed(async {
            let c = self.client().await?;
            let stmt = c.prepare_cached(sql).await.map_err(|e| self.err(e))?;
            c.query(&stmt, params).await.map_err(|e| self.err(e))
        })
        .await
    }

    /// Column `idx` of `row`, as `T`: a column that does not read as `T` is this store's
    /// unreadable `record`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unreadable`].
    pub fn get<'a, T: FromSql<'a>>(
        &self,
        row: &'a PgRow,
        idx: usize,
        record: &'static str,
    ) -> Result<T, StoreError> {
        row.try_get(idx)
            .map_err(|e| StoreError::unreadable(self.store, record, e))
    }

    /// Runs `task` every `period` (the first a period from now) until the returned
    /// [`Background`] is dropped: a store's sweep of expired rows, off the request path.
    /// A failed pass is retried at the next. Within a Tokio runtime.
    #[must_use]
    pub fn every<F, Fut>(&self, period: Duration, task: F) -> Background
    where
        F: Fn(Self) -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64, StoreError>> + Send,
    {
        let pg = self.clone();
        let handle = tokio::spawn(async move {
            let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let _ = task(pg.clone()).await;
            }
        });
        Background(handle.abort_handle())
    }

    /// A component over this pool's connections, named `store` in errors and metrics:
    /// its `migrations` applied if needed, then [`Pg::sweep`] of its expired rows
    /// started (the shared replay cache and pending revocations are such components).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn swept(
        &self,
        store: &'static str,
        (component, migrations): (&str, &[Migration]),
        period: Duration,
        delete: &'static str,
    ) -> Result<(Self, Background), StoreError> {
        let pg = self.named(store);
        pg.migrate(component, migrations).await?;
        let sweep = pg.sweep(period, delete);
        Ok((pg, sweep))
    }

    /// [`Pg::every`] `period`, the statement `delete`, whose one parameter (`$1`) is the
    /// wall clock's seconds: the sweep of a table whose rows expire.
    #[must_use]
    pub fn sweep(&self, period: Duration, delete: &'static str) -> Background {
        self.every(period, move |pg| async move {
            let now = i64::try_from(SystemClock.now().as_secs()).unwrap_or(i64::MAX);
            pg.execute(delete, &[&now]).await
        })
    }

    /// The refusal of a database whose `component` schema a newer build migrated.
    fn newer(&self, component: &str, at: u32, known: u32) -> StoreError {
        self.err(format!(
            "the database's {component} schema is at version {at}, newer than this build \
             knows ({known}): run the newer version, or restore a backup"
        ))
    }

    /// The version of `component`'s schema the database is at (0: none applied).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`].
    pub async fn schema_version(&self, component: &str) -> Result<u32, StoreError> {
        let client = self.client().await?;
        let exists: bool = client
            .query_one("SELECT to_regclass('aauth_migrations') IS NOT NULL", &[])
            .await
            .map_err(|e| self.err(e))?
            .get(0);
        if !exists {
            return Ok(0);
        }
        let at: Option<i32> = client
            .query_one(
                "SELECT max(version) FROM aauth_migrations WHERE component = $1",
                &[&component],
            )
            .await
            .map_err(|e| self.err(e))?
            .get(0);
        Ok(u32::try_from(at.unwrap_or(0)).unwrap_or(0))
    }

    /// Listens on `channel` on a connection of its own, outside the pool, for as long as
    /// the returned [`Listener`] lives: `on(Some(payload))` for every notification,
    /// `on(None)` each time listening (re)starts, since notifications sent while it was
    /// down are lost and the caller must treat everything as changed. A lost connection
    /// is reopened after a pause that grows from 100 ms to 5 s.
    ///
    /// Must be called within a Tokio runtime.
    #[must_use]
    pub fn listen(&self, channel: &'static str, on: OnNotice) -> Listener {
        let (config, tls, store) = (self.config.clone(), self.tls.clone(), self.store);
        let task = tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            loop {
                match listen_once(&config, &tls, channel, &on).await {
                    // Listening had started: begin the pauses again.
                    Ok(()) => pause = Duration::from_millis(100),
                    Err(e) => {
                        tracing_warn(store, &e);
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
                tokio::time::sleep(pause).await;
            }
        });
        Listener {
            task: task.abort_handle(),
        }
    }
}

#[cfg(feature = "ops")]
fn tracing_warn(store: &'static str, e: &tokio_postgres::Error) {
    tracing::warn!(store, error = %e, "LISTEN connection lost; reconnecting");
}

#[cfg(not(feature = "ops"))]
fn tracing_warn(_: &'static str, _: &tokio_postgres::Error) {}

/// One listening connection: returns `Ok` when it ends after listening had started.
async fn listen_once(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    channel: &str,
    on: &OnNotice,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tls.clone()).await?;
    let forward = Arc::clone(on);
    // The connection must be driven while LISTEN runs: its messages are read here.
    let mut reader = AbortOnDrop(tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => forward(Some(n.payload())),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }));
    // A channel is an identifier: the callers pass constants.
    client.batch_execute(&format!("LISTEN {channel}")).await?;
    on(None);
    let ended = (&mut reader.0).await;
    drop(client);
    match ended {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

/// A task stopped when its handle is dropped (the reader of a listening connection,
/// when the listener is stopped).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A store's background task ([`Pg::every`]); it stops when this is dropped.
#[derive(Debug)]
pub struct Background(tokio::task::AbortHandle);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a PostgreSQL store could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PgOpenError {
    /// The options do not hold.
    #[error(transparent)]
    Options(#[from] PgOptionsError),
    /// The database could not be reached or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The listening task of [`Pg::listen`]; it stops when this is dropped.
#[derive(Debug)]
pub struct Listener {
    task: tokio::task::AbortHandle,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The client TLS configuration: the Mozilla roots, and `ca_file`'s certificates.
fn tls_config(ca_file: Option<&PathBuf>) -> Result<rustls::ClientConfig, PgOptionsError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let bad = |reason: String| PgOptionsError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("it holds no PEM certificate".to_owned()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| PgOptionsError::CaFile {
            path: String::new(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_identifiers() {
        for good in ["ps", "_a1", "person_server_2"] {
            assert!(
                PgOptions::new("postgres://h/d")
                    .schema(good)
                    .check()
                    .is_ok(),
                "{good}"
            );
        }
        for bad in ["", "1a", "A", "a-b", "a;b", &"x".repeat(64)] {
            assert!(
                PgOptions::new("postgres://h/d")
                    .schema(bad)
                    .check()
                    .is_err(),
                "{bad}"
            );
        }
    }
}
