//! Session tokens (draft -11 §5.5): `AAuth-Access: <token68>` from the resource, and
//! `Authorization: AAuth <token68>` back, covered by the signature.

use std::fmt;

use crate::{DEFAULT_MAX_FIELD_BYTES, ParseError, SerializeError, check_len};

/// An opaque session token (RFC 9110 §11.2 token68).
///
/// `Debug` does not print the token.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

impl SessionToken {
    /// Validates a token68.
    ///
    /// # Errors
    ///
    /// [`SerializeError::BadToken68`] when `value` is empty or has characters outside the
    /// token68 alphabet (whitespace, commas, control characters, …).
    pub fn new(value: impl Into<String>) -> Result<Self, SerializeError> {
        let value = value.into();
        if is_token68(&value) {
            Ok(Self(value))
        } else {
            Err(SerializeError::BadToken68 { value })
        }
    }

    /// Parses an `AAuth-Access` value.
    ///
    /// # Errors
    ///
    /// [`ParseError::InvalidMember`] unless the whole value is one token68.
    ///
    /// ```
    /// use aauth_headers::SessionToken;
    /// assert!(SessionToken::parse_aauth_access("c2Vzc2lvbi0x").is_ok());
    /// assert!(SessionToken::parse_aauth_access("a b").is_err());
    /// assert!(SessionToken::parse_aauth_access("").is_err());
    /// # Ok::<(), aauth_headers::ParseError>(())
    /// ```
    pub fn parse_aauth_access(value: &str) -> Result<Self, ParseError> {
        check_len("AAuth-Access", value, DEFAULT_MAX_FIELD_BYTES)?;
        Self::new(value).map_err(|_| ParseError::InvalidMember {
            field: "AAuth-Access",
            member: "token68".to_owned(),
            reason: "not a single token68".to_owned(),
        })
    }

    /// The token.
    ///
    /// # Security Warning
    ///
    /// The token is a credential of the resource's session; log it only redacted.
    #[must_use]
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

/// `Authorization: AAuth <token68>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationAAuth(pub SessionToken);

impl AuthorizationAAuth {
    /// Parses an `Authorization` value whose scheme must be `AAuth` (case-insensitive, per
    /// RFC 9110 §11.1) followed by exactly one space and one token68.
    ///
    /// # Errors
    ///
    /// [`ParseError::InvalidMember`] for another scheme, an empty credential, embedded
    /// whitespace or control characters, or more than one credential.
    ///
    /// ```
    /// use aauth_headers::AuthorizationAAuth;
    /// assert!(AuthorizationAAuth::parse("AAuth c2Vzc2lvbi0x").is_ok());
    /// assert!(AuthorizationAAuth::parse("aauth c2Vzc2lvbi0x").is_ok());
    /// assert!(AuthorizationAAuth::parse("AAuth a, AAuth b").is_err());
    /// assert!(AuthorizationAAuth::parse("Bearer c2Vzc2lvbi0x").is_err());
    /// ```
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        check_len("Authorization", value, DEFAULT_MAX_FIELD_BYTES)?;
        let invalid = |reason: &str| ParseError::InvalidMember {
            field: "Authorization",
            member: "AAuth".to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, credential) = value
            .split_once(' ')
            .ok_or_else(|| invalid("no credential"))?;
        if !scheme.eq_ignore_ascii_case("AAuth") {
            return Err(invalid("scheme is not AAuth"));
        }
        SessionToken::new(credential)
            .map(Self)
            .map_err(|_| invalid("credential is not a single token68"))
    }

    /// Serializes `AAuth <token68>`.
    #[must_use]
    pub fn serialize(&self) -> String {
        format!("AAuth {}", self.0.secret())
    }
}
