//! Live interop with panva's `oidc-provider` 9.13.3 (npm), an OpenID-certified OAuth 2.0
//! authorization server, run as a real process on loopback
//! (`tests/interop/oidc-provider/run.mjs`; `README.md` there says how it is configured).
//!
//! oidc-provider serves plain HTTP; the demo world serves `op.example` over its TLS with a
//! shim that forwards each request unchanged and adds `X-Forwarded-Proto: https`, so the
//! server builds its `https://op.example` URLs. Tokens are obtained from its token
//! endpoint with the client-credentials grant and resource indicators (RFC 8707), and our
//! verifier (`aauth_oauth::AccessTokenVerifier`) checks them as a resource would: it
//! discovers the issuer's metadata and keys over the world's TLS through the egress guard.
//!
//! What is checked:
//! - RS256 and ES256 JWT access tokens (RFC 9068) verify, with their scopes and client;
//! - each is refused for another audience, once expired, with `alg` rewritten to `none`
//!   or `HS256`, with a changed signature, and when a route needs a scope it lacks;
//! - a DPoP-bound token (`cnf.jkt`) is refused as a bearer token, and with a proof by its
//!   key (RFC 9449) our check accepts it once and refuses the replay; our own token
//!   source, bound to its key, gets a DPoP token whose proofs pass that check; with the
//!   server requiring DPoP nonces (RFC 9449 §8), the source answers its `use_dpop_nonce`
//!   with the nonce and gets its token;
//! - an opaque token is not a JWT access token;
//! - opaque tokens are introspected (RFC 7662) by the `introspector` client, kept, refused
//!   for another audience, and seen inactive once the client revoked them (RFC 7009);
//! - our client-credentials source (`aauth_oauth::ClientCredentials`) obtains tokens with
//!   `client_secret_basic`, `client_secret_post` and `private_key_jwt`, caches them,
//!   refreshes four-second tokens at half their life, keeps serving its token while the
//!   server is stopped until it expires, then fails with a typed error; its circuit
//!   breaker opens while the server is down (nothing sent) and closes on the first probe
//!   once the server is back; the server's own refusals (`invalid_client`,
//!   `invalid_target`) come back typed.

use std::sync::Arc;
use std::time::Duration;

use aauth_demos::world::World;
use aauth_keys::base64url;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{Clock, FixedClock, SystemClock};
use aauth_keys::{Algorithm, PrivateKey, Signer as _};
use aauth_metadata::{BreakerState, CacheConfig};
use aauth_oauth::{
    AccessTokenPolicy, AccessTokenVerifier, ClientAuth, ClientConfig, ClientCredentials,
    ClientError, DpopCheck, Introspection, Issuer, OAuthError, VerifyAccessToken,
};
use aauth_resource::MemoryReplayStore;
use aauth_tokens::ServerId;
use serde_json::{Value, json};

use crate::node_peer::{NodePackage, NodePeer, forward};

const OIDC_PROVIDER: NodePackage = NodePackage {
    dir: "oidc-provider",
    package: "oidc-provider",
    version: "9.13.3",
};

const OP: &str = "https://op.example";
const SECRET: &str = "basic-secret-0123456789abcdef0123456789abcdef";
const API: &str = "https://api.example";
const API_ES: &str = "https://api-es.example";

struct Setup {
    peer: NodePeer,
    world: World,
}

async fn setup() -> Option<Setup> {
    setup_with(&[]).await
}

/// As [`setup`], with more of `run.mjs`'s environment.
async fn setup_with(env: &[(&str, &str)]) -> Option<Setup> {
    if !OIDC_PROVIDER.available() {
        return None;
    }
    let mut all = vec![("ISSUER", OP)];
    all.extend_from_slice(env);
    let peer = NodePeer::start(
        OIDC_PROVIDER,
        &all,
        "listening on http://127.0.0.1:",
        "op.example",
        "/.well-known/openid-configuration",
    )
    .await;
    let world = World::new().expect("the world");
    world
        .serve_async(&ServerId::parse(OP).expect("an id"), peer.shim(true))
        .await
        .expect("the shim is served");
    Some(Setup { peer, world })
}

impl Setup {
    fn verifier(
        &self,
        audience: &str,
        clock: Arc<dyn Clock>,
    ) -> AccessTokenVerifier<impl aauth_metadata::Fetch> {
        AccessTokenVerifier::new(
            AccessTokenPolicy::new(audience),
            [Issuer::discover(OP).expect("an issuer")],
            Arc::new(self.world.fetcher_allowing(&["op.example"])),
            clock,
            CacheConfig::default(),
        )
    }

