//! What an Access Server answers this Person Server, read once (draft -11, "Access
//! Server" and "Deferred Responses"): a typed reply whose pending URL is parsed and
//! compared as a URL, whose `AAuth-Requirement` is parsed as the structured field it is,
//! and whose body is read by serde, each failure a named [`PsError::AccessServerUnreachable`].

use aauth_headers::{AAuthRequirement, Requirement};
use aauth_metadata::HttpsUrl;
use aauth_tokens::ServerId;
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;

use crate::PsError;

/// The longest question from an Access Server passed on.
const MAX_QUESTION: usize = 4000;

/// An Access Server's answer to a token request, or to a poll of its pending URL.
#[derive(Debug)]
pub(super) enum AccessReply {
    /// `200`: the auth token, to be checked before the agent sees it.
    Token {
        /// The `auth_token` member.
        auth_token: String,
    },
    /// A terminal refusal, relayed to the agent (`error` at most 64 bytes, `detail` at
    /// most 500 characters): a status the draft gives the Access Server's token endpoint
    /// errors (`400`, `403`), or, to a poll of its pending URL, its polling errors (`408`
    /// `expired`, `410` `invalid_code`). Any other `4xx` but `402` and `429` names no
    /// decision about the request (a `401` refuses this server's own signature; a `404`
    /// or `405` is no endpoint): [`AccessReply::read`] fails it, `as_unreachable`.
    Refused {
        /// The status.
        status: u16,
        /// The `error` member (`denied` when absent or unusable).
        error: String,
        /// The `detail` member.
        detail: String,
    },
    /// `429`: too many requests (its `Retry-After` in seconds, if it gave one that is).
    Busy {
        /// The `error` member (`rate_limited` when absent or unusable).
        error: String,
        /// The `detail` member.
        detail: String,
        /// Its `Retry-After`, in delta-seconds.
        retry_after: Option<u64>,
    },
    /// `402`: payment first; then poll `pending`.
    Payment {
        /// Where to poll.
        pending: HttpsUrl,
        /// The `WWW-Authenticate` challenge, for the payment settler.
        challenge: String,
    },
    /// `202`: deferred, with what it requires (if anything).
    Deferred {
        /// Where to poll, or answer.
        pending: HttpsUrl,
        /// The `AAuth-Requirement` value as sent (relayed to the agent unchanged).
        raw_requirement: String,
        /// What it requires; `None` when it only asks to wait.
        requirement: Option<Requirement>,
        /// The body's members the steps read.
        body: DeferredBody,
    },
    /// Any other status.
    Unexpected(StatusCode),
}

/// The members of a deferred answer's body that this server reads; others are ignored
/// (the draft allows extensions).
#[derive(Debug, Default, Deserialize)]
pub(super) struct DeferredBody {
    /// `requirement=clarification`: the question.
    #[serde(default)]
    pub(super) clarification: Option<String>,
    /// `requirement=claims`: the claims it needs.
    #[serde(default)]
    pub(super) required_claims: Vec<String>,
}

