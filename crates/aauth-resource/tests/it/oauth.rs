//! One route for AAuth agents and OAuth clients (feature `oauth`): each admitted by its
//! own protocol, every refusal with both challenges where the RFCs say, and the handler
//! never reached by a refused request.

use std::sync::Arc;

use aauth_headers::Scheme;
use aauth_keys::{PrivateKey, Signer as _, base64url};
use aauth_metadata::{CacheConfig, Fetch, FetchError, Fetched, HttpsUrl};
use aauth_oauth::{AccessTokenPolicy, AccessTokenVerifier, DpopCheck, DpopNonces, Issuer};
use aauth_resource::{
    AAuthLayer, Access, DeferredAuth, MemoryHeldStore, MemoryReplayStore, OAuthAccess, Principal,
    RoutePolicy,
};
use aauth_test_support::NOW;
use aauth_test_support::request::header;
use aauth_test_support::service::Answering;
use aauth_test_support::time::fixed_clock;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower_layer::Layer;

use crate::{full, send, signed, world};

const AS: &str = "https://as.example";
const METADATA: &str = "https://resource.example/.well-known/oauth-protected-resource";

/// The authorization server's documents, served from memory (`None`: it is down).
struct AsDocs(Option<PrivateKey>);

#[async_trait::async_trait]
impl Fetch for AsDocs {
    async fn get(&self, url: &HttpsUrl) -> Result<Fetched, FetchError> {
        let Some(key) = &self.0 else {
            return Err(FetchError::Transport("connection refused".to_owned()));
        };
        Ok(match url.path_and_query() {
            "/.well-known/oauth-authorization-server" => Fetched::ok(
                json!({"issuer": AS, "jwks_uri": "https://as.example/jwks"}).to_string(),
            ),
            "/jwks" => Fetched::ok(format!(
                r#"{{"keys":[{}]}}"#,
                key.public_key().to_jwk().with_kid("es").to_json()
            )),
            _ => Fetched::status(404),
        })
    }
}

fn as_key() -> PrivateKey {
    PrivateKey::es256_from_scalar(&[5; 32]).unwrap()
}

fn access_token(header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        base64url::encode(header.to_string().as_bytes()),
        base64url::encode(claims.to_string().as_bytes())
    );
    let sig = as_key().sign(input.as_bytes()).unwrap();
    format!("{input}.{}", base64url::encode(&sig))
}

fn claims() -> Value {
    json!({
        "iss": AS, "sub": "svc-1", "client_id": "svc-1", "aud": "https://resource.example",
        "scope": "read write", "iat": NOW.as_secs() - 5, "exp": NOW.as_secs() + 300,
    })
}

fn good_token() -> String {
    access_token(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "es"}),
        &claims(),
    )
}

/// Names who was admitted, whichever protocol.
fn handler() -> Answering {
    Answering::new(|req| match Principal::from_extensions(req.extensions()) {
        Some(Principal::AAuth(a)) => {
            format!("agent {}", a.agent().map(|a| a.as_str()).unwrap_or("?"))
        }
        Some(Principal::OAuth(c)) => {
            format!("client {} {}", c.0.client_id().unwrap_or("?"), c.0.scope())
        }
        _ => "nobody".to_owned(),
    })
}

fn service(
    calls: &Answering,
    docs: AsDocs,
    scope: &str,
) -> (aauth_resource::AAuthService<Answering>, crate::World) {
    service_with(calls, docs, scope, None)
}

/// As [`service`], taking DPoP-bound tokens when `dpop` is given (with its nonces
/// required, when it has some).
fn service_with(
    calls: &Answering,
    docs: AsDocs,
    scope: &str,
    dpop: Option<Option<DpopNonces>>,
) -> (aauth_resource::AAuthService<Answering>, crate::World) {
    service_with_store(calls, docs, scope, dpop, MemoryReplayStore::new(1000))
}

