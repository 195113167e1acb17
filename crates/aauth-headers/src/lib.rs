//! AAuth layer 0: parse and serialize the HTTP fields AAuth and HTTP Signature Keys use.
//!
//! | Field | Type | Defined by |
//! |---|---|---|
//! | [`Signature-Input`](SignatureInput), [`Signature`](Signatures) | Dictionary | RFC 9421 §4 |
//! | [`Signature-Key`](SignatureKey) (all eight schemes) | Dictionary | Signature-Key -09 §3 |
//! | [`Signature-Error`](SignatureErrorHeader) | Dictionary | Signature-Key -09 §5 |
//! | [`Accept-Signature-Scheme`](AcceptSignatureScheme), [`Accept-Signature-Alg`](AcceptSignatureAlg) | List | Signature-Key -09 §4 |
//! | [`AAuth-Requirement`](AAuthRequirement) | Dictionary | draft -11 §11.6 |
//! | [`AAuth-Capabilities`](AAuthCapabilities) | List | draft -11 §11.7 |
//! | [`AAuth-Access`](SessionToken), [`Authorization: AAuth`](AuthorizationAAuth) | token68 | draft -11 §5.5 |
//! | [`Content-Digest`](ContentDigest) | Dictionary | RFC 9530 |
//! | [`Prefer: wait`](Prefer) | RFC 7240 | RFC 7240 §4.3 |
//!
//! Structured fields are parsed with `sfv` and then held to rules stricter than RFC 9651
//! where a lenient reading would let two parties disagree: a dictionary key or a parameter
//! that appears twice is refused rather than "last one wins". Every value is refused
//! before parsing when it is longer than a limit (default [`DEFAULT_MAX_FIELD_BYTES`]).
//!
//! The crate performs no I/O and does not depend on a runtime.
//!
//! # Example
//!
//! ```
//! use aauth_headers::{SignatureKey, Scheme};
//!
//! let header = SignatureKey::parse(r#"sig=jwt;jwt="eyJhbGciOiJFZDI1NTE5In0.e30.c2ln""#)?;
//! let member = header.get("sig").expect("label present");
//! match member.scheme.as_ref() {
//!     Ok(Scheme::Jwt { jwt, .. }) => assert!(jwt.starts_with("eyJ")),
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), aauth_headers::ParseError>(())
//! ```

// docs.rs marks each feature-gated item with the feature that enables it.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod access;
mod capabilities;
mod content_digest;
mod error;
pub mod names;
mod prefer;
mod requirement;
mod sf;
mod signature;
mod signature_error;
mod signature_input;
mod signature_key;

use std::borrow::Cow;

pub use access::{AuthorizationAAuth, SessionToken};
pub use capabilities::{AAuthCapabilities, Capability};
pub use content_digest::{ContentDigest, DigestAlgorithm};
pub use error::{MemberError, ParseError};
pub use prefer::Prefer;
pub use requirement::{AAuthRequirement, Requirement};
pub use sf::SerializeError;
pub use signature::Signatures;
pub use signature_error::{
    AcceptSignatureAlg, AcceptSignatureScheme, ErrorCode, SignatureErrorHeader,
};
pub use signature_input::{
    Component, ComponentParam, SigParam, SignatureInput, SignatureInputMember, SignatureParams,
};
pub use signature_key::{Hwk, Scheme, SignatureKey, SignatureKeyMember};

/// The default limit on a field value, in bytes, applied before any parsing.
pub const DEFAULT_MAX_FIELD_BYTES: usize = 8 * 1024;

/// Refuses a value over `limit` bytes before it is parsed.
pub(crate) fn check_len(field: &'static str, value: &str, limit: usize) -> Result<(), ParseError> {
    if value.len() > limit {
        return Err(ParseError::TooLarge {
            field,
            len: value.len(),
            limit,
        });
    }
    Ok(())
}

/// The value of a list- or dictionary-valued field from a header map: one field line as
/// is, several joined with `", "` as RFC 9110 §5.3 allows.
///
/// The combined length is checked against `limit` before anything is copied.
///
/// # Errors
///
/// [`ParseError::TooLarge`] over the limit, [`ParseError::NotAscii`] when a line holds
/// bytes outside visible ASCII.
///
/// ```
/// use aauth_headers::combined_value;
/// let mut h = http::HeaderMap::new();
/// h.append("signature-input", "a=()".parse()?);
/// h.append("signature-input", "b=()".parse()?);
/// let v = combined_value(&h, "signature-input", 8192)?;
/// assert_eq!(v.as_deref(), Some("a=(), b=()"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn combined_value<'a>(
    headers: &'a http::HeaderMap,
    name: &'static str,
    limit: usize,
) -> Result<Option<Cow<'a, str>>, ParseError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let first_str = first
        .to_str()
        .map_err(|_| ParseError::NotAscii { field: name })?;
    let rest: Vec<_> = values.collect();
    if rest.is_empty() {
        check_len(name, first_str, limit)?;
        return Ok(Some(Cow::Borrowed(first_str)));
    }
    let total = rest
        .iter()
        .fold(first_str.len(), |acc, v| acc.saturating_add(v.len() + 2));
    if total > limit {
        return Err(ParseError::TooLarge {
            field: name,
            len: total,
            limit,
        });
    }
    let mut out = String::with_capacity(total);
    out.push_str(first_str);
    for v in rest {
        out.push_str(", ");
        out.push_str(
            v.to_str()
                .map_err(|_| ParseError::NotAscii { field: name })?,
        );
    }
    Ok(Some(Cow::Owned(out)))
}

/// The value of a field that must appear on exactly one line.
///
/// # Errors
///
/// [`ParseError::MultipleLines`] when it appears more than once, and as
/// [`combined_value`].
pub fn single_value<'a>(
    headers: &'a http::HeaderMap,
    name: &'static str,
    limit: usize,
) -> Result<Option<&'a str>, ParseError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ParseError::MultipleLines { field: name });
    }
    let s = first
        .to_str()
        .map_err(|_| ParseError::NotAscii { field: name })?;
    check_len(name, s, limit)?;
    Ok(Some(s))
}

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
