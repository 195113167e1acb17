//! Call chaining (draft -11 §7.1, §10.1): a client whose Person Server client asks with
//! an `upstream_token` gets person tokens for the person that token was issued for, under
//! its mission. The Person Server copies the upstream token's `mission_s256` into the
//! person token, so the client asks with no mission of its own, holds the person token to
//! the upstream token's mission (absent when it has none), and caches the tokens it
//! obtains under that mission.
//!
//! The mission a token received must carry is decided here for both kinds: a person token
//! carries the mission it was asked under, and an auth token the one its resource token
//! copied from that person token (draft -11 §9.4.1), so the same mission.

use super::*;

/// The upstream token a client's Person Server client asks with, as far as the client
/// needs it: the mission the Person Server will put in the tokens it issues.
#[derive(Debug)]
pub(super) struct Chain {
    /// The upstream token's `mission_s256` (`None` without one), or why it could not be
    /// read.
    mission_s256: Result<Option<String>, String>,
}

impl Chain {
    /// Reads `upstream`'s claims (not verified: the Person Server verifies the upstream
    /// token; the client only learns which mission to expect).
    pub(super) fn of(upstream: &str) -> Self {
        #[derive(Deserialize)]
        struct Claims {
            mission_s256: Option<String>,
        }
        let mission_s256 = aauth_tokens::jws::segments(upstream)
            .map_err(str::to_owned)
            .and_then(|s| serde_json::from_slice::<Claims>(&s.payload).map_err(|e| e.to_string()))
            .map(|c| c.mission_s256);
        Self { mission_s256 }
    }

    /// The upstream token's mission (`None` also when it could not be read: nothing is
    /// obtained then, see [`Chain::checked`]).
    pub(super) fn mission(&self) -> Option<&str> {
        self.mission_s256.as_ref().ok().and_then(Option::as_deref)
    }

    /// The upstream token's mission, or the refusal of an upstream token the client
    /// cannot read.
    fn checked(&self) -> Result<Option<&str>, AgentError> {
        match &self.mission_s256 {
            Ok(m) => Ok(m.as_deref()),
            Err(reason) => Err(AgentError::check("upstream", "format", reason.clone())),
        }
    }
}

impl AAuthClient {
    /// The `mission_s256` a person-token request names: the client's mission, or none on
    /// a chained call (the mission is the upstream token's, and a Person Server rejects a
    /// request naming one beside `upstream_token`).
    ///
    /// # Errors
    ///
    /// [`AgentError::TokenCheck`] for an upstream token the client cannot read.
    pub(super) fn mission_to_ask(&self) -> Result<Option<&str>, AgentError> {
        match &self.config.chain {
            Some(chain) => chain.checked().map(|_| None),
            None => Ok(self.config.mission.as_deref()),
        }
    }

    /// A person or auth token's `mission_s256` (`token` says which) is the mission the
    /// client acts under: the one asked for, or on a chained call the upstream token's;
    /// absent exactly when that is absent. A person token carries the mission it was
    /// asked under (draft -11 §7.1.2); an auth token copies its resource token's, which
    /// copies the person token's (§9.4.1, §6.7.1). The draft's list of what an agent
    /// checks in an auth token (§9.4.4) leaves the mission out; a token naming another
    /// mission, none, or one when none was asked is refused all the same: it would be
    /// cached and presented under a mission it does not carry, and the resource would
    /// record the calls under another mission than the one the agent works under, or
    /// under none.
    ///
    /// # Errors
    ///
    /// [`AgentError::TokenCheck`] naming `mission_s256`.
    pub(super) fn check_mission(
        &self,
        token: &'static str,
        got: Option<&str>,
    ) -> Result<(), AgentError> {
        let (expected, whose, no_mission) = match &self.config.chain {
            Some(chain) => (
                chain.checked()?,
                "the upstream token's mission",
                "the upstream token carries none",
            ),
            None => (
                self.config.mission.as_deref(),
                "the mission asked for",
                "none was asked for",
            ),
        };
        let reason = match (got, expected) {
            (got, expected) if got == expected => return Ok(()),
            (Some(_), Some(_)) => format!("names another mission than {whose}"),
            (Some(_), None) => format!("names a mission, and {no_mission}"),
            (None, _) => format!("names no mission, not {whose}"),
        };
        Err(AgentError::check(token, "mission_s256", reason))
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    fn token(payload: &str) -> String {
        format!(
            "e30.{}.c2ln",
            aauth_keys::base64url::encode(payload.as_bytes())
        )
    }

    #[test]
    fn the_upstream_mission_is_read_and_an_unreadable_token_is_refused() {
        let with = Chain::of(&token(r#"{"sub":"p","mission_s256":"m-up"}"#));
        assert_eq!(with.mission(), Some("m-up"));
        assert_eq!(with.checked().unwrap(), Some("m-up"));
        let without = Chain::of(&token(r#"{"sub":"p"}"#));
        assert_eq!(without.checked().unwrap(), None);
        for bad in [
            "not a token".to_owned(),
            token("[]"),
            token(r#"{"mission_s256":7}"#),
        ] {
            let chain = Chain::of(&bad);
            assert_eq!(chain.mission(), None, "{bad}");
            assert!(chain.checked().is_err(), "{bad}");
        }
    }
}
