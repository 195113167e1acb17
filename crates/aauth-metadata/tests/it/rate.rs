//! Rate limits: GCRA's arithmetic against a model for any request times, the memory
//! limiter on Tokio's paused clock, the rules by client and by endpoint with their `429`,
//! and Redis shared by two instances (cut off: `503`, never an unlimited admission).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use aauth_metadata::rate::{
    MemoryRateLimiter, RateLimit, RateLimiter, RateLimits, RateScope, RedisRateLimiter, Refused,
    Rule, limited_response,
};
use aauth_metadata::store::redis::{Redis, RedisConfig};
use aauth_metadata::throttle::{ClientAddr, ThrottleKey};
use aauth_test_support::services::{Cuttable, redis_url, unique_name};
use proptest::prelude::*;

proptest! {
    /// Over any window from the first request, at most `burst` plus one per elapsed
    /// interval are let through; and a request told to wait `w` goes through at `w`.
    #[test]
    fn gcra_admits_no_more_than_the_rate_and_the_burst(
        requests in 1u32..50, per_ms in 1u64..5_000, burst in 1u32..10,
        gaps in proptest::collection::vec(0u64..400_000, 1..200),
    ) {
        let limit = RateLimit::new(requests, Duration::from_millis(per_ms), burst).unwrap();
        let interval = limit.interval().as_micros() as u64;
        let (mut tat, mut now, mut admitted) = (0u64, 1_000_000u64, 0u64);
        let start = now;
        for gap in gaps {
            now += gap;
            match limit.step(tat, now) {
                Ok(next) => { tat = next; admitted += 1; }
                Err(wait) => {
                    let at = now + wait.as_micros() as u64;
                    prop_assert!(limit.step(tat, at).is_ok(), "told to wait {wait:?}, still refused");
                }
            }
            prop_assert!(admitted <= u64::from(burst) + (now - start) / interval + 1,
                "{admitted} admitted in {} us", now - start);
        }
    }
}

#[test]
fn a_limit_needs_requests_a_period_and_a_burst() {
    assert!(RateLimit::new(0, Duration::from_secs(1), 1).is_err());
    assert!(RateLimit::new(1, Duration::ZERO, 1).is_err());
    assert!(RateLimit::new(1, Duration::from_secs(1), 0).is_err());
    assert!(RateLimit::new(2_000_000, Duration::from_secs(1), 1).is_err());
}

#[tokio::test(start_paused = true)]
async fn the_memory_limiter_lets_the_burst_through_then_the_rate() {
    let limiter = MemoryRateLimiter::default();
    let limit = RateLimit::new(1, Duration::from_secs(1), 3).unwrap();
    let key = ThrottleKey::new("t", "k");
    for _ in 0..3 {
        assert_eq!(limiter.acquire(&key, &limit).await.unwrap(), None);
    }
    let wait = limiter.acquire(&key, &limit).await.unwrap().expect("over");
    assert_eq!(wait, Duration::from_secs(1));
    // Another key is unaffected.
    assert_eq!(
        limiter
            .acquire(&ThrottleKey::new("t", "other"), &limit)
            .await
            .unwrap(),
        None
    );
    tokio::time::advance(wait).await;
    assert_eq!(limiter.acquire(&key, &limit).await.unwrap(), None);
    assert!(limiter.acquire(&key, &limit).await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_full_memory_limiter_limits_new_keys_rather_than_forget_old_ones() {
    let limiter = MemoryRateLimiter::default().max_keys(2);
    let limit = RateLimit::new(1, Duration::from_secs(10), 1).unwrap();
    for k in ["a", "b"] {
        assert_eq!(
            limiter
                .acquire(&ThrottleKey::new("t", k), &limit)
                .await
                .unwrap(),
            None
        );
    }
    assert!(
        limiter
            .acquire(&ThrottleKey::new("t", "c"), &limit)
            .await
            .unwrap()
            .is_some()
    );
    // Once their times have passed, their places are free.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        limiter
            .acquire(&ThrottleKey::new("t", "c"), &limit)
            .await
            .unwrap(),
        None
    );
}

fn request(path: &str, client: Option<[u8; 4]>) -> http::request::Parts {
    let (mut parts, ()) = http::Request::get(path).body(()).unwrap().into_parts();
    if let Some(c) = client {
        parts
            .extensions
            .insert(ClientAddr(IpAddr::V4(Ipv4Addr::from(c))));
    }
    parts
}

#[tokio::test(start_paused = true)]
async fn rules_count_by_client_and_by_endpoint_and_answer_429_with_retry_after() {
    let two_a_minute = RateLimit::new(2, Duration::from_secs(60), 2).unwrap();
    let limits = RateLimits::new(
        vec![
            Rule {
                scope: RateScope::Client,
                path: "/person".to_owned(),
                limit: two_a_minute,
            },
            Rule {
                scope: RateScope::Endpoint,
                path: "/auth".to_owned(),
                limit: RateLimit::new(3, Duration::from_secs(60), 3).unwrap(),
            },
        ],
        Arc::new(MemoryRateLimiter::default()),
    );
    let (a, b) = (Some([192, 0, 2, 1]), Some([192, 0, 2, 2]));
    for _ in 0..2 {
        limits.check(&request("/person-token", a)).await.unwrap();
    }
    let refused = limits
        .check(&request("/person-token", a))
        .await
        .unwrap_err();
    let resp = limited_response(&refused);
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "30");
    let json: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(json["error"], "rate_limited");
    // Another client has its own count; a path no rule names is not counted.
    limits.check(&request("/person-token", b)).await.unwrap();
    for _ in 0..10 {
        limits.check(&request("/jwks", a)).await.unwrap();
    }
    // Without a known address, a client rule does not apply.
    for _ in 0..5 {
        limits.check(&request("/person-token", None)).await.unwrap();
    }
    // The endpoint's count is every client's together.
    for c in [a, b, None] {
        limits.check(&request("/auth-token", c)).await.unwrap();
    }
    assert!(matches!(
        limits
            .check(&request("/auth-token", Some([198, 51, 100, 7])))
            .await,
        Err(Refused::Limited { .. })
    ));
    // Honouring Retry-After succeeds.
    tokio::time::advance(Duration::from_secs(30)).await;
    limits.check(&request("/person-token", a)).await.unwrap();
}

