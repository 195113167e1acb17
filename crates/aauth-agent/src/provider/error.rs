//! Why the agent provider refused, and the answer that says so.

use aauth_metadata::serve::problem_response;
use bytes::Bytes;
use http::{Response, StatusCode};

/// Why the provider refused to issue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The agent identifier is not in this provider's domain.
    #[error("{agent} is not an agent of {provider}")]
    ForeignAgent {
        /// The agent.
        agent: String,
        /// The provider.
        provider: String,
    },
    /// The agent is not enrolled, or not with this key.
    #[error("{agent} is not enrolled with this key")]
    NotEnrolled {
        /// The agent.
        agent: String,
    },
    /// A sub-agent token was asked for by a sub-agent (one level only), by a token of
    /// another provider, or for an identifier not named under the parent.
    #[error("sub-agent token refused: {reason}")]
    Subagent {
        /// Why.
        reason: String,
    },
    /// The request body is not what the endpoint takes.
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// Why.
        reason: String,
    },
    /// The provider could not mint (its key failed, or a bound is already past).
    #[error("cannot mint: {reason}")]
    Mint {
        /// Why.
        reason: String,
    },
}

impl ProviderError {
    /// The HTTP status the endpoints answer with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::ForeignAgent { .. } | Self::NotEnrolled { .. } | Self::Subagent { .. } => {
                StatusCode::FORBIDDEN
            }
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Mint { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` code of the problem body.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::ForeignAgent { .. } | Self::NotEnrolled { .. } => "unauthorized_agent",
            Self::Subagent { .. } => "invalid_subagent_token",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Mint { .. } => "server_error",
        }
    }
}

impl ProviderError {
    /// The response: the status and an RFC 9457 problem body naming the `error`.
    #[must_use]
    pub fn into_http_response(self) -> Response<Bytes> {
        let status = self.status();
        if let Self::Mint { .. } = &self {
            aauth_metadata::serve::report_failure(&self);
        }
        problem_response(
            status,
            &serde_json::json!({
                "type": "about:blank",
                "status": status.as_u16(),
                "error": self.code(),
                "detail": self.to_string(),
            }),
        )
    }
}
