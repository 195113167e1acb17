//! JWT access tokens, sans-IO: every check before the key, then the signature.

use aauth_keys::base64url;
use aauth_keys::time::UnixTime;
use aauth_oauth::{
    AccessToken, AccessTokenPolicy, AlgorithmRefusal, HmacAlgorithm, IssuerKey, IssuerSigning,
    JwsAlgorithm, OAuthError, SharedSecret, TokenAlgorithm, TokenTypes,
};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::support::{
    AUDIENCE, HS_ISSUER, HS_SECRET, ISSUER, NOW, Signer, claims, ec_jwk, ed_jwk, header, mint,
    rs256_token, rsa, rsa_jwk, rsa_other,
};

fn policy() -> AccessTokenPolicy {
    AccessTokenPolicy::new(AUDIENCE)
}

fn parse(token: &str) -> Result<AccessToken<'_>, OAuthError> {
    parse_with(token, &policy())
}

fn parse_with<'a>(token: &'a str, p: &AccessTokenPolicy) -> Result<AccessToken<'a>, OAuthError> {
    AccessToken::parse(token, p, &|iss| iss == ISSUER, UnixTime(NOW))
}

fn rsa_key() -> IssuerKey {
    IssuerKey::from_jwk(&rsa_jwk(rsa(), "rs", None)).unwrap()
}

fn with(mut v: Value, name: &str, value: Value) -> Value {
    v[name] = value;
    v
}

fn without(mut v: Value, name: &str) -> Value {
    v.as_object_mut().unwrap().remove(name);
    v
}

#[test]
fn a_good_token_of_each_algorithm_verifies() {
    let rs = rs256_token();
    let claims = parse(&rs).unwrap().finish(&rsa_key()).unwrap();
    assert_eq!(claims.issuer(), ISSUER);
    assert_eq!(claims.subject(), Some("client-1"));
    assert_eq!(claims.client_id(), Some("client-1"));
    assert_eq!(claims.scopes().collect::<Vec<_>>(), ["read", "write"]);
    assert_eq!(claims.audience().collect::<Vec<_>>(), [AUDIENCE]);
    assert_eq!(claims.expires_at(), UnixTime(NOW + 300));

    let ps = mint(
        &header("PS256", "rs"),
        &crate::support::claims(),
        Signer::Ps256(rsa()),
    );
    parse(&ps).unwrap().finish(&rsa_key()).unwrap();

    let es = mint(
        &header("ES256", "es"),
        &crate::support::claims(),
        Signer::Es256,
    );
    let es_key = IssuerKey::from_jwk(&ec_jwk("es")).unwrap();
    parse(&es).unwrap().finish(&es_key).unwrap();

    for alg in ["EdDSA", "Ed25519"] {
        let ed = mint(&header(alg, "ed"), &crate::support::claims(), Signer::EdDsa);
        let ed_key = IssuerKey::from_jwk(&ed_jwk("ed")).unwrap();
        assert_eq!(
            parse(&ed).unwrap().algorithm(),
            TokenAlgorithm::Key(JwsAlgorithm::EdDsa)
        );
        parse(&ed).unwrap().finish(&ed_key).unwrap();
    }
}

#[test]
fn a_signature_by_another_key_fails() {
    let token = mint(
        &header("RS256", "rs"),
        &claims(),
        Signer::Rs256(rsa_other()),
    );
    assert_eq!(
        parse(&token).unwrap().finish(&rsa_key()).unwrap_err(),
        OAuthError::Signature
    );
    let garbage = mint(&header("RS256", "rs"), &claims(), Signer::Garbage);
    assert_eq!(
        parse(&garbage).unwrap().finish(&rsa_key()).unwrap_err(),
        OAuthError::Signature
    );
}