/// The members of a final answer's body that this server reads.
#[derive(Debug, Default, Deserialize)]
struct FinalBody {
    #[serde(default)]
    auth_token: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

fn unreachable(what: impl Into<String>) -> PsError {
    PsError::AccessServerUnreachable(what.into())
}

impl AccessReply {
    /// Reads `resp` from `access_server`. `waiting` is the pending URL being polled,
    /// which a deferred answer to a poll may leave out.
    ///
    /// # Errors
    ///
    /// [`PsError::AccessServerUnreachable`] naming what was wrong: a `4xx` that is no
    /// decision about the request (see [`AccessReply::Refused`]), a pending URL on another
    /// origin or missing, a body that is not the JSON the status calls for, an
    /// `AAuth-Requirement` that does not parse, a clarification without a question.
    pub(super) fn read(
        resp: &http::Response<Bytes>,
        access_server: &ServerId,
        waiting: Option<&HttpsUrl>,
    ) -> Result<Self, PsError> {
        let status = resp.status();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if let Some(reply) = Self::refusal(resp, waiting.is_some())? {
            return Ok(reply);
        }
        if status == StatusCode::OK {
            let body: FinalBody = serde_json::from_slice(resp.body())
                .map_err(|e| unreachable(format!("its answer is not JSON: {e}")))?;
            let auth_token = body
                .auth_token
                .ok_or_else(|| unreachable("no auth_token in the answer"))?;
            return Ok(Self::Token { auth_token });
        }
        if status != StatusCode::ACCEPTED && status != StatusCode::PAYMENT_REQUIRED {
            return Ok(Self::Unexpected(status));
        }
        let pending = pending_url(header("location").as_deref(), access_server, waiting)?;
        if status == StatusCode::PAYMENT_REQUIRED {
            return Ok(Self::Payment {
                pending,
                challenge: header("www-authenticate").unwrap_or_default(), // default: a settler sees an empty challenge and refuses
            });
        }
        let raw_requirement = header("aauth-requirement").unwrap_or_default(); // default: no requirement, only wait
        let requirement = if raw_requirement.is_empty() {
            None
        } else {
            Some(
                AAuthRequirement::parse(&raw_requirement)
                    .map_err(|e| unreachable(format!("its AAuth-Requirement: {e}")))?
                    .requirement,
            )
        };
        // The body matters to the steps that read it; for the others it may be anything.
        let needs_body = matches!(
            requirement,
            Some(Requirement::Clarification | Requirement::Claims)
        );
        let body: DeferredBody = match serde_json::from_slice(resp.body()) {
            Ok(body) => body,
            Err(e) if needs_body => {
                return Err(unreachable(format!("its deferred answer is not JSON: {e}")));
            }
            Err(_) => DeferredBody::default(),
        };
        if requirement == Some(Requirement::Clarification)
            && body
                .clarification
                .as_deref()
                .is_none_or(|q| q.trim().is_empty() || q.len() > MAX_QUESTION)
        {
            return Err(unreachable("a clarification without a question"));
        }
        Ok(Self::Deferred {
            pending,
            raw_requirement,
            requirement,
            body,
        })
    }
}

impl AccessReply {
    /// The error a final answer that is no token and no step stands for. `polling` when it
    /// answers a poll: a busy or failing Access Server (`429`, `503`) then keeps the request
    /// where it is ([`PsError::AccessServerPending`]: asked again at the next poll).
    pub(super) fn into_error(self, polling: bool) -> PsError {
        match self {
            Self::Busy { .. } if polling => PsError::AccessServerPending,
            Self::Unexpected(StatusCode::SERVICE_UNAVAILABLE) if polling => {
                PsError::AccessServerPending
            }
            // PS-54: the Access Server's terminal refusal, relayed.
            Self::Refused {
                status,
                error,
                detail,
            } => PsError::AccessServerRefused {
                status,
                error,
                detail,
            },
            // PS-54: a busy Access Server's `Retry-After` reaches the agent with its `429`;
            // without one, the agent would not know when to ask again, and it has no
            // token: `as_unreachable`.
            Self::Busy {
                error,
                detail,
                retry_after: Some(retry_after),
            } => PsError::AccessServerBusy {
                error,
                detail,
                retry_after,
            },
            Self::Busy {
                retry_after: None, ..
            } => unreachable("the Access Server answered 429 without Retry-After"),
            Self::Unexpected(status) => unreachable(format!("the Access Server answered {status}")),
            Self::Token { .. } | Self::Payment { .. } | Self::Deferred { .. } => {
                aauth_metadata::serve::InternalError::Invariant("a final answer that is no step")
                    .into()
            }
        }
    }

