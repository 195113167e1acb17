//! Held calls in Redis.

use std::sync::LazyLock;

use aauth_keys::digest::s256;
use aauth_keys::time::UnixTime;
use aauth_metadata::store::StoreError;
use aauth_metadata::store::redis::Redis;
use aauth_metadata::store::redis::client::{Cmd, Script, ScriptInvocation};
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};

use super::{KEEP_LUA, MAX_KEEP_MS, SLACK_MS, bound, keep_ms, reason};
use crate::deferred::{
    DEFAULT_HELD_BYTES, DEFAULT_HOLD_QUOTA, DEFAULT_TOMBSTONE_TTL, DEFAULT_TOMBSTONES,
};
use crate::{
    Cancel, Claim, Held, HeldState, HeldStore, HeldStoreError, HoldError, Presenter, StoredResponse,
};

/// The store's name in metrics and errors.
const STORE: &str = "held redis";

/// The most expired records one call drops (the rest go with the next calls): no call
/// does unbounded work.
const SWEEP_BATCH: usize = 256;

/// The keys every script is given, in this order: each record's expiry (a sorted set:
/// the record count), then hashes by record id of its owner and request line (`meta`),
/// its header fields and body while open (`req`), its state (`P`, `R:jti`, `D:jti`, `C`),
/// its kept result (`resp`), what it costs now (`size`), what it costs settled (`bare`),
/// the quota keys it counts in while open (`quota`); the bytes counted in all, the
/// latest `now` a caller gave (`clock`); then the tombstones of settled records past their
/// time: a sorted set by until when each is kept (`tomb`), and a hash of each one's owner,
/// `jkt` and pending prefix on two lines (`tombo`).
const PARTS: [&str; 12] = [
    "exp", "meta", "req", "state", "resp", "size", "bare", "quota", "bytes", "clock", "tomb",
    "tombo",
];

/// The functions every held-store script shares: the sweep, and settling an open hold.
/// Every script's `ARGV` starts with the sweep batch, the seconds a tombstone is kept past
/// its record's end, and the most tombstones kept.
const COMMON_LUA: &str = r"
local function unquota(id)
  local q = redis.call('HGET', KEYS[8], id)
  if q then
    local nl = string.find(q, '\n', 1, true)
    redis.call('ZREM', string.sub(q, 1, nl - 1), id)
    redis.call('ZREM', string.sub(q, nl + 1), id)
    redis.call('HDEL', KEYS[8], id)
  end
end
local function resize(id, size)
  local was = tonumber(redis.call('HGET', KEYS[6], id) or '0')
  redis.call('HSET', KEYS[6], id, size)
  redis.call('INCRBY', KEYS[9], size - was)
end
local function drop(id)
  local was = tonumber(redis.call('HGET', KEYS[6], id) or '0')
  redis.call('DECRBY', KEYS[9], was)
  unquota(id)
  redis.call('ZREM', KEYS[1], id)
  for i = 2, 7 do redis.call('HDEL', KEYS[i], id) end
end
-- A record that was not pending when its time ran out leaves a tombstone: its owner,
-- kept ARGV[2] seconds past its end; past ARGV[3] of them, the one ending first goes.
local function bury(id, now)
  local max = tonumber(ARGV[3])
  local state = redis.call('HGET', KEYS[4], id)
  if max <= 0 or not state or state == 'P' then return end
  local ok, o = pcall(cjson.decode, redis.call('HGET', KEYS[2], id) or '')
  if not ok or type(o) ~= 'table' or type(o.jkt) ~= 'string' then return end
  local prefix = o.prefix
  if type(prefix) ~= 'string' then prefix = '' end
  local untl = tonumber(redis.call('ZSCORE', KEYS[1], id) or '0') + tonumber(ARGV[2])
  if untl <= now then return end
  redis.call('ZADD', KEYS[11], untl, id)
  redis.call('HSET', KEYS[12], id, o.jkt .. '\n' .. prefix)
  while redis.call('ZCARD', KEYS[11]) > max do
    local first = redis.call('ZPOPMIN', KEYS[11])
    redis.call('HDEL', KEYS[12], first[1])
  end
  local ms = math.min((untl - now) * 1000 + SLACK_MS, MAX_KEEP_MS)
  keep(KEYS[11], ms)
  keep(KEYS[12], ms)