/// As [`service_with`], DPoP proofs kept in `replay`.
fn service_with_store(
    calls: &Answering,
    docs: AsDocs,
    scope: &str,
    dpop: Option<Option<DpopNonces>>,
    replay: MemoryReplayStore,
) -> (aauth_resource::AAuthService<Answering>, crate::World) {
    let w = world();
    let layer = AAuthLayer::new(
        w.resource.route(RoutePolicy::new(Access::AgentToken)),
        fixed_clock(),
    )
    .oauth(oauth_access(docs, scope, dpop, replay));
    (layer.layer(calls.clone()), w)
}

/// The route's OAuth side: tokens of [`AS`] with `scope`, DPoP-bound when `dpop` is
/// given (proofs kept in `replay`).
fn oauth_access(
    docs: AsDocs,
    scope: &str,
    dpop: Option<Option<DpopNonces>>,
    replay: MemoryReplayStore,
) -> OAuthAccess {
    let verifier = AccessTokenVerifier::new(
        AccessTokenPolicy::new("https://resource.example"),
        [Issuer::discover(AS).unwrap()],
        Arc::new(docs),
        fixed_clock(),
        CacheConfig::default(),
    );
    let mut oauth = OAuthAccess::new(Arc::new(verifier))
        .require_scope(scope)
        .realm("resource.example")
        .resource_metadata(METADATA);
    if let Some(nonces) = dpop {
        let mut check = DpopCheck::new("https://resource.example", Arc::new(replay));
        if let Some(n) = nonces {
            check = check.nonces(n);
        }
        oauth = oauth.dpop(check);
    }
    oauth
}

/// A call the deferral cannot hold (its store is full) gets the plain `401
/// requirement=auth-token`: on a route that also takes OAuth, with the `Bearer`
/// challenge beside it, as every other `401` there.
#[tokio::test]
async fn a_call_not_held_still_carries_the_bearer_challenge() {
    let m = crate::modes::modes();
    let calls = handler();
    let resource = m.w.resource.clone().resource_tokens(m.tokens());
    let mut svc = AAuthLayer::new(
        resource.route(RoutePolicy::new(Access::AuthToken).scope("write")),
        fixed_clock(),
    )
    .oauth(oauth_access(
        AsDocs(Some(as_key())),
        "write",
        None,
        MemoryReplayStore::new(10),
    ))
    .defer_auth_token(DeferredAuth::new(
        Arc::new(MemoryHeldStore::new(0)),
        "/aauth/pending/",
    ))
    .layer(calls.clone());
    // A pending URL is the held agent's to poll, signing: an OAuth client with the
    // route's scope is not passed on there (whatever the method), only where it may go.
    for method in ["GET", "DELETE", "POST"] {
        let mut req = bearer(&good_token());
        *req.method_mut() = method.parse().unwrap();
        *req.uri_mut() = "https://resource.example/aauth/pending/anything"
            .parse()
            .unwrap();
        let (status, h, _) = send(&mut svc, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method}: {h:?}");
    }
    assert_eq!(calls.calls(), 0);
    assert_eq!(
        send(&mut svc, bearer(&good_token())).await.0,
        StatusCode::OK
    );
    assert_eq!(calls.calls(), 1);
    let person = Scheme::jwt(m.person_token().token);
    let (status, h, _) = send(&mut svc, signed("GET", "/data", b"", &m.w.agent, &person)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(h.get("location").is_none(), "not held");
    assert!(header(&h, "aauth-requirement").starts_with("requirement=auth-token"));
    assert_eq!(
        header(&h, "www-authenticate"),
        format!(
            r#"Bearer realm="resource.example", scope="write", resource_metadata="{METADATA}""#
        )
    );
    assert_eq!(calls.calls(), 1);
}

fn bearer(token: &str) -> Request<http_body_util::Full<bytes::Bytes>> {
    full(
        Request::get("/data")
            .header("host", "resource.example")
            .header("authorization", format!("Bearer {token}"))
            .body(Vec::new())
            .unwrap(),
    )
}

#[tokio::test]
async fn an_agent_and_an_oauth_client_are_admitted_on_one_route() {
    let calls = handler();
    let (mut svc, w) = service(&calls, AsDocs(Some(as_key())), "read");
    let agent = signed(
        "GET",
        "/data",
        b"",
        &w.agent,
        &Scheme::jwt(w.agent_token(3600)),
    );
    let (status, _, body) = send(&mut svc, agent).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "agent aauth:assistant@agent.example")
    );
    let (status, h, body) = send(&mut svc, bearer(&good_token())).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "client svc-1 read write")
    );
    assert!(h.get("www-authenticate").is_none());
    assert_eq!(calls.calls(), 2);
}

