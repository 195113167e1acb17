//! The agent's `callback` on the interaction page (draft -11 §User Interaction): an agent
//! with a browser may open `{url}?code={code}&callback={callback}`, the `callback` built
//! from its `callback_endpoint` metadata; once the person decides, the server sends the
//! browser there, with `?error=…` when the interaction did not succeed (§Interaction
//! Callback Errors). The callback is followed only when the agent's provider publishes
//! it ([`callback_allowed`]): never an open redirect. Without a metadata fetcher
//! ([`AccessServer::metadata`]), or for a callback that fails the check, the page ends
//! with its own completion page, as with no callback at all.

use aauth_metadata::AgentProviderMetadata;
pub(super) use aauth_metadata::callback::{
    allowed as callback_allowed, csp_origin as callback_origin, with_error,
};
use aauth_tokens::ServerId;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::AccessServer;
use super::interaction::{esc, page, page_headers};

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
    page_headers(h);
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
