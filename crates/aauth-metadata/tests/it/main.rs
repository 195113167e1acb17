//! Integration tests for aauth-metadata: documents, URLs, the key cache's fault behaviour,
//! and the egress guard's SSRF cases.
#![allow(
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod audit;
mod cache;
mod cascade;
mod client;
mod documents;
mod egress;
mod outbound;
mod rate;
mod resilience;
mod resolvers;
mod serve;
mod server;
mod support;
mod throttle;
mod urls;
