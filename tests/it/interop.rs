//! Live interop with the TypeScript reference library `@hellocoop/httpsig`
//! (`tests/interop/hellocoop/`): it verifies requests we sign, signs requests we verify,
//! and reads the `Signature-Error` fields our verifier answers with, at the current time
//! (the library reads the wall clock itself).
//!
//! Needs Node.js and `npm ci` in `tests/interop/hellocoop` (`cargo xtask ci` does it).
//! Without them the test says so loudly and returns, unless `AAUTH_REQUIRE_INTEROP=1`
//! (set by `.ci/run`), in which case it fails.
//!
//! Divergences from RFC 9421 found in the library are asserted as divergences, so the
//! day the library changes, this test says so (see `tests/interop/hellocoop/README.md`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use aauth_headers::Scheme;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{Clock, SystemClock, UnixTime};
use aauth_keys::{Algorithm, PrivateKey};
use aauth_signing::{
    AuthoritySource, SignOptions, SigningKey, Verifier, VerifyError, VerifyPolicy, sign,
};
use aauth_test_support::verify::{agent_verifier, provider_keys};
use serde_json::{Value, json};

fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/hellocoop")
}

/// Whether the peer can run; otherwise a loud skip (or a failure when required).
fn peer_available() -> bool {
    let installed = peer_dir()
        .join("node_modules/@hellocoop/httpsig/package.json")
        .exists();
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if installed && node {
        return true;
    }
    let why = if node {
        "tests/interop/hellocoop/node_modules is missing (run `npm ci` there, or `cargo xtask ci`)"
    } else {
        "node is not installed"
    };
    assert!(
        std::env::var("AAUTH_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "interop with @hellocoop/httpsig is required here but cannot run: {why}"
    );
    eprintln!(
        "\n!!! SKIPPED interop with @hellocoop/httpsig: {why}. Nothing was checked against the TypeScript reference.\n"
    );
    false
}

fn run_peer(mode: &str, input: &Value) -> Value {
    let mut child = Command::new("node")
        .arg("interop.mjs")
        .arg(mode)
        .current_dir(peer_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write cases");
    let out = child.wait_with_output().expect("node runs");
    assert!(
        out.status.success(),
        "node {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("node prints JSON")
}

/// The provider of the interop agent's tokens: its key, signing as `k1`.
fn provider_key() -> PrivateKey {
    aauth_test_support::key(0x31)
}

/// The interop agent's token, bound to `key`, issued at `now`.
fn token_for(key: &PrivateKey, now: UnixTime) -> String {
    aauth_test_support::tokens::agent("aauth:interop@agent.example", key.public_key())
        .sign(&provider_key(), "k1", now, &mut OsRandom)
        .unwrap()
        .token
}

/// A verifier under `policy` that trusts the provider's key for agent tokens.
fn verifier(policy: VerifyPolicy) -> Verifier {
    let issuers = provider_keys(provider_key().public_key(), "k1");
    agent_verifier(policy, Arc::new(issuers))
}

/// One request, described once for both directions.
struct Case {
    name: &'static str,
    method: &'static str,
    url: &'static str,
    content_type: Option<&'static str>,
    body: Option<&'static str>,
    components: Option<&'static [&'static str]>,
    key: Algorithm,
    /// Whether RFC 9421 and the library agree on this case.
    agrees: bool,
}

const CASES: [Case; 6] = [
    Case {
        name: "GET",
        method: "GET",
        url: "https://resource.example/api/documents",
        content_type: None,
        body: None,
        components: None,
        key: Algorithm::Ed25519,
        agrees: true,
    },
    Case {
        name: "POST JSON",
        method: "POST",
        url: "https://ps.example/mission",
        content_type: Some("application/json"),
        body: Some(r#"{"description":"Plan a trip to Sydney"}"#),
        components: None,
        key: Algorithm::Ed25519,
        agrees: true,
    },
    Case {
        name: "GET ES256",
        method: "GET",
        url: "https://resource.example/api/documents",
        content_type: None,
        body: None,
        components: None,
        key: Algorithm::Es256,
        agrees: true,
    },
    Case {
        name: "non-default port",
        method: "GET",
        url: "https://resource.example:8443/a/b",
        content_type: None,
        body: None,
        components: None,
        key: Algorithm::Ed25519,
        agrees: true,
    },
    Case {
        name: "query not covered",
        method: "GET",
        url: "https://resource.example/search?q=sydney&n=5",
        content_type: None,
        body: None,
        components: None,
        key: Algorithm::Ed25519,
        agrees: true,
    },
    // RFC 9421 §2.2.7: @query is "?" followed by the query. The library uses the query
    // without "?" on both sides, so a signature covering @query never interoperates.
    Case {
        name: "@query covered",
        method: "GET",
        url: "https://resource.example/search?q=sydney",
        content_type: None,
        body: None,
        components: Some(&["@method", "@authority", "@path", "@query", "signature-key"]),
        key: Algorithm::Ed25519,
        agrees: false,
    },
];

fn key_for(alg: Algorithm) -> PrivateKey {
    match alg {
        Algorithm::Es256 => PrivateKey::es256_from_scalar(&[0x42; 32]).unwrap(),
        _ => PrivateKey::ed25519_from_seed(&[0x41; 32]),
    }
}

fn split(url: &str) -> (String, String, Option<String>) {
    let uri: http::Uri = url.parse().unwrap();
    (
        uri.authority().unwrap().as_str().to_owned(),
        uri.path().to_owned(),
        uri.query().map(str::to_owned),
    )
}

#[test]
fn the_reference_verifies_what_we_sign() {
    if !peer_available() {
        return;
    }
    let now = SystemClock.now();
    let mut cases = Vec::new();
    for c in &CASES {
        let key = key_for(c.key);
        let scheme = Scheme::jwt(token_for(&key, now));
        let mut b = http::Request::builder().method(c.method).uri(c.url);
        if let Some(ct) = c.content_type {
            b = b.header("content-type", ct);
        }
        let (mut parts, ()) = b.body(()).unwrap().into_parts();
        let mut opts = SignOptions::default();
        if let Some(list) = c.components {
            opts = opts.components(list);
        }
        let body = c.body.unwrap_or_default();
        sign(
            &mut parts,
            body.as_bytes(),
            &[SigningKey::new("sig", &key, &scheme)],
            &opts,
            now,
        )
        .unwrap();
        let headers: serde_json::Map<String, Value> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), Value::from(v.to_str().unwrap())))
            .collect();
        let (authority, path, query) = split(c.url);
        cases.push(json!({
            "name": c.name, "method": c.method, "authority": authority, "path": path, "query": query,
            "headers": headers, "body": c.body, "require_content_digest": c.body.is_some(),
        }));
        // A tampered copy: the reference must refuse it, or its "ok" means nothing.
        let mut tampered = cases.last().unwrap().clone();
        tampered["name"] = format!("{} (tampered)", c.name).into();
        tampered["path"] = "/tampered".into();
        cases.push(tampered);
    }
    let out = run_peer("verify", &json!({ "cases": cases }));
    eprintln!(
        "@hellocoop/httpsig {} verifying our requests",
        out["library_version"]
    );
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), CASES.len() * 2);
    for (c, pair) in CASES.iter().zip(results.chunks(2)) {
        assert_eq!(pair[0]["ok"], c.agrees, "{}: {}", c.name, pair[0]);
        assert_eq!(
            pair[1]["ok"], false,
            "{} tampered must fail: {}",
            c.name, pair[1]
        );
        if c.agrees {
            let key = key_for(c.key);
            assert_eq!(
                pair[0]["thumbprint"],
                key.public_key().thumbprint().as_str(),
                "{}",
                c.name
            );
        }
    }
}

