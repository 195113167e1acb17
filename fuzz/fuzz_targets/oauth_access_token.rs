#![no_main]
//! An OAuth access token from the network: the sans-IO checks, then the signature with a
//! fixed RSA-less key (so every input reaches the signature step it can), never a panic.
use aauth_keys::time::UnixTime;
use aauth_oauth::{AccessToken, AccessTokenPolicy, IssuerKey, TokenTypes};

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
    if let Ok(token) = AccessToken::parse(s, &policy, &|_| true, UnixTime(1_800_000_000))
        && let Ok(key) = key
    {
        let _ = (token.issuer().len(), token.kid().len(), token.algorithm());
        if let Ok(claims) = token.finish(&key) {
            let _ = (
                claims.scopes().count(),
                claims.audience().count(),
                claims.jkt(),
            );
        }
    }
});
