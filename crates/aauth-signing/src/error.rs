//! Errors, and how each verification failure maps onto a `Signature-Error` code and the
//! response headers to send (Signature-Key -09 §5, draft -11 §11.3.4).

use aauth_headers::{
    AcceptSignatureAlg, AcceptSignatureScheme, ErrorCode, MemberError, ParseError,
    SignatureErrorHeader, names,
};
use aauth_keys::{KeyError, KeySignError};
use aauth_tokens::{ResolveError, TokenError};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::verify::VerifyPolicy;

/// A component value could not be produced from the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ComponentError {
    /// A covered field is absent from the message.
    #[error("covered field {name} is absent from the message")]
    AbsentField {
        /// The field name.
        name: String,
    },
    /// A covered field holds bytes outside visible ASCII.
    #[error("covered field {name} is not visible ASCII")]
    NonAsciiField {
        /// The field name.
        name: String,
    },
    /// A derived component this implementation does not produce (`@status` on a request,
    /// `@query-param`, an unknown name).
    #[error("derived component {name} is not supported on requests")]
    UnsupportedDerived {
        /// The component name.
        name: String,
    },
    /// A component parameter (`sf`, `key`, `bs`, `req`, `tr`, `name`) this implementation
    /// does not apply.
    #[error("component parameters are not supported: {component}")]
    UnsupportedParameter {
        /// The component as written.
        component: String,
    },
    /// Neither `Host` nor `:authority` is present.
    #[error("the request has no authority")]
    NoAuthority,
    /// `Host` appears twice or disagrees with `:authority`.
    #[error("Host and :authority disagree or Host is repeated")]
    AmbiguousAuthority,
    /// The authority is not a host with an optional numeric port.
    #[error("the authority is malformed")]
    BadAuthority,
    /// The request is addressed to another server than this one: signed for `found`,
    /// it was sent (or relayed) here (`invalid_signature`).
    #[error("the request is addressed to {found}, not to this server")]
    WrongAuthority {
        /// The authority the request names (normalized).
        found: String,
    },
}

