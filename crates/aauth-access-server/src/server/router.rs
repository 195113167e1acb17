//! The route table: which method on which path reaches which endpoint. The only place
//! the Access Server looks at a request's method and path; everything after it works on
//! a [`Route`].

use aauth_metadata::{AccessServerMetadata, MetadataDocument};
use http::Method;

use super::{
    AUTH_TOKEN_PATH, INTERACT_PATH, JWKS_PATH, PENDING_PATH, REVOCATION_PATH,
    REVOCATION_PENDING_PATH,
};

/// An endpoint of the Access Server, with what its path carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route<'a> {
    /// The metadata document (`/.well-known/aauth-access.json`) or the JWKS, for any
    /// method ([`aauth_metadata::Published`] answers `405` to all but `GET` and `HEAD`).
    Published,
    /// `POST /auth-token`: a Person Server's token request.
    AuthToken,
    /// `GET /interact?code=…`: the person's page.
    InteractionPage,
    /// `POST /interact`: the person's answer on that page.
    InteractionAnswer,
    /// `GET /pending/{id}`: the Person Server polls a waiting request.
    Poll {
        /// The pending URL's id.
        id: &'a str,
    },
    /// `POST /pending/{id}`: the Person Server answers a waiting request.
    Answer {
        /// The pending URL's id.
        id: &'a str,
    },
    /// `POST /revocation`: a Person Server or a resource revokes a token.
    Revocation,
    /// `GET /revocation/{id}`: the Person Server polls a cascade that outlasted its
    /// request.
    RevocationPoll {
        /// The pending revocation's id.
        id: &'a str,
    },
    /// `/admin/audit`: an operator reads the audit log (any method: the endpoint
    /// answers `405` to all but `GET`).
    OperatorAudit,
}

/// The route of `method` on `path` (no query), or `None` for a path that is not here or a
/// method it does not take (both answered `404`).
pub(super) fn of<'a>(method: &Method, path: &'a str) -> Option<Route<'a>> {
    if is_published(path) {
        return Some(Route::Published);
    }
    if let Some(id) = pending_id(path) {
        return match *method {
            Method::GET => Some(Route::Poll { id }),
            Method::POST => Some(Route::Answer { id }),
            _ => None,
        };
    }
    if path == aauth_metadata::audit::operator::OPERATOR_AUDIT_PATH {
        return Some(Route::OperatorAudit);
    }
    if let Some(id) = path.strip_prefix(REVOCATION_PENDING_PATH) {
        return (*method == Method::GET).then_some(Route::RevocationPoll { id });
    }
    match (method, path) {
        (&Method::POST, AUTH_TOKEN_PATH) => Some(Route::AuthToken),
        (&Method::GET, INTERACT_PATH) => Some(Route::InteractionPage),
        (&Method::POST, INTERACT_PATH) => Some(Route::InteractionAnswer),
        (&Method::POST, REVOCATION_PATH) => Some(Route::Revocation),
        _ => None,
    }
}

/// Whether `path` is one of the published documents: the metadata document or the JWKS.
fn is_published(path: &str) -> bool {
    path == JWKS_PATH
        || path
            .strip_prefix("/.well-known/")
            .is_some_and(|dwk| dwk == AccessServerMetadata::DWK)
}

/// The id of a pending URL. (Every leading repetition of the prefix is removed, as the
/// server always has: `/pending//pending/x` is `x`.)
fn pending_id(path: &str) -> Option<&str> {
    path.starts_with(PENDING_PATH)
        .then(|| path.trim_start_matches(PENDING_PATH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_takes_its_methods_only() {
        let get = &Method::GET;
        let post = &Method::POST;
        assert_eq!(of(post, "/auth-token"), Some(Route::AuthToken));
        assert_eq!(of(get, "/auth-token"), None);
        assert_eq!(of(get, "/interact"), Some(Route::InteractionPage));
        assert_eq!(of(post, "/interact"), Some(Route::InteractionAnswer));
        assert_eq!(of(&Method::PUT, "/interact"), None);
        assert_eq!(of(get, "/pending/abc"), Some(Route::Poll { id: "abc" }));
        assert_eq!(of(post, "/pending/abc"), Some(Route::Answer { id: "abc" }));
        assert_eq!(of(&Method::DELETE, "/pending/abc"), None);
        assert_eq!(of(post, "/revocation"), Some(Route::Revocation));
        assert_eq!(of(get, "/revocation"), None);
        assert_eq!(
            of(get, "/revocation/r1"),
            Some(Route::RevocationPoll { id: "r1" })
        );
        assert_eq!(of(post, "/revocation/r1"), None);
        assert_eq!(of(get, "/other"), None);
    }

    #[test]
    fn the_published_documents_take_every_method() {
        for m in [Method::GET, Method::HEAD, Method::POST] {
            assert_eq!(
                of(&m, "/.well-known/aauth-access.json"),
                Some(Route::Published)
            );
            assert_eq!(of(&m, "/jwks.json"), Some(Route::Published));
        }
        assert_eq!(of(&Method::GET, "/.well-known/aauth-person.json"), None);
    }
}
