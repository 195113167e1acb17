//! The proxy's route table: which configured route a request falls under (path pattern,
//! methods; the first that matches wins), and the paths it refuses to match at all
//! because an upstream could read them as another path.
//!
//! Paths are compared in one form ([`match_form`]), the request's and the patterns'
//! alike: an escaped printable ASCII character decoded (`/v1/models%3Agenerate` is
//! `/v1/models:generate`, as the frameworks behind the proxy read it), other escapes
//! with upper-case digits, and, with `case_insensitive_paths`, ASCII letters in lower
//! case. A pattern `/admin` also covers `/admin/`. `HEAD` falls under a route that
//! lists `GET` (servers answer it with their `GET` handler).

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
    /// Reads `resource_proxy.routes.path`, kept in [`match_form`] (`fold_case`: with
    /// its letters in lower case).
    pub(crate) fn parse(path: &str, fold_case: bool) -> Result<Self, CliError> {
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
            Self::Prefix(match_form(base, fold_case))
        } else {
            Self::Exact(match_form(path, fold_case))
        })
    }

    /// Whether `path` (in [`match_form`]) falls under the pattern. An exact pattern
    /// covers its path with or without a trailing `/`, which servers route alike.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => {
                path == p
                    || path.strip_suffix('/') == Some(p.as_str())
                    || p.strip_suffix('/')
                        .is_some_and(|q| q == path && !q.is_empty())
            }
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
    /// The matcher of a configured route (`fold_case`: `case_insensitive_paths`).
    pub(crate) fn new(route: &ProxyRoute, fold_case: bool) -> Result<Self, CliError> {
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
            pattern: Pattern::parse(&route.path, fold_case)?,
            methods,
        })
    }

    /// Whether the request `method path` (`path` in [`match_form`]) falls under the
    /// route.
    pub(crate) fn matches(&self, method: &Method, path: &str) -> bool {
        self.pattern.matches(path)
            && (self.methods.is_empty()
                || self.methods.contains(method)
                || (method == Method::HEAD && self.methods.contains(&Method::GET)))
    }
}

/// `path` in the form routes are matched in: every escape of a printable ASCII character
/// but `/`, `\` and `%` decoded (those never reach matching: [`unsafe_path`]), every
/// other escape with upper-case hex digits, a character beyond ASCII (a pattern's)
/// escaped as its UTF-8 bytes; with `fold_case`, ASCII letters in lower case.
///
/// An upstream decodes `%3A` to `:` and `%40` to `@`: a route for `/v1/models:generate`
/// must cover `/v1/models%3Agenerate` too, or a weaker route after it would.
pub(crate) fn match_form(path: &str, fold_case: bool) -> String {
    let hex = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut push = |c: char| out.push(if fold_case { c.to_ascii_lowercase() } else { c });
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let escaped = (c == b'%')
            .then(|| Some(hex(*b.get(i + 1)?)? * 16 + hex(*b.get(i + 2)?)?))
            .flatten();
        match escaped {
            Some(byte) if (0x20..0x7f).contains(&byte) && !matches!(byte, b'/' | b'\\' | b'%') => {
                push(char::from(byte));
                i += 3;
            }
            Some(byte) => {
                for d in format!("%{byte:02X}").chars() {
                    push(d);
                }
                i += 3;
            }
            None if c.is_ascii() => {
                push(char::from(c));
                i += 1;
            }
            None => {
                // A character beyond ASCII (only a configured pattern has one: a request's
                // path is ASCII), as the escapes of its UTF-8 bytes.
                let len = path[i..].chars().next().map_or(1, char::len_utf8);
                for byte in &b[i..i + len] {
                    for d in format!("%{byte:02X}").chars() {
                        push(d);
                    }
                }
                i += len;
            }
        }
    }
    out
}

