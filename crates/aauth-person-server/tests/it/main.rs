//! The Person Server's token endpoints: every check of PS-10…35 with its exact error code,
//! and the tokens it issues read back under its published key.
#![allow(
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod account;
mod admin;
mod adversarial;
mod cascade;
mod chaining;
mod compat;
mod consent;
mod decisions;
mod disabling;
mod federation;
mod flooding;
mod governance;
mod hardening;
mod hints;
mod missions;
mod pages;
mod postgres;
mod presented;
mod racing;
mod rate;
mod refusals;
mod resource_flow;
mod revocation;
mod served;
mod sign_in;
mod stores;
mod unlinking;

use std::sync::Arc;
use std::time::Duration;

use aauth_headers::Scheme;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::UnixTime;
use aauth_keys::{PrivateKey, PublicKey};
use aauth_person_server::{
    AUTH_TOKEN_PATH, AlwaysAsk, ConsentPolicy, ConsentRequest, Decision, MemoryStore,
    PERSON_TOKEN_PATH, PersonServer,
};
use aauth_tokens::{
    AgentId, AgentTokenBuilder, AuthClaims, AuthIssuer, AuthTokenBuilder, PersonClaims,
    PersonTokenBuilder, ResourceTokenBuilder, StaticIssuerKeys, TokenClaims, Unverified,
    Validation,
};
use http::StatusCode;

use aauth_test_support::request;
use aauth_test_support::{NOW, id};

struct World {
    ps: PersonServer,
    /// The store behind `ps` when it is the in-memory one: its `Debug` is its whole
    /// state, for "nothing changed" assertions.
    mem: Option<Arc<MemoryStore>>,
    provider: PrivateKey,
    agent: PrivateKey,
    agent_token: String,
    rs: PrivateKey,
}

/// The issuer keys every world's Person Server knows: agent.example (provider),
/// resource.example and other.example (resources, and their own agent providers).
fn issuer_keys() -> StaticIssuerKeys {
    let provider = PrivateKey::ed25519_from_seed(&[1; 32]);
    let rs = PrivateKey::ed25519_from_seed(&[3; 32]);
    aauth_test_support::verify::issuer_keys(&[
        (
            "https://agent.example",
            "aauth-agent.json",
            "key-1",
            provider.public_key(),
        ),
        (
            "https://resource.example",
            "aauth-resource.json",
            "rs-1",
            rs.public_key(),
        ),
        (
            "https://other.example",
            "aauth-resource.json",
            "rs-1",
            rs.public_key(),
        ),
        // resource.example is also its own agent provider (an intermediary in call
        // chaining).
        (
            "https://resource.example",
            "aauth-agent.json",
            "rs-agents",
            rs.public_key(),
        ),
        // ...and so is other.example (a second hop).
        (
            "https://other.example",
            "aauth-agent.json",
            "rs-agents",
            rs.public_key(),
        ),
    ])
}

fn world_with(policy: Option<Arc<dyn ConsentPolicy>>) -> World {
    let mem = Arc::new(MemoryStore::default());
    let mut w = world_over(
        Arc::clone(&mem) as Arc<dyn aauth_person_server::PsStore>,
        policy,
    );
    w.mem = Some(mem);
    w
}

/// The world's Person Server over `store` (one instance of several, when they share it).
fn world_over(
    store: Arc<dyn aauth_person_server::PsStore>,
    policy: Option<Arc<dyn ConsentPolicy>>,
) -> World {
    let provider = PrivateKey::ed25519_from_seed(&[1; 32]);
    let rs = PrivateKey::ed25519_from_seed(&[3; 32]);
    let keys = issuer_keys();
    let mut ps = PersonServer::new(
        id("https://ps.example"),
        Arc::new(PrivateKey::ed25519_from_seed(&[4; 32])),
        "ps-1",
        Arc::new(keys),
        store,
        [9; 32],
    )
    .unwrap()
    // Everything approved, chained requests too (the chaining tests' intermediaries are
    // approved for the upstream person); `AutoApprove` alone asks about those.
    .policy(Arc::new(aauth_person_server::dangerous::AutoApproveChained))
    .operators(aauth_metadata::audit::operator::Operators::new(
        &id("https://ps.example"),
        [operator().public_key().clone()],
    ));
    if let Some(p) = policy {
        ps = ps.policy(p);
    }
    let agent = PrivateKey::ed25519_from_seed(&[2; 32]);
    let agent_token = agent_token(&provider, "aauth:assistant@agent.example", &agent, 1800);
    World {
        ps,
        mem: None,
        provider,
        agent,
        agent_token,
        rs,
    }
}

