//! The JSON Web Key (RFC 7517) as it appears on the wire.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::KeyError;

/// A JSON Web Key as received or sent, before or after validation.
///
/// Members this crate does not use are ignored on input, as RFC 7517 §4 requires. A
/// member that appears twice makes the JWK malformed. Parsing a `Jwk` checks only its
/// JSON shape; [`crate::PublicKey::from_jwk`] and [`crate::PrivateKey::from_jwk`] apply the
/// algorithm policy and the key checks.
///
/// `Debug` never prints the private member `d`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Jwk {
    /// Key type: `OKP`, `EC`, …
    pub kty: String,
    /// Curve: `Ed25519`, `P-256`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// The public key (OKP) or its x coordinate (EC), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// The y coordinate (EC), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// RSA modulus (kept only so that RSA thumbprints can be computed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA exponent (kept only so that RSA thumbprints can be computed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Private key material, base64url. Never printed by `Debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    /// The fully-specified algorithm: `Ed25519` or `ES256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Key identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Intended use; when present it must be `sig`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Permitted operations; when present it must include the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
}

impl Jwk {
    /// A JWK with only `kty` set.
    #[must_use]
    pub fn new(kty: impl Into<String>) -> Self {
        Self {
            kty: kty.into(),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
            d: None,
            alg: None,
            kid: None,
            use_: None,
            key_ops: None,
        }
    }

    /// Parses a JWK from JSON.
    ///
    /// # Errors
    ///
    /// [`KeyError::MalformedJwk`] when the JSON is not an object of the right shape.
    pub fn from_json(json: &str) -> Result<Self, KeyError> {
        // serde's derive would also read a JSON array positionally; a JWK is an object.
        if !json.trim_start().starts_with('{') {
            return Err(KeyError::MalformedJwk {
                reason: "a JWK must be a JSON object".to_owned(),
            });
        }
        serde_json::from_str(json).map_err(|e| KeyError::MalformedJwk {
            reason: e.to_string(),
        })
    }

    /// Parses a JWK from an already parsed JSON value.
    ///
    /// # Errors
    ///
    /// [`KeyError::MalformedJwk`] when the value is not an object of the right shape.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, KeyError> {
        Self::deserialize(value).map_err(|e| KeyError::MalformedJwk {
            reason: e.to_string(),
        })
    }

    /// Serializes the JWK to compact JSON (including `d` if present).
    #[must_use]
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The same JWK with `kid` set.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Whether the JWK carries private material.
    #[must_use]
    pub fn is_private(&self) -> bool {
        self.d.is_some()
    }

    /// The RFC 7638 thumbprint input: the required members in lexicographic order, with no
    /// whitespace. Works for `OKP`, `EC` and `RSA` keys whether or not this crate can use
    /// them.
    ///
    /// # Errors
    ///
    /// [`KeyError::UnsupportedKeyType`] for other key types and
    /// [`KeyError::MissingMember`] when a required member is absent.
    pub fn thumbprint_input(&self) -> Result<String, KeyError> {
        fn member<'a>(v: Option<&'a String>, name: &'static str) -> Result<&'a str, KeyError> {
            v.map(String::as_str)
                .ok_or(KeyError::MissingMember { member: name })
        }
        let quote = |s: &str| serde_json::Value::from(s).to_string();
        let (kty, fields) = match self.kty.as_str() {
            "OKP" => (
                "OKP",
                vec![
                    ("crv", member(self.crv.as_ref(), "crv")?),
                    ("x", member(self.x.as_ref(), "x")?),
                ],
            ),
            "EC" => (
                "EC",
                vec![
                    ("crv", member(self.crv.as_ref(), "crv")?),
                    ("x", member(self.x.as_ref(), "x")?),
                    ("y", member(self.y.as_ref(), "y")?),
                ],
            ),
            "RSA" => (
                "RSA",
                vec![
                    ("e", member(self.e.as_ref(), "e")?),
                    ("n", member(self.n.as_ref(), "n")?),
                ],
            ),
            other => {
                return Err(KeyError::UnsupportedKeyType {
                    kty: other.to_owned(),
                });
            }
        };
        // RFC 7638 §3.2: members sorted by name; "kty" sorts between "e"/"crv" and "n"/"x".
        let mut all: Vec<(&str, &str)> = fields;
        all.push(("kty", kty));
        all.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = String::from("{");
        for (i, (k, v)) in all.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&quote(k));
            out.push(':');
            out.push_str(&quote(v));
        }
        out.push('}');
        Ok(out)
    }
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kty", &self.kty)
            .field("crv", &self.crv)
            .field("x", &self.x)
            .field("y", &self.y)
            .field("d", &self.d.as_ref().map(|_| "[redacted]"))
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}
