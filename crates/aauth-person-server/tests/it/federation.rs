//! Four-party federation from the Person Server's side (PS-50…54), against a scripted
//! Access Server: its token is checked before the agent gets it; a down, failing or
//! lying Access Server is `502 as_unreachable` with nothing issued; its refusals are
//! relayed with their status and `error`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_metadata::{Transport, TransportError};
use aauth_person_server::AUTH_TOKEN_PATH;
use aauth_tokens::{AuthIssuer, AuthTokenBuilder, PersonClaims, ResourceTokenBuilder};
use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;

use crate::consent::{assert_error, code_of, header_of};
use crate::{NOW, World, id, world};
use aauth_test_support::verify::issuer_keys;

/// What the scripted Access Server answers the token request with.
pub(crate) type Answer =
    Box<dyn Fn(&serde_json::Value) -> Result<http::Response<Bytes>, TransportError> + Send + Sync>;

pub(crate) struct ScriptedAs {
    answer: Answer,
    /// The token requests it received, and whether each was signed as the PS.
    seen: Mutex<Vec<(serde_json::Value, bool)>>,
}

#[async_trait]
impl Transport for ScriptedAs {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        if req.method() == http::Method::GET {
            assert_eq!(
                req.uri(),
                "https://as.example/.well-known/aauth-access.json"
            );
            return Ok(http::Response::new(Bytes::from_static(
                br#"{"issuer":"https://as.example","jwks_uri":"https://as.example/jwks.json","auth_token_endpoint":"https://as.example/auth-token"}"#,
            )));
        }
        assert_eq!(req.uri(), "https://as.example/auth-token");
        let signed_as_ps = req
            .headers()
            .get("signature-key")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.contains(r#"jwks_uri;id="https://ps.example";dwk="aauth-person.json""#)
            })
            && req
                .headers()
                .get("signature-input")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("\"content-digest\""));
        let body: serde_json::Value = serde_json::from_slice(req.body()).unwrap();
        self.seen.lock().unwrap().push((body.clone(), signed_as_ps));
        (self.answer)(&body)
    }
}

pub(crate) fn ok(json: &serde_json::Value) -> Result<http::Response<Bytes>, TransportError> {
    Ok(http::Response::new(Bytes::from(json.to_string())))
}

/// The AS's key, and a world whose PS federates through `transport` and knows the AS's key.
pub(crate) fn federated_world(transport: Arc<ScriptedAs>) -> World {
    let mut w = world();
    let as_key = PrivateKey::ed25519_from_seed(&[55; 32]);
    // The PS must know the AS's published key: rebuild it with the AS in its key set.
    let keys = issuer_keys(&[
        (
            "https://agent.example",
            "aauth-agent.json",
            "key-1",
            w.provider.public_key(),
        ),
        (
            "https://resource.example",
            "aauth-resource.json",
            "rs-1",
            w.rs.public_key(),
        ),
        (
            "https://as.example",
            "aauth-access.json",
            "as-1",
            as_key.public_key(),
        ),
        // resource.example is also its own agent provider (an intermediary).
        (
            "https://resource.example",
            "aauth-agent.json",
            "rs-agents",
            w.rs.public_key(),
        ),
    ]);
    let mem = Arc::new(aauth_person_server::MemoryStore::default());
    w.ps = aauth_person_server::PersonServer::new(
        id("https://ps.example"),
        Arc::new(PrivateKey::ed25519_from_seed(&[4; 32])),
        "ps-1",
        Arc::new(keys),
        Arc::clone(&mem) as Arc<dyn aauth_person_server::PsStore>,
        [9; 32],
    )
    .unwrap()
    // Chained requests approved too, as in the other test worlds.
    .policy(Arc::new(aauth_person_server::dangerous::AutoApproveChained))
    .federation(transport);
    w.mem = Some(mem);
    w
}

fn as_key() -> PrivateKey {
    PrivateKey::ed25519_from_seed(&[55; 32])
}

/// An auth token as the AS would issue it for the request `body`, spoiled by `tweak`.
pub(crate) fn as_token(
    w: &World,
    pc: &PersonClaims,
    tweak: impl FnOnce(AuthTokenBuilder) -> AuthTokenBuilder,
) -> String {
    tweak(
        AuthTokenBuilder::new(
            AuthIssuer::AccessServer,
            id("https://as.example"),
            id("https://resource.example"),
            id("https://ps.example"),
            pc.sub.clone(),
            w.agent.public_key(),
        )
        .scope("read")
        .not_after(aauth_keys::time::UnixTime(pc.exp)),
    )
    .sign(&as_key(), "as-1", NOW, &mut OsRandom)
    .unwrap()
    .token
}

/// alice's person token and a four-party resource token (aud: the AS) derived from it.
pub(crate) async fn request(w: &World) -> (serde_json::Value, PersonClaims) {
    w.bind("aauth:assistant@agent.example", "alice").await;
    let person = w.person_token("https://resource.example").await;
    let pc: PersonClaims = w.read(&person, "https://resource.example");
    let rt = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://as.example"),
        id("https://ps.example"),
        pc.sub.clone(),
        pc.jti.clone(),
        w.agent.public_key(),
        "read",
    )
    .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    (
        serde_json::json!({"resource_token": rt, "presented_token": person}),
        pc,
    )
}

