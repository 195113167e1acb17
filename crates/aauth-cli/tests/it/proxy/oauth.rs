//! OAuth clients at the proxy (`[resource_proxy.oauth]`, a route's `oauth_scope`): a
//! Bearer token of the configured issuer reaches the upstream as the verified client,
//! never as the token; a bad one is refused with RFC 6750's answer beside the AAuth
//! challenge; an AAuth agent still passes on the same route; the proxy publishes RFC 9728
//! metadata.

use std::collections::BTreeMap;

use aauth_demos::world::documents;
use aauth_keys::{Signer as _, base64url};
use aauth_tokens::ServerId;
use serde_json::json;

use super::*;

/// The authorization server's signing key.
fn as_key() -> PrivateKey {
    PrivateKey::es256_from_scalar(&[0x31; 32]).unwrap()
}

fn access_token(scope: &str, aud: &str) -> String {
    bound_access_token(scope, aud, None)
}

/// An access token, bound to the key of thumbprint `jkt` (RFC 9449 §6) when given.
fn bound_access_token(scope: &str, aud: &str, jkt: Option<&str>) -> String {
    let now = SystemClock.now().as_secs();
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "as-1"});
    let mut claims = json!({
        "iss": "https://as.example", "sub": "svc-7", "client_id": "svc-7", "aud": aud,
        "scope": scope, "iat": now - 5, "exp": now + 300, "jti": "at-1",
    });
    if let Some(jkt) = jkt {
        claims["cnf"] = json!({ "jkt": jkt });
    }
    let input = format!(
        "{}.{}",
        base64url::encode(header.to_string().as_bytes()),
        base64url::encode(claims.to_string().as_bytes())
    );
    let sig = as_key().sign(input.as_bytes()).unwrap();
    format!("{input}.{}", base64url::encode(&sig))
}

fn bearer(path: &str, token: &str) -> http::Request<Vec<u8>> {
    http::Request::get(format!("https://resource.example{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-aauth-oauth-client-id", "spoofed")
        .body(Vec::new())
        .unwrap()
}

struct OAuthSetup {
    world: World,
    proxy: Served,
    seen: Arc<Seen>,
    _provider: Served,
}

async fn start(name: &str) -> OAuthSetup {
    start_with(name, "").await
}

/// As [`start`], with `more` in `[resource_proxy.oauth]`.
async fn start_with(name: &str, more: &str) -> OAuthSetup {
    let dir = scratch(name);
    let world = World::new().unwrap();
    let provider = Served::start(&dir, "agent-provider", &provider_config(&world, &dir));
    world.alias("agent.example", provider.addr);
    // The OAuth authorization server: its metadata and keys over the world's TLS.
    let jwks = format!(
        r#"{{"keys":[{}]}}"#,
        as_key().public_key().to_jwk().with_kid("as-1").to_json()
    );
    let docs = BTreeMap::from([
        (
            "/.well-known/oauth-authorization-server".to_owned(),
            json!({"issuer": "https://as.example", "jwks_uri": "https://as.example/jwks"})
                .to_string(),
        ),
        ("/jwks".to_owned(), jwks),
    ]);
    let as_addr = world
        .serve(
            &ServerId::parse("https://as.example").unwrap(),
            documents(docs),
        )
        .await
        .unwrap();
    let (up, seen) = upstream().await;
    let config = proxy_config(
        &world,
        &dir,
        free_port(),
        &format!("http://{up}"),
        &[("agent.example", provider.addr), ("as.example", as_addr)],
    );
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        "path = \"/agent/*\"\naccess = \"agent-token\"\n",
        "path = \"/agent/*\"\naccess = \"agent-token\"\noauth_scope = \"files.read\"\n",
    );
    let text = format!("{text}[resource_proxy.oauth]\nissuers = [\"https://as.example\"]\n{more}");
    std::fs::write(&config, text).unwrap();
    let proxy = Served::start(&dir, "resource-proxy", &config);
    world.alias("resource.example", proxy.addr);
    OAuthSetup {
        world,
        proxy,
        seen,
        _provider: provider,
    }
}

