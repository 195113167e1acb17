//! Header tricks and oversized input (security catalogue S8–S10, S13, S16, Z1–Z3).

use aauth_headers::{
    AAuthRequirement, DEFAULT_MAX_FIELD_BYTES, MemberError, ParseError, Scheme, SignatureInput,
    SignatureKey, Signatures, combined_value,
};

fn member_error(input: &str) -> MemberError {
    SignatureInput::parse(input)
        .unwrap()
        .get("sig")
        .unwrap()
        .params
        .clone()
        .unwrap_err()
}

#[test]
fn s13_duplicate_labels_within_and_across_lines() {
    let e =
        SignatureInput::parse(r#"sig=("@method");created=1, sig=("@path");created=1"#).unwrap_err();
    assert!(
        matches!(e, ParseError::DuplicateMember { ref key, .. } if key == "sig"),
        "{e:?}"
    );
    let mut h = http::HeaderMap::new();
    h.append("signature-key", r#"sig=jwt;jwt="a.b.c""#.parse().unwrap());
    h.append("signature-key", r#"sig=jwt;jwt="x.y.z""#.parse().unwrap());
    let joined = combined_value(&h, "signature-key", 8192).unwrap().unwrap();
    assert!(matches!(
        SignatureKey::parse(&joined),
        Err(ParseError::DuplicateMember { .. })
    ));
    assert!(matches!(
        Signatures::parse("sig=:AA==:, sig=:AQ==:"),
        Err(ParseError::DuplicateMember { .. })
    ));
    assert!(matches!(
        AAuthRequirement::parse("requirement=agent-token, requirement=auth-token"),
        Err(ParseError::DuplicateMember { .. })
    ));
}

#[test]
fn duplicate_parameters_are_refused() {
    let e = SignatureInput::parse(r#"sig=("@method");created=1;created=2"#).unwrap_err();
    assert!(
        matches!(e, ParseError::DuplicateParameter { ref key, .. } if key == "created"),
        "{e:?}"
    );
    let e = SignatureKey::parse(r#"sig=jwt;jwt="a";jwt="b""#).unwrap_err();
    assert!(matches!(e, ParseError::DuplicateParameter { .. }), "{e:?}");
    let e = SignatureInput::parse(r#"sig=("@method";req;req);created=1"#).unwrap_err();
    assert!(matches!(e, ParseError::DuplicateParameter { .. }), "{e:?}");
}

#[test]
fn s8_s9_s10_component_identifiers() {
    for input in [
        r#"sig=("Content-Digest");created=1"#,
        r#"sig=("@Method");created=1"#,
        r#"sig=("@method" "@method");created=1"#,
        r#"sig=("@signature-params");created=1"#,
        r#"sig=("");created=1"#,
        r#"sig=("@");created=1"#,
        r#"sig=("content type");created=1"#,
        r#"sig=("@method";xyz);created=1"#,
        r#"sig=("content-type";sf=?0);created=1"#,
        r#"sig=("content-type";key=1);created=1"#,
    ] {
        assert!(
            matches!(member_error(input), MemberError::InvalidComponent { .. }),
            "{input}"
        );
    }
    // A bare @ is not structured-field syntax at all.
    assert!(matches!(
        SignatureInput::parse(r#"sig=(@method);created=1"#),
        Err(ParseError::Syntax { .. })
    ));
    // Parameters of the signature.
    assert!(matches!(
        member_error(r#"sig=("@method");created=1;xyz=1"#),
        MemberError::UnexpectedParameter { .. }
    ));
    for (input, name) in [
        (r#"sig=("@method");created="123""#, "created"),
        (r#"sig=("@method");created=1.5"#, "created"),
        (r#"sig=("@method");created=1;keyid=k"#, "keyid"),
        (r#"sig=("@method");created=1;alg=?1"#, "alg"),
    ] {
        assert!(
            matches!(member_error(input), MemberError::ParameterType { name: ref n, .. } if n == name),
            "{input}"
        );
    }
    // An item instead of an inner list.
    assert!(matches!(
        member_error(r#"sig="@method";created=1"#),
        MemberError::WrongType { .. }
    ));
    // A bad member does not spoil the others.
    let si =
        SignatureInput::parse(r#"bad=("@Method");created=1, sig=("@method");created=1"#).unwrap();
    assert!(si.get("bad").unwrap().params.is_err());
    assert!(si.get("sig").unwrap().params.is_ok());
}

#[test]
fn signature_key_members_fail_alone() {
    let sk = SignatureKey::parse(r#"a=hwk;kid="k";kty="OKP", b=(jwt), c="jwt", d=jwt;jwt=1, e=x509;x5u="u";x5t="notbytes", sig=jwt;jwt="a.b.c""#).unwrap();
    assert!(matches!(
        sk.get("a").unwrap().scheme,
        Err(MemberError::UnexpectedParameter { .. })
    ));
    assert_eq!(sk.get("a").unwrap().scheme_name.as_deref(), Some("hwk"));
    assert!(matches!(
        sk.get("b").unwrap().scheme,
        Err(MemberError::WrongType { .. })
    ));
    assert_eq!(sk.get("b").unwrap().scheme_name, None);
    assert!(matches!(
        sk.get("c").unwrap().scheme,
        Err(MemberError::WrongType { .. })
    ));
    assert!(matches!(
        sk.get("d").unwrap().scheme,
        Err(MemberError::ParameterType { .. })
    ));
    assert!(matches!(
        sk.get("e").unwrap().scheme,
        Err(MemberError::ParameterType { .. })
    ));
    assert!(matches!(
        sk.get("sig").unwrap().scheme,
        Ok(Scheme::Jwt { .. })
    ));
    // Scheme tokens are case-sensitive: JWT is not jwt.
    let sk = SignatureKey::parse(r#"sig=JWT;jwt="a""#).unwrap();
    assert!(
        matches!(&sk.get("sig").unwrap().scheme, Ok(Scheme::Unknown { name }) if name == "JWT")
    );
    for (member, param) in [
        ("jwks_uri;id=\"i\";dwk=\"d\"", "kid"),
        ("jwks;kid=\"k\"", "url"),
        ("self-jwt", "jwt"),
        ("cached", "cid"),
        ("x509;x5u=\"u\"", "x5t"),
    ] {
        let sk = SignatureKey::parse(&format!("sig={member}")).unwrap();
        assert!(
            matches!(sk.get("sig").unwrap().scheme, Err(MemberError::MissingParameter { name }) if name == param),
            "{member}"
        );
    }
}

#[test]
fn s16_malformed_values_error_without_panicking() {
    for input in [
        r#"sig=("@method"#,
        r#"sig=("@path";x="a\"b");created=1"#,
        "sig=(\"@méthod\");created=1",
        "sig=(\"a\u{0}\");created=1",
        "sig",
        "=",
        ",",
        "sig=(\"@method\");created=1,",
        "sig=(\"@method\") ;created=1",
        "SIG=(\"@method\");created=1",
    ] {
        let r = SignatureInput::parse(input);
        if let Ok(si) = &r {
            // Whatever parsed must be structurally sane.
            assert!(si.members().iter().all(|m| !m.label.is_empty()), "{input}");
        }
    }
    assert!(matches!(
        SignatureInput::parse("SIG=()"),
        Err(ParseError::Syntax { .. })
    ));
    assert!(matches!(
        SignatureKey::parse("sig=jwt;jwt=\"unterminated"),
        Err(ParseError::Syntax { .. })
    ));
    let params: String = (0..600).map(|i| format!(";p{i}=1")).collect();
    let r = SignatureInput::parse(&format!("sig=(\"@method\"){params}"));
    // 600 parameters fit in 8 KiB: parsed, and the member refuses the unknown ones.
    assert!(r.unwrap().get("sig").unwrap().params.is_err());
}

#[test]
fn z1_z2_z3_oversized_values_are_refused_before_parsing() {
    let jwt = "a".repeat(DEFAULT_MAX_FIELD_BYTES);
    let e = SignatureKey::parse(&format!(r#"sig=jwt;jwt="{jwt}""#)).unwrap_err();
    assert!(
        matches!(
            e,
            ParseError::TooLarge {
                field: "Signature-Key",
                limit: 8192,
                ..
            }
        ),
        "{e:?}"
    );
    // Exactly at the limit is parsed; one byte over is not.
    let exact = format!(
        r#"sig=jwt;jwt="{}""#,
        "a".repeat(DEFAULT_MAX_FIELD_BYTES - 14)
    );
    assert_eq!(exact.len(), DEFAULT_MAX_FIELD_BYTES);
    SignatureKey::parse(&exact).unwrap();
    let over = format!(
        r#"sig=jwt;jwt="{}""#,
        "a".repeat(DEFAULT_MAX_FIELD_BYTES - 13)
    );
    assert!(matches!(
        SignatureKey::parse(&over),
        Err(ParseError::TooLarge { .. })
    ));
    // Ten thousand components or a thousand labels: over the limit long before parsing.
    let comps: String = (0..10_000).map(|i| format!("\"c{i}\" ")).collect();
    assert!(matches!(
        SignatureInput::parse(&format!("sig=({comps});created=1")),
        Err(ParseError::TooLarge { .. })
    ));
    let labels: Vec<String> = (0..1000).map(|i| format!("l{i}=()")).collect();
    assert!(matches!(
        SignatureInput::parse(&labels.join(", ")),
        Err(ParseError::TooLarge { .. })
    ));
    // A custom limit.
    assert!(matches!(
        Signatures::parse_with_limit("sig=:AAAA:", 5),
        Err(ParseError::TooLarge { limit: 5, .. })
    ));
}