end
local function tick(now)
  local last = tonumber(redis.call('GET', KEYS[10]) or '0')
  if now > last then redis.call('SET', KEYS[10], now, 'KEEPTTL') end
  -- The clock of a store that holds nothing yet is kept an hour; a hold keeps it longer.
  if redis.call('PTTL', KEYS[10]) == -1 then redis.call('PEXPIRE', KEYS[10], 3600000) end
  local dead = redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', now, 'LIMIT', 0, ARGV[1])
  for _, id in ipairs(dead) do
    redis.call('ZREM', KEYS[11], id)
    redis.call('HDEL', KEYS[12], id)
  end
  local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[1])
  for _, id in ipairs(gone) do
    bury(id, now)
    drop(id)
  end
end
local function live(id, now)
  local untl = redis.call('ZSCORE', KEYS[1], id)
  return untl and tonumber(untl) > now
end
local function keepall(ms, from)
  for i = from, #KEYS do keep(KEYS[i], ms) end
end
";

/// `ARGV`: the common three, now, id, expiry, milliseconds to keep, quota, bound, budget,
/// size, settled size, owner, request, quota keys; `KEYS` 13 and 14: the person's and the
/// agent key's open holds. Answers `{1, 0}` when held; `{-1, oldest}` or `{-2, oldest}`
/// for the person's or the key's quota, `{-3, 0}` full, `{-4, 0}` over budget, `{-5, 0}`
/// for an id in use.
static HOLD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local now = tonumber(ARGV[4])
local id = ARGV[5]
tick(now)
for i = 1, 2 do
  local open = KEYS[12 + i]
  redis.call('ZREMRANGEBYSCORE', open, '-inf', now)
  if redis.call('ZCARD', open) >= tonumber(ARGV[8]) then
    local first = redis.call('ZRANGE', open, 0, 0, 'WITHSCORES')
    return {-i, tonumber(first[2] or now)}
  end
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[9]) then return {-3, 0} end
local bytes = tonumber(redis.call('GET', KEYS[9]) or '0')
if bytes + tonumber(ARGV[11]) > tonumber(ARGV[10]) then return {-4, 0} end
if redis.call('HEXISTS', KEYS[2], id) == 1 then return {-5, 0} end
redis.call('ZADD', KEYS[1], ARGV[6], id)
redis.call('HSET', KEYS[2], id, ARGV[13])
redis.call('HSET', KEYS[3], id, ARGV[14])
redis.call('HSET', KEYS[4], id, 'P')
redis.call('HSET', KEYS[7], id, ARGV[12])
redis.call('HSET', KEYS[8], id, ARGV[15])
resize(id, tonumber(ARGV[11]))
redis.call('ZADD', KEYS[13], ARGV[6], id)
redis.call('ZADD', KEYS[14], ARGV[6], id)
keepall(tonumber(ARGV[7]), 1)
return {1, 0}
",
    )
});

/// `ARGV`: the common three, now, id. Answers its owner, request (empty once settled),
/// state and kept result for a live record; `{'GONE', owner}` for a tombstone (a record
/// whose time ran out is swept here first, so that it leaves one); `{}` for neither.
static GET: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local now = tonumber(ARGV[4])
local id = ARGV[5]
tick(now)
if not live(id, now) then
  if redis.call('ZSCORE', KEYS[1], id) then
    bury(id, now)
    drop(id)
  end
  local untl = redis.call('ZSCORE', KEYS[11], id)
  if untl and tonumber(untl) > now then
    return {'GONE', redis.call('HGET', KEYS[12], id) or ''}
  end
  return {}
end
local out = {}
for i = 2, 5 do out[i - 1] = redis.call('HGET', KEYS[i], id) or '' end
return out
",
    )
});

