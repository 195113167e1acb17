//! JSON Web Key Sets (RFC 7517 §5) with lookup by `kid` that tolerates members it cannot use.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{Jwk, KeyError, PublicKey};

/// A JWKS as fetched from a `jwks_uri`.
///
/// Members are kept unparsed until one is selected by `kid`, so a set that also holds keys
/// this crate cannot use (RSA, post-quantum, malformed entries) still serves the keys it
/// can (Signature-Key -09 §3.3: "select the member matching kid without requiring any
/// other member to be usable").
///
/// ```
/// use aauth_keys::JwkSet;
/// let set = JwkSet::from_json(r#"{"keys":[
///   {"kty":"AKP","alg":"ML-DSA-44","kid":"pq","pub":"…"},
///   {"kty":"OKP","crv":"Ed25519","alg":"Ed25519","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
/// ]}"#.as_bytes())?;
/// let key = set.find("k1")?;
/// assert_eq!(key.thumbprint().as_str(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
/// assert!(set.find("pq").is_err()); // present but unusable
/// # Ok::<(), aauth_keys::KeyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct JwkSet {
    keys: Vec<Box<RawValue>>,
}

#[derive(Deserialize)]
struct Envelope {
    keys: Vec<Box<RawValue>>,
}

#[derive(Deserialize)]
struct KidProbe<'a> {
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
}

impl JwkSet {
    /// Parses a JWKS document. Only its shape is checked here: an object whose `keys` member
    /// is an array.
    ///
    /// # Errors
    ///
    /// [`KeyError::MalformedJwks`].
    pub fn from_json(json: &[u8]) -> Result<Self, KeyError> {
        let env: Envelope = serde_json::from_slice(json).map_err(|e| KeyError::MalformedJwks {
            reason: e.to_string(),
        })?;
        Ok(Self { keys: env.keys })
    }

    /// Builds a JWKS from public JWKs (for serving one).
    #[must_use]
    pub fn from_jwks(jwks: &[Jwk]) -> Self {
        let keys = jwks
            .iter()
            .filter_map(|j| RawValue::from_string(j.to_json()).ok())
            .collect();
        Self { keys }
    }

    /// The number of members, usable or not.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no members.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Serializes the set as `{"keys":[…]}`.
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut out = String::from(r#"{"keys":["#);
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k.get());
        }
        out.push_str("]}");
        out
    }

    /// The JWK whose `kid` equals `kid`, unvalidated.
    ///
    /// # Errors
    ///
    /// [`KeyError::UnknownKid`] when no member has that `kid`, [`KeyError::DuplicateKid`]
    /// when several do (neither is used), and [`KeyError::MalformedJwk`] when the selected
    /// member is not a JWK.
    pub fn find_jwk(&self, kid: &str) -> Result<Jwk, KeyError> {
        let mut found: Option<&RawValue> = None;
        for raw in &self.keys {
            let Ok(probe) = serde_json::from_str::<KidProbe<'_>>(raw.get()) else {
                continue; // not an object, or a kid that is not a string: never selectable
            };
            if probe.kid.as_deref() == Some(kid) {
                if found.is_some() {
                    return Err(KeyError::DuplicateKid {
                        kid: kid.to_owned(),
                    });
                }
                found = Some(raw);
            }
        }
        let raw = found.ok_or_else(|| KeyError::UnknownKid {
            kid: kid.to_owned(),
        })?;
        Jwk::from_json(raw.get())
    }

    /// The distinct `kid` values of the members that can be selected (objects whose `kid`
    /// is a string), in document order.
    ///
    /// ```
    /// use aauth_keys::JwkSet;
    /// let set = JwkSet::from_json(br#"{"keys":[{"kid":"a"},{"kid":7},"x",{"kid":"b"},{"kid":"a"}]}"#).unwrap();
    /// assert_eq!(set.kids(), ["a", "b"]);
    /// ```
    #[must_use]
    pub fn kids(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for raw in &self.keys {
            if let Ok(KidProbe { kid: Some(kid) }) = serde_json::from_str::<KidProbe<'_>>(raw.get())
                && !out.iter().any(|k| *k == kid)
            {
                out.push(kid.into_owned());
            }
        }
        out
    }

    /// Every member in document order, with or without `kid`: each as a JWK
    /// (unvalidated), or why it is not one. For a verifier that must pick a key for a
    /// token without `kid` (RFC 7515 §4.1.4 makes it optional).
    ///
    /// ```
    /// use aauth_keys::JwkSet;
    /// let set = JwkSet::from_json(br#"{"keys":[{"kty":"OKP"},"x",{"kty":"RSA","kid":"a"}]}"#).unwrap();
    /// let kinds: Vec<_> = set.jwks().map(|m| m.map(|j| j.kty)).collect();
    /// assert!(matches!(kinds.as_slice(), [Ok(a), Err(_), Ok(b)] if a == "OKP" && b == "RSA"));
    /// ```
    pub fn jwks(&self) -> impl Iterator<Item = Result<Jwk, KeyError>> + '_ {
        self.keys.iter().map(|raw| Jwk::from_json(raw.get()))
    }

    /// The validated public key whose `kid` equals `kid`.
    ///
    /// # Errors
    ///
    /// As [`JwkSet::find_jwk`] and [`PublicKey::from_jwk`] (a member with private material
    /// is refused as [`KeyError::PrivateMaterial`]).
    pub fn find(&self, kid: &str) -> Result<PublicKey, KeyError> {
        PublicKey::from_jwk(&self.find_jwk(kid)?)
    }
}
