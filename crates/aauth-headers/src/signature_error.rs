//! `Signature-Error` (-09 §5) and the `Accept-Signature-Scheme` / `Accept-Signature-Alg`
//! lists (-09 §4).

use std::fmt;
use std::str::FromStr;

use crate::sf::{self, Bare, Entry};
use crate::{DEFAULT_MAX_FIELD_BYTES, ParseError, SerializeError, check_len};

/// A `Signature-Error` code (-09 §5.4 and its registry, §9.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `unsupported_algorithm` (send `Accept-Signature-Alg`).
    UnsupportedAlgorithm,
    /// `unsupported_scheme` (send `Accept-Signature-Scheme`).
    UnsupportedScheme,
    /// `cache_miss`.
    CacheMiss,
    /// `invalid_signature`.
    InvalidSignature,
    /// `invalid_input` (with `required_input`).
    InvalidInput,
    /// `invalid_request`.
    InvalidRequest,
    /// `invalid_key`.
    InvalidKey,
    /// `unknown_key`.
    UnknownKey,
    /// `issuer_missing`.
    IssuerMissing,
    /// `issuer_mismatch`.
    IssuerMismatch,
    /// `invalid_jwt`.
    InvalidJwt,
    /// `expired_jwt`.
    ExpiredJwt,
    /// `revoked_jwt`.
    RevokedJwt,
    /// `clock_skew`.
    ClockSkew,
    /// A code registered after this crate was written.
    Other(String),
}

impl ErrorCode {
    /// The registered token.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::UnsupportedScheme => "unsupported_scheme",
            Self::CacheMiss => "cache_miss",
            Self::InvalidSignature => "invalid_signature",
            Self::InvalidInput => "invalid_input",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidKey => "invalid_key",
            Self::UnknownKey => "unknown_key",
            Self::IssuerMissing => "issuer_missing",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::InvalidJwt => "invalid_jwt",
            Self::ExpiredJwt => "expired_jwt",
            Self::RevokedJwt => "revoked_jwt",
            Self::ClockSkew => "clock_skew",
            Self::Other(s) => s,
        }
    }
}

impl FromStr for ErrorCode {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "unsupported_algorithm" => Self::UnsupportedAlgorithm,
            "unsupported_scheme" => Self::UnsupportedScheme,
            "cache_miss" => Self::CacheMiss,
            "invalid_signature" => Self::InvalidSignature,
            "invalid_input" => Self::InvalidInput,
            "invalid_request" => Self::InvalidRequest,
            "invalid_key" => Self::InvalidKey,
            "unknown_key" => Self::UnknownKey,
            "issuer_missing" => Self::IssuerMissing,
            "issuer_mismatch" => Self::IssuerMismatch,
            "invalid_jwt" => Self::InvalidJwt,
            "expired_jwt" => Self::ExpiredJwt,
            "revoked_jwt" => Self::RevokedJwt,
            "clock_skew" => Self::ClockSkew,
            other => Self::Other(other.to_owned()),
        })
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed `Signature-Error` field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignatureErrorHeader {
    /// The `error` member.
    pub code: ErrorCode,
    /// The `required_input` member (with `invalid_input`): the components the server
    /// requires.
    pub required_input: Option<Vec<String>>,
}

const SE: &str = "Signature-Error";

