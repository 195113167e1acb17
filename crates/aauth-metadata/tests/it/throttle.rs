//! The guessing throttle: back-off per key, lockouts that end, bounded memory. Every case
//! of the behaviour runs over both [`MemoryThrottle`] and [`RedisThrottle`] (when Redis is
//! there), and a property test drives both with the same operations against a model;
//! then two `RedisThrottle`s share one Redis, and one loses it mid-way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use aauth_keys::time::UnixTime;
use aauth_metadata::store::redis::{Redis, RedisConfig};
use aauth_metadata::throttle::{
    ClientAddr, MemoryThrottle, RedisThrottle, Throttle, ThrottleKey, ThrottlePolicy,
};
use aauth_test_support::services::{Cuttable, redis_url, unique_name};
use proptest::prelude::*;

fn key(v: &str) -> ThrottleKey {
    ThrottleKey::new("code/account", v)
}

async fn redis(url: &str, prefix: &str) -> Redis {
    Redis::connect(&RedisConfig::new(url).prefix(prefix.to_owned()))
        .await
        .unwrap()
}

/// What a test builds its throttles from: memory always, and Redis when there is one
/// (each throttle under a fresh prefix: a fresh set of counters).
struct Makers {
    redis: Option<Redis>,
}

impl Makers {
    async fn new(test: &str) -> Self {
        let redis = match redis_url(test) {
            Some(url) => Some(redis(&url, "unused:").await),
            None => None,
        };
        Self { redis }
    }

