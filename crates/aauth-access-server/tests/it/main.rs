//! The Access Server's token endpoint: a trusted Person Server's signed request gets an
//! auth token capped by every token it came from; each failed check of AS-10…21 has its
//! code.
#![allow(
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod callback;
mod cascade;
mod flaky;
mod hardening;
mod interaction;
mod lease;
mod poll_codes;
mod polling;
mod rate;
mod revocation;
mod robust;
mod steps;
mod stepup;
mod stores;
mod waiting_cap;

use std::sync::Arc;
use std::time::Duration;

use aauth_access_server::{
    AUTH_TOKEN_PATH, AccessDecision, AccessPolicy, AccessRequest, AccessServer,
};
use aauth_headers::Scheme;
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::UnixTime;
use aauth_tokens::{AuthClaims, PersonTokenBuilder, ResourceTokenBuilder, Unverified, Validation};
use http::StatusCode;

use aauth_test_support::request;
use aauth_test_support::verify::issuer_keys;
use aauth_test_support::{NOW, id};

struct World {
    server: AccessServer,
    as_key: PrivateKey,
    ps: PrivateKey,
    rs: PrivateKey,
    provider: PrivateKey,
    agent: PrivateKey,
}

fn world() -> World {
    world_with_keys(|k| k)
}

/// A wrapper around the Access Server's key resolver.
type WrapKeys = Box<
    dyn FnOnce(
        Arc<dyn aauth_tokens::IssuerKeyResolver>,
    ) -> Arc<dyn aauth_tokens::IssuerKeyResolver>,
>;

/// The world, its Access Server's key resolver wrapped by `wrap`.
fn world_with_keys(
    wrap: impl FnOnce(
        Arc<dyn aauth_tokens::IssuerKeyResolver>,
    ) -> Arc<dyn aauth_tokens::IssuerKeyResolver>
    + 'static,
) -> World {
    build_world(Box::new(wrap), true)
}

/// The world; `login`: whether its Access Server can sign people in.
fn build_world(wrap: WrapKeys, login: bool) -> World {
    let (ps, rs, provider, agent, as_key) = (
        PrivateKey::ed25519_from_seed(&[1; 32]),
        PrivateKey::ed25519_from_seed(&[2; 32]),
        PrivateKey::ed25519_from_seed(&[3; 32]),
        PrivateKey::ed25519_from_seed(&[4; 32]),
        PrivateKey::ed25519_from_seed(&[5; 32]),
    );
    let keys = world_issuer_keys(&ps, &rs, &provider);
    let server = AccessServer::new(
        id("https://as.example"),
        Arc::new(PrivateKey::ed25519_from_seed(&[5; 32])),
        "as-1",
        wrap(Arc::new(keys)),
    )
    .unwrap()
    .trusted([id("https://ps.example")])
    .operators(aauth_metadata::audit::operator::Operators::new(
        &id("https://as.example"),
        [operator().public_key().clone()],
    ));
    let server = if login {
        server.people_authenticator(Arc::new(TestLogin))
    } else {
        server
    };
    World {
        server,
        as_key,
        ps,
        rs,
        provider,
        agent,
    }
}

/// The keys of the world's Person Servers, resource and agent provider, as its Access
/// Server finds them.
fn world_issuer_keys(
    ps: &PrivateKey,
    rs: &PrivateKey,
    provider: &PrivateKey,
) -> aauth_tokens::StaticIssuerKeys {
    issuer_keys(&[
        (
            "https://ps.example",
            "aauth-person.json",
            "ps-1",
            ps.public_key(),
        ),
        (
            "https://ps2.example",
            "aauth-person.json",
            "ps-1",
            ps.public_key(),
        ),
        (
            "https://resource.example",
            "aauth-resource.json",
            "rs-1",
            rs.public_key(),
        ),
        (
            "https://agent.example",
            "aauth-agent.json",
            "key-1",
            provider.public_key(),
        ),
    ])
}

/// The Access Server's login, as a test sees it: `as-session=<account>` is signed in.
struct TestLogin;

#[async_trait::async_trait]
impl aauth_access_server::PeopleAuthenticator for TestLogin {
    async fn account(&self, parts: &http::request::Parts, _now: UnixTime) -> Option<String> {
        parts
            .headers
            .get("cookie")?
            .to_str()
            .ok()?
            .split("; ")
            .find_map(|c| c.strip_prefix("as-session="))
            .map(str::to_owned)
    }

    fn login_url(&self, return_to: &str) -> String {
        format!("https://login.as.example/?return_to={return_to}")
    }
}

/// The tokens of a four-party request: agent token, person token (for the resource),
/// resource token (for the AS).
struct Tokens {
    agent: String,
    person: String,
    person_jti: String,
    person_exp: u64,
}