/// alice's password set here, and the agent's auth-token request ([`request`], able to
/// send her to this server) sent and waiting: its pending URL, its interaction code, and
/// the claims of the person token it presents.
pub(crate) async fn waiting_for_alice(w: &World) -> (String, String, PersonClaims) {
    w.ps.set_password("alice", "correct horse battery")
        .await
        .unwrap();
    let (mut body, pc) = request(w).await;
    body["capabilities"] = serde_json::json!(["interaction"]);
    let (s, headers, json) = w.post_full(AUTH_TOKEN_PATH, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    (header_of(&headers, "location"), code_of(&headers), pc)
}

pub(crate) fn scripted(answer: Answer) -> Arc<ScriptedAs> {
    Arc::new(ScriptedAs {
        answer,
        seen: Mutex::new(Vec::new()),
    })
}

#[tokio::test]
async fn the_access_servers_token_is_checked_and_handed_on() {
    // The AS answers with a good token (minted when asked, for the request's person).
    let holder: Arc<Mutex<Option<String>>> = Arc::default();
    let h = Arc::clone(&holder);
    let transport = scripted(Box::new(move |_| {
        ok(
            &serde_json::json!({"auth_token": h.lock().unwrap().clone().unwrap(), "expires_in": 3600}),
        )
    }));
    let w = federated_world(Arc::clone(&transport));
    let (body, pc) = request(&w).await;
    *holder.lock().unwrap() = Some(as_token(&w, &pc, |b| b));
    let (s, json) = w.post(AUTH_TOKEN_PATH, body).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(
        json["auth_token"].as_str(),
        holder.lock().unwrap().as_deref()
    );
    let seen = transport.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (sent, signed) = &seen[0];
    assert!(signed, "signed as the PS, body covered");
    for member in ["resource_token", "agent_token", "presented_token"] {
        assert!(sent[member].is_string(), "{member} sent: {sent}");
    }
    let recorded = auth_jti(json["auth_token"].as_str().unwrap());
    assert!(
        w.ps.store()
            .auth_token(&recorded, NOW)
            .await
            .unwrap()
            .is_some(),
        "recorded for revocation"
    );
}

/// The `jti` of an auth token (unverified: the test minted it).
pub(crate) fn auth_jti(token: &str) -> String {
    aauth_tokens::Unverified::<aauth_tokens::AuthClaims>::decode(
        token,
        &aauth_tokens::Validation::new(NOW).audience(&id("https://resource.example")),
    )
    .unwrap()
    .unverified_claims()
    .jti
    .clone()
}

/// A four-party step-up resource token for `read write`, derived from the auth token
/// `presented_jti` names.
fn step_up(w: &World, pc: &PersonClaims, presented_jti: String) -> String {
    ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://as.example"),
        id("https://ps.example"),
        pc.sub.clone(),
        presented_jti,
        w.agent.public_key(),
        "read write",
    )
    .sign(&w.rs, "rs-1", NOW, &mut OsRandom)
    .unwrap()
    .token
}

#[tokio::test]
async fn a_step_up_presents_the_access_servers_own_token_back() {
    // Draft -11 §Auth Token Verification (checklist PS-31): in four-party access the
    // presented token of a step-up is the auth token the Access Server issued.
    let holder: Arc<Mutex<Option<String>>> = Arc::default();
    let h = Arc::clone(&holder);
    let transport = scripted(Box::new(move |_| {
        ok(
            &serde_json::json!({"auth_token": h.lock().unwrap().clone().unwrap(), "expires_in": 3600}),
        )
    }));
    let w = federated_world(Arc::clone(&transport));
    let (body, pc) = request(&w).await;
    let first = as_token(&w, &pc, |b| b);
    *holder.lock().unwrap() = Some(first.clone());
    let (s, json) = w.post(AUTH_TOKEN_PATH, body).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let first_jti = auth_jti(&first);

    // The resource wants more: a step-up resource token derived from the AS's token.
    let step = step_up(&w, &pc, first_jti);
    *holder.lock().unwrap() = Some(as_token(&w, &pc, |b| b.scope("read write")));
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": step, "presented_token": first}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let seen = transport.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].0["presented_token"].as_str(), Some(first.as_str()));

    // An Access Server's token this Person Server never relayed is not presentable.
    let stray = as_token(&w, &pc, |b| b);
    let stray_jti = auth_jti(&stray);
    let step = step_up(&w, &pc, stray_jti);
    let (s, json) = w
        .post(
            AUTH_TOKEN_PATH,
            serde_json::json!({"resource_token": step, "presented_token": stray}),
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_presented_token")),
        "{json}"
    );
    assert_eq!(transport.seen.lock().unwrap().len(), 2, "nothing forwarded");
}

#[tokio::test]
async fn an_access_servers_token_is_an_upstream_token_for_call_chaining() {
    // Draft -11 §Call Chaining (checklist PS-61): the upstream token's issuer is "you or
    // an AS you presented a person token to".
    let holder: Arc<Mutex<Option<String>>> = Arc::default();
    let h = Arc::clone(&holder);
    let transport = scripted(Box::new(move |_| {
        ok(
            &serde_json::json!({"auth_token": h.lock().unwrap().clone().unwrap(), "expires_in": 3600}),
        )
    }));
    let w = federated_world(Arc::clone(&transport));
    let (body, pc) = request(&w).await;
    let up = as_token(&w, &pc, |b| b);
    *holder.lock().unwrap() = Some(up.clone());
    let (s, json) = w.post(AUTH_TOKEN_PATH, body).await;
    assert_eq!(s, StatusCode::OK, "{json}");

    // resource.example, as an intermediary, asks for alice at the next hop.
    let (ikey, itoken) = crate::chaining::intermediary(&w, NOW);
    let (s, json) = w
        .post_as(
            aauth_person_server::PERSON_TOKEN_PATH,
            &serde_json::json!({"resource": "https://other.example", "upstream_token": up}),
            &ikey,
            &itoken,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let person: PersonClaims = w.read(
        json["person_token"].as_str().unwrap(),
        "https://other.example",
    );
    assert_eq!(
        person.sub,
        w.ps.directed_sub("alice", &id("https://other.example"))
    );
    assert!(person.exp <= pc.exp, "never outlives the upstream token");

    // An Access Server's token the Person Server never relayed is not an upstream token.
    let stray = as_token(&w, &pc, |b| b);
    let (s, json) = w
        .post_as(
            aauth_person_server::PERSON_TOKEN_PATH,
            &serde_json::json!({"resource": "https://other.example", "upstream_token": stray}),
            &ikey,
            &itoken,
        )
        .await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_upstream_token")),
        "{json}"
    );
}

