//! What several instances of one resource share, kept in Redis (feature `redis`, decision
//! 0015): the replay cache ([`RedisReplayStore`]), sessions ([`RedisSessionStore`]),
//! revocations ([`RedisRevocationList`]) and calls held for their auth tokens
//! ([`RedisHeldStore`]). Each keeps the contract of its memory store (the same tests run
//! against both), with the same bounds, so that a second instance changes where the state
//! lives, not what it means.
//!
//! - **One round trip.** Every call is one script run atomically by Redis (`EVALSHA`):
//!   what it reads and what it writes are one step, so two instances racing on one entry
//!   see one winner, and a call that fails changes nothing. A token-bearing
//!   state-changing request needs the revocation check and the replay check:
//!   [`RedisReplayAndRevocations`] asks both in one script, one round trip.
//! - **Fail closed.** A Redis that cannot answer (down, timed out, refused) is the trait's
//!   unavailable error, which the gate answers with `503` and `Retry-After`: never an
//!   admission. The connection reconnects by itself ([`aauth_metadata::store::redis`]),
//!   so service resumes when Redis does, with no restart.
//! - **The callers' time.** Whether an entry is live is decided on the `now` the caller
//!   passes, as in memory, so the instances' clocks (not Redis's) decide; Redis's own
//!   expiry (the time left on the caller's clock, plus a little) only drops what no caller
//!   can see any more. For the replay cache "a little" is the clock-skew allowance
//!   ([`RedisReplayStore::clock_skew`], 60 s by default): an entry Redis dropped while a
//!   slower instance still has the request inside its window would admit a replay there.
//! - **What Redis must be.** One server, or a managed primary (no Cluster: a script's keys
//!   must be on one node), with `maxmemory-policy noeviction`: a Redis that evicts keys
//!   under memory pressure would forget replay entries and revocations. Replication to a
//!   replica is asynchronous: a failover can lose the last writes (a replay within the
//!   signature window could then be admitted once more).
//!
//! Every store takes an [`aauth_metadata::store::redis::Redis`]: one connection, shared,
//! and a key prefix that keeps deployments (or tests) apart.

mod both;
mod held;
mod replay;
mod revocation;
mod session;

pub use both::RedisReplayAndRevocations;
pub use held::RedisHeldStore;
pub use replay::RedisReplayStore;
pub use revocation::RedisRevocationList;
pub use session::RedisSessionStore;

use aauth_metadata::store::StoreError;
use aauth_metadata::store::redis::describe;

/// How long Redis keeps a key past the time the callers last said it is needed (on
/// Redis's clock): a little, so that a caller whose clock is a second behind still finds
/// what it must. The replay cache, where an entry dropped early admits a replay, adds the
/// instances' clock-skew allowance to it ([`RedisReplayStore::clock_skew`]).
const SLACK_MS: u64 = 5_000;

/// The longest Redis keeps a key (a year): what lives longer on the callers' clock (a
/// revocation of a token with a far `exp`) is dropped then.
const MAX_KEEP_MS: u64 = 366 * 24 * 3600 * 1000;

/// Milliseconds for Redis to keep an entry needed until `until` (the callers' clock, seen
/// at `now`): the time left, plus [`SLACK_MS`], at most [`MAX_KEEP_MS`].
fn keep_ms(until: u64, now: u64) -> u64 {
    until
        .saturating_sub(now)
        .saturating_mul(1000)
        .saturating_add(SLACK_MS)
        .min(MAX_KEEP_MS)
}

/// A store error as the reason text the resource's error types carry (the cause kept).
fn reason(e: &StoreError) -> String {
    describe(e)
}

/// A count or bound as a script argument: Lua's numbers are doubles, so anything past
/// 2^53 is "no bound" and is sent as the largest exact integer.
fn bound(n: usize) -> u64 {
    const EXACT: u64 = 1 << 53;
    u64::try_from(n).map_or(EXACT, |n| n.min(EXACT))
}

/// The helper every script starts with: `keep(key, ms)` makes `key` live at least `ms`
/// more milliseconds (never shortens it).
const KEEP_LUA: &str = r"
local function keep(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
";

#[cfg(test)]
mod tests {
    use super::{MAX_KEEP_MS, SLACK_MS, bound, keep_ms};

    #[test]
    fn keys_are_kept_for_the_time_left_on_the_callers_clock() {
        assert_eq!(keep_ms(160, 100), 60_000 + SLACK_MS);
        // Already past: only the slack.
        assert_eq!(keep_ms(100, 160), SLACK_MS);
        assert_eq!(keep_ms(u64::MAX, 0), MAX_KEEP_MS);
        assert_eq!(bound(3), 3);
        assert_eq!(bound(usize::MAX), 1 << 53);
    }
}