/// `ARGV`: the common three, now, id, jti, until when its result is kept, milliseconds
/// for Redis to keep it. Answers `{'RUN'}`, `{'BUSY'}`, or the settled state and its kept
/// result (`{'C'}` for no live record). A claimed record lives at least until its result
/// would go, in the record index and in its presenters' quotas alike (a running call is
/// open until settled), whenever its hold expires.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local now = tonumber(ARGV[4])
local id = ARGV[5]
tick(now)
if not live(id, now) then return {'C'} end
local state = redis.call('HGET', KEYS[4], id)
if state == 'P' then
  redis.call('HSET', KEYS[4], id, 'R:' .. ARGV[6])
  local untl = tonumber(ARGV[7])
  if untl > tonumber(redis.call('ZSCORE', KEYS[1], id)) then
    local ms = tonumber(ARGV[8])
    redis.call('ZADD', KEYS[1], untl, id)
    local q = redis.call('HGET', KEYS[8], id)
    if q then
      local nl = string.find(q, '\n', 1, true)
      for _, open in ipairs({string.sub(q, 1, nl - 1), string.sub(q, nl + 1)}) do
        redis.call('ZADD', open, 'XX', untl, id)
        keep(open, ms)
      end
    end
    keepall(ms, 1)
  end
  return {'RUN'}
end
if string.sub(state, 1, 2) == 'R:' then return {'BUSY'} end
return {state, redis.call('HGET', KEYS[5], id) or ''}
",
    )
});

/// `ARGV`: the common three, id, jti, `1` to settle only a record still running for
/// `jti` (else `0`), the result, its size, until when it is kept, and the slack and the
/// longest time Redis keeps a key. Answers 1 when settled, 0 when not (no record, or
/// not running for `jti` when that was asked). A claim is never released.
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local id = ARGV[4]
local state = redis.call('HGET', KEYS[4], id)
if not state then return 0 end
if ARGV[6] == '1' and state ~= 'R:' .. ARGV[5] then return 0 end
unquota(id)
redis.call('HDEL', KEYS[3], id)
redis.call('HSET', KEYS[4], id, 'D:' .. ARGV[5])
redis.call('HSET', KEYS[5], id, ARGV[7])
resize(id, tonumber(redis.call('HGET', KEYS[7], id) or '0') + tonumber(ARGV[8]))
redis.call('ZADD', KEYS[1], ARGV[9], id)
local now = tonumber(redis.call('GET', KEYS[10]) or ARGV[9])
local ms = math.max(tonumber(ARGV[9]) - now, 0) * 1000 + tonumber(ARGV[10])
keepall(math.min(ms, tonumber(ARGV[11])), 1)
return 1
",
    )
});

/// `ARGV`: the common three, now, id. Only a pending record is cancelled. Answers 1 when
/// it was (cancelled now), 2 for a running one (left running), 3 for one that had ended
/// (run, cancelled, or a tombstone), 0 for no live record.
static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local now = tonumber(ARGV[4])
local id = ARGV[5]
tick(now)
if not live(id, now) then
  -- One whose time ran out but that the sweep has not reached yet is swept here first,
  -- as GET does, so that it leaves its tombstone (as the memory store, which sweeps all).
  if redis.call('ZSCORE', KEYS[1], id) then
    bury(id, now)
    drop(id)
  end
  local untl = redis.call('ZSCORE', KEYS[11], id)
  if untl and tonumber(untl) > now then return 3 end
  return 0
end
local state = redis.call('HGET', KEYS[4], id)
if not state then return 0 end
if string.sub(state, 1, 2) == 'R:' then return 2 end
if state ~= 'P' then return 3 end
unquota(id)
redis.call('HDEL', KEYS[3], id)
redis.call('HDEL', KEYS[5], id)
redis.call('HSET', KEYS[4], id, 'C')
resize(id, tonumber(redis.call('HGET', KEYS[7], id) or '0'))
return 1
",
    )
});

fn script(body: &str) -> Script {
    Script::new(&format!(
        "local SLACK_MS = {SLACK_MS}\nlocal MAX_KEEP_MS = {MAX_KEEP_MS}\n{KEEP_LUA}{COMMON_LUA}{body}"
    ))
}