async fn redis(url: &str, prefix: &str) -> Redis {
    Redis::connect(&RedisConfig::new(url).prefix(prefix.to_owned()))
        .await
        .unwrap()
}

/// Two instances counting in one Redis share the limit; with Redis cut off every request
/// is refused `503` (never let through uncounted), and counting resumes when it is back.
#[tokio::test]
async fn limits_hold_across_two_instances_sharing_redis() {
    let Some(url) = redis_url("limits_hold_across_two_instances_sharing_redis") else {
        return;
    };
    let prefix = format!("{}:", unique_name("rate"));
    let cut = Cuttable::to(&url, 6379).await;
    let limit = RateLimit::new(1, Duration::from_secs(3600), 4).unwrap();
    let rules = || {
        vec![Rule {
            scope: RateScope::Endpoint,
            path: "/".to_owned(),
            limit,
        }]
    };
    let one = RateLimits::new(
        rules(),
        Arc::new(RedisRateLimiter::new(redis(&url, &prefix).await)),
    );
    let two = RateLimits::new(
        rules(),
        Arc::new(RedisRateLimiter::new(redis(&cut.url(&url), &prefix).await)),
    );
    for n in 0..4 {
        let instance = if n % 2 == 0 { &one } else { &two };
        instance.check(&request("/x", None)).await.unwrap();
    }
    for instance in [&one, &two] {
        let refused = instance.check(&request("/x", None)).await.unwrap_err();
        assert!(
            matches!(refused, Refused::Limited { retry_after } if retry_after > Duration::from_secs(3000))
        );
    }
    cut.cut();
    let refused = two.check(&request("/x", None)).await.unwrap_err();
    assert!(matches!(refused, Refused::Unavailable(_)), "{refused:?}");
    assert_eq!(limited_response(&refused).status(), 503);
    cut.restore();
    // Back: the shared count is still there.
    let mut answered = None;
    for _ in 0..20 {
        match two.check(&request("/x", None)).await {
            Err(Refused::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            other => {
                answered = Some(other);
                break;
            }
        }
    }
    assert!(
        matches!(answered, Some(Err(Refused::Limited { .. }))),
        "{answered:?}"
    );
}

/// Rules by who signed are the servers' to count, once they verified the signature: the
/// check in front of the role skips them, and each signer has its own count, an agent's
/// apart from a Person Server's of the same name.
#[tokio::test(start_paused = true)]
async fn rules_by_signer_count_only_what_a_server_verified() {
    use aauth_metadata::rate::{SignedBy, slow_down_response};
    let two = RateLimit::new(2, Duration::from_secs(60), 2).unwrap();
    let limits = RateLimits::new(
        vec![
            Rule {
                scope: RateScope::Agent,
                path: "/".to_owned(),
                limit: two,
            },
            Rule {
                scope: RateScope::PersonServer,
                path: "/auth-token".to_owned(),
                limit: two,
            },
        ],
        Arc::new(MemoryRateLimiter::default()),
    );
    // Before verification nothing is counted by signer, however many requests come.
    for _ in 0..10 {
        limits
            .check(&request("/auth-token", Some([192, 0, 2, 1])))
            .await
            .unwrap();
    }
    let alice = SignedBy::Agent("aauth:alice@agent.example");
    for _ in 0..2 {
        limits.check_signed("/person-token", alice).await.unwrap();
    }
    let refused = limits
        .check_signed("/pending/abc", alice)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Refused::Limited { retry_after } if retry_after == Duration::from_secs(30)),
        "{refused:?}"
    );
    assert_eq!(refused.retry_after_secs(), 30);
    // A poll is told to slow down (draft -11's polling error), with the same wait.
    let poll = slow_down_response(&refused);
    assert_eq!(poll.status(), 429);
    assert_eq!(poll.headers()["retry-after"], "30");
    let json: serde_json::Value = serde_json::from_slice(poll.body()).unwrap();
    assert_eq!(json["error"], "slow_down");
    // Another agent, and a Person Server of the same name, count apart; the Person
    // Server rule only on its path.
    limits
        .check_signed("/person-token", SignedBy::Agent("aauth:bob@agent.example"))
        .await
        .unwrap();
    let same_name = SignedBy::PersonServer("aauth:alice@agent.example");
    for _ in 0..5 {
        limits.check_signed("/pending/x", same_name).await.unwrap();
    }
    for _ in 0..2 {
        limits.check_signed("/auth-token", same_name).await.unwrap();
    }
    assert!(limits.check_signed("/auth-token", same_name).await.is_err());
    // Waiting as told lets the agent through again.
    tokio::time::advance(Duration::from_secs(30)).await;
    limits.check_signed("/person-token", alice).await.unwrap();
}
