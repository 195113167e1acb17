//! Field names, lowercase as HTTP/2 and RFC 9421 component identifiers require.

use http::HeaderName;

/// `Signature-Input` (RFC 9421 §4.1).
pub const SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
/// `Signature` (RFC 9421 §4.2).
pub const SIGNATURE: HeaderName = HeaderName::from_static("signature");
/// `Signature-Key` (Signature-Key -09 §3).
pub const SIGNATURE_KEY: HeaderName = HeaderName::from_static("signature-key");
/// `Signature-Error` (Signature-Key -09 §5).
pub const SIGNATURE_ERROR: HeaderName = HeaderName::from_static("signature-error");
/// `Accept-Signature-Scheme` (Signature-Key -09 §4.1).
pub const ACCEPT_SIGNATURE_SCHEME: HeaderName = HeaderName::from_static("accept-signature-scheme");
/// `Accept-Signature-Alg` (Signature-Key -09 §4.2).
pub const ACCEPT_SIGNATURE_ALG: HeaderName = HeaderName::from_static("accept-signature-alg");
/// `Signature-Key-Cache` (Signature-Key -09 §6).
pub const SIGNATURE_KEY_CACHE: HeaderName = HeaderName::from_static("signature-key-cache");
/// `AAuth-Requirement` (draft -11).
pub const AAUTH_REQUIREMENT: HeaderName = HeaderName::from_static("aauth-requirement");
/// `AAuth-Capabilities` (draft -11).
pub const AAUTH_CAPABILITIES: HeaderName = HeaderName::from_static("aauth-capabilities");
/// `AAuth-Access` (draft -11).
pub const AAUTH_ACCESS: HeaderName = HeaderName::from_static("aauth-access");
/// `Content-Digest` (RFC 9530).
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");
/// `Prefer` (RFC 7240).
pub const PREFER: HeaderName = HeaderName::from_static("prefer");