    /// One throttle of each kind under `policy`, named.
    fn make(&self, policy: ThrottlePolicy) -> Vec<(&'static str, Arc<dyn Throttle>)> {
        let mut all: Vec<(&'static str, Arc<dyn Throttle>)> =
            vec![("memory", Arc::new(MemoryThrottle::new(policy)))];
        if let Some(r) = &self.redis {
            let fresh = r.with_prefix(&format!("{}:", unique_name("throttle")));
            all.push(("redis", Arc::new(RedisThrottle::new(fresh, policy))));
        }
        all
    }
}

async fn back_off_doubles_to_its_ceiling_and_then_ends_in(t: &dyn Throttle, what: &str) {
    let k = [key("alice")];
    let mut now = 1000;
    let mut waits = Vec::new();
    for _ in 0..10 {
        assert_eq!(t.blocked(&k, UnixTime(now)).await.unwrap(), None, "{what}");
        t.failed(&k, UnixTime(now)).await.unwrap();
        let wait = t.blocked(&k, UnixTime(now)).await.unwrap().unwrap_or(0);
        waits.push(wait);
        now += wait;
    }
    // Each block ends a second late: whole seconds cannot tell where in its second a
    // failure came (`ThrottlePolicy::blocked_until`).
    assert_eq!(waits, [0, 0, 0, 3, 5, 9, 17, 33, 61, 61], "{what}");
    // The lockout never outlasts the ceiling (and that second) after the last try...
    t.failed(&k, UnixTime(now)).await.unwrap();
    assert_eq!(
        t.blocked(&k, UnixTime(now + 60)).await.unwrap(),
        Some(1),
        "{what}"
    );
    assert_eq!(
        t.blocked(&k, UnixTime(now + 61)).await.unwrap(),
        None,
        "{what}"
    );
    // ...and a key left alone for `forget_after` starts afresh.
    let later = UnixTime(now + 601);
    t.failed(&[key("bob")], later).await.unwrap(); // sweeps (memory)
    t.failed(&k, later).await.unwrap();
    assert_eq!(
        t.blocked(&k, later).await.unwrap(),
        None,
        "{what}: one failure again"
    );
}

#[tokio::test]
async fn back_off_doubles_to_its_ceiling_and_then_ends() {
    let makers = Makers::new("back_off_doubles_to_its_ceiling_and_then_ends").await;
    let policy = ThrottlePolicy::new(
        3,
        Duration::from_secs(2),
        Duration::from_secs(60),
        Duration::from_secs(600),
    );
    for (what, t) in makers.make(policy) {
        back_off_doubles_to_its_ceiling_and_then_ends_in(t.as_ref(), what).await;
    }
}

async fn a_failure_counts_against_every_key_in(t: &dyn Throttle, what: &str) {
    let client = ThrottleKey::client(
        "password/client",
        ClientAddr(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
    );
    let (alice, bob) = (key("alice"), key("bob"));
    t.failed(&[alice, client], UnixTime(0)).await.unwrap();
    t.failed(&[bob, client], UnixTime(1)).await.unwrap();
    // The client failed twice (blocked); each account once (free).
    assert_eq!(
        t.blocked(&[client], UnixTime(1)).await.unwrap(),
        Some(11),
        "{what}"
    );
    assert_eq!(
        t.blocked(&[alice], UnixTime(1)).await.unwrap(),
        None,
        "{what}"
    );
    // A check of several keys is blocked when any is.
    assert_eq!(
        t.blocked(&[alice, client], UnixTime(1)).await.unwrap(),
        Some(11),
        "{what}"
    );
    t.succeeded(&[alice]).await.unwrap();
    assert_eq!(
        t.blocked(&[client], UnixTime(1)).await.unwrap(),
        Some(11),
        "{what}"
    );
    // A success clears the keys it names, and only those.
    t.failed(&[alice], UnixTime(2)).await.unwrap();
    t.failed(&[alice], UnixTime(2)).await.unwrap();
    assert_eq!(
        t.blocked(&[alice], UnixTime(2)).await.unwrap(),
        Some(11),
        "{what}"
    );
    t.succeeded(&[alice, client]).await.unwrap();
    assert_eq!(
        t.blocked(&[alice, client, bob], UnixTime(2)).await.unwrap(),
        None,
        "{what}"
    );
    // Nothing to check, count or clear: nothing asked.
    assert_eq!(t.blocked(&[], UnixTime(2)).await.unwrap(), None, "{what}");
    t.failed(&[], UnixTime(2)).await.unwrap();
    t.succeeded(&[]).await.unwrap();
}

#[tokio::test]
async fn a_failure_counts_against_every_key_and_success_clears_only_its_own() {
    let makers =
        Makers::new("a_failure_counts_against_every_key_and_success_clears_only_its_own").await;
    let policy = ThrottlePolicy::new(
        1,
        Duration::from_secs(10),
        Duration::from_secs(60),
        Duration::from_secs(600),
    );
    for (what, t) in makers.make(policy) {
        a_failure_counts_against_every_key_in(t.as_ref(), what).await;
    }
}

/// Times at the end of `u64` (far past what Lua's doubles hold exactly): saturated, never a
/// panic, the same answers from both.
#[tokio::test]
async fn times_and_counts_at_their_limits_saturate() {
    let makers = Makers::new("times_and_counts_at_their_limits_saturate").await;
    let policy = ThrottlePolicy::new(
        0,
        Duration::from_secs(1),
        Duration::from_secs(u64::MAX),
        Duration::from_secs(u64::MAX),
    );
    for (what, t) in makers.make(policy) {
        let k = [key("edge")];
        let near = u64::MAX - 3;
        t.failed(&k, UnixTime(near)).await.unwrap();
        assert_eq!(
            t.blocked(&k, UnixTime(near)).await.unwrap(),
            Some(2),
            "{what}"
        );
        t.failed(&k, UnixTime(near)).await.unwrap();
        t.failed(&k, UnixTime(near)).await.unwrap();
        // 4 s would pass u64::MAX: blocked to the end of time, one second short of it.
        assert_eq!(
            t.blocked(&k, UnixTime(near)).await.unwrap(),
            Some(3),
            "{what}"
        );
        assert_eq!(
            t.blocked(&k, UnixTime(u64::MAX - 1)).await.unwrap(),
            Some(1),
            "{what}: u64::MAX and u64::MAX - 1, which one double holds both of"
        );
        assert_eq!(
            t.blocked(&k, UnixTime(u64::MAX)).await.unwrap(),
            None,
            "{what}"
        );
    }
}

#[test]
fn ipv6_clients_are_one_key_per_prefix() {
    let a = ClientAddr(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6)));
    let b = ClientAddr(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 9, 9, 9, 9)));
    let c = ClientAddr(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 3, 4, 5, 6)));
    assert_eq!(ThrottleKey::client("s", a), ThrottleKey::client("s", b));
    assert_ne!(ThrottleKey::client("s", a), ThrottleKey::client("s", c));
}

