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
//! A `DPoP`-scheme token (RFC 9449) is admitted when the route takes DPoP
//! ([`OAuthAccess::dpop`]): one proof for this request by the key the token is bound to,
//! its `jti` not seen before; otherwise it is refused.

use std::sync::Arc;

use aauth_keys::time::UnixTime;
use aauth_oauth::{
    AccessTokenClaims, BearerChallenge, Credential, DpopCheck, JwsAlgorithm, OAuthError,
    VerifyAccessToken, credential,
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
    dpop: Option<DpopCheck>,
    opaque: Option<Arc<dyn VerifyAccessToken>>,
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
            dpop: None,
            opaque: None,
        }
    }

    /// Checks tokens that are not JWTs (no two `.`) with `opaque`, typically an
    /// `aauth_oauth::Introspection` (RFC 7662); JWTs still go to the first verifier.
    #[must_use]
    pub fn opaque_tokens(mut self, opaque: Arc<dyn VerifyAccessToken>) -> Self {
        self.opaque = Some(opaque);
        self
    }

    /// The verifier for `token`: the introspecting one for an opaque token, if set.
    fn verifier_for(&self, token: &str) -> &dyn VerifyAccessToken {
        match &self.opaque {
            Some(opaque) if token.bytes().filter(|&b| b == b'.').count() != 2 => opaque.as_ref(),
            _ => self.verifier.as_ref(),
        }
    }

    /// Accepts DPoP-bound tokens (RFC 9449) too: `Authorization: DPoP` with one `DPoP`
    /// proof by the key the token's `cnf.jkt` names, checked by `dpop` (the public origin
    /// proofs name, and the replay store their `jti`s are recorded in). Challenges then
    /// carry a `DPoP` scheme with `algs` beside `Bearer`.
    #[must_use]
    pub fn dpop(mut self, dpop: DpopCheck) -> Self {
        self.dpop = Some(dpop);
        self
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

    fn challenge_parts(&self) -> BearerChallenge {
        let mut c = BearerChallenge::default();
        c.realm.clone_from(&self.realm);
        c.scope = (!self.scopes.is_empty()).then(|| self.scopes.join(" "));
        c.resource_metadata.clone_from(&self.resource_metadata);
        c
    }

    /// The `WWW-Authenticate` fields: the `Bearer` challenge (with `error` when it is a
    /// bearer failure), and, when DPoP is accepted, the `DPoP` one (with `error` when it is
    /// a DPoP failure).
    fn challenges(&self, error: Option<&OAuthError>, dpop_failed: bool) -> Vec<HeaderValue> {
        let c = self.challenge_parts();
        let mut out = vec![c.render(error.filter(|_| !dpop_failed))];
        if self.dpop.is_some() {
            let algs: Vec<&str> = JwsAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
            out.push(c.render_dpop(error.filter(|_| dpop_failed), &algs.join(" ")));
        }
        out.into_iter()
            .filter_map(|v| HeaderValue::from_str(&v).ok())
            .collect()
    }

    /// Adds the challenges to a `401` that has none (and a DPoP nonce, when they are
    /// required, so that a client's first proof can carry one).
    pub(crate) fn add_challenge(
        &self,
        mut resp: Response<Bytes>,
        now: UnixTime,
    ) -> Response<Bytes> {
        if resp.status() == StatusCode::UNAUTHORIZED
            && !resp.headers().contains_key(http::header::WWW_AUTHENTICATE)
        {
            for v in self.challenges(None, false) {
                resp.headers_mut().append(http::header::WWW_AUTHENTICATE, v);
            }
            self.add_nonce(&mut resp, now);
        }
        resp
    }

    /// `DPoP-Nonce` (RFC 9449 §9), when this route requires nonces.
    fn add_nonce(&self, resp: &mut Response<Bytes>, now: UnixTime) {
        if let Some(v) = self
            .dpop
            .as_ref()
            .and_then(|d| d.nonce(now))
            .and_then(|n| HeaderValue::from_str(&n).ok())
        {
            resp.headers_mut().insert("dpop-nonce", v);
        }
    }

    /// The answer to an OAuth failure: its status, the RFC 9457 body every refusal has,
    /// the challenges, and `Retry-After` on a `503` or a `429`.
    fn refuse(&self, e: &OAuthError, dpop_failed: bool, now: UnixTime) -> Response<Bytes> {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let mut resp = problem(status, e.code(), &e.to_string());
        if let OAuthError::RateLimited { retry_after, .. } = e {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(*retry_after));
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        } else {
            for v in self.challenges(Some(e), dpop_failed) {
                resp.headers_mut().append(http::header::WWW_AUTHENTICATE, v);
            }
            if status == StatusCode::UNAUTHORIZED {
                self.add_nonce(&mut resp, now);
            }
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
    pub(crate) async fn step(&self, parts: &Parts, now: UnixTime) -> OAuthStep {
        let both = || {
            Err((
                OAuthError::Request {
                    reason: "both an AAuth signature and an OAuth token: one request is one caller",
                },
                false,
            ))
        };
        let result = match credential(&parts.headers) {
            // A DPoP proof beside a signature, without its token: still two callers' worth.
            Ok(None) if signed(parts) && parts.headers.contains_key("dpop") => both(),
            Ok(None) => return OAuthStep::NotOAuth,
            Err(e) => Err((e, false)),
            Ok(Some(_)) if signed(parts) => both(),
            Ok(Some(Credential::Bearer(token))) => self
                .verifier_for(token)
                .verify_bearer(token)
                .await
                .map_err(|e| (e, false)),
            Ok(Some(Credential::Dpop(token))) => self.dpop_bound(parts, token, now).await,
            Ok(Some(_)) => Err((
                OAuthError::Request {
                    reason: "an OAuth scheme this route does not take",
                },
                false,
            )),
        };
        let checked = result.and_then(|claims| {
            claims
                .require_scopes(self.scopes.iter().map(String::as_str))
                .map(|()| claims)
                .map_err(|e| (e, false))
        });
        match checked {
            Ok(claims) => OAuthStep::Admit(Box::new(OAuthCaller(claims))),
            Err((e, dpop_failed)) => OAuthStep::Refuse(self.refuse(&e, dpop_failed, now)),
        }
    }

    /// A `DPoP`-scheme token: one proof, checked; the token verified whatever its binding;
    /// the proof's key the one `cnf.jkt` names; then the proof's `jti` recorded.
    async fn dpop_bound(
        &self,
        parts: &Parts,
        token: &str,
        now: UnixTime,
    ) -> Result<AccessTokenClaims, (OAuthError, bool)> {
        let Some(check) = &self.dpop else {
            return Err((
                OAuthError::Binding {
                    reason: "DPoP-bound tokens are not accepted on this route",
                },
                false,
            ));
        };
        let dpop_err = |reason: &str| {
            (
                OAuthError::DpopProof {
                    reason: reason.to_owned(),
                },
                true,
            )
        };
        let mut fields = parts.headers.get_all("dpop").iter();
        let (Some(field), None) = (fields.next(), fields.next()) else {
            return Err(dpop_err("exactly one DPoP field is required"));
        };
        let proof = field
            .to_str()
            .map_err(|_| dpop_err("the DPoP field is not ASCII"))?;
        let checked = check
            .check(proof, parts.method.as_str(), parts.uri.path(), token, now)
            .map_err(|e| (e, true))?;
        let claims = self
            .verifier_for(token)
            .verify_token(token)
            .await
            .map_err(|e| (e, true))?;
        if claims.bound_otherwise() {
            return Err((
                OAuthError::Binding {
                    reason: "also bound by a confirmation method (cnf) this resource does not check",
                },
                true,
            ));
        }
        match claims.jkt() {
            Some(jkt) if jkt == checked.jkt => {}
            Some(_) => {
                return Err((
                    OAuthError::Binding {
                        reason: "the proof is not by the key the token is bound to",
                    },
                    true,
                ));
            }
            None => {
                return Err((
                    OAuthError::Binding {
                        reason: "a DPoP token without cnf.jkt",
                    },
                    true,
                ));
            }
        }
        check
            .record_for_issuer(&checked, claims.issuer(), now)
            .await
            .map_err(|e| (e, true))?;
        Ok(claims)
    }
}
