//! The algorithm policy of draft-hardt-httpbis-signature-key-09 §3.3 and §7.4.

use std::fmt;
use std::str::FromStr;

use crate::KeyError;

/// A signature algorithm this crate implements, named by its fully-specified JOSE
/// identifier (RFC 9864).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// EdDSA over Ed25519 (RFC 8032), JOSE `alg` value `Ed25519`. Mandatory in AAuth.
    Ed25519,
    /// ECDSA over P-256 with SHA-256 and a 64-byte `r ‖ s` signature, JOSE `alg` value `ES256`.
    Es256,
}

impl Algorithm {
    /// Every algorithm this crate implements, in the order a server lists them in
    /// `Accept-Signature-Alg`.
    pub const ALL: [Self; 2] = [Self::Ed25519, Self::Es256];

    /// The JOSE identifier, exactly as registered (case-sensitive).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ed25519 => "Ed25519",
            Self::Es256 => "ES256",
        }
    }

    /// The JWK `kty` a key for this algorithm has.
    #[must_use]
    pub const fn kty(self) -> &'static str {
        match self {
            Self::Ed25519 => "OKP",
            Self::Es256 => "EC",
        }
    }

    /// The JWK `crv` a key for this algorithm has.
    #[must_use]
    pub const fn crv(self) -> &'static str {
        match self {
            Self::Ed25519 => "Ed25519",
            Self::Es256 => "P-256",
        }
    }

    /// Classifies a JOSE `alg` value under the policy: supported, refused, or unknown.
    ///
    /// The comparison is exact: `es256`, `ED25519` or `ES256 ` are not `ES256`.
    ///
    /// ```
    /// use aauth_keys::{AlgClass, Algorithm};
    /// assert_eq!(Algorithm::classify("Ed25519"), AlgClass::Supported(Algorithm::Ed25519));
    /// assert_eq!(Algorithm::classify("EdDSA"), AlgClass::Polymorphic);
    /// assert_eq!(Algorithm::classify("HS256"), AlgClass::Forbidden);
    /// assert_eq!(Algorithm::classify("ES384"), AlgClass::Unsupported);
    /// ```
    #[must_use]
    pub fn classify(alg: &str) -> AlgClass {
        match alg {
            "Ed25519" => AlgClass::Supported(Self::Ed25519),
            "ES256" => AlgClass::Supported(Self::Es256),
            "EdDSA" => AlgClass::Polymorphic,
            "none" | "HS256" | "HS384" | "HS512" => AlgClass::Forbidden,
            _ => AlgClass::Unsupported,
        }
    }
}

/// How the policy treats a JOSE `alg` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlgClass {
    /// An algorithm this crate implements.
    Supported(Algorithm),
    /// The polymorphic `EdDSA`, which draft -11 and Signature-Key -09 forbid.
    Polymorphic,
    /// `none` or a symmetric MAC, which can never authenticate a signer.
    Forbidden,
    /// Anything else: registered algorithms this crate does not implement and unknown values.
    Unsupported,
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        match Self::classify(s) {
            AlgClass::Supported(alg) => Ok(alg),
            AlgClass::Polymorphic => Err(KeyError::PolymorphicAlgorithm),
            AlgClass::Forbidden => Err(KeyError::ForbiddenAlgorithm { alg: s.to_owned() }),
            AlgClass::Unsupported => Err(KeyError::UnsupportedAlgorithm { alg: s.to_owned() }),
        }
    }
}
