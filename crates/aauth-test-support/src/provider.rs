//! An agent provider with one enrolled agent: the fixture every agent-side test starts
//! from.

use std::sync::Arc;

use aauth_agent::{Agent, AgentProvider};
use aauth_keys::PrivateKey;
use aauth_tokens::AgentId;

use crate::tokens::{ASSISTANT, PROVIDER};
use crate::{agent_id, id, key};

/// The key id under which the provider publishes its signing key.
pub const PROVIDER_KID: &str = "key-1";

/// [`PROVIDER`] with [`ASSISTANT`] enrolled.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The provider, signing with `provider_key` as [`PROVIDER_KID`].
    pub provider: Arc<AgentProvider>,
    /// The provider's signing key.
    pub provider_key: Arc<PrivateKey>,
    /// [`ASSISTANT`].
    pub agent_id: AgentId,
    /// The agent's own key, bound into its agent tokens.
    pub agent_key: Arc<PrivateKey>,
}

impl Enrolled {
    /// The provider's key from `provider_seed`, the agent's from `agent_seed` (see
    /// [`key`]); the agent's tokens name `person_server` if any.
    ///
    /// # Panics
    ///
    /// If the provider cannot be built or the enrolment is refused.
    #[must_use]
    pub fn new(provider_seed: u8, agent_seed: u8, person_server: Option<&str>) -> Self {
        let provider_key = Arc::new(key(provider_seed));
        let provider = Arc::new(
            AgentProvider::new(id(PROVIDER), provider_key.clone(), PROVIDER_KID)
                .expect("the provider builds"),
        );
        let agent_id = agent_id(ASSISTANT);
        let agent_key = Arc::new(key(agent_seed));
        provider
            .enroll(
                &agent_id,
                agent_key.public_key(),
                person_server.map(id).as_ref(),
            )
            .expect("the agent enrols");
        Self {
            provider,
            provider_key,
            agent_id,
            agent_key,
        }
    }

    /// The enrolled agent, signing with its own key through the provider.
    #[must_use]
    pub fn agent(&self) -> Arc<Agent> {
        Arc::new(Agent::new(
            self.agent_id.clone(),
            self.agent_key.clone(),
            self.provider.clone(),
        ))
    }
}
