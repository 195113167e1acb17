//! Rate limits by who a request is from, counted once that is verified: each agent (its
//! agent token verified and the resource token bound to its key) and each Person Server
//! (its signature verified). A burst over a limit is `429` with `Retry-After` for that
//! agent or Person Server alone, honouring it succeeds, a poll is told `slow_down`, and
//! requests that merely claim an agent or a Person Server spend nothing of its budget.

use aauth_metadata::rate::{MemoryRateLimiter, RateLimit, RateLimits, RateScope, Rule};
use aauth_tokens::{AgentId, AgentTokenBuilder};

use super::*;

/// Each `scope` (agent or Person Server): `requests` a minute on the paths under `path`,
/// all at once if it likes.
fn limits(scope: RateScope, path: &str, requests: u32) -> Arc<RateLimits> {
    Arc::new(RateLimits::new(
        vec![Rule {
            scope,
            path: path.to_owned(),
            limit: RateLimit::new(requests, Duration::from_secs(60), requests).unwrap(),
        }],
        Arc::new(MemoryRateLimiter::default()),
    ))
}

/// The three tokens of a request for agent `name` holding `key`, its provider's token
/// signed with `provider`, issued at `at`.
fn request_for(
    w: &World,
    name: &str,
    key: &PrivateKey,
    provider: &PrivateKey,
    at: UnixTime,
) -> serde_json::Value {
    let agent = AgentTokenBuilder::new(
        id("https://agent.example"),
        AgentId::parse(name).unwrap(),
        key.public_key(),
    )
    .sign(provider, "key-1", at.minus(5), &mut OsRandom)
    .unwrap()
    .token;
    let person = PersonTokenBuilder::new(
        id("https://ps.example"),
        id("https://resource.example"),
        "alice-at-resource",
        key.public_key(),
    )
    .sign(&w.ps, "ps-1", at, &mut OsRandom)
    .unwrap();
    let resource = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://as.example"),
        id("https://ps.example"),
        "alice-at-resource",
        person.jti.clone(),
        key.public_key(),
        "calendar.read",
    )
    .sign(&w.rs, "rs-1", at, &mut OsRandom)
    .unwrap()
    .token;
    serde_json::json!({"resource_token": resource, "agent_token": agent, "presented_token": person.token})
}

/// A request signed as ps.example with `key` at `at` (with a nonce), answered at `at`:
/// status, headers, body.
async fn send_at(
    w: &World,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    key: &PrivateKey,
    at: UnixTime,
) -> (StatusCode, http::HeaderMap, serde_json::Value) {
    let req = request::json(method, &format!("https://as.example{path}"), body);
    let scheme = Scheme::JwksUri {
        id: "https://ps.example".to_owned(),
        dwk: "aauth-person.json".to_owned(),
        kid: "ps-1".to_owned(),
    };
    let (parts, body) = request::signed_unique(req, key, &scheme, at).into_parts();
    let resp = served(w.server.handle(&parts, &body, at).await);
    (
        resp.status(),
        resp.headers().clone(),
        serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null),
    )
}

/// A token request from ps.example for `name` (holding `key`) at `at`.
async fn ask_for(
    w: &World,
    name: &str,
    key: &PrivateKey,
    at: UnixTime,
) -> (StatusCode, http::HeaderMap, serde_json::Value) {
    let body = request_for(w, name, key, &w.provider, at);
    send_at(w, "POST", AUTH_TOKEN_PATH, Some(&body), &w.ps, at).await
}

const ASSISTANT: &str = "aauth:assistant@agent.example";

/// The limiter's clock is Tokio's (paused here), the server's the `now` each request is
/// given: both are moved together.
#[tokio::test(start_paused = true)]
async fn a_burst_for_one_agent_is_limited_and_another_agent_is_not() {
    let mut w = world();
    w.server = w
        .server
        .rate_limits(limits(RateScope::Agent, AUTH_TOKEN_PATH, 3));
    let assistant = &w.agent;
    for n in 0..3 {
        let (s, _, json) = ask_for(&w, ASSISTANT, assistant, NOW).await;
        assert_eq!(s, StatusCode::OK, "request {n}: {json}");
    }
    let (s, headers, json) = ask_for(&w, ASSISTANT, assistant, NOW).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{json}"
    );
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(wait, 20, "one request in every 20 s after the burst");
    let refused = aauth_metadata::audit::AuditQuery::default()
        .action(aauth_metadata::audit::AuditAction::Refused);
    assert!(
        w.server.audit(&refused).await.unwrap().events.is_empty(),
        "a request over its limit writes no audit event"
    );
    // Another agent (of the same Person Server) has its own budget.
    let helper = PrivateKey::ed25519_from_seed(&[44; 32]);
    for n in 0..3 {
        let (s, _, json) = ask_for(&w, "aauth:helper@agent.example", &helper, NOW).await;
        assert_eq!(s, StatusCode::OK, "the helper's request {n}: {json}");
    }
    // Honouring Retry-After succeeds; one second less does not.
    tokio::time::advance(Duration::from_secs(wait - 1)).await;
    let (s, _, _) = ask_for(&w, ASSISTANT, assistant, NOW.plus(wait - 1)).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    tokio::time::advance(Duration::from_secs(1)).await;
    let (s, _, json) = ask_for(&w, ASSISTANT, assistant, NOW.plus(wait)).await;
    assert_eq!(s, StatusCode::OK, "{json}");
}

