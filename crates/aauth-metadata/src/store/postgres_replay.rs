//! The replay cache in PostgreSQL (feature `postgres`), for servers whose instances share
//! a database: a signed request accepted by one instance is a replay at every other.

use std::sync::Arc;
use std::time::Duration;

use aauth_keys::time::UnixTime;
use aauth_signing::{ReplayStore, ReplayStoreError, ReplayUse};
use async_trait::async_trait;

use super::StoreError;
use super::postgres::{Background, Migration, Pg, PgOpenError, PgOptions};

/// The component its migrations are recorded under.
const COMPONENT: &str = "replay";

const MIGRATIONS: &[Migration] = &[Migration::new(
    1,
    "replay cache",
    "CREATE TABLE aauth_replay (key BYTEA PRIMARY KEY, until BIGINT NOT NULL);
     CREATE INDEX aauth_replay_until ON aauth_replay (until);",
)];

/// The store's name in errors and metrics.
const STORE: &str = "replay postgres";

/// How often expired entries are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A [`ReplayStore`] in PostgreSQL: one statement a request (`INSERT … ON CONFLICT`),
/// so that of any number of concurrent first uses of one key, on any instances, exactly
/// one is recorded. An entry is live until its `until` on the callers' clock; expired
/// ones are swept off the request path once a minute. A database that cannot answer is
/// [`ReplayStoreError::Unavailable`] (`503`): never an unchecked admission.
///
/// Unlike the memory and Redis stores it keeps no per-signer or per-issuer share, and
/// no bound either (the database's size is the bound): it is never full, so no signer or
/// issuer can fill it and have every other refused; [`ReplayUse::issuer`] is not read.
#[derive(Clone)]
pub struct PgReplayStore {
    pg: Pg,
    _sweep: Arc<Background>,
}

impl std::fmt::Debug for PgReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReplayStore")
            .field("pg", &self.pg)
            .finish_non_exhaustive()
    }
}

impl PgReplayStore {
    /// Connects, applies its migration if needed, starts the sweep. Within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`PgOpenError`].
    pub async fn connect(options: &PgOptions) -> Result<Self, PgOpenError> {
        Ok(Self::over(&Pg::new(STORE, options)?).await?)
    }

    /// The replay cache over `pg`'s connections (a store's own pool: a service's stores
    /// share one), its migration applied if needed, its sweep started.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn over(pg: &Pg) -> Result<Self, StoreError> {
        let (pg, sweep) = pg
            .swept(
                STORE,
                (COMPONENT, MIGRATIONS),
                SWEEP_EVERY,
                "DELETE FROM aauth_replay WHERE key IN
                   (SELECT key FROM aauth_replay WHERE until <= $1 LIMIT 5000)",
            )
            .await?;
        Ok(Self {
            pg,
            _sweep: Arc::new(sweep),
        })
    }

    /// Applies the replay cache's migrations the database lacks and returns how many,
    /// without starting a store (see [`crate::store::PgCascadeStore::migrate_shared`]).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn migrate(pg: &Pg) -> Result<usize, StoreError> {
        pg.named(STORE).migrate(COMPONENT, MIGRATIONS).await
    }
}

#[async_trait]
impl ReplayStore for PgReplayStore {
    async fn first_use(
        &self,
        entry: &ReplayUse<'_>,
        now: UnixTime,
    ) -> Result<bool, ReplayStoreError> {
        let (now, until) = (
            i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
            i64::try_from(entry.until.as_secs()).unwrap_or(i64::MAX),
        );
        let key: &[u8] = &entry.key;
        // Recorded, or an expired entry replaced: a row comes back. A live one: none.
        let recorded = self
            .pg
            .query_opt(
                "INSERT INTO aauth_replay (key, until) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET until = excluded.until
                   WHERE aauth_replay.until <= $3
                 RETURNING 1",
                &[&key, &until, &now],
            )
            .await
            .map_err(|e| ReplayStoreError::Unavailable {
                reason: e.to_string(),
            })?;
        Ok(recorded.is_some())
    }
}
