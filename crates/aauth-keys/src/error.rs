//! Errors of key import, signing and signature verification.

/// Why a key was refused.
///
/// Each variant names the check that failed. [`KeyError::is_unsupported_algorithm`]
/// tells which ones a verifier reports as `unsupported_algorithm` (draft-hardt-httpbis-
/// signature-key-09 §5.4.1) rather than `invalid_key` (§5.4.7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The JWK is not valid JSON for a JWK (a member of the wrong type, a duplicated member,
    /// a missing `kty`, …).
    #[error("malformed JWK: {reason}")]
    MalformedJwk {
        /// What the JSON parser reported.
        reason: String,
    },
    /// The JWK has no `alg` member; Signature-Key -09 §3.3 requires a fully-specified one.
    #[error("JWK has no alg member")]
    MissingAlgorithm,
    /// The JWK's `alg` is the polymorphic `EdDSA`, which -09 §3.3 forbids.
    #[error("polymorphic alg EdDSA is not accepted; use Ed25519")]
    PolymorphicAlgorithm,
    /// `none` or a symmetric algorithm, which can never authenticate a signer (-09 §7.5).
    #[error("alg {alg} is forbidden")]
    ForbiddenAlgorithm {
        /// The `alg` value.
        alg: String,
    },
    /// An `alg` this crate does not implement.
    #[error("alg {alg} is not supported")]
    UnsupportedAlgorithm {
        /// The `alg` value.
        alg: String,
    },
    /// The JWK's key type is `oct` (a shared secret) or one this crate does not implement.
    #[error("key type {kty} is not supported")]
    UnsupportedKeyType {
        /// The `kty` value.
        kty: String,
    },
    /// `kty` disagrees with `alg` (-09 §3.3).
    #[error("kty {kty} is inconsistent with alg {alg}")]
    KeyTypeMismatch {
        /// The `alg` value.
        alg: String,
        /// The `kty` value.
        kty: String,
    },
    /// `crv` is absent or disagrees with `alg` (-09 §3.3).
    #[error("crv {crv:?} is inconsistent with alg {alg}")]
    CurveMismatch {
        /// The `alg` value.
        alg: String,
        /// The `crv` value, if any.
        crv: Option<String>,
    },
    /// A member the key type requires is absent.
    #[error("JWK lacks required member {member}")]
    MissingMember {
        /// The member name.
        member: &'static str,
    },
    /// A key member is not canonical base64url or has the wrong length.
    #[error("JWK member {member} is not a canonical {expected_len}-byte base64url value")]
    BadEncoding {
        /// The member name.
        member: &'static str,
        /// The length the key type requires, in bytes.
        expected_len: usize,
    },
    /// The Ed25519 point has small order (for example the identity), so any message would
    /// verify under it (RUSTSEC-2026-0240 class).
    #[error("Ed25519 public key has small order")]
    WeakKey,
    /// The public key bytes do not encode a valid point (off the curve, non-canonical, …).
    #[error("public key is not a valid point")]
    InvalidPoint,
    /// A public key was expected but the JWK carries private material (`d`).
    #[error("JWK carries private key material where a public key is expected")]
    PrivateMaterial,
    /// The private part `d` does not belong to the public part `x`/`y`.
    #[error("private key does not match the public key in the JWK")]
    InconsistentPrivateKey,
    /// `use` is present and is not `sig`.
    #[error("JWK use {value} is not sig")]
    WrongUse {
        /// The `use` value.
        value: String,
    },
    /// `key_ops` is present and does not permit the operation.
    #[error("JWK key_ops does not include {op}")]
    WrongKeyOps {
        /// The operation that was needed (`verify` or `sign`).
        op: &'static str,
    },
    /// The JWKS is not a JSON object with a `keys` array.
    #[error("malformed JWKS: {reason}")]
    MalformedJwks {
        /// What was wrong.
        reason: String,
    },
    /// No key in the JWKS has this `kid`.
    #[error("no key with kid {kid:?} in the JWKS")]
    UnknownKid {
        /// The `kid` looked up.
        kid: String,
    },
    /// Two keys in the JWKS share the `kid` looked up; neither is used.
    #[error("kid {kid:?} names more than one key in the JWKS")]
    DuplicateKid {
        /// The `kid` looked up.
        kid: String,
    },
    /// The random source failed while generating a key; no key was produced.
    #[error("random source failed: {0}")]
    Random(#[from] crate::rand::RandomError),
    /// The cryptographic backend refused to build the key.
    #[error("backend refused the key")]
    Backend,
    /// An RSA modulus shorter than the verifier accepts (RFC 7518 §3.3 requires 2048 bits
    /// for RS256 and PS256), longer than it verifies, or an exponent out of range.
    #[error(
        "RSA key of {bits} bits is outside the accepted {min}..={max} bits, or its exponent is not an odd value from 3 to 2^32"
    )]
    RsaKeySize {
        /// The modulus length in bits.
        bits: usize,
        /// The shortest accepted.
        min: usize,
        /// The longest accepted.
        max: usize,
    },
}

impl KeyError {
    /// Whether a verifier answers this error with `unsupported_algorithm` (and an
    /// `Accept-Signature-Alg` header) rather than `invalid_key`.
    ///
    /// Per -09 §3.3 and draft -11 §11.3.4 step 6: an absent, polymorphic, forbidden or
    /// unimplemented `alg`, and a key type the verifier does not implement.
    #[must_use]
    pub const fn is_unsupported_algorithm(&self) -> bool {
        matches!(
            self,
            Self::MissingAlgorithm
                | Self::PolymorphicAlgorithm
                | Self::ForbiddenAlgorithm { .. }
                | Self::UnsupportedAlgorithm { .. }
                | Self::UnsupportedKeyType { .. }
        )
    }
}

/// A signature did not verify.
///
/// Deliberately carries no detail: a caller must not be able to tell a wrong length from
/// a wrong value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("signature verification failed")]
pub struct SignatureError;

/// Signing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySignError {
    /// The backend (software, HSM or enclave) could not produce a signature.
    #[error("signing backend failed: {reason}")]
    Backend {
        /// What the backend reported.
        reason: String,
    },
}
