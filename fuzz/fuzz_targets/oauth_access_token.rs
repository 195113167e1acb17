#![no_main]
//! An OAuth access token from the network: the sans-IO checks, then the signature with a
//! fixed RSA-less key or, for the issuer `hs`, a fixed HS256 secret (so every input reaches
//! the signature step it can), never a panic.
use aauth_keys::time::UnixTime;
use aauth_oauth::{
    AccessToken, AccessTokenPolicy, HmacAlgorithm, IssuerKey, IssuerSigning, SharedSecret,
    TokenTypes,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let policy = AccessTokenPolicy::new("https://api.example").with_types(TokenTypes::AtJwtOrPlain);
    let key = IssuerKey::from_jwk(
        &aauth_keys::PrivateKey::ed25519_from_seed(&[1; 32])
            .public_key()
            .to_jwk(),
    );
    let trust = |iss: &str| {
        Some(if iss == "hs" {
            IssuerSigning::Secret(HmacAlgorithm::Hs256)
        } else {
            IssuerSigning::Keys
        })
    };
    let Ok(secret) = SharedSecret::new(HmacAlgorithm::Hs256, &[7; 32]) else {
        return;
    };
    if let Ok(token) = AccessToken::parse_trusting(s, &policy, &trust, UnixTime(1_800_000_000))
        && let Ok(key) = key
    {
        let _ = (
            token.issuer().len(),
            token.kid().map(str::len),
            token.algorithm(),
        );
        let finished = if token.issuer() == "hs" {
            token.finish_with_secret(&secret)
        } else {
            token.finish(&key)
        };
        if let Ok(claims) = finished {
            let _ = (
                claims.scopes().count(),
                claims.audience().count(),
                claims.jkt(),
            );
        }
    }
});
