//! The throttle's counters in Redis (feature `redis`): every instance of a server counts
//! every wrong guess, so that N instances do not give an attacker N times the guesses.
//!
//! Each key is one hash, `throttle:{key}` under the connection's prefix, holding its
//! failures (`f`), when its block ends (`u`) and when it is forgotten (`e`). Times are the
//! callers' (the `now` each call is given), written as 20-digit decimal strings: Lua's
//! numbers are doubles, exact only to 2^53, but strings of one width compare exactly, so
//! times up to `u64::MAX` behave as in [`MemoryThrottle`](super::MemoryThrottle). The
//! one sum the counting needs (`now` plus a delay) is done here: a failure sends what it
//! would record for each count of failures, and the script picks by the count it finds.
//! Redis's own expiry (the time left on the callers' clock, plus a little) only drops
//! what no caller can see any more.

use std::sync::LazyLock;

use aauth_keys::time::UnixTime;
use async_trait::async_trait;

use super::{Throttle, ThrottleKey, ThrottlePolicy};
use crate::store::StoreError;
use crate::store::redis::Redis;
use crate::store::redis::client::{Cmd, Script};

/// The store's name in metrics and errors.
const STORE: &str = "throttle redis";

/// How long Redis keeps a key past the time the callers last said it is needed (on
/// Redis's clock): a little, so that an instance whose clock is behind still finds it.
const SLACK_MS: u64 = 5_000;

/// The longest Redis keeps a key (a year): a policy that blocks or remembers longer is
/// cut to this.
const MAX_KEEP_MS: u64 = 366 * 24 * 3600 * 1000;

/// Lua: the latest end of a block still running at `ARGV[1]` among `KEYS`, or `false`.
const LATEST_BLOCK: &str = r"
local function latest_block()
  local latest = false
  for _, key in ipairs(KEYS) do
    local u = redis.call('HGET', key, 'u')
    if u and u > ARGV[1] and ((not latest) or u > latest) then latest = u end
  end
  return latest
end
";

/// Lua: counts a failure against each of `KEYS`. `ARGV[1]`: now; `ARGV[2]`: the free
/// failures; then, for each count of failures from `free` on (the last standing for
/// every larger count): when the block ends, when the key is forgotten, and the
/// milliseconds Redis keeps it. A key whose forgetting time has come starts afresh, as
/// if it were not there.
const COUNT_FAILURE: &str = r"
local function count_failure()
  local now = ARGV[1]
  local free = tonumber(ARGV[2])
  local last = (#ARGV - 2) / 3 - 1
  for _, key in ipairs(KEYS) do
    local c = redis.call('HMGET', key, 'f', 'e')
    local f = 0
    if c[1] and c[2] and c[2] > now then f = tonumber(c[1]) end
    if f < 4294967295 then f = f + 1 end
    local step = f - free
    if step < 0 then step = 0 end
    if step > last then step = last end
    local a = 3 + 3 * step
    redis.call('HSET', key, 'f', f, 'u', ARGV[a], 'e', ARGV[a + 1])
    redis.call('PEXPIRE', key, ARGV[a + 2])
  end
end
";

/// [`Throttle::failed`]: `COUNT_FAILURE`'s arguments.
static FAILED: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{COUNT_FAILURE}\ncount_failure()\nreturn 0\n")));

/// [`Throttle::blocked`]: `ARGV[1]`, now. Answers `LATEST_BLOCK`.
static BLOCKED: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{LATEST_BLOCK}\nreturn latest_block()\n")));

/// [`Throttle::attempt`], atomically: the latest block, or (none running) a failure
/// counted and `false`. `COUNT_FAILURE`'s arguments.
static ATTEMPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LATEST_BLOCK}{COUNT_FAILURE}
local latest = latest_block()
if latest then return latest end
count_failure()
return false
"
    ))
});

/// A time as the scripts compare it: 20 decimal digits (`u64::MAX` has 20).
fn time(t: u64) -> String {
    format!("{t:020}")
}

