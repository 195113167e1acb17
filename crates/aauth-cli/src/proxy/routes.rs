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

pub(crate) use aauth_resource::paths::{ambiguous_path, match_form};

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
        if prefix && base.ends_with('/') {
            return Err(bad(
                "an empty segment before `/*` (`/api/*`, not `/api//*`)",
            ));
        }
        if base.contains(['?', '#']) || ambiguous_path(base) {
            return Err(bad("a plain path: no query, fragment or dot segments"));
        }
        Ok(if prefix {
            Self::Prefix(match_form(base, fold_case).into_owned())
        } else {
            Self::Exact(match_form(path, fold_case).into_owned())
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
        for bad in ["api", "/a/*/b", "/a*", "/a/../b", "/a?x=1", "/api//*"] {
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
            assert!(ambiguous_path(p), "{p}");
        }
        for p in [
            "/a/b",
            "/a/.well-known",
            "/a/b.c",
            "/",
            "/a/%20b",
            "/a/%C3%A9",
        ] {
            assert!(!ambiguous_path(p), "{p}");
        }
    }

    /// A path in the characters routes are written in, with some of them escaped (either
    /// case of hex digit): the spelling a client may choose.
    fn spelled() -> impl proptest::strategy::Strategy<Value = (String, String)> {
        use proptest::prelude::*;
        let plain = proptest::collection::vec(
            (
                prop_oneof![
                    proptest::char::range('a', 'z'),
                    proptest::char::range('A', 'Z'),
                    Just(':'),
                    Just('@'),
                    Just('!'),
                    Just('$'),
                    Just('+'),
                    Just(','),
                    Just('='),
                    Just(' '),
                    Just('é'),
                    Just('/'),
                ],
                any::<bool>(),
                any::<bool>(),
            ),
            0..24,
        );
        plain.prop_map(|chars| {
            let mut path = String::from("/");
            let mut spelled = String::from("/");
            for (c, escape, lower) in chars {
                path.push(c);
                if escape && c != '/' {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        spelled.push_str(&if lower {
                            format!("%{b:02x}")
                        } else {
                            format!("%{b:02X}")
                        });
                    }
                } else {
                    spelled.push(c);
                }
            }
            (path, spelled)
        })
    }

    proptest::proptest! {
        /// Every spelling of a path is matched as the path (so none passes under a weaker
        /// route than the one written for it), and the form is a fixed point.
        #[test]
        fn every_spelling_matches_as_the_path((path, spelled) in spelled(), fold in proptest::prelude::any::<bool>()) {
            let form = match_form(&path, fold);
            proptest::prop_assert_eq!(&match_form(&spelled, fold), &form);
            proptest::prop_assert_eq!(&match_form(&form, fold), &form);
            // As a route (those with an empty segment are refused as patterns).
            if let Ok(exact) = Matcher::new(&route(&path, &[]), fold) {
                proptest::prop_assert!(exact.matches(&Method::GET, &match_form(&spelled, fold)));
            }
        }

        /// Any text at all: no panic, and what is refused stays refused in its form.
        #[test]
        fn any_path_is_read_without_panic(path in "\\PC*") {
            let _ = ambiguous_path(&path);
            let form = match_form(&path, false);
            proptest::prop_assert_eq!(&match_form(&form, false), &form);
        }
    }

    /// What an upstream reads as the route's path falls under the route: escaped
    /// reserved characters, either case of hex digits, a trailing `/`, `HEAD` for `GET`;
    /// letters of either case only when configured.
    #[test]
    fn spellings_an_upstream_reads_alike_match_alike() {
        let strict = Matcher::new(&route("/v1/models:generate", &["POST"]), false).unwrap();
        let m = |p: &str| match_form(p, false).into_owned();
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
