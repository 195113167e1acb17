//! Why an OAuth access token was refused, and how that goes on the wire (RFC 6750 §3).

use std::fmt::Write as _;

use crate::AlgorithmRefusal;

/// Why a bearer (or DPoP-bound) access token was refused.
///
/// Each variant names the check that failed. [`OAuthError::code`] and
/// [`OAuthError::status`] give the RFC 6750 §3.1 error code and HTTP status, and
/// [`OAuthError::www_authenticate`] the challenge: this is the one place an OAuth failure
/// is mapped to the wire.
///
/// ```
/// use aauth_oauth::OAuthError;
/// let e = OAuthError::InsufficientScope { missing: "write".to_owned() };
/// assert_eq!((e.status(), e.code()), (403, "insufficient_scope"));
/// assert_eq!(
///     e.www_authenticate(Some("https://api.example"), Some("read write")),
///     r#"Bearer realm="https://api.example", error="insufficient_scope", error_description="the token lacks scope write", scope="read write""#,
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The `Authorization` field is not one `Bearer` credential in the RFC 6750 §2.1
    /// syntax (or the token was sent twice, or in a query or body as well).
    #[error("malformed credentials: {reason}")]
    Request {
        /// What was wrong.
        reason: &'static str,
    },
    /// The token is not a compact JWS of base64url segments (longer than accepted,
    /// unsigned, not three segments, not canonical base64url, not UTF-8 JSON).
    #[error("malformed token: {reason}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
    },
    /// The JOSE header is not acceptable (a member twice, `crit`, a key-carrying member,
    /// …).
    #[error("token header: {reason}")]
    Header {
        /// What was wrong.
        reason: String,
    },
    /// The header's `alg` is `none`, HMAC where keys are published, not how the issuer
    /// signs, or not implemented.
    #[error("token alg {alg:?} is {}", refusal.as_str())]
    Algorithm {
        /// The `alg` value.
        alg: String,
        /// Forbidden, unsupported, or not the issuer's.
        refusal: AlgorithmRefusal,
    },
    /// `typ` is not one the policy accepts (RFC 9068 §2.1: `at+jwt`).
    #[error("token typ {typ:?} is not an access token type the resource accepts")]
    Type {
        /// The `typ` value, if any.
        typ: Option<String>,
    },
    /// A claim is absent, of the wrong type, or malformed.
    #[error("claim {claim}: {reason}")]
    Claim {
        /// The claim.
        claim: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// `iss` is not an issuer the resource trusts.
    #[error("issuer {iss:?} is not trusted here")]
    UnknownIssuer {
        /// The `iss` value.
        iss: String,
    },
    /// `exp` has passed (beyond the leeway).
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// `exp`.
        exp: u64,
        /// The verifier's time.
        now: u64,
    },
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("token is not valid before {not_before} (now {now})")]
    NotYetValid {
        /// `nbf` or `iat`.
        not_before: u64,
        /// The verifier's time.
        now: u64,
    },
    /// The token lives longer than the policy accepts.
    #[error("token lifetime {lifetime} s exceeds the {max} s accepted")]
    Lifetime {
        /// `exp - iat`.
        lifetime: u64,
        /// The policy's maximum.
        max: u64,
    },
    /// `aud` does not name this resource.
    #[error("audience {found:?} does not include {expected}")]
    Audience {
        /// The resource's identifier.
        expected: String,
        /// The token's `aud` values.
        found: Vec<String>,
    },
    /// The issuer publishes no usable key under the token's `kid`.
    #[error("key {kid:?}: {reason}")]
    Key {
        /// The `kid`.
        kid: String,
        /// Why (unknown, or refused by the key policy).
        reason: String,
    },
    /// The token names no key (`kid` is optional, RFC 7515 §4.1.4) and the issuer does not
    /// publish exactly one key for its `alg`: none (after one refetch), or several, which
    /// only a `kid` could tell apart.
    #[error("no kid, and the issuer publishes {candidates} keys for {alg} (exactly one is needed)")]
    NoSoleKey {
        /// The token's `alg`.
        alg: String,
        /// How many of the issuer's keys fit `alg`.
        candidates: usize,
    },
    /// The signature does not verify (after one refetch of the issuer's keys), or the
    /// key does not verify the token's `alg`.
    #[error("signature does not verify")]
    Signature,
    /// The token is bound to a key (`cnf.jkt`, RFC 9449 §6) and came without a DPoP
    /// proof, or its proof is not by that key.
    #[error("token is bound to a DPoP key: {reason}")]
    Binding {
        /// What was wrong.
        reason: &'static str,
    },
    /// The DPoP proof is missing, malformed, for another request, outside its time
    /// window, replayed, or not signed by its key (RFC 9449 §7.1 `invalid_dpop_proof`).
    #[error("DPoP proof: {reason}")]
    DpopProof {
        /// What was wrong.
        reason: String,
    },
    /// The resource requires a nonce it issued in the DPoP proof, and this one has
    /// none, or a stale or foreign one (RFC 9449 §9 `use_dpop_nonce`): the client sends
    /// the proof again with the nonce in the refusal's `DPoP-Nonce`.
    #[error("DPoP nonce: {reason}")]
    DpopNonce {
        /// What was wrong.
        reason: &'static str,
    },
    /// The token is valid but lacks a scope the route requires (`403`).
    #[error("the token lacks scope {missing}")]
    InsufficientScope {
        /// The first missing scope.
        missing: String,
    },
    /// The issuer's metadata or keys cannot be had now (fetch failing, backing off, too
    /// many fetches): `503`, verification fails closed.
    #[error("issuer keys unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
    },
    /// The proof's key, or the keys its token's issuer bound, already hold their whole
    /// share of the replay store: only their proofs are refused, `429` with
    /// `Retry-After` until the oldest leave the window; other clients are unaffected.
    #[error("too many proofs within the window: {reason}")]
    RateLimited {
        /// Whose share is full.
        reason: String,
        /// Seconds until the oldest of the share's entries leave the window.
        retry_after: u64,
    },
}

