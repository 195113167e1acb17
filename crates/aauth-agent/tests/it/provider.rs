//! The agent provider mints only for enrolled keys and its own agents' sub-agents.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aauth_agent::{
    AGENT_TOKEN_PATH, Agent, AgentError, AgentProvider, HttpTokenSource, ProviderError,
    REFRESH_MARGIN, SUBAGENT_TOKEN_PATH, TokenSource,
};
use aauth_headers::Scheme;
use aauth_keys::time::UnixTime;
use aauth_keys::{PrivateKey, Signer};
use aauth_signing::{hwk_scheme, sign_request};
use aauth_tokens::{AgentClaims, AgentId, Unverified, Validation};
use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;

use crate::support::{NOW, id, parties};

fn provider_handler(p: Arc<AgentProvider>) -> crate::support::Handler {
    Arc::new(move |req: http::Request<Bytes>| {
        let p = p.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            p.handle(&parts, &body, NOW).await.unwrap_or_else(|| {
                let mut r = http::Response::new(Bytes::new());
                *r.status_mut() = StatusCode::NOT_FOUND;
                r
            })
        })
    })
}

fn post(path: &str, body: &str, signer: &PrivateKey, scheme: &Scheme) -> http::Request<Vec<u8>> {
    let mut req = http::Request::post(format!("https://agent.example{path}"))
        .header("content-type", "application/json")
        .body(body.as_bytes().to_vec())
        .unwrap();
    sign_request(&mut req, signer, scheme, NOW).unwrap();
    req
}

async fn call(p: &AgentProvider, req: http::Request<Vec<u8>>) -> (StatusCode, serde_json::Value) {
    let (parts, body) = aauth_test_support::request::to_server(req).into_parts();
    let resp = p.handle(&parts, &body, NOW).await.unwrap();
    let json = serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null);
    (resp.status(), json)
}

/// The token's claims, verified under the provider's published JWKS.
fn verified(p: &AgentProvider, token: &str) -> AgentClaims {
    let key = aauth_test_support::published::published_key(p.published(), "key-1");
    let v = Validation::new(NOW);
    Unverified::<AgentClaims>::decode(token, &v)
        .unwrap()
        .finish(&key, &v)
        .unwrap()
        .claims
}

#[test]
fn the_metadata_says_what_the_provider_verifies() {
    let w = parties();
    let doc = w
        .provider
        .published()
        .respond(&http::Method::GET, "/.well-known/aauth-agent.json")
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(doc.body()).unwrap();
    // Draft -11 §Common Metadata: exactly the algorithms its verifiers accept.
    assert_eq!(
        json["accept_signature_algs"],
        serde_json::json!(["Ed25519", "ES256"])
    );
}