#[tokio::test]
async fn a_down_failing_or_lying_access_server_is_as_unreachable_and_nothing_is_issued() {
    // Each: what the AS does.
    let cases: Vec<(String, Answer)> = vec![
        (
            "down".to_owned(),
            Box::new(|_| Err(TransportError::new("connection refused"))),
        ),
        (
            "a 500".to_owned(),
            Box::new(|_| {
                let mut r = http::Response::new(Bytes::new());
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                Ok(r)
            }),
        ),
        (
            "a malformed answer".to_owned(),
            Box::new(|_| ok(&serde_json::json!({"auth_token": "not.a.jwt"}))),
        ),
        (
            "no token".to_owned(),
            Box::new(|_| ok(&serde_json::json!({}))),
        ),
    ];
    for (what, answer) in cases {
        let transport = scripted(answer);
        let w = federated_world(Arc::clone(&transport));
        let (body, _) = request(&w).await;
        let before = w.state();
        let (s, json) = w.post(AUTH_TOKEN_PATH, body).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_GATEWAY, Some("as_unreachable")),
            "{what}: {json}"
        );
        assert_eq!(w.state(), before, "{what}: nothing issued or recorded");
    }

    // Tokens that fail PS-53, minted for the actual request.
    type Mint = Box<dyn Fn(&World, &PersonClaims) -> String>;
    let spoils: Vec<(&str, Mint)> = vec![
        (
            "a broader scope",
            Box::new(|w, pc| as_token(w, pc, |b| b.scope("read write"))),
        ),
        (
            "another person",
            Box::new(|w, pc| {
                let mut other = pc.clone();
                other.sub = "someone-else".to_owned();
                as_token(w, &other, |b| b)
            }),
        ),
        (
            "a later exp",
            Box::new(|w, pc| {
                AuthTokenBuilder::new(
                    AuthIssuer::AccessServer,
                    id("https://as.example"),
                    id("https://resource.example"),
                    id("https://ps.example"),
                    pc.sub.clone(),
                    w.agent.public_key(),
                )
                .scope("read")
                .lifetime(Duration::from_secs(3600))
                .sign(&as_key(), "as-1", NOW, &mut OsRandom)
                .unwrap()
                .token
            }),
        ),
        (
            "another key",
            Box::new(|_, pc| {
                AuthTokenBuilder::new(
                    AuthIssuer::AccessServer,
                    id("https://as.example"),
                    id("https://resource.example"),
                    id("https://ps.example"),
                    pc.sub.clone(),
                    PrivateKey::ed25519_from_seed(&[77; 32]).public_key(),
                )
                .scope("read")
                .sign(&as_key(), "as-1", NOW, &mut OsRandom)
                .unwrap()
                .token
            }),
        ),
        (
            "another issuer's signature",
            Box::new(|w, pc| {
                AuthTokenBuilder::new(
                    AuthIssuer::AccessServer,
                    id("https://as.example"),
                    id("https://resource.example"),
                    id("https://ps.example"),
                    pc.sub.clone(),
                    w.agent.public_key(),
                )
                .scope("read")
                .sign(
                    &PrivateKey::ed25519_from_seed(&[78; 32]),
                    "as-1",
                    NOW,
                    &mut OsRandom,
                )
                .unwrap()
                .token
            }),
        ),
    ];
    for (what, mint) in spoils {
        let holder: Arc<Mutex<Option<String>>> = Arc::default();
        let h = Arc::clone(&holder);
        let transport = scripted(Box::new(move |_| {
            ok(&serde_json::json!({"auth_token": h.lock().unwrap().clone()}))
        }));
        let w = federated_world(transport);
        let (body, pc) = request(&w).await;
        *holder.lock().unwrap() = Some(mint(&w, &pc));
        let before = w.state();
        let (s, json) = w.post(AUTH_TOKEN_PATH, body).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_GATEWAY, Some("as_unreachable")),
            "{what}: {json}"
        );
        assert_eq!(w.state(), before, "{what}: nothing issued or recorded");
    }
}

#[tokio::test]
async fn the_access_servers_refusal_is_relayed() {
    let transport = scripted(Box::new(|_| {
        let mut r = http::Response::new(Bytes::from_static(
            br#"{"error":"denied","detail":"no access for agents on weekends"}"#,
        ));
        *r.status_mut() = StatusCode::FORBIDDEN;
        Ok(r)
    }));
    let w = federated_world(transport);
    let (body, _) = request(&w).await;
    let before = w.state();
    let (s, json) = w.post(AUTH_TOKEN_PATH, body).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("denied")),
        "{json}"
    );
    assert!(json["detail"].as_str().unwrap().contains("weekends"));
    assert_eq!(w.state(), before);
}

/// PS-54: a `4xx` that is no decision about the request (draft -11 gives the token
/// endpoint's errors `400` and `403`) is not relayed as if it were: a `401` refuses the
/// Person Server's own signature (relayed, the agent would take it for a refusal of its
/// own), a `404` or `405` is no token endpoint. No verifiable auth token: `502
/// as_unreachable`, nothing issued.
#[tokio::test]
async fn an_access_server_status_that_decides_nothing_is_as_unreachable() {
    let cases: [(StatusCode, &[(&str, &str)]); 5] = [
        (
            StatusCode::UNAUTHORIZED,
            &[("signature-error", "error=invalid_signature")],
        ),
        (StatusCode::NOT_FOUND, &[]),
        (StatusCode::METHOD_NOT_ALLOWED, &[]),
        (StatusCode::CONFLICT, &[]),
        // Busy, but without saying when to come back.
        (StatusCode::TOO_MANY_REQUESTS, &[]),
    ];
    for (status, headers) in cases {
        let transport = scripted(deferred(
            status,
            headers,
            br#"{"error":"invalid_signature","detail":"who are you"}"#,
        ));
        let w = federated_world(transport);
        let (body, _) = request(&w).await;
        let before = w.state();
        let (s, headers, json) = w.post_full(AUTH_TOKEN_PATH, body).await;
        assert_eq!(
            (s, json["error"].as_str()),
            (StatusCode::BAD_GATEWAY, Some("as_unreachable")),
            "{status}: {json}"
        );
        assert!(headers.get("signature-error").is_none(), "{status}");
        assert_eq!(w.state(), before, "{status}: nothing issued or recorded");
    }
}

