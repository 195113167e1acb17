//! Validated public keys, their verification, and RFC 7638 thumbprints.

use std::fmt;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey};
use sha2::{Digest, Sha256, Sha512};

use crate::{AlgClass, Algorithm, Jwk, KeyError, SignatureError, base64url};

/// The canonical encodings of the eight points of small order on edwards25519 (the
/// 8-torsion subgroup), as `EdwardsPoint::compress` produces them. Checked against
/// `curve25519_dalek::constants::EIGHT_TORSION` by the test suite.
pub(crate) const SMALL_ORDER_ENCODINGS: [[u8; 32]; 8] = [
    // identity (0, 1)
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    // order 8
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
    // order 4 (x = sqrt(-1) with sign bit 0)
    [0; 32],
    // order 8
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    // order 2 (0, -1)
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // order 8
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x85,
    ],
    // order 4 (sign bit 1)
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0x80,
    ],
    // order 8
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0xfa,
    ],
];

/// The small-order points with x = 0 (the identity and the point of order 2), with the
/// sign bit set: non-canonical encodings that still decode.
const NONCANONICAL_SMALL_ORDER: [[u8; 32]; 2] = [
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0x80,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff,
    ],
];

/// Whether `encoding` is the canonical encoding of a small-order point (exposed for the
/// test suite's check of [`SMALL_ORDER_ENCODINGS`]).
#[doc(hidden)]
#[must_use]
pub fn is_small_order_encoding(encoding: &[u8; 32]) -> bool {
    SMALL_ORDER_ENCODINGS.contains(encoding)
}

/// A public key that passed every import check: fully-specified `alg`, consistent
/// `kty`/`crv`, canonical encoding, a valid point, and (Ed25519) not of small order.
///
/// Two `PublicKey`s are equal when they are the same key for the same algorithm; `kid`
/// and other JWK metadata are not part of the key.
#[derive(Clone)]
pub struct PublicKey {
    inner: Inner,
    /// The SHA-256 thumbprint, computed once (a key checked on every request, a cached
    /// token's `cnf.jwk`, is asked for it on every request).
    sha256: std::sync::OnceLock<Thumbprint>,
}

#[derive(Clone)]
enum Inner {
    Ed25519(ed25519_dalek::VerifyingKey),
    Es256 {
        parsed: ParsedPublicKey,
        /// The uncompressed SEC1 point `04 ‖ x ‖ y`.
        sec1: [u8; 65],
    },
}

/// The hash an RFC 7638 thumbprint is computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThumbprintHash {
    /// SHA-256: `agent_jkt`, `urn:jkt:sha-256:` (the default everywhere in AAuth).
    Sha256,
    /// SHA-512: `urn:jkt:sha-512:` (`jkt-s512+jwt`).
    Sha512,
}

/// An RFC 7638 JWK thumbprint, base64url without padding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Thumbprint(String);

impl Thumbprint {
    /// The base64url text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Computes the thumbprint of any JWK with the required members (OKP, EC, RSA).
    ///
    /// # Errors
    ///
    /// As [`Jwk::thumbprint_input`].
    ///
    /// ```
    /// use aauth_keys::{Jwk, Thumbprint, ThumbprintHash};
    /// // RFC 8037 Appendix A.3
    /// let jwk = Jwk::from_json(r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#)?;
    /// let t = Thumbprint::of_jwk(&jwk, ThumbprintHash::Sha256)?;
    /// assert_eq!(t.as_str(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    /// # Ok::<(), aauth_keys::KeyError>(())
    /// ```
    pub fn of_jwk(jwk: &Jwk, hash: ThumbprintHash) -> Result<Self, KeyError> {
        Ok(Self::of_input(jwk.thumbprint_input()?.as_bytes(), hash))
    }

    /// A thumbprint as [`Thumbprint::as_str`] wrote it (read back from a store): canonical
    /// unpadded base64url of a SHA-256 or SHA-512 digest, 32 or 64 bytes.
    ///
    /// # Errors
    ///
    /// [`base64url::Base64UrlError`] for anything else.
    ///
    /// ```
    /// use aauth_keys::{PrivateKey, Thumbprint};
    /// let t = PrivateKey::ed25519_from_seed(&[1; 32]).public_key().thumbprint();
    /// assert_eq!(Thumbprint::from_base64url(t.as_str()), Ok(t));
    /// assert!(Thumbprint::from_base64url("not a digest").is_err());
    /// assert!(Thumbprint::from_base64url("AAAA").is_err()); // 3 bytes
    /// ```
    pub fn from_base64url(text: &str) -> Result<Self, base64url::Base64UrlError> {
        let n = base64url::decode(text)?.len();
        if n == 32 || n == 64 {
            Ok(Self(text.to_owned()))
        } else {
            Err(base64url::Base64UrlError)
        }
    }

