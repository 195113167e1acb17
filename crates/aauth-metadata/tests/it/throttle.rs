//! The guessing throttle: back-off per key, lockouts that end, bounded memory, guesses
//! counted before they are checked and right ones given back. Every case of the behaviour
//! runs over both [`MemoryThrottle`] and [`RedisThrottle`] (when Redis is there); a
//! property test drives both with the same operations (refunds in any order) against a
//! model, and another holds them to what a refund promises: right guesses given back
//! leave the keys as if never made. Then two `RedisThrottle`s share one Redis, and one
//! loses it mid-way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use aauth_keys::time::UnixTime;
use aauth_metadata::store::redis::{Redis, RedisConfig};
use aauth_metadata::throttle::{
    Attempt, ClientAddr, MemoryThrottle, Receipt, RedisThrottle, Throttle, ThrottleKey,
    ThrottlePolicy,
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

/// The throttles of `makers` under `policy`, each kind named, in groups sharing one set of
/// counters: memory, Redis, and two Redis instances (two connections, one prefix).
async fn groups(
    makers: &Makers,
    policy: ThrottlePolicy,
) -> Vec<(&'static str, Vec<Arc<dyn Throttle>>)> {
    let mut all = makers.make(policy);
    if let Some(r) = &makers.redis {
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
    groups
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
    for (what, throttles) in groups(&makers, policy).await {
        let k = [key("alice")];
        let guesses = (0..50).map(|i| {
            let t = Arc::clone(&throttles[i % throttles.len()]);
            tokio::spawn(async move { t.attempt(&k, UnixTime(1_000)).await.unwrap() })
        });
        let mut passed = 0;
        for g in guesses.collect::<Vec<_>>() {
            if g.await.unwrap().blocked().is_none() {
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

/// Twenty wrong guesses and five right ones at once, each right one given back as soon
/// as it is checked: no more wrong ones pass than one after another would, the right ones
/// let none more through, and once all are answered the key is as the wrong ones that
/// passed left it.
#[tokio::test]
async fn right_and_wrong_guesses_at_once_pass_no_more_wrong_ones() {
    let makers = Makers::new("right_and_wrong_guesses_at_once_pass_no_more_wrong_ones").await;
    let policy = ThrottlePolicy::new(
        3,
        Duration::from_secs(10),
        Duration::from_secs(60),
        Duration::from_secs(600),
    );
    for (what, throttles) in groups(&makers, policy).await {
        let k = [key("alice")];
        let now = UnixTime(1_000);
        let guesses = (0..25).map(|i| {
            let t = Arc::clone(&throttles[i % throttles.len()]);
            let right = i % 5 == 2;
            tokio::spawn(async move {
                let attempt = t.attempt(&k, now).await.unwrap();
                // The lookup, while the others go on.
                tokio::task::yield_now().await;
                match attempt.into_receipt() {
                    Ok(receipt) if right => {
                        t.refund(receipt, now).await.unwrap();
                        false
                    }
                    Ok(_) => true,
                    Err(_) => false,
                }
            })
        });
        let mut wrong_passed = 0u32;
        for g in guesses.collect::<Vec<_>>() {
            if g.await.unwrap() {
                wrong_passed += 1;
            }
        }
        assert!(wrong_passed <= 4, "{what}: {wrong_passed}");
        let expected = policy.blocked_until(wrong_passed, 1_000) - 1_000;
        assert_eq!(
            throttles[0].blocked(&k, now).await.unwrap(),
            (expected > 0).then_some(expected),
            "{what}: {wrong_passed} wrong ones passed"
        );
    }
}

/// The regression that once reverted counting codes before their lookup: a key with its
/// free failures spent (earlier wrong codes from the person's address), then the person's
/// own right code, whose attempt is the one past the free ones and starts a block. Given
/// back, it leaves no block: the person's code is answered, and so is their next one (of
/// another request). A wrong one after them is the first past the free ones, as it would
/// have been without them, and the keys are forgotten an hour after the last wrong code,
/// as without them.
#[tokio::test]
async fn a_right_guess_given_back_leaves_no_block_of_its_own() {
    let makers = Makers::new("a_right_guess_given_back_leaves_no_block_of_its_own").await;
    let policy = ThrottlePolicy::default(); // 5 free, 1 s doubling, forgotten after 3600 s
    for (what, t) in makers.make(policy) {
        for (k, then) in [
            ([key("alice"), key("192.0.2.7")], "wrong"),
            ([key("bob"), key("192.0.2.8")], "later"),
        ] {
            for i in 0..5 {
                let a = t.attempt(&k, UnixTime(1_000 + i)).await.unwrap();
                assert!(matches!(a, Attempt::Counted(_)), "{what}: wrong code {i}");
            }
            for (i, at) in [(1, 1_010), (2, 1_010), (3, 1_011)] {
                let Attempt::Counted(receipt) = t.attempt(&k, UnixTime(at)).await.unwrap() else {
                    panic!("{what}: right code {i} refused");
                };
                t.refund(receipt, UnixTime(at)).await.unwrap();
                assert_eq!(
                    t.blocked(&k, UnixTime(at)).await.unwrap(),
                    None,
                    "{what}: {i}"
                );
            }
            if then == "wrong" {
                let a = t.attempt(&k, UnixTime(1_012)).await.unwrap();
                assert!(matches!(a, Attempt::Counted(_)), "{what}");
                assert_eq!(
                    t.blocked(&k, UnixTime(1_012)).await.unwrap(),
                    Some(2),
                    "{what}: the sixth failure"
                );
            } else {
                // 1004 + 3600: the five are forgotten, and a failure is the first again.
                t.failed(&k, UnixTime(4_604)).await.unwrap();
                for _ in 0..4 {
                    t.failed(&k, UnixTime(4_605)).await.unwrap();
                }
                assert_eq!(
                    t.blocked(&k, UnixTime(4_605)).await.unwrap(),
                    None,
                    "{what}"
                );
            }
        }
    }
}

/// A right guess whose attempt was counted before others: given back, it takes only its
/// own failure, so the others stay counted and a block that they start without it stays;
/// one that they start only with it ends.
#[tokio::test]
async fn a_right_guess_given_back_late_takes_only_its_own_failure() {
    let makers = Makers::new("a_right_guess_given_back_late_takes_only_its_own_failure").await;
    let policy = ThrottlePolicy::new(
        2,
        Duration::from_secs(10),
        Duration::from_secs(60),
        Duration::from_secs(600),
    );
    for (what, t) in makers.make(policy) {
        let k = [key("alice")];
        // 1: right (in flight); 2: wrong; 3: wrong, past the free two: 10 s.
        let Attempt::Counted(right) = t.attempt(&k, UnixTime(100)).await.unwrap() else {
            panic!("{what}");
        };
        for at in [100, 101] {
            assert!(matches!(
                t.attempt(&k, UnixTime(at)).await.unwrap(),
                Attempt::Counted(_)
            ));
        }
        assert_eq!(
            t.blocked(&k, UnixTime(101)).await.unwrap(),
            Some(11),
            "{what}"
        );
        // Without the right one, the two wrong ones are free: the block ends.
        t.refund(right, UnixTime(102)).await.unwrap();
        assert_eq!(t.blocked(&k, UnixTime(102)).await.unwrap(), None, "{what}");
        // The two wrong ones still count: a third starts the block.
        t.failed(&k, UnixTime(103)).await.unwrap();
        assert_eq!(
            t.blocked(&k, UnixTime(103)).await.unwrap(),
            Some(11),
            "{what}"
        );

        // A right one, then wrong ones past the free failures after it: with it taken
        // back they still start a block, from the last one.
        let k = [key("bob")];
        let Attempt::Counted(right) = t.attempt(&k, UnixTime(200)).await.unwrap() else {
            panic!("{what}");
        };
        t.failed(&k, UnixTime(200)).await.unwrap();
        t.failed(&k, UnixTime(200)).await.unwrap(); // 3: blocked until 211
        t.failed(&k, UnixTime(211)).await.unwrap(); // 4: blocked until 232
        t.refund(right, UnixTime(212)).await.unwrap();
        // As three wrong ones at 200, 200, 211: the third blocks 10 s from 211.
        assert_eq!(
            t.blocked(&k, UnixTime(212)).await.unwrap(),
            Some(10),
            "{what}"
        );
        // A receipt given back after its key was cleared takes nothing back.
        let Attempt::Counted(right) = t.attempt(&k, UnixTime(300)).await.unwrap() else {
            panic!("{what}");
        };
        t.succeeded(&k).await.unwrap();
        t.failed(&k, UnixTime(300)).await.unwrap();
        t.refund(right, UnixTime(300)).await.unwrap();
        t.failed(&k, UnixTime(300)).await.unwrap();
        t.failed(&k, UnixTime(300)).await.unwrap();
        assert_eq!(
            t.blocked(&k, UnixTime(300)).await.unwrap(),
            Some(11),
            "{what}"
        );
    }
}

/// Which keys an operation of a generated case names (of three): each alone, two, and
/// one key twice.
fn key_set(k: u8) -> &'static [usize] {
    match k % 5 {
        0 => &[0],
        1 => &[1],
        2 => &[2],
        3 => &[0, 1],
        _ => &[2, 0, 2],
    }
}

/// One generated case: a policy, a start time, and operations `(keys, op, step, pick)`:
/// `keys` a [`key_set`]; `op` 0 a check ([`Throttle::blocked`]), 1 a failure, 2 and 3 an
/// attempt (its receipt kept), 4 and 5 a refund (of the kept receipt `pick` chooses, in
/// any order), 6 a success; `step` the seconds before it.
type Case = (Vec<(u8, u8, u64, u8)>, u32, u64, u64, u64, u64);

/// Small steps and short memories as often as long ones, so that a block's end and a
/// key's forgetting fall exactly on a step.
fn cases() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(
            (0u8..5, 0u8..7, prop_oneof![0u64..3, 0u64..120], any::<u8>()),
            1..80,
        ),
        0u32..4,
        prop_oneof![1u64..3, 1u64..20],
        1u64..200,
        prop_oneof![0u64..3, 0u64..300],
        // Times whose low ten digits carry when a block is added (Redis adds in halves
        // of ten digits), and times that saturate.
        prop_oneof![
            Just(0u64),
            Just(9_999_999_000),
            Just(u64::MAX - 20_000),
            Just(u64::MAX - 300),
            0u64..1_000_000
        ],
    )
}

/// A key of the model: its failures, last failure, block, life and the write that left
/// it so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    failures: u32,
    last: u64,
    until: u64,
    life: u64,
    stamp: u64,
}

/// The model: three keys, as the throttles should hold them; what each attempt counted;
/// and, apart, the ledger of each key's failures not taken back, `(attempt, when)`, to
/// hold the model to what a refund promises.
struct Model {
    policy: ThrottlePolicy,
    keys: [Option<Entry>; 3],
    ledger: [Vec<(u64, u64)>; 3],
    next: u64,
}

/// What the model's attempt `id` counted: for each key, before and after.
type ModelReceipt = (u64, Vec<(usize, Option<Entry>, Entry)>);

impl Model {
    fn expiry(&self, e: &Entry) -> u64 {
        e.last.saturating_add(self.policy.forget_after).max(e.until)
    }

    /// The key, if not forgotten at `now`.
    fn live(&self, k: usize, now: u64) -> Option<Entry> {
        self.keys[k].filter(|e| self.expiry(e) > now)
    }

    fn blocked(&self, ks: &[usize], now: u64) -> Option<u64> {
        ks.iter()
            .filter_map(|k| self.keys[*k])
            .filter(|e| e.until > now)
            .map(|e| e.until - now)
            .max()
    }

    fn stamp(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn count(&mut self, ks: &[usize], now: u64) -> ModelReceipt {
        let id = self.stamp();
        let mut counted = Vec::new();
        for &k in ks {
            let before = self.live(k, now);
            let stamp = self.stamp();
            let failures = before.map_or(0, |e| e.failures) + 1;
            let after = Entry {
                failures,
                last: now,
                until: self.policy.blocked_until(failures, now),
                life: before.map_or(stamp, |e| e.life),
                stamp,
            };
            if before.is_none() {
                self.ledger[k].clear();
            }
            self.ledger[k].push((id, now));
            self.keys[k] = Some(after);
            counted.push((k, before, after));
        }
        (id, counted)
    }

    /// Puts back each key as the attempt found it when nothing else was written to it
    /// since; else one failure fewer, the block recomputed from its last failure and
    /// never longer; nothing for a key cleared or forgotten since.
    fn refund(&mut self, (id, counted): &ModelReceipt, now: u64) {
        for (k, before, after) in counted.iter().rev() {
            let Some(current) = self.live(*k, now).filter(|e| e.life == after.life) else {
                continue;
            };
            if let Some(i) = self.ledger[*k].iter().position(|(a, _)| a == id) {
                self.ledger[*k].remove(i);
            }
            self.keys[*k] = if current == *after {
                *before
            } else if current.failures > 1 {
                let failures = current.failures - 1;
                Some(Entry {
                    failures,
                    until: self
                        .policy
                        .blocked_until(failures, current.last)
                        .min(current.until),
                    stamp: self.stamp(),
                    ..current
                })
            } else {
                None
            };
        }
    }

    /// What a refund promises, against the ledger: a live key counts exactly the
    /// failures not taken back, and is blocked at least as long as they block.
    fn holds_its_promises(&self, now: u64) -> Result<(), TestCaseError> {
        for k in 0..3 {
            let Some(e) = self.live(k, now) else {
                continue;
            };
            let ledger = &self.ledger[k];
            prop_assert_eq!(
                usize::try_from(e.failures).unwrap(),
                ledger.len(),
                "key {}",
                k
            );
            let latest = ledger.iter().map(|(_, t)| *t).max().unwrap_or(0);
            prop_assert!(e.last >= latest, "key {}", k);
            prop_assert!(
                e.until >= self.policy.blocked_until(e.failures, latest),
                "key {}: a block the failures left start was lifted",
                k
            );
        }
        Ok(())
    }
}

/// Runs `case` over every throttle of `makers` and the model, and checks after every
/// operation that each throttle answers every check and attempt as the model does, and
/// that the model keeps what a refund promises.
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
    let names = [key("0"), key("1"), key("2")];
    let mut model = Model {
        policy,
        keys: [None; 3],
        ledger: [Vec::new(), Vec::new(), Vec::new()],
        next: 0,
    };
    // Each kept receipt: the model's, and each throttle's.
    let mut kept: Vec<(ModelReceipt, Vec<Receipt>)> = Vec::new();
    let mut now = start;
    for (k, op, step, pick) in ops {
        now = now.saturating_add(step);
        let ks = key_set(k);
        let tk: Vec<ThrottleKey> = ks.iter().map(|k| names[*k]).collect();
        let t = UnixTime(now);
        match op {
            1 => {
                for (_, th) in &all {
                    th.failed(&tk, t).await.unwrap();
                }
                model.count(ks, now);
            }
            2 | 3 => {
                let expected = model.blocked(ks, now);
                let mut receipts = Vec::new();
                for (what, th) in &all {
                    match th.attempt(&tk, t).await.unwrap().into_receipt() {
                        Err(wait) => {
                            prop_assert_eq!(Some(wait), expected, "{} attempt", what);
                        }
                        Ok(r) => {
                            prop_assert_eq!(None, expected, "{} attempt", what);
                            receipts.push(r);
                        }
                    }
                }
                if expected.is_none() {
                    kept.push((model.count(ks, now), receipts));
                }
            }
            4 | 5 if !kept.is_empty() => {
                let (m, receipts) = kept.remove(usize::from(pick) % kept.len());
                for ((_, th), r) in all.iter().zip(receipts) {
                    th.refund(r, t).await.unwrap();
                }
                model.refund(&m, now);
            }
            6 => {
                for (_, th) in &all {
                    th.succeeded(&tk).await.unwrap();
                }
                for k in ks {
                    model.keys[*k] = None;
                }
            }
            _ => {}
        }
        for (k, name) in names.iter().enumerate() {
            let expected = model.blocked(&[k], now);
            for (what, th) in &all {
                let got = th.blocked(&[*name], t).await.unwrap();
                prop_assert_eq!(got, expected, "{} key {}", what, k);
            }
        }
        model.holds_its_promises(now)?;
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

/// One generated case of guesses one after another: `(keys, right, step)`, and a policy.
type Guesses = (Vec<(u8, bool, u64)>, u32, u64, u64, u64);

/// Guesses one after another, each right one given back at once: the keys are exactly
/// as if the right ones had never been made (a twin throttle that sees only the wrong
/// ones answers every check as the throttle that sees both), over memory and Redis.
async fn right_guesses_leave_no_trace(
    makers: &Makers,
    (guesses, free, base, max, forget): Guesses,
) -> Result<(), TestCaseError> {
    let policy = ThrottlePolicy::new(
        free,
        Duration::from_secs(base),
        Duration::from_secs(max),
        Duration::from_secs(forget),
    );
    let both = makers.make(policy);
    let twins = makers.make(policy);
    let names = [key("0"), key("1"), key("2")];
    let mut now = 1_000u64;
    for (k, right, step) in guesses {
        now += step;
        let t = UnixTime(now);
        let tk: Vec<ThrottleKey> = key_set(k).iter().map(|k| names[*k]).collect();
        for ((what, th), (_, twin)) in both.iter().zip(&twins) {
            let attempt = th.attempt(&tk, t).await.unwrap();
            if right {
                let expected = twin.blocked(&tk, t).await.unwrap();
                prop_assert_eq!(attempt.blocked(), expected, "{}", what);
                if let Ok(r) = attempt.into_receipt() {
                    th.refund(r, t).await.unwrap();
                }
            } else {
                let expected = twin.attempt(&tk, t).await.unwrap().blocked();
                prop_assert_eq!(attempt.blocked(), expected, "{}", what);
            }
            for name in names {
                let expected = twin.blocked(&[name], t).await.unwrap();
                prop_assert_eq!(th.blocked(&[name], t).await.unwrap(), expected, "{}", what);
            }
        }
    }
    Ok(())
}

#[test]
fn right_guesses_given_back_leave_the_keys_as_without_them() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let makers = runtime.block_on(Makers::new(
        "right_guesses_given_back_leave_the_keys_as_without_them",
    ));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let guesses = (
        proptest::collection::vec(
            (0u8..5, any::<bool>(), prop_oneof![0u64..3, 0u64..60]),
            1..60,
        ),
        0u32..4,
        1u64..10,
        1u64..100,
        prop_oneof![0u64..3, 0u64..200],
    );
    runner
        .run(&guesses, |case| {
            runtime.block_on(right_guesses_leave_no_trace(&makers, case))
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

/// A key written before the hash held its last failure and stamps (`f`, `u` and `e`
/// only): its block still refuses, and once it ends the next failure starts the key
/// afresh, in the current layout.
#[tokio::test]
async fn a_key_of_the_earlier_layout_blocks_and_then_starts_afresh() {
    let Some(url) = redis_url("a_key_of_the_earlier_layout_blocks_and_then_starts_afresh") else {
        return;
    };
    let prefix = format!("{}:", unique_name("throttle"));
    let t = RedisThrottle::new(redis(&url, &prefix).await, ThrottlePolicy::default());
    let k = [key("alice")];
    let mut conn = a_connection(&url).await;
    let _: () = aauth_metadata::store::redis::client::cmd("HSET")
        .arg(format!("{prefix}throttle:{}", k[0].to_hex()))
        .arg(
            [
                "f",
                "9",
                "u",
                "00000000000000001100",
                "e",
                "00000000000000004700",
            ]
            .as_slice(),
        )
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(t.blocked(&k, UnixTime(1_000)).await.unwrap(), Some(100));
    assert_eq!(
        t.attempt(&k, UnixTime(1_000)).await.unwrap().blocked(),
        Some(100)
    );
    let Ok(receipt) = t.attempt(&k, UnixTime(1_100)).await.unwrap().into_receipt() else {
        panic!("the block has ended");
    };
    assert_eq!(receipt.counted()[0].before, None, "counted afresh");
    assert_eq!(receipt.counted()[0].after.failures, 1);
    t.refund(receipt, UnixTime(1_100)).await.unwrap();
    let exists: i64 = aauth_metadata::store::redis::client::cmd("EXISTS")
        .arg(format!("{prefix}throttle:{}", k[0].to_hex()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0, "given back: nothing left");
}
