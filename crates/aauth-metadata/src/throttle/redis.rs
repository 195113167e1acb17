//! The throttle's counters in Redis (feature `redis`): every instance of a server counts
//! every wrong guess, so that N instances do not give an attacker N times the guesses.
//!
//! Each key is one hash, `throttle:{key}` under the connection's prefix, holding its
//! failures (`f`), its last failure (`l`), when its block ends (`u`), when it is forgotten
//! (`e`), and the stamps of its life (`b`) and of the write that left it so (`w`): 32
//! hexadecimal digits, 112 random bits drawn for the call and the key's place in it. Times
//! are the callers' (the `now` each call is given), written as 20-digit decimal strings:
//! Lua's numbers are doubles, exact only to 2^53, but strings of one width compare
//! exactly, so times up to `u64::MAX` behave as in [`MemoryThrottle`](super::MemoryThrottle).
//! The sums counting needs (`now` plus a delay) are done here: a failure sends what it
//! would record for each count of failures, and the script picks by the count it finds. A
//! refund that must recompute a block adds a length sent from here to the key's last
//! failure in two halves of 10 digits (each exact in a double), saturating at `u64::MAX`
//! as Rust does. Redis's own expiry (the time left on the callers' clock, plus a little)
//! only drops what no caller can see any more. A key written before `l`, `b` and `w`
//! existed counts as absent when a failure is counted (its block, while it runs, still
//! refuses).

use std::sync::LazyLock;

use aauth_keys::rand::{OsRandom, RandomSource as _};
use aauth_keys::time::UnixTime;
use async_trait::async_trait;

use super::{Attempt, Counted, KeyState, Receipt, Throttle, ThrottleKey, ThrottlePolicy};
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

/// Lua: `HMGET` of a key's fields, in the order the scripts read them.
const READ_KEY: &str = r"
local function read_key(key)
  local c = redis.call('HMGET', key, 'f', 'l', 'u', 'e', 'b', 'w')
  if c[1] and c[2] and c[3] and c[4] and c[5] and c[6] then return c end
  return false
end
";

/// Lua: counts a failure against each of `KEYS`. `ARGV[1]`: now; `ARGV[2]`: the free
/// failures; `ARGV[3]`: the call's stamp (28 hexadecimal digits, the key's place in
/// `KEYS` added as four more); then, for each count of failures from `free` on (the last
/// standing for every larger count): when the block ends, when the key is forgotten, and
/// the milliseconds Redis keeps it. A key whose forgetting time has come starts afresh,
/// as if it were not there. Answers, for each key, the key before (`f`, `l`, `u`, `b`,
/// `w`, or five empty strings) and after (`f`, `u`, `b`).
const COUNT_FAILURE: &str = r"
local function count_failure()
  local now = ARGV[1]
  local free = tonumber(ARGV[2])
  local last = (#ARGV - 3) / 3 - 1
  local counted = {}
  for i, key in ipairs(KEYS) do
    local c = read_key(key)
    local stamp = ARGV[3] .. string.format('%04x', i % 65536)
    local f = 0
    local life = stamp
    if c and c[4] > now then
      f = tonumber(c[1])
      life = c[5]
      for _, v in ipairs({c[1], c[2], c[3], c[5], c[6]}) do table.insert(counted, v) end
    else
      for _ = 1, 5 do table.insert(counted, '') end
    end
    if f < 4294967295 then f = f + 1 end
    local step = f - free
    if step < 0 then step = 0 end
    if step > last then step = last end
    local a = 4 + 3 * step
    redis.call('HSET', key, 'f', f, 'l', now, 'u', ARGV[a], 'e', ARGV[a + 1], 'b', life, 'w', stamp)
    redis.call('PEXPIRE', key, ARGV[a + 2])
    table.insert(counted, tostring(f))
    table.insert(counted, ARGV[a])
    table.insert(counted, life)
  end
  return counted
end
";

/// How many strings [`COUNT_FAILURE`] answers per key.
const COUNTED_LEN: usize = 8;

/// [`Throttle::failed`]: `COUNT_FAILURE`'s arguments.
static FAILED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{READ_KEY}{COUNT_FAILURE}\ncount_failure()\nreturn 0\n"
    ))
});

/// [`Throttle::blocked`]: `ARGV[1]`, now. Answers `LATEST_BLOCK`.
static BLOCKED: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{LATEST_BLOCK}\nreturn latest_block()\n")));