#[test]
fn none_and_hmac_are_refused_before_any_key() {
    let unsigned = mint(&header("none", "rs"), &claims(), Signer::Unsigned);
    assert!(matches!(
        parse(&unsigned),
        Err(OAuthError::Malformed { .. })
    ));
    // `none` with a signature segment, and HS256 "signed" with the RSA public key as the
    // secret (the algorithm-confusion attack): the alg alone refuses both.
    for alg in ["none", "HS256", "HS384", "HS512"] {
        let token = mint(&header(alg, "rs"), &claims(), Signer::Garbage);
        assert_eq!(
            parse(&token).unwrap_err(),
            OAuthError::Algorithm {
                alg: alg.to_owned(),
                refusal: AlgorithmRefusal::Forbidden
            }
        );
    }
    let token = mint(&header("RS512", "rs"), &claims(), Signer::Garbage);
    assert!(matches!(
        parse(&token).unwrap_err(),
        OAuthError::Algorithm {
            refusal: AlgorithmRefusal::Unsupported,
            ..
        }
    ));
}

/// `ISSUER` publishes keys; `HS_ISSUER` signs HS256 with `HS_SECRET`.
fn parse_both(token: &str) -> Result<AccessToken<'_>, OAuthError> {
    AccessToken::parse_trusting(
        token,
        &policy(),
        &|iss| match iss {
            ISSUER => Some(IssuerSigning::Keys),
            HS_ISSUER => Some(IssuerSigning::Secret(HmacAlgorithm::Hs256)),
            _ => None,
        },
        UnixTime(NOW),
    )
}

fn hs_claims() -> Value {
    with(claims(), "iss", json!(HS_ISSUER))
}

fn hs_secret() -> SharedSecret {
    SharedSecret::new(HmacAlgorithm::Hs256, HS_SECRET).unwrap()
}

#[test]
fn hmac_passes_only_from_the_issuer_configured_with_its_secret_and_algorithm() {
    let hs256 = Signer::Hmac(HmacAlgorithm::Hs256, HS_SECRET);
    // No kid needed: there is one secret.
    let token = mint(
        &json!({"alg": "HS256", "typ": "at+jwt"}),
        &hs_claims(),
        hs256,
    );
    let parsed = parse_both(&token).unwrap();
    assert_eq!(parsed.kid(), None);
    assert_eq!(
        parsed.algorithm(),
        TokenAlgorithm::Secret(HmacAlgorithm::Hs256)
    );
    assert_eq!(
        parsed.finish_with_secret(&hs_secret()).unwrap().issuer(),
        HS_ISSUER
    );
    // Under a published key's check, an HMAC token never verifies.
    assert_eq!(
        parse_both(&token).unwrap().finish(&rsa_key()).unwrap_err(),
        OAuthError::Signature
    );
    // Another secret of the same length: the tag does not verify.
    let other = SharedSecret::new(HmacAlgorithm::Hs256, &[9; 32]).unwrap();
    assert_eq!(
        parse_both(&token)
            .unwrap()
            .finish_with_secret(&other)
            .unwrap_err(),
        OAuthError::Signature
    );
    // HS384 from the HS256 issuer, RS256 from the secret's issuer, HS256 from the issuer
    // with published keys (the RSA public key as an HMAC secret: algorithm confusion).
    let rsa_public: &'static [u8] = Box::leak(
        rsa_jwk(rsa(), "rs", None)
            .to_json()
            .into_bytes()
            .into_boxed_slice(),
    );
    let refused = [
        (
            mint(
                &header("HS384", "x"),
                &hs_claims(),
                Signer::Hmac(
                    HmacAlgorithm::Hs384,
                    b"a secret of exactly 48 bytes, which HS384 wants!!",
                ),
            ),
            "HS384",
            AlgorithmRefusal::NotTheIssuers,
        ),
        (
            mint(&header("RS256", "rs"), &hs_claims(), Signer::Rs256(rsa())),
            "RS256",
            AlgorithmRefusal::NotTheIssuers,
        ),
        (
            mint(
                &header("HS256", "rs"),
                &claims(),
                Signer::Hmac(HmacAlgorithm::Hs256, rsa_public),
            ),
            "HS256",
            AlgorithmRefusal::Forbidden,
        ),
    ];
    for (token, alg, refusal) in refused {
        assert_eq!(
            parse_both(&token).unwrap_err(),
            OAuthError::Algorithm {
                alg: alg.to_owned(),
                refusal
            },
            "{alg}"
        );
    }
    // An RS256 token is never checked against a secret.
    assert_eq!(
        parse_both(&rs256_token())
            .unwrap()
            .finish_with_secret(&hs_secret())
            .unwrap_err(),
        OAuthError::Signature
    );
    // The other checks still apply: the audience, `none`, key-carrying header members.
    let wrong_aud = mint(
        &json!({"alg": "HS256", "typ": "at+jwt"}),
        &with(hs_claims(), "aud", json!("https://other.example")),
        hs256,
    );
    assert!(matches!(
        parse_both(&wrong_aud).unwrap_err(),
        OAuthError::Audience { .. }
    ));
    let unsigned = mint(&json!({"alg": "none"}), &hs_claims(), Signer::Unsigned);
    assert!(matches!(
        parse_both(&unsigned).unwrap_err(),
        OAuthError::Malformed { .. }
    ));
    let jku = mint(
        &json!({"alg": "HS256", "typ": "at+jwt", "jku": "https://evil.example/k"}),
        &hs_claims(),
        hs256,
    );
    assert!(matches!(
        parse_both(&jku).unwrap_err(),
        OAuthError::Header { .. }
    ));
    // A token under a published key may come without kid (the verifier then needs the
    // issuer's sole key for its alg), and is still never checked with the secret.
    let no_kid = mint(
        &json!({"alg": "RS256", "typ": "at+jwt"}),
        &claims(),
        Signer::Rs256(rsa()),
    );
    let parsed = parse_both(&no_kid).unwrap();
    assert_eq!(parsed.algorithm(), TokenAlgorithm::Key(JwsAlgorithm::Rs256));
    assert_eq!(
        parsed.finish_with_secret(&hs_secret()).unwrap_err(),
        OAuthError::Signature
    );
}