/// PS-54: a busy Access Server's `429` reaches the agent with its `Retry-After`.
#[tokio::test]
async fn a_busy_access_servers_retry_after_is_relayed() {
    let transport = scripted(deferred(
        StatusCode::TOO_MANY_REQUESTS,
        &[("retry-after", "30")],
        br#"{"error":"rate_limited","detail":"slow down"}"#,
    ));
    let w = federated_world(transport);
    let (body, _) = request(&w).await;
    let (s, headers, json) = w.post_full(AUTH_TOKEN_PATH, body).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{json}"
    );
    assert_eq!(header_of(&headers, "retry-after"), "30");
    assert!(json["detail"].as_str().unwrap().contains("slow down"));
}

#[tokio::test]
async fn without_federation_a_resource_token_for_an_access_server_is_invalid() {
    let w = world();
    let (body, _) = request(&w).await;
    let (s, json) = w.post(AUTH_TOKEN_PATH, body).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_resource_token")),
        "{json}"
    );
}

/// An Access Server that never answers the token request.
struct SilentAs;
#[async_trait]
impl Transport for SilentAs {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        if req.method() == http::Method::GET {
            return Ok(http::Response::new(Bytes::from_static(
                br#"{"issuer":"https://as.example","jwks_uri":"https://as.example/jwks.json","auth_token_endpoint":"https://as.example/auth-token"}"#,
            )));
        }
        std::future::pending::<()>().await;
        unreachable!("never answers")
    }
}

#[tokio::test]
async fn a_slow_access_server_is_as_unreachable_within_the_deadline() {
    let mut w = federated_world(scripted(Box::new(|_| ok(&serde_json::json!({})))));
    w.ps =
        w.ps.federation(Arc::new(SilentAs))
            .federation_timeout(Duration::from_millis(200));
    let (body, _) = request(&w).await;
    let before = w.state();
    let started = std::time::Instant::now();
    let (s, json) = w.post(AUTH_TOKEN_PATH, body).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("as_unreachable")),
        "{json}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(w.state(), before, "nothing issued");
}

/// An Access Server that wants the person's email first.
struct ClaimsAs {
    token: Mutex<Option<String>>,
    /// The claims it was sent, and whether they were signed as the PS.
    got: Mutex<Vec<(serde_json::Value, bool)>>,
}

#[async_trait]
impl Transport for ClaimsAs {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        if req.method() == http::Method::GET {
            return Ok(http::Response::new(Bytes::from_static(
                br#"{"issuer":"https://as.example","jwks_uri":"https://as.example/jwks.json","auth_token_endpoint":"https://as.example/auth-token"}"#,
            )));
        }
        if req.uri() == "https://as.example/auth-token" {
            let mut r = http::Response::new(Bytes::from_static(
                br#"{"status":"pending","required_claims":["email","sub"]}"#,
            ));
            *r.status_mut() = StatusCode::ACCEPTED;
            r.headers_mut()
                .insert("location", "/pending/p1".parse().unwrap());
            r.headers_mut()
                .insert("aauth-requirement", "requirement=claims".parse().unwrap());
            return Ok(r);
        }
        assert_eq!(req.uri(), "https://as.example/pending/p1");
        let signed = req
            .headers()
            .get("signature-key")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains(r#"id="https://ps.example""#));
        self.got
            .lock()
            .unwrap()
            .push((serde_json::from_slice(req.body()).unwrap(), signed));
        ok(&serde_json::json!({"auth_token": self.token.lock().unwrap().clone()}))
    }
}

struct Directory;
impl aauth_person_server::ClaimsSource for Directory {
    fn claims(
        &self,
        request: &aauth_person_server::ClaimsRequest<'_>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        // This directory lets claims out to the one Access Server it knows.
        if request.access_server.as_str() != "https://as.example" {
            return m;
        }
        let account = request.account;
        for n in request.names {
            match n.as_str() {
                "email" => {
                    m.insert(n.clone(), format!("{account}@example.com").into());
                }
                // A directory that would hand out an identifier: never sent.
                "sub" => {
                    m.insert(n.clone(), "directory-id-7".into());
                }
                _ => {}
            }
        }
        m
    }
}

#[tokio::test]
async fn the_person_server_answers_an_access_servers_claims_itself_never_with_sub() {
    let access = Arc::new(ClaimsAs {
        token: Mutex::new(None),
        got: Mutex::new(Vec::new()),
    });
    let mut w = federated_world(scripted(Box::new(|_| ok(&serde_json::json!({})))));
    w.ps =
        w.ps.federation(access.clone())
            .claims_source(Arc::new(Directory));
    let (body, pc) = request(&w).await;
    *access.token.lock().unwrap() = Some(as_token(&w, &pc, |b| b));
    let (s, json) = w.post(AUTH_TOKEN_PATH, body).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    let got = access.got.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![(serde_json::json!({"email": "alice@example.com"}), true)]
    );
}