/// [`Throttle::attempt`], atomically: `blocked` and the latest block, or (none running)
/// `counted` and what a failure counted against each key. `COUNT_FAILURE`'s arguments.
static ATTEMPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LATEST_BLOCK}{READ_KEY}{COUNT_FAILURE}
local latest = latest_block()
if latest then return {{'blocked', latest}} end
local counted = count_failure()
table.insert(counted, 1, 'counted')
return counted
"
    ))
});

/// [`Throttle::refund`], atomically, `KEYS` in the order they are taken back. `ARGV[1]`:
/// now; `ARGV[2]`: the free failures; `ARGV[3]`: `forget_after`; `ARGV[4]`: the call's
/// stamp (as `COUNT_FAILURE`'s); `ARGV[5]`: `n`, and `n` block lengths, for each count
/// of failures from `free` on (the last standing for every larger count; `0`, none).
/// Then, for each key, 11: its life and the key after the attempt (`f`, `l`, `u`, `w`),
/// then before it (`f`, or an empty string for none; `l`, `u`, `e`, `b`, `w`).
static REFUND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{READ_KEY}{}",
        r"
local MAX = '18446744073709551615'
local function add(a, b)
  local lo = tonumber(string.sub(a, 11)) + tonumber(string.sub(b, 11))
  local hi = tonumber(string.sub(a, 1, 10)) + tonumber(string.sub(b, 1, 10))
  if lo >= 10000000000 then
    lo = lo - 10000000000
    hi = hi + 1
  end
  if hi >= 10000000000 then return MAX end
  local s = string.format('%010.0f%010.0f', hi, lo)
  if s > MAX then return MAX end
  return s
end
local now = ARGV[1]
local free = tonumber(ARGV[2])
local n = tonumber(ARGV[5])
for i, key in ipairs(KEYS) do
  local a = 5 + n + 11 * (i - 1)
  local c = read_key(key)
  if c and c[4] > now and c[5] == ARGV[a + 1] then
    if c[1] == ARGV[a + 2] and c[2] == ARGV[a + 3] and c[3] == ARGV[a + 4] and c[6] == ARGV[a + 5] then
      if ARGV[a + 6] == '' then
        redis.call('DEL', key)
      else
        redis.call('HSET', key, 'f', ARGV[a + 6], 'l', ARGV[a + 7], 'u', ARGV[a + 8],
          'e', ARGV[a + 9], 'b', ARGV[a + 10], 'w', ARGV[a + 11])
      end
    else
      local f = tonumber(c[1]) - 1
      if f < 1 then
        redis.call('DEL', key)
      else
        local step = f - free
        if step < 0 then step = 0 end
        if step > n - 1 then step = n - 1 end
        local u = add(c[2], ARGV[6 + step])
        if u > c[3] then u = c[3] end
        local e = add(c[2], ARGV[3])
        if u > e then e = u end
        redis.call('HSET', key, 'f', f, 'u', u, 'e', e,
          'w', ARGV[4] .. string.format('%04x', i % 65536))
      end
    end
  end
end
return 0
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
/// by Redis for [`Throttle::blocked`], [`Throttle::failed`], [`Throttle::attempt`] and
/// [`Throttle::refund`] (every key at once), one `DEL` for [`Throttle::succeeded`].
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
    /// against `keys`, with the call's stamp `base`.
    fn counting<'s>(
        &self,
        script: &'s Script,
        keys: &[ThrottleKey],
        now: UnixTime,
        base: u128,
    ) -> crate::store::redis::client::ScriptInvocation<'s> {
        let mut call = self.invocation(script, keys);
        let now = now.as_secs();
        call.arg(time(now))
            .arg(self.policy.free_failures)
            .arg(format!("{base:028x}"));
        for (until, forgotten) in steps(&self.policy, now) {
            call.arg(time(until))
                .arg(time(forgotten))
                .arg(keep_ms(forgotten, now));
        }
        call
    }

    /// The `REFUND` call taking back `counted` at `now`, with the call's stamp `base`.
    fn refunding(
        &self,
        counted: &[Counted],
        now: UnixTime,
        base: u128,
    ) -> crate::store::redis::client::ScriptInvocation<'static> {
        let keys: Vec<ThrottleKey> = counted.iter().rev().map(|c| c.key).collect();
        let mut call = self.invocation(&REFUND, &keys);
        // Block lengths: what a failure at second 0 blocks until.
        let lengths = steps(&self.policy, 0);
        call.arg(time(now.as_secs()))
            .arg(self.policy.free_failures)
            .arg(time(self.policy.forget_after))
            .arg(format!("{base:028x}"))
            .arg(lengths.len());
        for (length, _) in lengths {
            call.arg(time(length));
        }
        for c in counted.iter().rev() {
            let a = &c.after;
            call.arg(stamp(a.life))
                .arg(a.failures)
                .arg(time(a.last))
                .arg(time(a.blocked_until))
                .arg(stamp(a.stamp));
            if let Some(b) = &c.before {
                call.arg(b.failures)
                    .arg(time(b.last))
                    .arg(time(b.blocked_until))
                    .arg(time(b.expiry(&self.policy)))
                    .arg(stamp(b.life))
                    .arg(stamp(b.stamp));
            } else {
                for _ in 0..6 {
                    call.arg("");
                }
            }
        }
        call
    }
}