/// The operator's key: it reads the audit log at `/admin/audit`.
fn operator() -> PrivateKey {
    PrivateKey::ed25519_from_seed(&[8; 32])
}

fn world() -> World {
    world_with(None)
}

/// The assistant's agent token issued at `at` (for requests at a later time).
fn agent_token_at(provider: &PrivateKey, key: &PrivateKey, at: UnixTime) -> String {
    aauth_test_support::tokens::assistant(key.public_key())
        .sign(provider, "key-1", at, &mut OsRandom)
        .unwrap()
        .token
}

fn agent_token(provider: &PrivateKey, agent: &str, key: &PrivateKey, lifetime: u64) -> String {
    AgentTokenBuilder::new(
        id("https://agent.example"),
        AgentId::parse(agent).unwrap(),
        key.public_key(),
    )
    .person_server(id("https://ps.example"))
    .lifetime(Duration::from_secs(lifetime))
    .sign(provider, "key-1", NOW.minus(5), &mut OsRandom)
    .unwrap()
    .token
}

/// A request to the Person Server (`path` on ps.example) as it arrives: `body` as JSON,
/// signed by `key` under `scheme` at `at` with a nonce.
fn arriving(
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    key: &PrivateKey,
    scheme: &Scheme,
    at: UnixTime,
) -> (http::request::Parts, Vec<u8>) {
    let req = request::json(method, &format!("https://ps.example{path}"), body);
    request::signed_unique(req, key, scheme, at).into_parts()
}

/// A response's JSON body; `null` if it is not JSON.
fn json_of(resp: &http::Response<bytes::Bytes>) -> serde_json::Value {
    serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null)
}

impl World {
    /// Everything the Person Server holds, as text (in-memory store only), but its audit
    /// log: a refused request leaves its `refused` event there and nothing else anywhere
    /// (the audit tests check the log itself).
    fn state(&self) -> String {
        let all = format!("{:?}", self.mem.as_ref().expect("an in-memory world"));
        let (Some(from), Some(to)) = (all.find("audit: MemoryAuditLog {"), all.find("sessions: "))
        else {
            panic!("the store's state lost its audit log or its sessions: {all}");
        };
        format!("{}{}", &all[..from], &all[to..])
    }

    async fn bind(&self, agent: &str, account: &str) {
        self.ps
            .store()
            .bind(
                &id("https://agent.example"),
                &AgentId::parse(agent).unwrap(),
                account,
            )
            .await
            .unwrap();
    }

    /// A request to the Person Server signed by `key` under agent token `token` at `at`
    /// (with a nonce): its response.
    async fn respond(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        (key, token): (&PrivateKey, &str),
        at: UnixTime,
    ) -> http::Response<bytes::Bytes> {
        let (parts, body) = arriving(method, path, body, key, &Scheme::jwt(token.to_owned()), at);
        self.ps.handle(&parts, &body, at).await.unwrap()
    }

