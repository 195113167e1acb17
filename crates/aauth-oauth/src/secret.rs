//! Access tokens signed with a secret the issuer shares with the resource (HS256, HS384,
//! HS512; RFC 7518 §3.2), for the authorization servers that still sign that way.
//!
//! A shared secret authenticates nothing but "someone who holds the secret", so the
//! rules are narrower than for published keys:
//! - an HMAC token is accepted only from an issuer configured with a [`SharedSecret`],
//!   and only under the one algorithm configured with it (the key decides the algorithm,
//!   as for published keys); an issuer whose keys are published never has its tokens
//!   checked with a secret, so a public key can never serve as an HMAC secret (the
//!   algorithm confusion of RFC 8725 §2.1);
//! - the secret is at least as long as the hash's output (RFC 7518 §3.2: 32, 48 or 64
//!   bytes);
//! - the tag is compared in constant time (`aws-lc-rs`);
//! - the secret never appears in `Debug` output.

use std::fmt;

use aws_lc_rs::hmac;

/// An HMAC algorithm of RFC 7518 §3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum HmacAlgorithm {
    /// HMAC with SHA-256.
    Hs256,
    /// HMAC with SHA-384.
    Hs384,
    /// HMAC with SHA-512.
    Hs512,
}

impl HmacAlgorithm {
    /// The JOSE `alg` value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Hs384 => "HS384",
            Self::Hs512 => "HS512",
        }
    }

    /// Reads an `alg` value, exactly (case-sensitive).
    ///
    /// ```
    /// use aauth_oauth::HmacAlgorithm;
    /// assert_eq!(HmacAlgorithm::parse("HS384"), Some(HmacAlgorithm::Hs384));
    /// assert_eq!(HmacAlgorithm::parse("hs256"), None);
    /// assert_eq!(HmacAlgorithm::parse("RS256"), None);
    /// ```
    #[must_use]
    pub fn parse(alg: &str) -> Option<Self> {
        match alg {
            "HS256" => Some(Self::Hs256),
            "HS384" => Some(Self::Hs384),
            "HS512" => Some(Self::Hs512),
            _ => None,
        }
    }

    /// The shortest secret accepted, in bytes: the hash's output (RFC 7518 §3.2).
    #[must_use]
    pub const fn min_secret_len(self) -> usize {
        match self {
            Self::Hs256 => 32,
            Self::Hs384 => 48,
            Self::Hs512 => 64,
        }
    }

    fn backend(self) -> hmac::Algorithm {
        match self {
            Self::Hs256 => hmac::HMAC_SHA256,
            Self::Hs384 => hmac::HMAC_SHA384,
            Self::Hs512 => hmac::HMAC_SHA512,
        }
    }
}

impl fmt::Display for HmacAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Shorter than the algorithm's hash output (RFC 7518 §3.2).
    #[error("a {alg} secret must be at least {min} bytes; this one is {len}")]
    TooShort {
        /// The algorithm configured.
        alg: HmacAlgorithm,
        /// The secret's length, in bytes.
        len: usize,
        /// The least accepted.
        min: usize,
    },
}

/// A secret an issuer signs its access tokens with, and the one algorithm it signs
/// with. Cheap to clone; its `Debug` output shows the algorithm only.
///
/// ```
/// use aauth_oauth::{HmacAlgorithm, SecretError, SharedSecret};
/// let secret = SharedSecret::new(HmacAlgorithm::Hs256, &[7; 32]).unwrap();
/// assert_eq!(secret.algorithm(), HmacAlgorithm::Hs256);
/// assert_eq!(format!("{secret:?}"), "SharedSecret { alg: HS256, .. }");
/// assert!(matches!(
///     SharedSecret::new(HmacAlgorithm::Hs512, b"too short"),
///     Err(SecretError::TooShort { min: 64, .. }),
/// ));
/// ```
#[derive(Clone)]
pub struct SharedSecret {
    alg: HmacAlgorithm,
    key: hmac::Key,
}

impl SharedSecret {
    /// The secret `bytes` for tokens signed `alg`.
    ///
    /// # Errors
    ///
    /// [`SecretError::TooShort`] below [`HmacAlgorithm::min_secret_len`].
    pub fn new(alg: HmacAlgorithm, bytes: &[u8]) -> Result<Self, SecretError> {
        let min = alg.min_secret_len();
        if bytes.len() < min {
            return Err(SecretError::TooShort {
                alg,
                len: bytes.len(),
                min,
            });
        }
        Ok(Self {
            alg,
            key: hmac::Key::new(alg.backend(), bytes),
        })
    }

    /// The algorithm tokens under this secret must name.
    #[must_use]
    pub fn algorithm(&self) -> HmacAlgorithm {
        self.alg
    }

    /// Whether `tag` is this secret's tag over `message` under `alg` (constant time).
    pub(crate) fn verifies(&self, alg: HmacAlgorithm, message: &[u8], tag: &[u8]) -> bool {
        alg == self.alg && hmac::verify(&self.key, message, tag).is_ok()
    }

    /// The tag over `message` (for tests and for issuers built on this crate).
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        hmac::sign(&self.key, message).as_ref().to_vec()
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSecret")
            .field("alg", &format_args!("{}", self.alg))
            .finish_non_exhaustive()
    }
}
