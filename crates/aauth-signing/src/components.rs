//! Component values (RFC 9421 §2): derived components from the request line and target,
//! fields from the header section.

use http::{HeaderMap, Method, Uri};

use aauth_headers::Component;

use crate::error::ComponentError;

/// Where `@authority` (and `@scheme`) come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthoritySource {
    /// From the request: the `Host` header or the HTTP/2 `:authority` (the URI's
    /// authority), which must agree when both are present. A default port for `scheme` is
    /// dropped and the host lowercased (RFC 9421 §2.2.3). `X-Forwarded-*` is never read.
    Request {
        /// The scheme the service is reached by, for the default port and `@scheme`.
        scheme: UriScheme,
    },
    /// A configured external authority (behind a proxy, RFC 9421 §7.4.3), with its scheme.
    Fixed {
        /// The authority, already normalized (lowercase, no default port).
        authority: String,
        /// The scheme.
        scheme: UriScheme,
    },
}

impl Default for AuthoritySource {
    fn default() -> Self {
        Self::Request {
            scheme: UriScheme::Https,
        }
    }
}

/// A URI scheme, for `@scheme`, `@target-uri` and default ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UriScheme {
    /// `https` (port 443).
    Https,
    /// `http` (port 80).
    Http,
}

impl UriScheme {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Http => "http",
        }
    }

    const fn default_port(self) -> &'static str {
        match self {
            Self::Https => "443",
            Self::Http => "80",
        }
    }
}

/// Lowercases the host and drops the port when it is the scheme's default.
pub(crate) fn normalize_authority(raw: &str, scheme: UriScheme) -> Result<String, ComponentError> {
    if raw.is_empty()
        || raw
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'@' || b == b'/')
    {
        return Err(ComponentError::BadAuthority);
    }
    let lower = raw.to_ascii_lowercase();
    // Split off a port (not inside an IPv6 literal).
    let port_at = if lower.starts_with('[') {
        lower.find("]:").map(|i| i + 1)
    } else {
        lower.rfind(':')
    };
    Ok(match port_at {
        Some(i) if &lower[i + 1..] == scheme.default_port() => lower[..i].to_owned(),
        Some(i)
            if lower[i + 1..].is_empty() || !lower[i + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            return Err(ComponentError::BadAuthority);
        }
        _ => lower,
    })
}

/// Reads component values from one request.
#[derive(Debug)]
pub(crate) struct Message<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) authority: String,
    pub(crate) scheme: UriScheme,
}

impl<'a> Message<'a> {
    /// The server's view: `@authority` from `Host` / `:authority` per `source`.
    pub(crate) fn server(
        method: &'a Method,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        source: &AuthoritySource,
    ) -> Result<Self, ComponentError> {
        let (authority, scheme) = match source {
            AuthoritySource::Fixed { authority, scheme } => (authority.clone(), *scheme),
            AuthoritySource::Request { scheme } => {
                let mut hosts = headers.get_all(http::header::HOST).iter();
                let host = match (hosts.next(), hosts.next()) {
                    (Some(h), None) => Some(normalize_authority(
                        h.to_str().map_err(|_| ComponentError::BadAuthority)?,
                        *scheme,
                    )?),
                    (None, _) => None,
                    (Some(_), Some(_)) => return Err(ComponentError::AmbiguousAuthority),
                };
                let from_uri = match uri.authority() {
                    Some(a) => Some(normalize_authority(a.as_str(), *scheme)?),
                    None => None,
                };
                let authority = match (host, from_uri) {
                    (Some(h), Some(u)) if h != u => return Err(ComponentError::AmbiguousAuthority),
                    (Some(h), _) => h,
                    (None, Some(u)) => u,
                    (None, None) => return Err(ComponentError::NoAuthority),
                };
                (authority, *scheme)
            }
        };
        Ok(Self {
            method,
            uri,
            headers,
            authority,
            scheme,
        })
    }

    /// The client's view: `@authority` from the absolute URI, else `Host`.
    pub(crate) fn client(
        method: &'a Method,
        uri: &'a Uri,
        headers: &'a HeaderMap,
    ) -> Result<Self, ComponentError> {
        let scheme = match uri.scheme_str() {
            Some("http") => UriScheme::Http,
            _ => UriScheme::Https,
        };
        let authority = match uri.authority() {
            Some(a) => normalize_authority(a.as_str(), scheme)?,
            None => {
                let h = headers
                    .get(http::header::HOST)
                    .ok_or(ComponentError::NoAuthority)?;
                normalize_authority(
                    h.to_str().map_err(|_| ComponentError::BadAuthority)?,
                    scheme,
                )?
            }
        };
        Ok(Self {
            method,
            uri,
            headers,
            authority,
            scheme,
        })
    }

    fn path(&self) -> &str {
        match self.uri.path() {
            "" => "/",
            p => p,
        }
    }

    /// The value of `component`, appended to `out`.
    pub(crate) fn write_value(
        &self,
        component: &Component,
        out: &mut String,
    ) -> Result<(), ComponentError> {
        if !component.params.is_empty() {
            return Err(ComponentError::UnsupportedParameter {
                component: component.to_string(),
            });
        }
        match component.name.as_str() {
            "@method" => out.push_str(self.method.as_str()),
            "@authority" => out.push_str(&self.authority),
            "@scheme" => out.push_str(self.scheme.as_str()),
            "@path" => out.push_str(self.path()),
            "@query" => {
                out.push('?');
                out.push_str(self.uri.query().unwrap_or_default());
            }
            "@request-target" => {
                out.push_str(self.path());
                if let Some(q) = self.uri.query() {
                    out.push('?');
                    out.push_str(q);
                }
            }
            "@target-uri" => {
                out.push_str(self.scheme.as_str());
                out.push_str("://");
                out.push_str(&self.authority);
                out.push_str(self.path());
                if let Some(q) = self.uri.query() {
                    out.push('?');
                    out.push_str(q);
                }
            }
            name if name.starts_with('@') => {
                return Err(ComponentError::UnsupportedDerived {
                    name: name.to_owned(),
                });
            }
            name => {
                let mut values = self.headers.get_all(name).iter().peekable();
                if values.peek().is_none() {
                    return Err(ComponentError::AbsentField {
                        name: name.to_owned(),
                    });
                }
                for (i, v) in values.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    let s = v.to_str().map_err(|_| ComponentError::NonAsciiField {
                        name: name.to_owned(),
                    })?;
                    out.push_str(s.trim_matches(|c| c == ' ' || c == '\t'));
                }
            }
        }
        Ok(())
    }
}
