//! Storing a new deferred request within its bounds: the counts and the insert in one
//! transaction on the store's one connection.

use aauth_metadata::store::StoreError;
use rusqlite::{Connection, params};

use super::err;
use crate::rows::i;
use crate::store::{PENDING_KEPT, PendingCaps, PendingCreated};

/// A new deferred request's columns: `data` is its row's JSON.
pub(super) struct NewPending {
    pub(super) id: String,
    pub(super) code: String,
    pub(super) expires: u64,
    pub(super) data: String,
    /// `"{provider} {agent}"`.
    pub(super) agent: String,
    pub(super) provider: String,
}

/// Stores `p` within `caps` at `now` (and first drops the requests kept long enough,
/// when `sweep`), as one transaction.
pub(super) fn create(
    c: &Connection,
    p: &NewPending,
    caps: PendingCaps,
    now: u64,
    sweep: bool,
) -> Result<PendingCreated, StoreError> {
    let tx = c.unchecked_transaction().map_err(err)?;
    if sweep {
        // Kept a while past expiry so that late polls get 408/410.
        tx.execute(
            "DELETE FROM pending WHERE expires < ?1",
            params![i(now.saturating_sub(PENDING_KEPT))],
        )
        .map_err(err)?;
    }
    let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<usize, StoreError> {
        let n: i64 = tx
            .prepare_cached(sql)
            .and_then(|mut s| s.query_row(p, |r| r.get(0)))
            .map_err(err)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    };
    let open = count(
        "SELECT COUNT(*) FROM pending WHERE agent = ?1 AND expires > ?2",
        &[&p.agent, &i(now)],
    )?;
    if open >= caps.per_agent {
        return Ok(PendingCreated::AgentFull);
    }
    if let Some(max) = caps.per_provider {
        let open = count(
            "SELECT COUNT(*) FROM pending WHERE provider = ?1 AND expires > ?2",
            &[&p.provider, &i(now)],
        )?;
        if open >= max {
            return Ok(PendingCreated::ProviderFull);
        }
    }
    if let Some(max) = caps.total {
        // Every request kept (the index on `expires` serves it).
        let kept = count(
            "SELECT COUNT(*) FROM pending WHERE expires >= ?1",
            &[&i(now.saturating_sub(PENDING_KEPT))],
        )?;
        if kept >= max {
            return Ok(PendingCreated::Full);
        }
    }
    let inserted = tx
        .execute(
            "INSERT OR IGNORE INTO pending (id, code, expires, data, version, agent, provider) \
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
            params![p.id, p.code, i(p.expires), p.data, p.agent, p.provider],
        )
        .map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(if inserted == 1 {
        PendingCreated::Created
    } else {
        PendingCreated::Taken
    })
}