impl World {
    fn tokens(&self, person_lifetime: u64) -> Tokens {
        let agent = aauth_test_support::tokens::assistant(self.agent.public_key())
            .sign(&self.provider, "key-1", NOW.minus(5), &mut OsRandom)
            .unwrap()
            .token;
        let p = PersonTokenBuilder::new(
            id("https://ps.example"),
            id("https://resource.example"),
            "alice-at-resource",
            self.agent.public_key(),
        )
        .lifetime(Duration::from_secs(person_lifetime))
        .sign(&self.ps, "ps-1", NOW, &mut OsRandom)
        .unwrap();
        Tokens {
            agent,
            person: p.token,
            person_jti: p.jti,
            person_exp: p.exp,
        }
    }

    fn resource_token(
        &self,
        t: &Tokens,
        tweak: impl FnOnce(ResourceTokenBuilder) -> ResourceTokenBuilder,
    ) -> String {
        tweak(ResourceTokenBuilder::new(
            id("https://resource.example"),
            id("https://as.example"),
            id("https://ps.example"),
            "alice-at-resource",
            t.person_jti.clone(),
            self.agent.public_key(),
            "calendar.read calendar.write",
        ))
        .sign(&self.rs, "rs-1", NOW, &mut OsRandom)
        .unwrap()
        .token
    }

    /// A request to the Access Server signed under `jwks_uri` as `signer` (its `dwk`
    /// and `kid`) with `key`: status, headers, JSON body.
    async fn send_signed(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        (signer, dwk, kid): (&str, &str, &str),
        key: &PrivateKey,
    ) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let req = request::json(method, &format!("https://as.example{path}"), body);
        let scheme = Scheme::JwksUri {
            id: signer.to_owned(),
            dwk: dwk.to_owned(),
            kid: kid.to_owned(),
        };
        let (parts, body) = request::signed_unique(req, key, &scheme, NOW).into_parts();
        let resp = served(self.server.handle(&parts, &body, NOW).await);
        (
            resp.status(),
            resp.headers().clone(),
            serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null),
        )
    }

    /// A token request signed as Person Server `ps_id` with `key`.
    async fn ask_as(
        &self,
        body: &serde_json::Value,
        ps_id: &str,
        key: &PrivateKey,
    ) -> (StatusCode, serde_json::Value) {
        let (s, _, json) = self.post_path(AUTH_TOKEN_PATH, body, ps_id, key).await;
        (s, json)
    }

    async fn ask(&self, body: &serde_json::Value) -> (StatusCode, serde_json::Value) {
        self.ask_as(body, "https://ps.example", &self.ps).await
    }
}

#[tokio::test]
async fn a_trusted_person_server_gets_an_auth_token_capped_by_what_it_came_from() {
    let w = world();
    let t = w.tokens(600);
    // A person token under a mission and tenant, and the resource token derived from it.
    let p = PersonTokenBuilder::new(
        id("https://ps.example"),
        id("https://resource.example"),
        "alice-at-resource",
        w.agent.public_key(),
    )
    .mission_s256("A".repeat(43))
    .tenant("acme")
    .lifetime(Duration::from_secs(600))
    .sign(&w.ps, "ps-1", NOW, &mut OsRandom)
    .unwrap();
    let rt_matching = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://as.example"),
        id("https://ps.example"),
        "alice-at-resource",
        p.jti.clone(),
        w.agent.public_key(),
        "calendar.read calendar.write",
    )
    .mission_s256("A".repeat(43))
    .tenant("acme")
    .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    let (s, json) = w
        .ask(&serde_json::json!({"resource_token": rt_matching, "agent_token": t.agent, "presented_token": p.token}))
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let resource = id("https://resource.example");
    let v = Validation::new(NOW).audience(&resource);
    let c = Unverified::<AuthClaims>::decode(json["auth_token"].as_str().unwrap(), &v)
        .unwrap()
        .finish(w.as_key.public_key(), &v)
        .unwrap()
        .claims;
    assert_eq!(c.iss.as_str(), "https://as.example");
    assert_eq!(c.dwk, "aauth-access.json");
    assert_eq!(c.ps.as_str(), "https://ps.example");
    assert_eq!(c.sub, "alice-at-resource");
    assert_eq!(c.scope.as_deref(), Some("calendar.read calendar.write"));
    assert_eq!(c.mission_s256, Some("A".repeat(43)));
    assert_eq!(c.tenant.as_deref(), Some("acme"));
    assert_eq!(c.cnf.jwk, w.agent.public_key().to_jwk());
    assert_eq!(c.exp, p.exp, "capped by the presented token");
    assert_eq!(w.server.issued().await.unwrap(), 1);
    // The issuance is in the audit log, by the person's directed sub and the resource.
    let log = w
        .server
        .audit(&aauth_metadata::audit::AuditQuery::default())
        .await
        .unwrap()
        .events;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].action, aauth_metadata::audit::AuditAction::Issued);
    assert_eq!(log[0].account.as_deref(), Some("alice-at-resource"));
    assert_eq!(log[0].resource.as_deref(), Some("https://resource.example"));
    assert!(
        log[0].detail.starts_with(&format!("auth token {} ", c.jti)),
        "{}",
        log[0].detail
    );
    assert!(!log[0].detail.contains("eyJ"), "never a token");
    assert_eq!(
        log[0].scope.as_deref(),
        Some("calendar.read calendar.write")
    );

    // The operator reads the same over HTTP; the Person Server that signs its requests
    // to this server is no operator, and nobody unsigned is.
    let get = |key: Option<&PrivateKey>| {
        request::operator_get("https://as.example/admin/audit?action=issued", key, NOW)
    };
    let r = w
        .server
        .handle(&get(Some(&operator())), &[], NOW)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page =
        aauth_metadata::audit::AuditPage::from_json(&serde_json::from_slice(r.body()).unwrap())
            .unwrap();
    assert_eq!(page.events, log);
    let r = w.server.handle(&get(None), &[], NOW).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = w.server.handle(&get(Some(&w.ps)), &[], NOW).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

