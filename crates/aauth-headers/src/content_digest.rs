//! `Content-Digest` (RFC 9530).

use crate::sf::{self, Bare, Entry};
use crate::{DEFAULT_MAX_FIELD_BYTES, ParseError, SerializeError, check_len};

const FIELD: &str = "Content-Digest";

/// A digest algorithm key of `Content-Digest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DigestAlgorithm {
    /// `sha-256`.
    Sha256,
    /// `sha-512`.
    Sha512,
    /// Any other key (`md5`, `sha`, … are deprecated; never used to accept a body).
    Other(String),
}

impl DigestAlgorithm {
    /// The algorithm key.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Sha256 => "sha-256",
            Self::Sha512 => "sha-512",
            Self::Other(s) => s,
        }
    }

    fn from_key(k: &str) -> Self {
        match k {
            "sha-256" => Self::Sha256,
            "sha-512" => Self::Sha512,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// A parsed `Content-Digest` field: each algorithm with its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDigest(pub Vec<(DigestAlgorithm, Vec<u8>)>);

impl ContentDigest {
    /// Parses the field.
    ///
    /// # Errors
    ///
    /// [`ParseError`] when a member is not a Byte Sequence or an algorithm repeats.
    ///
    /// ```
    /// use aauth_headers::{ContentDigest, DigestAlgorithm};
    /// let d = ContentDigest::parse("sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:")?;
    /// assert_eq!(d.0[0].0, DigestAlgorithm::Sha256);
    /// # Ok::<(), aauth_headers::ParseError>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        check_len(FIELD, value, DEFAULT_MAX_FIELD_BYTES)?;
        let dict = sf::parse_dictionary(value).map_err(|e| ParseError::from_sf(FIELD, e))?;
        let mut out = Vec::with_capacity(dict.len());
        for (k, e) in dict {
            match e {
                Entry::Item(sf::Item {
                    bare: Bare::Bytes(b),
                    ..
                }) => out.push((DigestAlgorithm::from_key(k), b)),
                _ => {
                    return Err(ParseError::InvalidMember {
                        field: FIELD,
                        member: k.to_owned(),
                        reason: "must be a Byte Sequence".to_owned(),
                    });
                }
            }
        }
        Ok(Self(out))
    }

    /// Serializes the field.
    ///
    /// # Errors
    ///
    /// [`SerializeError::BadKey`] for an algorithm key that is not a Key.
    pub fn serialize(&self) -> Result<String, SerializeError> {
        let mut out = String::new();
        for (i, (alg, d)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            sf::write_key(&mut out, alg.as_str())?;
            out.push('=');
            sf::write_bytes(&mut out, d);
        }
        Ok(out)
    }
}