    /// A client-credentials token request to the peer's token endpoint (as a client
    /// would send it through the shim), answered as JSON.
    async fn token(&self, form: &[(&str, &str)], basic: Option<&str>, dpop: Option<&str>) -> Value {
        let body: String = form
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.replace(' ', "%20")
                        .replace(':', "%3A")
                        .replace('/', "%2F")
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let mut req = http::Request::builder()
            .method("POST")
            .uri("/token")
            .header(http::header::HOST, "op.example")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        if let Some(client) = basic {
            let creds = aauth_demos::world::base64_std(format!("{client}:{SECRET}").as_bytes());
            req = req.header(http::header::AUTHORIZATION, format!("Basic {creds}"));
        }
        if let Some(proof) = dpop {
            req = req.header("dpop", proof);
        }
        let resp = forward(
            self.peer.port,
            req.body(body.into_bytes()).expect("a request"),
            Some("https"),
        )
        .await
        .expect("the token endpoint answers");
        let v: Value = serde_json::from_slice(resp.body()).expect("a JSON answer");
        assert_eq!(
            resp.status(),
            200,
            "token request {form:?}: {v}\n{}",
            self.peer.log_text()
        );
        v
    }

    async fn access_token(&self, client: &str, resource: &str, scope: &str) -> String {
        let v = if client == "post-client" {
            self.token(
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", client),
                    ("client_secret", SECRET),
                    ("resource", resource),
                    ("scope", scope),
                ],
                None,
                None,
            )
            .await
        } else {
            self.token(
                &[
                    ("grant_type", "client_credentials"),
                    ("resource", resource),
                    ("scope", scope),
                ],
                Some(client),
                None,
            )
            .await
        };
        v["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned()
    }
}

fn segments(token: &str) -> (Value, Value, String) {
    let mut it = token.split('.');
    let json = |s: Option<&str>| -> Value {
        serde_json::from_slice(&base64url::decode(s.expect("a segment")).expect("base64url"))
            .expect("JSON")
    };
    let header = json(it.next());
    let claims = json(it.next());
    (header, claims, it.next().expect("a signature").to_owned())
}

