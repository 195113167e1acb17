//! The embedded SQLite store (feature `sqlite`, on by default): what a single Person
//! Server deployment keeps across restarts: bindings, issuance records, revocations,
//! deferred requests, accounts and consent sessions. One connection behind a mutex,
//! used from Tokio's blocking pool; WAL journaling with `synchronous = NORMAL` (a commit
//! survives the process crashing; the last commits may be lost if the machine loses
//! power, which costs a person at most a repeated consent).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use aauth_keys::time::UnixTime;
use aauth_tokens::{AgentId, ServerId};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use crate::audit::{AuditEvent, AuditPage, AuditQuery};
use crate::mission::Mission;
use crate::pending::{Pending, WebSession};
use crate::store::{
    AccountRecord, AuthTokenRecord, Binding, Issuance, IssuedToken, PendingCaps, PendingCreated,
    PersonTokenRecord, PsStore, RECORD_GRACE, StoreError, TokenRecord,
};

mod admin;
mod pending;
mod schema;

use crate::rows::{
    AUTH_COLUMNS, MissionRow, PERSON_COLUMNS, PendingRow, auth_record, auth_row, i,
    pending_from_json, person_record, person_row, server, u, unreadable,
};

/// A [`PsStore`] in an SQLite database file.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use aauth_person_server::{PsStore, SqliteStore};
/// use aauth_tokens::{AgentId, ServerId};
/// let dir = std::env::temp_dir().join(format!("aauth-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("ps.sqlite");
/// let (provider, agent) = (ServerId::parse("https://agent.example")?, AgentId::parse("aauth:a@agent.example")?);
/// SqliteStore::open(&path)?.bind(&provider, &agent, "alice").await?;
/// // Reopened (a restart): the binding is still there.
/// assert_eq!(SqliteStore::open(&path)?.binding(&provider, &agent).await?.as_deref(), Some("alice"));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    inserts: Arc<std::sync::atomic::AtomicU32>,
    /// Waiters on pending requests, in this process (one process owns the file).
    changes: Arc<crate::changes::ChangeHub>,
    /// How long audit events are kept.
    audit_retention: std::time::Duration,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// Which store a [`StoreError`] names.
const STORE: &str = "person-server sqlite";

