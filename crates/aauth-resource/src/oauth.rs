//! OAuth beside AAuth on one route (feature `oauth`).
//!
//! The draft plans for coexistence: `AAuth-Requirement` and `WWW-Authenticate` are
//! independent and a response may carry both, so a legacy client follows
//! `WWW-Authenticate: Bearer` and an AAuth agent follows `AAuth-Requirement`. A layer
//! given an [`OAuthAccess`] ([`crate::AAuthLayer::oauth`]) therefore:
//!
//! - admits a request that carries `Authorization: Bearer` and no AAuth signature when
//!   the token verifies (through `aauth_oauth`) and grants the route's scopes; the handler
//!   finds an [`OAuthCaller`] in its extensions (or a [`crate::Principal`]);
//! - answers a bad token with the RFC 6750 §3 error (`401 invalid_token`, `403
//!   insufficient_scope`, `400 invalid_request`) in `WWW-Authenticate`, the route's
//!   `AAuth-Requirement` beside it on a `401`; the handler is never reached;
//! - adds the `Bearer` challenge (with `scope` and `resource_metadata` when configured) to
//!   every `401` of the AAuth side, so one `401` tells either kind of client what to do;
//! - refuses a request that carries both an AAuth signature and an OAuth token (`400`):
//!   one request is one caller.
//!
//! A `DPoP`-scheme token is refused until DPoP proofs are checked here.

use std::sync::Arc;

use aauth_oauth::{
    AccessTokenClaims, BearerChallenge, Credential, OAuthError, VerifyAccessToken, credential,
};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};

use crate::deferred::problem;

/// What a route accepts on its OAuth side.
///
/// ```
/// # use std::sync::Arc;
/// # use aauth_keys::time::SystemClock;
/// # use aauth_metadata::{CacheConfig, EgressPolicy, HttpsTransport, https_fetcher};
/// use aauth_oauth::{AccessTokenPolicy, AccessTokenVerifier, Issuer};
/// use aauth_resource::OAuthAccess;
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// # let clock = Arc::new(SystemClock);
/// # let fetch = Arc::new(https_fetcher(EgressPolicy::new(), HttpsTransport::with_webpki_roots(), clock.clone()));
/// let verifier = AccessTokenVerifier::new(
///     AccessTokenPolicy::new("https://api.example"),
///     [Issuer::discover("https://login.example")?],
///     fetch,
///     clock,
///     CacheConfig::default(),
/// );
/// let oauth = OAuthAccess::new(Arc::new(verifier))
///     .require_scope("files.read")
///     .resource_metadata("https://api.example/.well-known/oauth-protected-resource");
/// # drop(oauth); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct OAuthAccess {
    verifier: Arc<dyn VerifyAccessToken>,
    scopes: Vec<String>,
    realm: Option<String>,
    resource_metadata: Option<String>,
}

impl OAuthAccess {
    /// Bearer tokens verified by `verifier` (its policy names the audience and the
    /// trusted issuers), no scope required.
    #[must_use]
    pub fn new(verifier: Arc<dyn VerifyAccessToken>) -> Self {
        Self {
            verifier,
            scopes: Vec::new(),
            realm: None,
            resource_metadata: None,
        }
    }

    /// A scope every admitted token must grant (`403 insufficient_scope` otherwise).
    #[must_use]
    pub fn require_scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// The `realm` of the `Bearer` challenge.
    #[must_use]
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// The URL of the resource's RFC 9728 protected-resource metadata, sent as the
    /// challenge's `resource_metadata` (RFC 9728 §5.1).
    #[must_use]
    pub fn resource_metadata(mut self, url: impl Into<String>) -> Self {
        self.resource_metadata = Some(url.into());
        self
    }

    /// The `WWW-Authenticate` value: for `error`, or the bare challenge.
    fn challenge(&self, error: Option<&OAuthError>) -> Option<HeaderValue> {
        let mut c = BearerChallenge::default();
        c.realm.clone_from(&self.realm);
        c.scope = (!self.scopes.is_empty()).then(|| self.scopes.join(" "));
        c.resource_metadata.clone_from(&self.resource_metadata);
        HeaderValue::from_str(&c.render(error)).ok()
    }

    /// Adds the `Bearer` challenge to a `401` that has none.
    pub(crate) fn add_challenge(&self, mut resp: Response<Bytes>) -> Response<Bytes> {
        if resp.status() == StatusCode::UNAUTHORIZED
            && !resp.headers().contains_key(http::header::WWW_AUTHENTICATE)
            && let Some(v) = self.challenge(None)
        {
            resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
        }
        resp
    }

    /// The answer to an OAuth failure: its status, the RFC 9457 body every refusal has,
    /// the challenge, and `Retry-After` on a `503`.
    fn refuse(&self, e: &OAuthError) -> Response<Bytes> {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let mut resp = problem(status, e.code(), &e.to_string());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        } else if let Some(v) = self.challenge(Some(e)) {
            resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// The OAuth client a route admitted: its verified access token's claims. The layer puts
/// it in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthCaller(pub AccessTokenClaims);

/// What the OAuth side decided.
pub(crate) enum OAuthStep {
    /// No OAuth credential: the AAuth side decides.
    NotOAuth,
    /// A verified token granting the route's scopes.
    Admit(Box<OAuthCaller>),
    /// The answer, already made.
    Refuse(Response<Bytes>),
}

fn signed(parts: &Parts) -> bool {
    use aauth_headers::names;
    [
        names::SIGNATURE_INPUT,
        names::SIGNATURE,
        names::SIGNATURE_KEY,
    ]
    .iter()
    .any(|n| parts.headers.contains_key(n))
}

impl OAuthAccess {
    pub(crate) async fn step(&self, parts: &Parts) -> OAuthStep {
        let token = match credential(&parts.headers) {
            Ok(None) => return OAuthStep::NotOAuth,
            Err(e) => return OAuthStep::Refuse(self.refuse(&e)),
            Ok(Some(_)) if signed(parts) => {
                return OAuthStep::Refuse(self.refuse(&OAuthError::Request {
                    reason: "both an AAuth signature and an OAuth token: one request is one caller",
                }));
            }
            Ok(Some(Credential::Bearer(token))) => token,
            Ok(Some(_)) => {
                return OAuthStep::Refuse(self.refuse(&OAuthError::Binding {
                    reason: "DPoP-bound tokens are not accepted on this route",
                }));
            }
        };
        let claims = match self.verifier.verify_bearer(token).await {
            Ok(claims) => claims,
            Err(e) => return OAuthStep::Refuse(self.refuse(&e)),
        };
        match claims.require_scopes(self.scopes.iter().map(String::as_str)) {
            Ok(()) => OAuthStep::Admit(Box::new(OAuthCaller(claims))),
            Err(e) => OAuthStep::Refuse(self.refuse(&e)),
        }
    }
}