#[test]
fn a_secret_shorter_than_its_hash_is_refused() {
    for (alg, min) in [
        (HmacAlgorithm::Hs256, 32),
        (HmacAlgorithm::Hs384, 48),
        (HmacAlgorithm::Hs512, 64),
    ] {
        assert!(SharedSecret::new(alg, &vec![1; min]).is_ok());
        assert_eq!(
            SharedSecret::new(alg, &vec![1; min - 1]).unwrap_err(),
            aauth_oauth::SecretError::TooShort {
                alg,
                len: min - 1,
                min
            }
        );
    }
    assert!(!format!("{:?}", hs_secret()).contains("secret of"));
}

#[test]
fn the_key_decides_the_algorithm() {
    // An ES256 token whose kid names an RSA key: never checked as RSA.
    let token = mint(&header("ES256", "rs"), &claims(), Signer::Es256);
    assert_eq!(
        parse(&token).unwrap().finish(&rsa_key()).unwrap_err(),
        OAuthError::Signature
    );
    // A PS256-only key does not verify an RS256 signature, though the bytes are good.
    let ps_only = IssuerKey::from_jwk(&rsa_jwk(rsa(), "rs", Some("PS256"))).unwrap();
    assert_eq!(
        parse(&rs256_token()).unwrap().finish(&ps_only).unwrap_err(),
        OAuthError::Signature
    );
}

