//! The three-party parties served for another process: what a subprocess (the `aauth`
//! command's tests) needs to act as the assistant against them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use aauth_keys::Jwk;
use zeroize::Zeroizing;

use crate::parties::{Options, Parties, parties};

/// The parties, kept up while this value lives: agent.example (the provider, with the
/// assistant enrolled), ps.example (the Person Server, approving on its own) and
/// resource.example (an auth-token API: any path answers once admitted).
pub struct ServedParties {
    parties: Parties,
}

impl std::fmt::Debug for ServedParties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedParties")
            .field("names", &self.parties.world.names())
            .finish_non_exhaustive()
    }
}

impl ServedParties {
    /// Serves them on loopback.
    ///
    /// # Errors
    ///
    /// What could not be set up.
    pub async fn start() -> Result<Self, String> {
        let parties = parties(Options {
            policy: None,
            consent_pages: false,
            bound: true,
            scope: "calendar.read",
            authorization_endpoint: false,
            access_server: false,
            as_policy: None,
            mission_terms: None,
        })
        .await?;
        Ok(Self { parties })
    }

    /// The world's CA, PEM (for `--ca-file`).
    #[must_use]
    pub fn ca_pem(&self) -> String {
        self.parties.world.ca_pem()
    }

    /// Each name with its loopback socket (for `--connect-to NAME:443:IP:PORT`).
    #[must_use]
    pub fn names(&self) -> BTreeMap<String, SocketAddr> {
        self.parties.world.names()
    }

    /// The assistant's identifier.
    #[must_use]
    pub fn agent(&self) -> String {
        self.parties.agent_id.as_str().to_owned()
    }

    /// The assistant's private key, as a JWK (the one its provider enrolled).
    #[must_use]
    pub fn agent_key(&self) -> Zeroizing<Jwk> {
        self.parties.agent_key.to_private_jwk()
    }

    /// The resource's identifier.
    #[must_use]
    pub fn resource(&self) -> String {
        self.parties.rs_id.as_str().to_owned()
    }
}
