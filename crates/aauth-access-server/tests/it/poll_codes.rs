//! What a poll of a pending URL is told when the request, decided again, fails a check
//! of the tokens it came with: only the polling codes (draft -11 §11.9.4 Polling Error
//! Codes: `denied`, `expired`, `revoked`, `server_error`, …), never the token
//! endpoint's, whose parameters a poll does not send. An `updated_request`'s own tokens
//! are the exception: they are refused with the token endpoint's codes, and the request
//! waits as it was.

use std::sync::atomic::{AtomicBool, Ordering};

use aauth_access_server::{AsStore, MemoryStore, PENDING_PATH, WaitingPut};
use aauth_test_support::agent_id;
use aauth_test_support::tokens::ASSISTANT;

use super::*;

/// The world's Access Server deciding with `ApproverFirst`: each request waits for an
/// approval out of band.
fn approving_world() -> World {
    let mut w = world();
    w.server = w.server.policy(Arc::new(ApproverFirst));
    w
}

/// `request` deferred for an approval, and approved at `NOW`: its pending URL, decided
/// again at its next poll.
async fn approved(w: &World, request: &serde_json::Value) -> String {
    let (location, id) = w.deferred(request).await;
    assert!(w.server.decide_approval(&id, true, NOW).await.unwrap());
    location
}

/// ps.example's poll of `location` at `at` is answered `status` with `error`, its
/// `detail` naming `names`; the request ended with it (the next poll is `410`), and
/// nothing was issued.
async fn ends_with(
    w: &World,
    location: &str,
    at: UnixTime,
    (status, error, names): (StatusCode, &str, &str),
    case: &str,
) {
    let (s, json) = w.get_at(location, at).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (status, Some(error)),
        "{case}: {json}"
    );
    assert!(
        json["detail"].as_str().is_some_and(|d| d.contains(names)),
        "{case}: {json}"
    );
    let (s, json) = w.get_at(location, at).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::GONE, Some("invalid_code")),
        "{case}: {json}"
    );
    assert_eq!(w.server.issued().await.unwrap(), 0, "{case}");
}

/// An agent token of the world's provider for `agent` bound to `key`, living `lifetime`
/// seconds from `NOW`.
fn agent_token(w: &World, agent: &str, key: &PrivateKey, lifetime: u64) -> String {
    aauth_test_support::tokens::agent(agent, key.public_key())
        .lifetime(Duration::from_secs(lifetime))
        .sign(&w.provider, "key-1", NOW, &mut OsRandom)
        .unwrap()
        .token
}

/// The request of a sub-agent (its key `sub`) whose sub-agent token lives 60 seconds:
/// the assistant's agent token, and a person token and resource token bound to the
/// sub-agent's key.
fn subagent_request(w: &World) -> serde_json::Value {
    let sub = PrivateKey::ed25519_from_seed(&[11; 32]);
    let subagent_token =
        aauth_test_support::tokens::agent("aauth:assistant+helper@agent.example", sub.public_key())
            .parent_agent(agent_id(ASSISTANT))
            .lifetime(Duration::from_secs(60))
            .sign(&w.provider, "key-1", NOW, &mut OsRandom)
            .unwrap()
            .token;
    let person = PersonTokenBuilder::new(
        id("https://ps.example"),
        id("https://resource.example"),
        "alice-at-resource",
        sub.public_key(),
    )
    .lifetime(Duration::from_secs(600))
    .sign(&w.ps, "ps-1", NOW, &mut OsRandom)
    .unwrap();
    let rt = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://as.example"),
        id("https://ps.example"),
        "alice-at-resource",
        person.jti,
        sub.public_key(),
        "calendar.read",
    )
    .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    serde_json::json!({
        "resource_token": rt,
        "agent_token": agent_token(w, ASSISTANT, &w.agent, 3600),
        "presented_token": person.token,
        "subagent_token": subagent_token,
    })
}

