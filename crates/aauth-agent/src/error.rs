//! What can go wrong on the agent side, each variant naming the step that failed.

use aauth_signing::SignError;
use http::StatusCode;

/// Why an agent-side operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The request could not be sent or its response read.
    #[error("transport: {reason}")]
    Transport {
        /// What failed.
        reason: String,
    },
    /// The OAuth fallback could not get a token (feature `oauth`): the token source's
    /// stable code (the server's `error`, `circuit_open`, …) and what happened.
    #[error("OAuth token ({code}): {reason}")]
    OAuth {
        /// `aauth_oauth::ClientError::code`.
        code: String,
        /// The token source's error.
        reason: String,
    },
    /// The request's URI does not name an AAuth resource (`https://host`, no port).
    #[error("{uri} does not name an AAuth server: {reason}")]
    NotAServer {
        /// The URI.
        uri: String,
        /// Why.
        reason: String,
    },
    /// The request could not be signed.
    #[error("signing: {0}")]
    Sign(#[from] SignError),
    /// The agent provider refused or failed to issue a token.
    #[error("agent provider answered {status}: {error}")]
    Provider {
        /// The HTTP status.
        status: StatusCode,
        /// The `error` code or a description.
        error: String,
    },
    /// A token received (agent, person, resource or auth token) failed a check the
    /// draft requires of the agent (AG-22, AG-23).
    #[error("{token} token failed the {check} check: {reason}")]
    TokenCheck {
        /// Which token.
        token: &'static str,
        /// Which check.
        check: &'static str,
        /// What was found.
        reason: String,
    },
    /// A challenge needs a Person Server and none is configured (or the agent token
    /// names none).
    #[error("the resource requires {requirement} but this agent has no Person Server")]
    NoPersonServer {
        /// The requirement that needs one.
        requirement: &'static str,
    },
    /// The Person Server refused or failed.
    #[error("person server answered {status}: {error}")]
    PersonServer {
        /// The HTTP status.
        status: StatusCode,
        /// The `error` code or a description.
        error: String,
    },
    /// A resource refused a request the client made for itself (the authorization
    /// endpoint's `invalid_scope`, `invalid_account`, …).
    #[error("resource answered {status}: {error}")]
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// The `error` code or a description.
        error: String,
    },
    /// The server's requirement cannot be satisfied by this agent (an unknown
    /// `requirement`, or the same challenge again after it was answered).
    #[error("cannot satisfy requirement {requirement}: {reason}")]
    Unsatisfiable {
        /// The requirement.
        requirement: String,
        /// Why.
        reason: String,
    },
    /// The server refused the signature with a `Signature-Error` this agent cannot
    /// repair by refreshing a token or correcting for clock skew.
    #[error("signature refused: {code}")]
    SignatureRefused {
        /// The `Signature-Error` code.
        code: String,
    },
    /// The server's clock is behind this agent's by more than it accepts, and the `Date`
    /// of its response does not allow a correction.
    #[error("clock skew: the server refused the request's time")]
    ClockSkew,
    /// A deferred request ended without a result: `403` (`denied`, `abandoned`,
    /// `revoked`), `408` (`expired`), `410` (`invalid_code`, gone), or a `500`.
    #[error("deferred request ended with {status}: {error}")]
    Deferred {
        /// The HTTP status.
        status: StatusCode,
        /// The `error` code from the body, or a default for the status.
        error: String,
    },
    /// A deferred response broke the protocol (no `Location`, another origin).
    #[error("deferred response unusable: {reason}")]
    BadDeferred {
        /// Why.
        reason: String,
    },
    /// Polling ran past the configured bound; the pending request was cancelled.
    #[error("gave up polling after {secs} s")]
    PollTimeout {
        /// The bound.
        secs: u64,
    },
    /// More challenge rounds than one request may take (a server that keeps asking).
    #[error("gave up after {rounds} challenge rounds")]
    TooManyRounds {
        /// The bound.
        rounds: usize,
    },
    /// A pending request asked the agent for more than one pending request may have it
    /// do: at a resource, a new interaction, question or resource token past `max` of its
    /// kind (`cap`); at the Person Server, a new interaction or question past `max`. The
    /// agent stopped polling and withdrew the request (`DELETE`). This is a server
    /// asking more than the agent's limit, not a requirement the agent cannot meet
    /// ([`AgentError::Unsatisfiable`]).
    #[error("gave up: the pending request asked for more than {max} {cap}")]
    PendingCap {
        /// Which bound it reached.
        cap: PendingCap,
        /// The bound.
        max: usize,
    },
}

/// What one pending request (at a resource, or at the Person Server) may have the agent
/// do only so many times ([`AgentError::PendingCap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PendingCap {
    /// Distinct interactions (`requirement=interaction`: the person prompted, or the
    /// Person Server asked to reach them): at most 4 ([`PendingCap::max`]); as many for
    /// one request to the Person Server (the person prompted).
    Interactions,
    /// Distinct questions (`requirement=clarification`: the clarification hook asked,
    /// its answer posted): at most 8 ([`PendingCap::max`]), at a resource's pending URL
    /// as for one request to the Person Server (the person's questions).
    Clarifications,
    /// Distinct resource tokens (a deferred `requirement=auth-token`: the Person Server
    /// asked for an auth token): at most 4.
    ResourceTokens,
}

impl std::fmt::Display for PendingCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Interactions => "interactions",
            Self::Clarifications => "clarifications",
            Self::ResourceTokens => "resource tokens",
        })
    }
}

impl From<aauth_metadata::TransportError> for AgentError {
    fn from(e: aauth_metadata::TransportError) -> Self {
        Self::Transport { reason: e.reason }
    }
}

impl AgentError {
    pub(crate) fn transport(e: impl std::fmt::Display) -> Self {
        Self::Transport {
            reason: e.to_string(),
        }
    }

    pub(crate) fn check(
        token: &'static str,
        check: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        Self::TokenCheck {
            token,
            check,
            reason: reason.into(),
        }
    }
}
