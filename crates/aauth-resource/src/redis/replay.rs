//! The replay cache in Redis.

use std::sync::LazyLock;

use aauth_keys::base64url;
use aauth_keys::time::UnixTime;
use aauth_metadata::store::redis::Redis;
use aauth_metadata::store::redis::client::{Script, ScriptInvocation};
use aauth_signing::{
    DEFAULT_REPLAY_ENTRIES, DEFAULT_REPLAY_ISSUER_SHARE, DEFAULT_REPLAY_SHARE, ReplayStore,
    ReplayStoreError, ReplayUse,
};
use async_trait::async_trait;

use super::{KEEP_LUA, MAX_KEEP_MS, bound, keep_ms, reason};

/// The store's name in metrics and errors.
const STORE: &str = "replay redis";

/// The replay script's body (after [`KEEP_LUA`]). `KEYS`: the entry, the signer's
/// index, the index of every entry, the issuer's index. `ARGV`: now, until, milliseconds
/// to keep, the bound, the share, the entry's member name, the issuer's share (0: the use
/// names no issuer, and `KEYS[4]` is not touched). Answers 1 for a first use, 0 for a
/// replay, -1 when full, -2 when the signer holds its share, -4 when its issuer does.
pub(super) const FIRST_USE_LUA: &str = r"
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local seen = redis.call('GET', KEYS[1])
if seen and tonumber(seen) > now then return 0 end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return -1 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return -2 end
local issuer = tonumber(ARGV[7]) > 0
if issuer then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[7]) then return -4 end
end
local ms = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ms)
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[6])
keep(KEYS[3], ms)
keep(KEYS[2], ms)
if issuer then
  redis.call('ZADD', KEYS[4], ARGV[2], ARGV[6])
  keep(KEYS[4], ms)
end
return 1
";

static FIRST_USE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{KEEP_LUA}{FIRST_USE_LUA}")));

/// The replay cache of every instance of a resource, in one Redis: a signed request
/// accepted by one instance is a replay at every other.
///
/// What it guarantees, as [`aauth_signing::MemoryReplayStore`] does for one process:
///
/// - a key is recorded at most once while live: of any number of concurrent first uses
///   of one key, on any instances, exactly one is answered `Ok(true)` (one script, run
///   atomically by Redis, reads and records it);
/// - an entry is live until its `until` on the callers' clock, whatever Redis's clock
///   says, and a caller whose clock went back still finds it;
/// - at most `max` live entries in all (past it, [`ReplayStoreError::Full`]: `503`), at
///   most `share` per signer (past it, [`ReplayStoreError::SignerOverShare`]: `429` for
///   that signer only) and at most `issuer_share` per issuer, every key it vouched for
///   together (past it, [`ReplayStoreError::IssuerOverShare`]: `429` for its signers
///   only), checked in the same round trip;
/// - a Redis that cannot answer is [`ReplayStoreError::Unavailable`] (`503`): the request
///   is refused, never admitted unchecked; nothing is recorded;
/// - Redis keeps an entry past its `until` by the clock-skew allowance
///   ([`RedisReplayStore::clock_skew`], by default the signature window, 60 s): an entry
///   lives on the recording instance's clock, and an instance whose clock is behind by up
///   to the allowance still has the request inside its window when that clock has run
///   out, so Redis must not have dropped the entry yet.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use aauth_metadata::store::redis::{Redis, RedisConfig};
/// use aauth_resource::{RedisReplayStore, Resource};
/// use aauth_tokens::{ServerId, StaticIssuerKeys};
/// let redis = Redis::connect(&RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let resource = Resource::new(
///     ServerId::parse("https://resource.example")?,
///     Arc::new(StaticIssuerKeys::new()),
/// )
/// .replay_store(Arc::new(RedisReplayStore::new(redis).share(5_000)));
/// # drop(resource);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisReplayStore {
    redis: Redis,
    max: usize,
    share: usize,
    issuer_share: usize,
    /// Milliseconds Redis keeps an entry beyond the time left on the recording clock.
    skew_ms: u64,
}

