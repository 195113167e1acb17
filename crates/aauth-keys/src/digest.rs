//! The workspace's one SHA-256: for thumbprints, `mission_s256`, content digests and
//! store keys alike, so that two parties that must agree on a digest compute it the same
//! way.
//!
//! ```
//! use aauth_keys::digest::{s256, sha256};
//!
//! assert_eq!(sha256(b"abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
//! // Unpadded base64url of the SHA-256, as `mission_s256` is.
//! assert_eq!(s256(b"abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
//! ```

use sha2::{Digest as _, Sha256};

/// The SHA-256 of `data`.
#[must_use]
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The unpadded base64url of the SHA-256 of `data`.
#[must_use]
pub fn s256(data: &[u8]) -> String {
    crate::base64url::encode(&sha256(data))
}
