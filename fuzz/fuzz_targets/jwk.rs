#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(jwk) = aauth_keys::Jwk::from_json(s)
    {
        let _ = aauth_keys::Thumbprint::of_jwk(&jwk, aauth_keys::ThumbprintHash::Sha256);
        if let Ok(key) = aauth_keys::PublicKey::from_jwk(&jwk) {
            // An imported key exports to a JWK that imports to the same key.
            let again = aauth_keys::PublicKey::from_jwk(&key.to_jwk()).expect("re-import");
            assert_eq!(again, key);
            let _ = key.verify(data, &[0u8; 64]);
        }
        let _ = aauth_keys::PrivateKey::from_jwk(&jwk);
    }
});
