//! The proxy's route table: which configured route a request falls under (path pattern,
//! methods; the first that matches wins), and the paths it refuses to match at all
//! because an upstream could read them as another path.

use http::Method;

use crate::config::ProxyRoute;
use crate::error::CliError;

/// A route's path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// This path exactly.
    Exact(String),
    /// This path, and every path under it (`/api/*` is `Prefix("/api")`: `/api`,
    /// `/api/`, `/api/x`, never `/apix`).
    Prefix(String),
}

impl Pattern {
    /// Reads `resource_proxy.routes.path`.
    pub(crate) fn parse(path: &str) -> Result<Self, CliError> {
        let bad = |reason: &str| CliError::Usage {
            flag: "resource_proxy.routes.path",
            reason: format!("{path:?}: {reason}"),
        };
        if !path.starts_with('/') {
            return Err(bad("a path starts with `/`"));
        }
        let (base, prefix) = match path.strip_suffix("/*") {
            Some(base) => (base, true),
            None => (path, false),
        };
        if base.contains('*') {
            return Err(bad("`*` only as a last segment (`/api/*`)"));
        }
        if base.contains(['?', '#']) || unsafe_path(base) {
            return Err(bad("a plain path: no query, fragment or dot segments"));
        }
        Ok(if prefix {
            Self::Prefix(base.to_owned())
        } else {
            Self::Exact(path.to_owned())
        })
    }

    /// Whether `path` falls under the pattern.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => path == p,
            Self::Prefix(base) => path
                .strip_prefix(base.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

/// Which requests a route covers.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    pattern: Pattern,
    /// Empty: every method.
    methods: Vec<Method>,
}

impl Matcher {
    /// The matcher of a configured route.
    pub(crate) fn new(route: &ProxyRoute) -> Result<Self, CliError> {
        let methods = route
            .methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| CliError::Usage {
                    flag: "resource_proxy.routes.methods",
                    reason: format!("{m:?} is not an HTTP method"),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            pattern: Pattern::parse(&route.path)?,
            methods,
        })
    }

    /// Whether the request `method path` falls under the route.
    pub(crate) fn matches(&self, method: &Method, path: &str) -> bool {
        self.pattern.matches(path) && (self.methods.is_empty() || self.methods.contains(method))
    }
}

/// Whether an upstream could read `path` as a different path than the route table does:
/// a `.` or `..` segment, a backslash, or a percent-encoded dot, slash or backslash.
/// Such requests are refused (`400`) rather than matched.
pub(crate) fn unsafe_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains('\\')
        || ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e))
        || path.split('/').any(|s| s == "." || s == "..")
        // An empty segment, which many upstreams merge (`//admin` as `/admin`).
        || path.contains("//")
        || !canonical_escapes(path)
}

/// Whether every `%` in `path` starts an escape of a byte that must be escaped: an
/// escaped unreserved character (`%61` for `a`, RFC 3986 §2.3), which an upstream
/// decodes, would let `/%61dmin` pass a route for `/admin` unmatched; a `%` not followed
/// by two hex digits is no escape at all.
fn canonical_escapes(path: &str) -> bool {
    let b = path.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(hi), Some(lo)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) else {
                return false;
            };
            let byte = hi * 16 + lo;
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, methods: &[&str]) -> ProxyRoute {
        ProxyRoute {
            path: path.to_owned(),
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            access: crate::config::ProxyAccess::AgentToken,
            scope: None,
            require_body_coverage: false,
            oauth_scope: None,
        }
    }

    #[test]
    fn exact_and_prefix_patterns() {
        let exact = Matcher::new(&route("/status", &[])).unwrap();
        assert!(exact.matches(&Method::GET, "/status"));
        assert!(!exact.matches(&Method::GET, "/status/x"));
        let prefix = Matcher::new(&route("/api/*", &["get", "POST"])).unwrap();
        for p in ["/api", "/api/", "/api/a/b"] {
            assert!(prefix.matches(&Method::GET, p), "{p}");
        }
        assert!(!prefix.matches(&Method::GET, "/apix"));
        assert!(!prefix.matches(&Method::DELETE, "/api/a"));
        assert!(prefix.matches(&Method::POST, "/api/a"));
        let all = Matcher::new(&route("/*", &[])).unwrap();
        assert!(all.matches(&Method::PUT, "/anything/at/all"));
    }

    #[test]
    fn bad_patterns_name_their_key() {
        for bad in ["api", "/a/*/b", "/a*", "/a/../b", "/a?x=1"] {
            let e = Matcher::new(&route(bad, &[])).unwrap_err().to_string();
            assert!(e.contains("resource_proxy.routes.path"), "{bad}: {e}");
        }
        let e = Matcher::new(&route("/a", &["GE T"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("resource_proxy.routes.methods"), "{e}");
    }

    #[test]
    fn paths_an_upstream_could_read_otherwise_are_unsafe() {
        for p in [
            "/a/../b",
            "/a/./b",
            "/a/%2e%2e/b",
            "/a%2Fb",
            "/a\\b",
            "/a/%5C",
            "/..",
            // What upstreams decode or merge: an escaped unreserved character, an empty
            // segment, a `%` that escapes nothing.
            "/%61dmin/x",
            "/a/%7Eb",
            "//admin/x",
            "/a//b",
            "/a/%zz",
            "/a/%4",
        ] {
            assert!(unsafe_path(p), "{p}");
        }
        for p in [
            "/a/b",
            "/a/.well-known",
            "/a/b.c",
            "/",
            "/a/%20b",
            "/a/%C3%A9",
        ] {
            assert!(!unsafe_path(p), "{p}");
        }
    }
}
