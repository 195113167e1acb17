//! The PostgreSQL store's migrations and its background sweep.

use aauth_keys::time::UnixTime;
use aauth_metadata::store::postgres::{Migration, Pg};

use crate::rows::i;
use crate::store::{PENDING_KEPT, RECORD_GRACE, StoreError};

/// The component name the migrations are recorded under.
pub(super) const COMPONENT: &str = "person-server";

/// The channel a pending request's change is announced on (its payload: the id).
pub(super) const PENDING_CHANNEL: &str = "aauth_ps_pending";

/// Every migration, in order. Times are Unix seconds in `BIGINT` columns.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration::new(
        1,
        "person-server tables",
        "
CREATE TABLE bindings (
  provider TEXT NOT NULL, agent TEXT NOT NULL, account TEXT NOT NULL,
  PRIMARY KEY (provider, agent));
CREATE INDEX bindings_account ON bindings (account);
CREATE TABLE person_tokens (
  jti TEXT PRIMARY KEY, aud TEXT NOT NULL, sub TEXT NOT NULL, account TEXT NOT NULL,
  provider TEXT NOT NULL, agent TEXT NOT NULL, mission TEXT, exp BIGINT NOT NULL);
CREATE INDEX person_tokens_agent ON person_tokens (provider, agent);
CREATE INDEX person_tokens_account ON person_tokens (account, exp);
CREATE INDEX person_tokens_exp ON person_tokens (exp);
CREATE TABLE auth_tokens (
  jti TEXT PRIMARY KEY, aud TEXT NOT NULL, sub TEXT NOT NULL, account TEXT NOT NULL,
  presented_jti TEXT NOT NULL, exp BIGINT NOT NULL);
CREATE INDEX auth_tokens_presented ON auth_tokens (presented_jti);
CREATE INDEX auth_tokens_account ON auth_tokens (account, exp);
CREATE INDEX auth_tokens_exp ON auth_tokens (exp);
CREATE TABLE revoked (jti TEXT PRIMARY KEY, exp BIGINT NOT NULL);
CREATE INDEX revoked_exp ON revoked (exp);
CREATE TABLE pending (
  id TEXT PRIMARY KEY, code TEXT NOT NULL UNIQUE, expires BIGINT NOT NULL,
  data TEXT NOT NULL, version BIGINT NOT NULL, agent TEXT NOT NULL);
CREATE INDEX pending_agent ON pending (agent, expires);
CREATE INDEX pending_expires ON pending (expires);
CREATE TABLE agent_tokens (
  iss TEXT NOT NULL, jti TEXT NOT NULL, agent TEXT NOT NULL, exp BIGINT NOT NULL,
  PRIMARY KEY (iss, jti));
CREATE INDEX agent_tokens_exp ON agent_tokens (exp);
CREATE TABLE missions (
  s256 TEXT PRIMARY KEY, data TEXT NOT NULL,
  owner_provider TEXT NOT NULL, owner_agent TEXT NOT NULL);
CREATE TABLE passwords (
  account TEXT PRIMARY KEY, phc TEXT NOT NULL, disabled BOOLEAN NOT NULL DEFAULT false);
CREATE TABLE chains (jti TEXT PRIMARY KEY, chain TEXT NOT NULL, exp BIGINT NOT NULL);
CREATE INDEX chains_exp ON chains (exp);
CREATE TABLE presentations (
  jti TEXT NOT NULL, access_server TEXT NOT NULL, exp BIGINT NOT NULL,
  PRIMARY KEY (jti, access_server));
CREATE INDEX presentations_exp ON presentations (exp);
CREATE TABLE audit (
  seq BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, action TEXT NOT NULL,
  account TEXT, agent TEXT, resource TEXT, detail TEXT NOT NULL);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_agent ON audit (agent, at);
CREATE INDEX audit_resource ON audit (resource, at);
CREATE INDEX audit_account ON audit (account, at);
CREATE TABLE sessions (
  key TEXT PRIMARY KEY, account TEXT NOT NULL, csrf TEXT NOT NULL,
  expires BIGINT NOT NULL, bad_codes BIGINT NOT NULL);
CREATE INDEX sessions_account ON sessions (account);
CREATE INDEX sessions_expires ON sessions (expires);
",
    ),
    Migration::new(
        2,
        "person-server audit scope and request",
        aauth_metadata::audit::postgres::SCOPE_AND_REQUEST,
    ),
    Migration::new(
        3,
        "person-server accounts linked to OpenID Providers",
        "
CREATE TABLE oidc_links (
  issuer TEXT NOT NULL, subject TEXT NOT NULL, account TEXT NOT NULL,
  PRIMARY KEY (issuer, subject));
CREATE INDEX oidc_links_account ON oidc_links (account);
",
    ),
    Migration::new(
        4,
        "person-server missions listed by account",
        "
ALTER TABLE missions ADD COLUMN account TEXT NOT NULL DEFAULT '';
ALTER TABLE missions ADD COLUMN approved_seq BIGSERIAL;
UPDATE missions SET account = COALESCE((data::jsonb)->>'account', '');
CREATE INDEX missions_account ON missions (account, approved_seq);
",
    ),
    Migration::new(
        5,
        "person-server audit events by agent and account in their order",
        aauth_metadata::audit::postgres::SEQ_INDEXES,
    ),
    Migration::new(
        6,
        "person-server person tokens of sub-agents recorded with their parent",
        "
ALTER TABLE person_tokens ADD COLUMN parent TEXT;
CREATE INDEX person_tokens_parent ON person_tokens (provider, parent);
",
    ),
    Migration::new(
        7,
        "person-server pending requests counted by provider",
        "
ALTER TABLE pending ADD COLUMN provider TEXT NOT NULL DEFAULT '';
UPDATE pending SET provider = split_part(agent, ' ', 1);
CREATE INDEX pending_provider ON pending (provider, expires);
",
    ),
];