/// A failure of the database itself.
fn err(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::backend(STORE, e)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the file cannot be opened or the schema created.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(err)?;
        Self::with_connection(conn)
    }

    /// An in-memory database (tests).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(err)?;
        Self::with_connection(conn)
    }

    fn with_connection(mut conn: Connection) -> Result<Self, StoreError> {
        schema::set_up(&mut conn, STORE)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            inserts: Arc::default(),
            changes: Arc::default(),
            audit_retention: crate::audit::AUDIT_RETENTION,
        })
    }

    /// Keeps audit events for `retention` instead of
    /// [`AUDIT_RETENTION`](crate::AUDIT_RETENTION) (90 days).
    #[must_use]
    pub fn audit_retention(mut self, retention: std::time::Duration) -> Self {
        self.audit_retention = retention;
        self
    }

    /// The retention when this insert also sweeps, else `None`.
    fn audit_sweep(&self) -> Option<std::time::Duration> {
        self.sweep().then_some(self.audit_retention)
    }

    /// Whether this insert also sweeps expired rows (every 512 inserts: a sweep per
    /// insert doubles the write transactions).
    fn sweep(&self) -> bool {
        self.inserts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(512)
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T: Send + 'static>(
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

/// The account an agent is bound to.
const BINDING: &str = "SELECT account FROM bindings WHERE provider = ?1 AND agent = ?2";

/// A binding's row: provider, agent, account.
fn binding_row(provider: &ServerId, agent: &AgentId, account: &str) -> (String, String, String) {
    (
        provider.as_str().to_owned(),
        agent.as_str().to_owned(),
        account.to_owned(),
    )
}

/// Inserts a binding; `on_conflict` says what an existing one becomes.
fn insert_binding(
    c: &Connection,
    (provider, agent, account): &(String, String, String),
    on_conflict: &'static str,
) -> Result<(), StoreError> {
    c.execute(
        &format!(
            "INSERT INTO bindings (provider, agent, account) VALUES (?1, ?2, ?3)
             ON CONFLICT (provider, agent) {on_conflict}"
        ),
        params![provider, agent, account],
    )
    .map(drop)
    .map_err(err)
}

#[async_trait]
impl PsStore for SqliteStore {
    async fn bind(
        &self,
        provider: &ServerId,
        agent: &AgentId,
        account: &str,
    ) -> Result<(), StoreError> {
        let row = binding_row(provider, agent, account);
        self.with(move |c| insert_binding(c, &row, "DO UPDATE SET account = excluded.account"))
            .await
    }

    async fn bind_if_unbound(
        &self,
        provider: &ServerId,
        agent: &AgentId,
        account: &str,
    ) -> Result<String, StoreError> {
        let row = binding_row(provider, agent, account);
        // One connection, one statement each: the insert keeps an existing row.
        self.with(move |c| {
            insert_binding(c, &row, "DO NOTHING")?;
            c.query_row(BINDING, params![row.0, row.1], |r| r.get(0))
                .map_err(err)
        })
        .await
    }

    async fn binding(
        &self,
        provider: &ServerId,
        agent: &AgentId,
    ) -> Result<Option<String>, StoreError> {
        let (p, a) = (provider.as_str().to_owned(), agent.as_str().to_owned());
        self.with(move |c| {
            c.query_row(BINDING, params![p, a], |r| r.get(0))
                .optional()
                .map_err(err)
        })
        .await
    }

    async fn record_person_token(&self, r: PersonTokenRecord) -> Result<(), StoreError> {
        let sweep = self.sweep();
        self.with(move |c| {
            if sweep {
                sweep_issued(c, true, r.exp)?;
            }
            insert_person(c, &r)
        })
        .await
    }

    async fn person_token(
        &self,
        jti: &str,
        now: UnixTime,
    ) -> Result<Option<PersonTokenRecord>, StoreError> {
        let jti = jti.to_owned();
        let row = self
            .with(move |c| {
                c.query_row(
                    &format!(
                        "SELECT {PERSON_COLUMNS} FROM person_tokens WHERE jti = ?1 AND exp + ?2 > ?3"
                    ),
                    params![jti, i(RECORD_GRACE), i(now.as_secs())],
                    person_row,
                )
                .optional()
                .map_err(err)
            })
            .await?;
        row.map(person_record).transpose()
    }

    async fn record_auth_token(&self, r: AuthTokenRecord) -> Result<(), StoreError> {
        let sweep = self.sweep();
        self.with(move |c| {
            if sweep {
                sweep_issued(c, false, r.exp)?;
            }
            insert_auth(c, &r)
        })
        .await
    }

    async fn record_issuance(&self, issuance: Issuance) -> Result<(), StoreError> {
        let sweep = self.sweep();
        let retention = self.audit_retention;
        self.with(move |c| {
            // One transaction: the record, its chain and its audit event, or none.
            let tx = c.unchecked_transaction().map_err(err)?;
            let (jti, exp) = (issuance.token.jti().to_owned(), issuance.token.exp());
            match &issuance.token {
                TokenRecord::Person(r) => {
                    if sweep {
                        sweep_issued(&tx, true, r.exp)?;
                    }
                    insert_person(&tx, r)?;
                }
                TokenRecord::Auth(r) => {
                    if sweep {
                        sweep_issued(&tx, false, r.exp)?;
                    }
                    insert_auth(&tx, r)?;
                }
            }
            if !issuance.chain.is_empty() {
                insert_chain(&tx, &jti, &issuance.chain, exp)?;
            }
            crate::audit::sqlite::record(&tx, STORE, &issuance.event, sweep.then_some(retention))?;
            tx.commit().map_err(err)
        })
        .await
    }

    async fn auth_token(
        &self,
        jti: &str,
        now: UnixTime,
    ) -> Result<Option<AuthTokenRecord>, StoreError> {
        let jti = jti.to_owned();
        let row = self
            .with(move |c| {
                c.query_row(
                    &format!(
                        "SELECT {AUTH_COLUMNS} FROM auth_tokens WHERE jti = ?1 AND exp + ?2 > ?3"
                    ),
                    params![jti, i(RECORD_GRACE), i(now.as_secs())],
                    auth_row,
                )
                .optional()
                .map_err(err)
            })
            .await?;
        row.map(auth_record).transpose()
    }

    async fn revoke(&self, jti: &str, exp: u64, now: UnixTime) -> Result<(), StoreError> {
        let jti = jti.to_owned();
        let sweep = self.sweep();
        self.with(move |c| {
            if sweep {
                c.execute(
                    "DELETE FROM revoked WHERE exp < ?1",
                    params![i(now.as_secs().saturating_sub(RECORD_GRACE))],
                )
                .map_err(err)?;
            }
            // A later `exp` extends a record; an earlier one never shortens it.
            c.execute(
                "INSERT INTO revoked (jti, exp) VALUES (?1, ?2) \
                 ON CONFLICT (jti) DO UPDATE SET exp = MAX(exp, excluded.exp)",
                params![jti, i(exp)],
            )
            .map(drop)
            .map_err(err)
        })
        .await
    }

    async fn is_revoked(&self, jti: &str, now: UnixTime) -> Result<bool, StoreError> {
        let jti = jti.to_owned();
        self.with(move |c| {
            c.query_row(
                "SELECT 1 FROM revoked WHERE jti = ?1 AND exp + ?2 > ?3",
                params![jti, i(RECORD_GRACE), i(now.as_secs())],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(err)
        })
        .await
    }

    async fn create_pending(
        &self,
        p: Pending,
        caps: PendingCaps,
        now: UnixTime,
    ) -> Result<PendingCreated, StoreError> {
        let row = pending::NewPending {
            data: serde_json::to_string(&PendingRow::from(&p)).map_err(err)?,
            agent: format!("{} {}", p.agent.0.as_str(), p.agent.1.as_str()),
            provider: p.agent.0.as_str().to_owned(),
            id: p.id,
            code: p.code,
            expires: p.expires,
        };
        let sweep = self.sweep();
        self.with(move |c| pending::create(c, &row, caps, now.as_secs(), sweep))
            .await
    }

    async fn update_pending(&self, p: &mut Pending) -> Result<bool, StoreError> {
        let data = serde_json::to_string(&PendingRow::from(p)).map_err(err)?;
        let (id, version) = (p.id.clone(), p.version);
        let written = self
            .with(move |c| {
                // The version compare-and-set is the database's: one writer wins.
                c.prepare_cached(
                    "UPDATE pending SET data = ?1, version = version + 1 \
                     WHERE id = ?2 AND version = ?3",
                )
                .map_err(err)?
                .execute(params![data, id, i(version)])
                .map_err(err)
            })
            .await?;
        if written == 1 {
            p.version = version.wrapping_add(1);
            self.changes.notify(&p.id);
        }
        Ok(written == 1)
    }

    fn pending_changes(&self, id: &str) -> crate::changes::PendingChanges {
        self.changes.subscribe(id)
    }

    async fn pending(&self, id: &str) -> Result<Option<Pending>, StoreError> {
        let id = id.to_owned();
        let row: Option<(String, i64)> = self
            .with(move |c| {
                c.query_row(
                    "SELECT data, version FROM pending WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(err)
            })
            .await?;
        row.map(|(d, v)| pending_from_json(&d, v)).transpose()
    }

    async fn pending_by_code(&self, code: &str) -> Result<Option<Pending>, StoreError> {
        let code = code.to_owned();
        let row: Option<(String, i64)> = self
            .with(move |c| {
                c.query_row(
                    "SELECT data, version FROM pending WHERE code = ?1",
                    params![code],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(err)
            })
            .await?;
        row.map(|(d, v)| pending_from_json(&d, v)).transpose()
    }

    async fn pending_of_agent(
        &self,
        provider: &ServerId,
        agent: &AgentId,
    ) -> Result<Vec<Pending>, StoreError> {
        let agent = format!("{} {}", provider.as_str(), agent.as_str());
        let limit = i64::try_from(crate::store::MAX_PENDING_LISTED).unwrap_or(i64::MAX);
        let rows: Vec<(String, i64)> = self
            .with(move |c| {
                c.prepare_cached(
                    "SELECT data, version FROM pending WHERE agent = ?1 \
                     ORDER BY expires DESC LIMIT ?2",
                )
                .map_err(err)?
                .query_map(params![agent, limit], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)
            })
            .await?;
        rows.iter().map(|(d, v)| pending_from_json(d, *v)).collect()
    }

    async fn set_password_hash(&self, account: &str, phc: &str) -> Result<(), StoreError> {
        let (a, h) = (account.to_owned(), phc.to_owned());
        self.with(move |c| {
            c.execute(
                "INSERT INTO passwords (account, phc) VALUES (?1, ?2)
                 ON CONFLICT (account) DO UPDATE SET phc = excluded.phc",
                params![a, h],
            )
            .map(drop)
            .map_err(err)
        })
        .await
    }

    async fn password_hash(&self, account: &str) -> Result<Option<String>, StoreError> {
        let a = account.to_owned();
        self.with(move |c| {
            c.query_row(
                "SELECT phc FROM passwords WHERE account = ?1",
                params![a],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)
        })
        .await
    }

    async fn put_session(&self, key: &str, s: WebSession) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.with(move |c| {
            c.execute("DELETE FROM sessions WHERE expires < ?1", params![i(s.expires.saturating_sub(24 * 3600))])
                .map_err(err)?;
            c.execute(
                "INSERT OR REPLACE INTO sessions (key, account, csrf, expires, bad_codes) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key, s.account, s.csrf, i(s.expires), s.bad_codes],
            )
            .map(drop)
            .map_err(err)
        })
        .await
    }

    async fn count_bad_code(&self, key: &str, now: UnixTime) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE sessions SET bad_codes = bad_codes + 1 WHERE key = ?1 AND expires > ?2",
                params![key, i(now.as_secs())],
            )
            .map(drop)
            .map_err(err)
        })
        .await
    }

    async fn session(&self, key: &str, now: UnixTime) -> Result<Option<WebSession>, StoreError> {
        let key = key.to_owned();
        self.with(move |c| {
            c.query_row(
                "SELECT account, csrf, expires, bad_codes FROM sessions WHERE key = ?1 AND expires > ?2",
                params![key, i(now.as_secs())],
                |r| {
                    Ok(WebSession {
                        account: r.get(0)?,
                        csrf: r.get(1)?,
                        expires: u(r.get(2)?),
                        bad_codes: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(err)
        })
        .await
    }

    async fn record_agent_token(
        &self,
        iss: &ServerId,
        jti: &str,
        agent: &AgentId,
        exp: u64,
    ) -> Result<(), StoreError> {
        let (iss, jti, agent) = (
            iss.as_str().to_owned(),
            jti.to_owned(),
            agent.as_str().to_owned(),
        );
        let sweep = self.sweep();
        self.with(move |c| {
            if sweep {
                c.execute(
                    "DELETE FROM agent_tokens WHERE exp + ?1 < ?2",
                    params![i(RECORD_GRACE), i(exp.saturating_sub(aauth_tokens::AGENT_TOKEN_MAX_LIFETIME))],
                )
                .map_err(err)?;
            }
            c.execute(
                "INSERT OR REPLACE INTO agent_tokens (iss, jti, agent, exp) VALUES (?1, ?2, ?3, ?4)",
                params![iss, jti, agent, i(exp)],
            )
            .map(drop)
            .map_err(err)
        })
        .await
    }

    async fn see_agent_token(
        &self,
        (iss, jti): (&ServerId, &str),
        agent: &AgentId,
        exp: u64,
        revoked_key: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let (iss, jti, agent, key) = (
            iss.as_str().to_owned(),
            jti.to_owned(),
            agent.as_str().to_owned(),
            revoked_key.to_owned(),
        );
        let sweep = self.sweep();
        self.with(move |c| {
            if sweep {
                c.execute(
                    "DELETE FROM agent_tokens WHERE exp + ?1 < ?2",
                    params![i(RECORD_GRACE), i(exp.saturating_sub(aauth_tokens::AGENT_TOKEN_MAX_LIFETIME))],
                )
                .map_err(err)?;
            }
            let revoked = c
                .prepare_cached("SELECT 1 FROM revoked WHERE jti = ?1 AND exp + ?2 > ?3")
                .and_then(|mut s| s.exists(params![key, i(RECORD_GRACE), i(now.as_secs())]))
                .map_err(err)?;
            if !revoked {
                // Recorded once: an existing row (and its agent) is kept.
                c.prepare_cached(
                    "INSERT OR IGNORE INTO agent_tokens (iss, jti, agent, exp) VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut s| s.execute(params![iss, jti, agent, i(exp)]))
                .map_err(err)?;
            }
            Ok(revoked)
        })
        .await
    }

    async fn issued(
        &self,
        jti: &str,
        person: bool,
        now: UnixTime,
    ) -> Result<IssuedToken, StoreError> {
        let jti = jti.to_owned();
        let row: Option<Option<(String, String, String)>> = self
            .with(move |c| {
                let (grace, now) = (i(RECORD_GRACE), i(now.as_secs()));
                if c.prepare_cached("SELECT 1 FROM revoked WHERE jti = ?1 AND exp + ?2 > ?3")
                    .and_then(|mut s| s.exists(params![jti, grace, now]))
                    .map_err(err)?
                {
                    return Ok(None);
                }
                let sql = if person {
                    "SELECT aud, sub, account FROM person_tokens WHERE jti = ?1 AND exp + ?2 > ?3"
                } else {
                    "SELECT aud, sub, account FROM auth_tokens WHERE jti = ?1 AND exp + ?2 > ?3"
                };
                c.prepare_cached(sql)
                    .and_then(|mut s| {
                        s.query_row(params![jti, grace, now], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })
                        .optional()
                    })
                    .map(Some)
                    .map_err(err)
            })
            .await?;
        Ok(match row {
            None => IssuedToken::Revoked,
            Some(None) => IssuedToken::Unknown,
            Some(Some((aud, sub, account))) => IssuedToken::Known {
                aud: server(&aud)?,
                sub,
                account,
            },
        })
    }

    async fn agent_of_token(
        &self,
        iss: &ServerId,
        jti: &str,
    ) -> Result<Option<AgentId>, StoreError> {
        let (iss, jti) = (iss.as_str().to_owned(), jti.to_owned());
        let agent: Option<String> = self
            .with(move |c| {
                c.query_row(
                    "SELECT agent FROM agent_tokens WHERE iss = ?1 AND jti = ?2",
                    params![iss, jti],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)
            })
            .await?;
        agent
            .map(|a| AgentId::parse(&a).map_err(unreadable("agent identifier")))
            .transpose()
    }

    async fn record_presentation(
        &self,
        jti: &str,
        access_server: &ServerId,
        exp: u64,
    ) -> Result<(), StoreError> {
        let (jti, access_server) = (jti.to_owned(), access_server.as_str().to_owned());
        self.with(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO presentations (jti, access_server, exp) VALUES (?1, ?2, ?3)",
                params![jti, access_server, i(exp)],
            )
            .map(drop)
            .map_err(err)
        })
        .await
    }

    async fn presentations(&self, jti: &str) -> Result<Vec<ServerId>, StoreError> {
        let jti = jti.to_owned();
        let rows = self
            .with(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT access_server FROM presentations WHERE jti = ?1")
                    .map_err(err)?;
                let rows = stmt
                    .query_map(params![jti], |r| r.get::<_, String>(0))
                    .map_err(err)?;
                rows.collect::<Result<Vec<String>, _>>().map_err(err)
            })
            .await?;
        rows.iter().map(|s| server(s)).collect()
    }

    async fn record_chain(
        &self,
        jti: &str,
        chain: &[ServerId],
        exp: u64,
    ) -> Result<(), StoreError> {
        let (jti, chain) = (jti.to_owned(), chain.to_vec());
        self.with(move |c| insert_chain(c, &jti, &chain, exp)).await
    }

    async fn chain(&self, jti: &str) -> Result<Vec<ServerId>, StoreError> {
        let jti = jti.to_owned();
        let row: Option<String> = self
            .with(move |c| {
                c.query_row(
                    "SELECT chain FROM chains WHERE jti = ?1",
                    params![jti],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)
            })
            .await?;
        row.unwrap_or_default() // default: no row is a token issued without a chain
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
        let (p, a) = (provider.as_str().to_owned(), agent.as_str().to_owned());
        let (head, tail) = crate::rows::subagent_affixes(agent).unzip();
        let rows = self
            .with(move |c| {
                let mut out: Vec<(String, String, u64)> = Vec::new();
                // Its sub-agents' records from before their parent was kept: by name.
                let mut stmt = c
                    .prepare_cached(
                        "SELECT jti, aud, exp FROM person_tokens
                         WHERE provider = ?1 AND (agent = ?2 OR parent = ?2
                           OR (parent IS NULL AND length(agent) > length(?3) + length(?4)
                               AND substr(agent, 1, length(?3)) = ?3
                               AND substr(agent, -length(?4)) = ?4))",
                    )
                    .map_err(err)?;
                let rows = stmt
                    .query_map(params![p, a, head, tail], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, u(r.get(2)?)))
                    })
                    .map_err(err)?;
                for row in rows {
                    out.push(row.map_err(err)?);
                }
                let mut frontier: Vec<String> = out.iter().map(|(j, _, _)| j.clone()).collect();
                let mut stmt = c
                    .prepare_cached(
                        "SELECT jti, aud, exp FROM auth_tokens WHERE presented_jti = ?1",
                    )
                    .map_err(err)?;
                while let Some(presented) = frontier.pop() {
                    let rows = stmt
                        .query_map(params![presented], |r| {
                            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, u(r.get(2)?)))
                        })
                        .map_err(err)?;
                    for row in rows {
                        let (jti, aud, exp) = row.map_err(err)?;
                        if !out.iter().any(|(j, _, _)| *j == jti) {
                            frontier.push(jti.clone());
                            out.push((jti, aud, exp));
                        }
                    }
                }
                Ok(out)
            })
            .await?;
        rows.into_iter()
            .map(|(j, aud, exp)| Ok((j, server(&aud)?, exp)))
            .collect()
    }

    async fn put_mission(&self, m: Mission) -> Result<(), StoreError> {
        let s256 = m.s256.clone();
        let (provider, agent) = (m.agent.0.as_str().to_owned(), m.agent.1.as_str().to_owned());
        let account = m.account.clone();
        let data = serde_json::to_string(&MissionRow::from(&m)).map_err(err)?;
        self.with(move |c| {
            c.execute(
                // A terminated mission is final: its row is not replaced.
                "INSERT INTO missions (s256, data, owner_provider, owner_agent, account)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (s256) DO UPDATE SET data = excluded.data,
                   owner_provider = excluded.owner_provider,
                   owner_agent = excluded.owner_agent, account = excluded.account
                 WHERE json_extract(missions.data, '$.terminated') IS NULL",
                params![s256, data, provider, agent, account],
            )
            .map(drop)
            .map_err(err)
        })
        .await
    }

    async fn replace_mission(&self, m: &Mission) -> Result<bool, StoreError> {
        let mut next = m.clone();
        next.version = m.version.saturating_add(1);
        let data = serde_json::to_string(&MissionRow::from(&next)).map_err(err)?;
        let (s256, version) = (m.s256.clone(), i(m.version));
        self.with(move |c| {
            c.execute(
                "UPDATE missions SET data = ?2 WHERE s256 = ?1
                   AND COALESCE(json_extract(data, '$.version'), 0) = ?3
                   AND json_extract(data, '$.terminated') IS NULL",
                params![s256, data, version],
            )
            .map(|n| n == 1)
            .map_err(err)
        })
        .await
    }

    async fn mission(&self, s256: &str) -> Result<Option<Mission>, StoreError> {
        let s256 = s256.to_owned();
        let data: Option<String> = self
            .with(move |c| {
                c.query_row(
                    "SELECT data FROM missions WHERE s256 = ?1",
                    params![s256],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)
            })
            .await?;
        data.map(mission_from_row).transpose()
    }

    async fn missions_of(&self, account: &str) -> Result<Vec<Mission>, StoreError> {
        let (account, limit) = (account.to_owned(), crate::store::MAX_MISSIONS_LISTED);
        let rows: Vec<String> = self
            .with(move |c| {
                let mut stmt = c
                    .prepare(
                        "SELECT data FROM missions WHERE account = ?1 ORDER BY rowid DESC LIMIT ?2",
                    )
                    .map_err(err)?;
                stmt.query_map(params![account, limit], |r| r.get(0))
                    .map_err(err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(err)
            })
            .await?;
        rows.into_iter().map(mission_from_row).collect()
    }

    async fn owned_mission(
        &self,
        s256: &str,
        owner: &(ServerId, AgentId),
    ) -> Result<Option<Mission>, StoreError> {
        let s256 = s256.to_owned();
        let (provider, agent) = (owner.0.as_str().to_owned(), owner.1.as_str().to_owned());
        // The owner is part of the lookup: another agent's mission is not found, exactly
        // as a missing one is, and is never read or decoded.
        let data: Option<String> = self
            .with(move |c| {
                c.query_row(
                    "SELECT data FROM missions
                     WHERE s256 = ?1 AND owner_provider = ?2 AND owner_agent = ?3",
                    params![s256, provider, agent],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)
            })
            .await?;
        data.map(mission_from_row).transpose()
    }

    async fn linked_account(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        let (i, s) = (issuer.to_owned(), subject.to_owned());
        self.with(move |c| {
            c.query_row(
                "SELECT account FROM oidc_links WHERE issuer = ?1 AND subject = ?2",
                params![i, s],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)
        })
        .await
    }

    async fn link_account(
        &self,
        issuer: &str,
        subject: &str,
        account: &str,
    ) -> Result<bool, StoreError> {
        let (i, s, a) = (issuer.to_owned(), subject.to_owned(), account.to_owned());
        self.with(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO oidc_links (issuer, subject, account) VALUES (?1, ?2, ?3)",
                params![i, s, a],
            )
            .map(|n| n == 1)
            .map_err(err)
        })
        .await
    }

    async fn create_account(&self, account: &str, phc: &str) -> Result<bool, StoreError> {
        let (a, h) = (account.to_owned(), phc.to_owned());
        self.with(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO passwords (account, phc, disabled) VALUES (?1, ?2, 0)",
                params![a, h],
            )
            .map(|n| n == 1)
            .map_err(err)
        })
        .await
    }

    async fn set_account_disabled(
        &self,
        account: &str,
        disabled: bool,
    ) -> Result<bool, StoreError> {
        let a = account.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE passwords SET disabled = ?2 WHERE account = ?1",
                params![a, i64::from(disabled)],
            )
            .map(|n| n == 1)
            .map_err(err)
        })
        .await
    }

    async fn account_disabled(&self, account: &str) -> Result<bool, StoreError> {
        let a = account.to_owned();
        self.with(move |c| {
            c.query_row(
                "SELECT disabled FROM passwords WHERE account = ?1",
                params![a],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|d| d.is_some_and(|d| d != 0))
            .map_err(err)
        })
        .await
    }

    async fn accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare("SELECT account, disabled FROM passwords ORDER BY account")
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(AccountRecord {
                        name: r.get(0)?,
                        disabled: r.get::<_, i64>(1)? != 0,
                    })
                })
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
    }

    async fn drop_sessions(&self, account: &str) -> Result<(), StoreError> {
        let a = account.to_owned();
        self.with(move |c| {
            c.execute("DELETE FROM sessions WHERE account = ?1", params![a])
                .map(drop)
                .map_err(err)
        })
        .await
    }

    async fn bindings(&self, account: Option<&str>) -> Result<Vec<Binding>, StoreError> {
        let a = account.map(str::to_owned);
        self.with(move |c| admin::bindings(c, a.as_deref())).await
    }

    async fn unbind(&self, provider: &ServerId, agent: &AgentId) -> Result<bool, StoreError> {
        let (p, a) = (provider.as_str().to_owned(), agent.as_str().to_owned());
        self.with(move |c| {
            c.execute(
                "DELETE FROM bindings WHERE provider = ?1 AND agent = ?2",
                params![p, a],
            )
            .map(|n| n == 1)
            .map_err(err)
        })
        .await
    }

    async fn issued_records(
        &self,
        account: Option<&str>,
        now: UnixTime,
    ) -> Result<(Vec<PersonTokenRecord>, Vec<AuthTokenRecord>), StoreError> {
        let a = account.map(str::to_owned);
        self.with(move |c| admin::issued_records(c, a.as_deref(), now))
            .await
    }

    async fn record_event(&self, e: AuditEvent) -> Result<(), StoreError> {
        let sweep = self.audit_sweep();
        self.with(move |c| crate::audit::sqlite::record(c, STORE, &e, sweep))
            .await
    }

    async fn audit(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        let q = q.clone();
        self.with(move |c| crate::audit::sqlite::query(c, STORE, &q))
            .await
    }
}

