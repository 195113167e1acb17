//! RFC 7638 thumbprints: the aauth-go vectors, RFC 7638 §3.1, RFC 8037 A.3.

use aauth_keys::{Jwk, PublicKey, Thumbprint, ThumbprintHash};

use crate::common::data;

#[test]
fn aauth_go_vectors() {
    let v = data("aauth-go/jwk-thumbprint.json");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for c in cases {
        let jwk = Jwk::from_value(&c["jwk"]).unwrap();
        let want = c["thumbprint"].as_str().unwrap();
        assert_eq!(
            Thumbprint::of_jwk(&jwk, ThumbprintHash::Sha256)
                .unwrap()
                .as_str(),
            want,
            "{}",
            c["name"]
        );
        // The same key with a fully-specified alg imports, and its thumbprint agrees.
        let mut importable = jwk.clone();
        importable.alg = Some("Ed25519".into());
        importable.kid = None;
        importable.use_ = None;
        assert_eq!(
            PublicKey::from_jwk(&importable)
                .unwrap()
                .thumbprint()
                .as_str(),
            want
        );
    }
}

#[test]
fn rfc7638_rsa_example() {
    // RFC 7638 §3.1: thumbprints are defined for any key type; RSA keys are not usable here.
    let jwk = Jwk::from_json(
        r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
    )
    .unwrap();
    assert_eq!(
        Thumbprint::of_jwk(&jwk, ThumbprintHash::Sha256)
            .unwrap()
            .as_str(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    assert!(
        PublicKey::from_jwk(&jwk)
            .unwrap_err()
            .is_unsupported_algorithm()
    );
}

#[test]
fn sha512_and_ec_thumbprints() {
    let k = aauth_keys::PrivateKey::es256_from_scalar(&[3; 32]).unwrap();
    let t256 = k.public_key().thumbprint();
    let t512 = k.public_key().thumbprint_with(ThumbprintHash::Sha512);
    assert_eq!(t256.as_str().len(), 43);
    assert_eq!(t512.as_str().len(), 86);
    // The fast path over the key bytes agrees with the generic JWK computation.
    let jwk = k.public_key().to_jwk().with_kid("ignored");
    assert_eq!(
        Thumbprint::of_jwk(&jwk, ThumbprintHash::Sha256).unwrap(),
        t256
    );
    assert_eq!(
        Thumbprint::of_jwk(&jwk, ThumbprintHash::Sha512).unwrap(),
        t512
    );
    // Missing required members and unknown types.
    let mut no_y = jwk;
    no_y.y = None;
    assert!(Thumbprint::of_jwk(&no_y, ThumbprintHash::Sha256).is_err());
    assert!(Thumbprint::of_jwk(&Jwk::new("oct"), ThumbprintHash::Sha256).is_err());
}