#[tokio::test]
async fn an_oauth_client_reaches_the_upstream_as_its_verified_identity() {
    let s = start("proxy-oauth-admit").await;
    let token = access_token("files.read files.write", "https://resource.example");
    let r = send_tls(&s.world, s.proxy.addr, bearer("/agent/hello", &token)).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", s.proxy.log());
    let seen = s.seen.last();
    assert_eq!(
        seen["x-aauth-oauth-client-id"], "svc-7",
        "the verified one, not the spoofed"
    );
    assert_eq!(seen["x-aauth-oauth-issuer"], "https://as.example");
    assert_eq!(seen["x-aauth-oauth-sub"], "svc-7");
    assert_eq!(seen["x-aauth-scope"], "files.read files.write");
    assert!(
        !seen.contains_key("authorization"),
        "the token stays at the proxy: {seen:?}"
    );
    assert!(!seen.contains_key("x-aauth-agent"));
    // An AAuth agent on the same route, as before.
    let signed = signed_by(
        0x22,
        ("GET", "/agent/hello"),
        &[],
        b"",
        &assistant_token_for(0x22),
    );
    let r = send_tls(&s.world, s.proxy.addr, signed).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", s.proxy.log());
    let seen = s.seen.last();
    assert_eq!(seen["x-aauth-agent"], "aauth:assistant@agent.example");
    assert!(!seen.contains_key("x-aauth-oauth-client-id"));
}

#[tokio::test]
async fn bad_oauth_tokens_are_refused_at_the_proxy_with_both_challenges() {
    let s = start("proxy-oauth-refuse").await;
    let cases = [
        (
            "another audience",
            access_token("files.read", "https://other.example"),
            401,
            "invalid_token",
        ),
        (
            "a missing scope",
            access_token("files.write", "https://resource.example"),
            403,
            "insufficient_scope",
        ),
        ("not a token", "garbage".to_owned(), 401, "invalid_token"),
    ];
    for (what, token, status, code) in cases {
        let r = send_tls(&s.world, s.proxy.addr, bearer("/agent/hello", &token)).await;
        assert_eq!(r.status().as_u16(), status, "{what}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.contains(&format!("error=\"{code}\"")),
            "{what}: {challenge}"
        );
        assert!(
            challenge.contains("resource_metadata=\"https://resource.example/.well-known/oauth-protected-resource\""),
            "{challenge}"
        );
        if status == 401 {
            assert_eq!(
                r.headers()["aauth-requirement"],
                "requirement=agent-token",
                "{what}"
            );
        }
    }
    // Each refusal's log line names its request id and its OAuth code, never the token.
    let log = s.proxy.log();
    for code in ["invalid_token", "insufficient_scope"] {
        assert!(
            log.lines().any(|l| l.contains("\"request_id\":")
                && l.contains(&format!("\"oauth_error\":\"{code}\""))),
            "{code}: {log}"
        );
    }
    assert!(!log.contains("garbage"), "{log}");
    // A route without oauth_scope takes no OAuth token: the AAuth answer alone.
    let token = access_token("files.read", "https://resource.example");
    let r = send_tls(&s.world, s.proxy.addr, bearer("/files/a", &token)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(!r.headers().contains_key("www-authenticate"));
    assert_eq!(s.seen.calls(), 0);
}

#[tokio::test]
async fn the_proxy_publishes_protected_resource_metadata() {
    let s = start("proxy-oauth-metadata").await;
    let req = http::Request::get("https://resource.example/.well-known/oauth-protected-resource")
        .body(Vec::new())
        .unwrap();
    let r = send_tls(&s.world, s.proxy.addr, req).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["resource"], "https://resource.example");
    assert_eq!(doc["authorization_servers"], json!(["https://as.example"]));
    assert_eq!(doc["scopes_supported"], json!(["files.read"]));
    assert_eq!(doc["resource_name"], "Example Files");
}

