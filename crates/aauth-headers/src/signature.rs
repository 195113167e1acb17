//! `Signature` (RFC 9421 §4.2): the signature values, by label.

use crate::sf::{self, Bare, Entry};
use crate::{DEFAULT_MAX_FIELD_BYTES, MemberError, ParseError, SerializeError, check_len};

const FIELD: &str = "Signature";

/// A parsed `Signature` field: a Byte Sequence per label.
///
/// Byte sequences are decoded as RFC 9651 §4.2.7 says parsers should: padding and unused
/// bits are not checked. Replay detection therefore keys on the signature base, never on
/// the encoded signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signatures {
    members: Vec<(String, Result<Vec<u8>, MemberError>)>,
}

impl Signatures {
    /// Parses a `Signature` value with the default size limit.
    ///
    /// # Errors
    ///
    /// [`ParseError`] when the value is too long, is not a Dictionary, or repeats a label.
    ///
    /// ```
    /// use aauth_headers::Signatures;
    /// let s = Signatures::parse("sig=:AQID:")?;
    /// assert_eq!(s.get("sig").unwrap().unwrap(), &[1, 2, 3]);
    /// # Ok::<(), aauth_headers::ParseError>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        Self::parse_with_limit(value, DEFAULT_MAX_FIELD_BYTES)
    }

    /// Parses with an explicit size limit.
    ///
    /// # Errors
    ///
    /// As [`Signatures::parse`].
    pub fn parse_with_limit(value: &str, limit: usize) -> Result<Self, ParseError> {
        check_len(FIELD, value, limit)?;
        let dict = sf::parse_dictionary(value).map_err(|e| ParseError::from_sf(FIELD, e))?;
        let members = dict
            .into_iter()
            .map(|(label, entry)| {
                let v = match entry {
                    Entry::Item(sf::Item {
                        bare: Bare::Bytes(b),
                        ..
                    }) => Ok(b),
                    Entry::Item(item) => Err(MemberError::WrongType {
                        expected: "Byte Sequence",
                        found: item.bare.type_name(),
                    }),
                    Entry::Inner { .. } => Err(MemberError::WrongType {
                        expected: "Byte Sequence",
                        found: "Inner List",
                    }),
                };
                (label.to_owned(), v)
            })
            .collect();
        Ok(Self { members })
    }

    /// The signature bytes for `label`, or why the member is unusable.
    #[must_use]
    pub fn get(&self, label: &str) -> Option<Result<&[u8], &MemberError>> {
        self.members
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, v)| v.as_deref())
    }

    /// The labels, in order.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|(l, _)| l.as_str())
    }

    /// Serializes a `Signature` value.
    ///
    /// # Errors
    ///
    /// [`SerializeError::BadKey`] for an invalid label.
    pub fn serialize<'a>(
        members: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<String, SerializeError> {
        let mut out = String::with_capacity(96);
        for (i, (label, sig)) in members.into_iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            sf::write_key(&mut out, label)?;
            out.push('=');
            sf::write_bytes(&mut out, sig);
        }
        Ok(out)
    }
}
