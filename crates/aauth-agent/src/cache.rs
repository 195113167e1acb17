//! Person and auth tokens per (resource, mission), and session tokens per resource.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use aauth_headers::SessionToken;
use aauth_keys::time::UnixTime;
use aauth_tokens::ServerId;

use crate::agent::REFRESH_MARGIN;

/// Which token a cache entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenKind {
    /// The agent token.
    Agent,
    /// A person token (`aa-person+jwt`).
    Person,
    /// An auth token (`aa-auth+jwt`).
    Auth,
}

/// A cached person or auth token with what the agent checks against it. `Debug` leaves
/// the token out.
#[derive(Clone)]
#[non_exhaustive]
pub struct CachedToken {
    /// The token.
    pub token: Arc<str>,
    /// Its type.
    pub kind: TokenKind,
    /// Its expiry.
    pub exp: u64,
    /// The thumbprint of the key it binds.
    pub jkt: String,
    /// The person's directed identifier.
    pub sub: String,
    /// Its `jti` (what a resource token's `presented_jti` must name).
    pub jti: String,
    /// The person's Person Server (the person token's `iss`, the auth token's `ps`).
    pub ps: ServerId,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("token", &"<redacted>")
            .field("kind", &self.kind)
            .field("exp", &self.exp)
            .field("jkt", &self.jkt)
            .field("sub", &self.sub)
            .field("jti", &self.jti)
            .field("ps", &self.ps)
            .finish()
    }
}

type Key = (ServerId, Option<String>);

/// The tokens an agent holds for resources: a person token and an auth token per
/// (resource, mission), each presented only while more than five minutes remain and only
/// while it binds the agent's current key; the newest session token per resource.
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: Mutex<BTreeMap<Key, [Option<CachedToken>; 2]>>,
    sessions: Mutex<BTreeMap<ServerId, SessionToken>>,
}

const fn slot(kind: TokenKind) -> usize {
    match kind {
        TokenKind::Auth => 1,
        _ => 0,
    }
}

impl TokenCache {
    /// The cached `kind` token for (`resource`, `mission`) if it binds `jkt` and has more
    /// than the refresh margin left; a stale or foreign-key entry is dropped.
    #[must_use]
    pub fn get(
        &self,
        resource: &ServerId,
        mission: Option<&str>,
        kind: TokenKind,
        jkt: &str,
        now: UnixTime,
    ) -> Option<CachedToken> {
        let mut map = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.get_mut(&(resource.clone(), mission.map(str::to_owned)))?;
        let s = &mut entry[slot(kind)];
        match s {
            Some(t) if t.jkt == jkt && t.exp > now.as_secs().saturating_add(REFRESH_MARGIN) => {
                Some(t.clone())
            }
            _ => {
                *s = None;
                None
            }
        }
    }

    /// Stores `token` for (`resource`, `mission`).
    pub fn put(&self, resource: &ServerId, mission: Option<&str>, token: CachedToken) {
        let mut map = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map
            .entry((resource.clone(), mission.map(str::to_owned)))
            .or_default();
        let s = slot(token.kind);
        entry[s] = Some(token);
    }

    /// Drops the `kind` token for (`resource`, `mission`).
    pub fn forget(&self, resource: &ServerId, mission: Option<&str>, kind: TokenKind) {
        let mut map = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = map.get_mut(&(resource.clone(), mission.map(str::to_owned))) {
            entry[slot(kind)] = None;
        }
    }

    /// Drops every person and auth token (a key rotation) and every session.
    pub fn clear(&self) {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The newest session token `resource` issued.
    #[must_use]
    pub fn session(&self, resource: &ServerId) -> Option<SessionToken> {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(resource)
            .cloned()
    }

    /// Records a session token from `AAuth-Access` (the newest wins).
    pub fn put_session(&self, resource: &ServerId, token: SessionToken) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(resource.clone(), token);
    }
}
