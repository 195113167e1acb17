//! Compact JWS (RFC 7515 §7.1) for the algorithms of the policy: `Ed25519` and `ES256`.
//!
//! Written here rather than taken from a JOSE library because AAuth requires the
//! fully-specified `alg` values of RFC 9864, which `josekit` 0.10 and `jsonwebtoken` 11
//! cannot read (`docs/decisions/0001-own-jws-and-rfc9421.md`).
//!
//! Parsing is strict and cheap checks come first: the whole token must be at most
//! [`MAX_TOKEN_BYTES`] of `[A-Za-z0-9_.-]` in exactly three non-empty segments of canonical
//! unpadded base64url, before any JSON is read. JWE, the JSON serializations, unsigned
//! tokens, `crit`, `b64`, `zip` and key-carrying headers (`jku`, `x5u`, `x5c`, `x5t`) are
//! refused; `jwk` is allowed only where the caller asks for it (`jkt-jwt`).

use aauth_keys::{Algorithm, Jwk, PublicKey, Signer, base64url};

use crate::TokenError;
use crate::json::{Object, ObjectError};

/// The bytes a compact JWS may contain: the base64url alphabet and `.`.
static COMPACT_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.';
        i += 1;
    }
    t
};

/// The largest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The protected header of a compact JWS.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwsHeader {
    /// The algorithm, already held to the policy.
    pub alg: Algorithm,
    /// `typ`, as written.
    pub typ: Option<String>,
    /// `kid`.
    pub kid: Option<String>,
    /// `jwk` (only where allowed: the `jkt-jwt` scheme).
    pub jwk: Option<Jwk>,
}

/// A compact JWS split and decoded, not yet verified.
#[derive(Debug, Clone)]
pub struct CompactJws<'a> {
    token: &'a str,
    signing_input_len: usize,
    payload_start: usize,
    /// The decoded protected header.
    pub header: JwsHeader,
    /// The decoded payload bytes.
    pub payload: Vec<u8>,
    signature: Vec<u8>,
}

/// A compact JWS cut into its three segments, each decoded; nothing read yet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Segments<'a> {
    /// `BASE64URL(header) '.' BASE64URL(payload)`, as received: what the signature covers.
    pub signing_input: &'a str,
    /// The header's bytes.
    pub header: Vec<u8>,
    /// The payload's bytes.
    pub payload: Vec<u8>,
    /// The signature's bytes (never empty).
    pub signature: Vec<u8>,
}

/// Cuts a compact JWS (RFC 7515 §7.1) into its segments, for every JWS reader of the
/// workspace (AAuth's tokens here, OAuth access tokens and DPoP proofs in `aauth-oauth`):
/// at most [`MAX_TOKEN_BYTES`], exactly three segments, header and payload not empty, the
/// signature not empty (an unsigned token is refused here), each canonical unpadded
/// base64url (so nothing outside the alphabet gets through).
///
/// ```
/// use aauth_tokens::jws::segments;
/// let s = segments("e30.eyJhIjoxfQ.c2ln").unwrap();
/// assert_eq!((s.header.as_slice(), s.payload.as_slice()), (&b"{}"[..], &br#"{"a":1}"#[..]));
/// assert_eq!(s.signing_input, "e30.eyJhIjoxfQ");
/// assert_eq!(segments("e30.e30."), Err("unsigned token (empty signature segment)"));
/// ```
///
/// # Errors
///
/// What is wrong, as a phrase.
pub fn segments(token: &str) -> Result<Segments<'_>, &'static str> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err("token is longer than 8 KiB");
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("a compact JWS has exactly three segments");
    };
    if h.is_empty() || p.is_empty() {
        return Err("empty header or payload segment");
    }
    if s.is_empty() {
        return Err("unsigned token (empty signature segment)");
    }
    Ok(Segments {
        signing_input: &token[..h.len() + 1 + p.len()],
        header: base64url::decode(h).map_err(|_| "header is not canonical base64url")?,
        payload: base64url::decode(p).map_err(|_| "payload is not canonical base64url")?,
        signature: base64url::decode(s).map_err(|_| "signature is not canonical base64url")?,
    })
}

/// Which header parameters a caller tolerates beyond `alg`, `typ`, `kid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderPolicy {
    /// AAuth tokens: no `jwk`.
    Standard,
    /// `jkt-jwt`: `jwk` required.
    EmbeddedJwk,
}

const FORBIDDEN_HEADERS: [&str; 8] = ["crit", "b64", "zip", "jku", "x5u", "x5c", "x5t", "x5t#S256"];

impl<'a> CompactJws<'a> {
    /// Splits and decodes a compact JWS, applying the structural checks and the algorithm
    /// policy to the header. The signature is not verified.
    ///
    /// # Errors
    ///
    /// [`TokenError::Malformed`], [`TokenError::Header`], [`TokenError::ForbiddenHeader`]
    /// or [`TokenError::Algorithm`].
    pub fn parse(token: &'a str) -> Result<Self, TokenError> {
        Self::parse_with(token, HeaderPolicy::Standard, &|_| Ok(()))
    }

    /// As [`CompactJws::parse`], with the `typ` check run right after the header is read
    /// and before the algorithm policy (draft -11 §11.5.1: `typ` first).
    pub(crate) fn parse_with(
        token: &'a str,
        policy: HeaderPolicy,
        check_typ: &dyn Fn(Option<&str>) -> Result<(), TokenError>,
    ) -> Result<Self, TokenError> {
        let malformed = |reason| TokenError::Malformed { reason };
        if token.len() <= MAX_TOKEN_BYTES && !token.bytes().all(|b| COMPACT_CHARS[usize::from(b)]) {
            return Err(malformed(
                "token holds characters outside base64url and '.'",
            ));
        }
        let Segments {
            signing_input,
            header: header_bytes,
            payload,
            signature,
        } = segments(token).map_err(malformed)?;
        let header_json =
            std::str::from_utf8(&header_bytes).map_err(|_| malformed("header is not UTF-8"))?;
        let header = parse_header(header_json, policy, check_typ)?;
        let header_len = token.find('.').unwrap_or(0);
        Ok(Self {
            token,
            signing_input_len: signing_input.len(),
            payload_start: header_len + 1,
            header,
            payload,
            signature,
        })
    }

