//! The sans-IO core: a request's head and body in, an admission or the exact refusal the
//! draft names out.

use std::sync::Arc;

use aauth_headers::{AAuthRequirement, AuthorizationAAuth, Requirement, SessionToken, names};
use aauth_keys::Thumbprint;
use aauth_keys::time::UnixTime;
use aauth_signing::{
    JwtResolver, KeyIdentity, KeyResolver, RevocationList, SchemeResolver, VerifiedRequest,
    Verifier, VerifyError, VerifyPolicy,
};
use aauth_tokens::{AgentId, BoundToken, IssuerKeyResolver, ServerId, TokenType};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, request::Parts};

use crate::{
    ReplayStore, Session, SessionStore, SessionStoreError, TokenCacheConfig, VerifiedTokenCache,
};

/// What a route requires of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// A pseudonymous key (`hwk`, Signature-Key -09 §3.4): proof of possession, no
    /// identity. AAuth agents do not use it; an endpoint may accept it.
    Pseudonymous,
    /// An agent token (`jwt` scheme, `aa-agent+jwt`): the agent-token access mode.
    AgentToken,
    /// An agent token and a session token (`Authorization: AAuth`, covered by the
    /// signature) the resource issued: the session-token (two-party) access mode.
    SessionToken,
}

/// A route's verification policy: what it requires and how strictly it checks.
///
/// ```
/// use aauth_resource::{Access, RoutePolicy};
/// let p = RoutePolicy::new(Access::AgentToken).require_component("@query").window(30);
/// assert_eq!(p.access(), Access::AgentToken);
/// ```
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    access: Access,
    verify: VerifyPolicy,
}

impl RoutePolicy {
    /// The default policy for `access`: the mandatory components, body coverage on
    /// requests with a body, a 60 s `created` window, the schemes `access` implies.
    #[must_use]
    pub fn new(access: Access) -> Self {
        let schemes: &[&str] = match access {
            Access::Pseudonymous => &["hwk"],
            Access::AgentToken | Access::SessionToken => &["jwt"],
        };
        // A session route checks that `authorization` is covered whenever the request
        // carries one (see `Route::session`), so an agent without a session is told so
        // (403) after it authenticates rather than asked to cover a header it lacks.
        let verify = VerifyPolicy::default().accept_schemes(schemes);
        Self { access, verify }
    }

    /// What the route requires.
    #[must_use]
    pub fn access(&self) -> Access {
        self.access
    }

    /// Requires an extra covered component (`@query`, `authorization`, a header).
    #[must_use]
    pub fn require_component(mut self, component: &str) -> Self {
        self.verify = self.verify.require(component);
        self
    }

    /// The `created` window in seconds (default 60).
    #[must_use]
    pub fn window(mut self, secs: u64) -> Self {
        self.verify = self.verify.window(secs);
        self
    }

    /// The underlying verification policy.
    #[must_use]
    pub fn verify_policy(&self) -> &VerifyPolicy {
        &self.verify
    }
}

/// Who was admitted, as the verified request says.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Admitted {
    /// The verified request: label, key, identity, covered components.
    pub request: VerifiedRequest,
    /// The session, on a session-token route.
    pub session: Option<Session>,
    /// The session's new token when the route rolls tokens; the layer sends it as
    /// `AAuth-Access`.
    pub rolled: Option<SessionToken>,
}

impl Admitted {
    /// The agent identifier, when an agent token was verified.
    #[must_use]
    pub fn agent(&self) -> Option<&AgentId> {
        match &self.request.identity {
            KeyIdentity::Token(t) => match t.as_ref() {
                BoundToken::Agent(a) => Some(&a.claims.sub),
                _ => None,
            },
            _ => None,
        }
    }

    /// The key's RFC 7638 thumbprint, when a pseudonymous key was verified.
    #[must_use]
    pub fn pseudonym(&self) -> Option<&Thumbprint> {
        match &self.request.identity {
            KeyIdentity::Pseudonym { thumbprint } => Some(thumbprint),
            _ => None,
        }
    }
}