#[tokio::test]
async fn memory_is_bounded_and_a_flood_of_new_keys_forgets_the_oldest() {
    let t = MemoryThrottle::new(ThrottlePolicy::new(
        0,
        Duration::from_secs(100),
        Duration::from_secs(100),
        Duration::from_secs(1000),
    ))
    .max_keys(50);
    for i in 0..500u32 {
        t.failed(&[key(&i.to_string())], UnixTime(u64::from(i)))
            .await
            .unwrap();
        assert!(t.len() <= 50);
    }
    assert_eq!(t.len(), 50);
    // The newest are still blocked; the oldest were forgotten.
    assert!(
        t.blocked(&[key("499")], UnixTime(499))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(t.blocked(&[key("0")], UnixTime(499)).await.unwrap(), None);
}

/// Fifty guesses sent at once: each attempt sees the ones before it counted, so exactly
/// as many pass as would one after another (the free failures, and the one that starts
/// the first block), at one instance or spread over two sharing one Redis.
#[tokio::test]
async fn attempts_at_once_pass_no_more_than_one_after_another() {
    let makers = Makers::new("attempts_at_once_pass_no_more_than_one_after_another").await;
    let policy = ThrottlePolicy::new(
        3,
        Duration::from_secs(10),
        Duration::from_secs(60),
        Duration::from_secs(600),
    );
    let mut all = makers.make(policy);
    if let Some(r) = &makers.redis {
        // Two instances: two connections, one set of counters.
        let shared = r.with_prefix(&format!("{}:", unique_name("throttle")));
        let other = redis(&redis_url("").unwrap(), "unused:")
            .await
            .with_prefix(shared.prefix());
        let (a, b): (Arc<dyn Throttle>, Arc<dyn Throttle>) = (
            Arc::new(RedisThrottle::new(shared, policy)),
            Arc::new(RedisThrottle::new(other, policy)),
        );
        all.push(("redis, two instances", a));
        all.push(("redis, two instances", b));
    }
    let mut groups: Vec<(&str, Vec<Arc<dyn Throttle>>)> = Vec::new();
    for (what, t) in all {
        match groups.last_mut() {
            Some((w, ts)) if *w == what => ts.push(t),
            _ => groups.push((what, vec![t])),
        }
    }
    for (what, throttles) in groups {
        let k = [key("alice")];
        let guesses = (0..50).map(|i| {
            let t = Arc::clone(&throttles[i % throttles.len()]);
            tokio::spawn(async move { t.attempt(&k, UnixTime(1_000)).await.unwrap() })
        });
        let mut passed = 0;
        for g in guesses.collect::<Vec<_>>() {
            if g.await.unwrap().is_none() {
                passed += 1;
            }
        }
        assert_eq!(passed, 4, "{what}");
        assert_eq!(
            throttles[0].blocked(&k, UnixTime(1_000)).await.unwrap(),
            Some(11),
            "{what}"
        );
    }
}

/// One generated case: a policy, a start time, and operations `(key, op, step)`, `op`
/// 0 a check ([`Throttle::blocked`]), 1 a failure, 2 an attempt.
type Case = (Vec<(u8, u8, u64)>, u32, u64, u64, u64, u64);

/// Small steps and short memories as often as long ones, so that a block's end and a
/// key's forgetting fall exactly on a step.
fn cases() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec((0u8..3, 0u8..3, prop_oneof![0u64..3, 0u64..120]), 1..80),
        0u32..4,
        prop_oneof![1u64..3, 1u64..20],
        1u64..200,
        prop_oneof![0u64..3, 0u64..300],
        prop_oneof![Just(0u64), Just(u64::MAX - 20_000), 0u64..1_000_000],
    )
}