/// Calls held for their auth tokens, shared by every instance of a resource through
/// Redis: a call held by one instance is run by the first poll with a valid auth token on
/// any instance, exactly once, and its result is replayed by every instance.
///
/// The bounds of [`crate::MemoryHeldStore`], over all instances together: at most `max`
/// records and a byte budget (past them, the layer answers the plain `401` challenge
/// and holds nothing), at most a quota of open holds per person and per agent key (past
/// it, `429` with `Retry-After` until the presenter's oldest open hold expires); a
/// pending hold is never evicted to make room. Each call is one script,
/// run atomically by Redis: [`HeldStore::claim`] hands the run to one poll of any number
/// racing on any instances, and what a call checks and what it writes are one step.
/// Expired records are swept by the calls themselves through an expiry index, at most
/// 256 a call. A Redis that cannot answer is [`HeldStoreError`] (`503`), never a run.
/// A settled record past its time leaves a tombstone (its owner's key thumbprint and
/// pending prefix), bounded in count and time as in memory ([`RedisHeldStore::tombstones`]).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use aauth_metadata::store::redis::{Redis, RedisConfig};
/// use aauth_resource::{DeferredAuth, RedisHeldStore};
/// let redis = Redis::connect(&RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let store = RedisHeldStore::new(redis, 10_000).byte_budget(256 * 1024 * 1024);
/// let deferred = DeferredAuth::new(Arc::new(store), "/aauth/pending/");
/// # drop(deferred);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisHeldStore {
    redis: Redis,
    keys: [String; 12],
    max: usize,
    budget: usize,
    quota: usize,
    tomb_max: usize,
    tomb_keep: u64,
}

impl RedisHeldStore {
    /// A store in `redis` (its keys under `held:`) keeping at most `max` records, within
    /// [`DEFAULT_HELD_BYTES`], with [`DEFAULT_HOLD_QUOTA`] open holds per presenter.
    #[must_use]
    pub fn new(redis: Redis, max: usize) -> Self {
        let keys = PARTS.map(|p| redis.key(&["held", p]));
        Self {
            redis,
            keys,
            max,
            budget: DEFAULT_HELD_BYTES,
            quota: DEFAULT_HOLD_QUOTA,
            tomb_max: DEFAULT_TOMBSTONES,
            tomb_keep: DEFAULT_TOMBSTONE_TTL.as_secs(),
        }
    }

    /// Keeps at most `max` tombstones, each for `keep` past the end of its record, as
    /// [`crate::MemoryHeldStore::tombstones`] does (the count over all instances).
    #[must_use]
    pub fn tombstones(mut self, max: usize, keep: std::time::Duration) -> Self {
        self.tomb_max = max;
        self.tomb_keep = keep.as_secs();
        self
    }

    /// The most bytes kept, counted as [`crate::MemoryHeldStore::byte_budget`] counts
    /// them.
    #[must_use]
    pub fn byte_budget(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
    }

    /// The most open (pending or running) holds one person `(ps, sub)`, and one agent
    /// key, may have.
    #[must_use]
    pub fn quota(mut self, open: usize) -> Self {
        self.quota = open;
        self
    }

    /// How many records are kept (expired ones until a call sweeps them).
    ///
    /// # Errors
    ///
    /// [`HeldStoreError`] when Redis cannot answer.
    pub async fn records(&self) -> Result<usize, HeldStoreError> {
        self.redis
            .query(STORE, &Cmd::zcard(&self.keys[0]))
            .await
            .map_err(|e| unavailable(&e))
    }

    /// The bytes kept, as the budget counts them.
    ///
    /// # Errors
    ///
    /// [`HeldStoreError`] when Redis cannot answer.
    pub async fn bytes(&self) -> Result<usize, HeldStoreError> {
        let n: Option<u64> = self
            .redis
            .query(STORE, &Cmd::get(&self.keys[8]))
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(n.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX)))
    }

    /// `script` with the store's keys and its first three arguments: the sweep batch,
    /// the seconds a tombstone is kept, the most tombstones kept.
    fn call<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut call = script.prepare_invoke();
        for k in &self.keys {
            call.key(k);
        }
        call.arg(SWEEP_BATCH)
            .arg(self.tomb_keep)
            .arg(bound(self.tomb_max));
        call
    }

    async fn run<T: aauth_metadata::store::redis::client::FromRedisValue>(
        &self,
        call: &ScriptInvocation<'_>,
    ) -> Result<T, HeldStoreError> {
        self.redis
            .invoke(STORE, call)
            .await
            .map_err(|e| unavailable(&e))
    }
}