/// Milliseconds for Redis to keep a key needed until `until` (seen at `now`): the time
/// left, plus [`SLACK_MS`], at most [`MAX_KEEP_MS`].
fn keep_ms(until: u64, now: u64) -> u64 {
    until
        .saturating_sub(now)
        .saturating_mul(1000)
        .saturating_add(SLACK_MS)
        .min(MAX_KEEP_MS)
}

/// What a failure at `now` records, for each count of failures from
/// `policy.free_failures` on: `(blocked until, forgotten at)`. The delay grows with the
/// count until it reaches `max_delay` (or stops doubling): the last entry stands for
/// every larger count. At most 65 entries.
fn steps(policy: &ThrottlePolicy, now: u64) -> Vec<(u64, u64)> {
    let entry = |failures: u32| {
        let until = policy.blocked_until(failures, now);
        (until, now.saturating_add(policy.forget_after).max(until))
    };
    let mut steps = vec![entry(policy.free_failures)];
    for over in 1..=64u32 {
        let failures = policy.free_failures.saturating_add(over);
        let delay = policy.delay(failures);
        steps.push(entry(failures));
        if delay >= policy.max_delay || failures == u32::MAX {
            break;
        }
    }
    steps
}

/// The counters of every instance, in one Redis: a failure counted by one instance blocks
/// the key at every other, with exactly the policy of [`MemoryThrottle`](super::MemoryThrottle)
/// (the same tests run against both). Each call is one round trip: a script run atomically
/// by Redis for [`Throttle::blocked`] and [`Throttle::failed`] (every key at once), one
/// `DEL` for [`Throttle::succeeded`].
///
/// What differs from memory: no bound on the number of keys (Redis's memory is the
/// bound: run it with `maxmemory-policy noeviction`, as every store here), and no key is
/// kept past a year, whatever the policy. A Redis that cannot answer is a
/// [`StoreError`]: the server refuses the guess (`503`), never checks it unthrottled; the
/// connection comes back by itself ([`crate::store::redis`]).
///
/// Connecting needs a server:
///
/// ```no_run
/// # async fn example() -> Result<(), aauth_metadata::store::StoreError> {
/// use aauth_keys::time::UnixTime;
/// use aauth_metadata::store::redis::{Redis, RedisConfig};
/// use aauth_metadata::throttle::{RedisThrottle, Throttle, ThrottleKey, ThrottlePolicy};
/// let redis = Redis::connect(&RedisConfig::new("redis://127.0.0.1:6379").prefix("aauth:https://ps.example:")).await?;
/// let throttle = RedisThrottle::new(redis, ThrottlePolicy::default());
/// let alice = [ThrottleKey::new("password/account", "alice")];
/// for _ in 0..6 {
///     throttle.failed(&alice, UnixTime(1_000)).await?;
/// }
/// // Blocked at this instance and at every other sharing the Redis and the prefix.
/// assert_eq!(throttle.blocked(&alice, UnixTime(1_000)).await?, Some(1));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisThrottle {
    redis: Redis,
    policy: ThrottlePolicy,
}

impl RedisThrottle {
    /// Counters in `redis` (under its prefix, `throttle:…`), under `policy`.
    #[must_use]
    pub fn new(redis: Redis, policy: ThrottlePolicy) -> Self {
        Self { redis, policy }
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &ThrottlePolicy {
        &self.policy
    }

    fn key(&self, key: &ThrottleKey) -> String {
        self.redis.key(&["throttle", &key.to_hex()])
    }

    /// A call of `script` with `keys` as its `KEYS`.
    fn invocation<'s>(
        &self,
        script: &'s Script,
        keys: &[ThrottleKey],
    ) -> crate::store::redis::client::ScriptInvocation<'s> {
        let mut call = script.prepare_invoke();
        for key in keys {
            call.key(self.key(key));
        }
        call
    }

    /// A call of `script` (`COUNT_FAILURE`'s arguments) counting a failure at `now`
    /// against `keys`.
    fn counting<'s>(
        &self,
        script: &'s Script,
        keys: &[ThrottleKey],
        now: UnixTime,
    ) -> crate::store::redis::client::ScriptInvocation<'s> {
        let mut call = self.invocation(script, keys);
        let now = now.as_secs();
        call.arg(time(now)).arg(self.policy.free_failures);
        for (until, forgotten) in steps(&self.policy, now) {
            call.arg(time(until))
                .arg(time(forgotten))
                .arg(keep_ms(forgotten, now));
        }
        call
    }
}