/// Draft -11 §11.9.4: a token the request came with that expired while it waited ends
/// it `408 expired` at its next poll, the `detail` naming the token (§10.1.1: so does a
/// pending request whose upstream token expires), not the token endpoint's
/// `expired_<parameter>_token` (or `invalid_request`, for the agent token).
#[tokio::test]
async fn a_token_that_expired_while_the_request_waited_is_told_expired() {
    let later = NOW.plus(120);
    let w = approving_world();
    let t = w.tokens(600);
    let short_rt = w.resource_token(&t, |b| b.lifetime(Duration::from_secs(60)));
    let short_person = w.tokens(60);
    let upstream = PersonTokenBuilder::new(
        id("https://ps.example"),
        id("https://agent.example"),
        "alice-at-intermediary",
        &PrivateKey::ed25519_from_seed(&[9; 32]).public_key().clone(),
    )
    .lifetime(Duration::from_secs(60))
    .sign(&w.ps, "ps-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    let cases = [
        (
            "resource_token",
            serde_json::json!({"resource_token": short_rt, "agent_token": t.agent, "presented_token": t.person}),
        ),
        (
            "presented_token",
            serde_json::json!({"resource_token": w.resource_token(&short_person, |b| b), "agent_token": t.agent, "presented_token": short_person.person}),
        ),
        (
            "agent_token",
            serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": agent_token(&w, ASSISTANT, &w.agent, 60), "presented_token": t.person}),
        ),
        ("subagent_token", subagent_request(&w)),
        (
            "upstream_token",
            serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person, "upstream_token": upstream}),
        ),
    ];
    for (token, request) in cases {
        let w = approving_world();
        let location = approved(&w, &request).await;
        ends_with(
            &w,
            &location,
            later,
            (StatusCode::REQUEST_TIMEOUT, "expired", token),
            token,
        )
        .await;
    }
}

/// At the token endpoint an expired agent token is still `invalid_request` (draft -11
/// removed `expired_agent_token`; draft issue #199).
#[tokio::test]
async fn an_expired_agent_token_at_the_token_endpoint_is_invalid_request() {
    let w = world();
    let t = w.tokens(600);
    let expired = aauth_test_support::tokens::assistant(w.agent.public_key())
        .lifetime(Duration::from_secs(60))
        .sign(&w.provider, "key-1", NOW.minus(120), &mut OsRandom)
        .unwrap()
        .token;
    let (s, json) = w
        .ask(&serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": expired, "presented_token": t.person}))
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{json}"
    );
    assert!(
        json["detail"]
            .as_str()
            .is_some_and(|d| d.contains("agent_token")),
        "{json}"
    );
}

/// Issuer keys from which one issuer's can be withdrawn: it then publishes no key under
/// the `kid` its tokens name.
struct Withdrawable {
    inner: Arc<dyn aauth_tokens::IssuerKeyResolver>,
    issuer: &'static str,
    withdrawn: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl aauth_tokens::IssuerKeyResolver for Withdrawable {
    async fn resolve(
        &self,
        req: &aauth_tokens::KeyRequest<'_>,
    ) -> Result<aauth_keys::PublicKey, aauth_tokens::ResolveError> {
        if req.iss.as_str() == self.issuer && self.withdrawn.load(Ordering::SeqCst) {
            return Err(aauth_tokens::ResolveError::UnknownKey {
                kid: req.kid.to_owned(),
            });
        }
        self.inner.resolve(req).await
    }
}

/// A token the request came with that no longer passes its checks when it is decided
/// again (its issuer withdrew the key it was signed with) ends it `403 denied` at its
/// poll, the `detail` naming the token and the check, not `invalid_<parameter>_token`.
#[tokio::test]
async fn a_token_that_no_longer_verifies_at_a_poll_is_denied() {
    for (issuer, token) in [
        ("https://resource.example", "resource_token"),
        ("https://agent.example", "agent_token"),
    ] {
        let withdrawn = Arc::new(AtomicBool::new(false));
        let switch = Arc::clone(&withdrawn);
        let mut w = world_with_keys(move |inner| {
            Arc::new(Withdrawable {
                inner,
                issuer,
                withdrawn: switch,
            })
        });
        w.server = w.server.policy(Arc::new(ApproverFirst));
        let t = w.tokens(600);
        let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
        let location = approved(&w, &request).await;
        withdrawn.store(true, Ordering::SeqCst);
        ends_with(
            &w,
            &location,
            NOW,
            (StatusCode::FORBIDDEN, "denied", token),
            token,
        )
        .await;
    }
}

/// A request that cannot be decided again for this server's own reasons is answered in
/// a polling code, not the token endpoint's: its clock went back behind a token's `iat`
/// (`clock_skew` there) is `503 temporarily_unavailable`, the request kept and granted
/// once the clock is right again; the request it keeps no longer reading as one
/// (`invalid_request` there) is `500 server_error`, and ends it.
#[tokio::test]
async fn this_servers_own_failure_at_a_poll_is_server_error() {
    let w = approving_world();
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let location = approved(&w, &request).await;
    // Two minutes back: the tokens, issued at NOW (the agent token at NOW - 5), are
    // dated beyond the 60 s skew ahead of it.
    for _ in 0..2 {
        let (s, json) = w.get_at(&location, NOW.minus(120)).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("temporarily_unavailable")
            ),
            "{json}"
        );
        assert!(
            json["detail"].as_str().is_some_and(|d| d.contains("clock")),
            "{json}"
        );
    }
    assert_eq!(w.server.issued().await.unwrap(), 0);
    let (s, json) = w.get_at(&location, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(w.server.issued().await.unwrap(), 1);

    let store = Arc::new(MemoryStore::default());
    let mut w = approving_world();
    w.server = w.server.store(store.clone());
    let location = approved(&w, &request).await;
    let id = location.trim_start_matches(PENDING_PATH);
    let mut record = store.waiting(id, NOW).await.unwrap().unwrap();
    let mut data: serde_json::Value = serde_json::from_str(&record.data).unwrap();
    data["body"] = "{}".into();
    record.data = data.to_string();
    assert_eq!(
        store.put_waiting(record, NOW).await.unwrap(),
        WaitingPut::Stored
    );
    ends_with(
        &w,
        &location,
        NOW,
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "waiting request",
        ),
        "invalid_request",
    )
    .await;
}

