//! AAuth layer 0: the keys every other layer signs and verifies with.
//!
//! This crate holds Ed25519 (mandatory in AAuth) and ES256 (P-256) keys, their JWK
//! import and export, RFC 7638 thumbprints, JWKS documents, and the algorithm policy of
//! draft-hardt-httpbis-signature-key-09 §3.3: every key carries a fully-specified `alg`,
//! `kty`/`crv` must agree with it, `EdDSA`, `none`, symmetric keys and private material in
//! a public context are refused, and weak keys (small-order Ed25519 points, invalid P-256
//! points) are refused at import, before any signature is checked.
//!
//! It performs no I/O and never reads the clock or the operating system's random source
//! on its own: time comes from a [`time::Clock`] and randomness from a
//! [`rand::RandomSource`] that the caller passes in.
//!
//! # Example
//!
//! ```
//! use aauth_keys::{Algorithm, PrivateKey, PublicKey, Signer, rand::OsRandom};
//!
//! let key = PrivateKey::generate(Algorithm::Ed25519, &mut OsRandom)?;
//! let signature = key.sign(b"signature base")?;
//!
//! // The public half travels as a JWK, for example in a token's `cnf.jwk`.
//! let jwk = key.public_key().to_jwk();
//! let received = PublicKey::from_jwk(&jwk)?;
//! received.verify(b"signature base", &signature)?;
//! assert_eq!(received.thumbprint(), key.public_key().thumbprint());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Backends
//!
//! Ed25519 uses `ed25519-dalek` with the acceptance set of its `verify_strict`
//! (small-order and non-canonical keys and signatures refused; decision 0004 says how it is
//! checked without a second point decompression); ES256 uses `aws-lc-rs` (points
//! validated on import). The choice and its measurements are in
//! `docs/decisions/0002-crypto-backend.md`.

// docs.rs marks each feature-gated item with the feature that enables it.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod alg;
pub mod base64url;
pub mod digest;
mod error;
mod jwk;
mod jwks;
mod private;
mod public;
pub mod rand;
pub mod time;

pub use alg::{AlgClass, Algorithm};
pub use error::{KeyError, KeySignError, SignatureError};
pub use jwk::Jwk;
pub use jwks::JwkSet;
pub use private::{PrivateKey, Signer};
pub use public::{PublicKey, Thumbprint, ThumbprintHash, is_small_order_encoding};

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
