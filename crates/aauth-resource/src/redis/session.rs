//! Sessions in Redis.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use aauth_headers::SessionToken;
use aauth_keys::Thumbprint;
use aauth_keys::digest::s256;
use aauth_keys::rand::{SharedRandom, random_id};
use aauth_keys::time::UnixTime;
use aauth_metadata::store::redis::Redis;
use aauth_metadata::store::redis::client::{Cmd, Script};
use aauth_tokens::AgentId;
use async_trait::async_trait;

use super::{KEEP_LUA, SLACK_MS, bound, keep_ms, reason};
use crate::{ROLL_GRACE, Session, SessionStore, SessionStoreError, Wrapped};

/// The store's name in metrics and errors.
const STORE: &str = "session redis";

/// `KEYS`: the new session, the index of every session. `ARGV`: now, its end,
/// milliseconds to keep, the bound, its member name, then its fields. Answers 1 when
/// stored, 0 when the store holds its bound of live sessions, -1 when the token is taken.
static ISSUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{KEEP_LUA}{}",
        r"
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local ms = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('PEXPIRE', KEYS[1], ms)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[5])
keep(KEYS[2], ms)
return 1
"
    ))
});

/// `KEYS`: the old session, the new one, the index. `ARGV`: now, the old token's end of
/// grace, milliseconds to keep it through its grace, the bound, the old member name, the
/// new one, the new token sealed under the old. Answers `{code, sealed}`: 1 when rolled,
/// 3 with the successor sealed when the old token was rolled already (its grace running:
/// the same successor, never another session), 2 when the old token is not live, 0 when
/// the store is full, -1 when the new token is taken. Nothing changes unless it answers 1.
static ROLL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{KEEP_LUA}{}",
        r"
local now = tonumber(ARGV[1])
local ends = tonumber(redis.call('HGET', KEYS[1], 'expires'))
if not ends or ends <= now then return {2, ''} end
local successor = redis.call('HGET', KEYS[1], 'successor')
if successor then return {3, successor} end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return {0, ''} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {-1, ''} end
local ms = redis.call('PTTL', KEYS[1])
redis.call('HSET', KEYS[2], unpack(redis.call('HGETALL', KEYS[1])))
if ms > 0 then redis.call('PEXPIRE', KEYS[2], ms) end
local grace = math.min(ends, tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'expires', grace, 'successor', ARGV[7])
if ms > tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
redis.call('ZADD', KEYS[3], grace, ARGV[5])
redis.call('ZADD', KEYS[3], ends, ARGV[6])
keep(KEYS[3], ms)
return {1, ''}
"
    ))
});

/// Sessions shared by every instance of a resource, in Redis: a session issued by one
/// instance is honoured (and rolled) by every other.
///
/// As [`crate::MemorySessionStore`]: bounded (expired sessions leave the count as their
/// time passes; with every session live, issuing fails with `503` rather than end
/// someone's), each lookup answers only a session live at the caller's `now`, and a roll
/// leaves the old token working for [`ROLL_GRACE`] seconds. Each call is one round trip;
/// a roll is one script, done once: every use of the old token in its grace, at any
/// instance, gets the same successor, and the old one's grace is never extended. Redis
/// holds the SHA-256 of each token, never the token; the successor of a rolled token is
/// kept sealed under a key derived from the old token, so only its holder can open it. A
/// Redis that cannot answer is [`SessionStoreError`] (`503`).
///
/// A session that [wraps](Session::wrapping) a credential of the resource's own keeps it
/// sealed (AES-256-GCM under the key given to [`RedisSessionStore::seal_credentials`],
/// bound to the session's agent and key): a copy of Redis holds no usable credential.
/// Without that key such a session is refused, never stored in the clear.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use aauth_metadata::store::redis::{Redis, RedisConfig};
/// use aauth_resource::{RedisSessionStore, SessionStore};
/// let redis = Redis::connect(&RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let sessions: Arc<dyn SessionStore> = Arc::new(RedisSessionStore::new(redis, 100_000));
/// # drop(sessions);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisSessionStore {
    redis: Redis,
    max: usize,
    random: SharedRandom,
    /// Seals wrapped credentials.
    sealing: Option<std::sync::Arc<aws_lc_rs::aead::LessSafeKey>>,
}

