//! Opt-in departures from draft -11 for peers that lag it.

/// Opt-in departures from draft -11 for peers that lag it, set with
/// [`ClientBuilder::compatibility`](crate::ClientBuilder::compatibility). The default is
/// strict -11 (every member off); each member is one documented departure, for the peers
/// named (`docs/interop.md`, "The compatibility profile").
///
/// ```
/// use std::sync::Arc;
/// use aauth_agent::{AAuthClient, Agent, AgentProvider, Compatibility};
/// use aauth_keys::PrivateKey;
/// use aauth_tokens::{AgentId, ServerId};
///
/// assert_eq!(Compatibility::default(), Compatibility::strict());
/// let compat = Compatibility::strict().person_token_jti(true);
/// assert!(compat.reads_person_token_jti());
///
/// let provider = Arc::new(AgentProvider::new(
///     ServerId::parse("https://agent.example")?,
///     Arc::new(PrivateKey::ed25519_from_seed(&[1; 32])),
///     "key-1",
/// )?);
/// let id = AgentId::parse("aauth:assistant@agent.example")?;
/// let key = Arc::new(PrivateKey::ed25519_from_seed(&[2; 32]));
/// provider.enroll(&id, key.public_key(), None)?;
/// let agent = Arc::new(Agent::new(id, key, provider));
/// let layer = AAuthClient::builder(agent).compatibility(compat).layer();
/// # drop(layer);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Compatibility {
    person_token_jti: bool,
}

impl Compatibility {
    /// Strict draft -11: nothing is accepted that -11 does not define.
    #[must_use]
    pub const fn strict() -> Self {
        Self {
            person_token_jti: false,
        }
    }

    /// A resource token (in a `requirement=auth-token` challenge) that names the presented
    /// token only by `person_token_jti`, the claim's name before -11 renamed it to
    /// `presented_jti` (§6.7.1), is read as if it carried `presented_jti`, and then checked
    /// exactly as any other (AG-22). For resources built on the TypeScript reference
    /// (`@aauth/resource`, `aauth-dev/packages-js`), whose resource tokens carry only
    /// `person_token_jti` (no version of it is installable here, so none is pinned);
    /// strict -11 refuses them (`AgentError::TokenCheck`, check `format`). A token that
    /// carries both claims with different values is refused either way.
    #[must_use]
    pub const fn person_token_jti(mut self, on: bool) -> Self {
        self.person_token_jti = on;
        self
    }

    /// Whether resource tokens are read through `person_token_jti` when they have no
    /// `presented_jti`.
    #[must_use]
    pub const fn reads_person_token_jti(&self) -> bool {
        self.person_token_jti
    }
}
