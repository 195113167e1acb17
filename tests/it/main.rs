//! Integration tests of the demos, and interop tests against other implementations and
//! independent oracles.

#![allow(
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "a test binary: fixtures are shared between modules and may fail loudly"
)]

mod browser;
mod demos;
mod interop;
mod interop_mockin;
mod interop_mockin_oidc;
mod interop_oidc_provider;
mod interop_python;
mod node_peer;
mod pages_in_chromium;
mod security;
mod world;