impl std::fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("redis", &self.redis)
            .field("max", &self.max)
            .field("seals_credentials", &self.sealing.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisSessionStore {
    /// A store in `redis` (its keys under `session:`) holding at most `max` live
    /// sessions.
    #[must_use]
    pub fn new(redis: Redis, max: usize) -> Self {
        Self {
            redis,
            max: max.max(1),
            random: SharedRandom::default(),
            sealing: None,
        }
    }

    /// Seals the credentials sessions wrap under the 32-byte `key` (every instance of the
    /// resource needs the same; keep it out of Redis).
    #[must_use]
    pub fn seal_credentials(mut self, key: &[u8; 32]) -> Self {
        self.sealing = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, key)
            .ok()
            .map(|k| std::sync::Arc::new(aws_lc_rs::aead::LessSafeKey::new(k)));
        self
    }

    /// `s`'s fields as the store keeps them (its wrapped credential sealed).
    fn fields(&self, s: &Session) -> Result<Vec<(&'static str, String)>, SessionStoreError> {
        let mut f = vec![
            ("agent", s.agent.as_str().to_owned()),
            ("key", s.key.as_str().to_owned()),
            ("expires", s.expires.as_secs().to_string()),
        ];
        if let Some(scope) = &s.scope {
            f.push(("scope", scope.clone()));
        }
        if let Some(wrapped) = &s.wrapped {
            f.push(("wrapped", self.seal(s, wrapped.secret())?));
        }
        Ok(f)
    }

    fn seal(&self, s: &Session, credential: &str) -> Result<String, SessionStoreError> {
        let refused = |reason: &str| SessionStoreError {
            reason: format!("{STORE}: {reason}"),
        };
        let key = self.sealing.as_ref().ok_or_else(|| {
            refused("a session wrapping a credential needs a sealing key (seal_credentials)")
        })?;
        let mut nonce = [0u8; 12];
        aauth_keys::rand::RandomSource::fill(&mut self.random.clone(), &mut nonce)
            .map_err(|e| refused(&e.to_string()))?;
        let mut data = credential.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
            aws_lc_rs::aead::Aad::from(binding(s)),
            &mut data,
        )
        .map_err(|_| refused("a credential could not be sealed"))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&data);
        Ok(aauth_keys::base64url::encode(&sealed))
    }

    /// The credential `sealed` for the session `s`, opened.
    fn open(&self, s: &Session, sealed: &str) -> Option<Wrapped> {
        let key = self.sealing.as_ref()?;
        let raw = aauth_keys::base64url::decode(sealed).ok()?;
        let (nonce, data) = raw.split_at_checked(12)?;
        let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = data.to_vec();
        let plain = key
            .open_in_place(nonce, aws_lc_rs::aead::Aad::from(binding(s)), &mut data)
            .ok()?;
        String::from_utf8(plain.to_vec()).ok().map(Wrapped::new)
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

    fn key(&self, member: &str) -> String {
        self.redis.key(&["session", "t", member])
    }

    fn all(&self) -> String {
        self.redis.key(&["session", "all"])
    }
}

fn unavailable(e: &aauth_metadata::store::StoreError) -> SessionStoreError {
    SessionStoreError { reason: reason(e) }
}

/// What a sealed credential is bound to: its session's agent and key.
fn binding(s: &Session) -> Vec<u8> {
    let mut b = s.agent.as_str().as_bytes().to_vec();
    b.push(0);
    b.extend_from_slice(s.key.as_str().as_bytes());
    b
}