/// Asks to narrow a request for write access; grants the rest.
struct NarrowToRead;
impl AccessPolicy for NarrowToRead {
    fn decide(&self, r: &AccessRequest<'_>) -> AccessDecision {
        if r.scope.is_some_and(|s| s.contains("calendar.write")) {
            AccessDecision::RequireClarification {
                question: "Only `calendar.read` is offered here.".to_owned(),
                options: Vec::new(),
            }
        } else {
            AccessDecision::Grant
        }
    }
}

/// AS-16: an `updated_request` whose own resource or presented token is refused (expired,
/// or not the pair the other names) is refused with the token endpoint's code, as a
/// token request carrying it would be, and changes nothing: the request still waits for
/// an answer, and a good one is granted.
#[tokio::test]
async fn an_updated_request_with_refused_tokens_leaves_the_request_waiting() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(NarrowToRead));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (location, _) = w.deferred(&request).await;
    let narrower = |w: &World, t: &Tokens| {
        ResourceTokenBuilder::new(
            id("https://resource.example"),
            id("https://as.example"),
            id("https://ps.example"),
            "alice-at-resource",
            t.person_jti.clone(),
            w.agent.public_key(),
            "calendar.read",
        )
    };
    let expired = narrower(&w, &t)
        .lifetime(Duration::from_secs(60))
        .sign(&w.rs, "rs-1", NOW.minus(120), &mut OsRandom)
        .unwrap()
        .token;
    let another_person = w.tokens(600);
    let good = narrower(&w, &t)
        .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
        .unwrap()
        .token;
    for (rt, pt, error) in [
        (&expired, &t.person, "expired_resource_token"),
        (&good, &another_person.person, "invalid_resource_token"),
    ] {
        let (s, _, json) = w
            .post_path(
                &location,
                &serde_json::json!({"action": "updated_request", "resource_token": rt, "presented_token": pt}),
                "https://ps.example",
                &w.ps,
            )
            .await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(error)),
            "{json}"
        );
        let (s, h, json) = w.get_full(&location).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{error}: still waiting: {json}");
        assert_eq!(h["aauth-requirement"], "requirement=clarification");
    }
    let (s, _, json) = w
        .post_path(
            &location,
            &serde_json::json!({"action": "updated_request", "resource_token": good, "presented_token": t.person}),
            "https://ps.example",
            &w.ps,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(w.server.issued().await.unwrap(), 1);
}
