//! The keys of OAuth issuers: RSA (RS256, PS256), P-256 (ES256) and Ed25519 (EdDSA).
//!
//! AAuth's own keys ([`aauth_keys::PublicKey`]) are Ed25519 and ES256 only, named by the
//! fully-specified `alg` of RFC 9864. Authorization servers publish RSA keys, and name
//! Ed25519 `EdDSA`, with `alg` often absent from the JWK. This module imports such members
//! for verifying their tokens, and nothing else: an [`IssuerKey`] can never be used where
//! AAuth takes a key.
//!
//! Rules (RFC 7517, RFC 7518, RFC 8725 §3.1):
//! - the key decides the algorithm: a token's `alg` must be one its key's family
//!   verifies, and equal to the JWK's `alg` when the JWK has one;
//! - `none` and the HMAC algorithms are never accepted under a published key, and `oct`
//!   keys never imported (HMAC tokens are checked only with a secret configured for their
//!   issuer: [`crate::SharedSecret`]);
//! - RSA moduli are 2048 to 8192 bits with an odd public exponent from 3 to 2^32, encoded
//!   without leading zero octets (RFC 7518 §6.3.1.1);
//! - P-256 points must be on the curve and Ed25519 points not of small order (the checks
//!   of `aauth-keys`);
//! - `use`, when present, must be `sig`; `key_ops`, when present, must include `verify`;
//!   a member with private material is refused.

use std::fmt;
use std::sync::Arc;

use aauth_keys::{Jwk, KeyError, PublicKey, base64url};
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256};

/// The shortest RSA modulus accepted, in bits (RFC 7518 §3.3).
pub const RSA_MIN_BITS: usize = 2048;
/// The longest RSA modulus accepted, in bits.
pub const RSA_MAX_BITS: usize = 8192;

/// A JWS algorithm an OAuth issuer may sign access tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum JwsAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3), the algorithm RFC 9068 §2.1 and
    /// OpenID Connect require every party to support.
    Rs256,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256 (RFC 7518 §3.5).
    Ps256,
    /// ECDSA over P-256 with SHA-256, `r ‖ s` (RFC 7518 §3.4).
    Es256,
    /// EdDSA over Ed25519 (RFC 8037), written `EdDSA` (or the fully-specified `Ed25519`
    /// of RFC 9864).
    EdDsa,
}

impl JwsAlgorithm {
    /// Every algorithm accepted, in the order a server lists them (`algs` in a `DPoP`
    /// challenge, `*_signing_alg_values_supported`).
    pub const ALL: [Self; 4] = [Self::Es256, Self::EdDsa, Self::Ps256, Self::Rs256];

    /// The JOSE `alg` value (for Ed25519, the one issuers write: `EdDSA`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// Reads a JWS header's `alg`, exactly (case-sensitive).
    ///
    /// ```
    /// use aauth_oauth::{AlgorithmRefusal, JwsAlgorithm};
    /// assert_eq!(JwsAlgorithm::parse("RS256"), Ok(JwsAlgorithm::Rs256));
    /// assert_eq!(JwsAlgorithm::parse("Ed25519"), Ok(JwsAlgorithm::EdDsa));
    /// assert_eq!(JwsAlgorithm::parse("none"), Err(AlgorithmRefusal::Forbidden));
    /// assert_eq!(JwsAlgorithm::parse("HS256"), Err(AlgorithmRefusal::Forbidden));
    /// assert_eq!(JwsAlgorithm::parse("rs256"), Err(AlgorithmRefusal::Unsupported));
    /// ```
    ///
    /// # Errors
    ///
    /// [`AlgorithmRefusal::Forbidden`] for `none` and HMAC (they authenticate no issuer:
    /// a shared secret, or nothing), [`AlgorithmRefusal::Unsupported`] for the rest.
    pub fn parse(alg: &str) -> Result<Self, AlgorithmRefusal> {
        match alg {
            "RS256" => Ok(Self::Rs256),
            "PS256" => Ok(Self::Ps256),
            "ES256" => Ok(Self::Es256),
            "EdDSA" | "Ed25519" => Ok(Self::EdDsa),
            "none" | "HS256" | "HS384" | "HS512" => Err(AlgorithmRefusal::Forbidden),
            _ => Err(AlgorithmRefusal::Unsupported),
        }
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a header `alg` is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlgorithmRefusal {
    /// `none`, or a symmetric algorithm where keys are published: never.
    Forbidden,
    /// An algorithm this crate does not implement.
    Unsupported,
    /// Not the way the token's issuer signs: a published key's algorithm from an issuer
    /// configured with a shared secret, or another HMAC algorithm than the one configured.
    NotTheIssuers,
}

impl AlgorithmRefusal {
    /// Why, in a few words.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Forbidden => "forbidden",
            Self::Unsupported => "not supported",
            Self::NotTheIssuers => "not how its issuer signs",
        }
    }
}

