//! Adversarial JOSE, type, issuer and time cases (security catalogue §2.1–§2.3). Each
//! asserts the exact error; the ones marked "no fetch" also assert that the issuer key was
//! never looked up.

use aauth_keys::time::UnixTime;
use aauth_keys::{KeyError, PrivateKey, Signer};
use aauth_tokens::{AgentClaims, TokenError, Validation, verify};

use crate::common::{
    AGENT_HEADER, Counting, NOW, agent_payload, block, forge, issuers, provider_key,
};

fn run(token: &str) -> (Result<(), TokenError>, usize) {
    run_at(token, NOW)
}

fn run_at(token: &str, now: UnixTime) -> (Result<(), TokenError>, usize) {
    let r = Counting::new(issuers());
    let out = block(verify::<AgentClaims>(token, &Validation::new(now), &r)).map(|_| ());
    (out, r.resolves())
}

fn with_header(header: &str) -> String {
    forge(header, &agent_payload().to_string(), &provider_key())
}

fn with_payload(payload: &serde_json::Value) -> String {
    forge(AGENT_HEADER, &payload.to_string(), &provider_key())
}

#[test]
fn forged_baseline_verifies() {
    let (r, n) = run(&with_payload(&agent_payload()));
    r.unwrap();
    assert_eq!(n, 1);
}

#[test]
fn a1_a2_alg_none_and_variants_are_refused_without_fetch() {
    let good = with_payload(&agent_payload());
    let sig = good.rsplit('.').next().unwrap();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{alg}","kid":"k1","typ":"aa-agent+jwt"}}"#);
        let unsigned = format!(
            "{}.{}.",
            aauth_keys::base64url::encode(header.as_bytes()),
            aauth_keys::base64url::encode(agent_payload().to_string().as_bytes())
        );
        let (r, n) = run(&unsigned);
        assert!(
            matches!(r, Err(TokenError::Malformed { .. })),
            "{alg}: {r:?}"
        );
        assert_eq!(n, 0);
        // A2: alg none with the original signature kept.
        let kept = format!("{}{sig}", unsigned);
        let (r, n) = run(&kept);
        match alg {
            "none" => assert!(
                matches!(
                    r,
                    Err(TokenError::Algorithm(KeyError::ForbiddenAlgorithm { .. }))
                ),
                "{r:?}"
            ),
            _ => assert!(
                matches!(
                    r,
                    Err(TokenError::Algorithm(KeyError::UnsupportedAlgorithm { .. }))
                ),
                "{alg}: {r:?}"
            ),
        }
        assert_eq!(n, 0);
    }
}

#[test]
fn a3_hmac_algorithms_are_forbidden() {
    for alg in ["HS256", "HS384", "HS512"] {
        let (r, n) = run(&with_header(&format!(
            r#"{{"alg":"{alg}","kid":"k1","typ":"aa-agent+jwt"}}"#
        )));
        assert!(
            matches!(
                r,
                Err(TokenError::Algorithm(KeyError::ForbiddenAlgorithm { .. }))
            ),
            "{r:?}"
        );
        assert_eq!(n, 0);
    }
}

#[test]
fn a4_header_alg_must_match_the_issuer_key_no_fallback() {
    // Header says ES256, the key under kid k1 is Ed25519.
    let es = PrivateKey::es256_from_scalar(&[9; 32]).unwrap();
    let token = forge(
        r#"{"alg":"ES256","kid":"k1","typ":"aa-agent+jwt"}"#,
        &agent_payload().to_string(),
        &es,
    );
    let (r, n) = run(&token);
    assert!(
        matches!(r, Err(TokenError::KeyAlgorithmMismatch { .. })),
        "{r:?}"
    );
    assert_eq!(n, 1);
}

