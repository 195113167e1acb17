//! Every field: serialize, parse back, compare; and the behaviours each field documents.

use aauth_headers::{
    AAuthCapabilities, AAuthRequirement, AcceptSignatureAlg, AcceptSignatureScheme,
    AuthorizationAAuth, Capability, Component, ComponentParam, ContentDigest, DigestAlgorithm,
    ErrorCode, Hwk, ParseError, Prefer, Requirement, Scheme, SessionToken, SigParam,
    SignatureErrorHeader, SignatureInput, SignatureKey, SignatureParams, Signatures,
    combined_value, single_value,
};

fn all_schemes() -> Vec<Scheme> {
    let mut hwk = Hwk::default();
    hwk.kty = Some("EC".into());
    hwk.crv = Some("P-256".into());
    hwk.x = Some("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU".into());
    hwk.y = Some("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0".into());
    hwk.alg = Some("ES256".into());
    vec![
        Scheme::Hwk(hwk),
        Scheme::JktJwt {
            jwt: "a.b.c".into(),
            cache: true,
        },
        Scheme::JwksUri {
            id: "https://ps.example".into(),
            dwk: "aauth-person.json".into(),
            kid: "key-1".into(),
        },
        Scheme::Jwks {
            url: "https://client.example/keys.jwks".into(),
            kid: "k".into(),
        },
        Scheme::Jwt {
            jwt: "eyJ.e30.c2ln".into(),
            cache: false,
        },
        Scheme::Jwt {
            jwt: "eyJ.e30.c2ln".into(),
            cache: true,
        },
        Scheme::SelfJwt {
            jwt: "x.y.z".into(),
        },
        Scheme::X509 {
            x5u: "https://client.example/cert.pem".into(),
            x5t: vec![0x6d, 0x67, 0x28, 0xa2, 0x7e, 0x10],
        },
        Scheme::Cached {
            cid: "2f9c8a1e-a7b3".into(),
        },
    ]
}