/// The operator's key: it reads the audit log at `/admin/audit`.
fn operator() -> PrivateKey {
    PrivateKey::ed25519_from_seed(&[8; 32])
}

struct ReadOnly;
impl AccessPolicy for ReadOnly {
    fn decide(&self, r: &AccessRequest<'_>) -> AccessDecision {
        if r.agent.1.as_str().starts_with("aauth:intruder") {
            AccessDecision::Deny("not this agent".to_owned())
        } else {
            AccessDecision::GrantScope("calendar.read".to_owned())
        }
    }
}

#[tokio::test]
async fn the_policy_narrows_or_denies() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(ReadOnly));
    let t = w.tokens(600);
    let rt = w.resource_token(&t, |b| b);
    let (s, json) = w
        .ask(&serde_json::json!({"resource_token": rt, "agent_token": t.agent, "presented_token": t.person}))
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let c = Unverified::<AuthClaims>::decode(
        json["auth_token"].as_str().unwrap(),
        &Validation::new(NOW).audience(&id("https://resource.example")),
    )
    .unwrap()
    .unverified_claims()
    .clone();
    assert_eq!(c.scope.as_deref(), Some("calendar.read"));
}

#[test]
fn the_metadata_says_what_the_server_verifies() {
    let w = world();
    let doc = w
        .server
        .published()
        .respond(&http::Method::GET, "/.well-known/aauth-access.json")
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(doc.body()).unwrap();
    assert_eq!(json["auth_token_endpoint"], "https://as.example/auth-token");
    // Draft -11 §Common Metadata: exactly the algorithms its verifiers accept.
    assert_eq!(
        json["accept_signature_algs"],
        serde_json::json!(["Ed25519", "ES256"])
    );
}