    async fn post_as(
        &self,
        path: &str,
        body: &serde_json::Value,
        key: &PrivateKey,
        token: &str,
    ) -> (StatusCode, serde_json::Value) {
        self.post_at(path, body, key, token, NOW).await
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> (StatusCode, serde_json::Value) {
        self.post_as(path, &body, &self.agent, &self.agent_token)
            .await
    }

    /// A signed `GET` of `path`: status, headers, body.
    async fn get_path(
        &self,
        path: &str,
        key: &PrivateKey,
        token: &str,
    ) -> (StatusCode, http::HeaderMap, Vec<u8>) {
        let resp = self.respond("GET", path, None, (key, token), NOW).await;
        let mut headers = resp.headers().clone();
        headers.remove("date");
        (resp.status(), headers, resp.body().to_vec())
    }

    /// `post_as` at another time.
    async fn post_at(
        &self,
        path: &str,
        body: &serde_json::Value,
        key: &PrivateKey,
        token: &str,
        at: UnixTime,
    ) -> (StatusCode, serde_json::Value) {
        let resp = self
            .respond("POST", path, Some(body), (key, token), at)
            .await;
        (resp.status(), json_of(&resp))
    }

    /// `post` to any path.
    async fn post_path(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        self.post_as(path, &body, &self.agent, &self.agent_token)
            .await
    }

    /// `post` with the response headers.
    async fn post_full(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let resp = self
            .respond(
                "POST",
                path,
                Some(&body),
                (&self.agent, &self.agent_token),
                NOW,
            )
            .await;
        (resp.status(), resp.headers().clone(), json_of(&resp))
    }

    /// A person token for `resource` from the endpoint.
    async fn person_token(&self, resource: &str) -> String {
        let (s, json) = self
            .post(
                PERSON_TOKEN_PATH,
                serde_json::json!({ "resource": resource }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{json}");
        json["person_token"].as_str().unwrap().to_owned()
    }

    fn ps_key(&self) -> PublicKey {
        aauth_test_support::published::published_key(self.ps.published(), "ps-1")
    }

    fn read<C: TokenClaims>(&self, token: &str, aud: &str) -> C {
        let aud = id(aud);
        let v = Validation::new(NOW).audience(&aud);
        Unverified::<C>::decode(token, &v)
            .unwrap()
            .finish(&self.ps_key(), &v)
            .unwrap()
            .claims
    }

    /// A resource token derived from `presented` (its claims), spoiled by `tweak`.
    fn resource_token(
        &self,
        presented_jti: &str,
        sub: &str,
        tweak: impl FnOnce(ResourceTokenBuilder) -> ResourceTokenBuilder,
    ) -> String {
        tweak(ResourceTokenBuilder::new(
            id("https://resource.example"),
            id("https://ps.example"),
            id("https://ps.example"),
            sub,
            presented_jti,
            self.agent.public_key(),
            "read",
        ))
        .sign(&self.rs, "rs-1", NOW, &mut OsRandom)
        .unwrap()
        .token
    }

    /// A resource token of `resource` for the holder of `key`, asking `scope` of this
    /// Person Server with person token `pc` presented, signed now.
    fn resource_token_for(
        &self,
        resource: &str,
        pc: &PersonClaims,
        key: &PrivateKey,
        scope: &str,
    ) -> String {
        self.sign_resource_token(resource_token_builder(resource, pc, key, scope), NOW)
    }

    /// `rt` signed by the resources' key at `at`.
    fn sign_resource_token(&self, rt: ResourceTokenBuilder, at: UnixTime) -> String {
        rt.sign(&self.rs, "rs-1", at, &mut OsRandom).unwrap().token
    }
}

/// What [`World::resource_token_for`] signs, for a test to change first (and sign with
/// [`World::sign_resource_token`]).
fn resource_token_builder(
    resource: &str,
    pc: &PersonClaims,
    key: &PrivateKey,
    scope: &str,
) -> ResourceTokenBuilder {
    ResourceTokenBuilder::new(
        id(resource),
        id("https://ps.example"),
        id("https://ps.example"),
        pc.sub.clone(),
        pc.jti.clone(),
        key.public_key(),
        scope,
    )
}

#[tokio::test]
async fn metadata_names_both_endpoints() {
    let w = world();
    let doc =
        w.ps.published()
            .respond(&http::Method::GET, "/.well-known/aauth-person.json")
            .unwrap();
    let json: serde_json::Value = serde_json::from_slice(doc.body()).unwrap();
    assert_eq!(json["issuer"], "https://ps.example");
    assert_eq!(
        json["person_token_endpoint"],
        "https://ps.example/person-token"
    );
    assert_eq!(json["auth_token_endpoint"], "https://ps.example/auth-token");
    assert_eq!(json["jwks_uri"], "https://ps.example/jwks.json");
    // Exactly what its verifiers accept (draft -11 §Common Metadata).
    assert_eq!(
        json["accept_signature_algs"],
        serde_json::json!(["Ed25519", "ES256"])
    );
}

#[tokio::test]
async fn person_tokens_carry_a_directed_sub_and_are_capped_by_the_agent_token() {
    let w = world();
    // Not bound to a person: the person cannot be asked.
    let (s, json) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example"}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("user_unreachable"))
    );

    w.bind("aauth:assistant@agent.example", "alice").await;
    let token = w.person_token("https://resource.example").await;
    let c: PersonClaims = w.read(&token, "https://resource.example");
    assert_eq!(c.iss, id("https://ps.example"));
    assert_eq!(c.dwk, "aauth-person.json");
    assert_eq!(c.cnf.jwk.x, w.agent.public_key().to_jwk().x);
    let agent_exp = NOW.minus(5).as_secs() + 1800;
    assert!(
        c.exp <= agent_exp,
        "exp {} past the agent token's {agent_exp}",
        c.exp
    );
    assert!(!token.contains("scope"));

    // PS-20: stable per resource, the same for another agent of the same person, another
    // value at another resource.
    let again: PersonClaims = w.read(
        &w.person_token("https://resource.example").await,
        "https://resource.example",
    );
    assert_eq!(again.sub, c.sub);
    let other: PersonClaims = w.read(
        &w.person_token("https://other.example").await,
        "https://other.example",
    );
    assert_ne!(other.sub, c.sub);
    let second_key = PrivateKey::ed25519_from_seed(&[5; 32]);
    let second = agent_token(&w.provider, "aauth:helper@agent.example", &second_key, 1800);
    w.bind("aauth:helper@agent.example", "alice").await;
    let (_, json) = w
        .post_as(
            PERSON_TOKEN_PATH,
            &serde_json::json!({"resource": "https://resource.example"}),
            &second_key,
            &second,
        )
        .await;
    let by_helper: PersonClaims = w.read(
        json["person_token"].as_str().unwrap(),
        "https://resource.example",
    );
    assert_eq!(by_helper.sub, c.sub);
    assert_eq!(
        w.ps.directed_sub("alice", &id("https://resource.example")),
        c.sub
    );

    for body in [
        serde_json::json!({"resource": "http://resource.example"}),
        serde_json::json!({"resource": "https://resource.example/path"}),
        serde_json::json!({}),
        serde_json::json!({"resource": "https://resource.example", "mission_s256": "nope"}),
    ] {
        let (s, json) = w.post(PERSON_TOKEN_PATH, body.clone()).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{body}"
        );
    }
}

#[tokio::test]
async fn an_unsigned_or_sub_agent_request_is_refused() {
    let w = world();
    w.bind("aauth:assistant@agent.example", "alice").await;
    let (mut parts, body) = http::Request::post("/person-token")
        .header("host", "ps.example")
        .header("content-type", "application/json")
        .body(br#"{"resource":"https://resource.example"}"#.to_vec())
        .unwrap()
        .into_parts();
    parts.uri = "/person-token".parse().unwrap();
    let resp = w.ps.handle(&parts, &body, NOW).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let sub_key = PrivateKey::ed25519_from_seed(&[6; 32]);
    let sub_token = AgentTokenBuilder::new(
        id("https://agent.example"),
        AgentId::parse("aauth:assistant+search@agent.example").unwrap(),
        sub_key.public_key(),
    )
    .parent_agent(AgentId::parse("aauth:assistant@agent.example").unwrap())
    .sign(&w.provider, "key-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    let (s, json) = w
        .post_as(
            PERSON_TOKEN_PATH,
            &serde_json::json!({"resource": "https://resource.example"}),
            &sub_key,
            &sub_token,
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_subagent_token"))
    );
}

#[tokio::test]
async fn three_party_auth_tokens_after_every_check() {
    let w = world();
    w.bind("aauth:assistant@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    let rt = w.resource_token(&pc.jti, &pc.sub, |b| b);
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": rt, "presented_token": person}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let auth = json["auth_token"].as_str().unwrap().to_owned();
    let ac: AuthClaims = w.read(&auth, "https://resource.example");
    assert_eq!(
        (ac.iss.as_str(), ac.ps.as_str(), ac.dwk.as_str()),
        (
            "https://ps.example",
            "https://ps.example",
            "aauth-person.json"
        )
    );
    assert_eq!(ac.sub, pc.sub);
    assert_eq!(ac.scope.as_deref(), Some("read"));
    assert!(ac.exp <= pc.exp, "capped by the presented token");
    assert_eq!(ac.cnf.jwk.x, w.agent.public_key().to_jwk().x);

    // Step-up: the auth token presented, a resource token derived from it.
    let step = w.resource_token(&ac.jti, &ac.sub, |b| b);
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": step, "presented_token": auth}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
}

#[tokio::test]
async fn each_failed_check_has_its_code() {
    let w = world();
    w.bind("aauth:assistant@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    let stranger = PrivateKey::ed25519_from_seed(&[66; 32]);
    let other_person = w.person_token("https://other.example").await;
    let unrecorded = PersonTokenBuilder::new(
        id("https://ps.example"),
        id("https://resource.example"),
        pc.sub.clone(),
        w.agent.public_key(),
    )
    .sign(
        &PrivateKey::ed25519_from_seed(&[4; 32]),
        "ps-1",
        NOW,
        &mut OsRandom,
    )
    .unwrap();
    let forged_ps = PersonTokenBuilder::new(
        id("https://ps.example"),
        id("https://resource.example"),
        pc.sub.clone(),
        w.agent.public_key(),
    )
    .sign(&stranger, "ps-1", NOW, &mut OsRandom)
    .unwrap();
    let expired_rt = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://ps.example"),
        id("https://ps.example"),
        pc.sub.clone(),
        pc.jti.clone(),
        w.agent.public_key(),
        "read",
    )
    .lifetime(Duration::from_secs(10))
    .sign(&w.rs, "rs-1", NOW.minus(60), &mut OsRandom)
    .unwrap()
    .token;

    // Issued five minutes ahead of this server's clock (beyond the 60 s skew).
    let future_rt = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://ps.example"),
        id("https://ps.example"),
        pc.sub.clone(),
        pc.jti.clone(),
        w.agent.public_key(),
        "read",
    )
    .sign(&w.rs, "rs-1", NOW.plus(300), &mut OsRandom)
    .unwrap()
    .token;

    let cases: Vec<(&str, serde_json::Value, StatusCode, &str)> = vec![
        (
            "resource token issued in the future",
            serde_json::json!({"resource_token": future_rt, "presented_token": person}),
            StatusCode::BAD_REQUEST,
            "clock_skew",
        ),
        (
            "no presented_token",
            serde_json::json!({"resource_token": w.resource_token(&pc.jti, &pc.sub, |b| b)}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "expired resource token",
            serde_json::json!({"resource_token": expired_rt, "presented_token": person}),
            StatusCode::BAD_REQUEST,
            "expired_resource_token",
        ),
        (
            "resource token for another PS",
            serde_json::json!({"resource_token": ResourceTokenBuilder::new(id("https://resource.example"), id("https://ps2.example"), id("https://ps.example"), pc.sub.clone(), pc.jti.clone(), w.agent.public_key(), "read").sign(&w.rs, "rs-1", NOW, &mut OsRandom).unwrap().token, "presented_token": person}),
            StatusCode::BAD_REQUEST,
            "invalid_resource_token",
        ),
        (
            "resource token signed by a stranger",
            serde_json::json!({"resource_token": ResourceTokenBuilder::new(id("https://resource.example"), id("https://ps.example"), id("https://ps.example"), pc.sub.clone(), pc.jti.clone(), w.agent.public_key(), "read").sign(&stranger, "rs-1", NOW, &mut OsRandom).unwrap().token, "presented_token": person}),
            StatusCode::BAD_REQUEST,
            "invalid_resource_token",
        ),
        (
            "agent_jkt of another key",
            serde_json::json!({"resource_token": ResourceTokenBuilder::new(id("https://resource.example"), id("https://ps.example"), id("https://ps.example"), pc.sub.clone(), pc.jti.clone(), stranger.public_key(), "read").sign(&w.rs, "rs-1", NOW, &mut OsRandom).unwrap().token, "presented_token": person}),
            StatusCode::BAD_REQUEST,
            "invalid_resource_token",
        ),
        (
            "presented_jti of another token",
            serde_json::json!({"resource_token": w.resource_token("other-jti", &pc.sub, |b| b), "presented_token": person}),
            StatusCode::BAD_REQUEST,
            "invalid_resource_token",
        ),
        (
            "sub of another person",
            serde_json::json!({"resource_token": w.resource_token(&pc.jti, "someone-else", |b| b), "presented_token": person}),
            StatusCode::BAD_REQUEST,
            "invalid_resource_token",
        ),
        (
            "mission stripped or added",
            serde_json::json!({"resource_token": w.resource_token(&pc.jti, &pc.sub, |b| b.mission_s256("m")), "presented_token": person}),
            StatusCode::BAD_REQUEST,
            "invalid_resource_token",
        ),
        (
            "presented token for another resource",
            serde_json::json!({"resource_token": w.resource_token(&pc.jti, &pc.sub, |b| b), "presented_token": other_person}),
            StatusCode::BAD_REQUEST,
            "invalid_presented_token",
        ),
        (
            "presented token not from this PS's key",
            serde_json::json!({"resource_token": w.resource_token(&forged_ps.jti, &pc.sub, |b| b), "presented_token": forged_ps.token}),
            StatusCode::BAD_REQUEST,
            "invalid_presented_token",
        ),
        (
            "presented token never issued",
            serde_json::json!({"resource_token": w.resource_token(&unrecorded.jti, &pc.sub, |b| b), "presented_token": unrecorded.token}),
            StatusCode::BAD_REQUEST,
            "invalid_presented_token",
        ),
    ];
    for (what, body, status, code) in cases {
        let before = w.state();
        let (s, json) = w.post(AUTH_TOKEN_PATH, body).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (status, Some(code)),
            "{what}: {json}"
        );
        assert_eq!(w.state(), before, "{what}: the refusal changed nothing");
    }

    // Revoked.
    w.ps.store().revoke(&pc.jti, pc.exp, NOW).await.unwrap();
    let (s, json) = w
        .post(AUTH_TOKEN_PATH, serde_json::json!({"resource_token": w.resource_token(&pc.jti, &pc.sub, |b| b), "presented_token": person}))
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked_presented_token"))
    );
}

struct DenyWrite;
impl ConsentPolicy for DenyWrite {
    fn decide(&self, r: &ConsentRequest<'_>) -> Decision {
        if r.scope == Some("write") {
            Decision::Deny("alice does not let agents write".to_owned())
        } else {
            Decision::Approve
        }
    }
}

#[tokio::test]
async fn the_policy_decides_and_asking_an_unreachable_person_is_terminal() {
    let w = world_with(Some(Arc::new(DenyWrite)));
    w.bind("aauth:assistant@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    let rt = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://ps.example"),
        id("https://ps.example"),
        pc.sub.clone(),
        pc.jti.clone(),
        w.agent.public_key(),
        "write",
    )
    .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": rt, "presented_token": person}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied"))
    );

    let w = world_with(Some(Arc::new(AlwaysAsk)));
    w.bind("aauth:assistant@agent.example", "alice").await;
    let (s, json) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example", "capabilities": []}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("user_unreachable"))
    );
}

