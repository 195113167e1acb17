//! Issuer keys: what is imported, what is refused, and that the key decides the algorithm.

use aauth_keys::{Jwk, KeyError, base64url};
use aauth_oauth::{IssuerKey, JwsAlgorithm};
use serde_json::json;

use crate::support::{ec_jwk, ed_jwk, rsa, rsa_jwk};

fn jwk(v: &serde_json::Value) -> Jwk {
    Jwk::from_json(&v.to_string()).unwrap()
}

#[test]
fn rsa_key_without_alg_verifies_rs256_and_ps256_only() {
    let key = IssuerKey::from_jwk(&rsa_jwk(rsa(), "rs", None)).unwrap();
    assert!(key.allows(JwsAlgorithm::Rs256));
    assert!(key.allows(JwsAlgorithm::Ps256));
    assert!(!key.allows(JwsAlgorithm::Es256));
    assert!(!key.allows(JwsAlgorithm::EdDsa));
}

#[test]
fn a_pinned_alg_is_the_only_one() {
    let key = IssuerKey::from_jwk(&rsa_jwk(rsa(), "rs", Some("PS256"))).unwrap();
    assert!(key.allows(JwsAlgorithm::Ps256));
    assert!(!key.allows(JwsAlgorithm::Rs256));
}

#[test]
fn ec_and_ed25519_keys_import_with_their_oauth_names() {
    let ec = IssuerKey::from_jwk(&ec_jwk("es")).unwrap();
    assert!(ec.allows(JwsAlgorithm::Es256) && !ec.allows(JwsAlgorithm::Rs256));
    let ed = IssuerKey::from_jwk(&ed_jwk("ed")).unwrap();
    assert!(ed.allows(JwsAlgorithm::EdDsa) && !ed.allows(JwsAlgorithm::Es256));
}

#[test]
fn alg_inconsistent_with_the_key_type_is_refused() {
    let e = IssuerKey::from_jwk(&rsa_jwk(rsa(), "rs", Some("ES256"))).unwrap_err();
    assert!(matches!(e, KeyError::KeyTypeMismatch { .. }), "{e:?}");
    let mut ec = ec_jwk("es");
    ec.alg = Some("RS256".to_owned());
    assert!(matches!(
        IssuerKey::from_jwk(&ec).unwrap_err(),
        KeyError::KeyTypeMismatch { .. }
    ));
}

#[test]
fn symmetric_keys_and_algorithms_are_never_imported() {
    let oct = jwk(&json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"}));
    assert!(matches!(
        IssuerKey::from_jwk(&oct).unwrap_err(),
        KeyError::UnsupportedKeyType { .. }
    ));
    let e = IssuerKey::from_jwk(&rsa_jwk(rsa(), "rs", Some("HS256"))).unwrap_err();
    assert!(matches!(e, KeyError::ForbiddenAlgorithm { .. }), "{e:?}");
    let e = IssuerKey::from_jwk(&rsa_jwk(rsa(), "rs", Some("none"))).unwrap_err();
    assert!(matches!(e, KeyError::ForbiddenAlgorithm { .. }), "{e:?}");
}

#[test]
fn short_rsa_moduli_and_bad_exponents_are_refused() {
    let n1024 = base64url::encode(&[0xc5; 128]);
    let e = IssuerKey::from_jwk(&jwk(&json!({"kty": "RSA", "n": n1024, "e": "AQAB"}))).unwrap_err();
    assert!(
        matches!(e, KeyError::RsaKeySize { bits: 1024, .. }),
        "{e:?}"
    );
    let good = rsa_jwk(rsa(), "rs", None);
    for exponent in [&[2u8][..], &[1], &[1, 0, 0, 0, 0, 1]] {
        let mut k = good.clone();
        k.e = Some(base64url::encode(exponent));
        assert!(
            matches!(IssuerKey::from_jwk(&k), Err(KeyError::RsaKeySize { .. })),
            "exponent {exponent:?}"
        );
    }
}

#[test]
fn a_modulus_with_a_leading_zero_octet_is_refused() {
    let good = rsa_jwk(rsa(), "rs", None);
    let mut n = base64url::decode(good.n.as_deref().unwrap()).unwrap();
    n.insert(0, 0);
    let mut k = good;
    k.n = Some(base64url::encode(&n));
    assert!(matches!(
        IssuerKey::from_jwk(&k).unwrap_err(),
        KeyError::BadEncoding { member: "n", .. }
    ));
}

#[test]
fn use_key_ops_and_private_members_are_honoured() {
    let mut enc = rsa_jwk(rsa(), "rs", None);
    enc.use_ = Some("enc".to_owned());
    assert!(matches!(
        IssuerKey::from_jwk(&enc).unwrap_err(),
        KeyError::WrongUse { .. }
    ));
    let mut ops = rsa_jwk(rsa(), "rs", None);
    ops.key_ops = Some(vec!["encrypt".to_owned()]);
    assert!(matches!(
        IssuerKey::from_jwk(&ops).unwrap_err(),
        KeyError::WrongKeyOps { .. }
    ));
    let mut private = ec_jwk("es");
    private.d = Some(base64url::encode(&[9; 32]));
    assert_eq!(
        IssuerKey::from_jwk(&private).unwrap_err(),
        KeyError::PrivateMaterial
    );
}

#[test]
fn weak_ed25519_and_off_curve_p256_points_are_refused() {
    // The identity point: every signature would verify under it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let ed = jwk(&json!({"kty": "OKP", "crv": "Ed25519", "x": base64url::encode(&identity)}));
    assert_eq!(IssuerKey::from_jwk(&ed).unwrap_err(), KeyError::WeakKey);
    let mut ec = ec_jwk("es");
    ec.y = Some(base64url::encode(&[1; 32]));
    assert_eq!(
        IssuerKey::from_jwk(&ec).unwrap_err(),
        KeyError::InvalidPoint
    );
}

#[test]
fn equal_keys_compare_equal_and_others_not() {
    let a = IssuerKey::from_jwk(&rsa_jwk(rsa(), "rs", None)).unwrap();
    let b = IssuerKey::from_jwk(&rsa_jwk(rsa(), "other-kid", None)).unwrap();
    let c = IssuerKey::from_jwk(&rsa_jwk(crate::support::rsa_other(), "rs", None)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(format!("{a:?}").contains("rsa_bits: 2048"));
}