#[test]
fn signature_key_every_scheme_round_trips() {
    let schemes = all_schemes();
    let labels: Vec<String> = (0..schemes.len()).map(|i| format!("s{i}")).collect();
    let value =
        SignatureKey::serialize(labels.iter().map(String::as_str).zip(schemes.iter())).unwrap();
    let parsed = SignatureKey::parse(&value).unwrap();
    for (label, scheme) in labels.iter().zip(&schemes) {
        let m = parsed.get(label).unwrap();
        assert_eq!(m.scheme.as_ref().unwrap(), scheme, "{label}");
        assert_eq!(m.scheme_name.as_deref(), Some(scheme.name()));
    }
    // The cache signal is serialized bare, as -09 §3.8 says.
    assert!(value.contains(r#"jwt="eyJ.e30.c2ln";cache"#), "{value}");
    assert!(value.contains("x5t=:bWcoon4Q:"), "{value}");
}

#[test]
fn signature_input_round_trips_with_order_preserved() {
    let mut p = SignatureParams::new(
        vec![
            Component::new("@method"),
            Component::new("@authority"),
            Component::new("@path"),
            Component::new("signature-key"),
        ],
        1_618_884_473,
    );
    p.params.push(SigParam::KeyId("test-key-ed25519".into()));
    p.params.push(SigParam::Expires(1_618_884_773));
    p.params.push(SigParam::Nonce("n".into()));
    p.params.push(SigParam::Tag("aauth".into()));
    let mut q = SignatureParams::new(vec![Component::new("content-digest")], 1);
    q.components.push(Component::new("x"));
    let value = SignatureInput::serialize([("sig", &p), ("sig2", &q)]).unwrap();
    assert_eq!(
        value,
        r#"sig=("@method" "@authority" "@path" "signature-key");created=1618884473;keyid="test-key-ed25519";expires=1618884773;nonce="n";tag="aauth", sig2=("content-digest" "x");created=1"#
    );
    let parsed = SignatureInput::parse(&value).unwrap();
    assert_eq!(parsed.get("sig").unwrap().params.as_ref().unwrap(), &p);
    assert_eq!(parsed.get("sig2").unwrap().params.as_ref().unwrap(), &q);
    assert_eq!(parsed.members().len(), 2);
    let got = parsed.get("sig").unwrap().params.as_ref().unwrap();
    assert_eq!(got.created(), Some(1_618_884_473));
    assert_eq!(got.expires(), Some(1_618_884_773));
    assert_eq!(got.keyid(), Some("test-key-ed25519"));
    assert_eq!(got.nonce(), Some("n"));
    assert_eq!(got.tag(), Some("aauth"));
    assert!(got.covers("@path") && !got.covers("@query"));
    // Component parameters survive the round trip.
    let mut r = SignatureParams::new(vec![Component::new("signature-key")], 5);
    r.components[0].params = vec![ComponentParam::Key("sig".into()), ComponentParam::Sf];
    let v = SignatureInput::serialize([("a", &r)]).unwrap();
    assert_eq!(v, r#"a=("signature-key";key="sig";sf);created=5"#);
    assert_eq!(
        SignatureInput::parse(&v)
            .unwrap()
            .get("a")
            .unwrap()
            .params
            .as_ref()
            .unwrap(),
        &r
    );
}

#[test]
fn rfc9421_b26_signature_input_parses() {
    let v = r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#;
    let si = SignatureInput::parse(v).unwrap();
    let p = si.get("sig-b26").unwrap().params.as_ref().unwrap();
    assert_eq!(p.components.len(), 6);
    assert_eq!(p.serialize().unwrap(), &v["sig-b26=".len()..]);
}

#[test]
fn signatures_round_trip() {
    let a = vec![1u8; 64];
    let b = vec![2u8; 64];
    let v = Signatures::serialize([("sig", a.as_slice()), ("pseudo", b.as_slice())]).unwrap();
    let s = Signatures::parse(&v).unwrap();
    assert_eq!(s.get("sig").unwrap().unwrap(), a.as_slice());
    assert_eq!(s.get("pseudo").unwrap().unwrap(), b.as_slice());
    assert_eq!(s.labels().collect::<Vec<_>>(), ["sig", "pseudo"]);
    assert!(s.get("other").is_none());
    // Not a byte sequence: a member error, not a field error.
    let s = Signatures::parse(r#"sig="abc", ok=:AQ==:"#).unwrap();
    assert!(s.get("sig").unwrap().is_err());
    assert_eq!(s.get("ok").unwrap().unwrap(), &[1]);
}

#[test]
fn signature_error_and_accept_headers() {
    for code in [
        ErrorCode::UnsupportedAlgorithm,
        ErrorCode::UnsupportedScheme,
        ErrorCode::CacheMiss,
        ErrorCode::InvalidSignature,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidKey,
        ErrorCode::UnknownKey,
        ErrorCode::IssuerMissing,
        ErrorCode::IssuerMismatch,
        ErrorCode::InvalidJwt,
        ErrorCode::ExpiredJwt,
        ErrorCode::RevokedJwt,
        ErrorCode::ClockSkew,
    ] {
        let h = SignatureErrorHeader::new(code.clone());
        let v = h.serialize().unwrap();
        assert_eq!(v, format!("error={}", code.as_str()));
        assert_eq!(SignatureErrorHeader::parse(&v).unwrap(), h);
        assert_eq!(code.as_str().parse::<ErrorCode>().unwrap(), code);
    }
    // A code registered later is kept, not refused.
    let h = SignatureErrorHeader::parse("error=brand_new").unwrap();
    assert_eq!(h.code, ErrorCode::Other("brand_new".into()));
    assert!(matches!(
        SignatureErrorHeader::parse("required_input=()"),
        Err(ParseError::MissingMember { .. })
    ));
    assert!(matches!(
        SignatureErrorHeader::parse(r#"error="invalid_key""#),
        Err(ParseError::InvalidMember { .. })
    ));
    assert!(matches!(
        SignatureErrorHeader::parse("error=invalid_input, required_input=(1 2)"),
        Err(ParseError::InvalidMember { .. })
    ));
    let a = AcceptSignatureScheme::parse(r#"jwks_uri, jwt, "quoted", (inner), x-future"#).unwrap();
    assert_eq!(a.0, ["jwks_uri", "jwt", "x-future"]);
    let g = AcceptSignatureAlg::parse("Ed25519, ES256, es256").unwrap();
    assert_eq!(g.0, ["Ed25519", "ES256", "es256"]);
    assert_eq!(g.serialize().unwrap(), "Ed25519, ES256, es256");
    assert!(
        AcceptSignatureScheme(vec!["not a token".into()])
            .serialize()
            .is_err()
    );
}

#[test]
fn requirement_every_value() {
    for r in [
        Requirement::AgentToken,
        Requirement::PersonToken,
        Requirement::AuthToken {
            resource_token: "eyJ.e30.c2ln".into(),
        },
        Requirement::Interaction {
            url: "https://ps.example/interaction".into(),
            code: "A1B2-C3D4".into(),
        },
        Requirement::Approval,
        Requirement::Clarification,
        Requirement::Claims,
        Requirement::Other {
            value: "payment-plan".into(),
        },
    ] {
        let h = AAuthRequirement::new(r.clone());
        let v = h.serialize().unwrap();
        assert_eq!(AAuthRequirement::parse(&v).unwrap().requirement, r, "{v}");
    }
    // person-token takes no parameters; unknown parameters and members are ignored.
    let r = AAuthRequirement::parse(r#"requirement=person-token;x="y", other=1"#).unwrap();
    assert_eq!(r.requirement, Requirement::PersonToken);
    // Missing required parameters.
    assert!(matches!(
        AAuthRequirement::parse("requirement=auth-token"),
        Err(ParseError::MissingMember {
            member: "resource-token",
            ..
        })
    ));
    assert!(matches!(
        AAuthRequirement::parse(r#"requirement=interaction;url="https://a.example""#),
        Err(ParseError::MissingMember { member: "code", .. })
    ));
    assert!(matches!(
        AAuthRequirement::parse("requirement=auth-token;resource-token=tok"),
        Err(ParseError::InvalidMember { .. })
    ));
    assert!(matches!(
        AAuthRequirement::parse(r#"requirement="agent-token""#),
        Err(ParseError::InvalidMember { .. })
    ));
    assert!(matches!(
        AAuthRequirement::parse("foo=bar"),
        Err(ParseError::MissingMember {
            member: "requirement",
            ..
        })
    ));
}

#[test]
fn capabilities_access_digest_prefer() {
    let c = AAuthCapabilities::parse("interaction;x=1, payment, clarification, interaction, nope")
        .unwrap();
    assert_eq!(
        c.0,
        [
            Capability::Interaction,
            Capability::Payment,
            Capability::Clarification
        ]
    );
    assert!(c.has(Capability::Payment));
    assert_eq!(c.serialize(), "interaction, payment, clarification");
    assert_eq!(
        AAuthCapabilities::parse("").unwrap(),
        AAuthCapabilities::default()
    );

    let t = SessionToken::parse_aauth_access("c2Vzc2lvbi0x==").unwrap();
    assert_eq!(t.secret(), "c2Vzc2lvbi0x==");
    assert!(!format!("{t:?}").contains("c2Vz"));
    for bad in ["", " a", "a b", "a,b", "a\tb", "==", "a=b"] {
        assert!(SessionToken::parse_aauth_access(bad).is_err(), "{bad:?}");
    }
    let a = AuthorizationAAuth::parse("AAuth c2Vzc2lvbi0x").unwrap();
    assert_eq!(a.serialize(), "AAuth c2Vzc2lvbi0x");
    assert_eq!(AuthorizationAAuth::parse(&a.serialize()).unwrap(), a);
    for bad in [
        "AAuth",
        "AAuth ",
        "AAuth  x",
        "AAuth x y",
        "AAuth x, AAuth y",
        "Bearer x",
        "AAuthx y",
        "AAuth x\u{1}",
    ] {
        assert!(AuthorizationAAuth::parse(bad).is_err(), "{bad:?}");
    }

    let d = ContentDigest(vec![
        (DigestAlgorithm::Sha256, vec![1; 32]),
        (DigestAlgorithm::Sha512, vec![2; 64]),
    ]);
    let v = d.serialize().unwrap();
    assert_eq!(ContentDigest::parse(&v).unwrap(), d);
    let d = ContentDigest::parse("md5=:AAAA:, sha-256=:AQ==:").unwrap();
    assert_eq!(d.0[0].0, DigestAlgorithm::Other("md5".into()));
    assert!(ContentDigest::parse(r#"sha-256="x""#).is_err());
    assert!(ContentDigest::parse("sha-256=:AQ==:, sha-256=:Ag==:").is_err());

    assert_eq!(Prefer::parse("wait=10").unwrap().wait, Some(10));
    assert_eq!(
        Prefer::parse("respond-async, wait=5;x=y, wait=99")
            .unwrap()
            .wait,
        Some(5)
    );
    assert_eq!(Prefer::parse("handling=lenient").unwrap().wait, None);
    assert_eq!(Prefer::parse("wait=-1").unwrap().wait, None);
    assert_eq!(
        Prefer::parse("wait=99999999999999999999999").unwrap().wait,
        None
    );
    assert_eq!(Prefer::wait(30).serialize().as_deref(), Some("wait=30"));
    assert_eq!(Prefer::default().serialize(), None);
}

#[test]
fn header_maps_join_lines_and_bound_the_total() {
    let mut h = http::HeaderMap::new();
    h.append("signature-input", "a=()".parse().unwrap());
    h.append("signature-input", "b=()".parse().unwrap());
    assert_eq!(
        combined_value(&h, "signature-input", 100)
            .unwrap()
            .as_deref(),
        Some("a=(), b=()")
    );
    assert!(matches!(
        combined_value(&h, "signature-input", 9),
        Err(ParseError::TooLarge {
            len: 10,
            limit: 9,
            ..
        })
    ));
    assert_eq!(combined_value(&h, "signature", 100).unwrap(), None);
    assert!(matches!(
        single_value(&h, "signature-input", 100),
        Err(ParseError::MultipleLines { .. })
    ));
    h.insert("authorization", "AAuth x".parse().unwrap());
    assert_eq!(
        single_value(&h, "authorization", 100).unwrap(),
        Some("AAuth x")
    );
    h.insert(
        "signature",
        http::HeaderValue::from_bytes(b"sig=:\xff:").unwrap(),
    );
    assert!(matches!(
        combined_value(&h, "signature", 100),
        Err(ParseError::NotAscii { .. })
    ));
}
