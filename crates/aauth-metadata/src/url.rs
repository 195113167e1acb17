//! HTTPS URLs as AAuth metadata uses them (draft -11 §Metadata Documents): `https` only,
//! no userinfo, no fragment; endpoints additionally without a query.

use std::fmt;

use aauth_tokens::ServerId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Why a string is not an acceptable URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not an acceptable URL: {reason}")]
pub struct UrlError {
    /// The rejected value (truncated to 200 bytes).
    pub value: String,
    /// The rule it broke.
    pub reason: &'static str,
}

/// A validated `https` URL with a DNS host (or IP literal), an optional port, a path and,
/// unless it is an endpoint, an optional query. Compared by exact string equality.
///
/// ```
/// use aauth_metadata::HttpsUrl;
/// let u = HttpsUrl::endpoint("https://ps.example:8443/token").unwrap();
/// assert_eq!(u.host(), "ps.example");
/// assert_eq!(u.port(), 8443);
/// assert_eq!(u.origin(), "https://ps.example:8443");
/// assert!(HttpsUrl::endpoint("https://ps.example/token?x=1").is_err());
/// assert!(HttpsUrl::parse("http://ps.example/jwks.json").is_err());
/// assert!(HttpsUrl::parse("https://user@ps.example/").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HttpsUrl {
    value: String,
    /// End of the host within `value`.
    host_end: usize,
    /// End of the authority (start of the path).
    authority_end: usize,
    port: u16,
}

impl fmt::Debug for HttpsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.value, f)
    }
}

impl fmt::Display for HttpsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

const SCHEME: &str = "https://";

impl HttpsUrl {
    /// Validates a URL that may carry a query (`jwks_uri`, `logo_uri`, `tos_uri`, …).
    ///
    /// # Errors
    ///
    /// [`UrlError`] naming the rule that failed.
    pub fn parse(value: &str) -> Result<Self, UrlError> {
        Self::parse_inner(value, true)
    }

    /// Validates an endpoint URL: as [`HttpsUrl::parse`], and no query.
    ///
    /// # Errors
    ///
    /// [`UrlError`] naming the rule that failed.
    pub fn endpoint(value: &str) -> Result<Self, UrlError> {
        Self::parse_inner(value, false)
    }

    fn parse_inner(value: &str, allow_query: bool) -> Result<Self, UrlError> {
        let fail = |reason| UrlError {
            value: value.chars().take(200).collect(),
            reason,
        };
        if value.len() > MAX_URL_LEN {
            return Err(fail("longer than 2048 bytes"));
        }
        let rest = value
            .strip_prefix(SCHEME)
            .ok_or_else(|| fail("scheme must be https"))?;
        if let Some(b) = value
            .bytes()
            .find(|b| !(b.is_ascii_graphic()) || matches!(b, b'\\' | b'"' | b'<' | b'>'))
        {
            return Err(fail(if b == b' ' {
                "contains a space"
            } else {
                "contains a character that must be percent-encoded"
            }));
        }
        if value.contains('#') {
            return Err(fail("must not have a fragment"));
        }
        if !allow_query && value.contains('?') {
            return Err(fail("an endpoint must not have a query"));
        }
        let authority_len = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_len];
        if authority.contains('@') {
            return Err(fail("must not have userinfo"));
        }
        // The host follows the server-identifier rules: lowercase LDH labels (A-labels for
        // IDNs) or a dotted IPv4 literal. IPv6 literals are refused.
        if authority.starts_with('[') {
            return Err(fail("IPv6 literals are not accepted"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => {
                if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(fail("port must be 1 to 65535"));
                }
                let port: u16 = p.parse().map_err(|_| fail("port must be 1 to 65535"))?;
                if port == 0 {
                    return Err(fail("port must be 1 to 65535"));
                }
                (h, port)
            }
            None => (authority, 443),
        };
        ServerId::parse(&format!("{SCHEME}{host}")).map_err(|e| {
            fail(match e {
                aauth_tokens::IdentifierError::NotServerId { reason, .. } => reason,
                _ => "invalid host",
            })
        })?;
        let path = &rest[authority_len..];
        if !path.is_empty() && !path.starts_with('/') && !path.starts_with('?') {
            return Err(fail("path must start with /"));
        }
        if path.split(['/', '?']).any(|seg| seg == "..") {
            return Err(fail("path must not contain .. segments"));
        }
        Ok(Self {
            value: value.to_owned(),
            host_end: SCHEME.len() + host.len(),
            authority_end: SCHEME.len() + authority_len,
            port,
        })
    }

    /// The URL of a server identifier's well-known document: `{id}/.well-known/{document}`.
    ///
    /// # Errors
    ///
    /// [`UrlError`] if `document` is not a plain file name (`[a-z0-9._-]`, no `..`).
    pub fn well_known(id: &ServerId, document: &str) -> Result<Self, UrlError> {
        let ok = !document.is_empty()
            && document.len() <= 100
            && document != "."
            && !document.contains("..")
            && document
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !ok {
            return Err(UrlError {
                value: document.chars().take(200).collect(),
                reason: "a well-known document name is lowercase letters, digits, '.', '_', '-'",
            });
        }
        Self::endpoint(&id.well_known(document))
    }

    /// The URL.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The host (a DNS name or an IPv4 literal).
    #[must_use]
    pub fn host(&self) -> &str {
        &self.value[SCHEME.len()..self.host_end]
    }

    /// The port: explicit, or 443.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://host[:port]`, as written.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.value[..self.authority_end]
    }

    /// The path and query (`/` when empty), for the request line.
    #[must_use]
    pub fn path_and_query(&self) -> &str {
        match &self.value[self.authority_end..] {
            "" => "/",
            p => p,
        }
    }

    /// Whether `other` has the same origin (scheme, host and port).
    #[must_use]
    pub fn same_origin(&self, other: &Self) -> bool {
        self.host() == other.host() && self.port == other.port
    }
}

impl Serialize for HttpsUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.value)
    }
}

impl<'de> Deserialize<'de> for HttpsUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}
