//! Session tokens (draft -11 §AAuth-Access): the resource-managed, two-party access mode.
//! The resource answers `AAuth-Access: <token68>`; the agent presents
//! `Authorization: AAuth <token68>`, covered by its signature, still signing with its
//! agent token. Each session is bound to the agent and to the key that signed when it was
//! issued, so a token copied to another agent (or key) is worthless.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use aauth_headers::SessionToken;
use aauth_keys::Thumbprint;
use aauth_keys::rand::{SharedRandom, random_id};
use aauth_keys::time::UnixTime;
use aauth_tokens::AgentId;
use async_trait::async_trait;

/// What a session token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Session {
    /// The agent it was issued to.
    pub agent: AgentId,
    /// The thumbprint of the key that signed the request it was issued on.
    pub key: Thumbprint,
    /// What the resource granted, in its own terms.
    pub scope: Option<String>,
    /// When it ends.
    pub expires: UnixTime,
    /// The resource's own credential the session stands for (an OAuth access token its
    /// authorization server issued, say), if it wraps one.
    pub wrapped: Option<Wrapped>,
}

impl Session {
    /// A session for `agent` signing with `key`, ending at `expires`.
    #[must_use]
    pub fn new(agent: AgentId, key: Thumbprint, scope: Option<String>, expires: UnixTime) -> Self {
        Self {
            agent,
            key,
            scope,
            expires,
            wrapped: None,
        }
    }

    /// The same session, standing for `credential` (draft -11 §AAuth-Access: the
    /// resource "wraps its internal authorization state (which MAY be an existing OAuth
    /// access token or other credential)"). The agent only ever holds the session token;
    /// the credential stays with the resource and is handed back to it, with the
    /// session, when the agent presents that token under its signature. End the session
    /// no later than the credential.
    ///
    /// ```
    /// use aauth_keys::PrivateKey;
    /// use aauth_keys::time::UnixTime;
    /// use aauth_resource::{Session, Wrapped};
    /// use aauth_tokens::AgentId;
    ///
    /// let key = PrivateKey::ed25519_from_seed(&[1; 32]).public_key().thumbprint();
    /// let agent = AgentId::parse("aauth:assistant@agent.example").unwrap();
    /// let s = Session::new(agent, key, Some("files.read".into()), UnixTime(1_800_000_000))
    ///     .wrapping(Wrapped::new("eyJhbGciOi…"));
    /// assert_eq!(s.wrapped.as_ref().map(Wrapped::secret), Some("eyJhbGciOi…"));
    /// assert!(!format!("{s:?}").contains("eyJ"), "never printed");
    /// ```
    #[must_use]
    pub fn wrapping(mut self, credential: Wrapped) -> Self {
        self.wrapped = Some(credential);
        self
    }
}

/// A credential of the resource's own that a session wraps: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Wrapped(String);

impl Wrapped {
    /// Wraps `credential`.
    #[must_use]
    pub fn new(credential: impl Into<String>) -> Self {
        Self(credential.into())
    }

    /// The credential.
    #[must_use]
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wrapped(…)")
    }
}

/// The session store could not answer: the request is refused (`503`), never admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("session store unavailable: {reason}")]
pub struct SessionStoreError {
    /// What failed.
    pub reason: String,
}

/// Where sessions live. The memory store covers one process.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores `session` under a new random token and returns the token.
    ///
    /// # Errors
    ///
    /// [`SessionStoreError`].
    async fn issue(
        &self,
        session: Session,
        now: UnixTime,
    ) -> Result<SessionToken, SessionStoreError>;

    /// The live session for `token`, if any.
    ///
    /// # Errors
    ///
    /// [`SessionStoreError`].
    async fn lookup(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<Option<Session>, SessionStoreError>;

    /// Replaces `token` by a new one for the same session; the old token keeps working for
    /// a short grace (requests already in flight) and then ends. A roll is done once: each
    /// use of the old token in its grace gets the same successor back, never another
    /// session. `None` if `token` is not live.
    ///
    /// # Errors
    ///
    /// [`SessionStoreError`].
    async fn roll(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<Option<SessionToken>, SessionStoreError>;
}

/// How long a rolled-over token keeps working (30 s).
pub const ROLL_GRACE: u64 = 30;

/// Sessions in memory, bounded: expired sessions are dropped when the bound is reached,
/// and if every session is live, issuing fails (`503`) rather than end someone's session.
#[derive(Debug)]
pub struct MemorySessionStore {
    sessions: Mutex<BTreeMap<String, Entry>>,
    max: usize,
    random: SharedRandom,
}

/// A session kept in memory, with the token that replaced its own once rolled.
#[derive(Debug)]
struct Entry {
    session: Session,
    successor: Option<SessionToken>,
}

impl MemorySessionStore {
    /// A store holding at most `max` live sessions.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            sessions: Mutex::new(BTreeMap::new()),
            max: max.max(1),
            random: SharedRandom::default(),
        }
    }

    /// Where session tokens come from (the operating system's CSPRNG by default).
    #[must_use]
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = random;
        self
    }

    fn new_token(&self) -> Result<SessionToken, SessionStoreError> {
        let token = random_id(&mut self.random.clone(), 32).map_err(|e| SessionStoreError {
            reason: e.to_string(),
        })?;
        SessionToken::new(token).map_err(|e| SessionStoreError {
            reason: e.to_string(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Room for one more session in `s`, expired ones dropped if needed.
    fn room(
        &self,
        s: &mut BTreeMap<String, Entry>,
        now: UnixTime,
    ) -> Result<(), SessionStoreError> {
        if s.len() >= self.max {
            s.retain(|_, v| v.session.expires > now);
            if s.len() >= self.max {
                return Err(SessionStoreError {
                    reason: format!("{} live sessions, the store's bound", self.max),
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn issue(
        &self,
        session: Session,
        now: UnixTime,
    ) -> Result<SessionToken, SessionStoreError> {
        let token = self.new_token()?;
        let mut s = self.lock();
        self.room(&mut s, now)?;
        let successor = None;
        s.insert(token.secret().to_owned(), Entry { session, successor });
        Ok(token)
    }

    async fn lookup(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<Option<Session>, SessionStoreError> {
        let s = self.lock();
        Ok(s.get(token)
            .map(|e| &e.session)
            .filter(|v| v.expires > now)
            .cloned())
    }

    async fn roll(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<Option<SessionToken>, SessionStoreError> {
        let fresh = self.new_token()?;
        // One lock from the check to the successor's insertion: two rolls of one token
        // never both mint.
        let mut s = self.lock();
        let Some(old) = s.get(token).filter(|e| e.session.expires > now) else {
            return Ok(None);
        };
        if let Some(successor) = &old.successor {
            return Ok(Some(successor.clone()));
        }
        let session = old.session.clone();
        self.room(&mut s, now)?;
        let Some(old) = s.get_mut(token) else {
            // The old session was live and `room` drops only ended ones.
            return Ok(None);
        };
        old.session.expires = old.session.expires.min(now.plus(ROLL_GRACE));
        old.successor = Some(fresh.clone());
        let successor = None;
        s.insert(fresh.secret().to_owned(), Entry { session, successor });
        Ok(Some(fresh))
    }
}
