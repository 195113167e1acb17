//! Private keys and the [`Signer`] trait every signing path goes through.

use std::fmt;

use aws_lc_rs::encoding::AsBigEndian as _;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use ed25519_dalek::Signer as _;
use zeroize::Zeroizing;

use crate::public::check_policy;
use crate::rand::{RandomError, RandomSource};
use crate::{Algorithm, Jwk, KeyError, KeySignError, PublicKey, base64url};

/// Something that signs with one key: software keys in this crate, or a key in an HSM or
/// a secure enclave behind the same trait.
///
/// Implementations sign with exactly the key [`Signer::public_key`] returns, using
/// [`Signer::algorithm`]; there is no way to pair a private key with another public key
/// (the RUSTSEC-2022-0093 signing-oracle class).
pub trait Signer: Send + Sync + fmt::Debug {
    /// The algorithm of the signatures this signer produces.
    fn algorithm(&self) -> Algorithm;

    /// The public half of the signing key.
    fn public_key(&self) -> &PublicKey;

    /// Signs `message`: a 64-byte Ed25519 signature, or a 64-byte `r ‖ s` ES256 signature.
    ///
    /// # Errors
    ///
    /// [`KeySignError`] when the backend cannot sign.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeySignError>;
}

/// A private key held in memory. Its secret is zeroized on drop and never printed.
pub struct PrivateKey {
    public: PublicKey,
    inner: Inner,
}

enum Inner {
    Ed25519(Box<ed25519_dalek::SigningKey>),
    Es256(Box<EcdsaKeyPair>),
}

/// The RFC 5915 `ECPrivateKey` prefix for a 32-byte P-256 scalar, without the optional
/// public key: SEQUENCE { INTEGER 1, OCTET STRING (32 bytes) … }.
const P256_DER_PREFIX: [u8; 7] = [0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];
/// …followed by `[0] OID prime256v1`.
const P256_DER_SUFFIX: [u8; 12] = [
    0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
];

impl PrivateKey {
    /// Generates a key for `alg` from `rng`.
    ///
    /// # Errors
    ///
    /// [`KeyError::Random`] when the random source fails or returns only zero bytes; no key
    /// is produced from predictable input (the RUSTSEC-2026-0075 class).
    pub fn generate(alg: Algorithm, rng: &mut dyn RandomSource) -> Result<Self, KeyError> {
        match alg {
            Algorithm::Ed25519 => {
                let mut seed = Zeroizing::new([0u8; 32]);
                fill_nonzero(rng, seed.as_mut())?;
                Ok(Self::ed25519_from_seed(&seed))
            }
            Algorithm::Es256 => {
                // Rejection sampling: a scalar outside [1, n-1] is refused by the backend,
                // so draw again (the chance is about 2^-32 per draw).
                for _ in 0..16 {
                    let mut scalar = Zeroizing::new([0u8; 32]);
                    fill_nonzero(rng, scalar.as_mut())?;
                    if let Ok(key) = Self::es256_from_scalar(&scalar) {
                        return Ok(key);
                    }
                }
                Err(KeyError::Random(RandomError {
                    reason: "no valid P-256 scalar after 16 draws".to_owned(),
                }))
            }
        }
    }

    /// The public half (also available through [`Signer::public_key`]).
    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key's algorithm.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }

    /// Builds an Ed25519 key from its 32-byte seed (RFC 8032 private key).
    #[must_use]
    pub fn ed25519_from_seed(seed: &[u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        Self {
            public: PublicKey::from_dalek(key.verifying_key()),
            inner: Inner::Ed25519(Box::new(key)),
        }
    }

    /// Builds an ES256 key from its 32-byte big-endian private scalar.
    ///
    /// # Errors
    ///
    /// [`KeyError::Backend`] when the scalar is zero or not below the group order.
    pub fn es256_from_scalar(scalar: &[u8; 32]) -> Result<Self, KeyError> {
        let mut der = Zeroizing::new([0u8; 51]);
        der[..7].copy_from_slice(&P256_DER_PREFIX);
        der[7..39].copy_from_slice(scalar);
        der[39..].copy_from_slice(&P256_DER_SUFFIX);
        let pair =
            EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der.as_ref())
                .map_err(|_| KeyError::Backend)?;
        Self::from_ecdsa(pair)
    }

