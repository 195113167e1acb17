//! Storing a new deferred request within its bounds: the counts and the insert are one
//! decision, under transaction-scoped advisory locks, whichever instance makes it.

use aauth_keys::time::UnixTime;

use super::PgStore;
use crate::pending::Pending;
use crate::rows::{PendingRow, i};
use crate::store::{PENDING_KEPT, PendingCaps, PendingCreated, StoreError};

impl PgStore {
    /// [`PsStore::create_pending`](crate::PsStore::create_pending): the locks are taken
    /// in one order (the agent's, its provider's when that count bounds the request, the
    /// total's when that count does), so two requests never wait on each other's.
    pub(super) async fn insert_pending(
        &self,
        p: Pending,
        caps: PendingCaps,
        now: UnixTime,
    ) -> Result<PendingCreated, StoreError> {
        let data = serde_json::to_string(&PendingRow::from(&p)).map_err(|e| self.pg.err(e))?;
        let provider = p.agent.0.as_str();
        let agent = format!("{provider} {}", p.agent.1.as_str());
        let bound = |n: Option<usize>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let (per_agent, per_provider, total) = (
            i64::try_from(caps.per_agent).unwrap_or(i64::MAX),
            bound(caps.per_provider),
            bound(caps.total),
        );
        let floor = i(now.as_secs().saturating_sub(PENDING_KEPT));
        let now = i(now.as_secs());
        self.pg
            .timed(async {
                let mut c = self.pg.client().await?;
                let tx = c.transaction().await.map_err(|e| self.pg.err(e))?;
                let lock = |sql: &'static str, key: String| {
                    let tx = &tx;
                    async move {
                        tx.execute(sql, &[&key])
                            .await
                            .map(drop)
                            .map_err(|e| self.pg.err(e))
                    }
                };
                lock(
                    "SELECT pg_advisory_xact_lock(hashtext('aauth_ps_pending'), hashtext($1))",
                    agent.clone(),
                )
                .await?;
                if per_provider.is_some() {
                    lock(
                        "SELECT pg_advisory_xact_lock(
                           hashtext('aauth_ps_pending_provider'), hashtext($1))",
                        provider.to_owned(),
                    )
                    .await?;
                }
                if total.is_some() {
                    // One lock per schema: the stores of other schemas count their own.
                    lock(
                        "SELECT pg_advisory_xact_lock(hashtext('aauth_ps_pending_total'),
                           hashtext($1 || COALESCE(current_schema(), '')))",
                        String::new(),
                    )
                    .await?;
                }
                let counts = tx
                    .query_one(
                        "SELECT
                           (SELECT count(*) FROM pending WHERE agent = $1 AND expires > $2),
                           CASE WHEN $3 THEN (SELECT count(*) FROM pending
                             WHERE provider = $4 AND expires > $2) ELSE 0 END,
                           CASE WHEN $5 THEN (SELECT count(*) FROM pending
                             WHERE expires >= $6) ELSE 0 END",
                        &[
                            &agent,
                            &now,
                            &per_provider.is_some(),
                            &provider,
                            &total.is_some(),
                            &floor,
                        ],
                    )
                    .await
                    .map_err(|e| self.pg.err(e))?;
                let (open, of_provider, kept): (i64, i64, i64) = (
                    self.get(&counts, 0)?,
                    self.get(&counts, 1)?,
                    self.get(&counts, 2)?,
                );
                let created = if open >= per_agent {
                    PendingCreated::AgentFull
                } else if per_provider.is_some_and(|max| of_provider >= max) {
                    PendingCreated::ProviderFull
                } else if total.is_some_and(|max| kept >= max) {
                    PendingCreated::Full
                } else {
                    let inserted = tx
                        .execute(
                            "INSERT INTO pending
                               (id, code, expires, data, version, agent, provider)
                             VALUES ($1, $2, $3, $4, 0, $5, $6)
                             ON CONFLICT DO NOTHING",
                            &[&p.id, &p.code, &i(p.expires), &data, &agent, &provider],
                        )
                        .await
                        .map_err(|e| self.pg.err(e))?;
                    if inserted == 1 {
                        PendingCreated::Created
                    } else {
                        PendingCreated::Taken
                    }
                };
                tx.commit().await.map_err(|e| self.pg.err(e))?;
                Ok(created)
            })
            .await
    }
}