/// Why a request was not admitted, with the response the draft names for it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Refusal {
    /// No signature at all: `401` with `AAuth-Requirement` saying what to present.
    Unsigned {
        /// The requirement.
        requirement: Requirement,
    },
    /// A signature failure: `401` with `Signature-Error` (and `Accept-Signature-*`), or
    /// `503` when the signer's keys cannot be obtained now.
    Signature {
        /// The failure.
        error: VerifyError,
        /// The headers to send.
        headers: Vec<(http::HeaderName, HeaderValue)>,
    },
    /// Authenticated but not allowed: `403`, without signature headers.
    Forbidden {
        /// Why, for the problem body.
        detail: String,
    },
    /// The body exceeded the route's limit: `413`.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body could not be read: `400`.
    UnreadableBody {
        /// What failed.
        reason: String,
    },
    /// The exact signed request was already accepted within its window: `401`
    /// `invalid_signature`.
    Replayed,
    /// The replay store could not answer: `503` with `Retry-After` (fail closed).
    ReplayStoreUnavailable {
        /// What failed.
        reason: String,
    },
    /// `Authorization` is not exactly one `AAuth` credential: `400`.
    BadCredential {
        /// Why.
        reason: String,
    },
    /// The session store could not answer: `503` with `Retry-After` (fail closed).
    SessionStoreUnavailable {
        /// What failed.
        reason: String,
    },
    /// The route is configured inconsistently (a session-token route without a session
    /// store): `500`, never an admission.
    Misconfigured {
        /// What is missing.
        detail: String,
    },
}