    fn of_input(input: &[u8], hash: ThumbprintHash) -> Self {
        Self(match hash {
            ThumbprintHash::Sha256 => base64url::encode(&Sha256::digest(input)),
            ThumbprintHash::Sha512 => base64url::encode(&Sha512::digest(input)),
        })
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PublicKey {
    /// Imports a public key from a JWK, applying every check of Signature-Key -09 §3.3.
    ///
    /// # Errors
    ///
    /// A [`KeyError`] naming the failed check. [`KeyError::is_unsupported_algorithm`]
    /// separates the `unsupported_algorithm` cases from the `invalid_key` ones.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        if jwk.d.is_some() {
            return Err(KeyError::PrivateMaterial);
        }
        let alg = check_policy(jwk, "verify")?;
        Self::from_members(alg, jwk)
    }

    /// Imports a public key from JWK JSON text.
    ///
    /// # Errors
    ///
    /// As [`Jwk::from_json`] and [`PublicKey::from_jwk`].
    pub fn from_jwk_json(json: &str) -> Result<Self, KeyError> {
        Self::from_jwk(&Jwk::from_json(json)?)
    }

    pub(crate) fn from_members(alg: Algorithm, jwk: &Jwk) -> Result<Self, KeyError> {
        match alg {
            Algorithm::Ed25519 => {
                let x = required(jwk.x.as_ref(), "x")?;
                let bytes =
                    base64url::decode_array::<32>(x).map_err(|_| KeyError::BadEncoding {
                        member: "x",
                        expected_len: 32,
                    })?;
                Self::ed25519_from_bytes(&bytes)
            }
            Algorithm::Es256 => {
                let x = required(jwk.x.as_ref(), "x")?;
                let y = required(jwk.y.as_ref(), "y")?;
                let x = base64url::decode_array::<32>(x).map_err(|_| KeyError::BadEncoding {
                    member: "x",
                    expected_len: 32,
                })?;
                let y = base64url::decode_array::<32>(y).map_err(|_| KeyError::BadEncoding {
                    member: "y",
                    expected_len: 32,
                })?;
                let mut sec1 = [0u8; 65];
                sec1[0] = 4;
                sec1[1..33].copy_from_slice(&x);
                sec1[33..].copy_from_slice(&y);
                Self::es256_from_sec1(sec1)
            }
        }
    }