/// Drops the issued records (person: with their presentations and chains) that expired
/// before the oldest a token expiring at `exp` could have been issued with.
fn sweep_issued(c: &Connection, person: bool, exp: u64) -> Result<(), StoreError> {
    if person {
        let floor = i(exp.saturating_sub(aauth_tokens::PERSON_TOKEN_MAX_LIFETIME));
        for table in ["person_tokens", "presentations", "chains"] {
            c.execute(
                &format!("DELETE FROM {table} WHERE exp + ?1 < ?2"),
                params![i(RECORD_GRACE), floor],
            )
            .map_err(err)?;
        }
    } else {
        c.execute(
            "DELETE FROM auth_tokens WHERE exp + ?1 < ?2",
            params![
                i(RECORD_GRACE),
                i(exp.saturating_sub(aauth_tokens::AUTH_TOKEN_MAX_LIFETIME))
            ],
        )
        .map_err(err)?;
    }
    Ok(())
}

fn insert_person(c: &Connection, r: &PersonTokenRecord) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO person_tokens
           (jti, aud, sub, account, provider, agent, mission, exp, parent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut st| {
        st.execute(params![
            r.jti,
            r.aud.as_str(),
            r.sub,
            r.account,
            r.agent.0.as_str(),
            r.agent.1.as_str(),
            r.mission_s256,
            i(r.exp),
            r.parent.as_ref().map(AgentId::as_str)
        ])
    })
    .map(drop)
    .map_err(err)
}

fn insert_auth(c: &Connection, r: &AuthTokenRecord) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO auth_tokens (jti, aud, sub, account, presented_jti, exp)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut st| {
        st.execute(params![
            r.jti,
            r.aud.as_str(),
            r.sub,
            r.account,
            r.presented_jti,
            i(r.exp)
        ])
    })
    .map(drop)
    .map_err(err)
}

/// Server identifiers hold no spaces: the chain is one space-separated column.
fn insert_chain(c: &Connection, jti: &str, chain: &[ServerId], exp: u64) -> Result<(), StoreError> {
    let chain = chain
        .iter()
        .map(ServerId::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    c.prepare_cached("INSERT OR REPLACE INTO chains (jti, chain, exp) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| st.execute(params![jti, chain, i(exp)]))
        .map(drop)
        .map_err(err)
}

/// A mission row's JSON, read back.
fn mission_from_row(data: String) -> Result<Mission, StoreError> {
    serde_json::from_str::<MissionRow>(&data)
        .map_err(unreadable("mission"))?
        .into_mission()
}
