//! AAuth layer 1: compact JWS and the typed AAuth tokens, minted and verified exactly as
//! draft-hardt-oauth-aauth-protocol-11 defines them.
//!
//! | Token | `typ` | Claims | Builder |
//! |---|---|---|---|
//! | agent (and sub-agent) | `aa-agent+jwt` | [`AgentClaims`] | [`AgentTokenBuilder`] |
//! | person | `aa-person+jwt` | [`PersonClaims`] | [`PersonTokenBuilder`] |
//! | resource | `aa-resource+jwt` | [`ResourceClaims`] | [`ResourceTokenBuilder`] |
//! | auth | `aa-auth+jwt` | [`AuthClaims`] | [`AuthTokenBuilder`] |
//!
//! Verification ([`verify`], [`verify_bound`], or the sans-IO [`Unverified`]) runs the
//! checks in the draft's order with `typ` first, reads claims only through typed parsers
//! (a numeric claim sent as a string, or a claim name that appears twice, is refused), and
//! gets issuer keys from an injected [`IssuerKeyResolver`]. Every error names the check
//! that failed.
//!
//! # Example
//!
//! ```
//! use aauth_keys::{PrivateKey, Signer, rand::OsRandom, time::UnixTime};
//! use aauth_tokens::{AgentClaims, AgentId, AgentTokenBuilder, ServerId, StaticIssuerKeys,
//!                    Validation, verify};
//!
//! let provider_key = PrivateKey::ed25519_from_seed(&[1; 32]);
//! let agent_key = PrivateKey::ed25519_from_seed(&[2; 32]);
//! let provider = ServerId::parse("https://agent.example")?;
//! let now = UnixTime(1_800_000_000);
//!
//! let minted = AgentTokenBuilder::new(
//!         provider.clone(),
//!         AgentId::parse("aauth:assistant@agent.example")?,
//!         agent_key.public_key(),
//!     )
//!     .sign(&provider_key, "key-1", now, &mut OsRandom)?;
//!
//! let keys = StaticIssuerKeys::new()
//!     .with(&provider, "aauth-agent.json", "key-1", provider_key.public_key().clone());
//! let verified = futures_executor::block_on(
//!     verify::<AgentClaims>(&minted.token, &Validation::new(now), &keys))?;
//! assert_eq!(verified.claims.sub.as_str(), "aauth:assistant@agent.example");
//! assert_eq!(verified.cnf_key.as_ref(), Some(agent_key.public_key()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// docs.rs marks each feature-gated item with the feature that enables it.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod budget;
mod claims;
mod error;
mod ids;
mod jkt;
pub mod json;
pub mod jws;
mod mint;
mod verify;

pub use budget::{BUDGET_AMOUNT_MAX, Budget, BudgetError, Consumption};
pub use claims::{
    AgentClaims, AuthClaims, Common, Confirmation, InteractionClaim, PersonClaims, RawClaims,
    ResourceClaims, TokenClaims, TokenType,
};
pub use error::TokenError;
pub use ids::{AgentId, IdentifierError, ServerId};
pub use jkt::{VerifiedJktJwt, verify_jkt_jwt};
pub use mint::{
    AGENT_TOKEN_MAX_LIFETIME, AUTH_TOKEN_MAX_LIFETIME, AgentTokenBuilder, AuthIssuer,
    AuthTokenBuilder, Minted, PERSON_TOKEN_MAX_LIFETIME, PersonTokenBuilder,
    RESOURCE_TOKEN_MAX_LIFETIME, ResourceTokenBuilder,
};
pub use verify::{
    BoundToken, IssuerKeyResolver, KeyRequest, ResolveError, StaticIssuerKeys, Unverified,
    Validation, Verified, verify, verify_bound,
};

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