/// Runs `case` over every throttle in `all` and a model: a key is blocked exactly for
/// `delay(failures)` after its last failure, failures reset after `forget_after`, an
/// attempt is refused while blocked and else counted, and every throttle answers every
/// check and attempt as the model does.
async fn matches_the_model(
    makers: &Makers,
    (ops, free, base, max, forget, start): Case,
) -> Result<(), TestCaseError> {
    let policy = ThrottlePolicy::new(
        free,
        Duration::from_secs(base),
        Duration::from_secs(max),
        Duration::from_secs(forget),
    );
    let all = makers.make(policy);
    // key -> (failures, last, blocked_until)
    let mut model: [Option<(u32, u64, u64)>; 3] = [None; 3];
    let mut now = start;
    for (k, op, step) in ops {
        now = now.saturating_add(step);
        let tk = [key(&k.to_string())];
        for m in &mut model {
            if let Some((_, last, until)) = *m
                && last.saturating_add(policy.forget_after).max(until) <= now
            {
                *m = None;
            }
        }
        let expect_blocked =
            model[usize::from(k)].and_then(|(_, _, until)| (until > now).then(|| until - now));
        let counted = match op {
            1 => {
                for (_, t) in &all {
                    t.failed(&tk, UnixTime(now)).await.unwrap();
                }
                true
            }
            2 => {
                for (what, t) in &all {
                    let got = t.attempt(&tk, UnixTime(now)).await.unwrap();
                    prop_assert_eq!(got, expect_blocked, "{} attempt", what);
                }
                expect_blocked.is_none()
            }
            _ => {
                // The sweep runs on failures; a check reads what is there.
                for (what, t) in &all {
                    let got = t.blocked(&tk, UnixTime(now)).await.unwrap();
                    prop_assert_eq!(got, expect_blocked, "{}", what);
                }
                false
            }
        };
        if counted {
            let failures = model[usize::from(k)].map_or(0, |m| m.0) + 1;
            model[usize::from(k)] = Some((failures, now, policy.blocked_until(failures, now)));
        }
    }
    Ok(())
}

/// Against a model, memory and Redis alike (one runtime and one connection for every
/// case; each case's Redis counters under a fresh prefix).
#[test]
fn both_throttles_match_a_model() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let makers = runtime.block_on(Makers::new("both_throttles_match_a_model"));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&cases(), |case| {
            runtime.block_on(matches_the_model(&makers, case))
        })
        .unwrap();
}

proptest! {
    #[test]
    fn delay_is_monotone_and_capped(free in 0u32..10, base in 1u64..1_000, max in 1u64..100_000, n in any::<u32>()) {
        let p = ThrottlePolicy::new(free, Duration::from_secs(base), Duration::from_secs(max), Duration::from_secs(60));
        let d = p.delay(n);
        prop_assert!(d <= p.max_delay);
        prop_assert!(p.delay(n.saturating_add(1)) >= d);
    }
}

