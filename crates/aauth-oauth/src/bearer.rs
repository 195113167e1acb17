//! Reading a bearer token off a request (RFC 6750 §2.1), and the verifier as a trait
//! object a resource can hold whatever its fetcher.

use std::future::Future;
use std::pin::Pin;

use http::HeaderMap;

use crate::{AccessTokenClaims, AccessTokenVerifier, OAuthError};

/// The OAuth credential an `Authorization` field carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential<'a> {
    /// `Bearer <token>` (RFC 6750 §2.1).
    Bearer(&'a str),
    /// `DPoP <token>` (RFC 9449 §7.1): valid only with a `DPoP` proof.
    Dpop(&'a str),
}

/// The OAuth credential of a request, if it has one: `None` when there is no
/// `Authorization` field whose scheme is `Bearer` or `DPoP` (AAuth's, Basic, …).
///
/// The scheme compares case-insensitively; the token must be RFC 6750's `b64token`
/// (`[A-Za-z0-9-._~+/]+=*`), after exactly one space. A `Bearer` or `DPoP` field is
/// looked for among all of a request's `Authorization` fields, not only the first: one
/// hidden behind another scheme's field, or spelled with a tab, is refused rather than
/// passed over (an API behind the resource may read it).
///
/// ```
/// use aauth_oauth::{Credential, credential};
/// let mut h = http::HeaderMap::new();
/// assert_eq!(credential(&h), Ok(None));
/// h.insert("authorization", "Bearer abc.def.ghi".parse().unwrap());
/// assert_eq!(credential(&h), Ok(Some(Credential::Bearer("abc.def.ghi"))));
/// h.insert("authorization", "bearer  two spaces".parse().unwrap());
/// assert!(credential(&h).is_err());
/// h.insert("authorization", "Basic eA==".parse().unwrap());
/// assert_eq!(credential(&h), Ok(None));
/// h.append("authorization", "Bearer abc".parse().unwrap());
/// assert!(credential(&h).is_err());
/// ```
///
/// # Errors
///
/// [`OAuthError::Request`] (`400 invalid_request`): a `Bearer` or `DPoP` field beside
/// another `Authorization` field, or one that is not one `b64token` after one space.
pub fn credential(headers: &HeaderMap) -> Result<Option<Credential<'_>>, OAuthError> {
    let bad = |reason| OAuthError::Request { reason };
    let mut found = None;
    let mut count = 0usize;
    for field in headers.get_all(http::header::AUTHORIZATION).iter() {
        count += 1;
        let bytes = field.as_bytes();
        let end = bytes
            .iter()
            .position(|b| *b == b' ' || *b == b'\t')
            .unwrap_or(bytes.len());
        let (scheme, rest) = bytes.split_at(end);
        let dpop = if scheme.eq_ignore_ascii_case(b"Bearer") {
            false
        } else if scheme.eq_ignore_ascii_case(b"DPoP") {
            true
        } else {
            continue;
        };
        if found.is_some() {
            return Err(bad("more than one Authorization field"));
        }
        let token = match rest.strip_prefix(b" ").map(std::str::from_utf8) {
            Some(Ok(token)) if b64token(token) => token,
            _ => return Err(bad("the credential is not one b64token after one space")),
        };
        found = Some(if dpop {
            Credential::Dpop(token)
        } else {
            Credential::Bearer(token)
        });
    }
    if found.is_some() && count > 1 {
        return Err(bad("more than one Authorization field"));
    }
    Ok(found)
}

/// RFC 6750 §2.1 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" )
/// *"="`, the syntax a token must have to be sent as `Bearer` or `DPoP`.
pub(crate) fn b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// A token sent as `Bearer` must not be bound to a key (RFC 9449 §7.1): a bound one is
/// valid only with a DPoP proof. Nor by any other `cnf` method (an mTLS certificate's
/// `x5t#S256`, RFC 8705 §3): a stolen sender-constrained token is no bearer token here.
///
/// # Errors
///
/// [`OAuthError::Binding`] for a token with `cnf.jkt` or another confirmation method.
pub(crate) fn bearer_only(claims: AccessTokenClaims) -> Result<AccessTokenClaims, OAuthError> {
    if claims.jkt().is_some() {
        return Err(OAuthError::Binding {
            reason: "sent as a bearer token, without a DPoP proof",
        });
    }
    if claims.bound_otherwise() {
        return Err(OAuthError::Binding {
            reason: "bound by a confirmation method (cnf) this resource does not check",
        });
    }
    Ok(claims)
}

/// A verifier of access tokens, as a trait object: what a resource's route holds.
pub trait VerifyAccessToken: Send + Sync + std::fmt::Debug {
    /// Verifies a token whatever its binding, for a caller that checks the DPoP proof
    /// itself ([`AccessTokenVerifier::verify_token`]).
    fn verify_token<'a>(
        &'a self,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<AccessTokenClaims, OAuthError>> + Send + 'a>>;

    /// Verifies a token sent as `Bearer`: as [`VerifyAccessToken::verify_token`], and a
    /// token bound to a key refused ([`AccessTokenVerifier::verify_bearer`]).
    fn verify_bearer<'a>(
        &'a self,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<AccessTokenClaims, OAuthError>> + Send + 'a>> {
        Box::pin(async move { bearer_only(self.verify_token(token).await?) })
    }
}

impl<F: aauth_metadata::Fetch> VerifyAccessToken for AccessTokenVerifier<F> {
    fn verify_token<'a>(
        &'a self,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<AccessTokenClaims, OAuthError>> + Send + 'a>> {
        Box::pin(Self::verify_token(self, token))
    }
}
