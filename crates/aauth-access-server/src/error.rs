//! The Access Server's refusals, each with the draft's `error` code and status.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

/// Seconds an agent waits before retrying when the store (or this server) could not
/// answer.
const STORE_RETRY: &str = "2";

/// Why the Access Server refused a token request.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AsError {
    /// A malformed body or a missing parameter: `invalid_request` (400).
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// The caller is not a Person Server this Access Server trusts: `denied` (403).
    #[error("denied: {0}")]
    Untrusted(String),
    /// The resource token failed a check: `invalid_resource_token` (400).
    #[error("invalid_resource_token: {0}")]
    InvalidResourceToken(String),
    /// The resource token expired: `expired_resource_token` (400).
    #[error("expired_resource_token")]
    ExpiredResourceToken,
    /// The presented token failed a check: `invalid_presented_token` (400).
    #[error("invalid_presented_token: {0}")]
    InvalidPresentedToken(String),
    /// The presented token expired: `expired_presented_token` (400).
    #[error("expired_presented_token")]
    ExpiredPresentedToken,
    /// The presented token was revoked here: `revoked_presented_token` (403).
    #[error("revoked_presented_token")]
    RevokedPresentedToken,
    /// The resource revoked the resource token: `revoked_resource_token` (403).
    #[error("revoked_resource_token")]
    RevokedResourceToken,
    /// The agent token in the body failed a check: `invalid_request` (400; -11 removed
    /// `invalid_agent_token`).
    #[error("invalid_request: agent_token: {0}")]
    InvalidAgentToken(String),
    /// The agent token in the body expired: `invalid_request` (400; -11 removed
    /// `expired_agent_token`, draft issue #199). Kept apart from
    /// [`AsError::InvalidAgentToken`] so that a poll tells it `expired`
    /// ([`AsError::polled`]).
    #[error("invalid_request: agent_token: expired")]
    ExpiredAgentToken,
    /// The sub-agent token failed a check: `invalid_subagent_token` (400).
    #[error("invalid_subagent_token: {0}")]
    InvalidSubagentToken(String),
    /// The upstream token failed a check: `invalid_upstream_token` (400).
    #[error("invalid_upstream_token: {0}")]
    InvalidUpstreamToken(String),
    /// The upstream token was revoked here: `revoked_upstream_token` (403).
    #[error("revoked_upstream_token")]
    RevokedUpstreamToken,
    /// The sub-agent token expired: `expired_subagent_token` (400).
    #[error("expired_subagent_token")]
    ExpiredSubagentToken,
    /// The upstream token expired: `expired_upstream_token` (400).
    #[error("expired_upstream_token")]
    ExpiredUpstreamToken,
    /// A token's `iat` is ahead of this server's clock by more than the allowed skew:
    /// `clock_skew` (400). A fresh token from the same issuer would have the same skew.
    #[error("clock_skew: iat {iat} is ahead of this server's clock ({now})")]
    ClockSkew {
        /// The token's `iat`.
        iat: u64,
        /// This server's time.
        now: u64,
    },
    /// The policy refused: `denied` (403).
    #[error("denied: {0}")]
    Denied(String),
    /// A token a waiting request depends on was revoked while it waited: `revoked` (403;
    /// draft -11 §11.9.4 Polling Error Codes), the answer of its pending URL, its
    /// `detail` naming the token. The token endpoint answers the token's own code
    /// instead ([`AsError::RevokedResourceToken`], [`AsError::RevokedPresentedToken`],
    /// [`AsError::RevokedUpstreamToken`]).
    #[error("revoked: the {0} this request depends on was revoked")]
    Revoked(TokenParameter),
    /// A token a waiting request depends on expired while it waited: `expired` (408;
    /// draft -11 §11.9.4 Polling Error Codes; §10.1.1 for an upstream token), the
    /// answer of its pending URL, its `detail` naming the token. The token endpoint
    /// answers the token's own code instead ([`AsError::ExpiredResourceToken`], …).
    #[error("expired: the {0} this request depends on expired while it waited")]
    Expired(TokenParameter),
    /// A waiting request polled after it expired: `expired` (408; draft -11 §Polling
    /// Error Codes). The Person Server may start a fresh request.
    #[error("expired: the request was not completed in time")]
    RequestExpired,
    /// A waiting request polled after its terminal answer: `410`, `invalid_code` (draft
    /// -11 §Polling Error Codes; §Pending URL Security: once a terminal response is
    /// returned, the pending URL returns `410 Gone`).
    #[error("invalid_code: this request has ended")]
    RequestEnded,
    /// A waiting request whose interaction code was presented by other accounts than the
    /// person's too many times: `410`, `invalid_code` (draft -11 §Interaction Code
    /// Format: after a small number of failed attempts the interaction is terminally
    /// failed). The Person Server may start a fresh request.
    #[error("invalid_code: the interaction code was presented by others too many times")]
    InteractionFailed,
    /// Something this server needed failed (a record it wrote that does not read back,
    /// a token it could not mint, keys it could not fetch): `server_error` (500), with
    /// only the kind of failure in the body.
    #[error("server_error: {0}")]
    Internal(#[from] aauth_metadata::serve::InternalError),
    /// This server cannot take a waiting request's next step now, and keeps the request
    /// as it was (no interaction code of its own could be drawn for it: the random
    /// source repeats itself): `temporarily_unavailable` (503 with `Retry-After`, so
    /// that the Person Server polls again rather than give the request up).
    #[error("temporarily_unavailable: {0}")]
    Unavailable(String),
    /// The store could not answer: `temporarily_unavailable` (503 with `Retry-After`,
    /// so that the agent retries) when the failure may pass (the database unreachable or
    /// busy), `server_error` (500) when a record does not read back. The response says
    /// only that the store failed; the backend's error is the source.
    #[error("the store could not answer")]
    Store(#[from] aauth_metadata::store::StoreError),
    /// Too many requests of this kind from this Person Server: `rate_limited` (429, with
    /// `Retry-After` in seconds).
    #[error("rate_limited: {reason}")]
    RateLimited {
        /// What was limited.
        reason: String,
        /// Seconds until a request may succeed.
        retry_after: u64,
    },
}

/// A token a token request carries, by its parameter: which one a waiting request
/// depends on was revoked ([`AsError::Revoked`]) or expired ([`AsError::Expired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenParameter {
    /// The `resource_token` (its resource revoked it, or it expired).
    Resource,
    /// The `presented_token` (its Person Server revoked it, or the auth token it was
    /// stepped up from was revoked; or it expired).
    Presented,
    /// The `agent_token` (it expired).
    Agent,
    /// The `subagent_token` (it expired).
    Subagent,
    /// The `upstream_token`.
    Upstream,
}

