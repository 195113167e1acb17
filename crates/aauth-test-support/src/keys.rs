//! Deterministic keys: one Ed25519 key per seed byte, so that a fixture names its keys
//! by number and a test can rebuild any of them.

use aauth_keys::{Jwk, JwkSet, PrivateKey};

/// The Ed25519 key whose 32-byte seed is `seed` repeated.
#[must_use]
pub fn key(seed: u8) -> PrivateKey {
    PrivateKey::ed25519_from_seed(&[seed; 32])
}

/// The public JWK of [`key`]`(seed)`, with `kid`.
#[must_use]
pub fn jwk(seed: u8, kid: &str) -> Jwk {
    let mut j = key(seed).public_key().to_jwk();
    j.kid = Some(kid.to_owned());
    j
}

/// A JWKS document (JSON) of the public keys `(seed, kid)`.
#[must_use]
pub fn jwks(keys: &[(u8, &str)]) -> String {
    let jwks: Vec<Jwk> = keys.iter().map(|&(s, k)| jwk(s, k)).collect();
    JwkSet::from_jwks(&jwks).to_json()
}
