//! Pending revocations in PostgreSQL (feature `postgres`), for servers whose instances
//! share a database: a cascade answered `202` by one instance is polled at any of them
//! ([`Cascades::shared`](crate::cascade::Cascades::shared)).

use std::sync::Arc;
use std::time::Duration;

use aauth_keys::time::UnixTime;
use async_trait::async_trait;
use bytes::Bytes;

use super::StoreError;
use super::postgres::{Background, Migration, Pg, PgOpenError, PgOptions};
use crate::cascade::{CascadeStore, FINISHED_CASCADE_TTL, Kept, KeptAnswer, MAX_CASCADE_RUN};

/// The component its migrations are recorded under.
const COMPONENT: &str = "cascade";

const MIGRATIONS: &[Migration] = &[Migration::new(
    1,
    "pending revocations",
    "CREATE TABLE aauth_cascade (
       id TEXT PRIMARY KEY,
       caller TEXT NOT NULL,
       started BIGINT NOT NULL,
       finished BIGINT,
       status INTEGER,
       content_type TEXT,
       body BYTEA,
       delivered BOOLEAN NOT NULL DEFAULT FALSE,
       until BIGINT NOT NULL
     );
     CREATE INDEX aauth_cascade_until ON aauth_cascade (until);",
)];

/// The store's name in errors and metrics.
const STORE: &str = "cascade postgres";

/// How often records past keeping are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A [`CascadeStore`] in PostgreSQL. A record is kept until `until`: its longest run
/// and then [`FINISHED_CASCADE_TTL`] from its start, or [`FINISHED_CASCADE_TTL`] from
/// its end once it has one; later it reads as absent, and a sweep off the request path
/// removes it. Giving the final answer is one `UPDATE … WHERE NOT delivered`, so of two
/// polls racing on two instances exactly one gets it.
#[derive(Clone)]
pub struct PgCascadeStore {
    pg: Pg,
    _sweep: Arc<Background>,
}

impl std::fmt::Debug for PgCascadeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCascadeStore")
            .field("pg", &self.pg)
            .finish_non_exhaustive()
    }
}

/// Seconds as PostgreSQL's `BIGINT`.
fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

impl PgCascadeStore {
    /// Connects, applies its migration if needed, starts the sweep. Within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`PgOpenError`].
    pub async fn connect(options: &PgOptions) -> Result<Self, PgOpenError> {
        Ok(Self::over(&Pg::new(STORE, options)?).await?)
    }

    /// The pending revocations over `pg`'s connections (a store's own pool: a service's
    /// stores share one), its migration applied if needed, its sweep started.
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
                "DELETE FROM aauth_cascade WHERE id IN
                   (SELECT id FROM aauth_cascade WHERE until <= $1 LIMIT 5000)",
            )
            .await?;
        Ok(Self {
            pg,
            _sweep: Arc::new(sweep),
        })
    }

    /// Applies the migrations the database lacks of the tables a server's instances
    /// share beside its own, the pending revocations' and the replay cache's
    /// ([`crate::store::PgReplayStore`]), and returns how many, without starting a store
    /// (a server's `migrate` applies them with its own, so that a database role without
    /// `CREATE` can run every instance).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn migrate_shared(pg: &Pg) -> Result<usize, StoreError> {
        let cascade = pg.named(STORE).migrate(COMPONENT, MIGRATIONS).await?;
        Ok(cascade + crate::store::PgReplayStore::migrate(pg).await?)
    }
}

#[async_trait]
impl CascadeStore for PgCascadeStore {
    async fn begin(&self, id: &str, caller: &str, now: UnixTime) -> Result<(), StoreError> {
        let until = secs(now.plus(MAX_CASCADE_RUN.as_secs() + FINISHED_CASCADE_TTL.as_secs()));
        self.pg
            .execute(
                "INSERT INTO aauth_cascade (id, caller, started, until) VALUES ($1, $2, $3, $4)",
                &[&id, &caller, &secs(now), &until],
            )
            .await?;
        Ok(())
    }

    async fn finish(&self, id: &str, answer: &KeptAnswer, now: UnixTime) -> Result<(), StoreError> {
        let until = secs(now.plus(FINISHED_CASCADE_TTL.as_secs()));
        let body: &[u8] = &answer.body;
        self.pg
            .execute(
                "UPDATE aauth_cascade SET finished = $2, status = $3, content_type = $4,
                   body = $5, until = $6
                 WHERE id = $1 AND finished IS NULL",
                &[
                    &id,
                    &secs(now),
                    &i32::from(answer.status),
                    &answer.content_type,
                    &body,
                    &until,
                ],
            )
            .await?;
        Ok(())
    }

    async fn read(
        &self,
        id: &str,
        caller: &str,
        now: UnixTime,
    ) -> Result<Option<Kept>, StoreError> {
        let Some(row) = self
            .pg
            .query_opt(
                "SELECT started, finished, status, content_type, body, delivered
                 FROM aauth_cascade WHERE id = $1 AND caller = $2 AND until > $3",
                &[&id, &caller, &secs(now)],
            )
            .await?
        else {
            return Ok(None);
        };
        let record = "pending revocation";
        let started: i64 = self.pg.get(&row, 0, record)?;
        let finished: Option<i64> = self.pg.get(&row, 1, record)?;
        if finished.is_none() {
            return Ok(Some(Kept::Running {
                since: UnixTime(u64::try_from(started).unwrap_or(0)),
            }));
        }
        // An ended record has its status and body (`finish` writes them together).
        let status: Option<i32> = self.pg.get(&row, 2, record)?;
        let body: Option<Vec<u8>> = self.pg.get(&row, 4, record)?;
        let status = status
            .and_then(|s| u16::try_from(s).ok())
            .filter(|s| (200..=599).contains(s));
        let (Some(status), Some(body)) = (status, body) else {
            return Err(StoreError::unreadable(
                STORE,
                record,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "an ended record without a final status or its body",
                ),
            ));
        };
        let content_type: Option<String> = self.pg.get(&row, 3, record)?;
        let delivered: bool = self.pg.get(&row, 5, record)?;
        Ok(Some(Kept::Finished {
            answer: KeptAnswer::new(status, content_type, Bytes::from(body)),
            delivered,
        }))
    }

    async fn deliver(&self, id: &str) -> Result<bool, StoreError> {
        let marked = self
            .pg
            .execute(
                "UPDATE aauth_cascade SET delivered = TRUE
                 WHERE id = $1 AND finished IS NOT NULL AND NOT delivered",
                &[&id],
            )
            .await?;
        Ok(marked == 1)
    }
}
