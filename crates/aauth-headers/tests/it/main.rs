//! Integration tests of aauth-headers: the aauth-go vectors, round trips of every field,
//! the adversarial cases of the security catalogue (§2.6, §2.9), and property tests.

#![allow(
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test binary: fixtures are shared between modules and may fail loudly"
)]

mod adversarial;
mod prop;
mod roundtrip;
mod vectors;