/// Two instances on one Redis count together: failures at either block both, and a
/// success at one clears the key at the other.
#[tokio::test]
async fn two_instances_on_one_redis_share_their_counts() {
    let Some(url) = redis_url("two_instances_on_one_redis_share_their_counts") else {
        return;
    };
    let prefix = format!("{}:", unique_name("throttle"));
    let policy = ThrottlePolicy::new(
        2,
        Duration::from_secs(30),
        Duration::from_secs(300),
        Duration::from_secs(600),
    );
    let a = RedisThrottle::new(redis(&url, &prefix).await, policy);
    let b = RedisThrottle::new(redis(&url, &prefix).await, policy);
    let k = [key("alice")];
    a.failed(&k, UnixTime(100)).await.unwrap();
    b.failed(&k, UnixTime(101)).await.unwrap();
    assert_eq!(
        a.blocked(&k, UnixTime(101)).await.unwrap(),
        None,
        "two free"
    );
    a.failed(&k, UnixTime(102)).await.unwrap();
    // The third failure, counted at A, blocks at B.
    assert_eq!(b.blocked(&k, UnixTime(102)).await.unwrap(), Some(31));
    b.failed(&k, UnixTime(132)).await.unwrap();
    assert_eq!(a.blocked(&k, UnixTime(132)).await.unwrap(), Some(61));
    b.succeeded(&k).await.unwrap();
    assert_eq!(a.blocked(&k, UnixTime(132)).await.unwrap(), None);
    // Another prefix (another deployment) counts apart.
    let other = RedisThrottle::new(
        redis(&url, &format!("{}:", unique_name("throttle"))).await,
        policy,
    );
    for _ in 0..3 {
        a.failed(&k, UnixTime(200)).await.unwrap();
    }
    assert_eq!(other.blocked(&k, UnixTime(200)).await.unwrap(), None);
    // Redis forgets a key once no instance can see it any more (here, a few seconds
    // after forget_after: the time left on the callers' clock, plus a little).
    let mut conn = a_connection(&url).await;
    let ttl: i64 = aauth_metadata::store::redis::client::cmd("PTTL")
        .arg(format!("{prefix}throttle:{}", k[0].to_hex()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((600_000..=606_000).contains(&ttl), "{ttl}");
}

async fn a_connection(url: &str) -> aauth_metadata::store::redis::client::aio::ConnectionManager {
    redis(url, "").await.connection()
}

/// Redis cut mid-way: every call is an error (the server refuses the guess, `503`),
/// never an answer that lets it through unthrottled; once Redis is back, the counts it
/// kept still block.
#[tokio::test]
async fn a_throttle_that_loses_redis_refuses_rather_than_admits() {
    let Some(url) = redis_url("a_throttle_that_loses_redis_refuses_rather_than_admits") else {
        return;
    };
    let prefix = format!("{}:", unique_name("throttle"));
    let cut = Cuttable::to(&url, 6379).await;
    let policy = ThrottlePolicy::new(
        1,
        Duration::from_secs(600),
        Duration::from_secs(600),
        Duration::from_secs(3600),
    );
    let direct = RedisThrottle::new(redis(&url, &prefix).await, policy);
    let through = RedisThrottle::new(redis(&cut.url(&url), &prefix).await, policy);
    let k = [key("alice")];
    through.failed(&k, UnixTime(1000)).await.unwrap();
    through.failed(&k, UnixTime(1001)).await.unwrap();
    assert_eq!(
        through.blocked(&k, UnixTime(1001)).await.unwrap(),
        Some(601)
    );
    cut.cut();
    let e = through.blocked(&k, UnixTime(1002)).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_eq!(e.store(), "throttle redis");
    assert!(through.failed(&k, UnixTime(1002)).await.is_err());
    assert!(
        through.succeeded(&k).await.is_err(),
        "nothing cleared while cut"
    );
    // The other instance, still connected, sees the block throughout.
    assert_eq!(direct.blocked(&k, UnixTime(1002)).await.unwrap(), Some(600));
    cut.restore();
    let mut answered = None;
    for _ in 0..20 {
        match through.blocked(&k, UnixTime(1003)).await {
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(a) => {
                answered = Some(a);
                break;
            }
        }
    }
    assert_eq!(answered, Some(Some(599)), "back, and still blocked");
}
