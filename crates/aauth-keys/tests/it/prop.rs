//! Property tests: parsers never panic; encodings round-trip.

use aauth_keys::{Jwk, JwkSet, PublicKey, base64url};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_never_panic(s in "\\PC{0,300}") {
        let _ = Jwk::from_json(&s);
        let _ = PublicKey::from_jwk_json(&s);
        if let Ok(set) = JwkSet::from_json(s.as_bytes()) {
            let _ = set.find("k");
        }
        let _ = base64url::decode(&s);
        let _ = base64url::decode_array::<32>(&s);
    }

    #[test]
    fn jwk_shaped_input_never_panics(kty in "(OKP|EC|RSA|oct|[A-Z]{0,4})", crv in "(Ed25519|P-256|X25519|[a-z]{0,3})", alg in "(Ed25519|ES256|EdDSA|none|[A-Za-z0-9]{0,6})", x in "[A-Za-z0-9_=+/-]{0,50}", y in "[A-Za-z0-9_-]{0,50}") {
        let json = format!(r#"{{"kty":"{kty}","crv":"{crv}","alg":"{alg}","x":"{x}","y":"{y}"}}"#);
        let _ = PublicKey::from_jwk_json(&json);
    }

    #[test]
    fn base64url_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let enc = base64url::encode(&bytes);
        prop_assert!(!enc.contains('=') && !enc.contains('+') && !enc.contains('/'));
        prop_assert_eq!(&base64url::decode(&enc).unwrap(), &bytes);
        let arr = base64url::decode_array::<32>(&enc);
        prop_assert_eq!(arr.is_ok(), bytes.len() == 32);
    }

    #[test]
    fn any_seed_gives_a_key_that_imports(seed in any::<[u8; 32]>()) {
        let k = aauth_keys::PrivateKey::ed25519_from_seed(&seed);
        let back = PublicKey::from_jwk(&k.public_key().to_jwk()).unwrap();
        prop_assert_eq!(&back, k.public_key());
    }
}