    fn from_ecdsa(pair: EcdsaKeyPair) -> Result<Self, KeyError> {
        let point: [u8; 65] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| KeyError::Backend)?;
        Ok(Self {
            public: PublicKey::es256_from_sec1(point)?,
            inner: Inner::Es256(Box::new(pair)),
        })
    }

    /// Imports a private key from a JWK with `d`, checking the algorithm policy and that
    /// `d` belongs to the public members.
    ///
    /// # Errors
    ///
    /// [`KeyError::MissingMember`] without `d`, the policy errors of
    /// [`PublicKey::from_jwk`], and [`KeyError::InconsistentPrivateKey`].
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let alg = check_policy(jwk, "sign")?;
        let d = jwk
            .d
            .as_deref()
            .ok_or(KeyError::MissingMember { member: "d" })?;
        let d = Zeroizing::new(base64url::decode_array::<32>(d).map_err(|_| {
            KeyError::BadEncoding {
                member: "d",
                expected_len: 32,
            }
        })?);
        let claimed = PublicKey::from_members(alg, jwk)?;
        let key = match alg {
            Algorithm::Ed25519 => Self::ed25519_from_seed(&d),
            Algorithm::Es256 => Self::es256_from_scalar(&d)?,
        };
        if key.public != claimed {
            return Err(KeyError::InconsistentPrivateKey);
        }
        Ok(key)
    }

    /// Imports a private key from JWK JSON text.
    ///
    /// # Errors
    ///
    /// As [`Jwk::from_json`] and [`PrivateKey::from_jwk`].
    pub fn from_jwk_json(json: &str) -> Result<Self, KeyError> {
        let jwk = Zeroizing::new(Jwk::from_json(json)?);
        Self::from_jwk(&jwk)
    }

    /// Exports the key as a private JWK (with `d`).
    ///
    /// # Security Warning
    ///
    /// The result contains the secret key. Store it only where the key itself may be
    /// stored; zeroize it after use.
    #[must_use]
    pub fn to_private_jwk(&self) -> Zeroizing<Jwk> {
        let mut jwk = self.public.to_jwk();
        jwk.d = Some(match &self.inner {
            Inner::Ed25519(k) => base64url::encode(k.as_bytes()),
            Inner::Es256(k) => match k.private_key().as_be_bytes() {
                Ok(bin) => base64url::encode(bin.as_ref()),
                Err(_) => String::new(),
            },
        });
        Zeroizing::new(jwk)
    }
}

impl zeroize::Zeroize for Jwk {
    fn zeroize(&mut self) {
        if let Some(d) = self.d.as_mut() {
            d.zeroize();
        }
        self.d = None;
    }
}

fn fill_nonzero(rng: &mut dyn RandomSource, buf: &mut [u8]) -> Result<(), KeyError> {
    rng.fill(buf)?;
    if buf.iter().all(|&b| b == 0) {
        return Err(KeyError::Random(RandomError {
            reason: "random source returned only zero bytes".to_owned(),
        }));
    }
    Ok(())
}

impl Signer for PrivateKey {
    fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeySignError> {
        match &self.inner {
            Inner::Ed25519(k) => Ok(k.sign(message).to_bytes().to_vec()),
            Inner::Es256(k) => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                k.sign(&rng, message)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| KeySignError::Backend {
                        reason: "ECDSA signing failed".to_owned(),
                    })
            }
        }
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("public", &self.public)
            .field("secret", &"[redacted]")
            .finish()
    }
}