#[tokio::test]
async fn an_agent_token_only_for_an_enrolled_key_of_an_own_agent() {
    let w = parties();
    let p = &w.provider;
    let stranger = PrivateKey::ed25519_from_seed(&[50; 32]);
    assert!(matches!(
        p.issue(&w.agent_id, stranger.public_key(), NOW),
        Err(ProviderError::NotEnrolled { .. })
    ));
    let foreign = AgentId::parse("aauth:assistant@other.example").unwrap();
    assert!(matches!(
        p.enroll(&foreign, stranger.public_key(), None),
        Err(ProviderError::ForeignAgent { .. })
    ));
    // A sub-agent's name is not enrolled as an agent of its own: the parent's sub-agent
    // of that name could not be told from it.
    let squatter = AgentId::parse("aauth:assistant+bot@agent.example").unwrap();
    assert!(matches!(
        p.enroll(&squatter, stranger.public_key(), None),
        Err(ProviderError::Subagent { .. })
    ));
    assert!(matches!(
        p.issue(&squatter, stranger.public_key(), NOW),
        Err(ProviderError::NotEnrolled { .. })
    ));

    // Over HTTP: unsigned → 401; signed by a stranger's key → 403; by the enrolled key → 200.
    let body = r#"{"agent":"aauth:assistant@agent.example"}"#;
    let unsigned = http::Request::post(format!("https://agent.example{AGENT_TOKEN_PATH}"))
        .header("content-type", "application/json")
        .body(body.as_bytes().to_vec())
        .unwrap();
    assert_eq!(call(p, unsigned).await.0, StatusCode::UNAUTHORIZED);
    let (s, json) = call(
        p,
        post(
            AGENT_TOKEN_PATH,
            body,
            &stranger,
            &hwk_scheme(stranger.public_key()),
        ),
    )
    .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("unauthorized_agent"))
    );
    let (s, json) = call(
        p,
        post(
            AGENT_TOKEN_PATH,
            body,
            &w.agent_key,
            &hwk_scheme(w.agent_key.public_key()),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(json["expires_in"], 3600);
    let claims = verified(p, json["agent_token"].as_str().unwrap());
    assert_eq!(claims.sub, w.agent_id);
    assert_eq!(claims.ps, Some(id("https://ps.example")));
    assert_eq!(claims.cnf.jwk.x, w.agent_key.public_key().to_jwk().x);

    // The same signed request again is a replay: refused, nothing minted.
    let (s, json) = call(
        p,
        post(
            AGENT_TOKEN_PATH,
            body,
            &w.agent_key,
            &hwk_scheme(w.agent_key.public_key()),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{json}");
    assert!(
        json["detail"].as_str().unwrap().contains("replay"),
        "{json}"
    );

    // After unenrolment, nothing more (a new request: another body, another signature).
    p.unenroll(&w.agent_id, w.agent_key.public_key());
    let (s, _) = call(
        p,
        post(
            AGENT_TOKEN_PATH,
            &format!("{body} "),
            &w.agent_key,
            &hwk_scheme(w.agent_key.public_key()),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sub_agent_tokens_one_level_under_the_parents_token() {
    let w = parties();
    let p = &w.provider;
    let parent = p.issue(&w.agent_id, w.agent_key.public_key(), NOW).unwrap();
    let sub_key = PrivateKey::ed25519_from_seed(&[60; 32]);
    let jwk = sub_key.public_key().to_jwk().to_json();
    let body = format!(r#"{{"agent":"aauth:assistant+search@agent.example","jwk":{jwk}}}"#);

    let (s, json) = call(
        p,
        post(
            SUBAGENT_TOKEN_PATH,
            &body,
            &w.agent_key,
            &Scheme::jwt(parent.token.clone()),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let sub_token = json["agent_token"].as_str().unwrap().to_owned();
    let claims = verified(p, &sub_token);
    assert_eq!(claims.sub.as_str(), "aauth:assistant+search@agent.example");
    assert_eq!(claims.parent_agent.as_ref(), Some(&w.agent_id));
    assert_eq!(claims.iss, *p.id());
    assert!(claims.exp <= parent.exp);

    // The sub-agent cannot delegate further.
    let deeper = format!(r#"{{"agent":"aauth:assistant+other@agent.example","jwk":{jwk}}}"#);
    let (s, json) = call(
        p,
        post(
            SUBAGENT_TOKEN_PATH,
            &deeper,
            &sub_key,
            &Scheme::jwt(sub_token),
        ),
    )
    .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("invalid_subagent_token")),
        "{json}"
    );
    // A name not under the parent.
    let other = format!(r#"{{"agent":"aauth:someone@agent.example","jwk":{jwk}}}"#);
    let (s, _) = call(
        p,
        post(
            SUBAGENT_TOKEN_PATH,
            &other,
            &w.agent_key,
            &Scheme::jwt(parent.token.clone()),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A private key where a public one belongs.
    let private = serde_json::json!({"kty":"OKP","crv":"Ed25519","x": sub_key.public_key().to_jwk().x, "d":"AAAA"});
    let with_d = format!(r#"{{"agent":"aauth:assistant+search@agent.example","jwk":{private}}}"#);
    let (s, _) = call(
        p,
        post(
            SUBAGENT_TOKEN_PATH,
            &with_d,
            &w.agent_key,
            &Scheme::jwt(parent.token.clone()),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Only under an agent token of this provider: a bare key is an unsupported scheme.
    let (s, _) = call(
        p,
        post(
            SUBAGENT_TOKEN_PATH,
            &body,
            &w.agent_key,
            &hwk_scheme(w.agent_key.public_key()),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let rogue = AgentProvider::new(
        id("https://agent.example"),
        Arc::new(PrivateKey::ed25519_from_seed(&[70; 32])),
        "key-1",
    )
    .unwrap();
    rogue
        .enroll(&w.agent_id, w.agent_key.public_key(), None)
        .unwrap();
    let forged = rogue
        .issue(&w.agent_id, w.agent_key.public_key(), NOW)
        .unwrap();
    let (s, _) = call(
        p,
        post(
            SUBAGENT_TOKEN_PATH,
            &body,
            &w.agent_key,
            &Scheme::jwt(forged.token),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Once the parent's key is unenrolled, its token (still unexpired) delegates nothing.
    p.unenroll(&w.agent_id, w.agent_key.public_key());
    let later = format!(r#"{{"agent":"aauth:assistant+later@agent.example","jwk":{jwk}}}"#);
    let (s, json) = call(
        p,
        post(
            SUBAGENT_TOKEN_PATH,
            &later,
            &w.agent_key,
            &Scheme::jwt(parent.token.clone()),
        ),
    )
    .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("unauthorized_agent")),
        "{json}"
    );
}

/// A token source that counts fetches and takes its time.
struct Slow {
    inner: Arc<AgentProvider>,
    calls: AtomicUsize,
}

#[async_trait]
impl TokenSource for Slow {
    async fn agent_token(
        &self,
        agent: &AgentId,
        signer: &dyn Signer,
        now: UnixTime,
    ) -> Result<String, AgentError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        self.inner.agent_token(agent, signer, now).await
    }
}

#[tokio::test(start_paused = true)]
async fn the_agent_token_is_refreshed_inside_five_minutes_by_one_task() {
    let w = parties();
    let source = Arc::new(Slow {
        inner: w.provider.clone(),
        calls: AtomicUsize::new(0),
    });
    let agent = Arc::new(Agent::new(
        w.agent_id.clone(),
        w.agent_key.clone(),
        source.clone(),
    ));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let a = agent.clone();
            tokio::spawn(async move { a.token(NOW).await.unwrap().token.clone() })
        })
        .collect();
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    assert_eq!(
        source.calls.load(Ordering::SeqCst),
        1,
        "one refresh for twenty callers"
    );
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    let exp = agent.token(NOW).await.unwrap().exp;

    // Just outside the margin: the same token. Inside it: a new one.
    agent
        .token(UnixTime(exp - REFRESH_MARGIN - 1))
        .await
        .unwrap();
    assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    let later = UnixTime(exp - REFRESH_MARGIN);
    let fresh = agent.token(later).await.unwrap();
    assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    assert!(fresh.exp > exp);

    // A forced refresh of a token already replaced does nothing more.
    agent.refresh(later, &tokens[0]).await.unwrap();
    assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    agent.refresh(later, &fresh.token).await.unwrap();
    assert_eq!(source.calls.load(Ordering::SeqCst), 3);
}

/// A source that fails slowly, counting its calls, and what time it was asked at.
struct Down {
    calls: AtomicUsize,
    asked_at: std::sync::Mutex<Vec<u64>>,
}

#[async_trait]
impl TokenSource for Down {
    async fn agent_token(
        &self,
        _agent: &AgentId,
        _signer: &dyn Signer,
        now: UnixTime,
    ) -> Result<String, AgentError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.asked_at.lock().unwrap().push(now.as_secs());
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        Err(AgentError::Transport {
            reason: "the provider timed out".to_owned(),
        })
    }
}

/// Twenty callers at once and a provider that times out: the provider is asked once and
/// every caller gets its failure (not twenty timeouts one after another); a call after
/// that asks again.
#[tokio::test(start_paused = true)]
async fn a_failed_refresh_is_shared_by_the_callers_that_waited_for_it() {
    let w = parties();
    let source = Arc::new(Down {
        calls: AtomicUsize::new(0),
        asked_at: std::sync::Mutex::default(),
    });
    let agent = Arc::new(Agent::new(
        w.agent_id.clone(),
        w.agent_key.clone(),
        source.clone(),
    ));
    let started = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let a = agent.clone();
            tokio::spawn(async move { a.token(NOW).await })
        })
        .collect();
    for t in tasks {
        assert!(matches!(
            t.await.unwrap(),
            Err(AgentError::Transport { .. })
        ));
    }
    assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    assert_eq!(started.elapsed().as_secs(), 30, "one timeout, not twenty");
    // A caller that arrives while a later refresh runs shares that one's failure too.
    let (a, b) = (agent.clone(), agent.clone());
    let first = tokio::spawn(async move { a.token(NOW).await });
    tokio::task::yield_now().await;
    let second = tokio::spawn(async move { b.token(NOW).await });
    assert!(first.await.unwrap().is_err());
    assert!(second.await.unwrap().is_err());
    assert_eq!(source.calls.load(Ordering::SeqCst), 2, "shared again");
    assert!(agent.token(NOW).await.is_err());
    assert_eq!(
        source.calls.load(Ordering::SeqCst),
        3,
        "a later call asks again"
    );
    assert_eq!(source.asked_at.lock().unwrap()[0], NOW.as_secs());
}

#[tokio::test]
async fn the_http_token_source_signs_with_the_enrolled_key() {
    let w = parties();
    w.net
        .host("agent.example", provider_handler(w.provider.clone()));
    let source = Arc::new(HttpTokenSource::new(
        id("https://agent.example"),
        w.net.clone(),
    ));
    let agent = Agent::new(w.agent_id.clone(), w.agent_key.clone(), source.clone());
    let t = agent.token(NOW).await.unwrap();
    assert_eq!(t.person_server, Some(id("https://ps.example")));
    let seen = w.net.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].header("signature-key").starts_with("sig=hwk"));
    assert!(seen[0].header("signature-input").contains("content-digest"));

    // A key the provider does not know gets the provider's refusal, typed.
    let stranger = Agent::new(
        w.agent_id.clone(),
        Arc::new(PrivateKey::ed25519_from_seed(&[80; 32])),
        source,
    );
    match stranger.token(NOW).await {
        Err(AgentError::Provider { status, error }) => {
            assert_eq!(
                (status, error.as_str()),
                (StatusCode::FORBIDDEN, "unauthorized_agent")
            );
        }
        other => panic!("{other:?}"),
    }
}

/// A "random" source that fills every buffer with one byte.
struct Constant(u8);

impl aauth_keys::rand::RandomSource for Constant {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), aauth_keys::rand::RandomError> {
        dest.fill(self.0);
        Ok(())
    }
}

#[test]
fn agent_token_jtis_come_from_the_injected_source() {
    let p = AgentProvider::new(
        id("https://agent.example"),
        Arc::new(PrivateKey::ed25519_from_seed(&[1; 32])),
        "key-1",
    )
    .unwrap()
    .random(aauth_keys::rand::SharedRandom::new(Constant(6)));
    let agent = AgentId::parse("aauth:assistant@agent.example").unwrap();
    let key = PrivateKey::ed25519_from_seed(&[2; 32]);
    p.enroll(&agent, key.public_key(), None).unwrap();
    let token = p.issue(&agent, key.public_key(), NOW).unwrap();
    // 16 bytes of 0x06, base64url.
    assert_eq!(token.jti, "BgYGBgYGBgYGBgYGBgYGBg");
}

/// Strangers' self-signed token requests are refused before they are verified, so none
/// is recorded in the replay store: they cannot fill the share every `hwk` signer has
/// together and have the enrolled agents refused with them (429).
#[tokio::test]
async fn strangers_cannot_spend_the_enrolled_agents_replay_share() {
    let w = parties();
    let store = aauth_signing::MemoryReplayStore::new(1000).issuer_share(2);
    let provider_key = Arc::new(PrivateKey::ed25519_from_seed(&[1; 32]));
    let p = AgentProvider::new(id("https://agent.example"), provider_key, "provider-1")
        .unwrap()
        .replay_store(Arc::new(store));
    p.enroll(&w.agent_id, w.agent_key.public_key(), None)
        .unwrap();
    let body = r#"{"agent":"aauth:assistant@agent.example"}"#;
    for seed in 60..66 {
        let stranger = PrivateKey::ed25519_from_seed(&[seed; 32]);
        let (s, json) = call(
            &p,
            post(
                AGENT_TOKEN_PATH,
                body,
                &stranger,
                &hwk_scheme(stranger.public_key()),
            ),
        )
        .await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("unauthorized_agent")),
            "{json}"
        );
    }
    let (s, json) = call(
        &p,
        post(
            AGENT_TOKEN_PATH,
            body,
            &w.agent_key,
            &hwk_scheme(w.agent_key.public_key()),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{json}");
}