#[tokio::test]
async fn each_failed_check_has_its_code_and_issues_nothing() {
    let w = world();
    let t = w.tokens(600);
    let stranger = PrivateKey::ed25519_from_seed(&[66; 32]);
    let other_person = PersonTokenBuilder::new(
        id("https://ps.example"),
        id("https://other.example"),
        "alice-at-resource",
        w.agent.public_key(),
    )
    .sign(&w.ps, "ps-1", NOW, &mut OsRandom)
    .unwrap();
    let forged_person = PersonTokenBuilder::new(
        id("https://ps.example"),
        id("https://resource.example"),
        "alice-at-resource",
        w.agent.public_key(),
    )
    .sign(&stranger, "ps-1", NOW, &mut OsRandom)
    .unwrap();
    let good = |rt: String| serde_json::json!({"resource_token": rt, "agent_token": t.agent, "presented_token": t.person});
    let cases: Vec<(&str, serde_json::Value, StatusCode, &str)> = vec![
        (
            // Five minutes ahead of this server's clock, beyond the 60 s skew.
            "a resource token issued in the future",
            good(
                ResourceTokenBuilder::new(
                    id("https://resource.example"),
                    id("https://as.example"),
                    id("https://ps.example"),
                    "alice-at-resource",
                    t.person_jti.clone(),
                    w.agent.public_key(),
                    "calendar.read",
                )
                .sign(&w.rs, "rs-1", NOW.plus(300), &mut OsRandom)
                .unwrap()
                .token,
            ),
            StatusCode::BAD_REQUEST,
            "clock_skew",
        ),
        (
            "no presented_token",
            serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "no agent_token",
            serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "presented_token": t.person}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "a forged agent token",
            serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": "a.b.c", "presented_token": t.person}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "a resource token for another AS",
            good(
                ResourceTokenBuilder::new(
                    id("https://resource.example"),
                    id("https://as2.example"),
                    id("https://ps.example"),
                    "alice-at-resource",
                    t.person_jti.clone(),
                    w.agent.public_key(),
                    "calendar.read",
                )
                .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
                .unwrap()
                .token,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_resource_token",
        ),
        (
            "a resource token naming another key",
            good(
                ResourceTokenBuilder::new(
                    id("https://resource.example"),
                    id("https://as.example"),
                    id("https://ps.example"),
                    "alice-at-resource",
                    t.person_jti.clone(),
                    stranger.public_key(),
                    "calendar.read",
                )
                .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
                .unwrap()
                .token,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_resource_token",
        ),
        (
            "a resource token naming another PS",
            good(
                ResourceTokenBuilder::new(
                    id("https://resource.example"),
                    id("https://as.example"),
                    id("https://ps2.example"),
                    "alice-at-resource",
                    t.person_jti.clone(),
                    w.agent.public_key(),
                    "calendar.read",
                )
                .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
                .unwrap()
                .token,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_resource_token",
        ),
        (
            "a presented token for another resource",
            serde_json::json!({"resource_token": ResourceTokenBuilder::new(id("https://resource.example"), id("https://as.example"), id("https://ps.example"), "alice-at-resource", other_person.jti.clone(), w.agent.public_key(), "calendar.read").sign(&w.rs, "rs-1", NOW, &mut OsRandom).unwrap().token, "agent_token": t.agent, "presented_token": other_person.token}),
            StatusCode::BAD_REQUEST,
            "invalid_presented_token",
        ),
        (
            "a presented token not signed by the PS",
            serde_json::json!({"resource_token": ResourceTokenBuilder::new(id("https://resource.example"), id("https://as.example"), id("https://ps.example"), "alice-at-resource", forged_person.jti.clone(), w.agent.public_key(), "calendar.read").sign(&w.rs, "rs-1", NOW, &mut OsRandom).unwrap().token, "agent_token": t.agent, "presented_token": forged_person.token}),
            StatusCode::BAD_REQUEST,
            "invalid_presented_token",
        ),
        (
            "presented_jti of another token",
            good(
                ResourceTokenBuilder::new(
                    id("https://resource.example"),
                    id("https://as.example"),
                    id("https://ps.example"),
                    "alice-at-resource",
                    "pt-other",
                    w.agent.public_key(),
                    "calendar.read",
                )
                .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
                .unwrap()
                .token,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_resource_token",
        ),
        (
            "sub of another person",
            good(
                ResourceTokenBuilder::new(
                    id("https://resource.example"),
                    id("https://as.example"),
                    id("https://ps.example"),
                    "bob-at-resource",
                    t.person_jti.clone(),
                    w.agent.public_key(),
                    "calendar.read",
                )
                .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
                .unwrap()
                .token,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_resource_token",
        ),
        (
            "a mission the presented token does not carry",
            good(w.resource_token(&t, |b| b.mission_s256("A".repeat(43)))),
            StatusCode::BAD_REQUEST,
            "invalid_resource_token",
        ),
    ];
    for (what, body, status, code) in cases {
        let (s, json) = w.ask(&body).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (status, Some(code)),
            "{what}: {json}"
        );
        assert_eq!(
            w.server.issued().await.unwrap(),
            0,
            "{what}: nothing issued"
        );
        // Each refusal is in the audit log with its code, and no token in it.
        let last = w
            .server
            .audit(&aauth_metadata::audit::AuditQuery::default().limit(1))
            .await
            .unwrap()
            .events;
        assert_eq!(
            last[0].action,
            aauth_metadata::audit::AuditAction::Refused,
            "{what}"
        );
        assert!(
            last[0].detail.starts_with(&format!("{code}: ")),
            "{what}: {}",
            last[0].detail
        );
        assert!(
            !last[0].detail.contains("eyJ"),
            "{what}: a token in {}",
            last[0].detail
        );
    }

    // An untrusted Person Server, properly signed: refused.
    let (s, json) = w
        .ask_as(
            &good(w.resource_token(&t, |b| b)),
            "https://ps2.example",
            &w.ps,
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied"))
    );
    // A signature by a key that is not the PS's: 401 with Signature-Error.
    let (s, _) = w
        .ask_as(
            &good(w.resource_token(&t, |b| b)),
            "https://ps.example",
            &stranger,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(w.server.issued().await.unwrap(), 0);

    // And the well-formed request is granted (the cases above were refused for their
    // one defect).
    let (s, json) = w.ask(&good(w.resource_token(&t, |b| b))).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(w.server.issued().await.unwrap(), 1);
    let _ = t.person_exp;
}

#[tokio::test]
async fn upstream_tokens_are_for_the_intermediary_from_the_ps_and_cap_the_grant() {
    let w = world();
    // The intermediary: resource.example is also its own agent provider here; its agent
    // token's iss is what the upstream token must be addressed to.
    let t = w.tokens(3000);
    let rt = w.resource_token(&t, |b| b);
    let upstream = |aud: &str, ps: &PrivateKey, lifetime: u64| {
        PersonTokenBuilder::new(
            id("https://ps.example"),
            id(aud),
            "alice-at-intermediary",
            &PrivateKey::ed25519_from_seed(&[9; 32]).public_key().clone(),
        )
        .lifetime(Duration::from_secs(lifetime))
        .sign(ps, "ps-1", NOW, &mut OsRandom)
        .unwrap()
    };
    let ask = |up: &str| serde_json::json!({"resource_token": rt, "agent_token": t.agent, "presented_token": t.person, "upstream_token": up});
    // The agent token's iss is agent.example: an upstream token for it caps the grant.
    let good = upstream("https://agent.example", &w.ps, 600);
    let (s, json) = w.ask(&ask(&good.token)).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let c = Unverified::<AuthClaims>::decode(
        json["auth_token"].as_str().unwrap(),
        &Validation::new(NOW).audience(&id("https://resource.example")),
    )
    .unwrap()
    .unverified_claims()
    .clone();
    assert_eq!(c.exp, good.exp, "never outlives the upstream token");
    let raw = serde_json::to_value(&c).unwrap();
    assert!(raw.get("act").is_none(), "no act claim: {raw}");

    for (what, up) in [
        (
            "for another audience",
            upstream("https://elsewhere.example", &w.ps, 600).token,
        ),
        (
            "not from the PS asking",
            upstream(
                "https://agent.example",
                &PrivateKey::ed25519_from_seed(&[66; 32]),
                600,
            )
            .token,
        ),
        ("not a person or auth token", t.agent.clone()),
    ] {
        let before = w.server.issued().await.unwrap();
        let (s, json) = w.ask(&ask(&up)).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_upstream_token")),
            "{what}: {json}"
        );
        assert_eq!(
            w.server.issued().await.unwrap(),
            before,
            "{what}: nothing issued"
        );
    }
}

/// A resource's revocation endpoint as seen through the Access Server's transport.
#[derive(Default)]
struct Resources {
    /// The revocations it received: (`jti`, whether signed as the AS).
    got: std::sync::Mutex<Vec<(String, bool)>>,
}

#[async_trait::async_trait]
impl aauth_metadata::Transport for Resources {
    async fn send(
        &self,
        req: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, aauth_metadata::TransportError> {
        if req.method() == http::Method::GET {
            assert_eq!(
                req.uri(),
                "https://resource.example/.well-known/aauth-resource.json"
            );
            return Ok(http::Response::new(bytes::Bytes::from_static(
                br#"{"issuer":"https://resource.example","jwks_uri":"https://resource.example/jwks.json","revocation_endpoint":"https://resource.example/revocation"}"#,
            )));
        }
        assert_eq!(req.uri(), "https://resource.example/revocation");
        let signed = req
            .headers()
            .get("signature-key")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains(r#"id="https://as.example";dwk="aauth-access.json""#));
        let body: serde_json::Value = serde_json::from_slice(req.body()).unwrap();
        self.got
            .lock()
            .unwrap()
            .push((body["jti"].as_str().unwrap().to_owned(), signed));
        Ok(http::Response::new(bytes::Bytes::new()))
    }
}

impl World {
    /// resource.example revokes resource token `rt` (AS-42).
    async fn revoke_resource_token(&self, rt: &str) -> StatusCode {
        let jti = Unverified::<aauth_tokens::ResourceClaims>::decode(
            rt,
            &Validation::new(NOW).audience(&id("https://as.example")),
        )
        .unwrap()
        .unverified_claims()
        .jti
        .clone();
        self.revoke(
            &jti,
            "https://resource.example",
            "aauth-resource.json",
            "rs-1",
            &self.rs,
        )
        .await
        .0
    }

    /// A revocation of `jti` signed as `signer` (`dwk`, `kid`) with `key`.
    async fn revoke(
        &self,
        jti: &str,
        signer: &str,
        dwk: &str,
        kid: &str,
        key: &PrivateKey,
    ) -> (StatusCode, serde_json::Value) {
        let body = serde_json::json!({"jti": jti, "exp": NOW.0 + 3600});
        let (s, _, json) = self
            .send_signed("POST", "/revocation", Some(&body), (signer, dwk, kid), key)
            .await;
        (s, json)
    }
}

#[tokio::test]
async fn a_revoked_person_token_cascades_to_the_resources_and_is_never_honoured_again() {
    let resources = Arc::new(Resources::default());
    let mut w = world();
    w.server = w.server.revocation_transport(resources.clone());
    let t = w.tokens(600);
    let body = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (s, json) = w.ask(&body).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let auth_jti = Unverified::<AuthClaims>::decode(
        json["auth_token"].as_str().unwrap(),
        &Validation::new(NOW).audience(&id("https://resource.example")),
    )
    .unwrap()
    .unverified_claims()
    .jti
    .clone();

    // Only a trusted Person Server (or a resource) revokes here.
    let stranger = PrivateKey::ed25519_from_seed(&[66; 32]);
    let (s, json) = w
        .revoke(
            &t.person_jti,
            "https://ps2.example",
            "aauth-person.json",
            "ps-1",
            &w.ps,
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("unsupported_iss"))
    );
    let (s, _) = w
        .revoke(
            &t.person_jti,
            "https://ps.example",
            "aauth-person.json",
            "ps-1",
            &stranger,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(resources.got.lock().unwrap().is_empty());

    // The PS revokes the person token: the auth token is revoked at its resource, signed
    // as the Access Server, and the outcome reported.
    let (s, json) = w
        .revoke(
            &t.person_jti,
            "https://ps.example",
            "aauth-person.json",
            "ps-1",
            &w.ps,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(
        json,
        serde_json::json!({"downstream": [{"recipient": "https://resource.example"}]})
    );
    assert_eq!(*resources.got.lock().unwrap(), vec![(auth_jti, true)]);
    // Never again against that person token.
    let (s, json) = w.ask(&body).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked_presented_token"))
    );
    assert_eq!(w.server.issued().await.unwrap(), 1);
}

#[tokio::test]
async fn without_a_way_to_resources_the_cascade_says_so_and_resources_revoke_their_tokens() {
    let w = world();
    let t = w.tokens(600);
    let body = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    assert_eq!(w.ask(&body).await.0, StatusCode::OK);
    let (s, json) = w
        .revoke(
            &t.person_jti,
            "https://ps.example",
            "aauth-person.json",
            "ps-1",
            &w.ps,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        json,
        serde_json::json!({"downstream": [{"recipient": "https://resource.example", "error": "revocation_unsupported"}]})
    );

    // A resource revokes a resource token naming this server (AS-42).
    let w = world();
    let t = w.tokens(600);
    let rt = w.resource_token(&t, |b| b);
    assert_eq!(w.revoke_resource_token(&rt).await, StatusCode::OK);
    let (s, json) = w
        .ask(&serde_json::json!({"resource_token": rt, "agent_token": t.agent, "presented_token": t.person}))
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked_resource_token"))
    );
    let (s, json) = w
        .ask(&serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person}))
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "another resource token is not revoked: {json}"
    );
}

/// Wants the person's email first; grants read access to example.com people.
struct WantsEmail;
impl AccessPolicy for WantsEmail {
    fn decide(&self, r: &AccessRequest<'_>) -> AccessDecision {
        match r.claims {
            None => AccessDecision::RequireClaims(vec!["email".to_owned(), "sub".to_owned()]),
            Some(c)
                if c.get("email")
                    .and_then(|e| e.as_str())
                    .is_some_and(|e| e.ends_with("@example.com")) =>
            {
                AccessDecision::GrantScope("calendar.read".to_owned())
            }
            Some(_) => AccessDecision::Deny("only example.com people".to_owned()),
        }
    }
}

impl World {
    /// A signed `POST` of `body` to `path`, as `ps_id` with `key`.
    async fn post_path(
        &self,
        path: &str,
        body: &serde_json::Value,
        ps_id: &str,
        key: &PrivateKey,
    ) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        self.send_signed(
            "POST",
            path,
            Some(body),
            (ps_id, "aauth-person.json", "ps-1"),
            key,
        )
        .await
    }
}

