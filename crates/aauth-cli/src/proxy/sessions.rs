//! The session-token access mode (draft -11 §AAuth-Access Response Header) in front of an
//! API that manages its own authorization.
//!
//! The upstream grants a session by answering an admitted agent (on any route, its own
//! consent or login flow done, or its policy satisfied) with a `2xx` carrying
//! `x-aauth-grant-session: SCOPE` (space-separated values; empty for none). The proxy
//! keeps the session, bound to the agent and to the key that signed the request, and
//! answers the agent with its token in `AAuth-Access`; the agent presents it as
//! `Authorization: AAuth …`, covered by its signature, on the `session-token` routes,
//! whose requests reach the upstream with the session's scope in `x-aauth-scope`.
//!
//! An upstream that already authorizes with tokens of its own (an OAuth access token its
//! authorization server issued, say) may hand one to the proxy with the grant, in
//! `x-aauth-grant-credential`: the session wraps it (draft -11 §Drop-In Replacement:
//! the resource "returns its existing token opaquely via the `AAuth-Access` header,
//! bound to the agent's signature"). The agent never sees it; each request the session
//! admits reaches the upstream with it in `Authorization: Bearer`, as the upstream's own
//! clients always sent it. In Redis it is kept sealed (`credential_key_file`).
//!
//! The upstream never sees a session token and cannot mint one but through the proxy:
//! the grant headers and any `AAuth-Access` of its own are taken out of every response.

use std::sync::Arc;

use aauth_keys::time::Clock;
use aauth_resource::{Admitted, SessionStore};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::body::ProxyBody;
use super::upstream::problem;

/// The response header by which the upstream grants a session.
pub(crate) const GRANT: HeaderName = HeaderName::from_static("x-aauth-grant-session");

/// The response header by which the upstream hands over a credential of its own for the
/// session to wrap.
pub(crate) const GRANT_CREDENTIAL: HeaderName = HeaderName::from_static("x-aauth-grant-credential");

/// The longest credential a session wraps (8 KiB).
const MAX_CREDENTIAL: usize = 8 * 1024;

/// The response header that carries a session token to the agent.
const AAUTH_ACCESS: HeaderName = HeaderName::from_static("aauth-access");

/// Seconds an agent is asked to wait when the session store cannot answer.
const RETRY_AFTER_SECS: u64 = 1;

/// Where granted sessions are kept, and for how long.
#[derive(Clone)]
pub(crate) struct Grants {
    store: Arc<dyn SessionStore>,
    lifetime_secs: u64,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl Grants {
    /// Sessions kept in `store`, each for `lifetime_secs` from its grant.
    pub(crate) fn new(
        store: Arc<dyn SessionStore>,
        lifetime_secs: u64,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            lifetime_secs,
            clock,
        }
    }

