//! The agent's `callback` on the interaction page (draft -11 §User Interaction): an agent
//! with a browser may open `{url}?code={code}&callback={callback}`, the `callback` built
//! from its `callback_endpoint` metadata; once the person decides, the server sends the
//! browser there, with `?error=…` when the interaction did not succeed (§Interaction
//! Callback Errors). The callback is followed only when the agent's provider publishes
//! it ([`callback_allowed`]): never an open redirect. Without a metadata fetcher
//! ([`AccessServer::metadata`]), or for a callback that fails the check, the page ends
//! with its own completion page, as with no callback at all.

use aauth_metadata::{AgentProviderMetadata, HttpsUrl};
use aauth_tokens::ServerId;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::AccessServer;
use super::interaction::{esc, page};

impl AccessServer {
    /// `callback`, if the agent provider `provider` (of the waiting request's agent
    /// token) publishes it as its agents' ([`callback_allowed`]); `None` without a
    /// callback, a provider, a metadata fetcher, or a readable provider document.
    pub(super) async fn callback_for(
        &self,
        provider: Option<&ServerId>,
        callback: Option<&str>,
    ) -> Option<String> {
        let callback = callback.filter(|c| !c.is_empty())?;
        let (fetch, provider) = (self.metadata.as_ref()?, provider?);
        let doc = aauth_metadata::discover::<AgentProviderMetadata>(fetch.as_ref(), provider)
            .await
            .ok()?;
        callback_allowed(&doc, callback).then(|| callback.to_owned())
    }
}

/// The agent provider of a waiting request (its body as kept: the `iss` of its
/// `agent_token`, verified when the request came), or `None` when the body holds none.
pub(super) fn agent_provider(body: &[u8]) -> Option<ServerId> {
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    let jws = aauth_tokens::jws::CompactJws::parse(body["agent_token"].as_str()?).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&jws.payload).ok()?;
    ServerId::parse(claims["iss"].as_str()?).ok()
}

/// Whether the person's browser may be sent to `callback` for an agent whose provider
/// publishes `doc` (draft -11 §User Interaction: "constructed from the agent's
/// `callback_endpoint` metadata"; §Agent Provider Metadata: `localhost_callback_allowed`):
/// the provider's `callback_endpoint` (same origin and path; the agent may add a query),
/// or, when the provider sets `localhost_callback_allowed`, an `http` URL on a loopback
/// host. Never a URL with a fragment, user information, whitespace or control
/// characters. (The Person Server's consent page applies the same rule.)
pub(super) fn callback_allowed(doc: &AgentProviderMetadata, callback: &str) -> bool {
    if !callback.is_ascii()
        || callback.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '#' | '"' | '<' | '>' | '\\')
        })
    {
        return false;
    }
    if let Some(rest) = callback.strip_prefix("http://") {
        if !doc.localhost_callback_allowed {
            return false;
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len()); // default: no path, the whole rest
        let authority = rest.get(..end).unwrap_or(rest); // default: `end` is a char boundary (ASCII)
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && !h.is_empty() && h != "[" => (h, Some(p)),
            _ => (authority, None),
        };
        return matches!(host, "localhost" | "127.0.0.1" | "[::1]")
            && port.is_none_or(|p| {
                !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
            });
    }
    let (Some(endpoint), Ok(url)) = (doc.callback_endpoint.as_ref(), HttpsUrl::parse(callback))
    else {
        return false;
    };
    let path = url
        .path_and_query()
        .split_once('?')
        .map_or(url.path_and_query(), |(p, _)| p);
    url.same_origin(endpoint) && !url.origin().contains('@') && path == endpoint.path_and_query()
}

/// The origin of an admitted `callback` as a `Content-Security-Policy` source
/// (`https://agent.example`, `http://localhost:8080`): what the consent page's
/// `form-action` must name for its form's redirect to the callback to load. `None` when
/// the origin cannot be written as one (an IPv6 literal): the decision then goes back by
/// a page that refreshes to the callback ([`onward`]).
pub(super) fn callback_origin(callback: &str) -> Option<&str> {
    let scheme = ["https://", "http://"]
        .into_iter()
        .find(|s| callback.starts_with(s))?;
    let rest = callback.get(scheme.len()..)?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len()); // default: no path, the whole rest
    let authority = rest.get(..end)?;
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (host_ok && port_ok)
        .then(|| callback.get(..scheme.len() + end))
        .flatten()
}

