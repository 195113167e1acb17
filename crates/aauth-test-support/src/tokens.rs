//! The fixtures' agent: `aauth:assistant@agent.example`, whose provider
//! `https://agent.example` signs its agent tokens.

use aauth_keys::PublicKey;
use aauth_tokens::AgentTokenBuilder;

use crate::{agent_id, id};

/// The agent provider every fixture names.
pub const PROVIDER: &str = "https://agent.example";

/// The fixtures' agent, at [`PROVIDER`].
pub const ASSISTANT: &str = "aauth:assistant@agent.example";

/// An agent token for [`ASSISTANT`] from [`PROVIDER`], bound to `key`; the caller adds
/// what else it needs and signs it.
#[must_use]
pub fn assistant(key: &PublicKey) -> AgentTokenBuilder {
    agent(ASSISTANT, key)
}

/// An agent token for `agent` (at [`PROVIDER`]) from [`PROVIDER`], bound to `key`.
///
/// # Panics
///
/// If `agent` is not a valid agent identifier.
#[must_use]
pub fn agent(agent: &str, key: &PublicKey) -> AgentTokenBuilder {
    AgentTokenBuilder::new(id(PROVIDER), agent_id(agent), key)
}
