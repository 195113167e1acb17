//! The replay cache in PostgreSQL (feature `postgres`), for servers whose instances share
//! a database: a signed request accepted by one instance is a replay at every other.

use std::sync::Arc;
use std::time::Duration;

use aauth_keys::time::{Clock, SystemClock, UnixTime};
use aauth_signing::{ReplayStore, ReplayStoreError, ReplayUse};
use async_trait::async_trait;

use super::StoreError;
use super::postgres::{Migration, Pg, PgOptions, PgOptionsError};

/// The component its migrations are recorded under.
const COMPONENT: &str = "replay";

const MIGRATIONS: &[Migration] = &[Migration::new(
    1,
    "replay cache",
    "CREATE TABLE aauth_replay (key BYTEA PRIMARY KEY, until BIGINT NOT NULL);
     CREATE INDEX aauth_replay_until ON aauth_replay (until);",
)];

/// How often expired entries are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A [`ReplayStore`] in PostgreSQL: one statement a request (`INSERT … ON CONFLICT`),
/// so that of any number of concurrent first uses of one key, on any instances, exactly
/// one is recorded. An entry is live until its `until` on the callers' clock; expired
/// ones are swept off the request path once a minute. A database that cannot answer is
/// [`ReplayStoreError::Unavailable`] (`503`): never an unchecked admission.
///
/// Unlike the memory and Redis stores it keeps no per-signer share: the database's size
/// is the bound.
#[derive(Clone)]
pub struct PgReplayStore {
    pg: Pg,
    _sweep: Arc<Sweep>,
}

struct Sweep(tokio::task::AbortHandle);

impl Drop for Sweep {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for PgReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReplayStore")
            .field("pg", &self.pg)
            .finish_non_exhaustive()
    }
}

/// Why a [`PgReplayStore`] could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PgReplayError {
    /// The options do not hold.
    #[error(transparent)]
    Options(#[from] PgOptionsError),
    /// The database could not be reached or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PgReplayStore {
    /// Connects, applies its migration if needed, starts the sweep. Within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`PgReplayError`].
    pub async fn connect(options: &PgOptions) -> Result<Self, PgReplayError> {
        let pg = Pg::new("replay postgres", options)?;
        pg.migrate(COMPONENT, MIGRATIONS).await?;
        let sweeper = pg.clone();
        let task = tokio::spawn(async move {
            let mut every =
                tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
            loop {
                every.tick().await;
                let now = i64::try_from(SystemClock.now().as_secs()).unwrap_or(i64::MAX);
                // A failed sweep is retried at the next tick.
                let _ = sweeper
                    .timed(async {
                        let c = sweeper.client().await?;
                        c.execute(
                            "DELETE FROM aauth_replay WHERE key IN
                               (SELECT key FROM aauth_replay WHERE until <= $1 LIMIT 5000)",
                            &[&now],
                        )
                        .await
                        .map_err(|e| sweeper.err(e))
                    })
                    .await;
            }
        });
        Ok(Self {
            pg,
            _sweep: Arc::new(Sweep(task.abort_handle())),
        })
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
            .timed(async {
                let c = self.pg.client().await?;
                let stmt = c
                    .prepare_cached(
                        "INSERT INTO aauth_replay (key, until) VALUES ($1, $2)
                         ON CONFLICT (key) DO UPDATE SET until = excluded.until
                           WHERE aauth_replay.until <= $3
                         RETURNING 1",
                    )
                    .await
                    .map_err(|e| self.pg.err(e))?;
                c.query_opt(&stmt, &[&key, &until, &now])
                    .await
                    .map_err(|e| self.pg.err(e))
            })
            .await
            .map_err(|e| ReplayStoreError::Unavailable {
                reason: e.to_string(),
            })?;
        Ok(recorded.is_some())
    }
}
