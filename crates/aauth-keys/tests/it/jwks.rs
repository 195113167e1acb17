//! JWKS lookup by `kid`, tolerating members it cannot use (-09 §3.3), refusing ambiguity
//! (catalogue A12, A13).

use aauth_keys::{JwkSet, KeyError, PrivateKey};

fn ed_member(kid: &str, seed: u8) -> String {
    PrivateKey::ed25519_from_seed(&[seed; 32])
        .public_key()
        .to_jwk()
        .with_kid(kid)
        .to_json()
}

#[test]
fn selects_by_kid_ignoring_unusable_members() {
    let json = format!(
        r#"{{"keys":[
            {{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"rsa"}},
            {{"kty":"AKP","alg":"ML-DSA-44","kid":"pq","pub":"AAAA"}},
            "not an object",
            {{"kid":7}},
            {{"kty":"OKP","crv":"Ed25519","x":"garbage","alg":"Ed25519","kid":"broken"}},
            {},
            {}
        ]}}"#,
        ed_member("k1", 1),
        PrivateKey::es256_from_scalar(&[2; 32])
            .unwrap()
            .public_key()
            .to_jwk()
            .with_kid("k2")
            .to_json()
    );
    let set = JwkSet::from_json(json.as_bytes()).unwrap();
    assert_eq!(set.len(), 7);
    assert_eq!(
        &set.find("k1").unwrap(),
        PrivateKey::ed25519_from_seed(&[1; 32]).public_key()
    );
    assert_eq!(
        set.find("k2").unwrap().algorithm(),
        aauth_keys::Algorithm::Es256
    );
    // The selected member's own problem is reported; others never are.
    assert!(set.find("pq").unwrap_err().is_unsupported_algorithm());
    assert!(matches!(
        set.find("broken").unwrap_err(),
        KeyError::BadEncoding { .. }
    ));
    assert!(matches!(
        set.find("rsa").unwrap_err(),
        KeyError::UnsupportedAlgorithm { .. } | KeyError::MissingAlgorithm
    ));
    assert_eq!(
        set.find("nope").unwrap_err(),
        KeyError::UnknownKid { kid: "nope".into() }
    );
}

#[test]
fn duplicate_kids_and_private_members_are_refused() {
    let json = format!(
        r#"{{"keys":[{},{},{}]}}"#,
        ed_member("dup", 1),
        ed_member("dup", 2),
        ed_member("ok", 3)
    );
    let set = JwkSet::from_json(json.as_bytes()).unwrap();
    assert_eq!(
        set.find("dup").unwrap_err(),
        KeyError::DuplicateKid { kid: "dup".into() }
    );
    set.find("ok").unwrap();
    let private = (*PrivateKey::ed25519_from_seed(&[4; 32]).to_private_jwk())
        .clone()
        .with_kid("p")
        .to_json();
    let set = JwkSet::from_json(format!(r#"{{"keys":[{private}]}}"#).as_bytes()).unwrap();
    assert_eq!(set.find("p").unwrap_err(), KeyError::PrivateMaterial);
}

#[test]
fn malformed_sets() {
    for bad in [
        "",
        "[]",
        "{}",
        r#"{"keys":{}}"#,
        r#"{"keys":"a"}"#,
        r#"{"keys":[] "#,
    ] {
        assert!(
            matches!(
                JwkSet::from_json(bad.as_bytes()),
                Err(KeyError::MalformedJwks { .. })
            ),
            "{bad}"
        );
    }
    let empty = JwkSet::from_json(br#"{"keys":[]}"#).unwrap();
    assert!(empty.is_empty());
}

#[test]
fn serving_round_trip() {
    let a = PrivateKey::ed25519_from_seed(&[5; 32]);
    let b = PrivateKey::es256_from_scalar(&[5; 32]).unwrap();
    let set = JwkSet::from_jwks(&[
        a.public_key().to_jwk().with_kid("a"),
        b.public_key().to_jwk().with_kid("b"),
    ]);
    let again = JwkSet::from_json(set.to_json().as_bytes()).unwrap();
    assert_eq!(&again.find("a").unwrap(), a.public_key());
    assert_eq!(&again.find("b").unwrap(), b.public_key());
    assert!(!set.to_json().contains("\"d\""));
}
