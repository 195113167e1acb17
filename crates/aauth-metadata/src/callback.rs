//! The agent's `callback` on an interaction page (draft -11 §User Interaction): an agent
//! with a browser may open `{url}?code={code}&callback={callback}`, the `callback` built
//! from its `callback_endpoint` metadata; once the person decides, the server sends the
//! browser there, with `?error=…` when the interaction did not succeed (§Interaction
//! Callback Errors). The Person Server's and the Access Server's pages apply one rule
//! ([`allowed`]), so that neither is an open redirect.

use crate::{AgentProviderMetadata, HttpsUrl, MAX_URL_LEN};

/// Whether the person's browser may be sent to `callback` for an agent whose provider
/// publishes `doc` (draft -11 §User Interaction: "constructed from the agent's
/// `callback_endpoint` metadata"; §Agent Provider Metadata: `localhost_callback_allowed`):
/// the provider's `callback_endpoint` (same origin and path; the agent may add a query),
/// or, when the provider sets `localhost_callback_allowed`, an `http` URL on a loopback
/// host. Never a URL longer than [`MAX_URL_LEN`] (2048 bytes, either kind), nor one with
/// a fragment, user information, whitespace or control characters.
///
/// ```
/// use aauth_metadata::{AgentProviderMetadata, MetadataDocument, callback};
/// use aauth_tokens::ServerId;
///
/// let id = ServerId::parse("https://agent.example").unwrap();
/// let doc = AgentProviderMetadata::parse_for(
///     br#"{"issuer":"https://agent.example","jwks_uri":"https://agent.example/jwks.json",
///          "callback_endpoint":"https://agent.example/callback"}"#,
///     &id,
/// ).unwrap();
/// assert!(callback::allowed(&doc, "https://agent.example/callback?flow=7"));
/// assert!(!callback::allowed(&doc, "https://agent.example/elsewhere"));
/// assert!(!callback::allowed(&doc, "https://evil.example/callback"));
/// assert!(!callback::allowed(&doc, "http://localhost:8080/cb"));
/// ```
#[must_use]
pub fn allowed(doc: &AgentProviderMetadata, callback: &str) -> bool {
    // The `https` branch's parser caps its URLs; the loopback branch is capped the same.
    if callback.len() > MAX_URL_LEN
        || !callback.is_ascii()
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

/// The origin of an admitted `callback` ([`allowed`]) as a `Content-Security-Policy` source
/// (`https://agent.example`, `http://localhost:8080`): what the consent page's
/// `form-action` must name for its form's redirect to the callback to load. `None` when
/// the origin cannot be written as one (an IPv6 literal): the decision then goes back by
/// a page that refreshes to the callback.
#[must_use]
pub fn csp_origin(callback: &str) -> Option<&str> {
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
#[must_use]
pub fn with_error(callback: &str, code: &str) -> String {
    let sep = if callback.contains('?') { '&' } else { '?' };
    format!("{callback}{sep}error={code}")
}

#[cfg(test)]
mod tests {
    use super::{allowed as callback_allowed, csp_origin as callback_origin, with_error};
    use crate::{AgentProviderMetadata, MetadataDocument};
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

    /// Both kinds are capped at [`crate::MAX_URL_LEN`]: a loopback callback one byte
    /// longer is refused as an `https` one is.
    #[test]
    fn a_callback_longer_than_a_url_may_be_is_refused() {
        let doc = provider(
            r#","callback_endpoint":"https://agent.example/callback","localhost_callback_allowed":true"#,
        );
        for base in [
            "http://localhost:8080/cb?x=",
            "https://agent.example/callback?x=",
        ] {
            let at_cap = format!("{base}{}", "a".repeat(crate::MAX_URL_LEN - base.len()));
            assert!(callback_allowed(&doc, &at_cap), "{base}");
            let over = format!("{at_cap}a");
            assert!(!callback_allowed(&doc, &over), "{base}");
        }
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
