//! The aauth-go vectors (`tests/data/aauth-go/`, MIT): JWTs, agent and server identifiers.

use std::time::Duration;

use aauth_keys::time::UnixTime;
use aauth_keys::{Jwk, KeyError, PrivateKey, PublicKey, Signer, base64url};
use aauth_tokens::jws::CompactJws;
use aauth_tokens::{
    AgentClaims, AgentId, AuthClaims, PersonClaims, ResourceClaims, ServerId, StaticIssuerKeys,
    TokenError, Validation, verify,
};
use serde_json::Value;

use crate::common::{block, sid};

fn load(name: &str) -> Value {
    let path = format!("{}/tests/data/aauth-go/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn case<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

fn signing_key(c: &Value) -> PrivateKey {
    PrivateKey::from_jwk_json(&c["signing_key"].to_string()).unwrap()
}

/// The issuer keys for a case: its signing key under its `iss`/`dwk`/`kid`.
fn keys_for(c: &Value, iss: &str, dwk: &str) -> StaticIssuerKeys {
    let key = signing_key(c);
    StaticIssuerKeys::new().with(
        &sid(iss),
        dwk,
        c["kid"].as_str().unwrap(),
        key.public_key().clone(),
    )
}

/// aauth-go mints its agent-token vectors to last 74 years, so that they never expire;
/// a verifier accepts that only when told to (the default cap is 24 hours).
fn vector_validation(now: UnixTime) -> Validation<'static> {
    Validation::new(now).max_agent_lifetime(Duration::from_secs(u64::MAX))
}

fn token(c: &Value) -> &str {
    c["token"].as_str().unwrap()
}

/// Ed25519 is deterministic: re-signing the vector's signing input with its key must
/// give its exact signature segment (our JWS is byte-compatible with aauth-go).
fn assert_exact_signature(c: &Value) {
    let jws = CompactJws::parse(token(c)).unwrap();
    let sig = signing_key(c).sign(jws.signing_input().as_bytes()).unwrap();
    let expected = token(c).rsplit('.').next().unwrap();
    assert_eq!(base64url::encode(&sig), expected, "{}", c["name"]);
}

#[test]
fn agent_token_verifies_and_is_reproduced_exactly() {
    let v = load("jwt.json");
    for name in ["agent token", "sub-agent token"] {
        let c = case(&v, name);
        assert_exact_signature(c);
        let keys = keys_for(c, "https://agent.example", "aauth-agent.json");
        let now = UnixTime(c["claims"]["iat"].as_u64().unwrap() + 10);
        let t = block(verify::<AgentClaims>(
            token(c),
            &vector_validation(now),
            &keys,
        ))
        .unwrap();
        assert_eq!(t.claims.sub.as_str(), c["claims"]["sub"]);
        assert_eq!(t.claims.jti, c["claims"]["jti"]);
        let cnf = Jwk::from_value(&c["claims"]["cnf"]["jwk"]).unwrap();
        assert_eq!(t.cnf_key.unwrap(), PublicKey::from_jwk(&cnf).unwrap());
        if name == "sub-agent token" {
            assert_eq!(
                t.claims.parent_agent.unwrap().as_str(),
                "aauth:assistant@agent.example"
            );
        } else {
            assert_eq!(t.claims.ps.unwrap().as_str(), "https://ps.example");
        }
    }
}

#[test]
fn es256_agent_token_verifies() {
    let v = load("jwt.json");
    let c = case(&v, "agent token (ES256)");
    assert_eq!(c["randomized"], true);
    let keys = keys_for(c, "https://agent.example", "aauth-agent.json");
    let now = UnixTime(c["claims"]["iat"].as_u64().unwrap() + 10);
    let t = block(verify::<AgentClaims>(
        token(c),
        &vector_validation(now),
        &keys,
    ))
    .unwrap();
    assert_eq!(t.header.alg, aauth_keys::Algorithm::Es256);
    // A different key must not verify it.
    let other = StaticIssuerKeys::new().with(
        &sid("https://agent.example"),
        "aauth-agent.json",
        c["kid"].as_str().unwrap(),
        PrivateKey::es256_from_scalar(&[5; 32])
            .unwrap()
            .public_key()
            .clone(),
    );
    let e = block(verify::<AgentClaims>(
        token(c),
        &Validation::new(now),
        &other,
    ))
    .unwrap_err();
    assert!(matches!(e, TokenError::BadSignature), "{e:?}");
}

#[test]
fn person_token_verifies_with_single_element_audience_array() {
    let v = load("jwt.json");
    let c = case(&v, "person token");
    assert_exact_signature(c);
    let keys = keys_for(c, "https://ps.example", "aauth-person.json");
    let aud = sid(c["audience"].as_str().unwrap());
    let now = UnixTime(c["claims"]["iat"].as_u64().unwrap() + 10);
    let t = block(verify::<PersonClaims>(
        token(c),
        &Validation::new(now).audience(&aud),
        &keys,
    ))
    .unwrap();
    assert_eq!(t.claims.aud, aud);
    assert_eq!(
        t.claims.mission_s256.as_deref(),
        c["claims"]["mission_s256"].as_str()
    );
    // Another resource is not the audience.
    let other = sid("https://other.example");
    let e = block(verify::<PersonClaims>(
        token(c),
        &Validation::new(now).audience(&other),
        &keys,
    ))
    .unwrap_err();
    assert!(matches!(e, TokenError::WrongAudience { .. }), "{e:?}");
    // At exp it is expired (no tolerance).
    let at_exp = UnixTime(c["claims"]["exp"].as_u64().unwrap());
    let e = block(verify::<PersonClaims>(
        token(c),
        &Validation::new(at_exp).audience(&aud),
        &keys,
    ))
    .unwrap_err();
    assert!(matches!(e, TokenError::Expired { .. }), "{e:?}");
}

#[test]
fn pre_11_resource_and_auth_tokens_verify_as_jws_but_not_as_11_claims() {
    let v = load("jwt.json");
    let c = case(&v, "resource token");
    assert_exact_signature(c);
    let jws = CompactJws::parse(token(c)).unwrap();
    jws.verify(signing_key(c).public_key()).unwrap();
    let keys = keys_for(c, "https://resource.example", "aauth-resource.json");
    let ps = sid("https://ps.example");
    let now = UnixTime(c["claims"]["iat"].as_u64().unwrap() + 10);
    let e = block(verify::<ResourceClaims>(
        token(c),
        &Validation::new(now).audience(&ps),
        &keys,
    ))
    .unwrap_err();
    assert!(matches!(e, TokenError::Claim { claim: "ps", .. }), "{e:?}");

    let c = case(&v, "auth token");
    assert_exact_signature(c);
    let keys = keys_for(c, "https://ps.example", "aauth-person.json");
    let aud = sid("https://resource.example");
    let now = UnixTime(c["claims"]["iat"].as_u64().unwrap() + 10);
    let e = block(verify::<AuthClaims>(
        token(c),
        &Validation::new(now).audience(&aud),
        &keys,
    ))
    .unwrap_err();
    assert!(matches!(e, TokenError::Claim { claim: "ps", .. }), "{e:?}");
}

#[test]
fn reject_cases_are_rejected_for_the_stated_reason() {
    let v = load("jwt.json");
    let now = UnixTime(1_767_225_610);
    let agent_keys = |c: &Value| keys_for(c, "https://agent.example", "aauth-agent.json");
    let run = |name: &str| {
        let c = case(&v, name);
        assert!(c["reject"].is_string(), "{name} is a reject case");
        block(verify::<AgentClaims>(
            token(c),
            &vector_validation(now),
            &agent_keys(c),
        ))
        .unwrap_err()
    };
    let e = run("JWS alg EdDSA is rejected");
    assert!(
        matches!(e, TokenError::Algorithm(KeyError::PolymorphicAlgorithm)),
        "{e:?}"
    );
    let e = run("JWS alg none is rejected");
    assert!(matches!(e, TokenError::Malformed { .. }), "{e:?}");
    let e = run("cnf.jwk without alg is rejected");
    assert!(
        matches!(e, TokenError::Confirmation(KeyError::MissingAlgorithm)),
        "{e:?}"
    );
    let e = run("cnf.jwk crv disagreeing with alg is rejected");
    assert!(
        matches!(e, TokenError::Confirmation(KeyError::CurveMismatch { .. })),
        "{e:?}"
    );
    let e = run("iat absent is rejected");
    assert!(matches!(e, TokenError::Claim { claim: "iat", .. }), "{e:?}");
    let e = run("iss not a server identifier is rejected");
    assert!(matches!(e, TokenError::Claim { claim: "iss", .. }), "{e:?}");

    let c = case(&v, "person token carrying scope is rejected");
    let keys = keys_for(c, "https://ps.example", "aauth-person.json");
    let aud = sid(c["audience"].as_str().unwrap());
    let e = block(verify::<PersonClaims>(
        token(c),
        &Validation::new(UnixTime(1_730_217_610)).audience(&aud),
        &keys,
    ))
    .unwrap_err();
    assert!(
        matches!(e, TokenError::ForbiddenClaim { claim: "scope" }),
        "{e:?}"
    );
}

#[test]
fn every_jwt_case_is_covered() {
    // Guards against a vector file that grows without the tests growing with it.
    let v = load("jwt.json");
    assert_eq!(v["cases"].as_array().unwrap().len(), 13);
}

#[test]
fn agent_identifier_vectors() {
    let v = load("agent-identifier.json");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 20);
    for c in cases {
        let input = c["input"].as_str().unwrap();
        let parsed = AgentId::parse(input);
        if c["valid"].as_bool().unwrap() {
            let id = parsed.unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(id.domain(), c["domain"].as_str().unwrap());
            let local = id.local();
            match c["discriminator"].as_str() {
                Some(d) => assert_eq!(local, format!("{}+{d}", c["name"].as_str().unwrap())),
                None => assert_eq!(local, c["name"].as_str().unwrap()),
            }
            assert_eq!(id.as_str(), input);
        } else {
            assert!(parsed.is_err(), "{input} must be refused");
        }
    }
}

#[test]
fn server_identifier_vectors() {
    let v = load("server-identifier.json");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 13);
    for c in cases {
        let input = c["input"].as_str().unwrap();
        assert_eq!(
            ServerId::parse(input).is_ok(),
            c["valid"].as_bool().unwrap(),
            "{input}"
        );
    }
}
