//! `POST /subagent-token`: an agent asks for a sub-agent token, signing under its own
//! agent token from this provider, body `{"agent": "aauth:parent+name@domain", "jwk": {…}}`.

use std::sync::PoisonError;
use std::time::Duration;

use aauth_keys::time::UnixTime;
use aauth_keys::{Jwk, PublicKey};
use aauth_signing::{KeyIdentity, VerifiedRequest};
use aauth_tokens::{AgentClaims, AgentId, AgentTokenBuilder, BoundToken, Minted, Verified};
use serde::Deserialize;

use super::{AgentProvider, ProviderError, parse};

impl AgentProvider {
    /// Issues a sub-agent token for `sub` bound to `key`, to the agent whose verified
    /// token is `parent`: same `iss` (this provider), `parent_agent` = the parent, `ps`
    /// copied, no later `exp` than the parent's. One level only: a sub-agent has none.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Subagent`] when `parent` is not this provider's, is itself a
    /// sub-agent, or `sub` is not `parent-local+name@domain`; [`ProviderError::NotEnrolled`]
    /// when the parent, or the key its token binds, is no longer enrolled;
    /// [`ProviderError::Mint`].
    pub fn issue_subagent(
        &self,
        parent: &Verified<AgentClaims>,
        sub: &AgentId,
        key: &PublicKey,
        now: UnixTime,
    ) -> Result<Minted, ProviderError> {
        let refuse = |reason: &str| ProviderError::Subagent {
            reason: reason.to_owned(),
        };
        let p = &parent.claims;
        if p.iss != self.id {
            return Err(refuse("the parent's token is from another provider"));
        }
        if p.parent_agent.is_some() {
            return Err(refuse("a sub-agent cannot delegate further (one level)"));
        }
        if !sub.is_named_subagent_of(&p.sub) {
            return Err(refuse(
                "the sub-agent must be named <parent local>+<name>@<domain>",
            ));
        }
        // The parent as it is now, not as its token (up to an hour old) says: an agent
        // unenrolled, or its key, delegates nothing more.
        let parent_key = parent
            .cnf_key
            .as_ref()
            .ok_or_else(|| refuse("the parent's token binds no key"))?;
        let enrolled = {
            let map = self.enrolled.read().unwrap_or_else(PoisonError::into_inner);
            map.get(&p.sub)
                .is_some_and(|e| e.keys.contains(parent_key.thumbprint().as_str()))
        };
        if !enrolled {
            return Err(ProviderError::NotEnrolled {
                agent: p.sub.as_str().to_owned(),
            });
        }
        let mut b = AgentTokenBuilder::new(self.id.clone(), sub.clone(), key)
            .parent_agent(p.sub.clone())
            .lifetime(Duration::from_secs(self.lifetime))
            .not_after(UnixTime(p.exp));
        if let Some(ps) = &p.ps {
            b = b.person_server(ps.clone());
        }
        self.sign(b, now)
    }

    pub(super) fn subagent_request(
        &self,
        verified: &VerifiedRequest,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Minted, ProviderError> {
        #[derive(Deserialize)]
        struct Body {
            agent: String,
            jwk: serde_json::Value,
        }
        let b: Body = parse(body)?;
        let invalid = |e: &dyn std::fmt::Display| ProviderError::InvalidRequest {
            reason: e.to_string(),
        };
        let sub = AgentId::parse(&b.agent).map_err(|e| invalid(&e))?;
        let jwk = Jwk::from_value(&b.jwk).map_err(|e| invalid(&e))?;
        if jwk.is_private() {
            return Err(ProviderError::InvalidRequest {
                reason: "jwk must be a public key".to_owned(),
            });
        }
        let key = PublicKey::from_jwk(&jwk).map_err(|e| invalid(&e))?;
        let KeyIdentity::Token(token) = &verified.identity else {
            return Err(ProviderError::Subagent {
                reason: "the request is not signed under an agent token".to_owned(),
            });
        };
        let BoundToken::Agent(parent) = token.as_ref() else {
            return Err(ProviderError::Subagent {
                reason: "the request is not signed under an agent token".to_owned(),
            });
        };
        self.issue_subagent(parent, &sub, &key, now)
    }
}
