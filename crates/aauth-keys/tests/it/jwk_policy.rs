//! The algorithm policy of Signature-Key -09 §3.3 on JWK import, each refusal with its exact
//! error and its wire class (`unsupported_algorithm` or `invalid_key`).

use aauth_keys::{Jwk, KeyError, PrivateKey, PublicKey, Signer};

use crate::common::{RFC8037_D, RFC8037_X};

fn import(json: &str) -> Result<PublicKey, KeyError> {
    PublicKey::from_jwk_json(json)
}

fn okp(extra: &str) -> String {
    format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}"{extra}}}"#)
}

#[test]
fn alg_is_required_and_fully_specified() {
    import(&okp(r#","alg":"Ed25519""#)).unwrap();
    type Case = (&'static str, fn(&KeyError) -> bool, bool);
    let cases: [Case; 11] = [
        ("", |e| matches!(e, KeyError::MissingAlgorithm), true),
        (
            r#","alg":"EdDSA""#,
            |e| matches!(e, KeyError::PolymorphicAlgorithm),
            true,
        ),
        (
            r#","alg":"none""#,
            |e| matches!(e, KeyError::ForbiddenAlgorithm { .. }),
            true,
        ),
        (
            r#","alg":"HS256""#,
            |e| matches!(e, KeyError::ForbiddenAlgorithm { .. }),
            true,
        ),
        (
            r#","alg":"ES384""#,
            |e| matches!(e, KeyError::UnsupportedAlgorithm { .. }),
            true,
        ),
        (
            r#","alg":"RS256""#,
            |e| matches!(e, KeyError::UnsupportedAlgorithm { .. }),
            true,
        ),
        (
            r#","alg":"Ed448""#,
            |e| matches!(e, KeyError::UnsupportedAlgorithm { .. }),
            true,
        ),
        (
            r#","alg":"ML-DSA-44""#,
            |e| matches!(e, KeyError::UnsupportedAlgorithm { .. }),
            true,
        ),
        (
            r#","alg":"ed25519""#,
            |e| matches!(e, KeyError::UnsupportedAlgorithm { .. }),
            true,
        ),
        (
            r#","alg":"Ed25519 ""#,
            |e| matches!(e, KeyError::UnsupportedAlgorithm { .. }),
            true,
        ),
        (
            r#","alg":"ES256""#,
            |e| matches!(e, KeyError::KeyTypeMismatch { .. }),
            false,
        ),
    ];
    for (extra, check, unsupported) in cases {
        let e = import(&okp(extra)).unwrap_err();
        assert!(check(&e), "{extra}: {e:?}");
        assert_eq!(e.is_unsupported_algorithm(), unsupported, "{extra}: {e:?}");
    }
}

#[test]
fn kty_and_crv_must_agree_with_alg() {
    // The aauth-go vector: X25519 with alg Ed25519.
    let e = import(&format!(
        r#"{{"kty":"OKP","crv":"X25519","alg":"Ed25519","x":"{RFC8037_X}"}}"#
    ))
    .unwrap_err();
    assert!(matches!(e, KeyError::CurveMismatch { .. }), "{e:?}");
    assert!(!e.is_unsupported_algorithm());
    let e = import(&format!(
        r#"{{"kty":"EC","crv":"P-256","alg":"Ed25519","x":"{RFC8037_X}","y":"{RFC8037_X}"}}"#
    ))
    .unwrap_err();
    assert!(matches!(e, KeyError::KeyTypeMismatch { .. }), "{e:?}");
    let e = import(&format!(
        r#"{{"kty":"OKP","alg":"Ed25519","x":"{RFC8037_X}"}}"#
    ))
    .unwrap_err();
    assert!(
        matches!(e, KeyError::CurveMismatch { crv: None, .. }),
        "{e:?}"
    );
    // oct (a shared secret) and unknown key types are unsupported, not malformed.
    let e = import(r#"{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}"#).unwrap_err();
    assert!(matches!(e, KeyError::UnsupportedKeyType { .. }), "{e:?}");
    assert!(e.is_unsupported_algorithm());
    let e = import(r#"{"kty":"AKP","alg":"ML-DSA-44","pub":"AAAA"}"#).unwrap_err();
    assert!(e.is_unsupported_algorithm(), "{e:?}");
}

#[test]
fn members_must_be_present_and_canonical() {
    let e = import(r#"{"kty":"OKP","crv":"Ed25519","alg":"Ed25519"}"#).unwrap_err();
    assert_eq!(e, KeyError::MissingMember { member: "x" });
    for x in [
        format!("{RFC8037_X}="),          // padding
        RFC8037_X.replace('_', "/"),      // standard alphabet
        format!("{}p", &RFC8037_X[..42]), // non-zero unused bits
        RFC8037_X[..42].to_owned(),       // 31 bytes
        format!("{RFC8037_X}AA"),         // 33 bytes
    ] {
        let e = import(&format!(
            r#"{{"kty":"OKP","crv":"Ed25519","alg":"Ed25519","x":"{x}"}}"#
        ))
        .unwrap_err();
        assert!(
            matches!(
                e,
                KeyError::BadEncoding {
                    member: "x",
                    expected_len: 32
                }
            ),
            "{x}: {e:?}"
        );
    }
}

#[test]
fn private_material_use_and_key_ops() {
    let e = import(&okp(&format!(r#","alg":"Ed25519","d":"{RFC8037_D}""#))).unwrap_err();
    assert_eq!(e, KeyError::PrivateMaterial);
    assert!(!e.is_unsupported_algorithm());
    let e = import(&okp(r#","alg":"Ed25519","use":"enc""#)).unwrap_err();
    assert!(matches!(e, KeyError::WrongUse { .. }), "{e:?}");
    import(&okp(r#","alg":"Ed25519","use":"sig""#)).unwrap();
    let e = import(&okp(r#","alg":"Ed25519","key_ops":["encrypt"]"#)).unwrap_err();
    assert_eq!(e, KeyError::WrongKeyOps { op: "verify" });
    import(&okp(r#","alg":"Ed25519","key_ops":["verify"]"#)).unwrap();
}

#[test]
fn json_shape_is_strict_about_what_it_reads() {
    // A repeated member, a member of the wrong type, not an object.
    for json in [
        format!(r#"{{"kty":"OKP","kty":"EC","crv":"Ed25519","alg":"Ed25519","x":"{RFC8037_X}"}}"#),
        r#"{"kty":"OKP","crv":"Ed25519","alg":"Ed25519","x":7}"#.to_owned(),
        r#"{"crv":"Ed25519","alg":"Ed25519"}"#.to_owned(),
        "[]".to_owned(),
        "".to_owned(),
    ] {
        assert!(
            matches!(Jwk::from_json(&json), Err(KeyError::MalformedJwk { .. })),
            "{json}"
        );
    }
    // Unknown members are ignored (RFC 7517 §4).
    import(&okp(
        r#","alg":"Ed25519","x5c":["MII"],"ext":true,"note":{"a":1}"#,
    ))
    .unwrap();
}

#[test]
fn private_keys_round_trip_and_must_match_their_public_part() {
    // RFC 8037 A.1/A.2: the private key and its public key.
    let jwk = format!(
        r#"{{"kty":"OKP","crv":"Ed25519","alg":"Ed25519","d":"{RFC8037_D}","x":"{RFC8037_X}"}}"#
    );
    let key = PrivateKey::from_jwk_json(&jwk).unwrap();
    assert_eq!(key.public_key().to_jwk().x.as_deref(), Some(RFC8037_X));
    // RFC 8037 A.4: the signature over "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc".
    let input = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
    let sig = key.sign(input).unwrap();
    assert_eq!(
        aauth_keys::base64url::encode(&sig),
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
    );
    key.public_key().verify(input, &sig).unwrap();
    // Export and re-import, for both algorithms.
    for k in [
        PrivateKey::ed25519_from_seed(&[6; 32]),
        PrivateKey::es256_from_scalar(&[6; 32]).unwrap(),
    ] {
        let again = PrivateKey::from_jwk(&k.to_private_jwk()).unwrap();
        assert_eq!(again.public_key(), k.public_key());
        let sig = again.sign(b"x").unwrap();
        k.public_key().verify(b"x", &sig).unwrap();
    }
    // d that does not belong to x.
    let other = PrivateKey::ed25519_from_seed(&[7; 32]);
    let mut mismatched = other.to_private_jwk();
    mismatched.x = Some(RFC8037_X.to_owned());
    assert_eq!(
        PrivateKey::from_jwk(&mismatched).unwrap_err(),
        KeyError::InconsistentPrivateKey
    );
    let es = PrivateKey::es256_from_scalar(&[8; 32]).unwrap();
    let mut mismatched = es.to_private_jwk();
    mismatched.d = PrivateKey::es256_from_scalar(&[9; 32])
        .unwrap()
        .to_private_jwk()
        .d
        .clone();
    assert_eq!(
        PrivateKey::from_jwk(&mismatched).unwrap_err(),
        KeyError::InconsistentPrivateKey
    );
    // Without d.
    let e = PrivateKey::from_jwk_json(&okp(r#","alg":"Ed25519""#)).unwrap_err();
    assert_eq!(e, KeyError::MissingMember { member: "d" });
}

#[test]
fn public_keys_round_trip_through_jwk() {
    for k in [
        PrivateKey::ed25519_from_seed(&[10; 32]),
        PrivateKey::es256_from_scalar(&[10; 32]).unwrap(),
    ] {
        let jwk = k.public_key().to_jwk();
        assert!(jwk.d.is_none() && jwk.alg.is_some() && jwk.kid.is_none());
        let back = PublicKey::from_jwk_json(&jwk.to_json()).unwrap();
        assert_eq!(&back, k.public_key());
        assert_eq!(back.thumbprint(), k.public_key().thumbprint());
    }
}