#[tokio::test]
async fn auth_tokens_from_another_issuer_are_not_presented_tokens() {
    let w = world();
    w.bind("aauth:assistant@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    // An auth token signed by an Access Server is not one this PS can vouch for.
    let as_token = AuthTokenBuilder::new(
        AuthIssuer::AccessServer,
        id("https://as.example"),
        id("https://resource.example"),
        id("https://ps.example"),
        pc.sub.clone(),
        w.agent.public_key(),
    )
    .sign(
        &PrivateKey::ed25519_from_seed(&[77; 32]),
        "as-1",
        NOW,
        &mut OsRandom,
    )
    .unwrap();
    let rt = w.resource_token(&as_token.jti, &pc.sub, |b| b);
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": rt, "presented_token": as_token.token}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_presented_token"))
    );
}

#[tokio::test]
async fn a_parent_asks_for_its_sub_agent_and_the_tokens_bind_the_sub_agents_key() {
    let w = world();
    w.bind("aauth:assistant@agent.example", "alice").await;
    let sub_key = PrivateKey::ed25519_from_seed(&[31; 32]);
    let sub = |parent: &str, iss_key: &PrivateKey, iss: &str, lifetime: u64| {
        AgentTokenBuilder::new(
            id(iss),
            AgentId::parse(&parent.replace('@', "+search@")).unwrap(),
            sub_key.public_key(),
        )
        .parent_agent(AgentId::parse(parent).unwrap())
        .lifetime(Duration::from_secs(lifetime))
        .sign(iss_key, "key-1", NOW.minus(20), &mut OsRandom)
        .unwrap()
        .token
    };
    let good = sub(
        "aauth:assistant@agent.example",
        &w.provider,
        "https://agent.example",
        600,
    );
    let (s, json) = w
        .post(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example", "subagent_token": good}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let person = json["person_token"].as_str().unwrap().to_owned();
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    assert_eq!(
        pc.cnf.jwk.x,
        sub_key.public_key().to_jwk().x,
        "bound to the sub-agent's key"
    );
    assert!(
        pc.exp <= NOW.minus(20).as_secs() + 600,
        "no later than the sub-agent token"
    );
    assert_eq!(
        pc.sub,
        w.ps.directed_sub("alice", &id("https://resource.example"))
    );

    // The auth token, with the resource token's agent_jkt the sub-agent's key.
    let rt = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://ps.example"),
        id("https://ps.example"),
        pc.sub.clone(),
        pc.jti.clone(),
        sub_key.public_key(),
        "read",
    )
    .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    let (s, json) = w
        .post(AUTH_TOKEN_PATH, serde_json::json!({"resource_token": rt, "presented_token": person, "subagent_token": good}))
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let ac: AuthClaims = w.read(
        json["auth_token"].as_str().unwrap(),
        "https://resource.example",
    );
    assert_eq!(ac.cnf.jwk.x, sub_key.public_key().to_jwk().x);
    // Without subagent_token the parent's key is not the resource token's agent_jkt.
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": rt, "presented_token": person}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_resource_token"))
    );

    // Sub-agent tokens the signer cannot vouch for.
    let other_provider = PrivateKey::ed25519_from_seed(&[32; 32]);
    for (token, code) in [
        (
            sub(
                "aauth:someone@agent.example",
                &w.provider,
                "https://agent.example",
                600,
            ),
            "invalid_subagent_token",
        ),
        (
            sub(
                "aauth:assistant@agent.example",
                &other_provider,
                "https://agent.example",
                600,
            ),
            "invalid_subagent_token",
        ),
        (
            sub(
                "aauth:assistant@agent.example",
                &w.provider,
                "https://agent.example",
                10,
            ),
            "expired_subagent_token",
        ),
    ] {
        let (s, json) = w
            .post(PERSON_TOKEN_PATH, serde_json::json!({"resource": "https://resource.example", "subagent_token": token}))
            .await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{json}"
        );
    }
}