/// Records what the Person Server revokes where.
#[derive(Default)]
struct Notified {
    at_resources: Mutex<Vec<(String, String)>>,
    at_access_servers: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl aauth_person_server::RevocationNotifier for Notified {
    async fn notify(
        &self,
        resource: &aauth_tokens::ServerId,
        jti: &str,
        _: u64,
    ) -> Result<(), String> {
        self.at_resources
            .lock()
            .unwrap()
            .push((resource.as_str().to_owned(), jti.to_owned()));
        Ok(())
    }

    async fn notify_access_server(
        &self,
        access_server: &aauth_tokens::ServerId,
        jti: &str,
        _: u64,
    ) -> Result<(), String> {
        self.at_access_servers
            .lock()
            .unwrap()
            .push((access_server.as_str().to_owned(), jti.to_owned()));
        Ok(())
    }
}

#[tokio::test]
async fn revoking_the_agent_revokes_its_person_token_at_the_access_server_it_was_presented_to() {
    let holder: Arc<Mutex<Option<String>>> = Arc::default();
    let h = Arc::clone(&holder);
    let notified = Arc::new(Notified::default());
    let mut w = federated_world(scripted(Box::new(move |_| {
        ok(&serde_json::json!({"auth_token": h.lock().unwrap().clone()}))
    })));
    w.ps =
        w.ps.revoking_providers([id("https://agent.example")])
            .revocation_notifier(notified.clone());
    let (body, pc) = request(&w).await;
    *holder.lock().unwrap() = Some(as_token(&w, &pc, |b| b));
    let (s, json) = w.post(AUTH_TOKEN_PATH, body).await;
    assert_eq!(s, StatusCode::OK, "{json}");

    let (s, _) = crate::revocation::revoke(
        &w,
        &serde_json::json!({"jti": crate::revocation::jti_of(&w.agent_token), "exp": NOW.as_secs() + 1800}),
        &w.provider,
        "https://agent.example",
        "aauth-agent.json",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        *notified.at_access_servers.lock().unwrap(),
        vec![("https://as.example".to_owned(), pc.jti.clone())],
        "the person token, at the Access Server it was presented to"
    );
    assert!(
        notified
            .at_resources
            .lock()
            .unwrap()
            .iter()
            .any(|(r, j)| r == "https://resource.example" && *j == pc.jti),
        "and at the resource it was for"
    );
    // The Access Server's auth token is the Access Server's to revoke (checklist PS-113):
    // never sent to the resource by this Person Server.
    let as_jti = auth_jti(json["auth_token"].as_str().unwrap());
    assert!(
        !notified
            .at_resources
            .lock()
            .unwrap()
            .iter()
            .any(|(_, j)| *j == as_jti),
        "{:?}",
        notified.at_resources.lock().unwrap()
    );
}

/// An Access Server that has someone approve out of band: `202 approval`, then the token
/// on the second poll.
struct ApprovingAs {
    token: Mutex<Option<String>>,
    polls: Mutex<u32>,
    /// Answers to polls before the real ones: a status, or (`None`) no answer at all.
    hiccups: Mutex<std::collections::VecDeque<Option<StatusCode>>>,
    /// Polls before the real ones that get no answer, ever (the connection open).
    hangs: Mutex<u32>,
}

#[async_trait]
impl Transport for ApprovingAs {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        if req.uri() == "https://as.example/.well-known/aauth-access.json" {
            return Ok(http::Response::new(Bytes::from_static(
                br#"{"issuer":"https://as.example","jwks_uri":"https://as.example/jwks.json","auth_token_endpoint":"https://as.example/auth-token"}"#,
            )));
        }
        if req.method() == http::Method::POST {
            let mut r = http::Response::new(Bytes::from_static(br#"{"status":"pending"}"#));
            *r.status_mut() = StatusCode::ACCEPTED;
            r.headers_mut()
                .insert("location", "/pending/a1".parse().unwrap());
            r.headers_mut()
                .insert("aauth-requirement", "requirement=approval".parse().unwrap());
            return Ok(r);
        }
        assert_eq!(req.uri(), "https://as.example/pending/a1");
        assert!(
            req.headers()
                .get("signature-key")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains(r#"id="https://ps.example""#)),
            "the PS polls signed as itself"
        );
        let hang = {
            let mut hangs = self.hangs.lock().unwrap();
            let hang = *hangs > 0;
            *hangs = hangs.saturating_sub(1);
            hang
        };
        if hang {
            std::future::pending::<()>().await;
        }
        if let Some(hiccup) = self.hiccups.lock().unwrap().pop_front() {
            let status = hiccup.ok_or_else(|| TransportError::new("connection refused"))?;
            let mut r = http::Response::new(Bytes::from_static(
                br#"{"error":"temporarily_unavailable"}"#,
            ));
            *r.status_mut() = status;
            r.headers_mut()
                .insert("content-type", "application/problem+json".parse().unwrap());
            return Ok(r);
        }
        let mut polls = self.polls.lock().unwrap();
        *polls += 1;
        if *polls == 1 {
            let mut r = http::Response::new(Bytes::from_static(br#"{"status":"pending"}"#));
            *r.status_mut() = StatusCode::ACCEPTED;
            return Ok(r);
        }
        ok(&serde_json::json!({"auth_token": self.token.lock().unwrap().clone()}))
    }
}

/// A world whose Access Server gets an approval (one poll pending, then its token), and
/// the auth-token request to send it.
async fn approving_world() -> (World, Arc<ApprovingAs>, serde_json::Value, PersonClaims) {
    approving_world_where(|_| {}).await
}

/// [`approving_world`], its world changed by `prepare` before the request is made.
async fn approving_world_where(
    prepare: impl FnOnce(&mut World),
) -> (World, Arc<ApprovingAs>, serde_json::Value, PersonClaims) {
    let access = Arc::new(ApprovingAs {
        token: Mutex::new(None),
        polls: Mutex::new(0),
        hiccups: Mutex::new(std::collections::VecDeque::new()),
        hangs: Mutex::new(0),
    });
    let mut w = federated_world(scripted(Box::new(|_| ok(&serde_json::json!({})))));
    w.ps = w.ps.federation(access.clone());
    prepare(&mut w);
    let (body, pc) = request(&w).await;
    *access.token.lock().unwrap() = Some(as_token(&w, &pc, |b| b));
    (w, access, body, pc)
}

/// Lets `w`'s agent token (two hours) outlive the person tokens it presents (one hour),
/// and its requests wait two hours.
fn outliving(w: &mut World) {
    w.agent_token =
        crate::agent_token(&w.provider, "aauth:assistant@agent.example", &w.agent, 7200);
    let ps = std::mem::replace(&mut w.ps, world().ps);
    w.ps = ps.consent_pages(Duration::from_secs(7200));
}

/// PS-32: the Access Server holds the request when the presented token expires: the next
/// poll ends it with `expired_presented_token`, and the Access Server is not asked again
/// for a token that would be capped by an expired one.
#[tokio::test]
async fn a_request_the_access_server_holds_ends_with_its_presented_token() {
    let (w, access, body, _) = approving_world_where(outliving).await;
    let (s, headers, json) = w.post_full(AUTH_TOKEN_PATH, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let location = header_of(&headers, "location");
    let late = crate::presented::past_the_person_token();
    let late_token = crate::agent_token_at(&w.provider, &w.agent, late);
    let poll = || crate::consent::poll(&w, "GET", &location, &w.agent, &late_token, None, late);
    let (s, _, json) = poll().await;
    assert_error(s, &json, StatusCode::BAD_REQUEST, "expired_presented_token");
    let polls = *access.polls.lock().unwrap();
    assert_eq!(polls, 0, "the Access Server was not polled");
    assert_eq!(poll().await.0, StatusCode::GONE);
}

/// PS-32: the person approved here, and the presented token expired before the agent
/// polled: it is never sent to the Access Server, and the request ends.
#[tokio::test]
async fn an_expired_presented_token_is_never_sent_to_the_access_server() {
    let transport = scripted(Box::new(|_| ok(&serde_json::json!({}))));
    let mut w = federated_world(Arc::clone(&transport));
    outliving(&mut w);
    w.ps = w.ps.policy(Arc::new(crate::consent::AskForAccess));
    let (location, code, _) = waiting_for_alice(&w).await;
    crate::consent::approve(&w, &code, "alice", "correct horse battery").await;
    let late = crate::presented::past_the_person_token();
    let late_token = crate::agent_token_at(&w.provider, &w.agent, late);
    let poll = || crate::consent::poll(&w, "GET", &location, &w.agent, &late_token, None, late);
    let (s, _, json) = poll().await;
    assert_error(s, &json, StatusCode::BAD_REQUEST, "expired_presented_token");
    assert!(
        transport.seen.lock().unwrap().is_empty(),
        "the Access Server was never asked"
    );
    assert_eq!(poll().await.0, StatusCode::GONE);
}

#[tokio::test]
async fn the_agent_waits_at_the_person_server_while_the_access_server_gets_an_approval() {
    let (w, access, body, _) = approving_world().await;
    // No interaction capability is needed: nobody is sent anywhere.
    let (s, headers, json) = w.post_full(AUTH_TOKEN_PATH, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    assert_eq!(
        header_of(&headers, "aauth-requirement"),
        "requirement=approval"
    );
    let location = header_of(&headers, "location");
    assert!(
        location.starts_with("/pending/"),
        "the Person Server's own pending URL"
    );
    let (s, _, json) =
        crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(
        (s, json["status"].as_str()),
        (StatusCode::ACCEPTED, Some("interacting"))
    );
    let (s, _, json) =
        crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(
        json["auth_token"].as_str(),
        access.token.lock().unwrap().as_deref()
    );
    // Delivered once.
    let (s, _, _) =
        crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::GONE);
}

/// An Access Server that cannot take a poll now (503, 429, unreachable) keeps the
/// request: the agent is told to wait, and the approval given there meanwhile is
/// delivered at a later poll, not lost.
#[tokio::test]
async fn a_busy_or_unreachable_access_server_keeps_the_request_waiting() {
    let (w, access, body, _) = approving_world().await;
    *access.hiccups.lock().unwrap() = [
        Some(StatusCode::SERVICE_UNAVAILABLE),
        Some(StatusCode::TOO_MANY_REQUESTS),
        None,
    ]
    .into();
    let (s, headers, json) = w.post_full(AUTH_TOKEN_PATH, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let location = header_of(&headers, "location");
    for _ in 0..4 {
        let (s, _, json) =
            crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
        assert_eq!(
            (s, json["status"].as_str()),
            (StatusCode::ACCEPTED, Some("interacting")),
            "{json}"
        );
    }
    let (s, _, json) =
        crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(
        json["auth_token"].as_str(),
        access.token.lock().unwrap().as_deref()
    );
}

/// An Access Server that takes a poll's connection and never answers it keeps the
/// request too: past the federation deadline the agent is told to wait, and the approval
/// is delivered at a later poll.
#[tokio::test]
async fn a_silent_access_server_keeps_the_polled_request_waiting() {
    let (mut w, access, body, _) = approving_world().await;
    w.ps = w.ps.federation_timeout(Duration::from_millis(200));
    *access.hangs.lock().unwrap() = 1;
    let (s, headers, json) = w.post_full(AUTH_TOKEN_PATH, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    let location = header_of(&headers, "location");
    let poll = || crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW);
    for _ in 0..2 {
        let (s, _, json) = poll().await;
        assert_eq!(
            (s, json["status"].as_str()),
            (StatusCode::ACCEPTED, Some("interacting")),
            "{json}"
        );
    }
    let (s, _, json) = poll().await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(
        json["auth_token"].as_str(),
        access.token.lock().unwrap().as_deref()
    );
}

/// The person token the request presented is revoked while the Access Server holds the
/// request: the next poll ends it, whatever the Access Server would now issue.
#[tokio::test]
async fn a_revocation_ends_a_request_the_access_server_holds() {
    let (w, access, body, pc) = approving_world().await;
    let (s, headers, _) = w.post_full(AUTH_TOKEN_PATH, body).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = header_of(&headers, "location");
    let poll = || crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW);
    assert_eq!(poll().await.0, StatusCode::ACCEPTED);
    w.ps.store().revoke(&pc.jti, pc.exp, NOW).await.unwrap();
    let (s, _, json) = poll().await;
    assert_error(s, &json, StatusCode::FORBIDDEN, "revoked");
    let polls = *access.polls.lock().unwrap();
    assert_eq!(polls, 1, "the Access Server was not asked again");
    assert_eq!(poll().await.0, StatusCode::GONE);
}

/// A deferred answer from the scripted Access Server.
fn deferred(status: StatusCode, headers: &[(&str, &str)], body: &'static [u8]) -> Answer {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Box::new(move |_| {
        let mut r = http::Response::new(Bytes::from_static(body));
        *r.status_mut() = status;
        for (k, v) in &headers {
            r.headers_mut().insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        Ok(r)
    })
}

#[tokio::test]
async fn a_payment_nobody_settles_is_relayed_and_changes_nothing() {
    let transport = scripted(deferred(
        StatusCode::PAYMENT_REQUIRED,
        &[
            ("location", "/pending/abc"),
            ("www-authenticate", r#"Payment id="1", method="demo""#),
        ],
        br#"{"status":"pending"}"#,
    ));
    let w = federated_world(transport);
    let (body, _) = request(&w).await;
    let before = w.state();
    let (s, json) = w.post(AUTH_TOKEN_PATH, body).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::PAYMENT_REQUIRED, Some("payment_required")),
        "{json}"
    );
    assert_eq!(w.state(), before);
}

#[tokio::test]
async fn an_access_servers_question_goes_to_an_agent_that_can_answer_it() {
    let question = deferred(
        StatusCode::ACCEPTED,
        &[
            ("location", "/pending/q1"),
            ("aauth-requirement", "requirement=clarification"),
        ],
        br#"{"status":"pending","clarification":"What is the report for?"}"#,
    );
    let transport = scripted(question);
    let w = federated_world(transport);
    let (body, _) = request(&w).await;
    // An agent that declared no clarification capability cannot be asked.
    let before = w.state();
    let (s, json) = w.post(AUTH_TOKEN_PATH, body.clone()).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("user_unreachable")),
        "{json}"
    );
    assert_eq!(w.state(), before);

    // One that did gets the question as this Person Server's clarification.
    let mut body = body;
    body["capabilities"] = serde_json::json!(["clarification"]);
    let (s, headers, json) = w.post_full(AUTH_TOKEN_PATH, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    assert_eq!(headers["aauth-requirement"], "requirement=clarification");
    assert_eq!(json["clarification"], "What is the report for?");
    assert!(
        headers["location"]
            .to_str()
            .unwrap()
            .starts_with(aauth_person_server::PENDING_PATH),
        "the agent polls its Person Server, never the Access Server"
    );
    // Without an answer, a poll asks again (the Access Server is not polled).
    let location = headers["location"].to_str().unwrap().to_owned();
    let (s, _, poll) = w.get_path(&location, &w.agent, &w.agent_token).await;
    let poll: serde_json::Value = serde_json::from_slice(&poll).unwrap();
    assert_eq!(
        (s, poll["clarification"].as_str()),
        (StatusCode::ACCEPTED, Some("What is the report for?"))
    );
}

/// An Access Server that asks what the access is for, then issues.
struct AskingAs {
    token: Mutex<Option<String>>,
    answers: Mutex<Vec<serde_json::Value>>,
}

#[async_trait]
impl Transport for AskingAs {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        match (req.method().as_str(), req.uri().path()) {
            ("GET", "/.well-known/aauth-access.json") => Ok(http::Response::new(Bytes::from_static(
                br#"{"issuer":"https://as.example","jwks_uri":"https://as.example/jwks.json","auth_token_endpoint":"https://as.example/auth-token"}"#,
            ))),
            ("POST", "/auth-token") => deferred(
                StatusCode::ACCEPTED,
                &[
                    ("location", "/pending/q1"),
                    ("aauth-requirement", "requirement=clarification"),
                ],
                br#"{"status":"pending","clarification":"Which project is this for?"}"#,
            )(&serde_json::Value::Null),
            ("POST", "/pending/q1") => {
                self.answers
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(req.body()).unwrap());
                ok(&serde_json::json!({"auth_token": self.token.lock().unwrap().clone().unwrap(), "expires_in": 600}))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Knows which project alice's requests are for.
struct Projects;
impl aauth_person_server::AccessServerQuestions for Projects {
    fn answer(
        &self,
        account: &str,
        access_server: &aauth_tokens::ServerId,
        question: &str,
    ) -> Option<String> {
        (account == "alice"
            && access_server.as_str() == "https://as.example"
            && question.contains("project"))
        .then(|| "Apollo".to_owned())
    }
}

#[tokio::test]
async fn the_person_server_answers_an_access_servers_question_it_knows() {
    let transport = Arc::new(AskingAs {
        token: Mutex::new(None),
        answers: Mutex::new(Vec::new()),
    });
    let mut w = federated_world(scripted(Box::new(|_| unreachable!())));
    w.ps =
        w.ps.federation(Arc::clone(&transport) as Arc<dyn Transport>)
            .access_server_answers(Arc::new(Projects));
    let (body, pc) = request(&w).await;
    *transport.token.lock().unwrap() = Some(as_token(&w, &pc, |b| b));
    // No clarification capability needed: the agent is never asked.
    let (s, json) = w.post(AUTH_TOKEN_PATH, body).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert_eq!(
        transport.answers.lock().unwrap().clone(),
        vec![
            serde_json::json!({"action": "clarification_response", "clarification_response": "Apollo"})
        ]
    );
}

/// The agent answers the Access Server's question after the request's lifetime: `408
/// expired` (as a poll then answers), nothing saved; the poll that follows ends the
/// request here, without asking or polling the Access Server (draft -11 §9 `expired`).
#[tokio::test]
async fn an_access_servers_question_answered_after_the_request_expired_goes_nowhere() {
    let transport = Arc::new(AskingAs {
        token: Mutex::new(None),
        answers: Mutex::new(Vec::new()),
    });
    let mut w = federated_world(scripted(Box::new(|_| unreachable!())));
    w.ps =
        w.ps.federation(Arc::clone(&transport) as Arc<dyn Transport>);
    let (mut body, pc) = request(&w).await;
    *transport.token.lock().unwrap() = Some(as_token(&w, &pc, |b| b));
    body["capabilities"] = serde_json::json!(["clarification"]);
    let (s, headers, json) = w.post_full(AUTH_TOKEN_PATH, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{json}");
    assert_eq!(json["clarification"], "Which project is this for?");
    let location = header_of(&headers, "location");
    // Past the request's ten minutes, well within its tokens' lifetimes.
    let late = NOW.plus(601);
    let late_token = crate::agent_token_at(&w.provider, &w.agent, late);
    // The late agent token is recorded at its first use (an action refused for what it
    // names), so that the state compared below already holds it.
    let (s, _) = w
        .post_at(
            &location,
            &serde_json::json!({"action": "rewind"}),
            &w.agent,
            &late_token,
            late,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let before = w.state();
    let (s, json) = w
        .post_at(
            &location,
            &serde_json::json!({"action": "clarification_response", "clarification_response": "Apollo"}),
            &w.agent,
            &late_token,
            late,
        )
        .await;
    assert_error(s, &json, StatusCode::REQUEST_TIMEOUT, "expired");
    assert_eq!(w.state(), before, "nothing saved");

    let poll = || crate::consent::poll(&w, "GET", &location, &w.agent, &late_token, None, late);
    let (s, _, json) = poll().await;
    assert_error(s, &json, StatusCode::REQUEST_TIMEOUT, "expired");
    assert!(
        transport.answers.lock().unwrap().is_empty(),
        "the Access Server was neither answered nor polled"
    );
    assert_eq!(poll().await.0, StatusCode::GONE);
}

#[tokio::test]
async fn the_person_answers_an_access_servers_question_on_the_consent_page() {
    let transport = Arc::new(AskingAs {
        token: Mutex::new(None),
        answers: Mutex::new(Vec::new()),
    });
    let mut w = federated_world(scripted(Box::new(|_| unreachable!())));
    w.ps =
        w.ps.federation(Arc::clone(&transport) as Arc<dyn Transport>)
            .consent_pages(Duration::from_secs(600));
    // The agent can involve its person but not answer questions itself.
    let (location, code, pc) = waiting_for_alice(&w).await;
    *transport.token.lock().unwrap() = Some(as_token(&w, &pc, |b| b));
    // Until the person answers, the agent's poll waits (the Access Server is not asked).
    let (s, _, _) =
        crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(transport.answers.lock().unwrap().is_empty());

    let mut b = crate::consent::Browser::default();
    let signed_in = b.sign_in(&w, &code, "alice", "correct horse battery").await;
    let target = signed_in.headers["location"].to_str().unwrap().to_owned();
    let page = b.go(&w, "GET", &target, &[]).await;
    assert!(
        page.html.contains(
            "The resource's Access Server asks you:</strong> <bdi>Which project is this for?</bdi>"
        ),
        "{}",
        page.html
    );
    let csrf = page.hidden("csrf");
    let answered = b
        .go(
            &w,
            "POST",
            aauth_person_server::INTERACT_PATH,
            &[
                ("code", &code),
                ("csrf", &csrf),
                ("decision", "answer"),
                ("answer", "Apollo <b>"),
            ],
        )
        .await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.html);

    // The agent's next poll: the answer goes to the Access Server, its token comes back.
    let (s, _, json) =
        crate::consent::poll(&w, "GET", &location, &w.agent, &w.agent_token, None, NOW).await;
    assert_eq!(s, StatusCode::OK, "{json}");
    assert!(json["auth_token"].is_string());
    assert_eq!(
        transport.answers.lock().unwrap().clone(),
        vec![
            serde_json::json!({"action": "clarification_response", "clarification_response": "Apollo <b>"})
        ]
    );
}

/// Answers from a script, in order; counts what was posted.
struct Sequence {
    answers: Mutex<std::collections::VecDeque<http::Response<Bytes>>>,
    posts: Mutex<u32>,
}

#[async_trait]
impl Transport for Sequence {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        if req.method() == http::Method::POST {
            *self.posts.lock().unwrap() += 1;
        }
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .ok_or_else(|| TransportError::new("nothing scripted"))
    }
}

/// Checklist PS-114: the Access Server's `downstream` report is read; a resource it could
/// not reach is retried by sending the (idempotent) revocation once more (the endpoint
/// discovered once), and what still
/// fails is reported.
#[tokio::test]
async fn a_failed_downstream_leg_is_sent_again_once() {
    use aauth_person_server::{HttpRevocationNotifier, RevocationNotifier};
    let as_doc = r#"{"issuer":"https://as.example","jwks_uri":"https://as.example/j","auth_token_endpoint":"https://as.example/a","revocation_endpoint":"https://as.example/revocation"}"#;
    let failed = r#"{"downstream":[{"recipient":"https://resource.example","error":"revocation_unavailable"}]}"#;
    let done = r#"{"downstream":[{"recipient":"https://resource.example"}]}"#;
    let ok = |b: &str| http::Response::new(Bytes::from(b.to_owned()));
    for (script, outcome, posts) in [
        (vec![ok(as_doc), ok(failed), ok(done)], Ok(()), 2),
        (vec![ok(as_doc), ok(done)], Ok(()), 1),
        (
            vec![ok(as_doc), ok(failed), ok(failed)],
            Err("downstream: https://resource.example: revocation_unavailable".to_owned()),
            2,
        ),
    ] {
        let transport = Arc::new(Sequence {
            answers: Mutex::new(script.into()),
            posts: Mutex::new(0),
        });
        let notifier = HttpRevocationNotifier::new(
            id("https://ps.example"),
            Arc::new(PrivateKey::ed25519_from_seed(&[4; 32])),
            "ps-1",
            Arc::clone(&transport) as Arc<dyn Transport>,
            Arc::new(aauth_keys::time::FixedClock::new(NOW)),
        );
        assert_eq!(
            notifier
                .notify_access_server(&id("https://as.example"), "pt-1", NOW.as_secs() + 600)
                .await,
            outcome
        );
        assert_eq!(*transport.posts.lock().unwrap(), posts);
    }
}

/// The compatibility profile's `missing_presented_token` is three-party only: an Access
/// Server is forwarded the presented token itself (PS-52), so a four-party request
/// without one is still refused, and nothing is sent to the Access Server.
#[tokio::test]
async fn four_party_needs_the_presented_token_even_under_the_compatibility_profile() {
    let access = scripted(Box::new(|_| ok(&serde_json::json!({}))));
    let mut w = federated_world(access.clone());
    w.ps = w
        .ps
        .compatibility(aauth_person_server::Compatibility::strict().missing_presented_token(true));
    let (mut body, _) = request(&w).await;
    body.as_object_mut().unwrap().remove("presented_token");
    let before = w.state();
    let (s, json) = w.post(AUTH_TOKEN_PATH, body).await;
    assert_eq!(
        (s, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{json}"
    );
    assert!(
        json["detail"].as_str().unwrap().contains("Access Server"),
        "{json}"
    );
    assert!(access.seen.lock().unwrap().is_empty());
    assert_eq!(w.state(), before, "nothing issued");
}