/// Which floor a sweep's `$1` is: rows older than it are dropped.
#[derive(Clone, Copy)]
pub(super) enum Floor {
    /// Now less the records' grace ([`RECORD_GRACE`](crate::RECORD_GRACE)).
    Records,
    /// Now less the time an expired pending request is kept for late polls.
    Pending,
    /// Now.
    Now,
    /// Now less the audit retention.
    Audit,
}

/// The sweep's statements: each deletes at most one batch (`$2` rows) of the rows that
/// nothing reads any more (older than its [`Floor`], `$1`). Run by one instance at a
/// time, off the request path.
pub(super) const SWEEPS: &[(&str, Floor, &str)] = &[
    (
        "person_tokens",
        Floor::Records,
        "DELETE FROM person_tokens WHERE jti IN
           (SELECT jti FROM person_tokens WHERE exp < $1 LIMIT $2)",
    ),
    (
        "auth_tokens",
        Floor::Records,
        "DELETE FROM auth_tokens WHERE jti IN
           (SELECT jti FROM auth_tokens WHERE exp < $1 LIMIT $2)",
    ),
    (
        "revoked",
        Floor::Records,
        "DELETE FROM revoked WHERE jti IN (SELECT jti FROM revoked WHERE exp < $1 LIMIT $2)",
    ),
    (
        "agent_tokens",
        Floor::Records,
        "DELETE FROM agent_tokens WHERE (iss, jti) IN
           (SELECT iss, jti FROM agent_tokens WHERE exp < $1 LIMIT $2)",
    ),
    (
        "chains",
        Floor::Records,
        "DELETE FROM chains WHERE jti IN (SELECT jti FROM chains WHERE exp < $1 LIMIT $2)",
    ),
    (
        "presentations",
        Floor::Records,
        "DELETE FROM presentations WHERE (jti, access_server) IN
           (SELECT jti, access_server FROM presentations WHERE exp < $1 LIMIT $2)",
    ),
    (
        "pending",
        Floor::Pending,
        "DELETE FROM pending WHERE id IN (SELECT id FROM pending WHERE expires < $1 LIMIT $2)",
    ),
    (
        "sessions",
        Floor::Now,
        "DELETE FROM sessions WHERE key IN
           (SELECT key FROM sessions WHERE expires < $1 LIMIT $2)",
    ),
    (
        "audit",
        Floor::Audit,
        "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE at < $1 LIMIT $2)",
    ),
];

/// The most rows one statement of the sweep deletes.
pub(super) const SWEEP_BATCH: u32 = 1000;

/// The most batches of each kind one sweep deletes: a kind whose batch came back full is
/// swept again, until one comes back short or this many ran (32 000 rows of a kind a
/// minute), so that a burst is gone within a sweep or a few, and no sweep holds the store
/// long (each round of batches is a transaction of its own).
pub(super) const SWEEP_ROUNDS: usize = 32;

/// One sweep: rounds of one batch of each kind that may have more, until every kind's
/// batch came back short or [`SWEEP_ROUNDS`] ran; returns how many rows it deleted. Each
/// round is a transaction under a lock that lets one instance sweep at a time: once
/// another instance holds it, this sweep stops there.
pub(super) async fn sweep(pg: &Pg, now: UnixTime, audit_retention: u64) -> Result<u64, StoreError> {
    let now = now.as_secs();
    let mut left: Vec<_> = SWEEPS
        .iter()
        .map(|(_, floor, sql)| {
            let floor = i(match floor {
                Floor::Records => now.saturating_sub(RECORD_GRACE),
                Floor::Pending => now.saturating_sub(PENDING_KEPT),
                Floor::Now => now,
                Floor::Audit => now.saturating_sub(audit_retention),
            });
            (floor, *sql)
        })
        .collect();
    let mut deleted = 0;
    for _ in 0..SWEEP_ROUNDS {
        if left.is_empty() {
            break;
        }
        let Some(counts) = sweep_round(pg, &left).await? else {
            break;
        };
        deleted += counts.iter().sum::<u64>();
        // A full batch: there may be more of that kind.
        let mut counts = counts.into_iter();
        left.retain(|_| counts.next().is_some_and(|n| n >= u64::from(SWEEP_BATCH)));
    }
    Ok(deleted)
}

/// One round of [`sweep`]: a batch of each of `kinds` (its floor, its statement) in one
/// transaction, and how many rows each deleted; `None` when another instance is sweeping.
async fn sweep_round(pg: &Pg, kinds: &[(i64, &str)]) -> Result<Option<Vec<u64>>, StoreError> {
    pg.timed(async {
        let mut c = pg.client().await?;
        let tx = c.transaction().await.map_err(|e| pg.err(e))?;
        if !pg.try_sweep_lock(&tx, COMPONENT).await? {
            return Ok(None);
        }
        let batch = i64::from(SWEEP_BATCH);
        let mut counts = Vec::with_capacity(kinds.len());
        for (floor, sql) in kinds {
            counts.push(
                tx.execute(*sql, &[floor, &batch])
                    .await
                    .map_err(|e| pg.err(e))?,
            );
        }
        tx.commit().await.map_err(|e| pg.err(e))?;
        Ok(Some(counts))
    })
    .await
}
