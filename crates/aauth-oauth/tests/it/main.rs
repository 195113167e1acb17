//! Integration tests of aauth-oauth: issuer keys, JWT access tokens, the verifier with
//! discovery over an in-memory fetcher. The live tests against a real authorization
//! server (oidc-provider) are in the demos package (`tests/it/interop_oidc_provider.rs`),
//! which has the TLS world they need.
#![allow(
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod client;
mod introspect;
mod keys;
mod support;
mod tokens;
mod verifier;
