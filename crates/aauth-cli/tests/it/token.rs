//! `aauth token decode` and `aauth token verify`, the latter against an agent provider
//! served over the demo world's TLS on loopback.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use aauth_demos::world::{World, documents};
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{Clock, SystemClock, UnixTime};
use aauth_keys::{JwkSet, PrivateKey};
use aauth_tokens::{AgentId, AgentTokenBuilder, ServerId};

use crate::{aauth, aauth_with_input, assert_fails, scratch, stdout};

const PROVIDER: &str = "https://agent.example";

fn provider_key() -> PrivateKey {
    PrivateKey::ed25519_from_seed(&[0x11; 32])
}

/// An agent token from agent.example signed by `key` under `key-1`, issued at `at`.
fn agent_token(key: &PrivateKey, at: UnixTime) -> String {
    let agent = PrivateKey::ed25519_from_seed(&[0x22; 32]);
    AgentTokenBuilder::new(
        ServerId::parse(PROVIDER).unwrap(),
        AgentId::parse("aauth:assistant@agent.example").unwrap(),
        agent.public_key(),
    )
    .sign(key, "key-1", at, &mut OsRandom)
    .unwrap()
    .token
}

fn now() -> UnixTime {
    SystemClock.now()
}

/// The world with agent.example publishing its metadata and JWKS; the CA written to
/// `dir`. Returns the world (keep it alive) and the `--ca-file`/`--connect-to` flags.
async fn provider_world(dir: &Path) -> (World, Vec<String>) {
    let world = World::new().unwrap();
    let jwks = JwkSet::from_jwks(&[provider_key().public_key().to_jwk().with_kid("key-1")]);
    let docs = BTreeMap::from([
        (
            "/.well-known/aauth-agent.json".to_owned(),
            format!(r#"{{"issuer":"{PROVIDER}","jwks_uri":"{PROVIDER}/jwks.json"}}"#),
        ),
        ("/jwks.json".to_owned(), jwks.to_json()),
    ]);
    let addr = world
        .serve(&ServerId::parse(PROVIDER).unwrap(), documents(docs))
        .await
        .unwrap();
    let ca: PathBuf = dir.join("ca.pem");
    std::fs::write(&ca, world.ca_pem()).unwrap();
    let flags = vec![
        "--ca-file".to_owned(),
        ca.display().to_string(),
        "--connect-to".to_owned(),
        format!("agent.example:443:{}:{}", addr.ip(), addr.port()),
    ];
    (world, flags)
}

/// `aauth token verify TOKEN --issuer ISSUER flags…`, off the runtime's thread (the
/// world's servers keep serving meanwhile).
async fn verify(dir: &Path, token: &str, issuer: &str, flags: &[String]) -> Output {
    let dir = dir.to_owned();
    let mut args = vec![
        "token".to_owned(),
        "verify".to_owned(),
        token.to_owned(),
        "--issuer".to_owned(),
        issuer.to_owned(),
    ];
    args.extend(flags.iter().cloned());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        aauth(&dir, &args)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn verify_discovers_the_issuers_keys_and_prints_each_check() {
    let dir = scratch("verify-ok");
    let (_world, flags) = provider_world(&dir).await;
    let o = verify(&dir, &agent_token(&provider_key(), now()), PROVIDER, &flags).await;
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", crate::stderr(&o));
    for line in [
        "ok   token: agent token (aa-agent+jwt)",
        "ok   issuer: https://agent.example",
        "ok   key: kid \"key-1\" from https://agent.example's aauth-agent.json",
        "ok   signature: Ed25519",
        "verified",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
}

#[tokio::test]
async fn verify_names_the_first_failing_check_with_its_error_code() {
    let dir = scratch("verify-fail");
    let (_world, flags) = provider_world(&dir).await;

    // Signed by another key under the provider's kid.
    let forged = agent_token(&PrivateKey::ed25519_from_seed(&[0x99; 32]), now());
    let o = verify(&dir, &forged, PROVIDER, &flags).await;
    assert_fails(&o, 1, "signature failed (invalid_jwt)");
    let out = stdout(&o);
    assert!(
        out.contains("ok   key:") && out.contains("FAIL signature"),
        "{out}"
    );
    assert!(!out.contains("verified"), "{out}");

    // Expired an hour ago: refused before any key is fetched.
    let old = agent_token(&provider_key(), now().minus(7200));
    let o = verify(&dir, &old, PROVIDER, &flags).await;
    assert_fails(&o, 1, "token failed (expired_jwt)");
    assert!(!stdout(&o).contains("ok   key"), "{}", stdout(&o));

    // Another issuer than the one expected.
    let o = verify(
        &dir,
        &agent_token(&provider_key(), now()),
        "https://other.example",
        &flags,
    )
    .await;
    assert_fails(&o, 1, "issuer failed (issuer_mismatch)");

    // Not a token at all.
    let o = verify(&dir, "not-a-token", PROVIDER, &flags).await;
    assert_fails(&o, 1, "token failed (invalid_jwt)");
}

#[tokio::test]
async fn an_issuer_that_cannot_be_reached_is_an_operational_error() {
    let dir = scratch("verify-unreachable");
    let (world, flags) = provider_world(&dir).await;
    drop(world); // its servers stop
    let o = verify(&dir, &agent_token(&provider_key(), now()), PROVIDER, &flags).await;
    assert_fails(&o, 3, "could not be fetched");

    // A --connect-to that is not curl's shape, and a CA file that holds no certificate.
    let o = verify(
        &dir,
        "x.y.z",
        PROVIDER,
        &["--connect-to".to_owned(), "agent.example".to_owned()],
    )
    .await;
    assert_fails(&o, 2, "--connect-to");
    std::fs::write(dir.join("empty.pem"), "").unwrap();
    let o = verify(
        &dir,
        "x.y.z",
        PROVIDER,
        &[
            "--ca-file".to_owned(),
            dir.join("empty.pem").display().to_string(),
        ],
    )
    .await;
    assert_fails(&o, 2, "no CERTIFICATE");
}

#[test]
fn decode_shows_the_type_the_claims_and_the_times() {
    let dir = scratch("decode");
    let token = agent_token(&provider_key(), now());
    let o = aauth(&dir, &["token", "decode", &token]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    for needle in [
        "agent token (aa-agent+jwt)",
        "\"iss\": \"https://agent.example\"",
        "\"kid\": \"key-1\"",
        "ok   exp: expires in ",
        "ok   iat: issued",
        "The signature was not checked",
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }
    // An hour's token, read a moment after it was made (a second may pass on a busy
    // machine): 60 minutes, or 59 and some.
    assert!(
        out.contains("expires in 60 min") || out.contains("expires in 59 min"),
        "{out}"
    );
    // Times as RFC 3339 dates.
    assert!(
        out.lines()
            .any(|l| l.starts_with("exp ") && l.contains('T') && l.contains("Z  (in ")),
        "{out}"
    );

    // Standard input, and JSON output naming an expired token.
    let old = agent_token(&provider_key(), now().minus(7200));
    let o = aauth_with_input(
        &dir,
        &["token", "decode", "--json", "-"],
        &format!("{old}\n"),
    );
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["type"], "aa-agent+jwt");
    assert_eq!(doc["checks"]["exp"]["ok"], false);
    assert_eq!(doc["checks"]["iat"]["ok"], true);
    assert_eq!(doc["signature_checked"], false);
    assert_eq!(doc["claims"]["sub"], "aauth:assistant@agent.example");
}

#[test]
fn decode_says_what_is_wrong_with_what_is_not_a_token() {
    let dir = scratch("decode-bad");
    for (input, needle) in [
        ("abc", "three dot-separated parts"),
        ("a.b", "three dot-separated parts"),
        ("e30.e30.", "signature part is empty"),
        ("!!.e30.c2ln", "header is not base64url"),
        ("e30.bm90IGpzb24.c2ln", "claims is not JSON"),
        ("e30.WzFd.c2ln", "claims is not a JSON object"),
    ] {
        let o = aauth(&dir, &["token", "decode", input]);
        assert_fails(&o, 1, needle);
    }
}

/// A compact JWS of `header` and `claims` (JSON text) with a made-up signature.
fn forged(header: &str, claims: &str) -> String {
    let b64 = |s: &str| aauth_keys::base64url::encode(s.as_bytes());
    format!("{}.{}.c2ln", b64(header), b64(claims))
}

/// Whether `bytes` hold anything a terminal acts on: a C0 control other than the
/// newline, DEL, a C1 control, a bidirectional override.
fn acts_on_a_terminal(bytes: &[u8]) -> bool {
    String::from_utf8_lossy(bytes).chars().any(|c| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

/// A token is anyone's: an escape sequence in its `typ`, a claim or its `alg` reaches
/// the operator's terminal escaped, never as itself.
#[tokio::test]
async fn a_tokens_escape_sequences_are_printed_escaped() {
    let dir = scratch("token-escapes");
    let token = forged(
        r#"{"typ":"\u001b]0;pwned\u0007","alg":"Ed25519","kid":"k"}"#,
        r#"{"sub":"a\u009b2J\u202eb","exp":1}"#,
    );
    let o = aauth(&dir, &["token", "decode", &token]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    assert!(!acts_on_a_terminal(&o.stdout), "{}", stdout(&o));
    let shown = stdout(&o);
    assert!(
        shown.starts_with("not an AAuth token type (\\u{1b}]0;pwned\\u{7})"),
        "{shown}"
    );
    assert!(shown.contains("a\\u{9b}2J\\u{202e}b"), "{shown}");
    // As JSON: the same document, in escapes.
    let o = aauth(&dir, &["token", "decode", "--json", &token]);
    assert!(!acts_on_a_terminal(&o.stdout), "{}", stdout(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["header"]["typ"], "\u{1b}]0;pwned\u{7}");
    assert_eq!(doc["claims"]["sub"], "a\u{9b}2J\u{202e}b");

    // `verify` names the refused `alg`, escaped.
    let (_world, flags) = provider_world(&dir).await;
    let token = forged(
        r#"{"typ":"aa-agent+jwt","alg":"\u001b[31mES512","kid":"key-1"}"#,
        r#"{"iss":"https://agent.example"}"#,
    );
    let o = verify(&dir, &token, PROVIDER, &flags).await;
    assert_fails(&o, 1, "did not verify");
    assert!(!acts_on_a_terminal(&o.stdout), "{}", stdout(&o));
    assert!(!acts_on_a_terminal(&o.stderr), "{}", crate::stderr(&o));
    assert!(
        stdout(&o).contains("alg \\u{1b}[31mES512"),
        "{}",
        stdout(&o)
    );
}

/// A `--ca-file` its group or others can write is refused, as a CA file a configuration
/// names is: whoever could write it would choose whom the command trusts.
#[cfg(unix)]
#[tokio::test]
async fn verify_refuses_a_ca_file_others_can_write() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("verify-ca-mode");
    let (_world, flags) = provider_world(&dir).await;
    let token = agent_token(&provider_key(), now());
    for mode in [0o664, 0o646] {
        std::fs::set_permissions(dir.join("ca.pem"), std::fs::Permissions::from_mode(mode))
            .unwrap();
        let o = verify(&dir, &token, PROVIDER, &flags).await;
        assert_fails(&o, 3, "--ca-file: ");
        assert!(
            crate::stderr(&o).contains("writable by its group or others"),
            "{}",
            crate::stderr(&o)
        );
    }
    std::fs::set_permissions(dir.join("ca.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = verify(&dir, &token, PROVIDER, &flags).await;
    assert!(o.status.success(), "{}", crate::stderr(&o));
}