#[test]
fn a_route_with_oauth_scope_needs_the_oauth_section() {
    let dir = scratch("proxy-oauth-check");
    let world = World::new().unwrap();
    let config = proxy_config(&world, &dir, free_port(), "http://127.0.0.1:9", &[]);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "access = \"agent-token\"\n",
        "access = \"agent-token\"\noauth_scope = \"a\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let o = aauth(&dir, &["config", "check", config.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        crate::stderr(&o).contains("resource_proxy.oauth"),
        "{}",
        crate::stderr(&o)
    );
}

/// A DPoP proof by `key` for `GET {url}` presenting `token`, with `nonce` if given.
fn dpop_proof(key: &PrivateKey, url: &str, token: &str, nonce: Option<&str>) -> String {
    let header = json!({
        "typ": "dpop+jwt", "alg": "ES256",
        "jwk": serde_json::from_str::<serde_json::Value>(&key.public_key().to_jwk().to_json()).unwrap(),
    });
    let mut claims = json!({
        "jti": format!("p-{}", nonce.unwrap_or("none")), "htm": "GET", "htu": url,
        "iat": SystemClock.now().as_secs(),
        "ath": base64url::encode(&aauth_keys::digest::sha256(token.as_bytes())),
    });
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    let input = format!(
        "{}.{}",
        base64url::encode(header.to_string().as_bytes()),
        base64url::encode(claims.to_string().as_bytes())
    );
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", base64url::encode(&sig))
}

