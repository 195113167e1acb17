//! Rate limits by agent, counted once the agent's signature verified: a burst over the
//! limit is `429` with `Retry-After` for that agent alone, honouring it succeeds, a poll
//! is told `slow_down`, and requests that merely claim an agent spend nothing of its
//! budget. Then the limits and the wrong-guess throttle in Redis, cut off mid-way: every
//! request that needs them is refused, none let through uncounted.

use std::sync::Arc;
use std::time::Duration;

use aauth_headers::Scheme;
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::UnixTime;
use aauth_metadata::rate::{
    MemoryRateLimiter, RateLimit, RateLimiter, RateLimits, RateScope, RedisRateLimiter, Rule,
};
use aauth_metadata::store::redis::{Redis, RedisConfig};
use aauth_metadata::throttle::{RedisThrottle, ThrottlePolicy};
use aauth_person_server::{AlwaysAsk, PERSON_TOKEN_PATH};
use aauth_test_support::services::{Cuttable, redis_url, unique_name};
use http::StatusCode;

use crate::consent::{Browser, code_of, header_of, poll};
use crate::{NOW, World, agent_token, json_of, world, world_with};

/// Each agent: `requests` a minute on the paths under `path`, all at once if it likes.
fn per_agent(path: &str, requests: u32, limiter: Arc<dyn RateLimiter>) -> Arc<RateLimits> {
    Arc::new(RateLimits::new(
        vec![Rule {
            scope: RateScope::Agent,
            path: path.to_owned(),
            limit: RateLimit::new(requests, Duration::from_secs(60), requests).unwrap(),
        }],
        limiter,
    ))
}

/// A second agent of the same provider, bound to alice too.
async fn helper(w: &World) -> (PrivateKey, String) {
    let key = PrivateKey::ed25519_from_seed(&[41; 32]);
    let token = agent_token(&w.provider, "aauth:helper@agent.example", &key, 1800);
    w.bind("aauth:helper@agent.example", "alice").await;
    (key, token)
}

/// A person-token request signed by `key` under `token` at `at`: status, headers, body.
async fn ask(
    w: &World,
    (key, token): (&PrivateKey, &str),
    at: UnixTime,
) -> (StatusCode, http::HeaderMap, serde_json::Value) {
    let body = serde_json::json!({"resource": "https://resource.example"});
    let resp = w
        .respond("POST", PERSON_TOKEN_PATH, Some(&body), (key, token), at)
        .await;
    (resp.status(), resp.headers().clone(), json_of(&resp))
}

/// The rate limiter's clock is Tokio's (paused here), the servers' the `now` each request
/// is given: both are moved together.
#[tokio::test(start_paused = true)]
async fn a_burst_from_one_agent_is_limited_and_another_agent_is_not() {
    let mut w = world();
    w.ps = w.ps.rate_limits(per_agent(
        PERSON_TOKEN_PATH,
        3,
        Arc::new(MemoryRateLimiter::default()),
    ));
    w.bind("aauth:assistant@agent.example", "alice").await;
    let assistant = (&w.agent, w.agent_token.as_str());
    for n in 0..3 {
        let (s, _, json) = ask(&w, assistant, NOW).await;
        assert_eq!(s, StatusCode::OK, "request {n}: {json}");
    }
    let (s, headers, json) = ask(&w, assistant, NOW).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{json}"
    );
    let wait: u64 = header_of(&headers, "retry-after").parse().unwrap();
    assert_eq!(wait, 20, "one request in every 20 s after the burst");
    // Another agent has its own budget.
    let (key, token) = helper(&w).await;
    for n in 0..3 {
        let (s, _, json) = ask(&w, (&key, &token), NOW).await;
        assert_eq!(s, StatusCode::OK, "the helper's request {n}: {json}");
    }
    // Only the paths the rule names are counted.
    let (s, _, json) = w
        .post_full(
            "/permission",
            serde_json::json!({"action": "read", "description": "read a file"}),
        )
        .await;
    assert_ne!(s, StatusCode::TOO_MANY_REQUESTS, "{json}");
    // Honouring Retry-After succeeds; one second less does not.
    tokio::time::advance(Duration::from_secs(wait - 1)).await;
    let (s, _, _) = ask(&w, assistant, NOW.plus(wait - 1)).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    tokio::time::advance(Duration::from_secs(1)).await;
    let (s, _, json) = ask(&w, assistant, NOW.plus(wait)).await;
    assert_eq!(s, StatusCode::OK, "{json}");
}