/// Why a request could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// No signing label was given.
    #[error("at least one signature label is required")]
    NoLabels,
    /// An explicit component list leaves out a component the profile requires.
    #[error("the covered components must include {component}")]
    MissingRequiredComponent {
        /// The component.
        component: String,
    },
    /// A component value could not be produced.
    #[error(transparent)]
    Component(#[from] ComponentError),
    /// A header could not be serialized.
    #[error("cannot serialize {field}: {source}")]
    Serialize {
        /// The field.
        field: &'static str,
        /// The cause.
        #[source]
        source: aauth_headers::SerializeError,
    },
    /// The key could not sign.
    #[error(transparent)]
    Key(#[from] KeySignError),
    /// No randomness for a `nonce`.
    #[error("no randomness for a nonce: {0}")]
    Random(#[from] aauth_keys::rand::RandomError),
}

/// Why a request's signature was refused.
///
/// [`VerifyError::code`] gives the `Signature-Error` code each variant is answered with,
/// [`VerifyError::status`] the HTTP status (401 for every signature failure, as draft -11
/// pins), and [`VerifyError::response_headers`] the headers to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// `Signature`, `Signature-Input` or `Signature-Key` is absent (`invalid_signature`
    /// in published -11).
    #[error("missing {name} header")]
    MissingHeader {
        /// The header.
        name: &'static str,
    },
    /// A signature header is oversized or not a valid structured field.
    #[error("malformed signature header: {0}")]
    Header(#[source] ParseError),
    /// More signature labels than the policy allows.
    #[error("{count} signature labels exceed the limit of {max}")]
    TooManyLabels {
        /// Labels present.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// No label can be chosen: the named label is absent, or several candidates remain.
    #[error("no signature label to verify: {reason}")]
    NoLabel {
        /// Why.
        reason: &'static str,
    },
    /// The selected label's member in `Signature-Input` or `Signature` is unusable.
    #[error("{field} member {label} is unusable: {reason}")]
    BadMember {
        /// The field.
        field: &'static str,
        /// The label.
        label: String,
        /// Why.
        #[source]
        reason: MemberError,
    },
    /// The selected label has no `Signature-Key` member (-09 §3.1).
    #[error("Signature-Key has no member for label {label}")]
    NoKeyMember {
        /// The label.
        label: String,
    },
    /// Required components are not covered (`invalid_input` with `required_input`).
    #[error("the signature does not cover required components")]
    MissingComponents {
        /// Every component this request must cover.
        required: Vec<String>,
    },
    /// `created` is absent.
    #[error("the signature has no created parameter")]
    CreatedMissing,
    /// `created` is older than the window (`invalid_signature`).
    #[error("created {created} is more than {window}s before now ({now})")]
    CreatedTooOld {
        /// `created`.
        created: i64,
        /// The verifier's time.
        now: u64,
        /// The window.
        window: u64,
    },
    /// `created` is ahead of the verifier's clock by more than the window (`clock_skew`).
    #[error("created {created} is more than {window}s after now ({now})")]
    CreatedInFuture {
        /// `created`.
        created: i64,
        /// The verifier's time.
        now: u64,
        /// The window.
        window: u64,
    },
    /// `expires` has passed, or is before `created`.
    #[error("the signature expired at {expires}")]
    Expired {
        /// `expires`.
        expires: i64,
    },
    /// The selected member's scheme is not accepted here (`unsupported_scheme`).
    #[error("Signature-Key scheme {} is not accepted here", scheme.as_deref().unwrap_or("(not a token)"))]
    UnsupportedScheme {
        /// The scheme token, if the member had one.
        scheme: Option<String>,
    },
    /// The selected member's parameters are unusable for its scheme.
    #[error("Signature-Key member {label} is unusable: {reason}")]
    BadKeyMember {
        /// The label.
        label: String,
        /// Why.
        #[source]
        reason: MemberError,
        /// `invalid_key` for schemes that carry a key, `invalid_signature` otherwise.
        code: ErrorCode,
    },
    /// The key is refused (`invalid_key`, or `unsupported_algorithm` for the algorithm
    /// cases of [`KeyError::is_unsupported_algorithm`]).
    #[error("key refused: {0}")]
    Key(#[source] KeyError),
    /// The key's algorithm is valid but not accepted by this verifier's policy.
    #[error("algorithm {alg} is not accepted here")]
    AlgorithmNotAccepted {
        /// The algorithm.
        alg: String,
    },
    /// A `jkt-jwt`'s enclave key (the header `jwk` that signed the delegation) has a
    /// valid algorithm this verifier's policy does not accept (`unsupported_algorithm`):
    /// the header key is held to Algorithm Determination as the delegated key is
    /// (Signature-Key -09 §3.5, §3.3), and so to the algorithms the verifier accepts,
    /// not only to those it can verify.
    #[error("the jkt-jwt enclave key's algorithm {alg} is not accepted here")]
    EnclaveAlgorithmNotAccepted {
        /// The enclave key's algorithm.
        alg: String,
    },
    /// The JWT in `Signature-Key` was refused.
    #[error("Signature-Key JWT: {0}")]
    Token(#[source] TokenError),
    /// The JWT verified but its issuer revoked it (`revoked_jwt`).
    #[error("the Signature-Key {} was revoked by its issuer", token_type.typ())]
    Revoked {
        /// Which kind of token (a resource answers a revoked auth token with
        /// `requirement=person-token` beside the error, draft -11 §Revocation).
        token_type: aauth_tokens::TokenType,
    },
    /// The `keyid` parameter names another key than `Signature-Key` (-09 §4.3).
    #[error("keyid does not identify the Signature-Key key")]
    KeyIdMismatch,
    /// A covered component could not be produced.
    #[error(transparent)]
    Component(#[from] ComponentError),
    /// `Content-Digest` does not match the body.
    #[error("Content-Digest {alg} does not match the body")]
    DigestMismatch {
        /// The algorithm that did not match.
        alg: &'static str,
    },
    /// `Content-Digest` names no algorithm this verifier checks (sha-256, sha-512).
    #[error("Content-Digest has no sha-256 or sha-512 member")]
    DigestUnsupported {
        /// Every component this request must cover.
        required: Vec<String>,
    },
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
    /// The signer is not one this server takes requests from, decided before any key was
    /// looked up ([`crate::SignerGate`]): `403`, no `Signature-Error` (the signature was
    /// never examined).
    #[error("{signer} is not a signer this server takes requests from")]
    SignerNotAdmitted {
        /// The signer as the `Signature-Key` member names it.
        signer: String,
    },
    /// This exact signed request was already accepted within its window
    /// (`invalid_signature`, `401`).
    #[error("this signed request was already accepted (replay)")]
    Replayed,
    /// The signer already has its whole share of the replay store live: its
    /// state-changing requests are refused (`429`) until the oldest leave the window.
    #[error("too many state-changing requests from this key ({share} within the window)")]
    ReplayShareExceeded {
        /// The share.
        share: usize,
    },
    /// The signer's issuer (every key it vouched for, together) already has its whole
    /// share of the replay store live: its signers' state-changing requests are refused
    /// (`429`) until the oldest leave the window; other issuers' are unaffected.
    #[error(
        "too many state-changing requests from keys of this signer's issuer ({share} within the window)"
    )]
    IssuerReplayShareExceeded {
        /// The share.
        share: usize,
    },
    /// A dependency of verification is unavailable right now (issuer keys unreachable with
    /// nothing cached, revocation store down): a server condition answered with `503`, not
    /// a verdict on the request. Verification fails closed.
    #[error("verification unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
    },
    /// Discovering the key of a `jwks_uri` or `jwks` member failed: `issuer_missing`,
    /// `issuer_mismatch`, `unknown_key`, `invalid_key`/`unsupported_algorithm`, or a `503`
    /// when the signer's keys cannot be fetched now.
    #[error("key discovery: {0}")]
    KeyDiscovery(#[source] ResolveError),
}

fn key_error_code(e: &KeyError) -> ErrorCode {
    if e.is_unsupported_algorithm() {
        ErrorCode::UnsupportedAlgorithm
    } else {
        ErrorCode::InvalidKey
    }
}

fn token_error_code(e: &TokenError) -> Option<ErrorCode> {
    Some(match e {
        TokenError::Expired { .. } => ErrorCode::ExpiredJwt,
        TokenError::IssuedInFuture { .. } => ErrorCode::ClockSkew,
        TokenError::Confirmation(k) => key_error_code(k),
        // A `jkt-jwt`'s header key (-09 §3.5): its algorithm cases are the client's key's,
        // `unsupported_algorithm`; anything else wrong with it is the JWT's.
        TokenError::HeaderKey(k) if k.is_unsupported_algorithm() => ErrorCode::UnsupportedAlgorithm,
        TokenError::KeyResolution(r) => match r {
            ResolveError::IssuerMissing => ErrorCode::IssuerMissing,
            ResolveError::IssuerMismatch { .. } => ErrorCode::IssuerMismatch,
            ResolveError::UnknownKey { .. } => ErrorCode::UnknownKey,
            ResolveError::Key(_) | ResolveError::Untrusted { .. } => ErrorCode::InvalidJwt,
            ResolveError::Unavailable { .. } => return None,
            _ => ErrorCode::InvalidJwt,
        },
        _ => ErrorCode::InvalidJwt,
    })
}

impl VerifyError {
    /// The `Signature-Error` code, or `None` for [`VerifyError::Unavailable`] (a `503`),
    /// [`VerifyError::ReplayShareExceeded`] and [`VerifyError::IssuerReplayShareExceeded`]
    /// (a `429`) and
    /// [`VerifyError::SignerNotAdmitted`] (a `403`), which are no verdict on the
    /// signature.
    #[must_use]
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Self::ReplayShareExceeded { .. }
            | Self::IssuerReplayShareExceeded { .. }
            | Self::SignerNotAdmitted { .. } => return None,
            Self::MissingComponents { .. } | Self::DigestUnsupported { .. } => {
                ErrorCode::InvalidInput
            }
            Self::CreatedInFuture { .. } => ErrorCode::ClockSkew,
            Self::UnsupportedScheme { .. } => ErrorCode::UnsupportedScheme,
            Self::BadKeyMember { code, .. } => code.clone(),
            Self::Key(e) => key_error_code(e),
            Self::AlgorithmNotAccepted { .. } | Self::EnclaveAlgorithmNotAccepted { .. } => {
                ErrorCode::UnsupportedAlgorithm
            }
            Self::Token(e) => return token_error_code(e),
            Self::Revoked { .. } => ErrorCode::RevokedJwt,
            Self::Unavailable { .. } => return None,
            Self::KeyDiscovery(e) => match e {
                ResolveError::IssuerMissing => ErrorCode::IssuerMissing,
                ResolveError::IssuerMismatch { .. } => ErrorCode::IssuerMismatch,
                ResolveError::UnknownKey { .. } => ErrorCode::UnknownKey,
                ResolveError::Key(k) => key_error_code(k),
                ResolveError::Unavailable { .. } => return None,
                _ => ErrorCode::InvalidKey,
            },
            _ => ErrorCode::InvalidSignature,
        })
    }

    /// The HTTP status: `401` for every signature failure (draft -11, "Verification (Server)"),
    /// `503` when a dependency (the key, the revocation or replay store) is unavailable,
    /// `429` for a signer past its share of the replay store.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match (self, self.code()) {
            (Self::ReplayShareExceeded { .. } | Self::IssuerReplayShareExceeded { .. }, _) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            (Self::SignerNotAdmitted { .. }, _) => StatusCode::FORBIDDEN,
            (_, Some(_)) => StatusCode::UNAUTHORIZED,
            (_, None) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `Signature-Error` header value.
    #[must_use]
    pub fn signature_error(&self) -> Option<SignatureErrorHeader> {
        let code = self.code()?;
        Some(match self {
            Self::MissingComponents { required } | Self::DigestUnsupported { required } => {
                SignatureErrorHeader::invalid_input(required.clone())
            }
            _ => SignatureErrorHeader::new(code),
        })
    }

    /// The response headers: `Signature-Error`, plus `Accept-Signature-Scheme` with
    /// `unsupported_scheme` and `Accept-Signature-Alg` with `unsupported_algorithm`, from
    /// `policy`.
    #[must_use]
    pub fn response_headers(&self, policy: &VerifyPolicy) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(2);
        let Some(se) = self.signature_error() else {
            return out;
        };
        if let Some(v) = se
            .serialize()
            .ok()
            .and_then(|s| HeaderValue::from_str(&s).ok())
        {
            out.push((names::SIGNATURE_ERROR, v));
        }
        let extra = match se.code {
            ErrorCode::UnsupportedScheme => AcceptSignatureScheme(policy.accepted_schemes.clone())
                .serialize()
                .ok()
                .map(|s| (names::ACCEPT_SIGNATURE_SCHEME, s)),
            ErrorCode::UnsupportedAlgorithm => AcceptSignatureAlg(
                policy
                    .accepted_algorithms
                    .iter()
                    .map(|a| a.as_str().to_owned())
                    .collect(),
            )
            .serialize()
            .ok()
            .map(|s| (names::ACCEPT_SIGNATURE_ALG, s)),
            _ => None,
        };
        if let Some((name, v)) = extra
            && let Ok(v) = HeaderValue::from_str(&v)
        {
            out.push((name, v));
        }
        out
    }

    /// The `Retry-After` seconds for an answer that is no verdict on the signature: a
    /// store or issuer that is down is tried again soon (`503`); a signer past its replay
    /// share waits for its oldest entries to leave the window (`429`).
    #[must_use]
    pub fn retry_after(&self, policy: &VerifyPolicy) -> Option<u64> {
        match self.status() {
            StatusCode::SERVICE_UNAVAILABLE => Some(1),
            StatusCode::TOO_MANY_REQUESTS => Some(policy.window().as_secs().max(1)),
            _ => None,
        }
    }

    /// The whole answer to a request that failed verification under `policy`: the
    /// status, `Signature-Error` (and the `Accept-Signature-*` fields where they apply),
    /// and the RFC 9457 body.
    #[must_use]
    pub fn into_http_response(self, policy: &VerifyPolicy) -> http::Response<String> {
        let mut r = http::Response::new(self.problem_json());
        *r.status_mut() = self.status();
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in self.response_headers(policy) {
            r.headers_mut().append(name, value);
        }
        if let Some(secs) = self.retry_after(policy) {
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }

    /// An RFC 9457 problem body with `type` `urn:ietf:params:sig-error:<code>` (-09 §5.2).
    #[must_use]
    pub fn problem_json(&self) -> String {
        let status = self.status().as_u16();
        let mut body = serde_json::json!({
            "status": status,
            "detail": self.to_string(),
        });
        if let Some(code) = self.code() {
            body["type"] = format!("urn:ietf:params:sig-error:{}", code.as_str()).into();
            body["title"] = "Signature verification failed".into();
            body["error"] = code.as_str().into();
        } else if matches!(self, Self::ReplayShareExceeded { .. }) {
            body["title"] = "Too many requests from this key".into();
            body["error"] = "rate_limited".into();
        } else if matches!(self, Self::IssuerReplayShareExceeded { .. }) {
            body["title"] = "Too many requests from keys of this issuer".into();
            body["error"] = "rate_limited".into();
        } else if matches!(self, Self::SignerNotAdmitted { .. }) {
            body["title"] = "Signer not accepted here".into();
            body["error"] = "forbidden".into();
        } else {
            body["title"] = "Verification temporarily unavailable".into();
            body["error"] = "temporarily_unavailable".into();
        }
        body.to_string()
    }
}