impl Refusal {
    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unsigned { .. } => StatusCode::UNAUTHORIZED,
            Self::Signature { error, .. } => error.status(),
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnreadableBody { .. } => StatusCode::BAD_REQUEST,
            Self::Replayed => StatusCode::UNAUTHORIZED,
            Self::ReplayStoreUnavailable { .. } | Self::SessionStoreUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::BadCredential { .. } => StatusCode::BAD_REQUEST,
            Self::Misconfigured { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response: status, AAuth headers, and an RFC 9457 problem body.
    #[must_use]
    pub fn into_http_response(self) -> http::Response<Bytes> {
        let status = self.status();
        let mut headers = Vec::new();
        let body = match self {
            Self::Unsigned { requirement } => {
                if let Some(v) = AAuthRequirement::new(requirement)
                    .serialize()
                    .ok()
                    .and_then(|s| HeaderValue::from_str(&s).ok())
                {
                    headers.push((names::AAUTH_REQUIREMENT, v));
                }
                problem(
                    status,
                    "Signature required",
                    "the request carries no HTTP message signature",
                )
            }
            Self::Signature { error, headers: h } => {
                headers = h;
                error.problem_json()
            }
            Self::Forbidden { detail } => problem(status, "Forbidden", &detail),
            Self::TooLarge { limit } => problem(
                status,
                "Request body too large",
                &format!("the body exceeds {limit} bytes"),
            ),
            Self::UnreadableBody { reason } => problem(status, "Unreadable request body", &reason),
            Self::Replayed => {
                headers.push((
                    names::SIGNATURE_ERROR,
                    HeaderValue::from_static("error=invalid_signature"),
                ));
                problem(
                    status,
                    "Signature verification failed",
                    "this signed request was already accepted (replay)",
                )
            }
            Self::ReplayStoreUnavailable { reason } => {
                headers.push((http::header::RETRY_AFTER, HeaderValue::from_static("1")));
                problem(status, "Replay check unavailable", &reason)
            }
            Self::SessionStoreUnavailable { reason } => {
                headers.push((http::header::RETRY_AFTER, HeaderValue::from_static("1")));
                problem(status, "Session check unavailable", &reason)
            }
            Self::BadCredential { reason } => problem(status, "Invalid AAuth credential", &reason),
            Self::Misconfigured { detail } => problem(status, "Route misconfigured", &detail),
        };
        let mut resp = http::Response::new(Bytes::from(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in headers {
            h.append(name, value);
        }
        resp
    }
}

fn problem(status: StatusCode, title: &str, detail: &str) -> String {
    serde_json::json!({ "type": "about:blank", "status": status.as_u16(), "title": title, "detail": detail })
        .to_string()
}

/// A resource: its identifier and how it resolves keys. Cheap to clone.
#[derive(Clone)]
pub struct Resource {
    id: ServerId,
    resolver: Arc<dyn KeyResolver>,
    revocations: Option<Arc<dyn RevocationList>>,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Resource {
    /// A resource `id` verifying agent tokens with issuer keys from `issuer_keys` (the
    /// metadata crate's `KeyCache` in production) and pseudonymous `hwk` keys, with a
    /// [`VerifiedTokenCache`] (default bounds) in front: a token is verified once, then each
    /// request it signs costs one signature check.
    #[must_use]
    pub fn new(id: ServerId, issuer_keys: Arc<dyn IssuerKeyResolver>) -> Self {
        let schemes = SchemeResolver::new()
            .hwk()
            .jwt(JwtResolver::new(issuer_keys, &[TokenType::Agent]).audience(id.clone()));
        let cache = VerifiedTokenCache::new(Arc::new(schemes), TokenCacheConfig::default());
        Self {
            id,
            resolver: Arc::new(cache),
            revocations: None,
        }
    }

    /// A resource resolving keys with `resolver` exactly as given (no token cache added).
    #[must_use]
    pub fn with_resolver(id: ServerId, resolver: Arc<dyn KeyResolver>) -> Self {
        Self {
            id,
            resolver,
            revocations: None,
        }
    }

    /// Refuses tokens that `list` says are revoked (`401 revoked_jwt`), on every route made
    /// after this call. Checked after the cached token resolution, so a revocation takes
    /// effect at once.
    #[must_use]
    pub fn revocations(mut self, list: Arc<dyn RevocationList>) -> Self {
        self.revocations = Some(list);
        self
    }

    /// The resource's identifier.
    #[must_use]
    pub fn id(&self) -> &ServerId {
        &self.id
    }

    /// A route of this resource under `policy`: the verifier is built once.
    #[must_use]
    pub fn route(&self, policy: RoutePolicy) -> Route {
        let mut verifier = Verifier::new(policy.verify.clone(), Arc::clone(&self.resolver));
        if let Some(list) = &self.revocations {
            verifier = verifier.revocations(Arc::clone(list));
        }
        Route {
            verifier,
            policy,
            replay: None,
            sessions: None,
            roll: false,
        }
    }
}

/// A resource route: its policy and the verifier built for it. Cheap to clone.
#[derive(Clone)]
pub struct Route {
    policy: RoutePolicy,
    verifier: Verifier,
    replay: Option<Arc<dyn ReplayStore>>,
    sessions: Option<Arc<dyn SessionStore>>,
    roll: bool,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("policy", &self.policy)
            .field("replay_check", &self.replay.is_some())
            .finish_non_exhaustive()
    }
}

impl Route {
    /// Checks state-changing requests (every method but GET, HEAD, OPTIONS and TRACE)
    /// against `store`: the same signed request is accepted once within its window.
    #[must_use]
    pub fn replay_store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.replay = Some(store);
        self
    }

    /// Keeps sessions in `store`: a session-token route looks them up there, and
    /// [`Route::issue_session`] creates them. With `roll`, every admitted session request
    /// gets a new token (sent as `AAuth-Access`); the old one ends after [`crate::ROLL_GRACE`].
    #[must_use]
    pub fn sessions(mut self, store: Arc<dyn SessionStore>, roll: bool) -> Self {
        self.sessions = Some(store);
        self.roll = roll;
        self
    }

    /// Issues a session for the agent `admitted` names, bound to the key that signed, for
    /// `lifetime` seconds: the value for `AAuth-Access` (what an authorization endpoint in
    /// the resource's own flow answers).
    ///
    /// # Errors
    ///
    /// [`Refusal::Forbidden`] for a caller that is not an agent,
    /// [`Refusal::Misconfigured`] for a route without a store,
    /// [`Refusal::SessionStoreUnavailable`].
    pub async fn issue_session(
        &self,
        admitted: &Admitted,
        scope: Option<String>,
        lifetime: u64,
        now: UnixTime,
    ) -> Result<SessionToken, Refusal> {
        let Some(store) = &self.sessions else {
            return Err(Refusal::Misconfigured {
                detail: "sessions are issued on routes with a session store".to_owned(),
            });
        };
        let Some(agent) = admitted.agent() else {
            return Err(Refusal::Forbidden {
                detail: "sessions are issued to agents".to_owned(),
            });
        };
        let session = Session::new(
            agent.clone(),
            admitted.request.key.thumbprint(),
            scope,
            now.plus(lifetime),
        );
        store
            .issue(session, now)
            .await
            .map_err(|e| Refusal::SessionStoreUnavailable { reason: e.reason })
    }

    /// The session a verified request presents, checked against its signer.
    async fn session(
        &self,
        parts: &Parts,
        request: &VerifiedRequest,
        now: UnixTime,
    ) -> Result<(Session, Option<SessionToken>), Refusal> {
        let forbidden = |detail: &str| Refusal::Forbidden {
            detail: detail.to_owned(),
        };
        let Some(store) = &self.sessions else {
            return Err(Refusal::Misconfigured {
                detail: "a session-token route needs a session store".to_owned(),
            });
        };
        let mut values = parts.headers.get_all(http::header::AUTHORIZATION).iter();
        let (first, second) = (values.next(), values.next());
        if first.is_some()
            && !request
                .params
                .components
                .iter()
                .any(|c| c.name == "authorization")
        {
            // A credential the signature does not cover could have been added by anyone.
            let mut required: Vec<String> = self.policy.verify.required_components.clone();
            required.push("authorization".to_owned());
            let error = VerifyError::MissingComponents { required };
            let headers = error.response_headers(&self.policy.verify);
            return Err(Refusal::Signature { error, headers });
        }
        let value = match (first, second) {
            (Some(v), None) => v,
            (Some(_), Some(_)) => {
                return Err(Refusal::BadCredential {
                    reason: "more than one Authorization field".to_owned(),
                });
            }
            _ => {
                return Err(forbidden(
                    "a session token is required (Authorization: AAuth); obtain one from the resource",
                ));
            }
        };
        let credential = value
            .to_str()
            .map_err(|_| "Authorization is not visible ASCII".to_owned())
            .and_then(|v| AuthorizationAAuth::parse(v).map_err(|e| e.to_string()))
            .map_err(|reason| Refusal::BadCredential { reason })?;
        let token = credential.0.secret();
        let unavailable =
            |e: SessionStoreError| Refusal::SessionStoreUnavailable { reason: e.reason };
        let session = store
            .lookup(token, now)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| forbidden("unknown or expired session token"))?;
        let agent = match &request.identity {
            KeyIdentity::Token(t) => match t.as_ref() {
                BoundToken::Agent(a) => Some(&a.claims.sub),
                _ => None,
            },
            _ => None,
        };
        if agent != Some(&session.agent) || request.key.thumbprint() != session.key {
            return Err(forbidden(
                "the session token was issued to another agent or key",
            ));
        }
        let rolled = if self.roll {
            store.roll(token, now).await.map_err(unavailable)?
        } else {
            None
        };
        Ok((session, rolled))
    }

    /// The route's policy.
    #[must_use]
    pub fn policy(&self) -> &RoutePolicy {
        &self.policy
    }

    /// What can be decided from the head alone, before the body is read: a request with
    /// no signature header at all to a route that requires a token is answered with what
    /// to present.
    #[must_use]
    pub fn precheck(&self, parts: &Parts) -> Option<Refusal> {
        let signed = [
            names::SIGNATURE_INPUT,
            names::SIGNATURE,
            names::SIGNATURE_KEY,
        ]
        .iter()
        .any(|n| parts.headers.contains_key(n));
        match (signed, self.policy.access) {
            (false, Access::AgentToken | Access::SessionToken) => Some(Refusal::Unsigned {
                requirement: Requirement::AgentToken,
            }),
            // A pseudonymous endpoint has no token to ask for: the verifier answers
            // `invalid_signature` and the schemes it accepts.
            _ => None,
        }
    }

    /// Verifies a request at `now`: a request with no signature header at all is
    /// answered with what the route requires; anything else goes through the verifier.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] to answer with.
    pub async fn check(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Admitted, Refusal> {
        if let Some(refusal) = self.precheck(parts) {
            return Err(refusal);
        }
        let request = match self.verifier.verify(parts, body, now).await {
            Ok(request) => request,
            Err(error) => {
                let headers = error.response_headers(&self.policy.verify);
                return Err(Refusal::Signature { error, headers });
            }
        };
        // Recorded only now, after the signature verified (no pre-burning, R6).
        if let Some(store) = &self.replay
            && !parts.method.is_safe()
        {
            let created = request
                .params
                .created()
                .and_then(|c| u64::try_from(c).ok())
                .unwrap_or(now.as_secs());
            let until = UnixTime(created.max(now.as_secs())).plus(self.policy.verify.window);
            match store.first_use(request.replay_key(), until, now).await {
                Ok(true) => {}
                Ok(false) => return Err(Refusal::Replayed),
                Err(e) => return Err(Refusal::ReplayStoreUnavailable { reason: e.reason }),
            }
        }
        let (session, rolled) = if self.policy.access == Access::SessionToken {
            let (s, r) = self.session(parts, &request, now).await?;
            (Some(s), r)
        } else {
            (None, None)
        };
        Ok(Admitted {
            request,
            session,
            rolled,
        })
    }
}