fn reassemble(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        base64url::encode(header.to_string().as_bytes()),
        base64url::encode(claims.to_string().as_bytes())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_rs256_and_es256_access_tokens_verify() {
    let Some(s) = setup().await else { return };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    let rs = s.access_token("basic-client", API, "read write").await;
    let (header, _, _) = segments(&rs);
    assert_eq!(
        (header["alg"].as_str(), header["typ"].as_str()),
        (Some("RS256"), Some("at+jwt"))
    );
    let claims = s
        .verifier(API, Arc::clone(&clock))
        .verify_bearer(&rs)
        .await
        .expect("RS256 verifies");
    assert_eq!(claims.issuer(), OP);
    assert_eq!(claims.client_id(), Some("basic-client"));
    assert_eq!(claims.scopes().collect::<Vec<_>>(), ["read", "write"]);
    claims
        .require_scopes(["read", "write"])
        .expect("both scopes");

    let es = s.access_token("post-client", API_ES, "read").await;
    assert_eq!(segments(&es).0["alg"], "ES256");
    let claims = s
        .verifier(API_ES, clock)
        .verify_bearer(&es)
        .await
        .expect("ES256 verifies");
    assert_eq!(claims.client_id(), Some("post-client"));
    assert_eq!(
        claims
            .require_scopes(["write"])
            .expect_err("write was not granted"),
        OAuthError::InsufficientScope {
            missing: "write".to_owned()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_tokens_are_refused_where_they_must_be() {
    let Some(s) = setup().await else { return };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let v = s.verifier(API, Arc::clone(&clock));
    let rs = s.access_token("basic-client", API, "read").await;
    v.verify_bearer(&rs)
        .await
        .expect("the genuine token verifies");

    // Another resource's token.
    let es = s.access_token("basic-client", API_ES, "read").await;
    assert!(matches!(
        v.verify_bearer(&es).await,
        Err(OAuthError::Audience { .. })
    ));

    // The same claims under alg none (unsigned, or with the signature kept) or HS256.
    let (header, claims, sig) = segments(&rs);
    for (alg, signature) in [
        ("none", ""),
        ("none", sig.as_str()),
        ("HS256", sig.as_str()),
    ] {
        let mut h = header.clone();
        h["alg"] = json!(alg);
        let forged = reassemble(&h, &claims, signature);
        let e = v.verify_bearer(&forged).await.expect_err("forged");
        assert_eq!(e.status(), 401, "{alg}: {e:?}");
        assert!(
            matches!(
                e,
                OAuthError::Algorithm { .. } | OAuthError::Malformed { .. }
            ),
            "{e:?}"
        );
    }
    // Claims changed under the genuine signature.
    let mut widened = claims.clone();
    widened["scope"] = json!("read write admin");
    assert_eq!(
        v.verify_bearer(&reassemble(&header, &widened, &sig))
            .await
            .expect_err("changed"),
        OAuthError::Signature
    );
    // An ES256 header over an RS256 signature: the key (RSA) decides, not the header.
    let mut es_header = header.clone();
    es_header["alg"] = json!("ES256");
    assert_eq!(
        v.verify_bearer(&reassemble(&es_header, &claims, &sig))
            .await
            .expect_err("alg swapped"),
        OAuthError::Signature
    );

    // Past its expiry (the server's 300 s lifetime and our 60 s leeway).
    let later = Arc::new(FixedClock::new(clock.now()));
    later.advance(Duration::from_secs(300 + 61));
    let e = s
        .verifier(API, later)
        .verify_bearer(&rs)
        .await
        .expect_err("expired");
    assert!(matches!(e, OAuthError::Expired { .. }), "{e:?}");

    // An opaque token is not a JWT.
    let opaque = s
        .access_token("basic-client", "https://opaque.example", "read")
        .await;
    assert!(matches!(
        v.verify_bearer(&opaque).await,
        Err(OAuthError::Malformed { .. })
    ));
}

/// A DPoP proof (RFC 9449 §4.2) for the token endpoint, by `key`.
fn dpop_proof(key: &PrivateKey) -> String {
    dpop_proof_for(key, "POST", &format!("{OP}/token"), None)
}

/// A DPoP proof by `key` for `method` `htu`, with `ath` when a token is presented.
fn dpop_proof_for(key: &PrivateKey, method: &str, htu: &str, token: Option<&str>) -> String {
    let header = json!({
        "typ": "dpop+jwt",
        "alg": "ES256",
        "jwk": serde_json::from_str::<Value>(&key.public_key().to_jwk().to_json()).expect("JWK JSON"),
    });
    let now = SystemClock.now().as_secs();
    let mut claims = json!({
        "htm": method,
        "htu": htu,
        "iat": now,
        "jti": format!("proof-{now}-{}-{htu}", std::process::id()),
    });
    if let Some(token) = token {
        claims["ath"] = json!(base64url::encode(&aauth_keys::digest::sha256(
            token.as_bytes()
        )));
    }
    let input = format!(
        "{}.{}",
        base64url::encode(header.to_string().as_bytes()),
        base64url::encode(claims.to_string().as_bytes())
    );
    let sig = key.sign(input.as_bytes()).expect("ES256 sign");
    format!("{input}.{}", base64url::encode(&sig))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_dpop_bound_tokens_are_not_bearer_tokens() {
    let Some(s) = setup().await else { return };
    let key = PrivateKey::generate(Algorithm::Es256, &mut OsRandom).expect("a key");
    let v = s
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("resource", API),
                ("scope", "read"),
            ],
            Some("dpop-client"),
            Some(&dpop_proof(&key)),
        )
        .await;
    assert_eq!(v["token_type"], "DPoP");
    let token = v["access_token"].as_str().expect("an access token");
    let verifier = s.verifier(API, Arc::new(SystemClock));
    assert!(matches!(
        verifier.verify_bearer(token).await,
        Err(OAuthError::Binding { .. })
    ));
    // Verified as a token, it names the proof key: what a DPoP check compares.
    let claims = verifier
        .verify_token(token)
        .await
        .expect("the token itself verifies");
    assert_eq!(claims.jkt(), Some(key.public_key().thumbprint().as_str()));
    // Presented to the resource with a proof by that key, as RFC 9449 §7 says: the proof
    // checks, names the token's key, and is refused when replayed.
    let check = DpopCheck::new(API, Arc::new(MemoryReplayStore::new(100)));
    let resource_proof = dpop_proof_for(&key, "GET", &format!("{API}/data"), Some(token));
    let now = SystemClock.now();
    let checked = check
        .verify(&resource_proof, "GET", "/data", token, now)
        .await
        .expect("our check accepts the proof for the peer's token");
    assert_eq!(Some(checked.jkt.as_str()), claims.jkt());
    assert!(matches!(
        check
            .verify(&resource_proof, "GET", "/data", token, now)
            .await,
        Err(OAuthError::DpopProof { .. })
    ));

    // Our own token source, bound to its key: the peer issues a DPoP token for it, and the
    // source's proofs for an API request pass the resource's check.
    let client_key: Arc<dyn aauth_keys::Signer> =
        Arc::new(PrivateKey::generate(Algorithm::Es256, &mut OsRandom).expect("a key"));
    let tokens = dpop_source(
        &client_key,
        s.world.agent_transport_allowing(&["op.example"]),
    );
    let issued = tokens
        .token()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.peer.log_text()));
    assert_eq!(issued.token_type, "DPoP");
    let proof = tokens
        .dpop_proof("GET", &format!("{API}/data"), Some(&issued.access_token))
        .expect("a proof");
    let checked = check
        .verify(
            &proof,
            "GET",
            "/data",
            &issued.access_token,
            SystemClock.now(),
        )
        .await
        .expect("the proof passes");
    let claims = verifier
        .verify_token(&issued.access_token)
        .await
        .expect("the token verifies");
    assert_eq!(claims.jkt(), Some(checked.jkt.as_str()));
    assert_eq!(checked.jkt, client_key.public_key().thumbprint().as_str());
}

/// Our token source as the peer's `dpop-client`, its tokens bound to `key`, sending
/// through `transport`.
fn dpop_source(
    key: &Arc<dyn aauth_keys::Signer>,
    transport: Arc<dyn aauth_metadata::Transport>,
) -> ClientCredentials {
    ClientCredentials::new(
        ClientConfig::new(
            aauth_metadata::HttpsUrl::parse(&format!("{OP}/token")).expect("a URL"),
            ClientAuth::SecretBasic {
                client_id: "dpop-client".to_owned(),
                secret: SECRET.to_owned(),
            },
        )
        .scope("read")
        .resource(API)
        .dpop(Arc::clone(key)),
        transport,
        Arc::new(SystemClock),
    )
}

/// RFC 9449 §8: the peer wants its nonce in every DPoP proof at its token endpoint. Our
/// token source's first request is refused with `use_dpop_nonce` and a `DPoP-Nonce`; the
/// second, with that nonce in its proof, gets the bound token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_dpop_nonces_are_followed_by_our_token_source() {
    let Some(s) = setup_with(&[("DPOP_NONCE", "1")]).await else {
        return;
    };
    let client_key: Arc<dyn aauth_keys::Signer> =
        Arc::new(PrivateKey::generate(Algorithm::Es256, &mut OsRandom).expect("a key"));
    let wire = s.world.agent_transport_allowing(&["op.example"]);
    let tokens = dpop_source(&client_key, wire.clone());
    let issued = tokens
        .token()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.peer.log_text()));
    assert_eq!(issued.token_type, "DPoP");
    assert_eq!(tokens.fetches(), 1, "the nonce round is part of one fetch");
    // On the wire: refused for want of a nonce, then issued with it.
    let sent = wire.take();
    assert_eq!(sent.len(), 2);
    let (first, second) = (&sent[0].1, &sent[1].1);
    assert_eq!(first.status(), 400);
    assert!(
        String::from_utf8_lossy(first.body()).contains("use_dpop_nonce"),
        "{}",
        String::from_utf8_lossy(first.body())
    );
    let nonce = first.headers()["dpop-nonce"].to_str().expect("ASCII");
    assert_eq!(second.status(), 200);
    let proof = sent[1].0.headers()["dpop"].to_str().expect("ASCII");
    let claims = proof.split('.').nth(1).expect("a JWS");
    let claims: Value =
        serde_json::from_slice(&base64url::decode(claims).expect("base64url")).expect("JSON");
    assert_eq!(claims["nonce"], nonce);
    let claims = s
        .verifier(API, Arc::new(SystemClock))
        .verify_token(&issued.access_token)
        .await
        .expect("the token verifies");
    assert_eq!(
        claims.jkt(),
        Some(client_key.public_key().thumbprint().as_str())
    );
}