impl SignatureErrorHeader {
    /// A header with only `error`.
    #[must_use]
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            required_input: None,
        }
    }

    /// `error=invalid_input` with the required components.
    #[must_use]
    pub fn invalid_input(required: Vec<String>) -> Self {
        Self {
            code: ErrorCode::InvalidInput,
            required_input: Some(required),
        }
    }

    /// Parses a `Signature-Error` value; unknown members are ignored (-09 §5.1).
    ///
    /// # Errors
    ///
    /// [`ParseError`] when `error` is missing or not a Token, or `required_input` is not an
    /// Inner List of Strings.
    ///
    /// ```
    /// use aauth_headers::{ErrorCode, SignatureErrorHeader};
    /// let e = SignatureErrorHeader::parse(r#"error=invalid_input, required_input=("@method" "@path")"#)?;
    /// assert_eq!(e.code, ErrorCode::InvalidInput);
    /// assert_eq!(e.required_input.unwrap(), ["@method", "@path"]);
    /// # Ok::<(), aauth_headers::ParseError>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        check_len(SE, value, DEFAULT_MAX_FIELD_BYTES)?;
        let dict = sf::parse_dictionary(value).map_err(|e| ParseError::from_sf(SE, e))?;
        let mut code = None;
        let mut required_input = None;
        for (k, entry) in &dict {
            match (*k, entry) {
                (
                    "error",
                    Entry::Item(sf::Item {
                        bare: Bare::Token(t),
                        ..
                    }),
                ) => {
                    code = Some(t.parse().unwrap_or(ErrorCode::Other((*t).to_owned())));
                }
                ("error", _) => {
                    return Err(ParseError::InvalidMember {
                        field: SE,
                        member: "error".to_owned(),
                        reason: "must be a Token".to_owned(),
                    });
                }
                ("required_input", Entry::Inner { items, .. }) => {
                    let mut v = Vec::with_capacity(items.len());
                    for i in items {
                        match &i.bare {
                            Bare::String(s) => v.push(s.clone().into_owned()),
                            other => {
                                return Err(ParseError::InvalidMember {
                                    field: SE,
                                    member: "required_input".to_owned(),
                                    reason: format!("holds a {}, not a String", other.type_name()),
                                });
                            }
                        }
                    }
                    required_input = Some(v);
                }
                ("required_input", _) => {
                    return Err(ParseError::InvalidMember {
                        field: SE,
                        member: "required_input".to_owned(),
                        reason: "must be an Inner List".to_owned(),
                    });
                }
                _ => {}
            }
        }
        Ok(Self {
            code: code.ok_or(ParseError::MissingMember {
                field: SE,
                member: "error",
            })?,
            required_input,
        })
    }

    /// Serializes the value.
    ///
    /// # Errors
    ///
    /// [`SerializeError`] when the code is not a Token or a component is not a valid
    /// String.
    ///
    /// ```
    /// use aauth_headers::SignatureErrorHeader;
    /// let h = SignatureErrorHeader::invalid_input(vec!["@method".into(), "signature-key".into()]);
    /// assert_eq!(h.serialize()?, r#"error=invalid_input, required_input=("@method" "signature-key")"#);
    /// # Ok::<(), aauth_headers::SerializeError>(())
    /// ```
    pub fn serialize(&self) -> Result<String, SerializeError> {
        let mut out = String::from("error=");
        sf::write_token(&mut out, self.code.as_str())?;
        if let Some(req) = &self.required_input {
            out.push_str(", required_input=(");
            for (i, c) in req.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                sf::write_string(&mut out, c)?;
            }
            out.push(')');
        }
        Ok(out)
    }
}

fn parse_token_list(field: &'static str, value: &str) -> Result<Vec<String>, ParseError> {
    check_len(field, value, DEFAULT_MAX_FIELD_BYTES)?;
    let list = sf::parse_list(value).map_err(|e| ParseError::from_sf(field, e))?;
    // Members that are not Tokens are ignored like unrecognized tokens (-09 §4.1).
    Ok(list
        .into_iter()
        .filter_map(|e| match e {
            Entry::Item(sf::Item {
                bare: Bare::Token(t),
                ..
            }) => Some(t.to_owned()),
            _ => None,
        })
        .collect())
}

fn serialize_token_list(values: &[String]) -> Result<String, SerializeError> {
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        sf::write_token(&mut out, v)?;
    }
    Ok(out)
}

/// `Accept-Signature-Scheme`: the Signature-Key schemes a server accepts, in preference
/// order (-09 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptSignatureScheme(pub Vec<String>);

impl AcceptSignatureScheme {
    /// Parses the list; members that are not Tokens are ignored.
    ///
    /// # Errors
    ///
    /// [`ParseError`] when the value is too long or not a List.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        parse_token_list("Accept-Signature-Scheme", value).map(Self)
    }

    /// Serializes the list.
    ///
    /// # Errors
    ///
    /// [`SerializeError::BadToken`] for a value that is not a Token.
    ///
    /// ```
    /// use aauth_headers::AcceptSignatureScheme;
    /// assert_eq!(AcceptSignatureScheme(vec!["jwt".into()]).serialize()?, "jwt");
    /// # Ok::<(), aauth_headers::SerializeError>(())
    /// ```
    pub fn serialize(&self) -> Result<String, SerializeError> {
        serialize_token_list(&self.0)
    }
}

/// `Accept-Signature-Alg`: exactly the JOSE algorithms a server accepts (-09 §4.2),
/// compared case-sensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptSignatureAlg(pub Vec<String>);

impl AcceptSignatureAlg {
    /// Parses the list; members that are not Tokens are ignored.
    ///
    /// # Errors
    ///
    /// [`ParseError`] when the value is too long or not a List.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        parse_token_list("Accept-Signature-Alg", value).map(Self)
    }

    /// Serializes the list.
    ///
    /// # Errors
    ///
    /// [`SerializeError::BadToken`] for a value that is not a Token.
    ///
    /// ```
    /// use aauth_headers::AcceptSignatureAlg;
    /// assert_eq!(AcceptSignatureAlg(vec!["Ed25519".into(), "ES256".into()]).serialize()?, "Ed25519, ES256");
    /// # Ok::<(), aauth_headers::SerializeError>(())
    /// ```
    pub fn serialize(&self) -> Result<String, SerializeError> {
        serialize_token_list(&self.0)
    }
}