    /// A `4xx` (but `402`) answer: a terminal refusal (relayed), `429` (busy), or `None`
    /// for any other status. `polling` when `resp` answers a poll of the pending URL.
    ///
    /// # Errors
    ///
    /// [`PsError::AccessServerUnreachable`] for a `4xx` that is no decision about the
    /// request: `401` (the Access Server refused this server's signature: the agent,
    /// given it, would take it for a refusal of its own), `404`, `405` and the rest.
    fn refusal(resp: &http::Response<Bytes>, polling: bool) -> Result<Option<Self>, PsError> {
        let status = resp.status();
        if !status.is_client_error() || status == StatusCode::PAYMENT_REQUIRED {
            return Ok(None);
        }
        // A refusal's body is relayed as far as it is usable; a body that is not JSON is a
        // refusal without detail (its status is what the agent needs).
        let body: FinalBody = serde_json::from_slice(resp.body()).unwrap_or_default(); // default: an unreadable refusal is still a refusal
        let error = |default: &str| {
            body.error
                .clone()
                .filter(|e| !e.is_empty() && e.len() <= 64)
                .unwrap_or_else(|| default.to_owned())
        };
        let detail: String = body
            .detail
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(500)
            .collect();
        // Draft -11 §Token Endpoint Error Codes (400, 403) and, for a poll, §Polling
        // Error Codes (403, 408, 410): a decision about the request.
        let terminal = matches!(status, StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN)
            || (polling && matches!(status, StatusCode::REQUEST_TIMEOUT | StatusCode::GONE));
        if terminal {
            return Ok(Some(Self::Refused {
                status: status.as_u16(),
                error: error("denied"),
                detail,
            }));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            return Ok(Some(Self::Busy {
                error: error("rate_limited"),
                detail,
                retry_after,
            }));
        }
        if status == StatusCode::UNAUTHORIZED {
            let why = resp
                .headers()
                .get("signature-error")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(200).collect::<String>())
                .unwrap_or_default(); // default: no Signature-Error sent
            return Err(unreachable(format!(
                "the Access Server refused this Person Server's signature (401; Signature-Error: {why:?})"
            )));
        }
        Err(unreachable(format!(
            "the Access Server answered {status}, no decision about the request"
        )))
    }
}

/// The pending URL of a deferred answer: its `Location`, on the Access Server's own
/// origin (a path, or an absolute URL of that origin); when a poll's answer leaves it
/// out, the URL polled.
fn pending_url(
    location: Option<&str>,
    access_server: &ServerId,
    waiting: Option<&HttpsUrl>,
) -> Result<HttpsUrl, PsError> {
    let location = location.unwrap_or_default(); // default: no Location is an empty one
    if location.is_empty() {
        return waiting
            .cloned()
            .ok_or_else(|| unreachable("a deferred answer without a Location"));
    }
    let absolute = if location.starts_with('/') && !location.starts_with("//") {
        format!("{}{location}", access_server.as_str())
    } else {
        location.to_owned()
    };
    let url = HttpsUrl::parse(&absolute)
        .map_err(|e| unreachable(format!("its Location is not an https URL: {e}")))?;
    if url.origin() != access_server.as_str() {
        return Err(unreachable(
            "a deferred answer whose Location is not on the Access Server",
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::pending_url;
    use aauth_metadata::HttpsUrl;
    use aauth_tokens::ServerId;

    #[test]
    fn a_pending_url_is_on_the_access_servers_origin() {
        let origin = ServerId::parse("https://as.example").expect("an origin");
        let ok = |l: &str| pending_url(Some(l), &origin, None).map(|u| u.as_str().to_owned());
        assert_eq!(
            ok("/pending/1").ok().as_deref(),
            Some("https://as.example/pending/1")
        );
        assert_eq!(
            ok("https://as.example/pending/1").ok().as_deref(),
            Some("https://as.example/pending/1")
        );
        // A prefix match is not an origin match.
        assert!(ok("https://as.example.evil/pending/1").is_err());
        assert!(ok("https://as.example@evil.example/p").is_err());
        assert!(ok("//evil.example/p").is_err());
        assert!(ok("https://as.example:8443/p").is_err());
        let polled = HttpsUrl::parse("https://as.example/pending/9").expect("a URL");
        assert_eq!(
            pending_url(None, &origin, Some(&polled))
                .map(|u| u.as_str().to_owned())
                .ok()
                .as_deref(),
            Some("https://as.example/pending/9")
        );
        assert!(pending_url(None, &origin, None).is_err());
    }
}
