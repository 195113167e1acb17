//! Integration tests of aauth-keys: every Wycheproof Ed25519 and P-256 case, weak and
//! invalid keys, the JWK algorithm policy, thumbprints, JWKS lookup, generation.

#![allow(
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test binary: fixtures are shared between modules and may fail loudly"
)]

mod common;
mod generate;
mod jwk_policy;
mod jwks;
mod prop;
mod strict;
mod thumbprint;
mod weak_keys;
mod wycheproof;
