//! Test support for the AAuth workspace: the fixtures and helpers that the crates'
//! integration tests, the benches and the demos' tests share, written once.
//!
//! This is test code. It is a dev-dependency of integration tests (`crates/*/tests`),
//! benches and the demo harness's tests, never a normal dependency of a library
//! (`cargo test -p xtask` checks it), and never used by unit tests inside a crate's
//! `src/`: those would link a second copy of that crate.
//!
//! A fixture that cannot be built is a broken test, so the helpers panic on bad fixture
//! input rather than return errors; each says when in its `# Panics` section.
//!
//! # Features
//!
//! `services` gives the URLs of the machine's PostgreSQL and Redis to the tests that need
//! them. The default set needs only layers 0 and 1 (keys, headers, tokens, signing), so the
//! lowest crates' tests pull in nothing more. The others (their modules exist only when
//! enabled):
//!
//! - `metadata`: `url`, the metadata layer's HTTPS URLs, and `published`, what a
//!   server publishes read back;
//! - `service`: `service`, a protected handler for a resource's layer;
//! - `agent` (with `service`): `net`, an in-memory network of sans-IO handlers for the
//!   agent's `Transport`, `provider`, an agent provider with an enrolled agent, and
//!   `stand_in`, a Person Server the agent's client can ask for tokens in process.
//!
//! # Example
//!
//! ```
//! use aauth_headers::Scheme;
//! use aauth_test_support::{NOW, id, key, request, tokens};
//!
//! let agent = key(2);
//! let token = tokens::assistant(agent.public_key())
//!     .sign(&key(1), "key-1", NOW, &mut aauth_keys::rand::OsRandom)
//!     .expect("signs")
//!     .token;
//! let req = request::json("POST", "https://ps.example/person", Some(&serde_json::json!({})));
//! let req = request::signed_unique(req, &agent, &Scheme::jwt(token), NOW);
//! assert_eq!(req.uri(), "/person");
//! assert_eq!(req.headers()["host"], "ps.example");
//! assert_eq!(id("https://ps.example").as_str(), "https://ps.example");
//! ```
#![allow(
    clippy::expect_used,
    reason = "test support: a fixture that cannot be built is a failed test"
)]

mod ids;
pub mod keys;
pub mod request;
pub mod services;
pub mod time;
pub mod tokens;
pub mod verify;

#[cfg(feature = "metadata")]
pub mod audit;
#[cfg(feature = "agent")]
pub mod net;
#[cfg(feature = "agent")]
pub mod provider;
#[cfg(feature = "metadata")]
pub mod published;
#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "agent")]
pub mod stand_in;

#[cfg(feature = "metadata")]
pub use ids::url;
pub use ids::{agent_id, id};
pub use keys::key;
pub use time::NOW;
