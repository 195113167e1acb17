//! AAuth layer 1: HTTP Message Signatures (RFC 9421) under the AAuth profile of
//! draft-hardt-oauth-aauth-protocol-11, with keys named by `Signature-Key`
//! (draft-hardt-httpbis-signature-key-09).
//!
//! **Signing** ([`sign`]) adds `Content-Digest` when there is a body, then the complete
//! `Signature-Key`, then `Signature-Input` and `Signature` for each label. It always covers
//! `@method @authority @path signature-key`, adds `content-type content-digest` on bodies
//! and `authorization` when a session token is sent, takes `created` from the caller's
//! clock, and never sends the `alg` parameter.
//!
//! **Verifying** ([`Verifier`], or [`prepare`] then [`Prepared::finish`] without I/O) takes
//! `@authority` from `Host` / `:authority` (never the URI's absent authority on a server, never
//! `X-Forwarded-*`) and refuses a request addressed to any host but the server's own
//! ([`AuthoritySource`]: there is no default), enforces the required components (`invalid_input` with
//! `required_input`), the `created` window (too old: `invalid_signature`; ahead:
//! `clock_skew`), the accepted schemes and algorithms, and every `Content-Digest` member,
//! and, once all of that verified, refuses a state-changing request it already accepted
//! ([`ReplayGuard`]); it returns the verified key, scheme identity and label, or a
//! [`VerifyError`] whose
//! [`code`](VerifyError::code), [`status`](VerifyError::status) and
//! [`response_headers`](VerifyError::response_headers) are what the draft says to answer.
//!
//! Keys come from a [`KeyResolver`] the caller supplies. [`SchemeResolver`] resolves `hwk`,
//! `jkt-jwt` and `jwt` (AAuth tokens, through `aauth-tokens`) itself; the fetching schemes
//! are registered on it by the metadata crate.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use aauth_headers::Scheme;
//! use aauth_keys::{PrivateKey, Signer, rand::OsRandom, time::UnixTime};
//! use aauth_signing::{JwtResolver, ReplayGuard, SchemeResolver, Verifier, VerifyPolicy, sign_request};
//! use aauth_tokens::{AgentId, AgentTokenBuilder, ServerId, StaticIssuerKeys, TokenType};
//!
//! let now = UnixTime(1_800_000_000);
//! let provider_key = PrivateKey::ed25519_from_seed(&[1; 32]);
//! let provider = ServerId::parse("https://agent.example")?;
//! let agent_key = PrivateKey::ed25519_from_seed(&[2; 32]);
//! let agent_token = AgentTokenBuilder::new(provider.clone(),
//!         AgentId::parse("aauth:assistant@agent.example")?, agent_key.public_key())
//!     .sign(&provider_key, "key-1", now, &mut OsRandom)?;
//!
//! // The agent signs.
//! let mut request = http::Request::get("https://resource.example/api/documents").body(Vec::new())?;
//! sign_request(&mut request, &agent_key, &Scheme::jwt(agent_token.token), now)?;
//!
//! // The resource sees an origin-form URI and a Host header, and verifies.
//! let (mut parts, body) = request.into_parts();
//! parts.uri = "/api/documents".parse()?;
//! parts.headers.insert("host", "resource.example".parse()?);
//! let issuers = StaticIssuerKeys::new()
//!     .with(&provider, "aauth-agent.json", "key-1", provider_key.public_key().clone());
//! let resolver = SchemeResolver::new().jwt(JwtResolver::new(Arc::new(issuers), &[TokenType::Agent]));
//! let resource = ServerId::parse("https://resource.example")?;
//! let verifier = Verifier::new(VerifyPolicy::for_server(&resource), Arc::new(resolver))
//!     .replay(ReplayGuard::in_memory());
//! let verified = futures_executor::block_on(verifier.verify(&parts, &body, now))?;
//! assert_eq!(&verified.key, agent_key.public_key());
//!
//! // The same request relayed to another server is refused before any key is fetched.
//! parts.headers.insert("host", "other.example".parse()?);
//! let other = futures_executor::block_on(verifier.verify(&parts, &body, now));
//! assert!(other.is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// docs.rs marks each feature-gated item with the feature that enables it.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod base;
mod components;
mod digest;
mod error;
mod replay;
mod resolve;
mod sign;
mod verify;

/// What weakens a verifier, behind a name that says so: a fixed `@authority` that ignores
/// the request's `Host`. (A wider `created` window is [`VerifyPolicy::dangerous`].)
pub mod dangerous {
    use crate::{AuthoritySource, ComponentError, UriScheme};

    /// The authority the signature base uses whatever the request says: for a server
    /// behind a proxy that rewrites `Host` (RFC 9421 §7.4.3). A request signed for
    /// another authority then fails the signature check; but every request that reaches
    /// this server is judged as if addressed to `authority`, so a proxy that forwards
    /// several public names to it must not be configured this way.
    ///
    /// ```
    /// use aauth_signing::{UriScheme, dangerous};
    /// let src = dangerous::fixed_authority("API.example:443", UriScheme::Https)?;
    /// assert!(src.accepts("api.example") && !src.accepts("other.example"));
    /// # Ok::<(), aauth_signing::ComponentError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ComponentError::BadAuthority`] for a value that is not a host with an optional
    /// numeric port.
    pub fn fixed_authority(
        authority: &str,
        scheme: UriScheme,
    ) -> Result<AuthoritySource, ComponentError> {
        AuthoritySource::fixed(authority, scheme)
    }
}

pub use base::{View, signature_base};
pub use components::{AuthoritySource, UriScheme};
pub use digest::content_digest;
pub use error::{ComponentError, SignError, VerifyError};
pub use replay::{
    DEFAULT_REPLAY_ENTRIES, DEFAULT_REPLAY_ISSUER_SHARE, DEFAULT_REPLAY_SHARE, FirstUse,
    MemoryReplayStore, ReplayGuard, ReplayScope, ReplayStore, ReplayStoreError, ReplayUse,
    RevocationReplayStore,
};
pub use resolve::{
    AAUTH_DOCUMENTS, IssuerJwksUriResolver, JwtResolver, KeyIdentity, KeyResolver, ResolveContext,
    ResolvedKey, RevocationList, SchemeResolver, check_jwks_uri_dwk, hwk_scheme, resolve_hwk,
    resolve_jkt_jwt,
};
pub use sign::{
    DigestMode, SignOptions, SigningKey, sign, sign_message, sign_request, sign_request_unique,
    sign_request_with,
};
pub use verify::{
    BodyCoverage, BodyHint, DEFAULT_WINDOW, DangerousVerifyPolicy, HeadVerified, LabelSelection,
    Prepared, REQUIRED_COMPONENTS, SignerGate, VerifiedRequest, Verifier, VerifyPolicy,
    jwks_uri_signers, prepare,
};

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