#[test]
fn a5_a6_a7_algorithm_names_are_exact() {
    let (r, _) = run(&with_header(
        r#"{"alg":"EdDSA","kid":"k1","typ":"aa-agent+jwt"}"#,
    ));
    assert!(
        matches!(
            r,
            Err(TokenError::Algorithm(KeyError::PolymorphicAlgorithm))
        ),
        "{r:?}"
    );
    for alg in [
        "es256", "ed25519", "ES256 ", "RS256", "PS256", "ES384", "ES256K", "Ed448",
    ] {
        let (r, n) = run(&with_header(&format!(
            r#"{{"alg":"{alg}","kid":"k1","typ":"aa-agent+jwt"}}"#
        )));
        assert!(
            matches!(
                r,
                Err(TokenError::Algorithm(KeyError::UnsupportedAlgorithm { .. }))
            ),
            "{alg}: {r:?}"
        );
        assert_eq!(n, 0);
    }
}

#[test]
fn a8_a9_key_carrying_and_critical_headers_are_refused_without_fetch() {
    for (param, value) in [
        (
            "jwk",
            r#"{"kty":"OKP","crv":"Ed25519","alg":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
        ),
        ("jku", r#""https://evil.example/jwks""#),
        ("x5u", r#""https://evil.example/cert""#),
        ("x5c", r#"["MIIB"]"#),
        ("x5t", r#""abc""#),
        ("crit", r#"["exp-ext"]"#),
        ("b64", "false"),
        ("zip", r#""DEF""#),
    ] {
        let header =
            format!(r#"{{"alg":"Ed25519","kid":"k1","typ":"aa-agent+jwt","{param}":{value}}}"#);
        let (r, n) = run(&with_header(&header));
        assert!(
            matches!(r, Err(TokenError::ForbiddenHeader { name }) if name == param),
            "{param}: {r:?}"
        );
        assert_eq!(n, 0, "{param}: no fetch");
    }
}

#[test]
fn a10_missing_kid_is_refused_without_fetch() {
    let (r, n) = run(&with_header(r#"{"alg":"Ed25519","typ":"aa-agent+jwt"}"#));
    assert!(matches!(r, Err(TokenError::MissingKid)), "{r:?}");
    assert_eq!(n, 0);
}

#[test]
fn a10_unknown_kid_is_unknown_key() {
    let (r, n) = run(&with_header(
        r#"{"alg":"Ed25519","kid":"k2","typ":"aa-agent+jwt"}"#,
    ));
    assert!(
        matches!(
            r,
            Err(TokenError::KeyResolution(
                aauth_tokens::ResolveError::UnknownKey { .. }
            ))
        ),
        "{r:?}"
    );
    assert_eq!(n, 1);
}

#[test]
fn a11_hostile_kids_are_refused_before_lookup() {
    let long = "a".repeat(4096);
    for kid in [long.as_str(), "", "a\u{0}b", "a\nb"] {
        let header =
            serde_json::json!({"alg":"Ed25519","kid":kid,"typ":"aa-agent+jwt"}).to_string();
        let (r, n) = run(&with_header(&header));
        assert!(
            matches!(r, Err(TokenError::Header { .. })),
            "{kid:?}: {r:?}"
        );
        assert_eq!(n, 0);
    }
    for kid in ["1", "{}", "null", "[\"k1\"]"] {
        let header = format!(r#"{{"alg":"Ed25519","kid":{kid},"typ":"aa-agent+jwt"}}"#);
        let (r, n) = run(&with_header(&header));
        assert!(matches!(r, Err(TokenError::Header { .. })), "{kid}: {r:?}");
        assert_eq!(n, 0);
    }
}

#[test]
fn a14_structure_is_checked_before_decoding() {
    let good = with_payload(&agent_payload());
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.extra"),
        format!("{good}.a.b"),
        format!("{{\"payload\":\"{}\"}}", parts[1]),
        format!(".{}.{}", parts[1], parts[2]),
        format!("{}..{}", parts[0], parts[2]),
        format!("{} ", good),
        good.replace('.', "+"),
        format!("{}={}", &good[..10], &good[10..]),
        "x".repeat(9000),
    ];
    for t in &cases {
        let (r, n) = run(t);
        assert!(
            matches!(r, Err(TokenError::Malformed { .. })),
            "{t:.40}: {r:?}"
        );
        assert_eq!(n, 0);
    }
}

#[test]
fn a15_non_canonical_base64url_is_refused() {
    let good = with_payload(&agent_payload());
    let parts: Vec<&str> = good.split('.').collect();
    // Padding on the signature (length 86 → 88 with "=="), a length ≡ 1 (mod 4),
    // and non-zero unused bits in the last signature character.
    let sig = parts[2];
    let mut bits = sig.to_owned();
    let last = bits.pop().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    bits.push(alphabet.as_bytes()[idx | 1] as char);
    assert_ne!(bits, sig);
    for t in [
        format!("{}.{}.{}==", parts[0], parts[1], sig),
        format!("{}.{}.{}AAA", parts[0], parts[1], sig),
        format!("{}.{}.{}", parts[0], parts[1], bits),
    ] {
        let (r, n) = run(&t);
        assert!(matches!(r, Err(TokenError::Malformed { .. })), "{r:?}");
        assert_eq!(n, 0);
    }
}

#[test]
fn a16_duplicate_members_and_non_object_json_are_refused() {
    // alg twice in the header.
    let (r, _) = run(&with_header(
        r#"{"alg":"Ed25519","alg":"ES256","kid":"k1","typ":"aa-agent+jwt"}"#,
    ));
    assert!(matches!(r, Err(TokenError::Header { .. })), "{r:?}");
    // exp twice in the claims: small then huge.
    let p = agent_payload().to_string().replacen(
        "\"exp\":",
        &format!("\"exp\":{},\"exp\":", NOW.0 + 1),
        1,
    );
    let (r, n) = run(&forge(AGENT_HEADER, &p, &provider_key()));
    assert!(
        matches!(&r, Err(TokenError::ClaimSet { reason }) if reason.contains("exp")),
        "{r:?}"
    );
    assert_eq!(n, 0);
    // A duplicated member inside cnf.jwk.
    let p = agent_payload()
        .to_string()
        .replacen("\"kty\":", "\"kty\":\"EC\",\"kty\":", 1);
    let (r, _) = run(&forge(AGENT_HEADER, &p, &provider_key()));
    assert!(
        matches!(r, Err(TokenError::Claim { claim: "cnf", .. })),
        "{r:?}"
    );
    for payload in [
        "[1,2]",
        "\"a string\"",
        "{} trailing",
        "\u{feff}{}",
        "{\"iss\":",
    ] {
        let (r, _) = run(&forge(AGENT_HEADER, payload, &provider_key()));
        assert!(
            matches!(r, Err(TokenError::ClaimSet { .. })),
            "{payload}: {r:?}"
        );
    }
}

#[test]
fn a17_t5_typ_is_checked_first_and_exactly() {
    for typ in [
        None,
        Some("JWT"),
        Some("at+jwt"),
        Some("aa-auth+jwt"),
        Some("aa-agent+jwt+x"),
        Some("application/jwt"),
    ] {
        let header = match typ {
            Some(t) => format!(r#"{{"alg":"Ed25519","kid":"k1","typ":"{t}"}}"#),
            None => r#"{"alg":"Ed25519","kid":"k1"}"#.to_owned(),
        };
        let (r, n) = run(&with_header(&header));
        assert!(
            matches!(
                r,
                Err(TokenError::WrongType {
                    expected: "aa-agent+jwt",
                    ..
                })
            ),
            "{typ:?}: {r:?}"
        );
        assert_eq!(n, 0);
    }
    // typ is checked before alg: a wrong typ with alg none reports the typ.
    let (r, _) = run(&with_header(r#"{"alg":"none","kid":"k1","typ":"JWT"}"#));
    assert!(matches!(r, Err(TokenError::WrongType { .. })), "{r:?}");
    // The equivalent media-type forms are accepted (RFC 7515 §4.1.9).
    for typ in ["application/aa-agent+jwt", "AA-AGENT+JWT"] {
        let (r, _) = run(&with_header(&format!(
            r#"{{"alg":"Ed25519","kid":"k1","typ":"{typ}"}}"#
        )));
        r.unwrap();
    }
}

#[test]
fn t11_claim_types_are_never_treated_as_absent() {
    for (claim, value) in [
        ("exp", serde_json::json!("9999999999")),
        ("exp", serde_json::json!(1.5e10)),
        ("exp", serde_json::json!(-1)),
        ("exp", serde_json::Value::Null),
        ("exp", serde_json::json!(true)),
        ("iat", serde_json::json!("1800000000")),
        ("iss", serde_json::json!(7)),
        ("sub", serde_json::json!(["aauth:a@agent.example"])),
        ("jti", serde_json::json!("")),
    ] {
        let mut p = agent_payload();
        p[claim] = value.clone();
        let (r, n) = run(&with_payload(&p));
        assert!(
            matches!(&r, Err(TokenError::Claim { claim: c, .. }) if *c == claim),
            "{claim}={value}: {r:?}"
        );
        assert_eq!(n, 0);
    }
    // exp beyond u64.
    let p = agent_payload().to_string().replace(
        &format!("\"exp\":{}", NOW.0 + 3600),
        "\"exp\":18446744073709551616",
    );
    let (r, _) = run(&forge(AGENT_HEADER, &p, &provider_key()));
    assert!(
        matches!(r, Err(TokenError::Claim { claim: "exp", .. })),
        "{r:?}"
    );
    for claim in ["iss", "dwk", "sub", "jti", "cnf", "iat", "exp"] {
        let mut p = agent_payload();
        p.as_object_mut().unwrap().remove(claim);
        let (r, n) = run(&with_payload(&p));
        match claim {
            "dwk" => assert!(
                matches!(r, Err(TokenError::Claim { claim: "dwk", .. })),
                "{r:?}"
            ),
            c => assert!(
                matches!(&r, Err(TokenError::Claim { claim: x, .. }) if *x == c),
                "{c}: {r:?}"
            ),
        }
        assert_eq!(n, 0);
    }
}

#[test]
fn t12_bad_issuers_are_refused_before_any_fetch() {
    for iss in [
        "http://agent.example",
        "https://agent.example/",
        "https://Agent.example",
        "https://agent.example:8443",
        "https://agent.example/path",
        "https://user@agent.example",
        "https://ἀγεντ.example",
        "agent.example",
    ] {
        let mut p = agent_payload();
        p["iss"] = iss.into();
        let (r, n) = run(&with_payload(&p));
        assert!(
            matches!(r, Err(TokenError::Claim { claim: "iss", .. })),
            "{iss}: {r:?}"
        );
        assert_eq!(n, 0, "{iss}: no fetch");
    }
}

#[test]
fn t13_dwk_must_match_the_token_type() {
    for dwk in [
        "aauth-resource.json",
        "aauth-person.json",
        "aauth-agent",
        "",
    ] {
        let mut p = agent_payload();
        p["dwk"] = dwk.into();
        let (r, n) = run(&with_payload(&p));
        assert!(
            matches!(r, Err(TokenError::WrongDwk { .. })),
            "{dwk}: {r:?}"
        );
        assert_eq!(n, 0);
    }
}

#[test]
fn c1_c2_exp_has_no_tolerance_and_is_checked_before_fetch() {
    let mut p = agent_payload();
    p["exp"] = NOW.0.into();
    let (r, n) = run(&with_payload(&p));
    assert!(
        matches!(r, Err(TokenError::Expired { exp, now }) if exp == now),
        "{r:?}"
    );
    assert_eq!(n, 0, "Z10: an expired token costs no fetch");
    p["exp"] = (NOW.0 + 1).into();
    run(&with_payload(&p)).0.unwrap();
}

#[test]
fn c3_future_iat_is_clock_skew_beyond_the_window() {
    let mut p = agent_payload();
    p["iat"] = (NOW.0 + 61).into();
    let (r, _) = run(&with_payload(&p));
    assert!(matches!(r, Err(TokenError::IssuedInFuture { .. })), "{r:?}");
    p["iat"] = (NOW.0 + 60).into();
    run(&with_payload(&p)).0.unwrap();
    // exp before iat.
    let mut p = agent_payload();
    p["iat"] = (NOW.0 + 30).into();
    p["exp"] = (NOW.0 + 20).into();
    let (r, _) = run(&with_payload(&p));
    assert!(matches!(r, Err(TokenError::ExpBeforeIat)), "{r:?}");
}

#[test]
fn a8_signature_with_a_key_other_than_the_issuers_is_bad_signature() {
    let attacker = PrivateKey::ed25519_from_seed(&[66; 32]);
    let t = forge(AGENT_HEADER, &agent_payload().to_string(), &attacker);
    let (r, n) = run(&t);
    assert!(matches!(r, Err(TokenError::BadSignature)), "{r:?}");
    assert_eq!(n, 1);
}

#[test]
fn x8_every_flipped_signature_byte_fails() {
    let t = with_payload(&agent_payload());
    let (head, sig) = t.rsplit_once('.').unwrap();
    let raw = aauth_keys::base64url::decode(sig).unwrap();
    for i in 0..raw.len() {
        let mut bad = raw.clone();
        bad[i] ^= 0x01;
        let forged = format!("{head}.{}", aauth_keys::base64url::encode(&bad));
        let (r, _) = run(&forged);
        assert!(
            matches!(r, Err(TokenError::BadSignature)),
            "byte {i}: {r:?}"
        );
    }
}

#[test]
fn refresh_is_tried_once_for_a_rekeyed_kid() {
    let rotated = PrivateKey::ed25519_from_seed(&[42; 32]);
    let token = forge(AGENT_HEADER, &agent_payload().to_string(), &rotated);
    // The cache still has the old key; refresh yields the new one.
    let mut r = Counting::new(issuers());
    r.fresh = Some(rotated.public_key().clone());
    block(verify::<AgentClaims>(&token, &Validation::new(NOW), &r)).unwrap();
    assert_eq!(r.refreshes.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A refresh that yields nothing new: bad signature, still one refresh.
    let r = Counting::new(issuers());
    let e = block(verify::<AgentClaims>(&token, &Validation::new(NOW), &r)).unwrap_err();
    assert!(matches!(e, TokenError::BadSignature), "{e:?}");
    assert_eq!(r.refreshes.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A valid token never triggers a refresh.
    let r = Counting::new(issuers());
    block(verify::<AgentClaims>(
        &with_payload(&agent_payload()),
        &Validation::new(NOW),
        &r,
    ))
    .unwrap();
    assert_eq!(r.refreshes.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[test]
fn k2_structurally_incomplete_cnf_is_invalid_before_key_decoding() {
    for cnf in [
        serde_json::json!(null),
        serde_json::json!({}),
        serde_json::json!({"jkt": "abc"}),
        serde_json::json!({"jwk": {"crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "alg": "Ed25519"}}),
        serde_json::json!({"jwk": {"kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "alg": "Ed25519"}}),
        serde_json::json!({"jwk": {"kty": "OKP", "crv": "Ed25519", "alg": "Ed25519"}}),
        serde_json::json!({"jwk": {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "alg": "ES256"}}),
    ] {
        let mut p = agent_payload();
        p["cnf"] = cnf.clone();
        let (r, _) = run(&with_payload(&p));
        assert!(
            matches!(r, Err(TokenError::Claim { claim: "cnf", .. })),
            "{cnf}: {r:?}"
        );
    }
    // K3: private material in cnf.jwk.
    let mut p = agent_payload();
    p["cnf"]["jwk"]["d"] = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A".into();
    let (r, _) = run(&with_payload(&p));
    assert!(
        matches!(r, Err(TokenError::Confirmation(KeyError::PrivateMaterial))),
        "{r:?}"
    );
    // K4: alg absent, EdDSA, and an Ed25519 key labelled ES256.
    for (alg, want_unsupported) in [(None, true), (Some("EdDSA"), true), (Some("ES256"), false)] {
        let mut p = agent_payload();
        match alg {
            Some(a) => p["cnf"]["jwk"]["alg"] = a.into(),
            None => {
                p["cnf"]["jwk"].as_object_mut().unwrap().remove("alg");
            }
        }
        let (r, _) = run(&with_payload(&p));
        match r {
            Err(TokenError::Confirmation(e)) => assert_eq!(
                e.is_unsupported_algorithm(),
                want_unsupported,
                "{alg:?}: {e:?}"
            ),
            other => panic!("{alg:?}: {other:?}"),
        }
    }
    // The identity point as cnf key: weak.
    let mut p = agent_payload();
    p["cnf"]["jwk"]["x"] = aauth_keys::base64url::encode(&{
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    })
    .into();
    let (r, _) = run(&with_payload(&p));
    assert!(
        matches!(r, Err(TokenError::Confirmation(KeyError::WeakKey))),
        "{r:?}"
    );
}

#[test]
fn z4_oversized_tokens_are_refused_before_parsing() {
    let mut p = agent_payload();
    p["pad"] = "x".repeat(9000).into();
    let (r, n) = run(&with_payload(&p));
    assert!(matches!(r, Err(TokenError::Malformed { .. })), "{r:?}");
    assert_eq!(n, 0);
}

#[test]
fn z5_deep_json_is_refused() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let mut p = agent_payload().to_string();
    p.insert_str(1, &format!("\"deep\":{deep},"));
    let (r, _) = run(&forge(AGENT_HEADER, &p, &provider_key()));
    assert!(matches!(r, Err(TokenError::ClaimSet { .. })), "{r:?}");
}

#[test]
fn unknown_claims_are_ignored() {
    let mut p = agent_payload();
    p["attestation"] = serde_json::json!({"level": 3});
    run(&with_payload(&p)).0.unwrap();
}

#[test]
fn es256_signed_tokens_verify_and_der_signatures_are_refused() {
    let es = PrivateKey::es256_from_scalar(&[9; 32]).unwrap();
    let keys = aauth_tokens::StaticIssuerKeys::new().with(
        &crate::common::sid("https://agent.example"),
        "aauth-agent.json",
        "k1",
        es.public_key().clone(),
    );
    let header = r#"{"alg":"ES256","kid":"k1","typ":"aa-agent+jwt"}"#;
    let t = forge(header, &agent_payload().to_string(), &es);
    block(verify::<AgentClaims>(&t, &Validation::new(NOW), &keys)).unwrap();
    // Re-encode r||s as DER: refused (ES256 in JWS is the 64-byte form only).
    let (head, sig) = t.rsplit_once('.').unwrap();
    let raw = aauth_keys::base64url::decode(sig).unwrap();
    let int = |b: &[u8]| {
        let mut v: Vec<u8> = b.iter().copied().skip_while(|x| *x == 0).collect();
        if v.first().is_some_and(|x| x & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let (r, s) = (int(&raw[..32]), int(&raw[32..]));
    let mut der = vec![0x30, (r.len() + s.len()) as u8];
    der.extend(r);
    der.extend(s);
    let t = format!("{head}.{}", aauth_keys::base64url::encode(&der));
    let e = block(verify::<AgentClaims>(&t, &Validation::new(NOW), &keys)).unwrap_err();
    assert!(matches!(e, TokenError::BadSignature), "{e:?}");
    let _ = es.sign(b"x").unwrap();
}
