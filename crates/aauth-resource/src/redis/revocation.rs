//! Revocations in Redis.

use std::sync::LazyLock;

use aauth_keys::digest::s256;
use aauth_keys::time::UnixTime;
use aauth_metadata::store::redis::Redis;
use aauth_metadata::store::redis::client::{Cmd, Script};
use aauth_signing::RevocationList;
use aauth_tokens::ServerId;
use async_trait::async_trait;

use super::{KEEP_LUA, bound, keep_ms, reason};
use crate::{RecordError, RevocationStore};

/// The store's name in metrics and errors.
const STORE: &str = "revocation redis";

/// `KEYS`: the record, the index of every record. `ARGV`: now, until, milliseconds to
/// keep, the bound, the record's member name. Answers 1 when recorded (or already
/// recorded), 0 when full.
static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{KEEP_LUA}{}",
        r"
local now = tonumber(ARGV[1])
local untl = tonumber(ARGV[2])
local held = redis.call('GET', KEYS[1])
if held and tonumber(held) >= untl then return 1 end
if not held then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 0 end
end
local ms = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ms)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[5])
keep(KEYS[2], ms)
return 1
"
    ))
});

/// The revocations a resource received, shared by all its instances through Redis: a
/// revocation recorded by one instance's endpoint is enforced by every instance on its
/// next request.
///
/// As [`crate::MemoryRevocationList`]: a record is kept until the token's `exp` plus the
/// clock-skew allowance (on the callers' clock; Redis drops it after that time has
/// passed, within a year at most), a later `exp` extends it, and at most `max` live
/// records are held ([`RecordError::Full`], `503`). Recording is one round trip (a
/// script), and so is each check ([`RevocationList::is_revoked`]: one `EXISTS`). A Redis
/// that cannot answer is [`RecordError::Unavailable`] for the endpoint (`503`) and an
/// error for the verifier, which then refuses the request (`503`): a token is never taken
/// as unrevoked because the list could not be read.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use aauth_keys::time::UnixTime;
/// use aauth_metadata::store::redis::{Redis, RedisConfig};
/// use aauth_resource::RedisRevocationList;
/// use aauth_signing::RevocationList;
/// use aauth_tokens::ServerId;
/// let redis = Redis::connect(&RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let list = Arc::new(RedisRevocationList::new(redis, 60, 100_000));
/// let ps = ServerId::parse("https://ps.example")?;
/// list.revoke(&ps, "jti-1", 1_800_000_600, UnixTime(1_800_000_000)).await?;
/// assert!(list.is_revoked(&ps, "jti-1").await?);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisRevocationList {
    redis: Redis,
    skew: u64,
    max: usize,
}

impl RedisRevocationList {
    /// A list in `redis` (its keys under `revoked:`) keeping each record until
    /// `exp + skew`, holding at most `max` live records.
    #[must_use]
    pub fn new(redis: Redis, skew: u64, max: usize) -> Self {
        Self {
            redis,
            skew,
            max: max.max(1),
        }
    }

    /// Records `(iss, jti)` until `exp + skew`. Idempotent; a later `exp` extends.
    ///
    /// # Errors
    ///
    /// [`RecordError::Full`] when every slot holds a live record,
    /// [`RecordError::Unavailable`] when Redis cannot answer.
    pub async fn revoke(
        &self,
        iss: &ServerId,
        jti: &str,
        exp: u64,
        now: UnixTime,
    ) -> Result<(), RecordError> {
        let member = member(iss, jti);
        let until = exp.saturating_add(self.skew);
        let mut call = REVOKE.prepare_invoke();
        call.key(self.redis.key(&["revoked", "r", &member]))
            .key(self.redis.key(&["revoked", "all"]))
            .arg(now.as_secs())
            .arg(until)
            .arg(keep_ms(until, now.as_secs()))
            .arg(bound(self.max))
            .arg(&member);
        let answer: i64 = self
            .redis
            .invoke(STORE, &call)
            .await
            .map_err(|e| RecordError::Unavailable { reason: reason(&e) })?;
        if answer == 1 {
            Ok(())
        } else {
            Err(RecordError::Full)
        }
    }
}

impl RedisRevocationList {
    /// The key whose presence says `(iss, jti)` is revoked.
    pub(super) fn record_key(&self, iss: &ServerId, jti: &str) -> String {
        self.redis.key(&["revoked", "r", &member(iss, jti)])
    }
}

/// A record's name: the SHA-256 of the issuer and the `jti` (a `jti` is up to 256 bytes
/// of anything; the name is 43 characters).
fn member(iss: &ServerId, jti: &str) -> String {
    let mut both = Vec::with_capacity(iss.as_str().len() + 1 + jti.len());
    both.extend_from_slice(iss.as_str().as_bytes());
    // A server identifier holds no NUL, so no two pairs meet.
    both.push(0);
    both.extend_from_slice(jti.as_bytes());
    s256(&both)
}

#[async_trait]
impl RevocationList for RedisRevocationList {
    async fn is_revoked(&self, iss: &ServerId, jti: &str) -> Result<bool, String> {
        let cmd = Cmd::exists(self.record_key(iss, jti));
        self.redis
            .query::<bool>(STORE, &cmd)
            .await
            .map_err(|e| reason(&e))
    }
}

#[async_trait]
impl RevocationStore for RedisRevocationList {
    async fn revoke(
        &self,
        iss: &ServerId,
        jti: &str,
        exp: u64,
        now: UnixTime,
    ) -> Result<(), RecordError> {
        Self::revoke(self, iss, jti, exp, now).await
    }
}