impl RedisReplayStore {
    /// A store in `redis` (its keys under `replay:`), holding at most
    /// [`DEFAULT_REPLAY_ENTRIES`] live entries, each signer at most
    /// [`DEFAULT_REPLAY_SHARE`], each issuer at most [`DEFAULT_REPLAY_ISSUER_SHARE`], for
    /// instances whose clocks agree within [`aauth_signing::DEFAULT_WINDOW`].
    #[must_use]
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            max: DEFAULT_REPLAY_ENTRIES,
            share: DEFAULT_REPLAY_SHARE,
            issuer_share: DEFAULT_REPLAY_ISSUER_SHARE,
            skew_ms: millis(aauth_signing::DEFAULT_WINDOW),
        }
    }

    /// Sets the clock-skew allowance: the most the clocks of the instances sharing the
    /// store may disagree (whole milliseconds; default the signature window, 60 s, the
    /// skew the draft tolerates between an agent and a server). Redis keeps each entry
    /// this much longer than the time left on the clock of the instance that recorded it,
    /// so that an instance up to this far behind, to which the request is still inside its
    /// window, still finds the entry. An instance further behind can admit a replay once.
    #[must_use]
    pub fn clock_skew(mut self, skew: std::time::Duration) -> Self {
        self.skew_ms = millis(skew);
        self
    }

    /// Sets the bound on live entries in all (at least 1); a share larger than the bound
    /// becomes the bound.
    #[must_use]
    pub fn max(mut self, max: usize) -> Self {
        self.max = max.max(1);
        self.share = self.share.min(self.max);
        self.issuer_share = self.issuer_share.min(self.max);
        self
    }

    /// Sets one signer's share (at least 1, at most the whole store).
    #[must_use]
    pub fn share(mut self, share: usize) -> Self {
        self.share = share.clamp(1, self.max);
        self
    }

    /// Sets one issuer's share (at least 1, at most the whole store): the live entries of
    /// every key it vouched for, together.
    #[must_use]
    pub fn issuer_share(mut self, share: usize) -> Self {
        self.issuer_share = share.clamp(1, self.max);
        self
    }

    /// How many entries are held (live, or expired and not yet dropped).
    ///
    /// # Errors
    ///
    /// [`ReplayStoreError::Unavailable`].
    pub async fn entries(&self) -> Result<usize, ReplayStoreError> {
        let cmd = aauth_metadata::store::redis::client::Cmd::zcard(self.all());
        self.redis
            .query(STORE, &cmd)
            .await
            .map_err(|e| ReplayStoreError::Unavailable { reason: reason(&e) })
    }

    fn all(&self) -> String {
        self.redis.key(&["replay", "all"])
    }

    /// Gives `call` the keys and arguments of [`FIRST_USE_LUA`] for `entry`
    /// (`KEYS[1..=4]`, `ARGV[1..=7]`).
    pub(super) fn first_use_call(
        &self,
        call: &mut ScriptInvocation<'_>,
        entry: &ReplayUse<'_>,
        now: UnixTime,
    ) {
        let member = base64url::encode(&entry.key);
        let until = entry.until.as_secs();
        // An issuer's index is keyed by the issuer's hash: an identifier may be long.
        let (issuer_key, issuer_share) = match entry.issuer {
            Some(i) => (
                self.redis
                    .key(&["replay", "i", &aauth_keys::digest::s256(i.as_bytes())]),
                bound(self.issuer_share),
            ),
            // Not touched by the script: any key of this store's.
            None => (self.all(), 0),
        };
        call.key(self.redis.key(&["replay", "k", &member]))
            .key(self.redis.key(&["replay", "s", entry.signer]))
            .key(self.all())
            .key(issuer_key)
            .arg(now.as_secs())
            .arg(until)
            .arg(
                keep_ms(until, now.as_secs())
                    .saturating_add(self.skew_ms)
                    .min(MAX_KEEP_MS),
            )
            .arg(bound(self.max))
            .arg(bound(self.share))
            .arg(&member)
            .arg(issuer_share);
    }

    /// Runs a script of this store: one round trip.
    pub(super) async fn run(&self, call: &ScriptInvocation<'_>) -> Result<i64, ReplayStoreError> {
        self.redis
            .invoke(STORE, call)
            .await
            .map_err(|e| ReplayStoreError::Unavailable { reason: reason(&e) })
    }

    /// [`FIRST_USE_LUA`]'s answer as [`ReplayStore::first_use`]'s.
    pub(super) fn answer(&self, answer: i64) -> Result<bool, ReplayStoreError> {
        match answer {
            1 => Ok(true),
            0 => Ok(false),
            -1 => Err(ReplayStoreError::Full { live: self.max }),
            -2 => Err(ReplayStoreError::SignerOverShare { share: self.share }),
            -4 => Err(ReplayStoreError::IssuerOverShare {
                share: self.issuer_share,
            }),
            other => Err(ReplayStoreError::Unavailable {
                reason: format!("{STORE}: the script answered {other}"),
            }),
        }
    }
}

/// `d` in whole milliseconds, at most [`MAX_KEEP_MS`].
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).map_or(MAX_KEEP_MS, |ms| ms.min(MAX_KEEP_MS))
}

#[async_trait]
impl ReplayStore for RedisReplayStore {
    async fn first_use(
        &self,
        entry: &ReplayUse<'_>,
        now: UnixTime,
    ) -> Result<bool, ReplayStoreError> {
        let mut call = FIRST_USE.prepare_invoke();
        self.first_use_call(&mut call, entry, now);
        let answer = self.run(&call).await?;
        self.answer(answer)
    }
}
