//! `Signature-Key` (draft-hardt-httpbis-signature-key-09 §3): how to obtain the key for
//! each signature label, under one of eight schemes.

use crate::sf::{self, Bare, Entry, Params};
use crate::{DEFAULT_MAX_FIELD_BYTES, MemberError, ParseError, SerializeError, check_len};

const FIELD: &str = "Signature-Key";

/// A parsed `Signature-Key` field.
///
/// The scheme of every member is read eagerly, but a member whose parameters are invalid
/// keeps its error to itself: a verifier that does not select it never sees the error
/// (-09 §3: "A verifier MUST NOT reject a request because a member it did not select names
/// a scheme the verifier does not implement").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureKey {
    members: Vec<SignatureKeyMember>,
}

/// One labelled member of `Signature-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignatureKeyMember {
    /// The signature label.
    pub label: String,
    /// The scheme token, when the member's value is a Token (dispatch on it comes first:
    /// an unimplemented scheme is `unsupported_scheme` whatever its parameters).
    pub scheme_name: Option<String>,
    /// The scheme with its parameters, or why they are unusable.
    pub scheme: Result<Scheme, MemberError>,
}

/// A key distribution scheme with its parameters (-09 §3.4–§3.11).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// `hwk`: an inline public key (§3.4).
    Hwk(Hwk),
    /// `jkt-jwt`: a self-issued delegation JWT (§3.5).
    JktJwt {
        /// The compact JWT.
        jwt: String,
        /// Whether the caller asks for a cache identifier.
        cache: bool,
    },
    /// `jwks_uri`: a signer identifier and its metadata document (§3.6).
    JwksUri {
        /// The signer's HTTPS identifier.
        id: String,
        /// The well-known document name.
        dwk: String,
        /// The key identifier.
        kid: String,
    },
    /// `jwks`: a JWKS URL that is also the identity (§3.7).
    Jwks {
        /// The JWKS URL.
        url: String,
        /// The key identifier.
        kid: String,
    },
    /// `jwt`: a JWT whose `cnf.jwk` is the signing key (§3.8). AAuth agents use only this.
    Jwt {
        /// The compact JWT.
        jwt: String,
        /// Whether the caller asks for a cache identifier.
        cache: bool,
    },
    /// `self-jwt`: a JWT signed by the same key as the request (§3.9).
    SelfJwt {
        /// The compact JWT.
        jwt: String,
    },
    /// `x509`: a certificate chain by URL and thumbprint (§3.10).
    X509 {
        /// URL of the PEM chain.
        x5u: String,
        /// SHA-256 of the DER end-entity certificate.
        x5t: Vec<u8>,
    },
    /// `cached`: a verifier-issued cache identifier (§3.11).
    Cached {
        /// The cache identifier.
        cid: String,
    },
    /// A scheme token this crate does not know. Its parameters are not interpreted.
    Unknown {
        /// The scheme token.
        name: String,
    },
}

/// The parameters of the `hwk` scheme: a JWK carried as header parameters. All members are
/// optional here; which are required depends on `kty`, and is checked when the key is
/// imported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Hwk {
    /// `kty`.
    pub kty: Option<String>,
    /// `crv`.
    pub crv: Option<String>,
    /// `x`.
    pub x: Option<String>,
    /// `y`.
    pub y: Option<String>,
    /// `n`.
    pub n: Option<String>,
    /// `e`.
    pub e: Option<String>,
    /// `alg` (REQUIRED by -09; checked at import).
    pub alg: Option<String>,
}

