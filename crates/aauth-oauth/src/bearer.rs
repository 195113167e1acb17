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
/// `Authorization` field or its scheme is another (AAuth's, Basic, …).
///
/// The scheme compares case-insensitively; the token must be RFC 6750's `b64token`
/// (`[A-Za-z0-9-._~+/]+=*`), after exactly one space.
///
/// ```
/// use aauth_oauth::{Credential, credential};
/// let mut h = http::HeaderMap::new();
/// assert_eq!(credential(&h), Ok(None));
/// h.insert("authorization", "Bearer abc.def.ghi".parse().unwrap());
/// assert_eq!(credential(&h), Ok(Some(Credential::Bearer("abc.def.ghi"))));
/// h.insert("authorization", "bearer  two spaces".parse().unwrap());
/// assert!(credential(&h).is_err());
/// ```
///
/// # Errors
///
/// [`OAuthError::Request`] (`400 invalid_request`): several `Authorization` fields, or a
/// `Bearer`/`DPoP` credential that is not one `b64token`.
pub fn credential(headers: &HeaderMap) -> Result<Option<Credential<'_>>, OAuthError> {
    let mut fields = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(field) = fields.next() else {
        return Ok(None);
    };
    let bad = |reason| OAuthError::Request { reason };
    let Ok(text) = field.to_str() else {
        return Ok(None);
    };
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    let dpop = if scheme.eq_ignore_ascii_case("Bearer") {
        false
    } else if scheme.eq_ignore_ascii_case("DPoP") {
        true
    } else {
        return Ok(None);
    };
    if fields.next().is_some() {
        return Err(bad("more than one Authorization field"));
    }
    if !b64token(token) {
        return Err(bad("the credential is not one b64token after one space"));
    }
    Ok(Some(if dpop {
        Credential::Dpop(token)
    } else {
        Credential::Bearer(token)
    }))
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
