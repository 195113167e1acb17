//! Integration tests of aauth-tokens: the aauth-go vectors, minting and verification of
//! every token type, and the adversarial cases of the security catalogue (§2.1–§2.3).

#![allow(
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test binary: fixtures are shared between modules and may fail loudly"
)]

mod budget;
mod common;
mod ids;
mod jkt;
mod jose;
mod prop;
mod types;
mod vectors;