#[test]
fn typ_is_at_jwt_unless_plain_jwts_are_allowed() {
    let plain = mint(
        &with(header("RS256", "rs"), "typ", json!("JWT")),
        &claims(),
        Signer::Rs256(rsa()),
    );
    let untyped = mint(
        &without(header("RS256", "rs"), "typ"),
        &claims(),
        Signer::Rs256(rsa()),
    );
    let dpop = mint(
        &with(header("RS256", "rs"), "typ", json!("dpop+jwt")),
        &claims(),
        Signer::Rs256(rsa()),
    );
    let media = mint(
        &with(header("RS256", "rs"), "typ", json!("application/AT+JWT")),
        &claims(),
        Signer::Rs256(rsa()),
    );
    for t in [&plain, &untyped, &dpop] {
        assert!(matches!(parse(t), Err(OAuthError::Type { .. })));
    }
    parse(&media).unwrap();
    let lenient = policy().with_types(TokenTypes::AtJwtOrPlain);
    parse_with(&plain, &lenient)
        .unwrap()
        .finish(&rsa_key())
        .unwrap();
    parse_with(&untyped, &lenient).unwrap();
    assert!(matches!(
        parse_with(&dpop, &lenient),
        Err(OAuthError::Type { .. })
    ));
}

#[test]
fn headers_that_name_keys_or_change_the_reading_are_refused() {
    for (name, value) in [
        ("crit", json!(["exp"])),
        ("jku", json!("https://evil.example/jwks")),
        ("x5u", json!("https://evil.example/cert")),
        (
            "jwk",
            serde_json::from_str::<Value>(&ec_jwk("x").to_json()).unwrap(),
        ),
        ("zip", json!("DEF")),
        ("b64", json!(false)),
    ] {
        let token = mint(
            &with(header("RS256", "rs"), name, value),
            &claims(),
            Signer::Rs256(rsa()),
        );
        assert!(
            matches!(parse(&token), Err(OAuthError::Header { ref reason }) if reason.contains(name)),
            "{name}"
        );
    }
    // kid is optional (RFC 7515 §4.1.4): the verifier then needs the issuer's sole key.
    let no_kid = mint(
        &without(header("RS256", "rs"), "kid"),
        &claims(),
        Signer::Rs256(rsa()),
    );
    let parsed = parse(&no_kid).unwrap();
    assert_eq!(parsed.kid(), None);
    parsed.finish(&rsa_key()).unwrap();
}

