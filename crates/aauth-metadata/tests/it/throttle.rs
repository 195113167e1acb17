//! The guessing throttle: back-off per key, lockouts that end, bounded memory.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use aauth_keys::time::UnixTime;
use aauth_metadata::throttle::{ClientAddr, MemoryThrottle, Throttle, ThrottleKey, ThrottlePolicy};
use proptest::prelude::*;

fn block<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn key(v: &str) -> ThrottleKey {
    ThrottleKey::new("code/account", v)
}

#[test]
fn back_off_doubles_to_its_ceiling_and_then_ends() {
    let t = MemoryThrottle::new(ThrottlePolicy::new(
        3,
        Duration::from_secs(2),
        Duration::from_secs(60),
        Duration::from_secs(600),
    ));
    let k = [key("alice")];
    let mut now = 1000;
    let mut waits = Vec::new();
    for _ in 0..10 {
        assert_eq!(block(t.blocked(&k, UnixTime(now))).unwrap(), None);
        block(t.failed(&k, UnixTime(now))).unwrap();
        let wait = block(t.blocked(&k, UnixTime(now))).unwrap().unwrap_or(0);
        waits.push(wait);
        now += wait;
    }
    assert_eq!(waits, [0, 0, 0, 2, 4, 8, 16, 32, 60, 60]);
    // The lockout never outlasts the ceiling after the last try...
    block(t.failed(&k, UnixTime(now))).unwrap();
    assert_eq!(block(t.blocked(&k, UnixTime(now + 59))).unwrap(), Some(1));
    assert_eq!(block(t.blocked(&k, UnixTime(now + 60))).unwrap(), None);
    // ...and a key left alone for `forget_after` starts afresh.
    let later = UnixTime(now + 601);
    block(t.failed(&[key("bob")], later)).unwrap(); // sweeps
    block(t.failed(&k, later)).unwrap();
    assert_eq!(
        block(t.blocked(&k, later)).unwrap(),
        None,
        "one failure again"
    );
}

#[test]
fn a_failure_counts_against_every_key_and_success_clears_only_its_own() {
    let t = MemoryThrottle::new(ThrottlePolicy::new(
        1,
        Duration::from_secs(10),
        Duration::from_secs(60),
        Duration::from_secs(600),
    ));
    let client = ThrottleKey::client(
        "password/client",
        ClientAddr(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
    );
    let (alice, bob) = (key("alice"), key("bob"));
    block(t.failed(&[alice, client], UnixTime(0))).unwrap();
    block(t.failed(&[bob, client], UnixTime(1))).unwrap();
    // The client failed twice (blocked); each account once (free).
    assert_eq!(block(t.blocked(&[client], UnixTime(1))).unwrap(), Some(10));
    assert_eq!(block(t.blocked(&[alice], UnixTime(1))).unwrap(), None);
    // A check of several keys is blocked when any is.
    assert_eq!(
        block(t.blocked(&[alice, client], UnixTime(1))).unwrap(),
        Some(10)
    );
    block(t.succeeded(&[alice])).unwrap();
    assert_eq!(block(t.blocked(&[client], UnixTime(1))).unwrap(), Some(10));
}

#[test]
fn ipv6_clients_are_one_key_per_prefix() {
    let a = ClientAddr(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6)));
    let b = ClientAddr(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 9, 9, 9, 9)));
    let c = ClientAddr(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 3, 4, 5, 6)));
    assert_eq!(ThrottleKey::client("s", a), ThrottleKey::client("s", b));
    assert_ne!(ThrottleKey::client("s", a), ThrottleKey::client("s", c));
}

#[test]
fn memory_is_bounded_and_a_flood_of_new_keys_forgets_the_oldest() {
    let t = MemoryThrottle::new(ThrottlePolicy::new(
        0,
        Duration::from_secs(100),
        Duration::from_secs(100),
        Duration::from_secs(1000),
    ))
    .max_keys(50);
    for i in 0..500u32 {
        block(t.failed(&[key(&i.to_string())], UnixTime(u64::from(i)))).unwrap();
        assert!(t.len() <= 50);
    }
    assert_eq!(t.len(), 50);
    // The newest are still blocked; the oldest were forgotten.
    assert!(
        block(t.blocked(&[key("499")], UnixTime(499)))
            .unwrap()
            .is_some()
    );
    assert_eq!(block(t.blocked(&[key("0")], UnixTime(499))).unwrap(), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Against a model: a key is blocked exactly for `delay(failures)` after its last
    /// failure, failures reset after `forget_after`, and no value (times near
    /// `u64::MAX`, huge failure counts) panics.
    #[test]
    fn matches_a_model(
        ops in proptest::collection::vec((0u8..3, any::<bool>(), 0u64..120), 1..80),
        free in 0u32..4, base in 1u64..20, max in 1u64..200, forget in 0u64..300,
        start in prop_oneof![Just(0u64), Just(u64::MAX - 20_000), 0u64..1_000_000],
    ) {
        let policy = ThrottlePolicy::new(free, Duration::from_secs(base), Duration::from_secs(max), Duration::from_secs(forget));
        let t = MemoryThrottle::new(policy);
        // key -> (failures, last, blocked_until)
        let mut model: [Option<(u32, u64, u64)>; 3] = [None; 3];
        let mut now = start;
        for (k, fail, step) in ops {
            now = now.saturating_add(step);
            let tk = [key(&k.to_string())];
            for m in &mut model {
                if let Some((_, last, until)) = *m
                    && last.saturating_add(policy.forget_after).max(until) <= now
                {
                    *m = None;
                }
            }
            let expect_blocked = model[usize::from(k)].and_then(|(_, _, until)| (until > now).then(|| until - now));
            if fail {
                block(t.failed(&tk, UnixTime(now))).unwrap();
                let failures = model[usize::from(k)].map_or(0, |m| m.0) + 1;
                model[usize::from(k)] = Some((failures, now, now.saturating_add(policy.delay(failures))));
            } else {
                // The sweep runs on failures; a check reads what is there.
                let got = block(t.blocked(&tk, UnixTime(now))).unwrap();
                prop_assert_eq!(got, expect_blocked);
            }
        }
    }

    #[test]
    fn delay_is_monotone_and_capped(free in 0u32..10, base in 1u64..1_000, max in 1u64..100_000, n in any::<u32>()) {
        let p = ThrottlePolicy::new(free, Duration::from_secs(base), Duration::from_secs(max), Duration::from_secs(60));
        let d = p.delay(n);
        prop_assert!(d <= p.max_delay);
        prop_assert!(p.delay(n.saturating_add(1)) >= d);
    }
}