impl Scheme {
    /// The scheme token.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Hwk(_) => "hwk",
            Self::JktJwt { .. } => "jkt-jwt",
            Self::JwksUri { .. } => "jwks_uri",
            Self::Jwks { .. } => "jwks",
            Self::Jwt { .. } => "jwt",
            Self::SelfJwt { .. } => "self-jwt",
            Self::X509 { .. } => "x509",
            Self::Cached { .. } => "cached",
            Self::Unknown { name } => name,
        }
    }

    /// A `jwt` scheme member without the cache signal.
    #[must_use]
    pub fn jwt(jwt: impl Into<String>) -> Self {
        Self::Jwt {
            jwt: jwt.into(),
            cache: false,
        }
    }

    fn write(&self, out: &mut String) -> Result<(), SerializeError> {
        sf::write_token(out, self.name())?;
        match self {
            Self::Hwk(h) => {
                for (k, v) in [
                    ("kty", &h.kty),
                    ("crv", &h.crv),
                    ("x", &h.x),
                    ("y", &h.y),
                    ("n", &h.n),
                    ("e", &h.e),
                    ("alg", &h.alg),
                ] {
                    if let Some(v) = v {
                        sf::write_param_string(out, k, v)?;
                    }
                }
            }
            Self::JktJwt { jwt, cache } | Self::Jwt { jwt, cache } => {
                sf::write_param_string(out, "jwt", jwt)?;
                if *cache {
                    sf::write_param_bool(out, "cache", true)?;
                }
            }
            Self::JwksUri { id, dwk, kid } => {
                sf::write_param_string(out, "id", id)?;
                sf::write_param_string(out, "dwk", dwk)?;
                sf::write_param_string(out, "kid", kid)?;
            }
            Self::Jwks { url, kid } => {
                sf::write_param_string(out, "url", url)?;
                sf::write_param_string(out, "kid", kid)?;
            }
            Self::SelfJwt { jwt } => sf::write_param_string(out, "jwt", jwt)?,
            Self::X509 { x5u, x5t } => {
                sf::write_param_string(out, "x5u", x5u)?;
                out.push_str(";x5t=");
                sf::write_bytes(out, x5t);
            }
            Self::Cached { cid } => sf::write_param_string(out, "cid", cid)?,
            Self::Unknown { .. } => {}
        }
        Ok(())
    }

    fn from_params(name: &str, params: &Params<'_>) -> Result<Self, MemberError> {
        let p = ParamReader(params);
        Ok(match name {
            "hwk" => {
                if p.has("kid") {
                    return Err(MemberError::UnexpectedParameter {
                        name: "kid".to_owned(),
                    });
                }
                Self::Hwk(Hwk {
                    kty: p.opt_string("kty")?,
                    crv: p.opt_string("crv")?,
                    x: p.opt_string("x")?,
                    y: p.opt_string("y")?,
                    n: p.opt_string("n")?,
                    e: p.opt_string("e")?,
                    alg: p.opt_string("alg")?,
                })
            }
            "jkt-jwt" => Self::JktJwt {
                jwt: p.string("jwt")?,
                cache: p.flag("cache")?,
            },
            "jwks_uri" => Self::JwksUri {
                id: p.string("id")?,
                dwk: p.string("dwk")?,
                kid: p.string("kid")?,
            },
            "jwks" => Self::Jwks {
                url: p.string("url")?,
                kid: p.string("kid")?,
            },
            "jwt" => Self::Jwt {
                jwt: p.string("jwt")?,
                cache: p.flag("cache")?,
            },
            "self-jwt" => Self::SelfJwt {
                jwt: p.string("jwt")?,
            },
            "x509" => Self::X509 {
                x5u: p.string("x5u")?,
                x5t: p.bytes("x5t")?,
            },
            "cached" => Self::Cached {
                cid: p.string("cid")?,
            },
            other => Self::Unknown {
                name: other.to_owned(),
            },
        })
    }
}

struct ParamReader<'p, 'a>(&'p Params<'a>);

impl ParamReader<'_, '_> {
    fn get(&self, name: &str) -> Option<&Bare<'_>> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn opt_string(&self, name: &'static str) -> Result<Option<String>, MemberError> {
        match self.get(name) {
            None => Ok(None),
            Some(Bare::String(s)) => Ok(Some(s.clone().into_owned())),
            Some(other) => Err(MemberError::ParameterType {
                name: name.to_owned(),
                expected: "String",
                found: other.type_name(),
            }),
        }
    }

    fn string(&self, name: &'static str) -> Result<String, MemberError> {
        self.opt_string(name)?
            .ok_or(MemberError::MissingParameter { name })
    }

    fn flag(&self, name: &'static str) -> Result<bool, MemberError> {
        match self.get(name) {
            None => Ok(false),
            Some(Bare::Bool(b)) => Ok(*b),
            Some(other) => Err(MemberError::ParameterType {
                name: name.to_owned(),
                expected: "Boolean",
                found: other.type_name(),
            }),
        }
    }

    fn bytes(&self, name: &'static str) -> Result<Vec<u8>, MemberError> {
        match self.get(name) {
            None => Err(MemberError::MissingParameter { name }),
            Some(Bare::Bytes(b)) => Ok(b.clone()),
            Some(other) => Err(MemberError::ParameterType {
                name: name.to_owned(),
                expected: "Byte Sequence",
                found: other.type_name(),
            }),
        }
    }
}

/// The characters of a compact JWS: base64url and `.`.
const JWS_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.';
        c += 1;
    }
    t
};