    /// The JWS Signing Input: `BASE64URL(header) '.' BASE64URL(payload)`.
    #[must_use]
    pub fn signing_input(&self) -> &'a str {
        &self.token[..self.signing_input_len]
    }

    /// The base64url payload segment as received.
    #[must_use]
    pub fn payload_segment(&self) -> &'a str {
        &self.token[self.payload_start..self.signing_input_len]
    }

    /// Verifies the signature with `key`, whose algorithm must be the header's: a `kid`
    /// that selects a key of another algorithm is an error, never a reason to try another
    /// key.
    ///
    /// # Errors
    ///
    /// [`TokenError::KeyAlgorithmMismatch`] or [`TokenError::BadSignature`].
    pub fn verify(&self, key: &PublicKey) -> Result<(), TokenError> {
        if key.algorithm() != self.header.alg {
            return Err(TokenError::KeyAlgorithmMismatch {
                header: self.header.alg,
                key: key.algorithm(),
            });
        }
        key.verify(self.signing_input().as_bytes(), &self.signature)
            .map_err(|_| TokenError::BadSignature)
    }
}

fn parse_header(
    json: &str,
    policy: HeaderPolicy,
    check_typ: &dyn Fn(Option<&str>) -> Result<(), TokenError>,
) -> Result<JwsHeader, TokenError> {
    let obj = Object::parse(json).map_err(|e| match e {
        ObjectError::NotAnObject(reason) => TokenError::Header { reason },
        ObjectError::Duplicate(name) => TokenError::Header {
            reason: format!("parameter {name} appears twice"),
        },
    })?;
    if let Some(name) = FORBIDDEN_HEADERS.iter().find(|n| obj.has(n)) {
        return Err(TokenError::ForbiddenHeader { name });
    }
    let bad = |name: &str, reason: String| TokenError::Header {
        reason: format!("{name} {reason}"),
    };
    let typ = obj.string("typ").map_err(|r| bad("typ", r))?;
    check_typ(typ.as_deref())?;
    let alg_text = obj
        .string("alg")
        .map_err(|r| bad("alg", r))?
        .ok_or_else(|| bad("alg", "is missing".to_owned()))?;
    let alg: Algorithm = alg_text.parse().map_err(TokenError::Algorithm)?;
    let kid = obj
        .string("kid")
        .map_err(|r| bad("kid", r))?
        .map(std::borrow::Cow::into_owned);
    if let Some(kid) = &kid
        && (kid.is_empty() || kid.len() > 256 || kid.chars().any(char::is_control))
    {
        return Err(bad(
            "kid",
            "must be 1-256 characters without control characters".to_owned(),
        ));
    }
    let jwk = match (policy, obj.get("jwk")) {
        (HeaderPolicy::Standard, Some(_)) => {
            return Err(TokenError::ForbiddenHeader { name: "jwk" });
        }
        (HeaderPolicy::Standard, None) => None,
        (HeaderPolicy::EmbeddedJwk, None) => return Err(bad("jwk", "is missing".to_owned())),
        (HeaderPolicy::EmbeddedJwk, Some(raw)) => {
            Some(Jwk::from_json(raw.get()).map_err(|e| bad("jwk", e.to_string()))?)
        }
    };
    Ok(JwsHeader {
        alg,
        typ: typ.map(std::borrow::Cow::into_owned),
        kid,
        jwk,
    })
}

/// Builds and signs a compact JWS with header `{"alg","kid","typ"}` over `payload`.
///
/// # Errors
///
/// [`TokenError::Sign`] when the signer fails.
///
/// ```
/// use aauth_keys::{PrivateKey, Signer};
/// use aauth_tokens::jws::{CompactJws, sign};
/// let key = PrivateKey::ed25519_from_seed(&[7; 32]);
/// let token = sign(&key, "k1", "aa-agent+jwt", br#"{"sub":"x"}"#)?;
/// let jws = CompactJws::parse(&token)?;
/// jws.verify(key.public_key())?;
/// assert_eq!(jws.header.kid.as_deref(), Some("k1"));
/// # Ok::<(), aauth_tokens::TokenError>(())
/// ```
pub fn sign(
    signer: &dyn Signer,
    kid: &str,
    typ: &str,
    payload: &[u8],
) -> Result<String, TokenError> {
    let header = serde_json::json!({ "alg": signer.algorithm().as_str(), "kid": kid, "typ": typ });
    let header = header.to_string();
    let mut out = String::with_capacity(header.len() * 2 + payload.len() * 4 / 3 + 100);
    base64url::encode_into(header.as_bytes(), &mut out);
    out.push('.');
    base64url::encode_into(payload, &mut out);
    sign_input(signer, out)
}

/// Signs an already-encoded signing input (`header.payload`) and appends the signature.
///
/// # Errors
///
/// [`TokenError::Sign`] when the signer fails.
pub fn sign_input(signer: &dyn Signer, mut signing_input: String) -> Result<String, TokenError> {
    let sig = signer
        .sign(signing_input.as_bytes())
        .map_err(TokenError::Sign)?;
    signing_input.push('.');
    base64url::encode_into(&sig, &mut signing_input);
    Ok(signing_input)
}