/// Requests that claim the assistant without proving it (its token under another key,
/// or a token for it that its provider never signed) are refused at the signature and
/// counted against nobody: the assistant keeps its whole burst.
#[tokio::test(start_paused = true)]
async fn an_unverified_request_claiming_an_agent_spends_nothing_of_its_budget() {
    let mut w = world();
    w.ps =
        w.ps.rate_limits(per_agent("/", 2, Arc::new(MemoryRateLimiter::default())));
    w.bind("aauth:assistant@agent.example", "alice").await;
    let mallory = PrivateKey::ed25519_from_seed(&[66; 32]);
    let forged_provider = PrivateKey::ed25519_from_seed(&[67; 32]);
    let forged = agent_token(
        &forged_provider,
        "aauth:assistant@agent.example",
        &mallory,
        1800,
    );
    for _ in 0..5 {
        // The assistant's own token, but mallory's signature.
        let (s, _, _) = ask(&w, (&mallory, &w.agent_token), NOW).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        // A token naming the assistant, from a key its provider does not publish.
        let (s, _, _) = ask(&w, (&mallory, &forged), NOW).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    // A replay of the assistant's own signed request is refused before it counts too.
    let body = serde_json::json!({"resource": "https://resource.example"});
    let req = aauth_test_support::request::json(
        "POST",
        &format!("https://ps.example{PERSON_TOKEN_PATH}"),
        Some(&body),
    );
    let (parts, bytes) = aauth_test_support::request::signed_unique(
        req,
        &w.agent,
        &Scheme::jwt(w.agent_token.clone()),
        NOW,
    )
    .into_parts();
    let first = w.ps.handle(&parts, &bytes, NOW).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    for _ in 0..3 {
        let again = w.ps.handle(&parts, &bytes, NOW).await.unwrap();
        assert_eq!(again.status(), StatusCode::UNAUTHORIZED, "a replay");
    }
    // One of two spent (the first of the replayed request), one left.
    let (s, _, json) = ask(&w, (&w.agent, &w.agent_token), NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let (s, _, _) = ask(&w, (&w.agent, &w.agent_token), NOW).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
}

/// A poll of a pending URL over the agent's limit is told to slow down (draft -11's
/// polling error `slow_down`, 429 with `Retry-After`); the request waits on, and the
/// agent's poll after the wait is answered as before.
#[tokio::test(start_paused = true)]
async fn polling_too_often_is_slow_down() {
    let mut w = world_with(Some(Arc::new(AlwaysAsk)));
    w.ps =
        w.ps.consent_pages(Duration::from_secs(600))
            .rate_limits(per_agent(
                "/pending/",
                1,
                Arc::new(MemoryRateLimiter::default()),
            ));
    let (s, headers, json) = w
        .post_full(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example", "capabilities": ["interaction"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let location = header_of(&headers, "location");
    let _ = code_of(&headers);
    let (s, _, json) = poll(
        &w,
        "GET",
        &location,
        &w.agent,
        &w.agent_token,
        Some("wait=0"),
        NOW,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let (s, headers, json) = poll(
        &w,
        "GET",
        &location,
        &w.agent,
        &w.agent_token,
        Some("wait=0"),
        NOW,
    )
    .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("slow_down")),
        "{json}"
    );
    assert_eq!(header_of(&headers, "retry-after"), "60");
    tokio::time::advance(Duration::from_secs(60)).await;
    let (s, _, json) = poll(
        &w,
        "GET",
        &location,
        &w.agent,
        &w.agent_token,
        Some("wait=0"),
        NOW.plus(60),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
}

/// The limits and the throttle of one Person Server in a Redis that goes away mid-way:
/// while it cannot answer, a request by a rate-limited agent is refused `503` (never
/// admitted uncounted) and a sign-in with the right password is refused `503` (never
/// checked unthrottled); once Redis answers again, both go through.
#[tokio::test]
async fn with_its_redis_cut_requests_and_guesses_are_refused_not_admitted() {
    let Some(url) = redis_url("with_its_redis_cut_requests_and_guesses_are_refused_not_admitted")
    else {
        return;
    };
    let cut = Cuttable::to(&url, 6379).await;
    let redis =
        Redis::connect(&RedisConfig::new(cut.url(&url)).prefix(format!("{}:", unique_name("ps"))))
            .await
            .unwrap();
    let mut w = world();
    w.ps =
        w.ps.consent_pages(Duration::from_secs(600))
            .throttle(Arc::new(RedisThrottle::new(
                redis.clone(),
                ThrottlePolicy::default(),
            )))
            .rate_limits(per_agent(
                PERSON_TOKEN_PATH,
                100,
                Arc::new(RedisRateLimiter::new(redis)),
            ));
    w.ps.set_password("alice", "alice's password")
        .await
        .unwrap();
    w.bind("aauth:assistant@agent.example", "alice").await;
    let assistant = (&w.agent, w.agent_token.as_str());
    let (s, _, json) = ask(&w, assistant, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let page = Browser::default()
        .sign_in(&w, "ABCD-EFGH", "alice", "a guess")
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNAUTHORIZED,
        "a wrong guess, counted"
    );

    cut.cut();
    let (s, headers, json) = ask(&w, assistant, NOW).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{json}");
    assert_eq!(header_of(&headers, "retry-after"), "1");
    let page = Browser::default()
        .sign_in(&w, "ABCD-EFGH", "alice", "alice's password")
        .await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the right password, not checked while the throttle cannot answer: {}",
        page.html
    );
    // Said to the person as a page, with the wait.
    assert!(
        page.html
            .contains("could not answer just now (503). Nothing was changed"),
        "{}",
        page.html
    );
    assert!(
        header_of(&page.headers, "retry-after")
            .parse::<u64>()
            .is_ok_and(|s| s >= 1)
    );

    cut.restore();
    let mut signed_in = None;
    for _ in 0..20 {
        let page = Browser::default()
            .sign_in(&w, "ABCD-EFGH", "alice", "alice's password")
            .await;
        if page.status != StatusCode::SERVICE_UNAVAILABLE {
            signed_in = Some(page.status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(signed_in, Some(StatusCode::SEE_OTHER));
    let (s, _, json) = ask(&w, assistant, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
}

/// A sub-agent's own signature is refused here (its parent asks for it): the refusal
/// comes after the count, which is the sub-agent's, not its parent's.
#[tokio::test(start_paused = true)]
async fn a_sub_agent_signing_spends_its_own_budget_not_its_parents() {
    let mut w = world();
    w.ps =
        w.ps.rate_limits(per_agent("/", 1, Arc::new(MemoryRateLimiter::default())));
    w.bind("aauth:assistant@agent.example", "alice").await;
    let sub_key = PrivateKey::ed25519_from_seed(&[42; 32]);
    let sub = aauth_tokens::AgentTokenBuilder::new(
        aauth_test_support::id("https://agent.example"),
        aauth_tokens::AgentId::parse("aauth:assistant+search@agent.example").unwrap(),
        sub_key.public_key(),
    )
    .parent_agent(aauth_tokens::AgentId::parse("aauth:assistant@agent.example").unwrap())
    .sign(&w.provider, "key-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    for _ in 0..3 {
        let (s, _, _) = ask(&w, (&sub_key, &sub), NOW).await;
        assert_ne!(s, StatusCode::OK);
    }
    let (s, _, json) = ask(&w, (&w.agent, &w.agent_token), NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
}