/// A sub-agent's person token that waited for the person is recorded as the sub-agent's,
/// as one issued at once is (the parent only asked for it).
#[tokio::test]
async fn a_deferred_sub_agent_token_is_recorded_as_the_sub_agents() {
    let w = consent::consenting_world(Some(Arc::new(AlwaysAsk))).await;
    w.bind("aauth:assistant@agent.example", "alice").await;
    let sub_key = PrivateKey::ed25519_from_seed(&[31; 32]);
    let sub_agent = AgentId::parse("aauth:assistant+search@agent.example").unwrap();
    let sub_token = AgentTokenBuilder::new(
        id("https://agent.example"),
        sub_agent.clone(),
        sub_key.public_key(),
    )
    .parent_agent(AgentId::parse("aauth:assistant@agent.example").unwrap())
    .lifetime(Duration::from_secs(600))
    .sign(&w.provider, "key-1", NOW.minus(20), &mut OsRandom)
    .unwrap()
    .token;
    let (s, headers, json) = w
        .post_full(
            PERSON_TOKEN_PATH,
            serde_json::json!({"resource": "https://resource.example", "subagent_token": sub_token, "capabilities": ["interaction"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let location = request::header(&headers, "location");
    consent::approve(
        &w,
        &consent::code_of(&headers),
        "alice",
        "correct horse battery",
    )
    .await;
    // The parent polls (it signed the request); the token binds the sub-agent's key.
    let (s, _, json) =
        consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let pc: PersonClaims = w.read(
        json["person_token"].as_str().unwrap(),
        "https://resource.example",
    );
    assert_eq!(pc.cnf.jwk.x, sub_key.public_key().to_jwk().x);
    let record =
        w.ps.store()
            .person_token(&pc.jti, NOW)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        record.agent,
        (id("https://agent.example"), sub_agent),
        "recorded as issued to the sub-agent"
    );
}