impl RedisHeldStore {
    /// Runs [`FINISH`]: `Ok(true)` when the record is settled with `response`.
    async fn settle(
        &self,
        id: &str,
        jti: &str,
        response: &StoredResponse,
        keep_until: UnixTime,
        only_running: bool,
    ) -> Result<bool, HeldStoreError> {
        let mut blob = response.status.as_u16().to_be_bytes().to_vec();
        blob = encode_fields(&response.headers, &response.body, blob);
        let mut call = self.call(&FINISH);
        call.arg(id)
            .arg(jti)
            .arg(u8::from(only_running))
            .arg(blob)
            .arg(bound(response.size()))
            .arg(keep_until.as_secs())
            .arg(SLACK_MS)
            .arg(MAX_KEEP_MS);
        self.run::<i64>(&call).await.map(|n| n == 1)
    }
}

fn unavailable(e: &StoreError) -> HeldStoreError {
    HeldStoreError { reason: reason(e) }
}

fn unreadable(what: &str) -> HeldStoreError {
    HeldStoreError {
        reason: format!("{STORE}: a stored {what} could not be read back"),
    }
}

#[async_trait]
impl HeldStore for RedisHeldStore {
    async fn hold(&self, id: &str, held: Held, now: UnixTime) -> Result<(), HoldError> {
        let person = self.redis.key(&[
            "held",
            "p",
            &s256(format!("{}\0{}", held.ps, held.sub).as_bytes()),
        ]);
        let agent_key = self.redis.key(&["held", "k", &s256(held.jkt.as_bytes())]);
        let until = held.expires.as_secs();
        let mut call = self.call(&HOLD);
        call.key(&person)
            .key(&agent_key)
            .arg(now.as_secs())
            .arg(id)
            .arg(until)
            .arg(keep_ms(until, now.as_secs()))
            .arg(bound(self.quota))
            .arg(bound(self.max))
            .arg(bound(self.budget))
            .arg(bound(held.size()))
            .arg(bound(held.bare_size()))
            .arg(encode_owner(&held))
            .arg(encode_fields(&held.headers, &held.body, Vec::new()))
            .arg(format!("{person}\n{agent_key}"));
        let (code, oldest): (i64, u64) = self.run(&call).await?;
        let quota = |presenter| HoldError::QuotaExceeded {
            presenter,
            quota: self.quota,
            retry_after: oldest.saturating_sub(now.as_secs()).max(1),
        };
        match code {
            1 => Ok(()),
            -1 => Err(quota(Presenter::Person)),
            -2 => Err(quota(Presenter::AgentKey)),
            -3 => Err(HoldError::Full { max: self.max }),
            -4 => Err(HoldError::OverBudget {
                size: held.size(),
                budget: self.budget,
            }),
            _ => Err(HoldError::Store(HeldStoreError {
                reason: "the id is in use".to_owned(),
            })),
        }
    }

