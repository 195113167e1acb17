//! The agent role end to end in process: the provider's issuance rules, the agent's
//! token refresh, and the signing client against real resource routes and a stand-in
//! Person Server, with every request on the wire recorded.
#![allow(
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod authorize;
mod chaining;
mod challenges;
mod client;
mod deferred;
mod fallback;
mod missions;
mod pending_caps;
mod provider;
mod sessions;
mod support;
mod transport;
