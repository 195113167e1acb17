//! Why a request was not admitted, and the answer the draft names for each reason.

use aauth_headers::{AAuthRequirement, Requirement, names};
use aauth_signing::{VerifyError, VerifyPolicy};
use aauth_tokens::TokenType;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

/// Why a request was not admitted, with the response the draft names for it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Refusal {
    /// No signature at all: `401` with `AAuth-Requirement` saying what to present.
    Unsigned {
        /// The requirement.
        requirement: Requirement,
    },
    /// A signature failure: `401` with `Signature-Error` (and `Accept-Signature-*`), or
    /// `503` when the signer's keys cannot be obtained now.
    Signature {
        /// The failure (boxed: it is large and refusals are returned by value).
        error: Box<VerifyError>,
        /// The headers to send.
        headers: Vec<(http::HeaderName, HeaderValue)>,
    },
    /// Signed, but with a token that cannot serve here: `401` with `AAuth-Requirement`
    /// saying what to obtain (`person-token`, or `auth-token` with a resource token).
    Challenge {
        /// The requirement.
        requirement: Requirement,
    },
    /// A request the endpoint cannot act on: `400` with the draft's `error` code
    /// (`invalid_request`, `invalid_scope`, `invalid_account`).
    Invalid {
        /// The error code.
        error: &'static str,
        /// Why.
        detail: String,
    },
    /// Authenticated but not allowed: `403`, without signature headers.
    Forbidden {
        /// Why, for the problem body.
        detail: String,
    },
    /// The session token presented is not one this resource can use for this caller
    /// (unknown, expired, or issued to another agent or key): `403` with `error`
    /// `invalid_session`, without signature headers. The draft names no code for it; this
    /// one tells an agent that the session itself was refused before any handler ran, so
    /// it may drop the session and send the request again without it (the agent crate
    /// does), where a plain `forbidden` may come from the application after it acted.
    InvalidSession {
        /// Why, for the problem body.
        detail: String,
    },
    /// The body exceeded the route's limit: `413`.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body could not be read: `400`.
    UnreadableBody {
        /// What failed.
        reason: String,
    },
    /// The body did not arrive in time (its reader's deadline, an `io::Error` of kind
    /// `TimedOut`): `408`.
    BodyTimedOut {
        /// What the deadline said.
        reason: String,
    },
    /// `Authorization` is not exactly one `AAuth` credential: `400`.
    BadCredential {
        /// Why.
        reason: String,
    },
    /// The session store could not answer: `503` with `Retry-After` (fail closed).
    SessionStoreUnavailable {
        /// What failed.
        reason: String,
    },
    /// The server holds as many bodies as it may now ([`crate::BodyBudget`]): `503` with
    /// `Retry-After`.
    Busy {
        /// What is exhausted.
        reason: String,
    },
    /// The route is configured inconsistently (a session-token route without a session
    /// store): `500`, never an admission.
    Misconfigured {
        /// What is missing.
        detail: String,
    },
}