#[test]
fn a_member_twice_is_refused_in_header_and_claims() {
    let input = |h: &str, c: &str| {
        format!(
            "{}.{}.{}",
            base64url::encode(h.as_bytes()),
            base64url::encode(c.as_bytes()),
            base64url::encode(&[1; 256])
        )
    };
    let good_claims = claims().to_string();
    let h2 = input(
        r#"{"alg":"RS256","typ":"at+jwt","kid":"rs","alg":"none"}"#,
        &good_claims,
    );
    assert!(matches!(parse(&h2), Err(OAuthError::Header { .. })));
    let c2 = good_claims.replacen('{', r#"{"aud":"https://other.example","#, 1);
    let c2 = input(&header("RS256", "rs").to_string(), &c2);
    assert!(matches!(parse(&c2), Err(OAuthError::Claim { .. })));
}

#[test]
fn issuer_audience_and_times_are_checked_before_the_key() {
    let tok = |c: Value| mint(&header("RS256", "rs"), &c, Signer::Garbage);
    assert_eq!(
        parse(&tok(with(claims(), "iss", json!("https://evil.example")))).unwrap_err(),
        OAuthError::UnknownIssuer {
            iss: "https://evil.example".to_owned()
        }
    );
    assert!(matches!(
        parse(&tok(with(claims(), "aud", json!("https://other.example")))),
        Err(OAuthError::Audience { .. })
    ));
    parse(&tok(with(
        claims(),
        "aud",
        json!(["https://other.example", AUDIENCE]),
    )))
    .unwrap();
    assert!(matches!(
        parse(&tok(without(claims(), "aud"))),
        Err(OAuthError::Claim { claim: "aud", .. })
    ));
    // exp: past beyond the 60 s leeway is refused, within it accepted.
    assert!(matches!(
        parse(&tok(with(claims(), "exp", json!(NOW - 61)))),
        Err(OAuthError::Expired { .. })
    ));
    parse(&tok(with(claims(), "exp", json!(NOW - 59)))).unwrap();
    assert!(matches!(
        parse(&tok(without(claims(), "exp"))),
        Err(OAuthError::Claim { claim: "exp", .. })
    ));
    assert!(matches!(
        parse(&tok(with(claims(), "exp", json!("1800000300")))),
        Err(OAuthError::Claim { claim: "exp", .. })
    ));
    assert!(matches!(
        parse(&tok(with(claims(), "nbf", json!(NOW + 120)))),
        Err(OAuthError::NotYetValid { .. })
    ));
    assert!(matches!(
        parse(&tok(with(claims(), "iat", json!(NOW + 120)))),
        Err(OAuthError::NotYetValid { .. })
    ));
    let short = policy().with_max_lifetime(120);
    assert!(matches!(
        parse_with(&tok(claims()), &short),
        Err(OAuthError::Lifetime {
            lifetime: 310,
            max: 120
        })
    ));
}

#[test]
fn scopes_come_from_scope_or_scp_and_are_required_by_name() {
    let tok = mint(&header("RS256", "rs"), &claims(), Signer::Rs256(rsa()));
    let c = parse(&tok).unwrap().finish(&rsa_key()).unwrap();
    c.require_scopes(["read"]).unwrap();
    assert_eq!(
        c.require_scopes(["read", "admin"]).unwrap_err(),
        OAuthError::InsufficientScope {
            missing: "admin".to_owned()
        }
    );
    let scp = mint(
        &header("RS256", "rs"),
        &with(without(claims(), "scope"), "scp", json!(["a", "b"])),
        Signer::Rs256(rsa()),
    );
    assert_eq!(
        parse(&scp).unwrap().finish(&rsa_key()).unwrap().scope(),
        "a b"
    );
}

#[test]
fn the_confirmation_key_is_read() {
    let bound = mint(
        &header("RS256", "rs"),
        &with(
            claims(),
            "cnf",
            json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
        ),
        Signer::Rs256(rsa()),
    );
    let c = parse(&bound).unwrap().finish(&rsa_key()).unwrap();
    assert_eq!(c.jkt(), Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"));
    assert!(!c.bound_otherwise());
    assert!(
        !parse(&rs256_token())
            .unwrap()
            .finish(&rsa_key())
            .unwrap()
            .bound_otherwise()
    );
    // An mTLS-bound token (RFC 8705 §3.1): another confirmation method, noticed.
    let mtls = mint(
        &header("RS256", "rs"),
        &with(
            claims(),
            "cnf",
            json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
        ),
        Signer::Rs256(rsa()),
    );
    let c = parse(&mtls).unwrap().finish(&rsa_key()).unwrap();
    assert_eq!(c.jkt(), None);
    assert!(c.bound_otherwise());
}

#[test]
fn structure_is_checked_first() {
    for (token, why) in [
        ("a.b", "three segments"),
        ("a.b.c.d", "three segments"),
        (".eyJ9.c2ln", "empty"),
        ("e30.e30.c2ln=", "signature is not canonical base64url"),
        ("e30.e30.c2ln\u{0}", "signature is not canonical base64url"),
        ("e3 0.e30.c2ln", "header is not canonical base64url"),
        ("e30.e3\u{e9}0.c2ln", "payload is not canonical base64url"),
    ] {
        assert!(
            matches!(parse(token), Err(OAuthError::Malformed { reason }) if reason.contains(why)),
            "{token:?}"
        );
    }
    let long = "a".repeat(8 * 1024 + 1);
    assert!(matches!(parse(&long), Err(OAuthError::Malformed { .. })));
}

#[test]
fn errors_map_to_rfc6750_on_the_wire() {
    let e = OAuthError::Signature;
    assert_eq!((e.status(), e.code()), (401, "invalid_token"));
    assert_eq!(
        e.www_authenticate(None, None),
        r#"Bearer error="invalid_token", error_description="signature does not verify""#
    );
    // Quotes, backslashes and non-ASCII from a token never break the header.
    let e = OAuthError::UnknownIssuer {
        iss: "https://\"x\\é".to_owned(),
    };
    let h = e.www_authenticate(Some("api"), None);
    assert!(h.is_ascii() && !h.contains('\\'), "{h}");
    assert_eq!(h.matches('"').count(), 6, "{h}");
    let down = OAuthError::Unavailable {
        reason: "x".to_owned(),
    };
    assert_eq!(down.status(), 503);
    assert_eq!(
        down.www_authenticate(Some("api"), None),
        r#"Bearer realm="api""#
    );
}

proptest! {
    #[test]
    fn parsing_never_panics(s in "[A-Za-z0-9_.-]{0,400}") {
        let _ = parse(&s);
    }

    #[test]
    fn a_changed_byte_never_verifies(pos in 0usize..4000, bit in 0u8..6) {
        let token = rs256_token();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bytes = token.clone().into_bytes();
        let i = pos % bytes.len();
        prop_assume!(bytes[i] != b'.');
        let at = alphabet.iter().position(|&c| c == bytes[i]).unwrap();
        bytes[i] = alphabet[(at ^ (1 << bit)) % 64];
        let changed = String::from_utf8(bytes).unwrap();
        prop_assume!(changed != token);
        let verified = parse(&changed).and_then(|t| t.finish(&rsa_key()));
        prop_assert!(verified.is_err(), "{changed}");
    }

    #[test]
    fn an_hmac_token_verifies_only_whole_and_only_with_its_secret(
        pos in 0usize..4000,
        bit in 0u8..6,
        sub in "[a-z0-9-]{1,40}",
    ) {
        let hs256 = Signer::Hmac(HmacAlgorithm::Hs256, HS_SECRET);
        let token = mint(
            &json!({"alg": "HS256", "typ": "at+jwt"}),
            &with(hs_claims(), "sub", json!(sub)),
            hs256,
        );
        prop_assert!(parse_both(&token).and_then(|t| t.finish_with_secret(&hs_secret())).is_ok());
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bytes = token.clone().into_bytes();
        let i = pos % bytes.len();
        prop_assume!(bytes[i] != b'.');
        let at = alphabet.iter().position(|&c| c == bytes[i]).unwrap();
        bytes[i] = alphabet[(at ^ (1 << bit)) % 64];
        let changed = String::from_utf8(bytes).unwrap();
        prop_assume!(changed != token);
        let verified = parse_both(&changed).and_then(|t| t.finish_with_secret(&hs_secret()));
        prop_assert!(verified.is_err(), "{changed}");
    }
}

#[test]
fn escaped_claims_read_as_their_text() {
    // JSON escapes in string claims (here `\u0062` for `b`, `\/`) give the unescaped text,
    // beside unescaped ones, with the audience taken from an array.
    let mut c = claims();
    c["aud"] = json!(["https://other.example", AUDIENCE]);
    let text = c
        .to_string()
        .replace(r#""client-1""#, r#""a\u0062c""#)
        .replace(r#""t-1""#, r#""t\/1""#);
    let token = format!(
        "{}.{}.{}",
        base64url::encode(header("RS256", "rs").to_string().as_bytes()),
        base64url::encode(text.as_bytes()),
        "x"
    );
    let input = token.rsplit_once('.').unwrap().0.to_owned();
    let signed = crate::support::sign_rs256(&input);
    let claims = parse(&signed).unwrap().finish(&rsa_key()).unwrap();
    assert_eq!(claims.subject(), Some("abc"));
    assert_eq!(claims.client_id(), Some("abc"));
    assert_eq!(claims.jti(), Some("t/1"));
    assert_eq!(claims.issuer(), ISSUER);
    assert_eq!(
        claims.audience().collect::<Vec<_>>(),
        ["https://other.example", AUDIENCE]
    );
    assert!(format!("{claims:?}").contains(r#"subject: Some("abc")"#));
}

proptest! {
    #[test]
    fn authorization_fields_never_panic_and_tokens_come_back_whole(
        scheme in "(Bearer|bearer|DPoP|dpop|Basic|AAuth|)",
        token in "[A-Za-z0-9._~+/=-]{0,80}",
        junk in "[ -~]{0,40}",
    ) {
        let mut h = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(&format!("{scheme} {token}")) {
            h.insert(http::header::AUTHORIZATION, v);
        }
        match aauth_oauth::credential(&h) {
            Ok(Some(aauth_oauth::Credential::Bearer(t) | aauth_oauth::Credential::Dpop(t))) => {
                prop_assert_eq!(t, token.as_str());
            }
            Ok(Some(_)) => prop_assert!(false, "a credential of another kind"),
            Ok(None) | Err(_) => {}
        }
        let mut j = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(&junk) {
            j.insert(http::header::AUTHORIZATION, v);
        }
        let _ = aauth_oauth::credential(&j);
    }

    /// A `Bearer` or `DPoP` field is never passed over as "no OAuth credential", wherever
    /// it stands among a request's `Authorization` fields and however it is spaced; one
    /// is taken only when it is the request's one field.
    #[test]
    fn a_bearer_or_dpop_field_is_never_passed_over(
        fields in proptest::collection::vec(
            ("(Bearer|bEaReR|DPoP|dpop|Basic|AAuth|Digest)", "( |\t|  | \t)", "[A-Za-z0-9._~+/=-]{1,20}"),
            1..4,
        ),
    ) {
        let mut h = http::HeaderMap::new();
        for (scheme, sep, token) in &fields {
            h.append(http::header::AUTHORIZATION, format!("{scheme}{sep}{token}").parse().unwrap());
        }
        let oauth = |s: &str| s.eq_ignore_ascii_case("bearer") || s.eq_ignore_ascii_case("dpop");
        let any = fields.iter().any(|(s, _, _)| oauth(s));
        match aauth_oauth::credential(&h) {
            Ok(None) => prop_assert!(!any, "{:?} passed over", fields),
            Ok(Some(aauth_oauth::Credential::Bearer(t) | aauth_oauth::Credential::Dpop(t))) => {
                prop_assert_eq!(fields.len(), 1);
                prop_assert_eq!(fields[0].1.as_str(), " ");
                prop_assert_eq!(t, fields[0].2.as_str());
            }
            Ok(Some(_)) => prop_assert!(false, "a credential of another kind"),
            Err(_) => prop_assert!(any),
        }
    }

    #[test]
    fn dpop_proofs_never_panic(s in "[A-Za-z0-9_.-]{0,300}") {
        let _ = aauth_oauth::DpopProof::check(&s, "GET", "https://api.example/x", "t", 60, 5, UnixTime(NOW));
    }
}

proptest! {
    /// A DPoP nonce is accepted for its step and the next, by its secret only; nothing
    /// else (a guess, a nonce edited by a byte) is ever accepted.
    #[test]
    fn dpop_nonces_are_accepted_only_as_issued(
        at in 0u64..4_000_000_000,
        later in 0u64..300,
        guess in "[A-Za-z0-9_-]{0,40}",
        flip in 0usize..32,
    ) {
        let nonces = aauth_oauth::DpopNonces::new(&[3; 32]);
        let n = nonces.issue(UnixTime(at));
        prop_assert!(nonces.accepts(&n, UnixTime(at + later)));
        prop_assert!(!nonces.accepts(&n, UnixTime(at + 600)));
        prop_assert!(!aauth_oauth::DpopNonces::new(&[4; 32]).accepts(&n, UnixTime(at)));
        prop_assert!(guess == n || !nonces.accepts(&guess, UnixTime(at)));
        let mut bytes = n.clone().into_bytes();
        let i = flip % bytes.len();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let edited = String::from_utf8(bytes).unwrap();
        prop_assert!(edited == n || !nonces.accepts(&edited, UnixTime(at)));
    }
}