#[tokio::test]
async fn one_401_tells_either_kind_of_client_what_to_do() {
    let calls = handler();
    let (mut svc, _) = service(&calls, AsDocs(Some(as_key())), "read");
    let bare = full(
        Request::get("/data")
            .header("host", "resource.example")
            .body(Vec::new())
            .unwrap(),
    );
    let (status, h, _) = send(&mut svc, bare).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&h, "aauth-requirement"), "requirement=agent-token");
    assert_eq!(
        header(&h, "www-authenticate"),
        format!(r#"Bearer realm="resource.example", scope="read", resource_metadata="{METADATA}""#)
    );
    assert_eq!(calls.calls(), 0);
}

#[tokio::test]
async fn bad_bearer_tokens_get_the_rfc_6750_answer_and_never_reach_the_handler() {
    let calls = handler();
    let (mut svc, _) = service(&calls, AsDocs(Some(as_key())), "read");
    let header_es = json!({"alg": "ES256", "typ": "at+jwt", "kid": "es"});
    let mut other_aud = claims();
    other_aud["aud"] = json!("https://other.example");
    let mut expired = claims();
    expired["exp"] = json!(NOW.as_secs() - 3600);
    let mut none_header = header_es.clone();
    none_header["alg"] = json!("none");
    let unsigned = {
        let t = access_token(&none_header, &claims());
        format!("{}.", t.rsplit_once('.').unwrap().0)
    };
    let tampered = {
        let t = good_token();
        let (input, sig) = t.rsplit_once('.').unwrap();
        let (h, _) = input.split_once('.').unwrap();
        let mut wide = claims();
        wide["scope"] = json!("read write admin");
        format!(
            "{h}.{}.{sig}",
            base64url::encode(wide.to_string().as_bytes())
        )
    };
    for (what, token) in [
        ("another audience", access_token(&header_es, &other_aud)),
        ("expired", access_token(&header_es, &expired)),
        ("alg none, unsigned", unsigned),
        ("claims changed", tampered),
        ("not a JWT", "opaque-token-value".to_owned()),
    ] {
        let (status, h, body) = send(&mut svc, bearer(&token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        let challenge = header(&h, "www-authenticate");
        assert!(
            challenge.starts_with(
                r#"Bearer realm="resource.example", error="invalid_token", error_description=""#
            ),
            "{what}: {challenge}"
        );
        assert!(
            challenge.ends_with(&format!(r#"resource_metadata="{METADATA}""#)),
            "{challenge}"
        );
        assert_eq!(
            header(&h, "aauth-requirement"),
            "requirement=agent-token",
            "{what}"
        );
        let problem: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["error"], "invalid_token", "{what}");
    }
    assert_eq!(calls.calls(), 0);
}

#[tokio::test]
async fn a_missing_scope_is_403_insufficient_scope() {
    let calls = handler();
    let (mut svc, _) = service(&calls, AsDocs(Some(as_key())), "admin");
    let (status, h, _) = send(&mut svc, bearer(&good_token())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let challenge = header(&h, "www-authenticate");
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(challenge.contains(r#"scope="admin""#), "{challenge}");
    assert!(h.get("aauth-requirement").is_none());
    assert_eq!(calls.calls(), 0);
}

#[tokio::test]
async fn malformed_or_ambiguous_credentials_are_400() {
    let calls = handler();
    let (mut svc, w) = service(&calls, AsDocs(Some(as_key())), "read");
    // A Bearer token on a request that is also AAuth-signed: one request is one caller.
    let mut both = signed(
        "GET",
        "/data",
        b"",
        &w.agent,
        &Scheme::jwt(w.agent_token(3600)),
    );
    both.headers_mut().insert(
        "authorization",
        format!("Bearer {}", good_token()).parse().unwrap(),
    );
    let plain = both.clone();
    let (status, h, _) = send(&mut svc, both).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(header(&h, "www-authenticate").contains(r#"error="invalid_request""#));
    // The same token behind another scheme's field, or after a tab; a DPoP proof beside
    // the signature: never passed over as no OAuth credential at all.
    type Edit = Box<dyn Fn(&mut http::HeaderMap)>;
    let mut edits: Vec<Edit> = vec![
        Box::new(|h| {
            h.insert("authorization", "Basic eA==".parse().unwrap());
            h.append(
                "authorization",
                format!("Bearer {}", good_token()).parse().unwrap(),
            );
        }),
        Box::new(|h| {
            h.insert(
                "authorization",
                format!("Bearer\t{}", good_token()).parse().unwrap(),
            );
        }),
        Box::new(|h| {
            h.remove("authorization");
            h.insert("dpop", "e30.e30.e30".parse().unwrap());
        }),
    ];
    for edit in edits.drain(..) {
        let mut req = plain.clone();
        edit(req.headers_mut());
        let (status, h, _) = send(&mut svc, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{h:?}");
    }
    // Two Authorization fields; a token with a space in it.
    let mut two = bearer(&good_token());
    two.headers_mut()
        .append("authorization", "Bearer second".parse().unwrap());
    assert_eq!(send(&mut svc, two).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        send(&mut svc, bearer("a b")).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(calls.calls(), 0);
}

#[tokio::test]
async fn a_dpop_token_is_refused_on_a_route_without_dpop() {
    let calls = handler();
    let (mut svc, _) = service(&calls, AsDocs(Some(as_key())), "read");
    let mut req = bearer(&good_token());
    req.headers_mut().insert(
        "authorization",
        format!("DPoP {}", good_token()).parse().unwrap(),
    );
    let (status, h, _) = send(&mut svc, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(header(&h, "www-authenticate").contains(r#"error="invalid_token""#));
    assert_eq!(calls.calls(), 0);
}

#[tokio::test]
async fn an_aauth_refusal_carries_the_bearer_challenge_too() {
    let calls = handler();
    let (mut svc, w) = service(&calls, AsDocs(Some(as_key())), "read");
    // Signed by a key the agent token does not bind.
    let stranger = PrivateKey::ed25519_from_seed(&[9; 32]);
    let req = signed(
        "GET",
        "/data",
        b"",
        &stranger,
        &Scheme::jwt(w.agent_token(3600)),
    );
    let (status, h, _) = send(&mut svc, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(h.get("signature-error").is_some());
    assert!(header(&h, "www-authenticate").starts_with(r#"Bearer realm="resource.example""#));
    assert_eq!(calls.calls(), 0);
}

#[tokio::test]
async fn an_unreachable_authorization_server_is_503_not_a_challenge() {
    let calls = handler();
    let (mut svc, _) = service(&calls, AsDocs(None), "read");
    let (status, h, body) = send(&mut svc, bearer(&good_token())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(header(&h, "retry-after"), "5");
    assert!(h.get("www-authenticate").is_none());
    assert_eq!(calls.calls(), 0);
}

// ---------------------------------------------------------------------------------------
// DPoP (RFC 9449)
// ---------------------------------------------------------------------------------------

/// The DPoP client's key.
fn client_key() -> PrivateKey {
    PrivateKey::es256_from_scalar(&[6; 32]).unwrap()
}

/// An access token bound to `key` (`cnf.jkt`).
fn bound_token(key: &PrivateKey) -> String {
    let mut c = claims();
    c["cnf"] = json!({"jkt": key.public_key().thumbprint().as_str()});
    access_token(&json!({"alg": "ES256", "typ": "at+jwt", "kid": "es"}), &c)
}

/// A proof by `key` with `claims` changed by `edit`.
fn proof(key: &PrivateKey, token: &str, jti: &str, edit: impl FnOnce(&mut Value)) -> String {
    proof_with(key, token, jti, |_| {}, edit)
}

/// As [`proof`], with the header edited too.
fn proof_with(
    key: &PrivateKey,
    token: &str,
    jti: &str,
    edit_header: impl FnOnce(&mut Value),
    edit: impl FnOnce(&mut Value),
) -> String {
    let mut header = json!({
        "typ": "dpop+jwt", "alg": "ES256",
        "jwk": serde_json::from_str::<Value>(&key.public_key().to_jwk().to_json()).unwrap(),
    });
    edit_header(&mut header);
    let mut c = json!({
        "jti": jti, "htm": "GET", "htu": "https://resource.example/data",
        "iat": NOW.as_secs(),
        "ath": base64url::encode(&aauth_keys::digest::sha256(token.as_bytes())),
    });
    edit(&mut c);
    let input = format!(
        "{}.{}",
        base64url::encode(header.to_string().as_bytes()),
        base64url::encode(c.to_string().as_bytes())
    );
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", base64url::encode(&sig))
}

fn dpop_request(token: &str, proof: Option<&str>) -> Request<http_body_util::Full<bytes::Bytes>> {
    let mut b = Request::get("/data")
        .header("host", "resource.example")
        .header("authorization", format!("DPoP {token}"));
    if let Some(p) = proof {
        b = b.header("dpop", p);
    }
    full(b.body(Vec::new()).unwrap())
}

#[tokio::test]
async fn an_agent_a_bearer_client_and_a_dpop_client_on_one_route() {
    let calls = handler();
    let (mut svc, w) = service_with(&calls, AsDocs(Some(as_key())), "read", Some(None));
    let agent = signed(
        "GET",
        "/data",
        b"",
        &w.agent,
        &Scheme::jwt(w.agent_token(3600)),
    );
    assert_eq!(send(&mut svc, agent).await.0, StatusCode::OK);
    assert_eq!(
        send(&mut svc, bearer(&good_token())).await.0,
        StatusCode::OK
    );
    let key = client_key();
    let token = bound_token(&key);
    let (status, _, body) = send(
        &mut svc,
        dpop_request(&token, Some(&proof(&key, &token, "p-1", |_| {}))),
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "client svc-1 read write")
    );
    assert_eq!(calls.calls(), 3);
    // Every 401 now names both OAuth schemes beside AAuth's.
    let bare = full(
        Request::get("/data")
            .header("host", "resource.example")
            .body(Vec::new())
            .unwrap(),
    );
    let (_, h, _) = send(&mut svc, bare).await;
    let challenges: Vec<_> = h
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    assert!(challenges[0].starts_with("Bearer "));
    assert!(
        challenges[1].starts_with("DPoP ")
            && challenges[1].contains(r#"algs="ES256 EdDSA PS256 RS256""#),
        "{challenges:?}"
    );
}

/// An authorization server can bind any number of keys: proofs by its tokens' keys count
/// in its share of the replay store together, as AAuth signers count in their issuer's.
#[tokio::test]
async fn dpop_proofs_count_in_their_token_issuers_share() {
    let calls = handler();
    let store = MemoryReplayStore::new(1000).issuer_share(1);
    let (mut svc, _) =
        service_with_store(&calls, AsDocs(Some(as_key())), "read", Some(None), store);
    let first = client_key();
    let token = bound_token(&first);
    let p = proof(&first, &token, "p-1", |_| {});
    assert_eq!(
        send(&mut svc, dpop_request(&token, Some(&p))).await.0,
        StatusCode::OK
    );
    // Another key bound by the same authorization server: past the issuer's share.
    let second = PrivateKey::es256_from_scalar(&[7; 32]).unwrap();
    let token = bound_token(&second);
    let p = proof(&second, &token, "p-2", |_| {});
    let (status, h, body) = send(&mut svc, dpop_request(&token, Some(&p))).await;
    // Too many proofs, not a bad token: 429 with Retry-After, as an AAuth signer past
    // its share gets, and no challenge telling the client to drop its token.
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body.contains("rate_limited"), "{body}");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    assert!(h.get("www-authenticate").is_none(), "{h:?}");
    assert_eq!(calls.calls(), 1);
}

#[tokio::test]
async fn dpop_proofs_are_refused_where_rfc_9449_says() {
    let calls = handler();
    let (mut svc, _) = service_with(&calls, AsDocs(Some(as_key())), "read", Some(None));
    let key = client_key();
    let token = bound_token(&key);
    let good = proof(&key, &token, "p-1", |_| {});
    assert_eq!(
        send(&mut svc, dpop_request(&token, Some(&good))).await.0,
        StatusCode::OK
    );
    let stranger = PrivateKey::es256_from_scalar(&[7; 32]).unwrap();
    let unbound = good_token();
    let cases: Vec<(&str, Request<_>, &str)> = vec![
        (
            "replayed",
            dpop_request(&token, Some(&good)),
            "invalid_dpop_proof",
        ),
        ("no proof", dpop_request(&token, None), "invalid_dpop_proof"),
        (
            "another method",
            dpop_request(
                &token,
                Some(&proof(&key, &token, "p-2", |c| c["htm"] = json!("POST"))),
            ),
            "invalid_dpop_proof",
        ),
        (
            "another URL",
            dpop_request(
                &token,
                Some(&proof(&key, &token, "p-3", |c| {
                    c["htu"] = json!("https://resource.example/other");
                })),
            ),
            "invalid_dpop_proof",
        ),
        (
            "stale",
            dpop_request(
                &token,
                Some(&proof(&key, &token, "p-4", |c| {
                    c["iat"] = json!(NOW.as_secs() - 600);
                })),
            ),
            "invalid_dpop_proof",
        ),
        (
            "another token's hash",
            dpop_request(&token, Some(&proof(&key, &good_token(), "p-5", |_| {}))),
            "invalid_dpop_proof",
        ),
        (
            "another key",
            dpop_request(&token, Some(&proof(&stranger, &token, "p-6", |_| {}))),
            "invalid_token",
        ),
        (
            "a critical extension (RFC 7515 §4.1.11)",
            dpop_request(
                &token,
                Some(&proof_with(
                    &key,
                    &token,
                    "p-8",
                    |h| h["crit"] = json!(["exp-ext"]),
                    |_| {},
                )),
            ),
            "invalid_dpop_proof",
        ),
        (
            "an unbound token",
            dpop_request(&unbound, Some(&proof(&key, &unbound, "p-7", |_| {}))),
            "invalid_token",
        ),
    ];
    for (what, req, code) in cases {
        let (status, h, body) = send(&mut svc, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        let dpop = h
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap())
            .find(|v| v.starts_with("DPoP "))
            .unwrap_or_default()
            .to_owned();
        assert!(
            dpop.contains(&format!(r#"error="{code}""#)),
            "{what}: {dpop}"
        );
    }
    // The bound token sent as a bearer token: refused on the Bearer side.
    let (status, h, _) = send(&mut svc, bearer(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(header(&h, "www-authenticate").contains(r#"error="invalid_token""#));
    assert_eq!(calls.calls(), 1);
}

/// RFC 9449 §9: a route that requires its nonces refuses a proof without one, or with a
/// stale or foreign one, with `use_dpop_nonce` and a fresh `DPoP-Nonce`; with that nonce
/// the same client gets through. Every `401` there carries a nonce for a first try.
#[tokio::test]
async fn a_route_that_requires_dpop_nonces_hands_them_out_and_checks_them() {
    let calls = handler();
    let nonces = DpopNonces::new(&[5; 32]);
    let (mut svc, _) = service_with(
        &calls,
        AsDocs(Some(as_key())),
        "read",
        Some(Some(nonces.clone())),
    );
    let key = client_key();
    let token = bound_token(&key);
    let refused = |h: &http::HeaderMap| {
        let dpop = h
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with("DPoP "))
            .unwrap_or_default();
        assert!(dpop.contains(r#"error="use_dpop_nonce""#), "{dpop}");
        header(h, "dpop-nonce")
    };
    let (status, h, _) = send(
        &mut svc,
        dpop_request(&token, Some(&proof(&key, &token, "n-1", |_| {}))),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let nonce = refused(&h);
    assert!(nonces.accepts(&nonce, NOW), "{nonce}");
    for (what, stale) in [
        (
            "stale",
            DpopNonces::new(&[5; 32]).issue(aauth_keys::time::UnixTime(NOW.as_secs() - 900)),
        ),
        ("foreign", DpopNonces::new(&[6; 32]).issue(NOW)),
        ("made up", "bm9uY2U".to_owned()),
    ] {
        let p = proof(&key, &token, &format!("n-{what}"), |c| {
            c["nonce"] = json!(stale);
        });
        let (status, h, _) = send(&mut svc, dpop_request(&token, Some(&p))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        refused(&h);
    }
    let p = proof(&key, &token, "n-2", |c| c["nonce"] = json!(nonce));
    let (status, _, body) = send(&mut svc, dpop_request(&token, Some(&p))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(calls.calls(), 1);
    // A request with nothing gets a nonce with the challenges.
    let bare = full(
        Request::get("/data")
            .header("host", "resource.example")
            .body(Vec::new())
            .unwrap(),
    );
    let (_, h, _) = send(&mut svc, bare).await;
    assert!(nonces.accepts(&header(&h, "dpop-nonce"), NOW));
}

#[test]
fn proof_uris_compare_as_rfc_9449_says() {
    let key = client_key();
    let token = bound_token(&key);
    let check = |htu: &str, uri: &str| {
        let p = proof(&key, &token, "x", |c| c["htu"] = json!(htu));
        aauth_oauth::DpopProof::check(&p, "GET", uri, &token, 60, 5, NOW).is_ok()
    };
    assert!(check(
        "https://resource.example/data",
        "https://resource.example/data?x=1"
    ));
    assert!(check(
        "https://Resource.Example:443/data",
        "https://resource.example/data"
    ));
    assert!(check(
        "https://resource.example/data#f",
        "https://resource.example/data"
    ));
    assert!(!check(
        "https://resource.example/Data",
        "https://resource.example/data"
    ));
    assert!(!check(
        "http://resource.example/data",
        "https://resource.example/data"
    ));
    assert!(!check(
        "https://resource.example:8443/data",
        "https://resource.example/data"
    ));
    assert!(!check(
        "https://user@resource.example/data",
        "https://resource.example/data"
    ));
}

/// An introspection endpoint that knows one opaque token.
struct Introspector;

#[async_trait::async_trait]
impl aauth_metadata::Transport for Introspector {
    async fn send(
        &self,
        req: Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, aauth_metadata::TransportError> {
        let body = String::from_utf8_lossy(req.body()).into_owned();
        let answer = if body.contains("token=opaque-good") {
            json!({"active": true, "iss": AS, "aud": "https://resource.example",
                   "client_id": "svc-2", "scope": "read", "exp": NOW.as_secs() + 300})
        } else {
            json!({"active": false})
        };
        Ok(http::Response::new(bytes::Bytes::from(answer.to_string())))
    }
}

#[tokio::test]
async fn opaque_tokens_go_to_introspection_and_jwts_to_the_signature() {
    let calls = handler();
    let w = world();
    let jwt = AccessTokenVerifier::new(
        AccessTokenPolicy::new("https://resource.example"),
        [Issuer::discover(AS).unwrap()],
        Arc::new(AsDocs(Some(as_key()))),
        fixed_clock(),
        CacheConfig::default(),
    );
    let introspection = aauth_oauth::Introspection::new(
        HttpsUrl::parse("https://as.example/introspect").unwrap(),
        aauth_oauth::ClientAuth::SecretBasic {
            client_id: "resource".to_owned(),
            secret: "pw".to_owned(),
        },
        AS,
        "https://resource.example",
        Arc::new(Introspector),
        fixed_clock(),
    );
    let oauth = OAuthAccess::new(Arc::new(jwt))
        .opaque_tokens(Arc::new(introspection))
        .require_scope("read");
    let mut svc = AAuthLayer::new(
        w.resource.route(RoutePolicy::new(Access::AgentToken)),
        fixed_clock(),
    )
    .oauth(oauth)
    .layer(calls.clone());
    let (status, _, body) = send(&mut svc, bearer("opaque-good")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "client svc-2 read")
    );
    let (status, _, body) = send(&mut svc, bearer(&good_token())).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "client svc-1 read write")
    );
    let (status, h, _) = send(&mut svc, bearer("opaque-revoked")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(header(&h, "www-authenticate").contains(r#"error="invalid_token""#));
    assert_eq!(calls.calls(), 2);
}