/// The wait left at `now` of a block ending at `until` (a script's answer), if any.
fn wait_until(until: Option<String>, now: UnixTime) -> Result<Option<u64>, StoreError> {
    let Some(until) = until else {
        return Ok(None);
    };
    let until: u64 = until
        .parse()
        .map_err(|e| StoreError::unreadable(STORE, "end of a block", e))?;
    Ok(Some(until.saturating_sub(now.as_secs())))
}

#[async_trait]
impl Throttle for RedisThrottle {
    async fn blocked(
        &self,
        keys: &[ThrottleKey],
        now: UnixTime,
    ) -> Result<Option<u64>, StoreError> {
        if keys.is_empty() {
            return Ok(None);
        }
        let mut call = self.invocation(&BLOCKED, keys);
        call.arg(time(now.as_secs()));
        let until: Option<String> = self.redis.invoke(STORE, &call).await?;
        wait_until(until, now)
    }

    async fn failed(&self, keys: &[ThrottleKey], now: UnixTime) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let call = self.counting(&FAILED, keys, now);
        self.redis.invoke::<i64>(STORE, &call).await.map(drop)
    }

    async fn attempt(
        &self,
        keys: &[ThrottleKey],
        now: UnixTime,
    ) -> Result<Option<u64>, StoreError> {
        if keys.is_empty() {
            return Ok(None);
        }
        let call = self.counting(&ATTEMPT, keys, now);
        let until: Option<String> = self.redis.invoke(STORE, &call).await?;
        wait_until(until, now)
    }

    async fn succeeded(&self, keys: &[ThrottleKey]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut del = Cmd::new();
        del.arg("DEL");
        for key in keys {
            del.arg(self.key(key));
        }
        self.redis.query::<i64>(STORE, &del).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_KEEP_MS, SLACK_MS, ThrottlePolicy, keep_ms, steps, time};
    use std::time::Duration;

    #[test]
    fn times_compare_as_strings_of_one_width() {
        assert_eq!(time(0).len(), 20);
        assert_eq!(time(u64::MAX).len(), 20);
        assert!(time(999) < time(1000));
        assert!(time(u64::MAX - 1) < time(u64::MAX));
        assert_eq!(keep_ms(160, 100), 60_000 + SLACK_MS);
        assert_eq!(keep_ms(100, 160), SLACK_MS);
        assert_eq!(keep_ms(u64::MAX, 0), MAX_KEEP_MS);
    }

    #[test]
    fn the_steps_end_where_the_delay_stops_growing() {
        let p = ThrottlePolicy::default(); // 5 free, 1 s doubling to 900 s
        let s = steps(&p, 1000);
        let delays: Vec<u64> = s.iter().map(|(u, _)| u - 1000).collect();
        // Each block ends a second late (whole seconds: `ThrottlePolicy::blocked_until`).
        assert_eq!(delays, [0, 2, 3, 5, 9, 17, 33, 65, 129, 257, 513, 901]);
        assert!(s.iter().all(|(_, e)| *e == 1000 + 3600));
        // Times near the end of u64 saturate, as in memory.
        let s = steps(&p, u64::MAX - 10);
        assert_eq!(s.last(), Some(&(u64::MAX, u64::MAX)));
        // A ceiling never reached stops at 64 doublings.
        let p = ThrottlePolicy::new(
            0,
            Duration::from_secs(1),
            Duration::from_secs(u64::MAX),
            Duration::from_secs(0),
        );
        assert_eq!(steps(&p, 0).len(), 65);
        // A policy whose free failures fill u32 never blocks.
        let p = ThrottlePolicy::new(
            u32::MAX,
            Duration::from_secs(1),
            Duration::from_secs(9),
            Duration::from_secs(9),
        );
        assert_eq!(steps(&p, 5), [(5, 14), (5, 14)]);
    }
}