impl Refusal {
    /// The answer to a request that failed verification under `policy`: the
    /// `Signature-Error` and `Accept-Signature-*` fields, and `Retry-After` when the
    /// failure is no verdict on the signature (a store down, a signer past its share).
    #[must_use]
    pub fn signature(error: VerifyError, policy: &VerifyPolicy) -> Self {
        let mut headers = error.response_headers(policy);
        if let Some(secs) = error.retry_after(policy) {
            headers.push((http::header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        // Draft -11 §Revocation (upgrade checklist RS-43): a revoked auth token SHOULD be
        // answered with `requirement=person-token` beside `revoked_jwt` (start again from
        // the person token; never a resource token for the revoked grant).
        if let VerifyError::Revoked {
            token_type: TokenType::Auth,
        } = error
        {
            headers.extend(requirement_header(Requirement::PersonToken));
        }
        Self::Signature {
            error: Box::new(error),
            headers,
        }
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unsigned { .. } | Self::Challenge { .. } => StatusCode::UNAUTHORIZED,
            Self::Invalid { .. } => StatusCode::BAD_REQUEST,
            Self::Signature { error, .. } => error.status(),
            Self::Forbidden { .. } | Self::InvalidSession { .. } => StatusCode::FORBIDDEN,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnreadableBody { .. } => StatusCode::BAD_REQUEST,
            Self::BodyTimedOut { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::SessionStoreUnavailable { .. } | Self::Busy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::BadCredential { .. } => StatusCode::BAD_REQUEST,
            Self::Misconfigured { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response: status, AAuth headers, and an RFC 9457 problem body.
    #[must_use]
    pub fn into_http_response(self) -> http::Response<Bytes> {
        let status = self.status();
        let mut headers = Vec::new();
        let body = match self {
            Self::Unsigned { requirement } => {
                headers.extend(requirement_header(requirement));
                problem(
                    status,
                    "signature_required",
                    "Signature required",
                    "the request carries no HTTP message signature",
                )
            }
            Self::Challenge { requirement } => {
                let detail = match &requirement {
                    Requirement::PersonToken => {
                        "obtain a person token for this resource from your Person Server"
                    }
                    Requirement::AuthToken { .. } => {
                        "take the resource token to your Person Server for an auth token"
                    }
                    _ => "present the required token",
                };
                headers.extend(requirement_header(requirement));
                problem(status, "token_required", "Token required", detail)
            }
            Self::Invalid { error, detail } => {
                serde_json::json!({ "type": "about:blank", "status": 400, "title": "Invalid request", "error": error, "detail": detail })
                    .to_string()
            }
            Self::Signature { error, headers: h } => {
                headers = h;
                error.problem_json()
            }
            Self::Forbidden { detail } => problem(status, "forbidden", "Forbidden", &detail),
            Self::InvalidSession { detail } => {
                problem(status, "invalid_session", "Session refused", &detail)
            }
            Self::TooLarge { limit } => problem(
                status,
                "request_too_large",
                "Request body too large",
                &format!("the body exceeds {limit} bytes"),
            ),
            Self::UnreadableBody { reason } => problem(
                status,
                "invalid_request",
                "Unreadable request body",
                &reason,
            ),
            Self::BodyTimedOut { reason } => problem(
                status,
                "invalid_request",
                "Request body too slow",
                &reason,
            ),
            Self::SessionStoreUnavailable { reason } => {
                headers.push((http::header::RETRY_AFTER, HeaderValue::from_static("1")));
                problem(
                    status,
                    "temporarily_unavailable",
                    "Session check unavailable",
                    &reason,
                )
            }
            Self::Busy { reason } => {
                headers.push((http::header::RETRY_AFTER, HeaderValue::from_static("1")));
                problem(status, "temporarily_unavailable", "Server busy", &reason)
            }
            Self::BadCredential { reason } => problem(
                status,
                "invalid_credential",
                "Invalid AAuth credential",
                &reason,
            ),
            Self::Misconfigured { detail } => {
                problem(status, "server_error", "Route misconfigured", &detail)
            }
        };
        let mut resp = http::Response::new(Bytes::from(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in headers {
            h.append(name, value);
        }
        resp
    }
}

fn requirement_header(requirement: Requirement) -> Option<(http::HeaderName, HeaderValue)> {
    AAuthRequirement::new(requirement)
        .serialize()
        .ok()
        .and_then(|s| HeaderValue::from_str(&s).ok())
        .map(|v| (names::AAUTH_REQUIREMENT, v))
}

/// An RFC 9457 body with the `error` member draft -11 requires of every AAuth error
/// (§Error Response Format: receivers proceed from it).
fn problem(status: StatusCode, error: &str, title: &str, detail: &str) -> String {
    serde_json::json!({ "type": "about:blank", "status": status.as_u16(), "title": title, "error": error, "detail": detail })
        .to_string()
}