    async fn get(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<(Held, HeldState)>, HeldStoreError> {
        let mut call = self.call(&GET);
        call.arg(now.as_secs()).arg(id);
        let found: Vec<Vec<u8>> = self.run(&call).await?;
        let [owner, request, state, response] = match <[Vec<u8>; 4]>::try_from(found) {
            Ok(parts) => parts,
            Err(none) if none.is_empty() => return Ok(None),
            Err(gone) => return decode_tombstone(&gone).map(Some),
        };
        let mut held = decode_owner(&owner)?;
        if !request.is_empty() {
            let (headers, body) = decode_fields(&request).ok_or_else(|| unreadable("request"))?;
            held.headers = headers;
            held.body = body;
        }
        Ok(Some((held, decode_state(&state, &response)?)))
    }

    async fn claim(
        &self,
        id: &str,
        jti: &str,
        keep_until: UnixTime,
        now: UnixTime,
    ) -> Result<Claim, HeldStoreError> {
        let mut call = self.call(&CLAIM);
        call.arg(now.as_secs())
            .arg(id)
            .arg(jti)
            .arg(keep_until.as_secs())
            .arg(keep_ms(keep_until.as_secs(), now.as_secs()));
        let answer: Vec<Vec<u8>> = self.run(&call).await?;
        match answer.as_slice() {
            [run] if run == b"RUN" => Ok(Claim::Run),
            [busy] if busy == b"BUSY" => Ok(Claim::Busy),
            [cancelled] if cancelled == b"C" => Ok(Claim::Settled(HeldState::Cancelled)),
            [state, response] => Ok(Claim::Settled(decode_state(state, response)?)),
            _ => Err(unreadable("state")),
        }
    }

    async fn finish(
        &self,
        id: &str,
        jti: &str,
        response: StoredResponse,
        keep_until: UnixTime,
    ) -> Result<(), HeldStoreError> {
        self.settle(id, jti, &response, keep_until, false)
            .await
            .map(drop)
    }

    fn abandon(&self, id: &str, jti: &str, response: StoredResponse, keep_until: UnixTime) {
        // Nothing can wait here (a dropped poll): the write runs as a task of its own. With
        // no runtime to run it on, the record stays running until `keep_until`.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, id, jti) = (self.clone(), id.to_owned(), jti.to_owned());
        drop(runtime.spawn(async move {
            // Best effort: a Redis that cannot answer leaves the record running until
            // `keep_until`, when it is swept (a tombstone then answers `410`).
            let _settled = store.settle(&id, &jti, &response, keep_until, true).await;
        }));
    }

    async fn cancel(&self, id: &str, now: UnixTime) -> Result<Cancel, HeldStoreError> {
        let mut call = self.call(&CANCEL);
        call.arg(now.as_secs()).arg(id);
        match self.run::<i64>(&call).await? {
            1 => Ok(Cancel::Cancelled),
            2 => Ok(Cancel::Running),
            3 => Ok(Cancel::Ended),
            0 => Ok(Cancel::Missing),
            _ => Err(unreadable("cancellation")),
        }
    }
}

/// The owner and request line of a hold, as JSON.
fn encode_owner(held: &Held) -> String {
    serde_json::json!({
        "method": held.method.as_str(),
        "uri": held.uri.to_string(),
        "version": format!("{:?}", held.version),
        "jkt": held.jkt,
        "ps": held.ps,
        "sub": held.sub,
        "expires": held.expires.as_secs(),
        "prefix": held.prefix,
    })
    .to_string()
}

#[derive(serde::Deserialize)]
struct Owner {
    method: String,
    uri: String,
    version: String,
    jkt: String,
    ps: String,
    sub: String,
    expires: u64,
    /// Absent from a record kept before records named their prefix: read as empty, which
    /// no layer serves, so such a record is refused (`404`) rather than polled through
    /// whichever layer serves its URL. What that costs is bounded: calls held across the
    /// upgrade (a pending one never ran, and can be sent again) and results kept then (at
    /// most until their auth token's `exp`, an hour).
    #[serde(default)]
    prefix: String,
}

fn decode_owner(bytes: &[u8]) -> Result<Held, HeldStoreError> {
    let o: Owner = serde_json::from_slice(bytes).map_err(|_| unreadable("owner"))?;
    let version = match o.version.as_str() {
        "HTTP/0.9" => Version::HTTP_09,
        "HTTP/1.0" => Version::HTTP_10,
        "HTTP/1.1" => Version::HTTP_11,
        "HTTP/2.0" => Version::HTTP_2,
        "HTTP/3.0" => Version::HTTP_3,
        _ => return Err(unreadable("HTTP version")),
    };
    let method = Method::from_bytes(o.method.as_bytes()).map_err(|_| unreadable("method"))?;
    let uri: Uri = o.uri.parse().map_err(|_| unreadable("target"))?;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    Ok(Held::new(
        parts,
        Bytes::new(),
        &o.jkt,
        &o.ps,
        &o.sub,
        UnixTime(o.expires),
    )
    .under(&o.prefix))
}

/// What [`GET`] answers for a tombstone: `GONE` and the owner, `jkt` and prefix on two
/// lines.
fn decode_tombstone(answer: &[Vec<u8>]) -> Result<(Held, HeldState), HeldStoreError> {
    let [tag, owner] = answer else {
        return Err(unreadable("record"));
    };
    let owner = std::str::from_utf8(owner).map_err(|_| unreadable("tombstone"))?;
    match owner.split_once('\n') {
        Some((jkt, prefix)) if tag == b"GONE" => {
            Ok((Held::tombstone(jkt, prefix), HeldState::Gone))
        }
        _ => Err(unreadable("tombstone")),
    }
}

/// A settled state (`D:jti` with its result, `C`), or an open one.
fn decode_state(state: &[u8], response: &[u8]) -> Result<HeldState, HeldStoreError> {
    let text = std::str::from_utf8(state).map_err(|_| unreadable("state"))?;
    match text.split_once(':') {
        None if text == "C" => Ok(HeldState::Cancelled),
        None if text == "P" => Ok(HeldState::Pending),
        Some(("R", jti)) => Ok(HeldState::Running {
            jti: jti.to_owned(),
        }),
        Some(("D", jti)) => {
            let (status, rest) = response
                .split_first_chunk::<2>()
                .ok_or_else(|| unreadable("result"))?;
            let status = StatusCode::from_u16(u16::from_be_bytes(*status))
                .map_err(|_| unreadable("result status"))?;
            let (headers, body) = decode_fields(rest).ok_or_else(|| unreadable("result"))?;
            Ok(HeldState::Done {
                jti: jti.to_owned(),
                response: StoredResponse::new(status, headers, body),
            })
        }
        _ => Err(unreadable("state")),
    }
}

/// Header fields and a body, appended to `out`: the field count, each name and value
/// with its length (four bytes, big-endian), then the body.
fn encode_fields(headers: &HeaderMap, body: &[u8], mut out: Vec<u8>) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&len(headers.len()));
    for (name, value) in headers {
        out.extend_from_slice(&len(name.as_str().len()));
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(&len(value.len()));
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(body);
    out
}