impl TokenParameter {
    /// The request parameter that carried it.
    #[must_use]
    pub fn parameter(self) -> &'static str {
        match self {
            Self::Resource => "resource_token",
            Self::Presented => "presented_token",
            Self::Agent => "agent_token",
            Self::Subagent => "subagent_token",
            Self::Upstream => "upstream_token",
        }
    }
}

impl std::fmt::Display for TokenParameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.parameter())
    }
}

impl AsError {
    /// This refusal as the answer of a waiting request's pending URL, which carries only
    /// the polling codes (draft -11 §11.9.4 Polling Error Codes: `denied`, `abandoned`,
    /// `expired`, `invalid_code`, `revoked`, `slow_down`, `server_error`), never the
    /// token endpoint's, whose parameters a poll does not send. The request's tokens
    /// were checked when it came; decided again, one that fails now failed while it
    /// waited:
    /// - revoked: `403 revoked`, naming the token;
    /// - expired: `408 expired`, naming the token (§10.1.1: a pending request whose
    ///   upstream token expires ends with `expired`);
    /// - no longer passing its other checks (its issuer withdrew the key it was signed
    ///   with, or this server stopped serving its resource): `403 denied`, naming the
    ///   token and the check;
    /// - a request kept here that no longer reads as one: this server's failure, `500
    ///   server_error`;
    /// - a token dated ahead of this server's clock (which went back since): a failure
    ///   that may pass, `503 temporarily_unavailable` with `Retry-After`, the request
    ///   kept ([`AsError::ends_request`] is `false` for it).
    ///
    /// Every other refusal is one a poll may carry already, and is unchanged.
    #[must_use]
    pub fn polled(self) -> Self {
        let denied = |token: TokenParameter, why: String| {
            Self::Denied(format!(
                "the {token} this request depends on no longer passes its checks: {why}"
            ))
        };
        match self {
            Self::RevokedResourceToken => Self::Revoked(TokenParameter::Resource),
            Self::RevokedPresentedToken => Self::Revoked(TokenParameter::Presented),
            Self::RevokedUpstreamToken => Self::Revoked(TokenParameter::Upstream),
            Self::ExpiredResourceToken => Self::Expired(TokenParameter::Resource),
            Self::ExpiredPresentedToken => Self::Expired(TokenParameter::Presented),
            Self::ExpiredAgentToken => Self::Expired(TokenParameter::Agent),
            Self::ExpiredSubagentToken => Self::Expired(TokenParameter::Subagent),
            Self::ExpiredUpstreamToken => Self::Expired(TokenParameter::Upstream),
            Self::InvalidResourceToken(why) => denied(TokenParameter::Resource, why),
            Self::InvalidPresentedToken(why) => denied(TokenParameter::Presented, why),
            Self::InvalidAgentToken(why) => denied(TokenParameter::Agent, why),
            Self::InvalidSubagentToken(why) => denied(TokenParameter::Subagent, why),
            Self::InvalidUpstreamToken(why) => denied(TokenParameter::Upstream, why),
            Self::InvalidRequest(why) => {
                aauth_metadata::serve::InternalError::unreadable("waiting request", why).into()
            }
            // The tokens were dated fine when the request came: this server's clock went
            // back since. One that may pass (the clock put right, or time catching up):
            // `503`, on which the Person Server polls again, the request kept.
            Self::ClockSkew { iat, now } => Self::Unavailable(format!(
                "the decision on a waiting request: a token it carries is dated {iat}, \
                 ahead of this server's clock ({now})"
            )),
            // Polling codes already (`429 rate_limited` and `503` are this server's
            // failures a later poll may get past; a poll's own rate limit is answered
            // `slow_down` before it is decided).
            Self::Untrusted(_)
            | Self::Denied(_)
            | Self::Revoked(_)
            | Self::Expired(_)
            | Self::RequestExpired
            | Self::RequestEnded
            | Self::InteractionFailed
            | Self::Internal(_)
            | Self::Unavailable(_)
            | Self::Store(_)
            | Self::RateLimited { .. } => self,
        }
    }

