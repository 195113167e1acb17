//! `jkt-jwt` self-issued delegation (Signature-Key -09 §3.5).

use aauth_keys::time::UnixTime;
use aauth_keys::{PrivateKey, ThumbprintHash};
use aauth_tokens::{TokenError, verify_jkt_jwt};

use crate::common::{NOW, agent_key, forge};

fn jkt(enclave: &PrivateKey, typ: &str, iss: &str, exp: u64) -> String {
    let header = serde_json::json!({
        "alg": enclave.algorithm().as_str(), "typ": typ, "jwk": enclave.public_key().to_jwk(),
    });
    let payload = serde_json::json!({
        "iss": iss, "iat": NOW.0, "exp": exp, "jti": "d1",
        "cnf": {"jwk": agent_key().public_key().to_jwk()},
    });
    forge(&header.to_string(), &payload.to_string(), enclave)
}

#[test]
fn es256_enclave_delegates_to_ed25519() {
    let enclave = PrivateKey::es256_from_scalar(&[4; 32]).unwrap();
    let iss = format!("urn:jkt:sha-256:{}", enclave.public_key().thumbprint());
    let v = verify_jkt_jwt(&jkt(&enclave, "jkt-s256+jwt", &iss, NOW.0 + 600), NOW, 60).unwrap();
    assert_eq!(v.iss, iss);
    assert_eq!(&v.cnf_key, agent_key().public_key());
    assert_eq!(&v.enclave_key, enclave.public_key());
    assert_eq!(v.jti.as_deref(), Some("d1"));
    // SHA-512 form.
    let iss512 = format!(
        "urn:jkt:sha-512:{}",
        enclave.public_key().thumbprint_with(ThumbprintHash::Sha512)
    );
    verify_jkt_jwt(
        &jkt(&enclave, "jkt-s512+jwt", &iss512, NOW.0 + 600),
        NOW,
        60,
    )
    .unwrap();
    // The hash in iss must match the typ.
    let e = verify_jkt_jwt(&jkt(&enclave, "jkt-s512+jwt", &iss, NOW.0 + 600), NOW, 60).unwrap_err();
    assert!(matches!(e, TokenError::Claim { claim: "iss", .. }), "{e:?}");
}

#[test]
fn iss_is_recomputed_never_trusted() {
    let enclave = PrivateKey::ed25519_from_seed(&[5; 32]);
    let other = PrivateKey::ed25519_from_seed(&[6; 32]);
    let claimed = format!("urn:jkt:sha-256:{}", other.public_key().thumbprint());
    let e = verify_jkt_jwt(
        &jkt(&enclave, "jkt-s256+jwt", &claimed, NOW.0 + 600),
        NOW,
        60,
    )
    .unwrap_err();
    assert!(matches!(e, TokenError::Claim { claim: "iss", .. }), "{e:?}");
}

#[test]
fn expiry_typ_and_signature_are_enforced() {
    let enclave = PrivateKey::ed25519_from_seed(&[5; 32]);
    let iss = format!("urn:jkt:sha-256:{}", enclave.public_key().thumbprint());
    let e = verify_jkt_jwt(&jkt(&enclave, "jkt-s256+jwt", &iss, NOW.0), NOW, 60).unwrap_err();
    assert!(matches!(e, TokenError::Expired { .. }), "{e:?}");
    let e = verify_jkt_jwt(&jkt(&enclave, "aa-agent+jwt", &iss, NOW.0 + 60), NOW, 60).unwrap_err();
    assert!(matches!(e, TokenError::WrongType { .. }), "{e:?}");
    let t = jkt(&enclave, "jkt-s256+jwt", &iss, NOW.0 + 60);
    let (head, _) = t.rsplit_once('.').unwrap();
    let bad = format!("{head}.{}", aauth_keys::base64url::encode(&[0u8; 64]));
    let e = verify_jkt_jwt(&bad, NOW, 60).unwrap_err();
    assert!(matches!(e, TokenError::BadSignature), "{e:?}");
    // Without a header jwk.
    let header = r#"{"alg":"Ed25519","typ":"jkt-s256+jwt"}"#;
    let e = verify_jkt_jwt(&forge(header, "{}", &enclave), UnixTime(NOW.0), 60).unwrap_err();
    assert!(matches!(e, TokenError::Header { .. }), "{e:?}");
}

