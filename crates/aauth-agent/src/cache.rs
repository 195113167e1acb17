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

/// Most (resource, mission) pairs and session tokens kept: past it the entry whose tokens
/// end first goes.
const MAX_ENTRIES: usize = 4096;

/// The tokens an agent holds for resources: a person token and an auth token per
/// (resource, mission), each presented only while more than five minutes remain and only
/// while it binds the agent's current key; the newest session token per resource (until
/// the resource refuses a request that carried it). At
/// most 4096 pairs are kept (past it, the one whose tokens end first goes), and a pair
/// whose tokens are all dropped is forgotten.
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
        let key = (resource.clone(), mission.map(str::to_owned));
        let entry = map.get_mut(&key)?;
        let s = &mut entry[slot(kind)];
        match s {
            Some(t) if t.jkt == jkt && t.exp > now.as_secs().saturating_add(REFRESH_MARGIN) => {
                Some(t.clone())
            }
            _ => {
                *s = None;
                if entry.iter().all(Option::is_none) {
                    map.remove(&key);
                }
                None
            }
        }
    }

    /// Stores `token` for (`resource`, `mission`).
    pub fn put(&self, resource: &ServerId, mission: Option<&str>, token: CachedToken) {
        let mut map = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (resource.clone(), mission.map(str::to_owned));
        let entry = map.entry(key.clone()).or_default();
        let s = slot(token.kind);
        entry[s] = Some(token);
        if map.len() > MAX_ENTRIES {
            // Never the pair just written: it is the one about to be used.
            let ends = |e: &[Option<CachedToken>; 2]| e.iter().flatten().map(|t| t.exp).max();
            let first = map
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, e)| ends(e))
                .map(|(k, _)| k.clone());
            if let Some(k) = first {
                map.remove(&k);
            }
        }
    }

    /// Drops the `kind` token for (`resource`, `mission`).
    pub fn forget(&self, resource: &ServerId, mission: Option<&str>, kind: TokenKind) {
        let mut map = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (resource.clone(), mission.map(str::to_owned));
        if let Some(entry) = map.get_mut(&key) {
            entry[slot(kind)] = None;
            if entry.iter().all(Option::is_none) {
                map.remove(&key);
            }
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

    /// Records a session token from `AAuth-Access` (the newest wins). Past 4096
    /// resources, another resource's session is forgotten (its next call authorizes
    /// again).
    pub fn put_session(&self, resource: &ServerId, token: SessionToken) {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if !sessions.contains_key(resource) && sessions.len() >= MAX_ENTRIES {
            let other = sessions.keys().next().cloned();
            if let Some(k) = other {
                sessions.remove(&k);
            }
        }
        sessions.insert(resource.clone(), token);
    }

    /// Forgets `resource`'s session token (the resource no longer takes it): its next
    /// call goes without one.
    pub fn forget_session(&self, resource: &ServerId) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(resource);
    }

    /// Forgets `resource`'s session token if it is still `refused`: one a later answer
    /// has replaced is kept.
    pub(crate) fn forget_refused_session(&self, resource: &ServerId, refused: &SessionToken) {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if sessions.get(resource) == Some(refused) {
            sessions.remove(resource);
        }
    }

    /// How many (resource, mission) pairs hold a token.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no (resource, mission) pair holds a token.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(kind: TokenKind, exp: u64) -> CachedToken {
        CachedToken {
            token: Arc::from("t"),
            kind,
            exp,
            jkt: "k".to_owned(),
            sub: "s".to_owned(),
            jti: "j".to_owned(),
            ps: ServerId::parse("https://ps.example").unwrap(),
        }
    }

    fn resource(i: usize) -> ServerId {
        ServerId::parse(&format!("https://r{i}.example")).unwrap()
    }

    #[test]
    fn a_refused_session_is_forgotten_unless_already_replaced() {
        let c = TokenCache::default();
        let r = resource(0);
        let (old, new) = (
            SessionToken::new("old").unwrap(),
            SessionToken::new("new").unwrap(),
        );
        c.put_session(&r, old.clone());
        c.put_session(&r, new.clone());
        c.forget_refused_session(&r, &old);
        assert!(c.session(&r) == Some(new.clone()), "the newer one is kept");
        c.forget_refused_session(&r, &new);
        assert!(c.session(&r).is_none());
        c.put_session(&r, old);
        c.forget_session(&r);
        assert!(c.session(&r).is_none());
    }

    #[test]
    fn a_pair_whose_tokens_are_gone_is_forgotten() {
        let c = TokenCache::default();
        let r = resource(0);
        c.put(&r, Some("m"), token(TokenKind::Person, 1000));
        c.put(&r, Some("m"), token(TokenKind::Auth, 1000));
        c.forget(&r, Some("m"), TokenKind::Auth);
        assert_eq!(c.len(), 1, "the person token is still held");
        // Read past its margin: dropped, and the pair with it.
        assert!(
            c.get(&r, Some("m"), TokenKind::Person, "k", UnixTime(900))
                .is_none()
        );
        assert!(c.is_empty());
    }

    #[test]
    fn at_most_max_entries_pairs_are_kept_the_soonest_to_end_going_first() {
        let c = TokenCache::default();
        for i in 0..=MAX_ENTRIES {
            let exp = if i == 7 { 10 } else { 100_000 };
            c.put(&resource(i), None, token(TokenKind::Person, exp));
        }
        assert_eq!(c.len(), MAX_ENTRIES);
        let now = UnixTime(0);
        assert!(
            c.get(&resource(7), None, TokenKind::Person, "k", now)
                .is_none()
        );
        assert!(
            c.get(&resource(8), None, TokenKind::Person, "k", now)
                .is_some()
        );
    }
}