/// Whether an upstream could read `path` as a different path than the route table does:
/// a `.` or `..` segment, a backslash, a percent-encoded dot, slash or backslash, or a
/// `;` (path parameters, which Java servlet containers strip: `/public/..;/admin` is
/// their `/admin`). Such requests are refused (`400`) rather than matched.
pub(crate) fn unsafe_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains(['\\', ';'])
        || ["%2e", "%2f", "%5c", "%3b"].iter().any(|e| lower.contains(e))
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
        let exact = Matcher::new(&route("/status", &[]), false).unwrap();
        assert!(exact.matches(&Method::GET, "/status"));
        assert!(!exact.matches(&Method::GET, "/status/x"));
        let prefix = Matcher::new(&route("/api/*", &["get", "POST"]), false).unwrap();
        for p in ["/api", "/api/", "/api/a/b"] {
            assert!(prefix.matches(&Method::GET, p), "{p}");
        }
        assert!(!prefix.matches(&Method::GET, "/apix"));
        assert!(!prefix.matches(&Method::DELETE, "/api/a"));
        assert!(prefix.matches(&Method::POST, "/api/a"));
        let all = Matcher::new(&route("/*", &[]), false).unwrap();
        assert!(all.matches(&Method::PUT, "/anything/at/all"));
    }

    #[test]
    fn bad_patterns_name_their_key() {
        for bad in ["api", "/a/*/b", "/a*", "/a/../b", "/a?x=1"] {
            let e = Matcher::new(&route(bad, &[]), false)
                .unwrap_err()
                .to_string();
            assert!(e.contains("resource_proxy.routes.path"), "{bad}: {e}");
        }
        let e = Matcher::new(&route("/a", &["GE T"]), false)
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
            // Path parameters, raw or escaped.
            "/public/..;/admin",
            "/admin;x/users",
            "/a%3bb",
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

    /// What an upstream reads as the route's path falls under the route: escaped
    /// reserved characters, either case of hex digits, a trailing `/`, `HEAD` for `GET`;
    /// letters of either case only when configured.
    #[test]
    fn spellings_an_upstream_reads_alike_match_alike() {
        let strict = Matcher::new(&route("/v1/models:generate", &["POST"]), false).unwrap();
        let m = |p: &str| match_form(p, false);
        assert!(strict.matches(&Method::POST, &m("/v1/models%3Agenerate")));
        assert!(strict.matches(&Method::POST, &m("/v1/models%3agenerate")));
        assert!(strict.matches(&Method::POST, &m("/v1/models:generate/")));
        assert!(!strict.matches(&Method::POST, &m("/v1/models:generatex")));
        let cafe = Matcher::new(&route("/café/*", &["GET"]), false).unwrap();
        assert!(cafe.matches(&Method::GET, &m("/caf%c3%a9/menu")));
        assert!(cafe.matches(&Method::HEAD, &m("/caf%C3%A9")));
        assert!(!cafe.matches(&Method::POST, &m("/caf%C3%A9")));
        let users = Matcher::new(&route("/users/a@b.example", &[]), false).unwrap();
        assert!(users.matches(&Method::GET, &m("/users/a%40b.example")));
        // Escapes that would change the path's structure stay escaped.
        assert_eq!(m("/a%2fb%5C%25"), "/a%2Fb%5C%25");
        assert_eq!(m("/a%0a"), "/a%0A");
        let root = Matcher::new(&route("/", &[]), false).unwrap();
        assert!(root.matches(&Method::GET, &m("/")));
        assert!(!root.matches(&Method::GET, &m("")));
        // Case: distinct unless configured.
        let admin = Matcher::new(&route("/Admin/*", &[]), false).unwrap();
        assert!(!admin.matches(&Method::GET, &m("/ADMIN/users")));
        let folded = Matcher::new(&route("/Admin/*", &[]), true).unwrap();
        assert!(folded.matches(&Method::GET, &match_form("/ADMIN/users", true)));
        assert!(folded.matches(&Method::GET, &match_form("/a%44min", true)));
    }
}
