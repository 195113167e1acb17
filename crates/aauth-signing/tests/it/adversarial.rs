//! Coverage, components, labels, headers, time and keys (security catalogue §2.4, §2.6,
//! §2.3 C5–C6). Every case asserts the Rust error and the wire answer.

use aauth_headers::{ErrorCode, Scheme};
use aauth_keys::time::UnixTime;
use aauth_keys::{Algorithm, PrivateKey};
use aauth_signing::{SignOptions, SigningKey, VerifyError, VerifyPolicy, sign};
use http::request::Parts;

use crate::common::*;

fn get() -> (Parts, Vec<u8>) {
    let (p, b) = signed(
        "GET",
        "https://api.example/data",
        b"",
        &SignOptions::default(),
    );
    (as_server(p), b)
}

fn code(e: &VerifyError) -> ErrorCode {
    e.code().expect("a signature error")
}

/// Signs a GET over exactly `components` with `signature_key` as the Signature-Key value,
/// bypassing the signer's own checks (the forge for coverage and label cases).
fn forge(components: &[&str], signature_key: &str, label: &str) -> Parts {
    let key = agent_key();
    let mut client = http::Request::get("https://api.example/data")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    set(&mut client, "signature-key", signature_key);
    let params = aauth_headers::SignatureParams::new(
        components
            .iter()
            .map(|c| aauth_headers::Component::new(*c))
            .collect(),
        i64::try_from(NOW.0).unwrap(),
    );
    let base =
        aauth_signing::signature_base(&client, &params, aauth_signing::View::Client).unwrap();
    let sig = aauth_keys::Signer::sign(&key, base.as_bytes()).unwrap();
    set(
        &mut client,
        "signature-input",
        &format!("{label}={}", params.serialize().unwrap()),
    );
    set(
        &mut client,
        "signature",
        &aauth_headers::Signatures::serialize([(label, sig.as_slice())]).unwrap(),
    );
    as_server(client)
}

fn jwt_member(label: &str) -> String {
    aauth_headers::SignatureKey::serialize([(label, &Scheme::jwt(agent_token()))]).unwrap()
}

fn resigned_with_components(components: &[&str]) -> (Parts, Vec<u8>) {
    (forge(components, &jwt_member("sig"), "sig"), Vec::new())
}

#[test]
fn s1_each_missing_signature_header_is_invalid_signature() {
    for name in ["signature", "signature-input", "signature-key"] {
        let (mut p, b) = get();
        p.headers.remove(name);
        let e = verify(&p, &b).unwrap_err();
        assert!(
            matches!(e, VerifyError::MissingHeader { .. }),
            "{name}: {e:?}"
        );
        assert_eq!(code(&e), ErrorCode::InvalidSignature);
        assert_eq!(e.status(), 401);
        let h = e.response_headers(&policy());
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].1, "error=invalid_signature");
    }
}

#[test]
fn s2_k8_each_mandatory_component_is_required() {
    let all = ["@method", "@authority", "@path", "signature-key"];
    for skip in all {
        let cover: Vec<&str> = all.iter().copied().filter(|c| *c != skip).collect();
        let (p, b) = resigned_with_components(&cover);
        let e = verify(&p, &b).unwrap_err();
        match &e {
            VerifyError::MissingComponents { required } => assert_eq!(required, &all),
            other => panic!("{skip}: {other:?}"),
        }
        assert_eq!(code(&e), ErrorCode::InvalidInput);
        let h = e.response_headers(&policy());
        assert_eq!(
            h[0].1,
            r#"error=invalid_input, required_input=("@method" "@authority" "@path" "signature-key")"#
        );
    }
    // The forge itself is sound: covering all four verifies.
    let (p, b) = resigned_with_components(&all);
    verify(&p, &b).unwrap();
}

