//! `Content-Digest` (RFC 9530): computed when signing, checked in constant time when
//! verifying.

use aauth_headers::{ContentDigest, DigestAlgorithm};
use sha2::{Digest as _, Sha256, Sha512};
use subtle::ConstantTimeEq as _;

use crate::VerifyError;

/// The `Content-Digest` value for `body` with SHA-256.
///
/// ```
/// assert_eq!(aauth_signing::content_digest(b""), "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:");
/// ```
#[must_use]
pub fn content_digest(body: &[u8]) -> String {
    let d = Sha256::digest(body);
    ContentDigest(vec![(DigestAlgorithm::Sha256, d.to_vec())])
        .serialize()
        .unwrap_or_default()
}

/// Checks every `sha-256` and `sha-512` member against `body`; any mismatch refuses the
/// request (no downgrade to the member that happens to match). Other algorithms are
/// ignored, but at least one checked member must be present.
pub(crate) fn check(value: &str, body: &[u8], required: &[String]) -> Result<(), VerifyError> {
    let parsed = ContentDigest::parse(value).map_err(VerifyError::Header)?;
    let mut checked = 0;
    for (alg, expected) in &parsed.0 {
        let ok: bool = match alg {
            DigestAlgorithm::Sha256 => Sha256::digest(body).as_slice().ct_eq(expected).into(),
            DigestAlgorithm::Sha512 => Sha512::digest(body).as_slice().ct_eq(expected).into(),
            _ => continue,
        };
        if !ok {
            return Err(VerifyError::DigestMismatch {
                alg: match alg {
                    DigestAlgorithm::Sha512 => "sha-512",
                    _ => "sha-256",
                },
            });
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(VerifyError::DigestUnsupported {
            required: required.to_vec(),
        });
    }
    Ok(())
}
