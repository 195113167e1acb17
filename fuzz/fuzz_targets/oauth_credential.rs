#![no_main]
//! An `Authorization` field from the network read for an OAuth credential, a DPoP proof
//! checked for a request, and an issuer key imported from a JWK: none ever panics.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut headers = http::HeaderMap::new();
    for line in data.split(|&b| b == b'\n').take(4) {
        if let Ok(v) = http::HeaderValue::from_bytes(line) {
            headers.append(http::header::AUTHORIZATION, v);
        }
    }
    let _ = aauth_oauth::credential(&headers);
    if let Ok(proof) = std::str::from_utf8(data) {
        let _ = aauth_oauth::DpopProof::check(
            proof,
            "GET",
            "https://api.example/x",
            "token",
            60,
            5,
            aauth_keys::time::UnixTime(1_800_000_000),
        );
    }
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(jwk) = aauth_keys::Jwk::from_json(s)
    {
        let _ = aauth_oauth::IssuerKey::from_jwk(&jwk);
    }
});