/// A stamp as the scripts write it: 32 hexadecimal digits.
fn stamp(s: u128) -> String {
    format!("{s:032x}")
}

/// A fresh stamp for one call: 112 random bits, shifted to leave room for the key's place
/// in the call (16 bits, the scripts' `%04x`).
fn fresh_base() -> Result<u128, StoreError> {
    let mut bytes = [0u8; 16];
    OsRandom
        .fill(&mut bytes[2..])
        .map_err(|e| StoreError::backend(STORE, e))?;
    Ok(u128::from_be_bytes(bytes))
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

/// A number of a script's answer, part of `record`.
fn number<T: std::str::FromStr>(s: &str, record: &'static str) -> Result<T, StoreError>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    s.parse()
        .map_err(|e| StoreError::unreadable(STORE, record, e))
}

/// A stamp of an attempt's answer.
fn stamp_of(s: &str) -> Result<u128, StoreError> {
    u128::from_str_radix(s, 16).map_err(|e| StoreError::unreadable(STORE, "throttle key", e))
}

/// `ATTEMPT`'s answer for `keys`, counted at `now` with the call's stamp `base`.
fn attempted(
    answer: &[String],
    keys: &[ThrottleKey],
    now: UnixTime,
    base: u128,
) -> Result<Attempt, StoreError> {
    let unreadable = || StoreError::unreadable(STORE, "attempt", "an answer of another shape");
    match answer {
        [tag, until] if tag == "blocked" => {
            let until: u64 = number(until, "end of a block")?;
            Ok(Attempt::Blocked(until.saturating_sub(now.as_secs())))
        }
        [tag, rest @ ..] if tag == "counted" && rest.len() == COUNTED_LEN * keys.len() => {
            let mut counted = Vec::with_capacity(keys.len());
            for (i, (key, c)) in keys.iter().zip(rest.chunks(COUNTED_LEN)).enumerate() {
                let [bf, bl, bu, bb, bw, af, au, ab] = c else {
                    return Err(unreadable());
                };
                let before = if bf.is_empty() {
                    None
                } else {
                    Some(KeyState {
                        failures: number(bf, "throttle key")?,
                        last: number(bl, "throttle key")?,
                        blocked_until: number(bu, "throttle key")?,
                        life: stamp_of(bb)?,
                        stamp: stamp_of(bw)?,
                    })
                };
                let place = u128::try_from((i + 1) % 65_536).map_err(|_| unreadable())?;
                counted.push(Counted {
                    key: *key,
                    before,
                    after: KeyState {
                        failures: number(af, "throttle key")?,
                        last: now.as_secs(),
                        blocked_until: number(au, "throttle key")?,
                        life: stamp_of(ab)?,
                        stamp: (base << 16) | place,
                    },
                });
            }
            Ok(Attempt::Counted(Receipt::new(counted)))
        }
        _ => Err(unreadable()),
    }
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
        let call = self.counting(&FAILED, keys, now, fresh_base()?);
        self.redis.invoke::<i64>(STORE, &call).await.map(drop)
    }

    async fn attempt(&self, keys: &[ThrottleKey], now: UnixTime) -> Result<Attempt, StoreError> {
        if keys.is_empty() {
            return Ok(Attempt::Counted(Receipt::default()));
        }
        let base = fresh_base()?;
        let call = self.counting(&ATTEMPT, keys, now, base);
        let answer: Vec<String> = self.redis.invoke(STORE, &call).await?;
        attempted(&answer, keys, now, base)
    }

    async fn refund(&self, receipt: Receipt, now: UnixTime) -> Result<(), StoreError> {
        if receipt.counted().is_empty() {
            return Ok(());
        }
        let call = self.refunding(receipt.counted(), now, fresh_base()?);
        self.redis.invoke::<i64>(STORE, &call).await.map(drop)
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