#[tokio::test]
async fn claims_are_asked_of_the_person_server_never_sub_and_decide_the_grant() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(WantsEmail));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let ask = || async {
        let (s, h, json) = w
            .post_path(AUTH_TOKEN_PATH, &request, "https://ps.example", &w.ps)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{json}");
        assert_eq!(h["aauth-requirement"], "requirement=claims");
        assert_eq!(
            json["required_claims"],
            serde_json::json!(["email"]),
            "never sub"
        );
        h["location"].to_str().unwrap().to_owned()
    };
    let location = ask().await;
    assert!(location.starts_with(aauth_access_server::PENDING_PATH));
    assert_eq!(w.server.issued().await.unwrap(), 0);

    // Only the Person Server that asked may answer; an object of claims.
    let (s, _, _) = w
        .post_path(
            &location,
            &serde_json::json!({"email": "alice@example.com"}),
            "https://ps.example",
            &PrivateKey::ed25519_from_seed(&[66; 32]),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, json) = w
        .post_path(
            &location,
            &serde_json::json!(["email"]),
            "https://ps.example",
            &w.ps,
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (s, _, _) = w
        .post_path(
            "/pending/unknown",
            &serde_json::json!({"email": "alice@example.com"}),
            "https://ps.example",
            &w.ps,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The claims decide: a sub sent along is ignored (the person is ps and sub already).
    let (s, _, json) = w
        .post_path(
            &location,
            &serde_json::json!({"email": "alice@example.com", "sub": "someone-else"}),
            "https://ps.example",
            &w.ps,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let c = Unverified::<AuthClaims>::decode(
        json["auth_token"].as_str().unwrap(),
        &Validation::new(NOW).audience(&id("https://resource.example")),
    )
    .unwrap()
    .unverified_claims()
    .clone();
    assert_eq!(
        (c.sub.as_str(), c.scope.as_deref()),
        ("alice-at-resource", Some("calendar.read"))
    );
    // Answered once: the pending URL says it ended (draft -11: 410 once answered).
    let (s, _, json) = w
        .post_path(
            &location,
            &serde_json::json!({"email": "alice@example.com"}),
            "https://ps.example",
            &w.ps,
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::GONE, Some("invalid_code"))
    );

    // Claims that do not satisfy the policy: refused, nothing issued.
    let location = ask().await;
    let (s, _, json) = w
        .post_path(
            &location,
            &serde_json::json!({"email": "mallory@elsewhere.example"}),
            "https://ps.example",
            &w.ps,
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied"))
    );
    assert_eq!(w.server.issued().await.unwrap(), 1);
}

/// Wants the person to approve their Person Server here once.
struct BindFirst;
impl AccessPolicy for BindFirst {
    fn decide(&self, r: &AccessRequest<'_>) -> AccessDecision {
        if r.bound {
            AccessDecision::Grant
        } else {
            AccessDecision::RequireInteraction
        }
    }
}

impl World {
    /// A signed `GET` of `path` as `ps_id` with `key`.
    /// A `GET` of `path` signed as ps.example, with the response headers.
    async fn get_full(&self, path: &str) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        self.send_signed(
            "GET",
            path,
            None,
            ("https://ps.example", "aauth-person.json", "ps-1"),
            &self.ps,
        )
        .await
    }

    async fn get_path(
        &self,
        path: &str,
        ps_id: &str,
        key: &PrivateKey,
    ) -> (StatusCode, serde_json::Value) {
        let (s, _, json) = self
            .send_signed("GET", path, None, (ps_id, "aauth-person.json", "ps-1"), key)
            .await;
        (s, json)
    }

    /// The person's browser at the Access Server: `method` on `target` with `form`.
    /// A token request the policy defers for the person (asked as `ps_id`): its pending
    /// URL and the interaction code of its `requirement=interaction`.
    async fn deferred_for_the_person(
        &self,
        request: &serde_json::Value,
        ps_id: &str,
    ) -> (String, String) {
        let (s, h, json) = self
            .post_path(AUTH_TOKEN_PATH, request, ps_id, &self.ps)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{json}");
        let requirement = h["aauth-requirement"].to_str().unwrap();
        assert!(
            requirement
                .starts_with(r#"requirement=interaction;url="https://as.example/interact";code=""#),
            "{requirement}"
        );
        let code = requirement
            .split("code=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches('"')
            .to_owned();
        (h["location"].to_str().unwrap().to_owned(), code)
    }

    /// alice's browser, signed in here, on this server's own page.
    async fn page(&self, method: &str, target: &str, form: &str) -> (StatusCode, String) {
        let (s, _, html) = self
            .page_with(
                method,
                target,
                form,
                &[
                    ("cookie", "as-session=alice"),
                    ("origin", "https://as.example"),
                ],
            )
            .await;
        (s, html)
    }

    /// A browser (or anyone) at the Access Server with these headers.
    async fn page_with(
        &self,
        method: &str,
        target: &str,
        form: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, http::HeaderMap, String) {
        self.page_with_at(method, target, form, headers, NOW).await
    }

    /// [`World::page_with`] at time `at`.
    async fn page_with_at(
        &self,
        method: &str,
        target: &str,
        form: &str,
        headers: &[(&str, &str)],
        at: UnixTime,
    ) -> (StatusCode, http::HeaderMap, String) {
        let mut b = http::Request::builder()
            .method(method)
            .uri(target)
            .header("host", "as.example")
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (mut parts, body) = b.body(form.as_bytes().to_vec()).unwrap().into_parts();
        parts.uri = target.parse().unwrap();
        let resp = served(self.server.handle(&parts, &body, at).await);
        (
            resp.status(),
            resp.headers().clone(),
            String::from_utf8_lossy(resp.body()).into_owned(),
        )
    }
}

#[tokio::test]
async fn the_person_binds_their_person_server_here_once_and_the_request_completes() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(BindFirst));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (location, code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;

    // Until the person approves, the Person Server's poll waits (a 202 that names its
    // pending URL, draft -11 §Pending Response); nobody else may poll.
    let (s, h, json) = w.get_full(&location).await;
    assert_eq!(
        (s, json["status"].as_str()),
        (StatusCode::ACCEPTED, Some("interacting"))
    );
    assert_eq!(h["location"].to_str().unwrap(), location);
    let (s, _) = w
        .get_path(
            &location,
            "https://ps.example",
            &PrivateKey::ed25519_from_seed(&[66; 32]),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(w.server.issued().await.unwrap(), 0);

    // The person's page names their Person Server and the resource; a wrong code opens nothing.
    let (s, html) = w.page("GET", &format!("/interact?code={code}"), "").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains("https://ps.example") && html.contains("https://resource.example"),
        "{html}"
    );
    let (s, _) = w.page("GET", "/interact?code=ZZZZZZZZ", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // As a person types it (draft -11 §Interaction Code Format): lower case, grouped with a
    // hyphen, `0` read as `O` and `1` as `l`, all open the same request.
    let typed = format!("{}-{}", &code[..4], &code[4..])
        .to_lowercase()
        .replace('0', "o")
        .replace('1', "l");
    let (s, html) = w.page("GET", &format!("/interact?code={typed}"), "").await;
    assert_eq!(s, StatusCode::OK, "{typed}: {html}");
    let (s, html) = w
        .page("POST", "/interact", &format!("code={code}&decision=grant"))
        .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    // Single use.
    let (s, _) = w
        .page("POST", "/interact", &format!("code={code}&decision=grant"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Now the poll gets the token, once.
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert!(json["auth_token"].is_string());
    let (s, _) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::GONE);
    // And the binding holds: the next request is granted at once.
    let (s, _, json) = w
        .post_path(AUTH_TOKEN_PATH, &serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person}), "https://ps.example", &w.ps)
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(w.server.issued().await.unwrap(), 2);
}

/// Asks for the person whatever happens: a policy bug.
struct AlwaysInteract;
impl AccessPolicy for AlwaysInteract {
    fn decide(&self, _: &AccessRequest<'_>) -> AccessDecision {
        AccessDecision::RequireInteraction
    }
}

#[tokio::test]
async fn a_policy_that_asks_again_after_the_approval_is_a_refusal_not_a_loop() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(AlwaysInteract));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (location, code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let (s, _) = w
        .page("POST", "/interact", &format!("code={code}&decision=grant"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied"))
    );
    assert_eq!(w.server.issued().await.unwrap(), 0);
}

/// Someone other than the person approves each request.
struct ApproverFirst;
impl AccessPolicy for ApproverFirst {
    fn decide(&self, r: &AccessRequest<'_>) -> AccessDecision {
        if r.approved {
            AccessDecision::Grant
        } else {
            AccessDecision::RequireApproval
        }
    }
}

#[tokio::test]
async fn an_approval_out_of_band_decides_the_waiting_request() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(ApproverFirst));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    for approve in [true, false] {
        let (s, h, _) = w
            .post_path(AUTH_TOKEN_PATH, &request, "https://ps.example", &w.ps)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        assert_eq!(h["aauth-requirement"], "requirement=approval");
        let location = h["location"].to_str().unwrap().to_owned();
        let id = location
            .trim_start_matches(aauth_access_server::PENDING_PATH)
            .to_owned();
        assert_eq!(
            w.server.awaiting_approval(NOW).await.unwrap(),
            vec![id.clone()]
        );
        let (s, _) = w.get_path(&location, "https://ps.example", &w.ps).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        assert!(w.server.decide_approval(&id, approve, NOW).await.unwrap());
        assert!(
            !w.server.decide_approval(&id, approve, NOW).await.unwrap(),
            "decided once"
        );
        let (s, json) = w.get_path(&location, "https://ps.example", &w.ps).await;
        if approve {
            assert_eq!(s, StatusCode::OK, "{json}");
        } else {
            assert_eq!(
                (s, json["error"].as_str()),
                (StatusCode::FORBIDDEN, Some("denied"))
            );
        }
        assert!(w.server.awaiting_approval(NOW).await.unwrap().is_empty());
    }
    assert_eq!(w.server.issued().await.unwrap(), 1);
}

