//! `POST /agent-token`: an enrolled agent asks for its agent token, signing with the
//! enrolled key (`Signature-Key: sig=hwk`), body `{"agent": "aauth:…"}`.

use std::sync::PoisonError;
use std::time::Duration;

use aauth_keys::PublicKey;
use aauth_keys::time::UnixTime;
use aauth_signing::VerifiedRequest;
use aauth_tokens::{AgentId, AgentTokenBuilder, Minted};
use serde::Deserialize;

use super::{AgentProvider, ProviderError, parse};

impl AgentProvider {
    /// Issues `agent` a token bound to `key`, which must be enrolled for it.
    ///
    /// # Errors
    ///
    /// [`ProviderError::ForeignAgent`], [`ProviderError::NotEnrolled`],
    /// [`ProviderError::Mint`].
    pub fn issue(
        &self,
        agent: &AgentId,
        key: &PublicKey,
        now: UnixTime,
    ) -> Result<Minted, ProviderError> {
        self.own_domain(agent)?;
        let ps = {
            let map = self.enrolled.read().unwrap_or_else(PoisonError::into_inner);
            match map.get(agent) {
                Some(e) if e.keys.contains(key.thumbprint().as_str()) => e.person_server.clone(),
                _ => {
                    return Err(ProviderError::NotEnrolled {
                        agent: agent.as_str().to_owned(),
                    });
                }
            }
        };
        let mut b = AgentTokenBuilder::new(self.id.clone(), agent.clone(), key)
            .lifetime(Duration::from_secs(self.lifetime));
        if let Some(ps) = ps {
            b = b.person_server(ps);
        }
        self.sign(b, now)
    }

    pub(super) fn token_request(
        &self,
        verified: &VerifiedRequest,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Minted, ProviderError> {
        #[derive(Deserialize)]
        struct Body {
            agent: String,
        }
        let b: Body = parse(body)?;
        let agent = AgentId::parse(&b.agent).map_err(|e| ProviderError::InvalidRequest {
            reason: e.to_string(),
        })?;
        self.issue(&agent, &verified.key, now)
    }
}