    /// The draft's `error` value.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) | Self::InvalidAgentToken(_) | Self::ExpiredAgentToken => {
                "invalid_request"
            }
            Self::Untrusted(_) | Self::Denied(_) => "denied",
            Self::Revoked(_) => "revoked",
            Self::InvalidResourceToken(_) => "invalid_resource_token",
            Self::ExpiredResourceToken => "expired_resource_token",
            Self::InvalidPresentedToken(_) => "invalid_presented_token",
            Self::ExpiredPresentedToken => "expired_presented_token",
            Self::RevokedPresentedToken => "revoked_presented_token",
            Self::RevokedResourceToken => "revoked_resource_token",
            Self::InvalidSubagentToken(_) => "invalid_subagent_token",
            Self::InvalidUpstreamToken(_) => "invalid_upstream_token",
            Self::RevokedUpstreamToken => "revoked_upstream_token",
            Self::ExpiredSubagentToken => "expired_subagent_token",
            Self::ExpiredUpstreamToken => "expired_upstream_token",
            Self::ClockSkew { .. } => "clock_skew",
            Self::Expired(_) | Self::RequestExpired => "expired",
            Self::RequestEnded | Self::InteractionFailed => "invalid_code",
            Self::Unavailable(_) => "temporarily_unavailable",
            Self::Store(e) if e.is_transient() => "temporarily_unavailable",
            Self::Internal(_) | Self::Store(_) => "server_error",
            Self::RateLimited { .. } => "rate_limited",
        }
    }

    /// Whether this refusal is a waiting request's verdict, which ends it (the Person
    /// Server is told, and stops polling), rather than a failure of this server's that a
    /// later poll may get past: a store that did not answer, an internal failure, a
    /// limit. A request taken to be decided again goes back to the store on those.
    #[must_use]
    pub fn ends_request(&self) -> bool {
        match self {
            // A token dated ahead of this server's clock, in a request it took in: the
            // clock went back, which may pass ([`AsError::polled`]).
            Self::Internal(_)
            | Self::Unavailable(_)
            | Self::Store(_)
            | Self::ClockSkew { .. }
            | Self::RateLimited { .. } => false,
            Self::InvalidRequest(_)
            | Self::Untrusted(_)
            | Self::InvalidResourceToken(_)
            | Self::ExpiredResourceToken
            | Self::InvalidPresentedToken(_)
            | Self::ExpiredPresentedToken
            | Self::RevokedPresentedToken
            | Self::RevokedResourceToken
            | Self::InvalidAgentToken(_)
            | Self::ExpiredAgentToken
            | Self::InvalidSubagentToken(_)
            | Self::InvalidUpstreamToken(_)
            | Self::RevokedUpstreamToken
            | Self::ExpiredSubagentToken
            | Self::ExpiredUpstreamToken
            | Self::Denied(_)
            | Self::Revoked(_)
            | Self::Expired(_)
            | Self::RequestExpired
            | Self::RequestEnded
            | Self::InteractionFailed => true,
        }
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Untrusted(_)
            | Self::Denied(_)
            | Self::Revoked(_)
            | Self::RevokedPresentedToken
            | Self::RevokedResourceToken
            | Self::RevokedUpstreamToken => StatusCode::FORBIDDEN,
            // The store will likely answer again: the agent backs off and retries.
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) | Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Expired(_) | Self::RequestExpired => StatusCode::REQUEST_TIMEOUT,
            Self::RequestEnded | Self::InteractionFailed => StatusCode::GONE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The RFC 9457 response.
    #[must_use]
    pub fn into_http_response(self) -> http::Response<Bytes> {
        let status = self.status();
        if let Self::Internal(_) | Self::Unavailable(_) | Self::Store(_) = &self {
            aauth_metadata::serve::report_failure(&self);
        }
        let body = serde_json::json!({
            "type": "about:blank",
            "status": status.as_u16(),
            "error": self.code(),
            "detail": self.to_string(),
        });
        let mut r = aauth_metadata::serve::problem_response(status, &body);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from_static(STORE_RETRY),
            );
        }
        if let Self::RateLimited { retry_after, .. } = &self {
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        r
    }
}