/// Requests that name the assistant without showing they are for it are refused before
/// they count: an agent token its provider never signed, the assistant's genuine agent
/// token with a resource token bound to another key (a copy of the token is no proof:
/// every resource the assistant calls sees it), or a signature that is not the Person
/// Server's. The assistant keeps its whole burst.
#[tokio::test(start_paused = true)]
async fn an_unverified_request_naming_an_agent_spends_nothing_of_its_budget() {
    let mut w = world();
    w.server = w.server.rate_limits(limits(RateScope::Agent, "/", 2));
    let mallory = PrivateKey::ed25519_from_seed(&[66; 32]);
    let forger = PrivateKey::ed25519_from_seed(&[67; 32]);
    let genuine = request_for(&w, ASSISTANT, &w.agent, &w.provider, NOW);
    let with_mallorys_key = request_for(&w, ASSISTANT, &mallory, &w.provider, NOW);
    for _ in 0..5 {
        let forged = request_for(&w, ASSISTANT, &mallory, &forger, NOW);
        let (s, _, json) = send_at(&w, "POST", AUTH_TOKEN_PATH, Some(&forged), &w.ps, NOW).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{json}");
        let mut stolen = with_mallorys_key.clone();
        stolen["agent_token"] = genuine["agent_token"].clone();
        let (s, _, json) = send_at(&w, "POST", AUTH_TOKEN_PATH, Some(&stolen), &w.ps, NOW).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_resource_token")),
            "{json}"
        );
        let (s, _, _) = send_at(&w, "POST", AUTH_TOKEN_PATH, Some(&genuine), &mallory, NOW).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    for n in 0..2 {
        let (s, _, json) = ask_for(&w, ASSISTANT, &w.agent, NOW).await;
        assert_eq!(s, StatusCode::OK, "request {n}: {json}");
    }
    let (s, _, _) = ask_for(&w, ASSISTANT, &w.agent, NOW).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
}

/// Always asks an approver (a request waits at its pending URL).
struct NeedsApproval;
impl AccessPolicy for NeedsApproval {
    fn decide(&self, _: &AccessRequest<'_>) -> AccessDecision {
        AccessDecision::RequireApproval
    }
}

/// Each Person Server's requests are counted once its signature verified: its token
/// requests past the limit get `429 rate_limited`, its polls `429 slow_down` (draft
/// -11's polling error), both with `Retry-After`; a request with a signature that is not
/// the Person Server's spends nothing; honouring Retry-After succeeds.
#[tokio::test(start_paused = true)]
async fn a_person_server_is_counted_on_its_requests_and_told_to_slow_down_its_polls() {
    let mut w = world();
    w.server = w
        .server
        .policy(Arc::new(NeedsApproval))
        .rate_limits(Arc::new(RateLimits::new(
            vec![
                Rule {
                    scope: RateScope::PersonServer,
                    path: AUTH_TOKEN_PATH.to_owned(),
                    limit: RateLimit::new(2, Duration::from_secs(60), 2).unwrap(),
                },
                Rule {
                    scope: RateScope::PersonServer,
                    path: "/pending/".to_owned(),
                    limit: RateLimit::new(1, Duration::from_secs(10), 1).unwrap(),
                },
            ],
            Arc::new(MemoryRateLimiter::default()),
        )));
    let mallory = PrivateKey::ed25519_from_seed(&[66; 32]);
    for _ in 0..5 {
        let body = request_for(&w, ASSISTANT, &w.agent, &w.provider, NOW);
        let (s, _, _) = send_at(&w, "POST", AUTH_TOKEN_PATH, Some(&body), &mallory, NOW).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "not ps.example's signature");
    }
    let (s, headers, json) = ask_for(&w, ASSISTANT, &w.agent, NOW).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let location = headers["location"].to_str().unwrap().to_owned();
    let path = location
        .strip_prefix("https://as.example")
        .unwrap_or(&location)
        .to_owned();
    let (s, _, json) = ask_for(&w, ASSISTANT, &w.agent, NOW).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let (s, headers, json) = ask_for(&w, ASSISTANT, &w.agent, NOW).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{json}"
    );
    assert_eq!(headers["retry-after"], "30");
    // The polls have their own rule: one in ten seconds.
    let (s, _, json) = send_at(&w, "GET", &path, None, &w.ps, NOW).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let (s, headers, json) = send_at(&w, "GET", &path, None, &w.ps, NOW).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("slow_down")),
        "{json}"
    );
    assert_eq!(headers["retry-after"], "10");
    tokio::time::advance(Duration::from_secs(10)).await;
    let (s, _, json) = send_at(&w, "GET", &path, None, &w.ps, NOW.plus(10)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    tokio::time::advance(Duration::from_secs(20)).await;
    let (s, _, json) = ask_for(&w, ASSISTANT, &w.agent, NOW.plus(30)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
}
