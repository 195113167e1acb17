//! The token endpoints' errors (draft -11 §13, published -11's codes), as problem bodies.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

/// Seconds an agent waits before retrying when the store could not answer.
const STORE_RETRY: &str = "2";

/// Why a token endpoint refused, with the draft's `error` code.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PsError {
    /// The body or a parameter is not what the endpoint takes: `invalid_request` (400).
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// The resource token failed a check or does not match the presented token:
    /// `invalid_resource_token` (400).
    #[error("invalid_resource_token: {0}")]
    InvalidResourceToken(String),
    /// A token's `iat` is ahead of this server's clock by more than the allowed skew:
    /// `clock_skew` (400; draft -11 §Token Verification lets a server refuse a future
    /// `iat` so). A fresh token from the same issuer would have the same skew.
    #[error("clock_skew: iat {iat} is ahead of this server's clock ({now})")]
    ClockSkew {
        /// The token's `iat`.
        iat: u64,
        /// This server's time.
        now: u64,
    },
    /// The resource token expired: `expired_resource_token` (400).
    #[error("expired_resource_token")]
    ExpiredResourceToken,
    /// The presented token failed a check: `invalid_presented_token` (400).
    #[error("invalid_presented_token: {0}")]
    InvalidPresentedToken(String),
    /// The presented token expired: `expired_presented_token` (400).
    #[error("expired_presented_token")]
    ExpiredPresentedToken,
    /// The presented token was revoked: `revoked_presented_token` (403).
    #[error("revoked_presented_token")]
    RevokedPresentedToken,
    /// The upstream token (call chaining) failed a check: `invalid_upstream_token` (400).
    #[error("invalid_upstream_token: {0}")]
    InvalidUpstreamToken(String),
    /// The upstream token expired: `expired_upstream_token` (400).
    #[error("expired_upstream_token")]
    ExpiredUpstreamToken,
    /// The upstream token was revoked: `revoked_upstream_token` (403).
    #[error("revoked_upstream_token")]
    RevokedUpstreamToken,
    /// The resource's Access Server could not give a verifiable auth token (unreachable,
    /// slow, malformed, or failing PS-53): `as_unreachable` (502).
    #[error("as_unreachable: {0}")]
    AccessServerUnreachable(String),
    /// The resource's Access Server refused; its `error` and status are relayed (PS-54).
    #[error("{error}: the Access Server refused: {detail}")]
    AccessServerRefused {
        /// The Access Server's status (a 4xx).
        status: u16,
        /// Its `error` value.
        error: String,
        /// Its `detail`, if any.
        detail: String,
    },
    /// The resource's Access Server is busy (`429`): its `error` and its `Retry-After`
    /// are relayed, with the status (PS-54). A `429` without `Retry-After` is
    /// [`PsError::AccessServerUnreachable`].
    #[error("{error}: the Access Server is busy: {detail}")]
    AccessServerBusy {
        /// Its `error` value.
        error: String,
        /// Its `detail`, if any.
        detail: String,
        /// Its `Retry-After`, in seconds.
        retry_after: u64,
    },
    /// The resource's Access Server needs the person (`requirement=interaction`: the
    /// agent is given its link) or an approval (`requirement=approval`) first; the
    /// request waits at `location` (handled by the server: the agent sees a `202`).
    #[error("the Access Server needs the person first")]
    AccessServerInteraction {
        /// The Access Server's pending URL.
        location: String,
        /// Its `AAuth-Requirement` value, passed to the agent unchanged (empty when there
        /// is nothing for the agent to do but wait, e.g. a payment being confirmed).
        requirement: String,
        /// For `requirement=clarification`: the Access Server's question, passed to the
        /// agent (which answers at this server's pending URL; the answer is forwarded).
        question: Option<String>,
    },
    /// The Access Server is still waiting for the person (the agent sees a `202`).
    #[error("the Access Server is still waiting for the person")]
    AccessServerPending,
    /// The resource revoked the resource token: `revoked_resource_token` (403).
    #[error("revoked_resource_token")]
    RevokedResourceToken,
    /// Too many requests of this kind from this agent: `rate_limited` (429, with
    /// `Retry-After` in seconds).
    #[error("rate_limited: {reason}")]
    RateLimited {
        /// What was limited.
        reason: String,
        /// Seconds until a request may succeed.
        retry_after: u64,
    },
    /// A sub-agent signed where only its parent may, or a `subagent_token` failed:
    /// `invalid_subagent_token` (400).
    #[error("invalid_subagent_token: {0}")]
    InvalidSubagentToken(String),
    /// The `subagent_token` expired: `expired_subagent_token` (400).
    #[error("expired_subagent_token")]
    ExpiredSubagentToken,
    /// The `subagent_token` was revoked by its provider: `revoked_subagent_token` (403).
    #[error("revoked_subagent_token")]
    RevokedSubagentToken,
    /// The person must be asked and cannot be reached (no interaction channel, or the agent
    /// declared no `interaction` capability): `user_unreachable` (403, terminal).
    #[error("user_unreachable: {0}")]
    UserUnreachable(String),
    /// The person's policy denies the request: `denied` (403).
    #[error("denied: {0}")]
    Denied(String),
    /// No such mission, or not this agent's (identical answers): `mission_not_found`
    /// (404).
    #[error("mission_not_found")]
    MissionNotFound,
    /// The mission has ended: `mission_terminated` (403) with `mission_status` and
    /// `termination_reason`.
    #[error("mission_terminated: {0}")]
    MissionTerminated(&'static str),
    /// A mission's power-of-attorney constraint refused the request: `denied` (403) with
    /// the stable `violation` code.
    #[error("denied by the mission's constraints: {0}")]
    Violation(&'static str),
    /// A mission's log takes no more of its agent's entries ([`crate::Mission::log_agent`]):
    /// `denied` (403) with `violation` `mission_log_full`, nothing recorded.
    ///
    /// Draft -11 names no error for it: its mission, permission and audit endpoints list
    /// only `invalid_request`, `mission_not_found` and the mission status error, and the
    /// token endpoints none that fits. It is not `rate_limited` (429 and `Retry-After`):
    /// the log never empties, so a retry would never succeed; nor `mission_terminated`:
    /// the mission is still active, and the person may still end it. `denied` is the
    /// draft's refusal that is final for this request, as a mission constraint's is; the
    /// agent proposes a new mission to go on.
    #[error("denied: {0}")]
    MissionLogFull(#[from] crate::mission::LogFull),
    /// The pending request changed while this request was answered (another poll, the
    /// person's decision): `409` with `invalid_request`, nothing written; the caller reads
    /// it again.
    #[error("invalid_request: {0}")]
    Conflict(&'static str),
    /// The store could not answer: `temporarily_unavailable` (503 with `Retry-After`,
    /// so that the agent retries) when the failure may pass (the database unreachable or
    /// busy), `server_error` (500) when a record does not read back. The response says
    /// only that the store failed; the backend's error is the source.
    #[error("the store could not answer")]
    Store(#[from] aauth_metadata::store::StoreError),
    /// Something this server needed failed (a record it wrote that does not read back,
    /// a token it could not mint, keys it could not fetch): `server_error` (500), with
    /// only the kind of failure in the body.
    #[error("server_error: {0}")]
    Internal(#[from] aauth_metadata::serve::InternalError),
}

impl PsError {
    /// The `error` code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) | Self::Conflict(_) => "invalid_request",
            Self::InvalidResourceToken(_) => "invalid_resource_token",
            Self::ExpiredResourceToken => "expired_resource_token",
            Self::InvalidPresentedToken(_) => "invalid_presented_token",
            Self::ExpiredPresentedToken => "expired_presented_token",
            Self::RevokedPresentedToken => "revoked_presented_token",
            Self::RevokedResourceToken => "revoked_resource_token",
            Self::InvalidUpstreamToken(_) => "invalid_upstream_token",
            Self::ExpiredUpstreamToken => "expired_upstream_token",
            Self::ClockSkew { .. } => "clock_skew",
            Self::RevokedUpstreamToken => "revoked_upstream_token",
            Self::RateLimited { .. } => "rate_limited",
            Self::AccessServerUnreachable(_)
            | Self::AccessServerInteraction { .. }
            | Self::AccessServerPending => "as_unreachable",
            // The relayed value is in the body; this is its family.
            Self::AccessServerRefused { .. } | Self::AccessServerBusy { .. } => "as_refused",
            Self::InvalidSubagentToken(_) => "invalid_subagent_token",
            Self::ExpiredSubagentToken => "expired_subagent_token",
            Self::RevokedSubagentToken => "revoked_subagent_token",
            Self::UserUnreachable(_) => "user_unreachable",
            Self::Denied(_) => "denied",
            Self::MissionNotFound => "mission_not_found",
            Self::MissionTerminated(_) => "mission_terminated",
            Self::Violation(_) | Self::MissionLogFull(_) => "denied",
            Self::Store(e) if e.is_transient() => "temporarily_unavailable",
            Self::Internal(_) | Self::Store(_) => "server_error",
        }
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::RevokedPresentedToken
            | Self::RevokedSubagentToken
            | Self::RevokedResourceToken
            | Self::RevokedUpstreamToken
            | Self::UserUnreachable(_)
            | Self::Denied(_)
            | Self::MissionTerminated(_)
            | Self::Violation(_)
            | Self::MissionLogFull(_) => StatusCode::FORBIDDEN,
            Self::MissionNotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::RateLimited { .. } | Self::AccessServerBusy { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::AccessServerUnreachable(_)
            | Self::AccessServerInteraction { .. }
            | Self::AccessServerPending => StatusCode::BAD_GATEWAY,
            Self::AccessServerRefused { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::FORBIDDEN)
            }
            // The store will likely answer again: the agent backs off and retries.
            Self::Store(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) | Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The RFC 9457 response.
    #[must_use]
    pub fn into_http_response(self) -> http::Response<Bytes> {
        let status = self.status();
        if let Self::Internal(_) | Self::Store(_) = &self {
            aauth_metadata::serve::report_failure(&self);
        }
        let mut body = serde_json::json!({
            "type": "about:blank",
            "status": status.as_u16(),
            "error": self.code(),
        });
        match &self {
            // Identical for an absent mission and another agent's: no detail at all.
            Self::MissionNotFound => {}
            Self::MissionTerminated(reason) => {
                body["mission_status"] = "terminated".into();
                body["termination_reason"] = (*reason).into();
            }
            Self::Violation(code) => {
                body["violation"] = (*code).into();
                body["detail"] = self.to_string().into();
            }
            Self::MissionLogFull(_) => {
                body["violation"] = crate::mission::violation::LOG_FULL.into();
                body["detail"] = self.to_string().into();
            }
            Self::AccessServerRefused { error, detail, .. } => {
                body["error"] = error.clone().into();
                body["detail"] = format!("the Access Server refused: {detail}").into();
            }
            Self::AccessServerBusy { error, detail, .. } => {
                body["error"] = error.clone().into();
                body["detail"] = format!("the Access Server is busy: {detail}").into();
            }
            _ => body["detail"] = self.to_string().into(),
        }
        let mut r = aauth_metadata::serve::problem_response(status, &body);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from_static(STORE_RETRY),
            );
        }
        if let Self::RateLimited { retry_after, .. } | Self::AccessServerBusy { retry_after, .. } =
            &self
        {
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        r
    }
}