/// `dpop_nonce_secret_file`: a DPoP client's proof must carry the proxy's nonce (RFC 9449
/// §9); without one it is refused with `use_dpop_nonce` and a `DPoP-Nonce`, with it the
/// client reaches the upstream.
#[tokio::test]
async fn dpop_clients_carry_the_proxys_nonces() {
    let secret = std::env::temp_dir().join(format!("aauth-dpop-nonce-{}", std::process::id()));
    crate::serve::secret_file(&secret, "4d".repeat(32));
    let s = start_with(
        "proxy-oauth-dpop-nonce",
        &format!(
            "dpop = true\ndpop_nonce_secret_file = \"{}\"\n",
            secret.display()
        ),
    )
    .await;
    let key = PrivateKey::es256_from_scalar(&[0x41; 32]).unwrap();
    let token = bound_access_token(
        "files.read",
        "https://resource.example",
        Some(key.public_key().thumbprint().as_str()),
    );
    let url = "https://resource.example/agent/hello";
    let request = |nonce: Option<&str>| {
        http::Request::get(url)
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", dpop_proof(&key, url, &token, nonce))
            .body(Vec::new())
            .unwrap()
    };
    let r = send_tls(&s.world, s.proxy.addr, request(None)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{}", s.proxy.log());
    let challenge: Vec<String> = r
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        challenge
            .iter()
            .any(|c| c.starts_with("DPoP") && c.contains(r#"error="use_dpop_nonce""#)),
        "{challenge:?}"
    );
    let nonce = r.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    assert_eq!(s.seen.calls(), 0);
    let r = send_tls(&s.world, s.proxy.addr, request(Some(&nonce))).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", s.proxy.log());
    assert_eq!(s.seen.last()["x-aauth-oauth-client-id"], "svc-7");
}

/// An HS256 access token of `iss`, tagged with `secret`.
fn hs256_token(iss: &str, secret: &[u8]) -> String {
    let now = SystemClock.now().as_secs();
    let header = json!({"alg": "HS256", "typ": "at+jwt"});
    let claims = json!({
        "iss": iss, "sub": "job-3", "client_id": "job-3", "aud": "https://resource.example",
        "scope": "files.read", "iat": now - 5, "exp": now + 300,
    });
    let input = format!(
        "{}.{}",
        base64url::encode(header.to_string().as_bytes()),
        base64url::encode(claims.to_string().as_bytes())
    );
    let tag = aauth_oauth::SharedSecret::new(aauth_oauth::HmacAlgorithm::Hs256, secret)
        .unwrap()
        .sign(input.as_bytes());
    format!("{input}.{}", base64url::encode(&tag))
}

#[tokio::test]
async fn an_issuer_that_signs_with_a_shared_secret_is_taken_only_with_it() {
    const SECRET: &[u8] = b"the issuer and this API share it";
    let files = scratch("proxy-oauth-secret-files");
    let secret_file = files.join("issuer.secret");
    // As an issuer's console prints it: the bytes, then a newline (dropped).
    crate::serve::secret_file(&secret_file, [SECRET, b"\n"].concat());
    let s = start_with(
        "proxy-oauth-secret",
        &format!(
            "[[resource_proxy.oauth.secret_issuers]]\nissuer = \"https://hs.example\"\nsecret_file = {:?}\n",
            secret_file.display().to_string()
        ),
    )
    .await;
    let good = hs256_token("https://hs.example", SECRET);
    let r = send_tls(&s.world, s.proxy.addr, bearer("/agent/hello", &good)).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", s.proxy.log());
    assert_eq!(s.seen.last()["x-aauth-oauth-issuer"], "https://hs.example");
    assert_eq!(s.seen.last()["x-aauth-oauth-client-id"], "job-3");
    let calls = s.seen.calls();
    // Another secret; the secret with the newline; HMAC in the name of the issuer that
    // publishes keys (whatever the secret): each refused, none reaches the upstream.
    for (what, token) in [
        (
            "another secret",
            hs256_token("https://hs.example", &[b'x'; 32]),
        ),
        (
            "the file's bytes with its newline",
            hs256_token("https://hs.example", &[SECRET, b"\n"].concat()),
        ),
        (
            "HMAC for the issuer with published keys",
            hs256_token("https://as.example", SECRET),
        ),
    ] {
        let r = send_tls(&s.world, s.proxy.addr, bearer("/agent/hello", &token)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\""),
            "{what}"
        );
    }
    assert_eq!(
        s.seen.calls(),
        calls,
        "no refused token reached the upstream"
    );
    // The ES256 issuer's tokens still pass beside it.
    let es = access_token("files.read", "https://resource.example");
    let r = send_tls(&s.world, s.proxy.addr, bearer("/agent/hello", &es)).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[test]
fn a_short_or_unnamed_secret_is_refused_by_config_check() {
    let dir = scratch("proxy-oauth-secret-check");
    let world = World::new().unwrap();
    let config = proxy_config(&world, &dir, free_port(), "http://127.0.0.1:9", &[]);
    let base = std::fs::read_to_string(&config).unwrap();
    crate::serve::secret_file(
        dir.join("short.secret"),
        "only 31 bytes, one too few.....\n",
    );
    crate::serve::secret_file(dir.join("long.secret"), [b'k'; 64]);
    for (more, expect) in [
        (
            "issuer = \"https://hs.example\"\nsecret_file = \"short.secret\"\n",
            "at least 32 bytes",
        ),
        (
            "issuer = \"https://hs.example\"\nalg = \"RS256\"\nsecret_file = \"long.secret\"\n",
            "not HS256, HS384 or HS512",
        ),
        (
            "issuer = \"https://as.example\"\nsecret_file = \"long.secret\"\n",
            "configured twice",
        ),
        (
            "issuer = \"https://hs.example\"\nsecret_file = \"absent.secret\"\n",
            "absent.secret",
        ),
    ] {
        std::fs::write(
            &config,
            format!(
                "{base}[resource_proxy.oauth]\nissuers = [\"https://as.example\"]\n[[resource_proxy.oauth.secret_issuers]]\n{more}"
            ),
        )
        .unwrap();
        let o = aauth(&dir, &["config", "check", config.to_str().unwrap()]);
        assert!(!o.status.success(), "{more}");
        assert!(
            crate::stderr(&o).contains(expect),
            "{more}: {}",
            crate::stderr(&o)
        );
    }
    // With a secret of the right length for its algorithm, the check passes.
    std::fs::write(
        &config,
        format!(
            "{base}[resource_proxy.oauth]\n[[resource_proxy.oauth.secret_issuers]]\nissuer = \"plain-name\"\nalg = \"HS512\"\nsecret_file = \"long.secret\"\n"
        ),
    )
    .unwrap();
    let o = aauth(&dir, &["config", "check", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
}