/// `callback` with `error={code}` added to its query (draft -11 §Interaction Callback
/// Errors).
pub(super) fn with_error(callback: &str, code: &str) -> String {
    let sep = if callback.contains('?') { '&' } else { '?' };
    format!("{callback}{sep}error={code}")
}

/// The answer of a decision that goes back to the agent's (admitted) `target`: a `303`
/// redirect, which the consent page's policy lets through (its `form-action` names the
/// callback's origin); a page saying `html` that refreshes to it when that policy could
/// not name the origin.
pub(super) fn back_to_agent(target: &str, html: &str) -> http::Response<Bytes> {
    if callback_origin(target).is_none() {
        return onward(target, html);
    }
    let mut r = http::Response::new(Bytes::new());
    *r.status_mut() = StatusCode::SEE_OTHER;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(target) {
        h.insert(http::header::LOCATION, v);
    }
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}

/// A page that says `html` and goes on to `target` by itself (`Refresh: 0`), with a link
/// for a browser that does not: the way to another site from a page whose arrival the
/// policy of an earlier form may govern (a refresh is a navigation of its own, which
/// `form-action` does not).
pub(super) fn onward(target: &str, html: &str) -> http::Response<Bytes> {
    let mut r = page(
        StatusCode::OK,
        format!("{html}<p><a href=\"{}\">Continue</a></p>", esc(target)),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("0; url={target}")) {
        r.headers_mut().insert(http::header::REFRESH, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::{callback_allowed, callback_origin, with_error};
    use aauth_metadata::{AgentProviderMetadata, MetadataDocument};
    use aauth_tokens::ServerId;

    fn provider(extra: &str) -> AgentProviderMetadata {
        let id = ServerId::parse("https://agent.example").unwrap();
        let doc = format!(
            r#"{{"issuer":"https://agent.example","jwks_uri":"https://agent.example/jwks.json"{extra}}}"#
        );
        AgentProviderMetadata::parse_for(doc.as_bytes(), &id).unwrap()
    }

    #[test]
    fn only_the_providers_callback_endpoint_is_admitted() {
        let doc = provider(r#","callback_endpoint":"https://agent.example/callback""#);
        assert!(callback_allowed(&doc, "https://agent.example/callback"));
        assert!(callback_allowed(
            &doc,
            "https://agent.example/callback?flow=7"
        ));
        for refused in [
            "https://agent.example/elsewhere",
            "https://agent.example/callback/more",
            "https://evil.example/callback",
            "https://agent.example.evil/callback",
            "https://agent.example@evil.example/callback",
            "https://agent.example:8443/callback",
            "https://agent.example/callback#frag",
            "https://agent.example/callback?x=<script>",
            "https://agent.example/callback\r\nSet-Cookie: a=b",
            "//evil.example/callback",
            "javascript:alert(1)",
            "http://agent.example/callback",
            "http://localhost:8080/cb",
        ] {
            assert!(!callback_allowed(&doc, refused), "{refused}");
        }
        // No callback_endpoint: nothing but (when allowed) loopback.
        assert!(!callback_allowed(
            &provider(""),
            "https://agent.example/callback"
        ));
        let local = provider(r#","localhost_callback_allowed":true"#);
        assert!(callback_allowed(&local, "http://localhost:8080/cb"));
        assert!(callback_allowed(&local, "http://127.0.0.1/cb?x=1"));
        assert!(callback_allowed(&local, "http://[::1]:9000/cb"));
        assert!(!callback_allowed(
            &local,
            "http://localhost.evil.example/cb"
        ));
        assert!(!callback_allowed(&local, "http://localhost:99999999/cb"));
        assert!(!callback_allowed(
            &local,
            "http://localhost@evil.example/cb"
        ));
    }

    #[test]
    fn a_callback_origin_is_a_csp_source_or_none() {
        assert_eq!(
            callback_origin("https://agent.example/callback?x=1"),
            Some("https://agent.example")
        );
        assert_eq!(
            callback_origin("http://localhost:8080/cb"),
            Some("http://localhost:8080")
        );
        assert_eq!(callback_origin("http://[::1]:9000/cb"), None);
        assert_eq!(
            with_error("https://agent.example/cb", "access_denied"),
            "https://agent.example/cb?error=access_denied"
        );
        assert_eq!(
            with_error("https://agent.example/cb?flow=7", "access_denied"),
            "https://agent.example/cb?flow=7&error=access_denied"
        );
    }
}
