//! Errors of token verification and minting.

use aauth_keys::{Algorithm, KeyError, KeySignError};

use crate::ResolveError;

/// Why a token was refused. Each variant names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is not a well-formed compact JWS.
    #[error("malformed token: {reason}")]
    Malformed {
        /// Which structural check failed.
        reason: &'static str,
    },
    /// The protected header is not a valid JOSE header.
    #[error("invalid JOSE header: {reason}")]
    Header {
        /// What is wrong.
        reason: String,
    },
    /// The header carries a parameter AAuth tokens must not use (`crit`, `jku`, `x5u`,
    /// `jwk`, …); keys are never taken from a token's own header.
    #[error("JOSE header parameter {name} is not accepted")]
    ForbiddenHeader {
        /// The parameter.
        name: &'static str,
    },
    /// `typ` is not the token type expected here (checked before anything else is read).
    #[error("typ is {found:?}, expected {expected}")]
    WrongType {
        /// The expected `typ`.
        expected: &'static str,
        /// The `typ` found, if any.
        found: Option<String>,
    },
    /// The header `alg` is refused by the algorithm policy.
    #[error("header alg: {0}")]
    Algorithm(#[source] KeyError),
    /// The claim set is not a JSON object, or a claim name appears twice.
    #[error("invalid claim set: {reason}")]
    ClaimSet {
        /// What is wrong.
        reason: String,
    },
    /// A claim is missing, has the wrong JSON type, or an invalid value.
    #[error("claim {claim}: {reason}")]
    Claim {
        /// The claim.
        claim: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A claim this token type must not carry (a person token's `scope` or `account`).
    #[error("claim {claim} must not appear in this token type")]
    ForbiddenClaim {
        /// The claim.
        claim: &'static str,
    },
    /// An agent identifier (`sub`, or a sub-agent token's `parent_agent`) names another
    /// domain than the issuer's host: a provider speaks only for its own agents (draft -11,
    /// "Agent Identifiers": "`domain` is the agent provider's domain").
    #[error("{claim} {agent} is not an agent of the issuer {iss}")]
    AgentOfAnotherIssuer {
        /// `sub` or `parent_agent`.
        claim: &'static str,
        /// The identifier found.
        agent: String,
        /// The token's `iss`.
        iss: String,
    },
    /// `dwk` is not the metadata document of this token type's issuer.
    #[error("dwk is {found:?}, expected {expected}")]
    WrongDwk {
        /// The accepted value(s).
        expected: &'static str,
        /// The value found.
        found: String,
    },
    /// `exp` is at or before the current time (no tolerance, draft -11 §11.5.2).
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// The `exp` claim.
        exp: u64,
        /// The verifier's time.
        now: u64,
    },
    /// `nbf` is ahead of the verifier's clock by more than the allowed skew: the token is
    /// not valid yet (RFC 7519 §4.1.5).
    #[error("not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The `nbf` claim.
        nbf: u64,
        /// The verifier's time.
        now: u64,
    },
    /// `iat` is ahead of the verifier's clock by more than the allowed skew: `clock_skew`.
    #[error("iat {iat} is ahead of the verifier clock {now}")]
    IssuedInFuture {
        /// The `iat` claim.
        iat: u64,
        /// The verifier's time.
        now: u64,
    },
    /// `exp - iat` exceeds the lifetime cap of this token type.
    #[error("lifetime {lifetime}s exceeds the cap of {cap}s")]
    LifetimeTooLong {
        /// `exp - iat`.
        lifetime: u64,
        /// The cap.
        cap: u64,
    },
    /// `exp` is before `iat`.
    #[error("exp is before iat")]
    ExpBeforeIat,
    /// `aud` is not this verifier.
    #[error("aud is {found:?}, expected {expected}")]
    WrongAudience {
        /// This verifier's identifier.
        expected: String,
        /// The audience found.
        found: String,
    },
    /// The header has no `kid`, so the issuer's key cannot be selected.
    #[error("header has no kid")]
    MissingKid,
    /// The issuer's key could not be obtained.
    #[error("issuer key: {0}")]
    KeyResolution(#[source] ResolveError),
    /// The issuer key selected by `kid` is for another algorithm than the header's.
    #[error("header alg {header} but the issuer key is {key}")]
    KeyAlgorithmMismatch {
        /// The header `alg`.
        header: Algorithm,
        /// The key's algorithm.
        key: Algorithm,
    },
    /// The signature does not verify under the issuer's key.
    #[error("signature does not verify")]
    BadSignature,
    /// `cnf.jwk` is present and complete but the key is refused.
    #[error("cnf.jwk: {0}")]
    Confirmation(#[source] KeyError),
    /// A `jkt-jwt`'s enclave key, conveyed in its header, is refused (-09 §3.5: the
    /// header `jwk` is subject to Algorithm Determination): its `jwk` does not import, or
    /// the algorithm the token is signed with (the header `alg`, which must be the key's)
    /// is refused. The algorithm cases ([`KeyError::is_unsupported_algorithm`]) are
    /// `unsupported_algorithm`; a key missing from the header stays
    /// [`TokenError::Header`].
    #[error("header key: {0}")]
    HeaderKey(#[source] KeyError),
    /// Minting only: the signer failed.
    #[error("signing failed: {0}")]
    Sign(#[source] KeySignError),
    /// Minting only: the requested token breaks a rule of its type.
    #[error("cannot mint: {reason}")]
    Mint {
        /// Which rule.
        reason: String,
    },
}