#[tokio::test]
async fn only_a_person_signed_in_here_binds_and_only_from_this_servers_page() {
    let mut w = world();
    w.server = w.server.policy(Arc::new(BindFirst));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (location, code) = w
        .deferred_for_the_person(&request, "https://ps.example")
        .await;
    let form = format!("code={code}&decision=grant");

    // The agent holds the code too: not signed in, it is sent to the login, and its
    // approval binds nothing.
    let (s, headers, _) = w
        .page_with("GET", &format!("/interact?code={code}"), "", &[])
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(
        headers["location"],
        format!("https://login.as.example/?return_to=/interact?code={code}").as_str()
    );
    // A form's answer goes to the login (on another origin here) by a page that
    // refreshes: the interaction page's `form-action 'self'` would hold a redirect.
    let (s, headers, _) = w
        .page_with(
            "POST",
            "/interact",
            &form,
            &[("origin", "https://as.example")],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        headers["refresh"],
        format!("0; url=https://login.as.example/?return_to=/interact?code={code}").as_str()
    );
    assert!(headers.get("location").is_none());
    // A signed-in person's browser, made to post from another site: refused (CSRF).
    for cross in [
        vec![
            ("cookie", "as-session=alice"),
            ("origin", "https://evil.example"),
        ],
        vec![
            ("cookie", "as-session=alice"),
            ("sec-fetch-site", "cross-site"),
        ],
        vec![("cookie", "as-session=alice")],
    ] {
        let (s, _, _) = w.page_with("POST", "/interact", &form, &cross).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{cross:?}");
    }
    let (s, _) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::ACCEPTED, "still waiting for the person");

    // alice, signed in, on the page: named, and her approval binds.
    let (s, html) = w.page("GET", &format!("/interact?code={code}"), "").await;
    assert!(
        s == StatusCode::OK && html.contains("Signed in as alice"),
        "{html}"
    );
    assert_eq!(w.page("POST", "/interact", &form).await.0, StatusCode::OK);
    let (s, _) = w.get_path(&location, "https://ps.example", &w.ps).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn without_a_login_the_person_cannot_be_asked_here() {
    let mut w = build_world(Box::new(|k| k), false);
    w.server = w.server.policy(Arc::new(BindFirst));
    let t = w.tokens(600);
    let request = serde_json::json!({"resource_token": w.resource_token(&t, |b| b), "agent_token": t.agent, "presented_token": t.person});
    let (s, json) = w.ask(&request).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("server_error")),
        "{json}"
    );
    assert!(
        json["detail"]
            .as_str()
            .unwrap()
            .contains("people_authenticator")
    );
    assert_eq!(w.server.issued().await.unwrap(), 0);
}

/// What the server's service answers: the response, or `404` for a path that is not the
/// server's (`handle` says `None`).
pub(crate) fn served(resp: Option<http::Response<bytes::Bytes>>) -> http::Response<bytes::Bytes> {
    resp.unwrap_or_else(|| {
        let mut r = http::Response::new(bytes::Bytes::new());
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    })
}