/// A verification key published by an OAuth issuer, imported from one JWKS member.
///
/// Cheap to clone. Equality is equality of the key material and of the algorithm the
/// JWK pins, if any.
///
/// ```
/// use aauth_keys::{Jwk, PrivateKey};
/// use aauth_oauth::{IssuerKey, JwsAlgorithm};
/// let mut jwk = PrivateKey::ed25519_from_seed(&[1; 32]).public_key().to_jwk();
/// jwk.alg = Some("EdDSA".to_owned()); // as authorization servers write it
/// let key = IssuerKey::from_jwk(&jwk).unwrap();
/// assert!(key.allows(JwsAlgorithm::EdDsa));
/// assert!(!key.allows(JwsAlgorithm::Rs256));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct IssuerKey {
    inner: Arc<KeyInner>,
}

#[derive(PartialEq, Eq)]
struct KeyInner {
    material: Material,
    /// The JWK's `alg`, when it has one: then only that algorithm.
    pinned: Option<JwsAlgorithm>,
}

enum Material {
    /// An Ed25519 or P-256 key, checked as AAuth checks its own.
    Aauth(PublicKey),
    Rsa {
        /// PKCS#1 `RSAPublicKey` DER: what equality compares.
        der: Vec<u8>,
        bits: usize,
        pkcs1: ParsedPublicKey,
        pss: ParsedPublicKey,
    },
}

impl PartialEq for Material {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Aauth(a), Self::Aauth(b)) => a == b,
            (Self::Rsa { der: a, .. }, Self::Rsa { der: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Eq for Material {}

impl fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("IssuerKey");
        match &self.inner.material {
            Material::Aauth(k) => d.field("alg", &k.algorithm()),
            Material::Rsa { bits, .. } => d.field("rsa_bits", bits),
        };
        d.field("pinned", &self.inner.pinned).finish()
    }
}

/// A signature that does not verify under the key, or a key that cannot verify the
/// token's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSignature;

impl IssuerKey {
    /// Imports a JWKS member. See the module documentation for the rules.
    ///
    /// # Errors
    ///
    /// [`KeyError`] naming the check that failed.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        if jwk.is_private() {
            return Err(KeyError::PrivateMaterial);
        }
        if let Some(u) = &jwk.use_
            && u != "sig"
        {
            return Err(KeyError::WrongUse { value: u.clone() });
        }
        if let Some(ops) = &jwk.key_ops
            && !ops.iter().any(|o| o == "verify")
        {
            return Err(KeyError::WrongKeyOps { op: "verify" });
        }
        let pinned = match jwk.alg.as_deref() {
            None => None,
            Some(alg) => Some(JwsAlgorithm::parse(alg).map_err(|refusal| match refusal {
                AlgorithmRefusal::Forbidden => KeyError::ForbiddenAlgorithm {
                    alg: alg.to_owned(),
                },
                // JwsAlgorithm::parse says only these two.
                AlgorithmRefusal::Unsupported | AlgorithmRefusal::NotTheIssuers => {
                    KeyError::UnsupportedAlgorithm {
                        alg: alg.to_owned(),
                    }
                }
            })?),
        };
        let material = match jwk.kty.as_str() {
            "RSA" => rsa(jwk)?,
            "EC" => {
                if jwk.crv.as_deref() != Some("P-256") {
                    return Err(KeyError::CurveMismatch {
                        alg: "ES256".to_owned(),
                        crv: jwk.crv.clone(),
                    });
                }
                let x = coordinate(jwk.x.as_deref(), "x")?;
                let y = coordinate(jwk.y.as_deref(), "y")?;
                let mut sec1 = [0u8; 65];
                sec1[0] = 4;
                sec1[1..33].copy_from_slice(&x);
                sec1[33..].copy_from_slice(&y);
                Material::Aauth(PublicKey::es256_from_sec1(sec1)?)
            }
            "OKP" => {
                if jwk.crv.as_deref() != Some("Ed25519") {
                    return Err(KeyError::CurveMismatch {
                        alg: "EdDSA".to_owned(),
                        crv: jwk.crv.clone(),
                    });
                }
                let x = coordinate(jwk.x.as_deref(), "x")?;
                Material::Aauth(PublicKey::ed25519_from_bytes(&x)?)
            }
            other => {
                return Err(KeyError::UnsupportedKeyType {
                    kty: other.to_owned(),
                });
            }
        };
        let key = Self {
            inner: Arc::new(KeyInner { material, pinned }),
        };
        if let Some(alg) = pinned
            && !key.family_allows(alg)
        {
            return Err(KeyError::KeyTypeMismatch {
                alg: alg.as_str().to_owned(),
                kty: jwk.kty.clone(),
            });
        }
        Ok(key)
    }

    /// Whether this key verifies `alg`: the key's family, and the JWK's `alg` if pinned.
    #[must_use]
    pub fn allows(&self, alg: JwsAlgorithm) -> bool {
        self.inner.pinned.is_none_or(|p| p == alg) && self.family_allows(alg)
    }

    fn family_allows(&self, alg: JwsAlgorithm) -> bool {
        match &self.inner.material {
            Material::Rsa { .. } => matches!(alg, JwsAlgorithm::Rs256 | JwsAlgorithm::Ps256),
            Material::Aauth(k) => match k.algorithm() {
                aauth_keys::Algorithm::Es256 => alg == JwsAlgorithm::Es256,
                aauth_keys::Algorithm::Ed25519 => alg == JwsAlgorithm::EdDsa,
                _ => false,
            },
        }
    }

    /// Verifies `signature` over `message` as `alg`.
    ///
    /// # Errors
    ///
    /// [`BadSignature`] when the key does not allow `alg` or the signature is wrong.
    pub fn verify(
        &self,
        alg: JwsAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), BadSignature> {
        if !self.allows(alg) {
            return Err(BadSignature);
        }
        match &self.inner.material {
            Material::Aauth(k) => k.verify(message, signature).map_err(|_| BadSignature),
            Material::Rsa { pkcs1, pss, .. } => {
                let parsed = if alg == JwsAlgorithm::Ps256 {
                    pss
                } else {
                    pkcs1
                };
                parsed
                    .verify_sig(message, signature)
                    .map_err(|_| BadSignature)
            }
        }
    }
}