#[test]
fn s3_bodies_must_cover_digest_and_type_and_the_handler_never_sees_them() {
    let (p, b) = signed(
        "POST",
        "https://ps.example/token",
        b"{}",
        &SignOptions::default().components(&[
            "@method",
            "@authority",
            "@path",
            "content-digest",
            "signature-key",
        ]),
    );
    let e = verify(&as_server(p), &b).unwrap_err();
    match e {
        VerifyError::MissingComponents { required } => {
            assert_eq!(
                required,
                [
                    "@method",
                    "@authority",
                    "@path",
                    "signature-key",
                    "content-digest",
                    "content-type"
                ]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn s4_s6_s7_substituted_components_fail() {
    let (p, b) = get();
    let mut m = p.clone();
    m.method = http::Method::DELETE;
    assert!(matches!(verify(&m, &b), Err(VerifyError::BadSignature)));
    let mut m = p.clone();
    m.method = http::Method::from_bytes(b"get").unwrap();
    assert!(matches!(verify(&m, &b), Err(VerifyError::BadSignature)));
    for path in ["/data/", "//data", "/Data", "/d%61ta", "/other"] {
        let mut m = p.clone();
        m.uri = path.parse().unwrap();
        assert!(
            matches!(verify(&m, &b), Err(VerifyError::BadSignature)),
            "{path}"
        );
    }
    // Another host: refused as not this server's, before any key is looked up.
    let mut m = p;
    set(&mut m, "host", "api2.example");
    assert_eq!(
        verify(&m, &b).unwrap_err(),
        VerifyError::Component(aauth_signing::ComponentError::WrongAuthority {
            found: "api2.example".into()
        })
    );
}

#[test]
fn s5_authority_is_normalized_and_forwarded_headers_are_ignored() {
    let (p, b) = get();
    for host in ["API.EXAMPLE", "api.example:443", "Api.Example:443"] {
        let mut m = p.clone();
        set(&mut m, "host", host);
        verify(&m, &b).unwrap_or_else(|e| panic!("{host}: {e}"));
    }
    let mut m = p.clone();
    set(&mut m, "host", "api.example:8443");
    assert!(matches!(verify(&m, &b), Err(VerifyError::BadSignature)));
    let mut m = p.clone();
    set(&mut m, "x-forwarded-host", "evil.example");
    verify(&m, &b).unwrap();
    // A non-default port is part of @authority on both sides.
    let (p8, b8) = signed(
        "GET",
        "https://api.example:8443/data",
        b"",
        &SignOptions::default(),
    );
    verify(&as_server(p8), &b8).unwrap();
    // Host repeated, or disagreeing with :authority: refused.
    let mut m = p.clone();
    m.headers.append("host", "api.example".parse().unwrap());
    assert!(matches!(
        verify(&m, &b),
        Err(VerifyError::Component(
            aauth_signing::ComponentError::AmbiguousAuthority
        ))
    ));
    let mut m = p.clone();
    m.uri = "https://evil.example/data".parse().unwrap();
    assert!(matches!(
        verify(&m, &b),
        Err(VerifyError::Component(
            aauth_signing::ComponentError::AmbiguousAuthority
        ))
    ));
    // HTTP/2: :authority alone (the URI's authority) is used.
    let mut m = p.clone();
    m.headers.remove("host");
    m.uri = "https://api.example/data".parse().unwrap();
    verify(&m, &b).unwrap();
    // No authority at all.
    let mut m = p;
    m.headers.remove("host");
    assert!(matches!(
        verify(&m, &b),
        Err(VerifyError::Component(
            aauth_signing::ComponentError::NoAuthority
        ))
    ));
}

#[test]
fn s8_s9_s10_invalid_component_identifiers() {
    for (input, want_member) in [
        (r#"("@method" "@authority" "@path" "Signature-Key")"#, true),
        (r#"("@Method" "@authority" "@path" "signature-key")"#, true),
        (
            r#"("@method" "@method" "@authority" "@path" "signature-key")"#,
            true,
        ),
        (
            r#"("@method" "@authority" "@path" "signature-key" "@signature-params")"#,
            true,
        ),
        (
            r#"("@method" "@authority" "@path" "signature-key" "@foo")"#,
            false,
        ),
        (
            r#"("@method" "@authority" "@path" "signature-key" "@status")"#,
            false,
        ),
        (
            r#"("@method" "@authority" "@path" "signature-key" "content-type";sf)"#,
            false,
        ),
        (
            r#"("@method" "@authority" "@path" "signature-key" "@query-param";name="a")"#,
            false,
        ),
    ] {
        let (mut p, b) = get();
        set(
            &mut p,
            "signature-input",
            &format!("sig={input};created={}", NOW.0),
        );
        let e = verify(&p, &b).unwrap_err();
        if want_member {
            assert!(matches!(e, VerifyError::BadMember { .. }), "{input}: {e:?}");
        } else {
            assert!(matches!(e, VerifyError::Component(_)), "{input}: {e:?}");
        }
        assert_eq!(code(&e), ErrorCode::InvalidSignature, "{input}");
    }
    // Unknown signature parameter.
    let (mut p, b) = get();
    let si = header(&p, "signature-input");
    set(&mut p, "signature-input", &format!("{si};xyz=1"));
    assert!(matches!(verify(&p, &b), Err(VerifyError::BadMember { .. })));
}

#[test]
fn s12_labels_are_chosen_by_policy_never_by_which_verifies() {
    let (p, b) = get();
    // A second, invalid signature under another accepted label: ambiguous, refused.
    let both = format!("{}, {}", jwt_member("sig"), jwt_member("sig2"));
    let mut m = forge(
        &["@method", "@authority", "@path", "signature-key"],
        &both,
        "sig",
    );
    let si = header(&m, "signature-input");
    let sig = header(&m, "signature");
    set(
        &mut m,
        "signature-input",
        &format!("{si}, sig2={}", si.trim_start_matches("sig=")),
    );
    set(&mut m, "signature", &format!("{sig}, sig2=:AAAA:"));
    let e = verify(&m, &b).unwrap_err();
    assert!(matches!(e, VerifyError::NoLabel { .. }), "{e:?}");
    // Named: the good label verifies, the bad one does not.
    let pick = |l: &str| policy().label(aauth_signing::LabelSelection::Named(l.into()));
    verify_with(pick("sig"), &m, &b).unwrap();
    assert!(matches!(
        verify_with(pick("sig2"), &m, &b),
        Err(VerifyError::BadSignature)
    ));
    assert!(matches!(
        verify_with(pick("sig3"), &m, &b),
        Err(VerifyError::NoLabel { .. })
    ));
    // A label in Signature-Input but not in Signature.
    let mut m = p.clone();
    set(&mut m, "signature", "other=:AAAA:");
    assert!(matches!(verify(&m, &b), Err(VerifyError::NoLabel { .. })));
    // Five labels: over the limit of four.
    let mut m = p.clone();
    let si = header(&p, "signature-input");
    let one = si.trim_start_matches("sig=");
    let five: Vec<String> = (0..5).map(|i| format!("s{i}={one}")).collect();
    set(&mut m, "signature-input", &five.join(", "));
    let e = verify(&m, &b).unwrap_err();
    assert!(
        matches!(e, VerifyError::TooManyLabels { count: 5, max: 4 }),
        "{e:?}"
    );
}

#[test]
fn s13_duplicate_labels_across_field_lines_are_refused() {
    let (p, b) = get();
    for name in ["signature-input", "signature", "signature-key"] {
        let mut m = p.clone();
        let v = m.headers[name].clone();
        m.headers.append(name, v);
        let e = verify(&m, &b).unwrap_err();
        assert!(
            matches!(
                e,
                VerifyError::Header(aauth_headers::ParseError::DuplicateMember { .. })
            ),
            "{name}: {e:?}"
        );
        assert_eq!(code(&e), ErrorCode::InvalidSignature);
    }
}

#[test]
fn s16_z2_z3_oversized_and_malformed_headers() {
    let (p, b) = get();
    let mut m = p.clone();
    set(
        &mut m,
        "signature-key",
        &format!("sig=jwt;jwt=\"{}\"", "a".repeat(9000)),
    );
    assert!(matches!(
        verify(&m, &b),
        Err(VerifyError::Header(
            aauth_headers::ParseError::TooLarge { .. }
        ))
    ));
    for bad in [r#"sig=("@method"#, "sig=(\"@méthod\")", "sig"] {
        let mut m = p.clone();
        if let Ok(v) = http::HeaderValue::from_str(bad) {
            m.headers.insert("signature-input", v);
            let e = verify(&m, &b).unwrap_err();
            assert_eq!(code(&e), ErrorCode::InvalidSignature, "{bad}: {e:?}");
        }
    }
}

#[test]
fn s17_the_alg_parameter_is_ignored() {
    // Signature-Key -09 §7.4: verifiers MUST ignore it; the forge signs over it.
    let key = agent_key();
    let mut p = http::Request::get("https://api.example/data")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let scheme = Scheme::jwt(agent_token());
    set(
        &mut p,
        "signature-key",
        &aauth_headers::SignatureKey::serialize([("sig", &scheme)]).unwrap(),
    );
    let mut params = aauth_headers::SignatureParams::new(
        ["@method", "@authority", "@path", "signature-key"]
            .into_iter()
            .map(aauth_headers::Component::new)
            .collect(),
        i64::try_from(NOW.0).unwrap(),
    );
    params
        .params
        .push(aauth_headers::SigParam::Alg("hmac-sha256".into()));
    let base = aauth_signing::signature_base(&p, &params, aauth_signing::View::Client).unwrap();
    let sig = aauth_keys::Signer::sign(&key, base.as_bytes()).unwrap();
    set(
        &mut p,
        "signature-input",
        &format!("sig={}", params.serialize().unwrap()),
    );
    set(
        &mut p,
        "signature",
        &aauth_headers::Signatures::serialize([("sig", sig.as_slice())]).unwrap(),
    );
    verify(&as_server(p), b"").unwrap();
}

#[test]
fn s19_signature_byte_sequences_are_read_leniently_and_replay_keys_on_the_base() {
    let (p, b) = get();
    let reference = verify(&p, &b).unwrap();
    let mut m = p;
    let unpadded = header(&m, "signature").replace("==:", ":");
    set(&mut m, "signature", &unpadded);
    let v = verify(&m, &b).unwrap();
    assert_eq!(v.replay_key(), reference.replay_key());
}

#[test]
fn k1_a_signature_by_another_key_than_cnf_fails() {
    let attacker = PrivateKey::ed25519_from_seed(&[99; 32]);
    let (mut p, ()) = http::Request::get("https://api.example/data")
        .body(())
        .unwrap()
        .into_parts();
    let scheme = Scheme::jwt(agent_token()); // cnf = the agent's key
    sign(
        &mut p,
        b"",
        &[SigningKey::new("sig", &attacker, &scheme)],
        &SignOptions::default(),
        NOW,
    )
    .unwrap();
    let e = verify(&as_server(p), b"").unwrap_err();
    assert!(matches!(e, VerifyError::BadSignature), "{e:?}");
    assert_eq!(code(&e), ErrorCode::InvalidSignature);
}

#[test]
fn k7_k10_k11_schemes_other_than_jwt() {
    let (p, b) = get();
    for (member, want) in [
        (
            r#"sig=hwk;kty="OKP";crv="Ed25519";x="11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";alg="Ed25519""#,
            ErrorCode::UnsupportedScheme,
        ),
        (
            r#"sig=jwks_uri;id="https://ps.example";dwk="aauth-person.json";kid="k""#,
            ErrorCode::UnsupportedScheme,
        ),
        ("sig=x-unregistered", ErrorCode::UnsupportedScheme),
        (r#"sig=hwk;kty="OKP""#, ErrorCode::UnsupportedScheme),
        (r#"sig="jwt";jwt="x""#, ErrorCode::InvalidSignature),
        ("sig=jwt", ErrorCode::InvalidSignature),
        (r#"sig=jwt;jwt=1"#, ErrorCode::InvalidSignature),
    ] {
        let mut m = p.clone();
        set(&mut m, "signature-key", member);
        let e = verify(&m, &b).unwrap_err();
        assert_eq!(code(&e), want, "{member}: {e:?}");
    }
    // K11: no member for the label.
    let mut m = p.clone();
    let sk = header(&m, "signature-key").replacen("sig=", "other=", 1);
    set(&mut m, "signature-key", &sk);
    let e = verify(&m, &b).unwrap_err();
    assert!(matches!(e, VerifyError::NoKeyMember { .. }), "{e:?}");
    // Members for other labels with unknown or broken schemes are ignored.
    let sk = format!(
        r#"other=hwk;kty="OKP", zz=x-new;p=1, {}"#,
        jwt_member("sig")
    );
    let m = forge(
        &["@method", "@authority", "@path", "signature-key"],
        &sk,
        "sig",
    );
    verify(&m, &b).unwrap();
    // hwk accepted: a weak or unsupported inline key is invalid_key / unsupported_algorithm.
    let hwk =
        |x: &str, alg: &str| format!(r#"sig=hwk;kty="OKP";crv="Ed25519";x="{x}";alg="{alg}""#);
    let ident = aauth_keys::base64url::encode(&{
        let mut k = [0u8; 32];
        k[0] = 1;
        k
    });
    let policy = policy().accept_schemes(&["hwk"]);
    let v = aauth_signing::Verifier::new(
        policy,
        std::sync::Arc::new(aauth_signing::SchemeResolver::new().hwk()),
    );
    for (member, want) in [
        (hwk(&ident, "Ed25519"), ErrorCode::InvalidKey),
        (
            hwk("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "EdDSA"),
            ErrorCode::UnsupportedAlgorithm,
        ),
        (
            r#"sig=hwk;kty="OKP";crv="Ed25519";x="11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo""#
                .to_owned(),
            ErrorCode::UnsupportedAlgorithm,
        ),
        (
            r#"sig=hwk;kty="OKP";kid="k";alg="Ed25519""#.to_owned(),
            ErrorCode::InvalidKey,
        ),
    ] {
        let mut m = p.clone();
        set(&mut m, "signature-key", &member);
        let e = block(v.verify(&m, &b, NOW)).unwrap_err();
        assert_eq!(code(&e), want, "{member}: {e:?}");
    }
}

/// A GET signed by `key` under `scheme`, with `keyid` in its signature parameters (which
/// the signer itself never writes).
fn signed_with_keyid(key: &PrivateKey, scheme: &Scheme, keyid: &str) -> Parts {
    let mut p = http::Request::get("https://api.example/data")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    set(
        &mut p,
        "signature-key",
        &aauth_headers::SignatureKey::serialize([("sig", scheme)]).unwrap(),
    );
    let mut params = aauth_headers::SignatureParams::new(
        ["@method", "@authority", "@path", "signature-key"]
            .into_iter()
            .map(aauth_headers::Component::new)
            .collect(),
        i64::try_from(NOW.0).unwrap(),
    );
    params
        .params
        .push(aauth_headers::SigParam::KeyId(keyid.into()));
    let base = aauth_signing::signature_base(&p, &params, aauth_signing::View::Client).unwrap();
    let sig = aauth_keys::Signer::sign(key, base.as_bytes()).unwrap();
    set(
        &mut p,
        "signature-input",
        &format!("sig={}", params.serialize().unwrap()),
    );
    set(
        &mut p,
        "signature",
        &aauth_headers::Signatures::serialize([("sig", sig.as_slice())]).unwrap(),
    );
    as_server(p)
}

/// A `jkt-jwt` signed by `enclave`, with `header_jwk` in its header (under the JWS `alg`
/// `alg`) delegating to `cnf`.
fn jkt_jwt(
    enclave: &PrivateKey,
    alg: &str,
    header_jwk: &serde_json::Value,
    cnf: &serde_json::Value,
) -> String {
    let header = serde_json::json!({"alg": alg, "typ": "jkt-s256+jwt", "jwk": header_jwk});
    let payload = serde_json::json!({
        "iss": format!("urn:jkt:sha-256:{}", enclave.public_key().thumbprint()),
        "iat": NOW.0, "exp": NOW.0 + 600, "cnf": {"jwk": cnf},
    });
    let input = format!(
        "{}.{}",
        aauth_keys::base64url::encode(header.to_string().as_bytes()),
        aauth_keys::base64url::encode(payload.to_string().as_bytes())
    );
    let sig = aauth_keys::Signer::sign(enclave, input.as_bytes()).unwrap();
    format!("{input}.{}", aauth_keys::base64url::encode(&sig))
}

fn jwk_json(key: &PrivateKey) -> serde_json::Value {
    serde_json::to_value(key.public_key().to_jwk()).unwrap()
}

#[test]
fn k12_keyid_must_identify_the_signature_key_key() {
    let key = agent_key();
    let scheme = Scheme::jwt(agent_token());
    let build = |keyid: &str| signed_with_keyid(&key, &scheme, keyid);
    verify(&build(key.public_key().thumbprint().as_str()), b"").unwrap();
    let e = verify(&build("some-other-key"), b"").unwrap_err();
    assert!(matches!(e, VerifyError::KeyIdMismatch), "{e:?}");
    assert_eq!(code(&e), ErrorCode::InvalidSignature);
}

/// -09 §4.3: a `keyid` that names the `Signature-Key` key by the `kid` it goes by names
/// the same key, whichever resolver found it: the `jwks_uri` member's `kid` through
/// `IssuerJwksUriResolver` (as the metadata crate's resolver already did), the `cnf.jwk`
/// `kid` of a `jkt-jwt`. Another `kid` is still refused.
#[test]
fn k12_keyid_may_name_the_key_by_its_kid_in_every_scheme() {
    use std::sync::Arc;
    // jwks_uri, the key resolved from the Person Server's published keys under "k1".
    let ps_key = provider_key();
    let keys = aauth_tokens::StaticIssuerKeys::new().with(
        &sid("https://ps.example"),
        "aauth-person.json",
        "k1",
        ps_key.public_key().clone(),
    );
    let v = aauth_signing::Verifier::new(
        policy().accept_schemes(&["jwks_uri"]),
        Arc::new(aauth_signing::SchemeResolver::new().scheme(
            "jwks_uri",
            Arc::new(aauth_signing::IssuerJwksUriResolver::new(Arc::new(keys))),
        )),
    );
    let scheme = Scheme::JwksUri {
        id: "https://ps.example".into(),
        dwk: "aauth-person.json".into(),
        kid: "k1".into(),
    };
    let out = block(v.verify(&signed_with_keyid(&ps_key, &scheme, "k1"), b"", NOW)).unwrap();
    assert_eq!(&out.key, ps_key.public_key());
    let thumbprint = ps_key.public_key().thumbprint();
    block(v.verify(
        &signed_with_keyid(&ps_key, &scheme, thumbprint.as_str()),
        b"",
        NOW,
    ))
    .unwrap();
    let e = block(v.verify(&signed_with_keyid(&ps_key, &scheme, "k2"), b"", NOW)).unwrap_err();
    assert!(matches!(e, VerifyError::KeyIdMismatch), "{e:?}");

    // jkt-jwt, the delegated key's cnf.jwk carrying kid "eph-1".
    let enclave = PrivateKey::ed25519_from_seed(&[21; 32]);
    let eph = agent_key();
    let mut cnf = jwk_json(&eph);
    cnf["kid"] = "eph-1".into();
    let scheme = Scheme::JktJwt {
        jwt: jkt_jwt(&enclave, "Ed25519", &jwk_json(&enclave), &cnf),
        cache: false,
    };
    let v = aauth_signing::Verifier::new(
        policy().accept_schemes(&["jkt-jwt"]),
        Arc::new(aauth_signing::SchemeResolver::new().jkt_jwt()),
    );
    block(v.verify(&signed_with_keyid(&eph, &scheme, "eph-1"), b"", NOW)).unwrap();
    let e = block(v.verify(&signed_with_keyid(&eph, &scheme, "k1"), b"", NOW)).unwrap_err();
    assert!(matches!(e, VerifyError::KeyIdMismatch), "{e:?}");
}

/// -09 §4.9: several labels, none under a scheme this verifier accepts, are answered as
/// one label would be: `unsupported_scheme` (naming the first label's scheme) with
/// `Accept-Signature-Scheme`. Labels with no scheme at all stay `invalid_signature`.
#[test]
fn k7_several_labels_none_under_an_accepted_scheme() {
    let two = |signature_key: &str| {
        let mut m = forge(
            &["@method", "@authority", "@path", "signature-key"],
            signature_key,
            "sig",
        );
        let si = header(&m, "signature-input");
        let sig = header(&m, "signature");
        set(
            &mut m,
            "signature-input",
            &format!("{si}, sig2={}", si.trim_start_matches("sig=")),
        );
        set(&mut m, "signature", &format!("{sig}, sig2=:AAAA:"));
        m
    };
    let hwk = r#"hwk;kty="OKP";crv="Ed25519";x="11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";alg="Ed25519""#;
    for (sk, named) in [
        (format!("sig={hwk}, sig2=x-unregistered"), "hwk"),
        // The first label with a scheme is named; one without a member is passed over.
        (
            format!("sig2=x-unregistered, other={hwk}"),
            "x-unregistered",
        ),
        (r#"sig="jwt";jwt="x", sig2=x-new;p=1"#.to_owned(), "x-new"),
    ] {
        let e = verify(&two(&sk), b"").unwrap_err();
        assert!(
            matches!(&e, VerifyError::UnsupportedScheme { scheme: Some(s) } if s == named),
            "{sk}: {e:?}"
        );
        assert_eq!(code(&e), ErrorCode::UnsupportedScheme, "{sk}");
        let h = e.response_headers(&policy());
        assert!(
            h.iter()
                .any(|(n, v)| n == "accept-signature-scheme" && v == "jwt"),
            "{sk}: {h:?}"
        );
    }
    // No label has a scheme token: nothing to call unsupported.
    let e = verify(&two(r#"sig="jwt";jwt="x", other=hwk"#), b"").unwrap_err();
    assert!(matches!(e, VerifyError::NoLabel { .. }), "{e:?}");
    assert_eq!(code(&e), ErrorCode::InvalidSignature);
}

/// -09 §3.5, §3.3: a `jkt-jwt`'s header key is held to Algorithm Determination, and a
/// key refused on those grounds is `unsupported_algorithm` with `Accept-Signature-Alg`,
/// as an `hwk` or `cnf.jwk` key is; a header key refused otherwise stays `invalid_jwt`.
#[test]
fn k4_a_jkt_jwt_header_key_without_a_supported_alg_is_unsupported_algorithm() {
    use std::sync::Arc;
    let enclave = PrivateKey::ed25519_from_seed(&[21; 32]);
    let eph = agent_key();
    let jwk = jwk_json(&enclave);
    let mut no_alg = jwk.clone();
    no_alg.as_object_mut().unwrap().remove("alg");
    let mut eddsa = jwk.clone();
    eddsa["alg"] = "EdDSA".into();
    let mut short = jwk;
    short["x"] = "AAAA".into();
    let es384 = serde_json::json!({
        "kty": "EC", "crv": "P-384", "alg": "ES384",
        "x": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "y": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    });
    let v = aauth_signing::Verifier::new(
        policy().accept_schemes(&["jkt-jwt"]),
        Arc::new(aauth_signing::SchemeResolver::new().jkt_jwt()),
    );
    for (alg, header_jwk, want) in [
        ("Ed25519", no_alg, ErrorCode::UnsupportedAlgorithm),
        ("Ed25519", eddsa, ErrorCode::UnsupportedAlgorithm),
        ("ES384", es384, ErrorCode::UnsupportedAlgorithm),
        ("Ed25519", short, ErrorCode::InvalidJwt),
    ] {
        let scheme = Scheme::JktJwt {
            jwt: jkt_jwt(&enclave, alg, &header_jwk, &jwk_json(&eph)),
            cache: false,
        };
        let (mut p, ()) = http::Request::get("https://api.example/data")
            .body(())
            .unwrap()
            .into_parts();
        sign(
            &mut p,
            b"",
            &[SigningKey::new("sig", &eph, &scheme)],
            &SignOptions::default(),
            NOW,
        )
        .unwrap();
        let e = block(v.verify(&as_server(p), b"", NOW)).unwrap_err();
        assert_eq!(code(&e), want, "{header_jwk}: {e:?}");
        let h = e.response_headers(v.policy());
        let alg_header = h
            .iter()
            .find(|(n, _)| n == "accept-signature-alg")
            .map(|(_, v)| v.to_str().unwrap().to_owned());
        if want == ErrorCode::UnsupportedAlgorithm {
            assert_eq!(alg_header.as_deref(), Some("Ed25519, ES256"), "{h:?}");
        } else {
            assert_eq!(alg_header, None, "{h:?}");
        }
    }
}

/// -09 §3.5, §3.3: a `jkt-jwt`'s enclave key (its header `jwk`) is held to the verifier's
/// accepted algorithms, not only to those the library can verify: a verifier that
/// accepts one algorithm refuses an enclave key of another with `unsupported_algorithm`
/// and `Accept-Signature-Alg` naming the one, as it refuses a delegated key of another.
#[test]
fn k4_a_jkt_jwt_enclave_key_outside_the_accepted_algorithms_is_unsupported_algorithm() {
    use std::sync::Arc;
    // A request signed by `eph` under a `jkt-jwt` in which `enclave` delegates to it.
    let request = |enclave: &PrivateKey, eph: &PrivateKey| {
        let alg = enclave.public_key().algorithm().as_str();
        let scheme = Scheme::JktJwt {
            jwt: jkt_jwt(enclave, alg, &jwk_json(enclave), &jwk_json(eph)),
            cache: false,
        };
        let (mut p, ()) = http::Request::get("https://api.example/data")
            .body(())
            .unwrap()
            .into_parts();
        sign(
            &mut p,
            b"",
            &[SigningKey::new("sig", eph, &scheme)],
            &SignOptions::default(),
            NOW,
        )
        .unwrap();
        as_server(p)
    };
    let ed25519 = PrivateKey::ed25519_from_seed(&[21; 32]);
    let es256 = PrivateKey::es256_from_scalar(&[13; 32]).unwrap();
    for (accepted, ok, other) in [
        (Algorithm::Es256, &es256, &ed25519),
        (Algorithm::Ed25519, &ed25519, &es256),
    ] {
        let v = aauth_signing::Verifier::new(
            policy()
                .accept_schemes(&["jkt-jwt"])
                .accept_algorithms(&[accepted]),
            Arc::new(aauth_signing::SchemeResolver::new().jkt_jwt()),
        );
        let verify = |enclave, eph| block(v.verify(&request(enclave, eph), b"", NOW));
        // The enclave key of the other algorithm, the request signed by one accepted.
        let e = verify(other, ok).unwrap_err();
        let other_alg = other.public_key().algorithm().as_str();
        assert!(
            matches!(&e, VerifyError::EnclaveAlgorithmNotAccepted { alg } if alg == other_alg),
            "{accepted:?}: {e:?}"
        );
        assert_eq!(code(&e), ErrorCode::UnsupportedAlgorithm);
        let h = e.response_headers(v.policy());
        assert!(
            h.iter()
                .any(|(n, val)| n == "accept-signature-alg" && val == accepted.as_str()),
            "{h:?}"
        );
        // Both keys of the accepted algorithm: verified.
        verify(ok, ok).unwrap();
        // The delegated key of the other algorithm: refused as before, the same code.
        let e = verify(ok, other).unwrap_err();
        assert!(
            matches!(e, VerifyError::AlgorithmNotAccepted { .. }),
            "{e:?}"
        );
        assert_eq!(code(&e), ErrorCode::UnsupportedAlgorithm);
    }
}

#[test]
fn c5_c6_created_window_and_expires() {
    let at = |created: u64, opts: &SignOptions| {
        let (mut p, ()) = http::Request::get("https://api.example/data")
            .body(())
            .unwrap()
            .into_parts();
        let scheme = Scheme::jwt(agent_token());
        sign(
            &mut p,
            b"",
            &[SigningKey::new("sig", &agent_key(), &scheme)],
            opts,
            UnixTime(created),
        )
        .unwrap();
        as_server(p)
    };
    let d = SignOptions::default();
    verify(&at(NOW.0 - 60, &d), b"").unwrap();
    verify(&at(NOW.0 + 60, &d), b"").unwrap();
    let e = verify(&at(NOW.0 - 61, &d), b"").unwrap_err();
    assert!(matches!(e, VerifyError::CreatedTooOld { .. }), "{e:?}");
    assert_eq!(code(&e), ErrorCode::InvalidSignature);
    let e = verify(&at(NOW.0 + 61, &d), b"").unwrap_err();
    assert!(matches!(e, VerifyError::CreatedInFuture { .. }), "{e:?}");
    assert_eq!(code(&e), ErrorCode::ClockSkew);
    // A custom window: narrowing never widens; widening only through the door.
    let e = verify_with(
        policy().narrow_window(std::time::Duration::from_secs(120)),
        &at(NOW.0 - 100, &d),
        b"",
    )
    .unwrap_err();
    assert!(
        matches!(e, VerifyError::CreatedTooOld { window: 60, .. }),
        "{e:?}"
    );
    let e = verify_with(
        policy().narrow_window(std::time::Duration::from_secs(30)),
        &at(NOW.0 - 40, &d),
        b"",
    )
    .unwrap_err();
    assert!(
        matches!(e, VerifyError::CreatedTooOld { window: 30, .. }),
        "{e:?}"
    );
    let mut wide = policy();
    wide.dangerous()
        .widen_window(std::time::Duration::from_secs(120));
    verify_with(wide, &at(NOW.0 - 100, &d), b"").unwrap();
    // expires in the past; a far-future expires does not widen the window.
    let mut o = SignOptions::default();
    o.expires_in = Some(10);
    let e = verify(&at(NOW.0 - 30, &o), b"").unwrap_err();
    assert!(matches!(e, VerifyError::Expired { .. }), "{e:?}");
    o.expires_in = Some(86_400);
    let e = verify(&at(NOW.0 - 61, &o), b"").unwrap_err();
    assert!(matches!(e, VerifyError::CreatedTooOld { .. }), "{e:?}");
    // created missing, or not an integer.
    let (p, b) = get();
    for si in [
        r#"sig=("@method" "@authority" "@path" "signature-key")"#.to_owned(),
        format!(
            r#"sig=("@method" "@authority" "@path" "signature-key");created="{}""#,
            NOW.0
        ),
        r#"sig=("@method" "@authority" "@path" "signature-key");created=1.5"#.to_owned(),
    ] {
        let mut m = p.clone();
        set(&mut m, "signature-input", &si);
        let e = verify(&m, &b).unwrap_err();
        assert!(
            matches!(
                e,
                VerifyError::CreatedMissing | VerifyError::BadMember { .. }
            ),
            "{si}: {e:?}"
        );
        assert_eq!(code(&e), ErrorCode::InvalidSignature);
    }
}

#[test]
fn s20_a_403_after_verification_is_the_callers_and_every_401_names_one_code() {
    // Every VerifyError with a code answers 401 with exactly one Signature-Error.
    let (p, b) = get();
    let mut m = p;
    m.uri = "/x".parse().unwrap();
    let e = verify(&m, &b).unwrap_err();
    let h = e.response_headers(&policy());
    assert_eq!(h.iter().filter(|(n, _)| n == "signature-error").count(), 1);
    assert_eq!(e.status(), 401);
}

/// Cross-host replay (catalogue S5): a request signed for `ps2.example`, relayed to
/// `ps.example` with its own `Host` (or as an absolute-form target), was once accepted. A
/// server answers only to its own names.
#[test]
fn s5_a_request_signed_for_another_host_is_refused_however_it_is_relayed() {
    let ps = VerifyPolicy::for_server(&sid("https://ps.example"));
    let (p, b) = signed(
        "POST",
        "https://ps2.example/person-token",
        br#"{"resource":"https://r.example"}"#,
        &SignOptions::default(),
    );
    let wrong = |found: &str| {
        VerifyError::Component(aauth_signing::ComponentError::WrongAuthority {
            found: found.to_owned(),
        })
    };
    // Relayed with its Host header.
    let relayed = as_server(p.clone());
    let e = verify_with(ps.clone(), &relayed, &b).unwrap_err();
    assert_eq!(e, wrong("ps2.example"));
    assert_eq!(e.code(), Some(ErrorCode::InvalidSignature));
    assert_eq!(e.status(), http::StatusCode::UNAUTHORIZED);
    // As an absolute-form target (HTTP/1.1 lets a client send one), Host absent.
    let mut absolute = p;
    absolute.headers.remove("host");
    assert_eq!(
        verify_with(ps.clone(), &absolute, &b).unwrap_err(),
        wrong("ps2.example")
    );
    // Host rewritten to ours: the base no longer matches what was signed.
    let mut rewritten = relayed;
    set(&mut rewritten, "host", "ps.example");
    assert_eq!(
        verify_with(ps.clone(), &rewritten, &b).unwrap_err(),
        VerifyError::BadSignature
    );
    // Signed for us, it verifies; under an alias list too.
    let (own, b) = signed(
        "POST",
        "https://ps.example/person-token",
        br#"{"resource":"https://r.example"}"#,
        &SignOptions::default(),
    );
    verify_with(ps, &as_server(own.clone()), &b).unwrap();
    let aliases = VerifyPolicy::new(
        aauth_signing::AuthoritySource::names(["ps.internal:8443", "ps.example"]).unwrap(),
    );
    verify_with(aliases, &as_server(own), &b).unwrap();
}

#[test]
fn s5_authority_names_are_validated_when_configured() {
    use aauth_signing::{AuthoritySource, ComponentError};
    for bad in [
        "",
        "ps.example/x",
        "user@ps.example",
        "ps.example:http",
        "a b",
    ] {
        assert_eq!(
            AuthoritySource::names([bad]).unwrap_err(),
            ComponentError::BadAuthority,
            "{bad:?}"
        );
    }
    assert_eq!(
        AuthoritySource::names(Vec::<&str>::new()).unwrap_err(),
        ComponentError::BadAuthority
    );
    let s = AuthoritySource::names(["PS.Example:443"]).unwrap();
    assert!(s.accepts("ps.example") && s.accepts("ps.example:443"));
    assert!(!s.accepts("ps.example:8443") && !s.accepts("ps.example.evil"));
}