    /// Takes the upstream's grant, and any `AAuth-Access` it set itself, out of the
    /// response `headers` (status `status`) to `admitted` (`None`: an OAuth client, which
    /// sessions are not for); when it granted a session,
    /// keeps it and puts its token in `AAuth-Access`. A grant that cannot be honoured is
    /// logged and dropped (not to an agent, or on a response that is not a success); a
    /// malformed one is `502`, and a store that cannot keep it `503` with `Retry-After`.
    pub(crate) async fn apply(
        &self,
        admitted: Option<&Admitted>,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) -> Result<(), Response<ProxyBody>> {
        headers.remove(AAUTH_ACCESS);
        let mut grants = headers.get_all(&GRANT).iter();
        let (first, second) = (grants.next().cloned(), grants.next().is_some());
        headers.remove(&GRANT);
        let mut credentials = headers.get_all(&GRANT_CREDENTIAL).iter();
        let credential = (credentials.next().cloned(), credentials.next().is_some());
        headers.remove(&GRANT_CREDENTIAL);
        let Some(value) = first else {
            if credential.0.is_some() {
                tracing::warn!("a credential without a session grant: dropped");
            }
            return Ok(());
        };
        let malformed = |reason: &str| {
            tracing::warn!(reason, "the upstream's session grant is malformed");
            problem(
                StatusCode::BAD_GATEWAY,
                "the upstream granted a malformed session",
            )
        };
        let scope = scope_of(&value, second).map_err(malformed)?;
        let wrapped = credential_of(credential).map_err(malformed)?;
        if !status.is_success() {
            tracing::warn!(%status, "a session grant on a response that is not a success: dropped");
            return Ok(());
        }
        let now = self.clock.now();
        let Some(session) = admitted
            .and_then(|a| a.session_for(scope, now.plus(self.lifetime_secs)))
            .map(|s| match wrapped {
                Some(w) => s.wrapping(w),
                None => s,
            })
        else {
            tracing::warn!("a session grant for a caller that is not an agent: dropped");
            return Ok(());
        };
        let token = self.store.issue(session, now).await.map_err(|e| {
            tracing::warn!(reason = %e.reason, "the session store could not keep a grant");
            let mut resp = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the session could not be kept; try again",
            );
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(RETRY_AFTER_SECS),
            );
            resp
        })?;
        let mut value = HeaderValue::from_str(token.secret()).map_err(|_| {
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "a session token that is not a header value",
            )
        })?;
        value.set_sensitive(true);
        headers.insert(AAUTH_ACCESS, value);
        Ok(())
    }
}

/// The scope a grant's value names (`None` for an empty one): scope tokens (RFC 6749
/// §3.3) separated by single spaces; `repeated` when the header came twice.
fn scope_of(value: &HeaderValue, repeated: bool) -> Result<Option<String>, &'static str> {
    if repeated {
        return Err("more than one grant");
    }
    let text = value.to_str().map_err(|_| "not visible ASCII")?.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
    };
    if text.split(' ').all(token) {
        Ok(Some(text.to_owned()))
    } else {
        Err("not a scope: scope tokens separated by single spaces")
    }
}

/// The credential a grant hands over (`None` without one): one value of visible ASCII
/// without spaces (a `token68`, or any such token an upstream uses), at most
/// [`MAX_CREDENTIAL`] bytes.
fn credential_of(
    (value, repeated): (Option<HeaderValue>, bool),
) -> Result<Option<aauth_resource::Wrapped>, &'static str> {
    let Some(value) = value else {
        return Ok(None);
    };
    if repeated {
        return Err("more than one credential");
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_CREDENTIAL {
        return Err("a credential is 1 to 8192 bytes");
    }
    if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err("a credential is visible ASCII without spaces");
    }
    Ok(Some(aauth_resource::Wrapped::new(
        String::from_utf8_lossy(bytes).into_owned(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_names_a_scope_or_none() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            scope_of(&v("files.read files.write"), false),
            Ok(Some("files.read files.write".to_owned()))
        );
        assert_eq!(scope_of(&v(""), false), Ok(None));
        assert_eq!(scope_of(&v("  "), false), Ok(None));
        assert!(scope_of(&v("a  b"), false).is_err(), "two spaces");
        assert!(scope_of(&v("a\"b"), false).is_err(), "a quote");
        assert!(scope_of(&v("a\\b"), false).is_err(), "a backslash");
        assert!(scope_of(&v("a"), true).is_err(), "twice");
        assert!(scope_of(&HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(), false).is_err());
    }

    #[test]
    fn a_credential_is_one_visible_token() {
        let v = |s: &str| Some(HeaderValue::from_str(s).unwrap());
        assert_eq!(
            credential_of((v("eyJ.abc-_~+/="), false))
                .unwrap()
                .map(|w| w.secret().to_owned()),
            Some("eyJ.abc-_~+/=".to_owned())
        );
        assert_eq!(credential_of((None, false)), Ok(None));
        assert!(credential_of((v("a b"), false)).is_err(), "a space");
        assert!(credential_of((v(""), false)).is_err(), "empty");
        assert!(credential_of((v("a"), true)).is_err(), "twice");
        assert!(
            credential_of((v(&"a".repeat(8193)), false)).is_err(),
            "too long"
        );
    }
}
