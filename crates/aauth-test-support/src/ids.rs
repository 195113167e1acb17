//! Identifiers from fixture strings.

use aauth_tokens::{AgentId, ServerId};

/// The server identifier `s` (an `https` origin such as `https://ps.example`).
///
/// # Panics
///
/// If `s` is not a valid server identifier.
#[must_use]
pub fn id(s: &str) -> ServerId {
    ServerId::parse(s).expect("a valid server identifier")
}

/// The agent identifier `s` (such as `aauth:assistant@agent.example`).
///
/// # Panics
///
/// If `s` is not a valid agent identifier.
#[must_use]
pub fn agent_id(s: &str) -> AgentId {
    AgentId::parse(s).expect("a valid agent identifier")
}

/// The HTTPS URL `s`.
///
/// # Panics
///
/// If `s` is not a valid HTTPS URL.
#[cfg(feature = "metadata")]
#[must_use]
pub fn url(s: &str) -> aauth_metadata::HttpsUrl {
    aauth_metadata::HttpsUrl::parse(s).expect("a valid HTTPS URL")
}