/// -09 §3.5: the header `jwk` is subject to Algorithm Determination, so a header key
/// refused on algorithm grounds (no `alg`, the polymorphic `EdDSA`, an `alg` not
/// implemented, which then is also the token's `alg`) is a refused key,
/// [`TokenError::HeaderKey`], not a malformed header; a key refused on other grounds is
/// too, and keeps its reason.
#[test]
fn the_header_key_is_held_to_algorithm_determination() {
    use aauth_keys::KeyError;
    let enclave = PrivateKey::ed25519_from_seed(&[5; 32]);
    let iss = format!("urn:jkt:sha-256:{}", enclave.public_key().thumbprint());
    let with_jwk = |alg: &str, jwk: serde_json::Value| {
        let header = serde_json::json!({"alg": alg, "typ": "jkt-s256+jwt", "jwk": jwk});
        let payload = serde_json::json!({
            "iss": iss, "iat": NOW.0, "exp": NOW.0 + 600,
            "cnf": {"jwk": agent_key().public_key().to_jwk()},
        });
        forge(&header.to_string(), &payload.to_string(), &enclave)
    };
    let jwk = serde_json::to_value(enclave.public_key().to_jwk()).unwrap();
    let mut no_alg = jwk.clone();
    no_alg.as_object_mut().unwrap().remove("alg");
    let mut eddsa = jwk.clone();
    eddsa["alg"] = "EdDSA".into();
    let e = verify_jkt_jwt(&with_jwk("Ed25519", no_alg), NOW, 60).unwrap_err();
    assert!(
        matches!(e, TokenError::HeaderKey(KeyError::MissingAlgorithm)),
        "{e:?}"
    );
    let e = verify_jkt_jwt(&with_jwk("Ed25519", eddsa), NOW, 60).unwrap_err();
    assert!(
        matches!(e, TokenError::HeaderKey(KeyError::PolymorphicAlgorithm)),
        "{e:?}"
    );
    // An ES384 enclave key signs with ES384: refused at the token's alg, as the key's.
    let es384 = serde_json::json!({
        "kty": "EC", "crv": "P-384", "alg": "ES384",
        "x": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "y": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    });
    let e = verify_jkt_jwt(&with_jwk("ES384", es384), NOW, 60).unwrap_err();
    assert!(
        matches!(&e, TokenError::HeaderKey(k) if k.is_unsupported_algorithm()),
        "{e:?}"
    );
    // Not an algorithm case: a key with a member of the wrong length.
    let mut short = jwk;
    short["x"] = "AAAA".into();
    let e = verify_jkt_jwt(&with_jwk("Ed25519", short), NOW, 60).unwrap_err();
    assert!(
        matches!(&e, TokenError::HeaderKey(k) if !k.is_unsupported_algorithm()),
        "{e:?}"
    );
}

/// The delegated key's `kid`, when `cnf.jwk` has one, is kept: a request's `keyid` may
/// name the key by it (-09 §4.3).
#[test]
fn the_delegated_key_kid_is_kept() {
    let enclave = PrivateKey::ed25519_from_seed(&[5; 32]);
    let iss = format!("urn:jkt:sha-256:{}", enclave.public_key().thumbprint());
    let mut cnf = serde_json::to_value(agent_key().public_key().to_jwk()).unwrap();
    cnf["kid"] = "eph-1".into();
    let header = serde_json::json!({
        "alg": "Ed25519", "typ": "jkt-s256+jwt", "jwk": enclave.public_key().to_jwk(),
    });
    let payload = serde_json::json!({
        "iss": iss, "iat": NOW.0, "exp": NOW.0 + 600, "cnf": {"jwk": cnf},
    });
    let t = forge(&header.to_string(), &payload.to_string(), &enclave);
    let v = verify_jkt_jwt(&t, NOW, 60).unwrap();
    assert_eq!(v.cnf_kid.as_deref(), Some("eph-1"));
    let v = verify_jkt_jwt(&jkt(&enclave, "jkt-s256+jwt", &iss, NOW.0 + 600), NOW, 60).unwrap();
    assert_eq!(v.cnf_kid, None);
}