/// A session read back from its fields.
fn session(
    store: &RedisSessionStore,
    mut f: BTreeMap<String, String>,
) -> Result<Session, SessionStoreError> {
    let unreadable = |what: &str| SessionStoreError {
        reason: format!("{STORE}: a stored session's {what} could not be read back"),
    };
    let agent = f
        .get("agent")
        .and_then(|a| AgentId::parse(a).ok())
        .ok_or_else(|| unreadable("agent"))?;
    let key = f
        .get("key")
        .and_then(|k| Thumbprint::from_base64url(k).ok())
        .ok_or_else(|| unreadable("key"))?;
    let expires = f
        .get("expires")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| unreadable("end"))?;
    let s = Session::new(agent, key, f.remove("scope"), UnixTime(expires));
    match f.get("wrapped") {
        None => Ok(s),
        Some(sealed) => store
            .open(&s, sealed)
            .map(|w| s.clone().wrapping(w))
            .ok_or_else(|| unreadable("wrapped credential (sealed under another key?)")),
    }
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn issue(
        &self,
        session: Session,
        now: UnixTime,
    ) -> Result<SessionToken, SessionStoreError> {
        let token = self.new_token()?;
        let member = s256(token.secret().as_bytes());
        let ends = session.expires.as_secs();
        let mut call = ISSUE.prepare_invoke();
        call.key(self.key(&member))
            .key(self.all())
            .arg(now.as_secs())
            .arg(ends)
            .arg(keep_ms(ends, now.as_secs()))
            .arg(bound(self.max))
            .arg(&member);
        for (name, value) in self.fields(&session)? {
            call.arg(name).arg(value);
        }
        let answer: i64 = self
            .redis
            .invoke(STORE, &call)
            .await
            .map_err(|e| unavailable(&e))?;
        match answer {
            1 => Ok(token),
            0 => Err(SessionStoreError {
                reason: format!("{} live sessions, the store's bound", self.max),
            }),
            _ => Err(SessionStoreError {
                reason: "a new session token is already in use".to_owned(),
            }),
        }
    }

    async fn lookup(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<Option<Session>, SessionStoreError> {
        let cmd = Cmd::hgetall(self.key(&s256(token.as_bytes())));
        let f: BTreeMap<String, String> = self
            .redis
            .query(STORE, &cmd)
            .await
            .map_err(|e| unavailable(&e))?;
        if f.is_empty() {
            return Ok(None);
        }
        Ok(Some(session(self, f)?).filter(|s| s.expires > now))
    }

    async fn roll(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<Option<SessionToken>, SessionStoreError> {
        let fresh = self.new_token()?;
        let old = s256(token.as_bytes());
        let new = s256(fresh.secret().as_bytes());
        let sealed = seal_successor(&self.random, token, &old, fresh.secret())?;
        let mut call = ROLL.prepare_invoke();
        call.key(self.key(&old))
            .key(self.key(&new))
            .key(self.all())
            .arg(now.as_secs())
            .arg(now.plus(ROLL_GRACE).as_secs())
            .arg(ROLL_GRACE.saturating_mul(1000).saturating_add(SLACK_MS))
            .arg(bound(self.max))
            .arg(&old)
            .arg(&new)
            .arg(sealed);
        let (answer, successor): (i64, String) = self
            .redis
            .invoke(STORE, &call)
            .await
            .map_err(|e| unavailable(&e))?;
        match answer {
            1 => Ok(Some(fresh)),
            3 => open_successor(token, &old, &successor).map(Some),
            2 => Ok(None),
            0 => Err(SessionStoreError {
                reason: format!("{} live sessions, the store's bound", self.max),
            }),
            _ => Err(SessionStoreError {
                reason: "a new session token is already in use".to_owned(),
            }),
        }
    }
}

/// The key that seals a rolled token's successor: derived from the old token, which
/// Redis never holds (it keys the session by the token's SHA-256; this is another hash).
fn successor_key(token: &str) -> Result<aws_lc_rs::aead::LessSafeKey, SessionStoreError> {
    let mut input = b"aauth session successor\0".to_vec();
    input.extend_from_slice(token.as_bytes());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, digest.as_ref())
        .map(aws_lc_rs::aead::LessSafeKey::new)
        .map_err(|_| SessionStoreError {
            reason: format!("{STORE}: no key to seal a successor under"),
        })
}

/// `successor` sealed under `token` (bound to the old session's member name `old`).
fn seal_successor(
    random: &SharedRandom,
    token: &str,
    old: &str,
    successor: &str,
) -> Result<String, SessionStoreError> {
    let refused = |reason: &str| SessionStoreError {
        reason: format!("{STORE}: {reason}"),
    };
    let key = successor_key(token)?;
    let mut nonce = [0u8; 12];
    aauth_keys::rand::RandomSource::fill(&mut random.clone(), &mut nonce)
        .map_err(|e| refused(&e.to_string()))?;
    let mut data = successor.as_bytes().to_vec();
    key.seal_in_place_append_tag(
        aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
        aws_lc_rs::aead::Aad::from(old.as_bytes()),
        &mut data,
    )
    .map_err(|_| refused("a successor could not be sealed"))?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&data);
    Ok(aauth_keys::base64url::encode(&sealed))
}

/// The successor `sealed` under `token`, opened.
fn open_successor(token: &str, old: &str, sealed: &str) -> Result<SessionToken, SessionStoreError> {
    let unreadable = || SessionStoreError {
        reason: format!("{STORE}: a rolled session's successor could not be read back"),
    };
    let key = successor_key(token)?;
    let raw = aauth_keys::base64url::decode(sealed).map_err(|_| unreadable())?;
    let (nonce, data) = raw.split_at_checked(12).ok_or_else(unreadable)?;
    let nonce =
        aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| unreadable())?;
    let mut data = data.to_vec();
    let plain = key
        .open_in_place(nonce, aws_lc_rs::aead::Aad::from(old.as_bytes()), &mut data)
        .map_err(|_| unreadable())?;
    let text = std::str::from_utf8(plain).map_err(|_| unreadable())?;
    SessionToken::new(text).map_err(|_| unreadable())
}