// ---------------------------------------------------------------------------------------
// Our client-credentials token source against the peer's token endpoint
// ---------------------------------------------------------------------------------------

fn client(s: &Setup, auth: ClientAuth, resource: &str) -> Arc<ClientCredentials> {
    let config = ClientConfig::new(
        aauth_metadata::HttpsUrl::parse(&format!("{OP}/token")).expect("a URL"),
        auth,
    )
    .scope("read")
    .resource(resource);
    Arc::new(ClientCredentials::new(
        config,
        s.world.agent_transport_allowing(&["op.example"]),
        Arc::new(SystemClock),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_issues_our_client_tokens_by_each_authentication_method() {
    let jwt_key = Arc::new(PrivateKey::generate(Algorithm::Es256, &mut OsRandom).expect("a key"));
    let jwks = format!(
        r#"{{"keys":[{}]}}"#,
        jwt_key.public_key().to_jwk().with_kid("c1").to_json()
    );
    let Some(s) = setup_with(&[("JWT_CLIENT_JWKS", jwks.as_str())]).await else {
        return;
    };
    let verifier = s.verifier(API, Arc::new(SystemClock));
    for auth in [
        ClientAuth::SecretBasic {
            client_id: "basic-client".to_owned(),
            secret: SECRET.to_owned(),
        },
        ClientAuth::SecretPost {
            client_id: "post-client".to_owned(),
            secret: SECRET.to_owned(),
        },
        ClientAuth::PrivateKeyJwt {
            client_id: "jwt-client".to_owned(),
            key: jwt_key.clone(),
            kid: "c1".to_owned(),
        },
    ] {
        let who = format!("{auth:?}");
        let c = client(&s, auth, API);
        let token = c
            .token()
            .await
            .unwrap_or_else(|e| panic!("{who}: {e}\n{}", s.peer.log_text()));
        assert_eq!(token.token_type, "Bearer", "{who}");
        // The resource side of this workspace accepts what the client side obtained.
        let claims = verifier
            .verify_bearer(&token.access_token)
            .await
            .expect("verifies");
        assert_eq!(claims.client_id(), Some(c.client_id()), "{who}");
        // Cached: a second call sends nothing.
        c.token().await.expect("cached");
        assert_eq!(c.fetches(), 1, "{who}");
    }
    // A wrong secret: the server's own error, typed, not retried.
    let wrong = client(
        &s,
        ClientAuth::SecretBasic {
            client_id: "basic-client".to_owned(),
            secret: "wrong".to_owned(),
        },
        API,
    );
    let e = wrong.token().await.expect_err("refused");
    assert_eq!(e.code(), "invalid_client", "{e}");
    assert_eq!(wrong.fetches(), 1);
    // An unknown resource: invalid_target.
    let other = client(
        &s,
        ClientAuth::SecretBasic {
            client_id: "basic-client".to_owned(),
            secret: SECRET.to_owned(),
        },
        "https://unknown.example",
    );
    assert_eq!(
        other.token().await.expect_err("refused").code(),
        "invalid_target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_short_tokens_are_refreshed_and_outlive_a_stopped_server_until_expiry() {
    // Four-second tokens: refreshed after two seconds (half their life).
    let Some(mut s) = setup_with(&[("ACCESS_TOKEN_TTL", "4")]).await else {
        return;
    };
    let c = client(
        &s,
        ClientAuth::SecretBasic {
            client_id: "basic-client".to_owned(),
            secret: SECRET.to_owned(),
        },
        API,
    );
    let first = c.token().await.expect("a token");
    assert_eq!(first.expires_at.as_secs() - first.received_at.as_secs(), 4);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let second = c.token().await.expect("a refreshed token");
    assert_ne!(first.access_token, second.access_token);
    assert_eq!(c.fetches(), 2);
    // The server stops. Past the refresh point the held token is still served...
    s.peer.stop();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let held = c.token().await.expect("the held token while it lasts");
    assert_eq!(held.access_token, second.access_token);
    // ...and once it has expired, the typed error.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let e = c.token().await.expect_err("no token left");
    assert!(
        matches!(
            e,
            ClientError::Unavailable { .. } | ClientError::CircuitOpen { .. }
        ),
        "{e:?}"
    );
}

/// The peer goes down: the token source's breaker opens (after one failed fetch, as
/// configured here) and sends nothing while open; the peer comes back on its port, and
/// once the breaker's time has passed one probe gets a token and closes it. The breaker
/// counts whole seconds, so `open_for = 1` could end a moment after it opened: three
/// seconds keep it open across the refused call on a loaded machine, and the test waits
/// for the `until` the breaker itself reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_down_opens_the_breaker_and_its_return_closes_it() {
    let Some(mut s) = setup().await else { return };
    let mut config = ClientConfig::new(
        aauth_metadata::HttpsUrl::parse(&format!("{OP}/token")).expect("a URL"),
        ClientAuth::SecretBasic {
            client_id: "basic-client".to_owned(),
            secret: SECRET.to_owned(),
        },
    )
    .scope("read")
    .resource(API);
    config.breaker.failure_threshold = 1;
    config.breaker.open_for = 3;
    config.retry.base_delay = Duration::from_millis(20);
    let c = ClientCredentials::new(
        config,
        s.world.agent_transport_allowing(&["op.example"]),
        Arc::new(SystemClock),
    );
    c.token().await.expect("a token");
    c.invalidate();
    s.peer.stop();
    let e = c.token().await.expect_err("the peer is down");
    assert!(matches!(e, ClientError::Unavailable { .. }), "{e:?}");
    let BreakerState::Open { until } = c.breaker() else {
        panic!("the breaker is open: {:?}", c.breaker())
    };
    let sent = c.fetches();
    let e = c.token().await.expect_err("the breaker is open");
    assert!(matches!(e, ClientError::CircuitOpen { .. }), "{e:?}");
    assert_eq!(c.fetches(), sent, "nothing sent while open");

    s.peer
        .restart(
            OIDC_PROVIDER,
            &[("ISSUER", OP)],
            "listening on http://127.0.0.1:",
            "op.example",
            "/.well-known/openid-configuration",
        )
        .await;
    while SystemClock.now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.token()
        .await
        .unwrap_or_else(|e| panic!("the probe gets a token: {e}\n{}", s.peer.log_text()));
    assert!(
        matches!(c.breaker(), BreakerState::Closed { .. }),
        "{:?}",
        c.breaker()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_opaque_tokens_are_introspected_kept_and_dropped_once_revoked() {
    let Some(s) = setup().await else { return };
    const OPAQUE: &str = "https://opaque.example";
    let token = s.access_token("basic-client", OPAQUE, "read").await;
    let introspection = |ttl: u64| {
        Introspection::new(
            aauth_metadata::HttpsUrl::parse(&format!("{OP}/token/introspection")).expect("a URL"),
            ClientAuth::SecretBasic {
                client_id: "introspector".to_owned(),
                secret: SECRET.to_owned(),
            },
            OP,
            OPAQUE,
            s.world.agent_transport_allowing(&["op.example"]),
            Arc::new(SystemClock),
        )
        .max_ttl(ttl)
    };
    let kept = introspection(60);
    let claims = kept.verify_bearer(&token).await.expect("active");
    assert_eq!(claims.client_id(), Some("basic-client"));
    assert_eq!(claims.scope(), "read");
    assert_eq!(kept.cached(), 1);
    // For another resource, the same answer is refused (its aud is opaque.example).
    let elsewhere = Introspection::new(
        aauth_metadata::HttpsUrl::parse(&format!("{OP}/token/introspection")).expect("a URL"),
        ClientAuth::SecretBasic {
            client_id: "introspector".to_owned(),
            secret: SECRET.to_owned(),
        },
        OP,
        API,
        s.world.agent_transport_allowing(&["op.example"]),
        Arc::new(SystemClock),
    );
    assert!(matches!(
        elsewhere.verify_bearer(&token).await,
        Err(OAuthError::Audience { .. })
    ));
    // The client revokes its token (RFC 7009); an uncached check sees it inactive, the
    // cached one keeps its answer until its cap (the documented window).
    let body = format!("token={token}");
    let req = http::Request::builder()
        .method("POST")
        .uri("/token/revocation")
        .header(http::header::HOST, "op.example")
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(
            http::header::AUTHORIZATION,
            format!(
                "Basic {}",
                aauth_demos::world::base64_std(format!("basic-client:{SECRET}").as_bytes())
            ),
        )
        .body(body.into_bytes())
        .expect("a request");
    let resp = forward(s.peer.port, req, Some("https"))
        .await
        .expect("revocation answers");
    assert_eq!(
        resp.status(),
        200,
        "{}",
        String::from_utf8_lossy(resp.body())
    );
    let e = introspection(0)
        .verify_bearer(&token)
        .await
        .expect_err("revoked");
    assert!(
        matches!(
            e,
            OAuthError::Claim {
                claim: "active",
                ..
            }
        ),
        "{e:?}"
    );
    kept.verify_bearer(&token)
        .await
        .expect("kept until the cap");
}