impl SignatureKey {
    /// Parses a `Signature-Key` value with the default size limit.
    ///
    /// # Errors
    ///
    /// [`ParseError`] when the value is too long, is not a Dictionary, or repeats a label
    /// or parameter.
    ///
    /// ```
    /// use aauth_headers::{Scheme, SignatureKey};
    /// let sk = SignatureKey::parse(r#"sig=jwks_uri;id="https://ps.example";dwk="aauth-person.json";kid="key-1""#)?;
    /// let m = sk.get("sig").unwrap();
    /// assert_eq!(m.scheme_name.as_deref(), Some("jwks_uri"));
    /// assert!(matches!(&m.scheme, Ok(Scheme::JwksUri { kid, .. }) if kid == "key-1"));
    /// # Ok::<(), aauth_headers::ParseError>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        Self::parse_with_limit(value, DEFAULT_MAX_FIELD_BYTES)
    }

    /// Parses with an explicit size limit.
    ///
    /// # Errors
    ///
    /// As [`SignatureKey::parse`].
    pub fn parse_with_limit(value: &str, limit: usize) -> Result<Self, ParseError> {
        check_len(FIELD, value, limit)?;
        if let Some(fast) = Self::parse_single_jwt(value) {
            return Ok(fast);
        }
        Self::parse_general(value)
    }

    /// The general parser alone, without the size limit or the fast path (for the
    /// property test that the two agree).
    ///
    /// # Errors
    ///
    /// As [`SignatureKey::parse`].
    #[doc(hidden)]
    pub fn parse_general(value: &str) -> Result<Self, ParseError> {
        let dict = sf::parse_dictionary(value).map_err(|e| ParseError::from_sf(FIELD, e))?;
        let members = dict
            .iter()
            .map(|(label, entry)| {
                let (scheme_name, scheme) = match entry {
                    Entry::Item(sf::Item {
                        bare: Bare::Token(t),
                        params,
                    }) => (Some((*t).to_owned()), Scheme::from_params(t, params)),
                    Entry::Item(item) => (
                        None,
                        Err(MemberError::WrongType {
                            expected: "Token",
                            found: item.bare.type_name(),
                        }),
                    ),
                    Entry::Inner { .. } => (
                        None,
                        Err(MemberError::WrongType {
                            expected: "Token",
                            found: "Inner List",
                        }),
                    ),
                };
                SignatureKeyMember {
                    label: (*label).to_owned(),
                    scheme_name,
                    scheme,
                }
            })
            .collect();
        Ok(Self { members })
    }

    /// The form every AAuth request carries, `label=jwt;jwt="<compact JWS>"`, read without
    /// the general structured-field parser: the label is an sf-key, the string holds only
    /// base64url characters and dots (so no escapes), and nothing else follows. Anything
    /// else, including whitespace, returns `None` for the general parser, whose result for
    /// these inputs is the same (a property test checks both agree).
    fn parse_single_jwt(value: &str) -> Option<Self> {
        let (label, rest) = value.split_once('=')?;
        let jwt = rest.strip_prefix("jwt;jwt=\"")?.strip_suffix('"')?;
        // A table, not `is_ascii_alphanumeric() || …`: the range tests branch per byte and
        // base64url text defeats the predictor (measured with cachegrind).
        if !sf::is_key(label) || jwt.is_empty() || !jwt.bytes().all(|b| JWS_CHARS[usize::from(b)]) {
            return None;
        }
        Some(Self {
            members: vec![SignatureKeyMember {
                label: label.to_owned(),
                scheme_name: Some("jwt".to_owned()),
                scheme: Ok(Scheme::Jwt {
                    jwt: jwt.to_owned(),
                    cache: false,
                }),
            }],
        })
    }

    /// All members, in order.
    #[must_use]
    pub fn members(&self) -> &[SignatureKeyMember] {
        &self.members
    }

    /// The members, by value.
    #[must_use]
    pub fn into_members(self) -> Vec<SignatureKeyMember> {
        self.members
    }

    /// The member for `label`.
    #[must_use]
    pub fn get(&self, label: &str) -> Option<&SignatureKeyMember> {
        self.members.iter().find(|m| m.label == label)
    }

    /// Serializes a `Signature-Key` value.
    ///
    /// # Errors
    ///
    /// [`SerializeError`] for an invalid label, scheme token or parameter value.
    ///
    /// ```
    /// use aauth_headers::{Scheme, SignatureKey};
    /// let v = SignatureKey::serialize([("sig", &Scheme::jwt("eyJ.e30.c2ln"))])?;
    /// assert_eq!(v, r#"sig=jwt;jwt="eyJ.e30.c2ln""#);
    /// # Ok::<(), aauth_headers::SerializeError>(())
    /// ```
    pub fn serialize<'a>(
        members: impl IntoIterator<Item = (&'a str, &'a Scheme)>,
    ) -> Result<String, SerializeError> {
        let mut out = String::with_capacity(128);
        for (i, (label, scheme)) in members.into_iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            sf::write_key(&mut out, label)?;
            out.push('=');
            scheme.write(&mut out)?;
        }
        Ok(out)
    }
}