/// What [`encode_fields`] wrote; `None` for anything else.
fn decode_fields(mut bytes: &[u8]) -> Option<(HeaderMap, Bytes)> {
    fn take<'b>(bytes: &mut &'b [u8]) -> Option<&'b [u8]> {
        let (n, rest) = bytes.split_first_chunk::<4>()?;
        let n = usize::try_from(u32::from_be_bytes(*n)).ok()?;
        let (value, rest) = rest.split_at_checked(n)?;
        *bytes = rest;
        Some(value)
    }
    let (count, rest) = bytes.split_first_chunk::<4>()?;
    let count = u32::from_be_bytes(*count);
    bytes = rest;
    let mut headers = HeaderMap::new();
    for _ in 0..count {
        let name = HeaderName::from_bytes(take(&mut bytes)?).ok()?;
        let value = HeaderValue::from_bytes(take(&mut bytes)?).ok()?;
        headers.append(name, value);
    }
    Some((headers, Bytes::copy_from_slice(bytes)))
}

#[cfg(test)]
mod tests {
    use super::{decode_fields, encode_fields};
    use http::HeaderMap;

    #[test]
    fn fields_and_body_read_back_as_written_and_nothing_else_reads() {
        let mut h = HeaderMap::new();
        h.append("x-a", "1".parse().unwrap());
        h.append("x-a", "2".parse().unwrap());
        h.append("content-type", "application/json".parse().unwrap());
        let blob = encode_fields(&h, b"{\"n\":1}", Vec::new());
        let (back, body) = decode_fields(&blob).unwrap();
        assert_eq!(back, h);
        assert_eq!(&body[..], b"{\"n\":1}");
        // Every truncation inside the fields is refused, never a panic.
        let fields_end = blob.len() - 7;
        for cut in 0..fields_end {
            assert!(decode_fields(&blob[..cut]).is_none(), "{cut}");
        }
        assert!(decode_fields(&[0xff; 12]).is_none());
    }
}