impl OAuthError {
    /// The RFC 6750 §3.1 error code.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Request { .. } => "invalid_request",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::DpopProof { .. } => "invalid_dpop_proof",
            Self::DpopNonce { .. } => "use_dpop_nonce",
            // A 503 carries no challenge error; "invalid_token" would tell a client to
            // drop a token that may be good.
            Self::Unavailable { .. } => "temporarily_unavailable",
            Self::RateLimited { .. } => "rate_limited",
            _ => "invalid_token",
        }
    }

    /// The HTTP status (RFC 6750 §3.1; `503` when a dependency is down, `429` for a
    /// client past its share of the replay store).
    #[must_use]
    pub const fn status(&self) -> u16 {
        match self {
            Self::Request { .. } => 400,
            Self::InsufficientScope { .. } => 403,
            Self::Unavailable { .. } => 503,
            Self::RateLimited { .. } => 429,
            _ => 401,
        }
    }

    /// The `WWW-Authenticate` value for this failure: `Bearer`, the `realm` if given,
    /// `error`, an `error_description` reduced to the characters RFC 6750 §3 allows, and
    /// `scope` (the route's) for `insufficient_scope`. A `503` or a `429` has none: it
    /// is not a challenge ([`OAuthError::status`]).
    #[must_use]
    pub fn www_authenticate(&self, realm: Option<&str>, scope: Option<&str>) -> String {
        BearerChallenge {
            realm: realm.map(str::to_owned),
            scope: scope.map(str::to_owned),
            resource_metadata: None,
        }
        .render(Some(self))
    }
}

/// What a resource's `Bearer` challenge says beside the error (RFC 6750 §3, RFC 9728
/// §5.1).
///
/// ```
/// use aauth_oauth::BearerChallenge;
/// let mut c = BearerChallenge::default();
/// c.realm = Some("api".to_owned());
/// c.scope = Some("read".to_owned());
/// assert_eq!(c.render(None), r#"Bearer realm="api", scope="read""#);
/// assert_eq!(c.render_dpop(None, "ES256"), r#"DPoP realm="api", scope="read", algs="ES256""#);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BearerChallenge {
    /// `realm`.
    pub realm: Option<String>,
    /// The scopes the route requires, space-separated: sent on the challenge without an
    /// error and with `insufficient_scope`.
    pub scope: Option<String>,
    /// The URL of the RFC 9728 protected-resource metadata.
    pub resource_metadata: Option<String>,
}

impl BearerChallenge {
    /// The `WWW-Authenticate` value: for `error`, or (without one) the challenge to a
    /// request that sent no credentials, which carries no error code (RFC 6750 §3.1).
    /// Every value is quoted and reduced to the characters the RFCs allow (`%x20-21 /
    /// %x23-5B / %x5D-7E`). A `503` error adds no error parameters: it is not a
    /// challenge.
    #[must_use]
    pub fn render(&self, error: Option<&OAuthError>) -> String {
        self.render_scheme("Bearer", error, None)
    }

    /// The `DPoP` challenge (RFC 9449 §7.1): as [`BearerChallenge::render`], with the
    /// `DPoP` scheme and `algs`, the proof algorithms accepted (space-separated).
    #[must_use]
    pub fn render_dpop(&self, error: Option<&OAuthError>, algs: &str) -> String {
        self.render_scheme("DPoP", error, Some(algs))
    }

    fn render_scheme(
        &self,
        scheme: &str,
        error: Option<&OAuthError>,
        algs: Option<&str>,
    ) -> String {
        let mut out = String::from(scheme);
        let mut sep = " ";
        let mut param = |out: &mut String, name: &str, value: &str| {
            let _ = write!(out, "{sep}{name}=\"");
            out.extend(value.chars().map(|c| {
                if matches!(c, ' '..='~') && c != '"' && c != '\\' {
                    c
                } else {
                    '?'
                }
            }));
            out.push('"');
            sep = ", ";
        };
        if let Some(realm) = &self.realm {
            param(&mut out, "realm", realm);
        }
        let error = error.filter(|e| e.status() != 503 && e.status() != 429);
        if let Some(e) = error {
            param(&mut out, "error", e.code());
            param(&mut out, "error_description", &e.to_string());
        }
        if let Some(scope) = &self.scope
            && error.is_none_or(|e| e.code() == "insufficient_scope")
        {
            param(&mut out, "scope", scope);
        }
        if let Some(algs) = algs {
            param(&mut out, "algs", algs);
        }
        if let Some(url) = &self.resource_metadata {
            param(&mut out, "resource_metadata", url);
        }
        out
    }
}