impl aauth_metadata::CachedKey for IssuerKey {
    fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        Self::from_jwk(jwk)
    }
}

fn coordinate(value: Option<&str>, member: &'static str) -> Result<[u8; 32], KeyError> {
    let value = value.ok_or(KeyError::MissingMember { member })?;
    base64url::decode_array::<32>(value).map_err(|_| KeyError::BadEncoding {
        member,
        expected_len: 32,
    })
}

fn rsa(jwk: &Jwk) -> Result<Material, KeyError> {
    let n = unsigned(jwk.n.as_deref(), "n")?;
    let e = unsigned(jwk.e.as_deref(), "e")?;
    let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
    let e_value = (e.len() <= 4).then(|| e.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b)));
    let size_error = KeyError::RsaKeySize {
        bits,
        min: RSA_MIN_BITS,
        max: RSA_MAX_BITS,
    };
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits)
        || !e_value.is_some_and(|e| e >= 3 && e % 2 == 1)
    {
        return Err(size_error);
    }
    let der = rsa_public_key_der(&n, &e);
    let pkcs1 =
        ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &der).map_err(|_| KeyError::Backend)?;
    let pss =
        ParsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, &der).map_err(|_| KeyError::Backend)?;
    Ok(Material::Rsa {
        der,
        bits,
        pkcs1,
        pss,
    })
}

/// A base64url big-endian unsigned integer without leading zero octets (RFC 7518
/// §6.3.1.1).
fn unsigned(value: Option<&str>, member: &'static str) -> Result<Vec<u8>, KeyError> {
    let value = value.ok_or(KeyError::MissingMember { member })?;
    let bytes = base64url::decode(value).map_err(|_| KeyError::BadEncoding {
        member,
        expected_len: 0,
    })?;
    if bytes.first().is_none_or(|&b| b == 0) {
        return Err(KeyError::BadEncoding {
            member,
            expected_len: 0,
        });
    }
    Ok(bytes)
}

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017
/// §A.1.1), DER.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    der_integer(&mut body, n);
    der_integer(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(0x30);
    der_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn der_integer(out: &mut Vec<u8>, magnitude: &[u8]) {
    out.push(0x02);
    // A positive INTEGER whose first octet has its high bit set takes a 0x00 in front.
    let pad = magnitude.first().is_some_and(|b| b & 0x80 != 0);
    der_len(out, magnitude.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(magnitude);
}

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        // Fits the short form.
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}
