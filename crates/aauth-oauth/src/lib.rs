//! AAuth layer 3: living beside OAuth 2.0.
//!
//! The APIs AAuth reaches already accept OAuth access tokens; the draft plans for both on
//! one route (`AAuth-Requirement` and `WWW-Authenticate` are independent, and "a response
//! MAY include both"). This crate verifies the OAuth side with the workspace's own parts:
//!
//! - [`IssuerKey`]: an authorization server's keys (RS256, PS256, ES256, EdDSA), held in
//!   the same key cache as AAuth keys ([`aauth_metadata::KeyCache`], `CachedKey`);
//! - [`AccessToken`]: a JWT access token (RFC 9068 `at+jwt`, or a plain JWT when the
//!   policy allows) checked sans-IO, cheap checks first, the algorithm decided by the key;
//! - [`AccessTokenVerifier`]: discovery of each configured issuer's `jwks_uri` (RFC 8414,
//!   then OpenID Connect), then key lookup and signature; or, for an issuer configured
//!   with a [`SharedSecret`] (HS256, HS384, HS512), that secret and nothing else;
//! - [`DpopCheck`]: DPoP proofs (RFC 9449) checked cheap-first, their `jti` recorded once
//!   in the workspace's replay store; the caller compares the proof's key thumbprint
//!   ([`DpopProof`]'s `jkt`) with the token's `cnf.jkt` (`aauth-resource` does: a token
//!   bound otherwise, or not at all, is refused there);
//! - [`Introspection`]: opaque tokens by RFC 7662, answers kept until the token's `exp`
//!   or a cap, a bounded table, failures answered `503`;
//! - [`ProtectedResourceMetadata`]: the RFC 9728 document a resource serves;
//! - [`OidcClient`]: signing a person in with their OpenID Provider (code flow with PKCE
//!   S256, `state`, `nonce`; the ID token checked as OpenID Connect Core §3.1.3.7 says,
//!   through the same key cache), the person named by `(iss, sub)` ([`SignedIn`]);
//! - [`OAuthError`]: every failure typed, with its RFC 6750 code and status and its
//!   `WWW-Authenticate` challenge ([`BearerChallenge`]), mapped in one place;
//! - the client side: [`ClientCredentials`] (RFC 6749 §4.4 with `client_secret_basic`,
//!   `client_secret_post` or `private_key_jwt`; cached, refreshed ahead of expiry, one
//!   fetch for concurrent callers, retries and the circuit breaker, stale-if-error until
//!   expiry, [`ClientError`] typed; DPoP-bound when given a key), [`BearerLayer`], a
//!   tower layer that puts its token (and a DPoP proof) on outgoing requests, and
//!   [`Presenter`], the same for a caller that sends its requests another way.
//!
//! `aauth-resource`'s feature `oauth` puts the resource side on a route beside AAuth
//! (`OAuthAccess`, `AAuthLayer::oauth`).
//!
//! ```
//! use aauth_keys::time::UnixTime;
//! use aauth_oauth::{AccessToken, AccessTokenPolicy, OAuthError};
//! let policy = AccessTokenPolicy::new("https://api.example");
//! // {"alg":"none"}.{"iss":"https://as.example"}. : unsigned, refused before anything
//! let forged = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2FzLmV4YW1wbGUifQ.";
//! let err = AccessToken::parse(forged, &policy, &|_| true, UnixTime(1_800_000_000)).unwrap_err();
//! assert!(matches!(err, OAuthError::Malformed { .. }));
//! assert_eq!(err.status(), 401);
//! ```

// docs.rs marks each feature-gated item with the feature that enables it.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod bearer;
mod claims;
mod client;
mod dpop;
mod error;
mod introspect;
mod jwt;
mod key;
mod oidc;
mod resource_metadata;
mod secret;
mod verifier;

pub use bearer::{Credential, VerifyAccessToken, credential};
pub use claims::AccessTokenClaims;
pub use client::{
    BearerLayer, BearerService, BearerServiceError, ClientAuth, ClientConfig, ClientCredentials,
    ClientError, IssuedToken, Presenter, REFRESH_PAUSE,
};
pub use dpop::{DpopCheck, DpopNonces, DpopProof, MAX_JTI_LEN, MAX_NONCE_LEN};
pub use error::{BearerChallenge, OAuthError};
pub use introspect::{
    AssertionAudience, DEFAULT_INTROSPECTION_ENTRIES, DEFAULT_INTROSPECTION_TTL, Introspection,
};
pub use jwt::{
    AccessToken, AccessTokenPolicy, IssuerSigning, MAX_TOKEN_BYTES, TokenAlgorithm, TokenTypes,
};
pub use key::{
    AlgorithmRefusal, BadSignature, IssuerKey, JwsAlgorithm, RSA_MAX_BITS, RSA_MIN_BITS,
};
pub use oidc::{
    ID_TOKEN_LEEWAY, ID_TOKEN_MAX_AGE, OidcClient, OidcProvider, PendingSignIn, SignInError,
    SignedIn,
};
pub use resource_metadata::ProtectedResourceMetadata;
pub use secret::{HmacAlgorithm, SecretError, SharedSecret};
pub use verifier::{AccessTokenVerifier, Issuer};

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