    /// Imports a raw 32-byte Ed25519 public key, refusing invalid, non-canonical and
    /// small-order encodings.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidPoint`] or [`KeyError::WeakKey`].
    pub fn ed25519_from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        // Refuse non-canonical encodings: y ≥ p = 2^255 - 19. (The other non-canonical form,
        // x = 0 with the sign bit set, needs y = ±1, whose points have small order and are
        // refused below.) A byte comparison, instead of re-compressing the point, keeps an
        // inversion off the verification path.
        let y_at_least_p =
            bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed;
        if y_at_least_p {
            return Err(KeyError::InvalidPoint);
        }
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidPoint)?;
        // `key.is_weak()` by table: a decodable encoding with y < p is a small-order point
        // iff it is one of the eight canonical encodings or one of the two with x = 0 and
        // the sign bit set (tested against `is_weak` in tests/it/strict.rs).
        if is_small_order_encoding(bytes) || NONCANONICAL_SMALL_ORDER.contains(bytes) {
            return Err(KeyError::WeakKey);
        }
        Ok(Self {
            inner: Inner::Ed25519(key),
            sha256: std::sync::OnceLock::new(),
        })
    }

    /// Imports an uncompressed SEC1 P-256 point (`04 ‖ x ‖ y`), refusing points off the
    /// curve.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidPoint`].
    pub fn es256_from_sec1(sec1: [u8; 65]) -> Result<Self, KeyError> {
        if sec1[0] != 4 {
            return Err(KeyError::InvalidPoint);
        }
        let parsed = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, sec1)
            .map_err(|_| KeyError::InvalidPoint)?;
        Ok(Self {
            inner: Inner::Es256 { parsed, sec1 },
            sha256: std::sync::OnceLock::new(),
        })
    }

    pub(crate) fn from_dalek(key: ed25519_dalek::VerifyingKey) -> Self {
        Self {
            inner: Inner::Ed25519(key),
            sha256: std::sync::OnceLock::new(),
        }
    }

    /// The algorithm this key verifies.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            Inner::Ed25519(_) => Algorithm::Ed25519,
            Inner::Es256 { .. } => Algorithm::Es256,
        }
    }

    /// The key bytes: 32 for Ed25519, the 65-byte uncompressed point for ES256.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.inner {
            Inner::Ed25519(k) => k.as_bytes(),
            Inner::Es256 { sec1, .. } => sec1,
        }
    }

    /// Verifies `signature` over `message`: Ed25519 accepting exactly what
    /// `verify_strict` accepts, ES256 with a
    /// 64-byte `r ‖ s` signature (DER is refused).
    ///
    /// # Errors
    ///
    /// [`SignatureError`] for any failure, including a wrong signature length.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        match &self.inner {
            Inner::Ed25519(key) => {
                let sig =
                    ed25519_dalek::Signature::from_slice(signature).map_err(|_| SignatureError)?;
                // The acceptance set of `verify_strict`, without its decompression of R
                // (docs/decisions/0004): the equation check below compares the canonical
                // encoding of [s]B - [k]A with R's bytes (so R is canonical and on the curve
                // whenever it passes), s is checked canonical, and A is not small-order
                // (refused at import). What remains of `verify_strict` is "R is not
                // small-order", which for a canonical encoding is membership in the eight
                // encodings below.
                if SMALL_ORDER_ENCODINGS.contains(sig.r_bytes()) {
                    return Err(SignatureError);
                }
                ed25519_dalek::Verifier::verify(key, message, &sig).map_err(|_| SignatureError)
            }
            Inner::Es256 { parsed, .. } => {
                if signature.len() != 64 {
                    return Err(SignatureError);
                }
                parsed
                    .verify_sig(message, signature)
                    .map_err(|_| SignatureError)
            }
        }
    }

    /// The public JWK, with `alg` and without `kid`.
    #[must_use]
    pub fn to_jwk(&self) -> Jwk {
        let alg = self.algorithm();
        let mut jwk = Jwk::new(alg.kty());
        jwk.crv = Some(alg.crv().to_owned());
        jwk.alg = Some(alg.as_str().to_owned());
        match &self.inner {
            Inner::Ed25519(k) => jwk.x = Some(base64url::encode(k.as_bytes())),
            Inner::Es256 { sec1, .. } => {
                jwk.x = Some(base64url::encode(&sec1[1..33]));
                jwk.y = Some(base64url::encode(&sec1[33..]));
            }
        }
        jwk
    }

    /// The RFC 7638 SHA-256 thumbprint, as used for `agent_jkt`.
    #[must_use]
    pub fn thumbprint(&self) -> Thumbprint {
        self.sha256
            .get_or_init(|| self.thumbprint_with(ThumbprintHash::Sha256))
            .clone()
    }

    /// The RFC 7638 thumbprint with the given hash.
    #[must_use]
    pub fn thumbprint_with(&self, hash: ThumbprintHash) -> Thumbprint {
        let mut input = String::with_capacity(160);
        match &self.inner {
            Inner::Ed25519(k) => {
                input.push_str(r#"{"crv":"Ed25519","kty":"OKP","x":""#);
                base64url::encode_into(k.as_bytes(), &mut input);
                input.push_str(r#""}"#);
            }
            Inner::Es256 { sec1, .. } => {
                input.push_str(r#"{"crv":"P-256","kty":"EC","x":""#);
                base64url::encode_into(&sec1[1..33], &mut input);
                input.push_str(r#"","y":""#);
                base64url::encode_into(&sec1[33..], &mut input);
                input.push_str(r#""}"#);
            }
        }
        Thumbprint::of_input(input.as_bytes(), hash)
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.algorithm() == other.algorithm() && self.as_bytes() == other.as_bytes()
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("alg", &self.algorithm())
            .field("thumbprint", &self.thumbprint().as_str())
            .finish()
    }
}

fn required<'a>(v: Option<&'a String>, member: &'static str) -> Result<&'a str, KeyError> {
    v.map(String::as_str)
        .ok_or(KeyError::MissingMember { member })
}

/// The algorithm-determination checks shared by public and private import: `alg` present,
/// fully specified and supported; `kty` and `crv` consistent; `use`/`key_ops` permit `op`.
pub(crate) fn check_policy(jwk: &Jwk, op: &'static str) -> Result<Algorithm, KeyError> {
    if jwk.kty == "oct" {
        return Err(KeyError::UnsupportedKeyType {
            kty: jwk.kty.clone(),
        });
    }
    let alg_text = jwk.alg.as_deref().ok_or(KeyError::MissingAlgorithm)?;
    let alg = match Algorithm::classify(alg_text) {
        AlgClass::Supported(alg) => alg,
        AlgClass::Polymorphic => return Err(KeyError::PolymorphicAlgorithm),
        AlgClass::Forbidden => {
            return Err(KeyError::ForbiddenAlgorithm {
                alg: alg_text.to_owned(),
            });
        }
        AlgClass::Unsupported => {
            return Err(KeyError::UnsupportedAlgorithm {
                alg: alg_text.to_owned(),
            });
        }
    };
    if jwk.kty != alg.kty() {
        return Err(KeyError::KeyTypeMismatch {
            alg: alg_text.to_owned(),
            kty: jwk.kty.clone(),
        });
    }
    if jwk.crv.as_deref() != Some(alg.crv()) {
        return Err(KeyError::CurveMismatch {
            alg: alg_text.to_owned(),
            crv: jwk.crv.clone(),
        });
    }
    if let Some(use_) = &jwk.use_
        && use_ != "sig"
    {
        return Err(KeyError::WrongUse {
            value: use_.clone(),
        });
    }
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|o| o == op)
    {
        return Err(KeyError::WrongKeyOps { op });
    }
    Ok(alg)
}