#[test]
fn we_verify_what_the_reference_signs() {
    if !peer_available() {
        return;
    }
    let now = SystemClock.now();
    let mut cases = Vec::new();
    for c in &CASES {
        let key = key_for(c.key);
        let mut headers = serde_json::Map::new();
        if let Some(ct) = c.content_type {
            headers.insert("content-type".into(), ct.into());
        }
        cases.push(json!({
            "name": c.name, "method": c.method, "url": c.url, "headers": headers, "body": c.body,
            "private_jwk": serde_json::from_str::<Value>(&key.to_private_jwk().to_json()).unwrap(),
            "jwt": token_for(&key, now), "components": c.components,
        }));
    }
    let out = run_peer("sign", &json!({ "cases": cases }));
    eprintln!(
        "@hellocoop/httpsig {} signing requests for us",
        out["library_version"]
    );
    let signed = out["cases"].as_array().unwrap();
    assert_eq!(signed.len(), CASES.len());
    for (c, s) in CASES.iter().zip(signed) {
        assert_eq!(
            s["ok"], true,
            "{}: the reference could not sign: {s}",
            c.name
        );
        let (authority, path, query) = split(c.url);
        let target = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let mut b = http::Request::builder()
            .method(c.method)
            .uri(target)
            .header("host", authority.as_str());
        for (k, v) in s["headers"].as_object().unwrap() {
            b = b.header(k.as_str(), v.as_str().unwrap());
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        let body = c.body.unwrap_or_default().as_bytes();
        let verifier = verifier(VerifyPolicy::new(
            AuthoritySource::names([authority.as_str()]).unwrap(),
        ));
        let result = futures_executor::block_on(verifier.verify(&parts, body, now));
        if c.agrees {
            let v = result.unwrap_or_else(|e| panic!("{}: {e} ({s})", c.name));
            assert_eq!(&v.key, key_for(c.key).public_key(), "{}", c.name);
        } else {
            assert!(
                matches!(result, Err(VerifyError::BadSignature)),
                "{}: {result:?}",
                c.name
            );
        }
        // Changing the path breaks it.
        let mut moved = parts.clone();
        moved.uri = "/tampered".parse().unwrap();
        assert!(
            futures_executor::block_on(verifier.verify(&moved, body, now)).is_err(),
            "{}",
            c.name
        );
    }
}

/// Says every token is revoked: our verifier's `revoked_jwt` answer, as a resource or
/// Person Server gives it for a revoked token in `Signature-Key`.
struct EveryTokenRevoked;

#[async_trait::async_trait]
impl aauth_signing::RevocationList for EveryTokenRevoked {
    async fn is_revoked(&self, _iss: &aauth_tokens::ServerId, _jti: &str) -> Result<bool, String> {
        Ok(true)
    }
}

/// One refusal by our verifier, as our servers answer it: the `Signature-Error` field of
/// the response, and the code it carries.
struct Refusal {
    name: &'static str,
    code: &'static str,
    header: String,
}

/// Our verifier's `Signature-Error` for a request it refuses, checked to carry `code`: a
/// `GET` signed by the interop agent under `token` at `created` (its path changed after
/// signing when `tamper`), verified at `now` by `v`.
fn refusal(
    name: &'static str,
    code: &'static str,
    (v, token): (&Verifier, String),
    (created, now): (UnixTime, UnixTime),
    tamper: bool,
) -> Refusal {
    let key = key_for(Algorithm::Ed25519);
    let req = http::Request::get("https://resource.example/doc")
        .body(Vec::new())
        .unwrap();
    let req = aauth_test_support::request::signed(req, &key, &Scheme::jwt(token), created);
    let (mut parts, body) = req.into_parts();
    if tamper {
        parts.uri = "/tampered".parse().unwrap();
    }
    let error = futures_executor::block_on(v.verify(&parts, &body, now))
        .expect_err("our verifier refuses the request");
    let resp = error.into_http_response(v.policy());
    let header = resp.headers()["signature-error"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        header.starts_with(&format!("error={code}")),
        "{name}: our verifier answered {header}"
    );
    Refusal { name, code, header }
}

/// Refusals our servers answer with `Signature-Error`, the first `split` with codes the
/// library's parser knows, the rest with `clock_skew` and `revoked_jwt` (Signature-Key -09
/// §5.4.13, §5.4.14; draft -11 §11.3.4), which it does not.
fn our_refusals() -> (Vec<Refusal>, usize) {
    let now = SystemClock.now();
    let key = key_for(Algorithm::Ed25519);
    let v = verifier(VerifyPolicy::new(
        AuthoritySource::names(["resource.example"]).unwrap(),
    ));
    let revoking = verifier(VerifyPolicy::new(
        AuthoritySource::names(["resource.example"]).unwrap(),
    ))
    .revocations(Arc::new(EveryTokenRevoked));
    let stale = UnixTime(now.0 - 2 * 86_400);
    let refusals = vec![
        refusal(
            "tampered",
            "invalid_signature",
            (&v, token_for(&key, now)),
            (now, now),
            true,
        ),
        refusal(
            "expired token",
            "expired_jwt",
            (&v, token_for(&key, stale)),
            (now, now),
            false,
        ),
        refusal(
            "created ahead",
            "clock_skew",
            (&v, token_for(&key, now)),
            (UnixTime(now.0 + 600), now),
            false,
        ),
        refusal(
            "revoked token",
            "revoked_jwt",
            (&revoking, token_for(&key, now)),
            (now, now),
            false,
        ),
    ];
    (refusals, 2)
}

/// What the library's `parseSignatureError` makes of each of `refusals`: (ok, error).
fn parsed_by_the_reference(refusals: &[Refusal]) -> Vec<(bool, String)> {
    let cases: Vec<Value> = refusals
        .iter()
        .map(|r| json!({ "name": r.name, "header": r.header }))
        .collect();
    let out = run_peer("parse-signature-error", &json!({ "cases": cases }));
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), refusals.len());
    results
        .iter()
        .map(|r| {
            (
                r["ok"] == true,
                r["error"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The library's `parseSignatureError` reads the `Signature-Error` fields our servers send
/// with the codes it knows (`invalid_signature`, `expired_jwt`), so that an agent built on
/// it learns why it was refused.
#[test]
fn the_reference_parses_our_signature_errors() {
    if !peer_available() {
        return;
    }
    let (refusals, split) = our_refusals();
    let known = &refusals[..split];
    for (r, (ok, error)) in known.iter().zip(parsed_by_the_reference(known)) {
        assert!(
            ok,
            "{}: the reference could not parse {:?}: {error}",
            r.name, r.header
        );
        assert_eq!(error, r.code, "{}", r.name);
    }
}

/// A departure of `@hellocoop/httpsig` 2.2.0, pinned: its `parseSignatureError` accepts
/// only the codes of Signature-Key -08 and throws on `clock_skew` and `revoked_jwt`
/// (-09 §5.4.13, §5.4.14), which our servers send as draft -11 §11.3.4 requires
/// (`dist/utils/signature.js`: `Invalid Signature-Error code: …`). An agent built on it
/// cannot tell a clock to correct or a token to replace from any other refusal. The day
/// the library reads them, this test fails, saying so.
#[test]
fn departure_httpsig_cannot_parse_clock_skew_or_revoked_jwt() {
    if !peer_available() {
        return;
    }
    let (refusals, split) = our_refusals();
    let newer = &refusals[split..];
    for (r, (ok, error)) in newer.iter().zip(parsed_by_the_reference(newer)) {
        assert!(
            !ok,
            "@hellocoop/httpsig now parses {:?} ({error}): the departure is gone; make this a check in tests/it/interop.rs, xtask/src/interop.rs, docs/interop.md and tests/interop/hellocoop/README.md",
            r.header
        );
        assert_eq!(
            error,
            format!("Invalid Signature-Error code: {}", r.code),
            "{}: the reference failed otherwise than the pinned departure",
            r.name
        );
    }
}
