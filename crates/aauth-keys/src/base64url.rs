//! Strict base64url (RFC 4648 §5) without padding, as JOSE requires (RFC 7515 §2).
//!
//! Decoding refuses padding, the standard alphabet, non-zero unused bits and impossible
//! lengths, so every value has exactly one accepted encoding.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const STRICT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// A value that is not canonical unpadded base64url.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not canonical unpadded base64url")]
pub struct Base64UrlError;

/// Encodes bytes as unpadded base64url.
///
/// ```
/// assert_eq!(aauth_keys::base64url::encode(b"\xfb\xff"), "-_8");
/// ```
#[must_use]
pub fn encode(bytes: &[u8]) -> String {
    STRICT.encode(bytes)
}

/// Appends the unpadded base64url encoding of `bytes` to `out`.
pub fn encode_into(bytes: &[u8], out: &mut String) {
    STRICT.encode_string(bytes, out);
}

/// Decodes canonical unpadded base64url.
///
/// # Errors
///
/// [`Base64UrlError`] for padding, characters outside the URL-safe alphabet, non-zero
/// unused bits, or a length that no encoding produces.
///
/// ```
/// use aauth_keys::base64url::decode;
/// assert_eq!(decode("-_8").unwrap(), b"\xfb\xff");
/// assert!(decode("-_8=").is_err()); // padding
/// assert!(decode("+/8").is_err()); // standard alphabet
/// assert!(decode("-_9").is_err()); // non-zero unused bits
/// ```
pub fn decode(input: &str) -> Result<Vec<u8>, Base64UrlError> {
    STRICT.decode(input).map_err(|_| Base64UrlError)
}

/// Decodes canonical unpadded base64url into exactly `N` bytes.
///
/// # Errors
///
/// [`Base64UrlError`] as for [`decode`], or when the decoded length is not `N`.
pub fn decode_array<const N: usize>(input: &str) -> Result<[u8; N], Base64UrlError> {
    let mut out = [0u8; N];
    // The encoded length of N bytes is fixed; check it first so no oversized input is decoded.
    if input.len() != (4 * N).div_ceil(3) {
        return Err(Base64UrlError);
    }
    match STRICT.decode_slice(input, &mut out) {
        Ok(n) if n == N => Ok(out),
        _ => Err(Base64UrlError),
    }
}
