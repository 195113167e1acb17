//! Component values (RFC 9421 §2): derived components from the request line and target,
//! fields from the header section.

use http::{HeaderMap, Method, Uri};

use aauth_headers::Component;

use crate::error::ComponentError;

/// Where `@authority` (and `@scheme`) come from, and which authorities a server answers
/// to.
///
/// There is no default: a verifier must say whose requests it accepts. `@authority` is a
/// required component so that a request signed for one host cannot be replayed at another
/// (draft -11, "Covered Components"); a verifier that took whatever `Host` a request
/// carries would accept a request signed for `ps2.example`, relayed `Host` and all, at
/// `ps.example`.
///
/// ```
/// use aauth_signing::AuthoritySource;
/// use aauth_tokens::ServerId;
/// let own = AuthoritySource::server(&ServerId::parse("https://ps.example")?);
/// let aliases = AuthoritySource::names(["ps.example", "PS.example:443", "ps.internal:8443"])?;
/// assert!(own.accepts("ps.example") && !own.accepts("ps2.example"));
/// assert!(aliases.accepts("ps.internal:8443"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthoritySource {
    /// The server's own names. `@authority` is read from the request (the `Host` header
    /// or the HTTP/2 `:authority`, i.e. the URI's authority, which must agree when both
    /// are present; lowercased, the default port for `scheme` dropped, RFC 9421 §2.2.3;
    /// `X-Forwarded-*` never read) and must be one of `names`, or the request is refused
    /// with [`ComponentError::WrongAuthority`] before any key is looked up. Made by
    /// [`AuthoritySource::server`] or [`AuthoritySource::names`], which normalize.
    #[non_exhaustive]
    Server {
        /// The accepted authorities, normalized (lowercase, no default port).
        names: Vec<String>,
        /// The scheme the service is reached by, for the default port and `@scheme`.
        scheme: UriScheme,
    },
    /// A configured external authority (behind a proxy that rewrites `Host`, RFC 9421
    /// §7.4.3): the signature base uses it whatever the request says, so a request signed
    /// for another authority fails the signature check. Made only through
    /// [`crate::dangerous::fixed_authority`]: the `Host` the request names is then not
    /// what is checked, so a misconfigured value accepts requests meant for another
    /// authority behind the same proxy.
    #[non_exhaustive]
    Fixed {
        /// The authority, already normalized (lowercase, no default port).
        authority: String,
        /// The scheme.
        scheme: UriScheme,
    },
}

impl AuthoritySource {
    /// The host of `id`, under `https`: what every AAuth server (resource, Person Server,
    /// Access Server, agent provider) answers to by default.
    #[must_use]
    pub fn server(id: &aauth_tokens::ServerId) -> Self {
        Self::Server {
            names: vec![id.host().to_owned()],
            scheme: UriScheme::Https,
        }
    }

    /// No name at all: every request is refused with [`ComponentError::WrongAuthority`].
    /// A placeholder for a policy whose names are filled in later (a resource's routes
    /// take the resource's names when they are made).
    #[must_use]
    pub fn nobody() -> Self {
        Self::Server {
            names: Vec::new(),
            scheme: UriScheme::Https,
        }
    }

    /// Several names (virtual hosts, an internal name beside the public one), under
    /// `https`.
    ///
    /// # Errors
    ///
    /// [`ComponentError::BadAuthority`] for a name that is not a host with an optional
    /// numeric port.
    pub fn names<I, S>(names: I) -> Result<Self, ComponentError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::names_with_scheme(names, UriScheme::Https)
    }

    /// Several names reached by `scheme`.
    ///
    /// # Errors
    ///
    /// As [`AuthoritySource::names`].
    pub fn names_with_scheme<I, S>(names: I, scheme: UriScheme) -> Result<Self, ComponentError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names = names
            .into_iter()
            .map(|n| normalize_authority(n.as_ref(), scheme))
            .collect::<Result<Vec<_>, _>>()?;
        if names.is_empty() {
            return Err(ComponentError::BadAuthority);
        }
        Ok(Self::Server { names, scheme })
    }

    /// A fixed external authority (behind a proxy), normalized. Public as
    /// [`crate::dangerous::fixed_authority`].
    pub(crate) fn fixed(authority: &str, scheme: UriScheme) -> Result<Self, ComponentError> {
        Ok(Self::Fixed {
            authority: normalize_authority(authority, scheme)?,
            scheme,
        })
    }

    /// Whether a request addressed to `authority` (as written in `Host`) is for this
    /// server.
    #[must_use]
    pub fn accepts(&self, authority: &str) -> bool {
        let scheme = match self {
            Self::Server { scheme, .. } | Self::Fixed { scheme, .. } => *scheme,
        };
        let Ok(a) = normalize_authority(authority, scheme) else {
            return false;
        };
        match self {
            Self::Server { names, .. } => names.contains(&a),
            Self::Fixed { authority, .. } => *authority == a,
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
    /// The server's view: `@authority` from `Host` / `:authority`, which must name this
    /// server (see [`AuthoritySource`]).
    pub(crate) fn server(
        method: &'a Method,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        source: &AuthoritySource,
    ) -> Result<Self, ComponentError> {
        let (authority, scheme) = match source {
            AuthoritySource::Fixed { authority, scheme } => (authority.clone(), *scheme),
            AuthoritySource::Server { names, scheme } => {
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
                if !names.contains(&authority) {
                    return Err(ComponentError::WrongAuthority { found: authority });
                }
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
