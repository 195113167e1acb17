//! Integration tests of aauth-signing: the aauth-go, hellocoop and RFC 9421 vectors,
//! round trips, and the adversarial cases of the security catalogue (§2.4, §2.6, §2.7).

#![allow(
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test binary: fixtures are shared between modules and may fail loudly"
)]

mod adversarial;
mod common;
mod digest;
mod prop;
mod replay;
mod roundtrip;
mod vectors;
