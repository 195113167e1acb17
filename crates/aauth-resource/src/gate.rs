//! The sans-IO core: a request's head and body in, an admission or the exact refusal the
//! draft names out.

use std::sync::Arc;
use std::time::Duration;

use aauth_headers::{AuthorizationAAuth, Requirement, SessionToken, names};
use aauth_keys::Thumbprint;
use aauth_keys::time::UnixTime;
use aauth_signing::{
    AuthoritySource, BodyCoverage, BodyHint, HeadVerified, JwtResolver, KeyIdentity, KeyResolver,
    ReplayGuard, ReplayStore, RevocationList, RevocationReplayStore, SchemeResolver,
    VerifiedRequest, Verifier, VerifyError, VerifyPolicy,
};
use aauth_tokens::{AgentId, BoundToken, IssuerKeyResolver, ServerId, TokenType};
use bytes::Bytes;
use http::{HeaderValue, request::Parts};

use crate::tokens::{AuthorizationRequest, Basis, ResourceTokens, scope_covers};
use crate::{Session, SessionStore, SessionStoreError, TokenCacheConfig, VerifiedTokenCache};

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
    /// A person token for this resource (`aa-person+jwt`), or an auth token for it: the
    /// person-token access mode. An agent token alone is answered with
    /// `requirement=person-token`.
    PersonToken,
    /// An auth token for this resource granting the route's scope (`aa-auth+jwt`): the
    /// auth-token access mode (three- or four-party). A person token is answered with
    /// `requirement=auth-token` and a resource token minted from it; an auth token that
    /// lacks the scope, with a step-up resource token minted from that auth token; an
    /// agent token alone, with `requirement=person-token`.
    AuthToken,
}

/// A route's verification policy: what it requires and how strictly it checks.
///
/// ```
/// use aauth_resource::{Access, RoutePolicy};
/// use std::time::Duration;
/// let p = RoutePolicy::new(Access::AgentToken)
///     .require_component("@query")
///     .narrow_window(Duration::from_secs(30));
/// assert_eq!(p.access(), Access::AgentToken);
/// assert_eq!(p.verify_policy().window(), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    access: Access,
    verify: VerifyPolicy,
    /// Set by [`RoutePolicy::authority`]; otherwise the resource's own names apply.
    own_authority: bool,
    scope: Option<String>,
}

impl RoutePolicy {
    /// The default policy for `access`: the mandatory components, body coverage on
    /// requests with a body, a 60 s `created` window, the schemes `access` implies.
    #[must_use]
    pub fn new(access: Access) -> Self {
        let schemes: &[&str] = match access {
            Access::Pseudonymous => &["hwk"],
            Access::AgentToken | Access::SessionToken | Access::PersonToken | Access::AuthToken => {
                &["jwt"]
            }
        };
        // A session route checks that `authorization` is covered whenever the request
        // carries one (see `Route::session`), so an agent without a session is told so
        // (403) after it authenticates rather than asked to cover a header it lacks.
        // The resource's names replace this placeholder (which accepts no authority) when
        // the route is made (`Resource::route`).
        // Body coverage is the resource's to declare (draft -11 §Covered Components:
        // `additional_signature_components`), not the profile's: see
        // `RoutePolicy::require_body_coverage`.
        let verify = VerifyPolicy::new(AuthoritySource::nobody())
            .body_coverage(BodyCoverage::Optional)
            .accept_schemes(schemes);
        Self {
            access,
            verify,
            own_authority: false,
            scope: None,
        }
    }

    /// The authorities this route answers to, instead of the resource's (see
    /// [`Resource::authority`]).
    #[must_use]
    pub fn authority(mut self, source: AuthoritySource) -> Self {
        self.verify = self.verify.authority(source);
        self.own_authority = true;
        self
    }

    /// The scope an auth-token route requires (space-separated; every value must be
    /// granted) and puts in the resource tokens it mints.
    #[must_use]
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = Some(scope.to_owned());
        self
    }

    /// The scope the route requires, if any.
    #[must_use]
    pub fn required_scope(&self) -> Option<&str> {
        self.scope.as_deref()
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

    /// Accepts exactly the `Signature-Key` schemes `schemes` (by default `hwk` for a
    /// pseudonymous route, `jwt` for the others). A route that needs a token still refuses
    /// a request without one.
    #[must_use]
    pub fn accept_schemes(mut self, schemes: &[&str]) -> Self {
        self.verify = self.verify.accept_schemes(schemes);
        self
    }

    /// Narrows the `created` window (default 60 s; never widens, see
    /// [`VerifyPolicy::narrow_window`]). A wider window is
    /// `policy.dangerous().widen_window(..)`.
    #[must_use]
    pub fn narrow_window(mut self, window: Duration) -> Self {
        self.verify = self.verify.narrow_window(window);
        self
    }

    /// Requires `content-type` and `content-digest` to be covered on every request with a
    /// body (they are not by default: draft -11 §Covered Components makes them a PS and AS
    /// rule, and leaves a resource to declare what it needs). Declare them in the
    /// resource's metadata (`additional_signature_components`) too; an agent that did not
    /// read it is told with `invalid_input` and `required_input`. A `Content-Digest` that
    /// is present is checked against the body either way.
    #[must_use]
    pub fn require_body_coverage(mut self) -> Self {
        self.verify = self.verify.body_coverage(BodyCoverage::Required);
        self
    }

    /// The settings that weaken the route's verification (a wider `created` window),
    /// behind a name that says so.
    pub fn dangerous(&mut self) -> aauth_signing::DangerousVerifyPolicy<'_> {
        self.verify.dangerous()
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

    /// The verified token that bound the signing key, for the `jwt` scheme.
    #[must_use]
    pub fn token(&self) -> Option<&BoundToken> {
        match &self.request.identity {
            KeyIdentity::Token(t) => Some(t.as_ref()),
            _ => None,
        }
    }

    /// The person, as their Person Server and directed identifier: `(iss, sub)` of a
    /// person token, `(ps, sub)` of an auth token (the same pair whether the Person
    /// Server or the resource's Access Server issued it). `sub` is never compared across
    /// Person Servers. Where an Access Server issues the auth token this differs from the
    /// draft's `(iss, sub)` on purpose; [`Admitted::issuer_subject`] gives that pair, and
    /// says when each is the right key.
    #[must_use]
    pub fn person(&self) -> Option<(&ServerId, &str)> {
        match self.token()? {
            BoundToken::Person(p) => Some((&p.claims.iss, p.claims.sub.as_str())),
            // The person's Person Server is `ps` (an Access Server's token has its own
            // `iss`): (ps, sub) is the same person in three- and four-party access.
            BoundToken::Auth(a) => Some((&a.claims.ps, a.claims.sub.as_str())),
            _ => None,
        }
    }

    /// The person exactly as draft -11 §Auth Token Verification step 7 names them: the
    /// token's `(iss, sub)`. For a person token and a Person Server's auth token this is
    /// [`Admitted::person`]; for an auth token from the resource's Access Server it is
    /// `(the Access Server, sub)`.
    ///
    /// Prefer [`Admitted::person`] to key your records when an Access Server serves
    /// people of several Person Servers: `sub` is directed by each Person Server and
    /// unique only within it, so two Person Servers may send the same `sub` through one
    /// Access Server, and `(iss, sub)` would then be one record for two people. With a
    /// single Person Server behind the Access Server, or records kept per Access Server
    /// by design, this is the draft's key.
    #[must_use]
    pub fn issuer_subject(&self) -> Option<(&ServerId, &str)> {
        match self.token()? {
            BoundToken::Person(p) => Some((&p.claims.iss, p.claims.sub.as_str())),
            BoundToken::Auth(a) => Some((&a.claims.iss, a.claims.sub.as_str())),
            _ => None,
        }
    }

    /// A session for the agent this request admitted, bound to the key that signed it,
    /// granting `scope` until `expires`; `None` when no agent token verified (a session
    /// is issued to an agent). What [`Route::issue_session`] stores, for a caller that
    /// keeps sessions in a [`SessionStore`](crate::SessionStore) of its own choosing.
    #[must_use]
    pub fn session_for(&self, scope: Option<String>, expires: UnixTime) -> Option<Session> {
        Some(Session::new(
            self.agent()?.clone(),
            self.request.key.thumbprint(),
            scope,
            expires,
        ))
    }

    /// The scope granted by the verified auth token.
    #[must_use]
    pub fn scope(&self) -> Option<&str> {
        match self.token()? {
            BoundToken::Auth(a) => a.claims.scope.as_deref(),
            _ => None,
        }
    }

    /// The mission of the verified person or auth token.
    #[must_use]
    pub fn mission_s256(&self) -> Option<&str> {
        match self.token()? {
            BoundToken::Person(p) => p.claims.mission_s256.as_deref(),
            BoundToken::Auth(a) => a.claims.mission_s256.as_deref(),
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

mod refusal;
pub use refusal::Refusal;

/// What a route decided about a request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Admitted.
    Admit(Box<Admitted>),
    /// `401 requirement=auth-token` with this resource token, minted for `request`.
    AuthChallenge {
        resource_token: String,
        request: Box<VerifiedRequest>,
    },
    /// Refused.
    Refuse(Refusal),
}

/// Why a verified request's token cannot serve on a route.
#[derive(Debug)]
pub(crate) enum Gated {
    /// `401 requirement=auth-token` with this resource token.
    AuthChallenge(String),
    /// Refused.
    Refuse(Refusal),
}

/// A resource: its identifier and how it resolves keys. Cheap to clone.
#[derive(Clone)]
pub struct Resource {
    id: ServerId,
    authority: AuthoritySource,
    resolver: Arc<dyn KeyResolver>,
    revocations: Option<Arc<dyn RevocationList>>,
    replay: Option<ReplayGuard>,
    /// Both of the above over one store ([`Resource::revocations_and_replay`]); cleared
    /// when either is set alone.
    joint: Option<Arc<dyn RevocationReplayStore>>,
    tokens: Option<Arc<ResourceTokens>>,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("id", &self.id)
            .field("authority", &self.authority)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl Resource {
    /// A resource `id` verifying agent, person and auth tokens with issuer keys from
    /// `issuer_keys` (the metadata crate's `KeyCache` in production) and pseudonymous `hwk`
    /// keys, with a [`VerifiedTokenCache`] (default bounds) in front: a token is verified
    /// once, then each request it signs costs one signature check. Person and auth tokens
    /// must name `id` in `aud`; each route then accepts only the types its [`Access`]
    /// names.
    ///
    /// Secure by default: requests must be addressed to `id`'s host
    /// ([`Resource::authority`] for other names or a proxy), and a state-changing request
    /// is accepted once: every route shares one in-memory replay store
    /// ([`Resource::replay_store`] for a shared one, [`Resource::without_replay_check`] to
    /// turn it off).
    #[must_use]
    pub fn new(id: ServerId, issuer_keys: Arc<dyn IssuerKeyResolver>) -> Self {
        let schemes = SchemeResolver::new().hwk().jwt(
            JwtResolver::new(
                issuer_keys,
                &[TokenType::Agent, TokenType::Person, TokenType::Auth],
            )
            .audience(id.clone()),
        );
        let cache = VerifiedTokenCache::new(Arc::new(schemes), TokenCacheConfig::default());
        Self::with_resolver(id, Arc::new(cache))
    }

    /// A resource resolving keys with `resolver` exactly as given (no token cache added),
    /// with the same secure defaults as [`Resource::new`].
    #[must_use]
    pub fn with_resolver(id: ServerId, resolver: Arc<dyn KeyResolver>) -> Self {
        Self {
            authority: AuthoritySource::server(&id),
            id,
            resolver,
            revocations: None,
            replay: Some(ReplayGuard::in_memory()),
            joint: None,
            tokens: None,
        }
    }

    /// The authorities every route made after this call answers to (by default the host of
    /// the resource's identifier): several names, or the external authority behind a proxy
    /// that rewrites `Host`. A request addressed elsewhere is refused `401
    /// invalid_signature`.
    #[must_use]
    pub fn authority(mut self, source: AuthoritySource) -> Self {
        self.authority = source;
        self
    }

    /// Records accepted state-changing requests in `store` (shared by every route made
    /// after this call, and by every instance that shares the store) instead of this
    /// resource's own memory.
    #[must_use]
    pub fn replay_store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.replay = Some(ReplayGuard::new(store));
        self.joint = None;
        self
    }

    /// Records accepted requests under `guard` (a store and which methods it covers).
    #[must_use]
    pub fn replay_guard(mut self, guard: ReplayGuard) -> Self {
        self.replay = Some(guard);
        self.joint = None;
        self
    }

    /// Turns the replay check off for routes made after this call. Only for a resource
    /// whose state-changing requests are harmless to repeat, or that refuses replays
    /// itself: otherwise anyone who sees a signed request can send it again within its
    /// window.
    #[must_use]
    pub fn without_replay_check(mut self) -> Self {
        self.replay = None;
        self.joint = None;
        self
    }

    /// Refuses tokens that `list` says are revoked (`401 revoked_jwt`), on every route made
    /// after this call. Checked after the cached token resolution, so a revocation takes
    /// effect at once.
    #[must_use]
    pub fn revocations(mut self, list: Arc<dyn RevocationList>) -> Self {
        self.revocations = Some(list);
        self.joint = None;
        self
    }

    /// [`Resource::revocations`] and [`Resource::replay_store`] over one `store`, which
    /// answers a token-bearing state-changing request's revocation check and replay
    /// check in one step ([`aauth_signing::Verifier::revocations_and_replay`]): for a
    /// store shared by several instances (the `redis` feature's
    /// `RedisReplayAndRevocations`), one round trip where they would be two, with a
    /// revocation still enforced on the very next request.
    #[must_use]
    pub fn revocations_and_replay(mut self, store: Arc<dyn RevocationReplayStore>) -> Self {
        self.revocations = Some(Arc::clone(&store) as Arc<dyn RevocationList>);
        self.replay = Some(ReplayGuard::new(Arc::clone(&store) as Arc<dyn ReplayStore>));
        self.joint = Some(store);
        self
    }

    /// Mints resource tokens with `tokens` on every route made after this call: what
    /// auth-token routes and the authorization endpoint need.
    #[must_use]
    pub fn resource_tokens(mut self, tokens: ResourceTokens) -> Self {
        self.tokens = Some(Arc::new(tokens));
        self
    }

    /// The resource's identifier.
    #[must_use]
    pub fn id(&self) -> &ServerId {
        &self.id
    }

    /// A route of this resource under `policy`: the verifier is built once.
    #[must_use]
    pub fn route(&self, mut policy: RoutePolicy) -> Route {
        if !policy.own_authority {
            policy.verify = policy.verify.authority(self.authority.clone());
        }
        let mut verifier = Verifier::new(policy.verify.clone(), Arc::clone(&self.resolver));
        if let Some(list) = &self.revocations {
            verifier = verifier.revocations(Arc::clone(list));
        }
        if let Some(guard) = &self.replay {
            verifier = verifier.replay(guard.clone());
        }
        if let Some(store) = &self.joint {
            verifier = verifier.revocations_and_replay(Arc::clone(store));
        }
        Route {
            id: self.id.clone(),
            verifier,
            policy,
            sessions: None,
            roll: false,
            tokens: self.tokens.clone(),
        }
    }
}

/// A resource route: its policy and the verifier built for it. Cheap to clone.
#[derive(Clone)]
pub struct Route {
    id: ServerId,
    tokens: Option<Arc<ResourceTokens>>,
    policy: RoutePolicy,
    verifier: Verifier,
    sessions: Option<Arc<dyn SessionStore>>,
    roll: bool,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("policy", &self.policy)
            .field("replay_check", &self.verifier.checks_replay())
            .finish_non_exhaustive()
    }
}

impl Route {
    /// Checks state-changing requests (every method but GET, HEAD, OPTIONS and TRACE)
    /// against `store` instead of the resource's: the same signed request is accepted
    /// once within its window.
    #[must_use]
    pub fn replay_store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.verifier = self.verifier.replay(ReplayGuard::new(store));
        self
    }

    /// Turns this route's replay check off (see [`Resource::without_replay_check`]).
    #[must_use]
    pub fn without_replay_check(mut self) -> Self {
        self.verifier = self.verifier.without_replay();
        self
    }

    /// Keeps sessions in `store`: a session-token route looks them up there, and
    /// [`Route::issue_session`] creates them. With `roll`, every admitted session request
    /// gets a new token (sent as `AAuth-Access`); the old one ends after [`crate::ROLL_GRACE`],
    /// and each use of it until then gets that same new token.
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
        let Some(session) = admitted.session_for(scope, now.plus(lifetime)) else {
            return Err(Refusal::Forbidden {
                detail: "sessions are issued to agents".to_owned(),
            });
        };
        self.keep_session(session, now).await
    }

    /// Keeps `session` (made with [`Admitted::session_for`], perhaps
    /// [`wrapping`](Session::wrapping) a credential of the resource's own) in this route's
    /// store: the value for `AAuth-Access`.
    ///
    /// # Errors
    ///
    /// [`Refusal::Misconfigured`] for a route without a store,
    /// [`Refusal::SessionStoreUnavailable`].
    pub async fn keep_session(
        &self,
        session: Session,
        now: UnixTime,
    ) -> Result<SessionToken, Refusal> {
        let Some(store) = &self.sessions else {
            return Err(Refusal::Misconfigured {
                detail: "sessions are issued on routes with a session store".to_owned(),
            });
        };
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
            return Err(Refusal::signature(error, &self.policy.verify));
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
            .ok_or_else(|| Refusal::InvalidSession {
                detail: "unknown or expired session token".to_owned(),
            })?;
        let agent = match &request.identity {
            KeyIdentity::Token(t) => match t.as_ref() {
                BoundToken::Agent(a) => Some(&a.claims.sub),
                _ => None,
            },
            _ => None,
        };
        if agent != Some(&session.agent) || request.key.thumbprint() != session.key {
            return Err(Refusal::InvalidSession {
                detail: "the session token was issued to another agent or key".to_owned(),
            });
        }
        // The route's scope, if it has one, within what the resource granted the session.
        if let Some(required) = self.policy.scope.as_deref()
            && !scope_covers(session.scope.as_deref().unwrap_or(""), required)
        {
            return Err(forbidden("the session was not granted this route's scope"));
        }
        let rolled = if self.roll {
            store.roll(token, now).await.map_err(unavailable)?
        } else {
            None
        };
        Ok((session, rolled))
    }

    /// Whether the verified token may serve on this route: the type the access mode
    /// names, an auth token from an issuer this resource trusts with the scope the route
    /// requires. Otherwise the refusal, with a freshly minted resource token where the
    /// draft asks for one (RS-30: only after a person or auth token verified).
    fn token_gate(&self, request: &VerifiedRequest, now: UnixTime) -> Result<(), Refusal> {
        let token = match &request.identity {
            KeyIdentity::Token(t) => Some(t.as_ref()),
            _ => None,
        };
        let person_token = || Refusal::Challenge {
            requirement: Requirement::PersonToken,
        };
        // A scope is checked where the credential carries one (an auth token, a session
        // the resource granted); elsewhere it would be ignored, and a route meant to be
        // narrower would admit anyone the mode admits.
        if self.policy.scope.is_some()
            && !matches!(self.policy.access, Access::AuthToken | Access::SessionToken)
        {
            return Err(Refusal::Misconfigured {
                detail: format!(
                    "a {:?} route has no scope to check: only auth-token and session-token routes take one",
                    self.policy.access
                ),
            });
        }
        match (self.policy.access, token) {
            (Access::Pseudonymous, _) => Ok(()),
            // Another scheme the route was told to accept (`hwk`, `jwks_uri`, …): signed,
            // but no agent token.
            // No agent token: another scheme the route accepts, or a person or auth token
            // (draft -11 §Agent Token Required: `requirement=agent-token` whenever the
            // request did not present an agent token).
            (Access::AgentToken | Access::SessionToken, None | Some(_))
                if !matches!(token, Some(BoundToken::Agent(_))) =>
            {
                Err(Refusal::Challenge {
                    requirement: Requirement::AgentToken,
                })
            }
            (Access::AgentToken | Access::SessionToken, _) => Ok(()),
            (Access::PersonToken | Access::AuthToken, None) => Err(person_token()),
            (Access::PersonToken, Some(t)) => match t {
                BoundToken::Person(p) => self.trusted_person_server(&p.claims.iss),
                BoundToken::Auth(a) => self.trusted_auth(a),
                _ => Err(person_token()),
            },
            (Access::AuthToken, Some(t)) => {
                let Some(scope) = self.policy.scope.as_deref() else {
                    return Err(Refusal::Misconfigured {
                        detail: "an auth-token route needs a scope".to_owned(),
                    });
                };
                match t {
                    BoundToken::Person(p) => {
                        // Three-party, the auth token would come from this Person
                        // Server: none is asked of one this resource does not take.
                        if self
                            .tokens
                            .as_ref()
                            .is_some_and(|t| t.access_server.is_none())
                        {
                            self.trusted_person_server(&p.claims.iss)?;
                        }
                        Err(self.auth_challenge(Basis::person(&p.claims), scope, request, now)?)
                    }
                    BoundToken::Auth(a) => {
                        self.trusted_auth(a)?;
                        if scope_covers(a.claims.scope.as_deref().unwrap_or(""), scope) {
                            Ok(())
                        } else {
                            // Step-up: the resource token derives from the auth token
                            // presented (ps, sub, presented_jti from it).
                            Err(self.auth_challenge(Basis::auth(&a.claims), scope, request, now)?)
                        }
                    }
                    _ => Err(person_token()),
                }
            }
        }
    }

    /// Whether the Person Server `iss` is one whose person and auth tokens this resource
    /// takes ([`ResourceTokens::person_servers`]; any, without that list).
    fn trusted_person_server(&self, iss: &ServerId) -> Result<(), Refusal> {
        let listed = self.tokens.as_ref().and_then(|t| t.person_servers.as_ref());
        match listed {
            Some(ids) if !ids.contains(iss) => Err(Refusal::Forbidden {
                detail: format!("tokens from {} are not accepted here", iss.as_str()),
            }),
            _ => Ok(()),
        }
    }

    /// An auth token is honoured only from the issuer the resource's configuration names:
    /// its Access Server (four-party) or, without one, the person's Person Server itself
    /// (`iss` = `ps`, three-party).
    fn trusted_auth(
        &self,
        a: &aauth_tokens::Verified<aauth_tokens::AuthClaims>,
    ) -> Result<(), Refusal> {
        let access_server = self.tokens.as_ref().and_then(|t| t.access_server.as_ref());
        let trusted = match access_server {
            Some(as_id) => a.claims.iss == *as_id && a.claims.dwk == "aauth-access.json",
            None => {
                a.claims.iss == a.claims.ps
                    && a.claims.dwk == "aauth-person.json"
                    && self.trusted_person_server(&a.claims.iss).is_ok()
            }
        };
        if trusted {
            Ok(())
        } else {
            Err(Refusal::Forbidden {
                detail: format!(
                    "auth tokens from {} are not accepted here",
                    a.claims.iss.as_str()
                ),
            })
        }
    }

    /// `401 requirement=auth-token` with a resource token for `scope` derived from `basis`.
    fn auth_challenge(
        &self,
        basis: Basis<'_>,
        scope: &str,
        request: &VerifiedRequest,
        now: UnixTime,
    ) -> Result<Refusal, Refusal> {
        let tokens = self.tokens.as_ref().ok_or_else(|| Refusal::Misconfigured {
            detail: "an auth-token route needs resource tokens (Resource::resource_tokens)"
                .to_owned(),
        })?;
        let resource_token = tokens.mint(&self.id, &basis, scope, None, &request.key, now)?;
        Ok(Refusal::Challenge {
            requirement: Requirement::AuthToken { resource_token },
        })
    }

    /// The authorization endpoint (draft -11 §8.1) on a person-token route: verifies the
    /// request, reads `{"scope": "...", "account": "..."}` and answers
    /// `200 {"resource_token": "..."}`, or the refusal. The resource token's `aud` is the
    /// resource's Access Server, or the person token's Person Server.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] to answer with: as [`Route::check`]; `401 requirement=person-token`
    /// when the request is not signed with a person token; `400` `invalid_request`,
    /// `invalid_scope` or `invalid_account`; `500` when the route is not a person-token
    /// route or the resource mints no resource tokens.
    pub async fn authorize(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Result<String, Refusal> {
        if self.policy.access != Access::PersonToken {
            return Err(Refusal::Misconfigured {
                detail: "the authorization endpoint is a person-token route".to_owned(),
            });
        }
        let admitted = self.check(parts, body, now).await?;
        let Some(BoundToken::Person(p)) = admitted.token() else {
            return Err(Refusal::Challenge {
                requirement: Requirement::PersonToken,
            });
        };
        let tokens = self.tokens.as_ref().ok_or_else(|| Refusal::Misconfigured {
            detail: "the authorization endpoint needs resource tokens".to_owned(),
        })?;
        let req = AuthorizationRequest::parse(body)?;
        tokens.check_scope(&req.scope)?;
        if let Some(account) = &req.account
            && !tokens.holds_account(&p.claims.iss, &p.claims.sub, account)
        {
            return Err(Refusal::Invalid {
                error: "invalid_account",
                detail: "the account is not held by the person the person token identifies"
                    .to_owned(),
            });
        }
        tokens.mint(
            &self.id,
            &Basis::person(&p.claims),
            &req.scope,
            req.account.as_deref(),
            &admitted.request.key,
            now,
        )
    }

    /// [`Route::authorize`] as a response: `200 {"resource_token": "..."}` with
    /// `Cache-Control: no-store`, or the refusal's response.
    pub async fn authorization_response(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> http::Response<Bytes> {
        match self.authorize(parts, body, now).await {
            Ok(token) => {
                let body = serde_json::json!({ "resource_token": token }).to_string();
                let mut resp = http::Response::new(Bytes::from(body));
                let h = resp.headers_mut();
                h.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                h.insert(
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                );
                resp
            }
            Err(refusal) => refusal.into_http_response(),
        }
    }

    /// The route's policy.
    #[must_use]
    pub fn policy(&self) -> &RoutePolicy {
        &self.policy
    }

    /// Whether deciding on a request needs its body: when the route requires body
    /// coverage, or the request carries a `Content-Digest` (which is always checked
    /// against the body). Otherwise the body plays no part in the decision, and a layer
    /// may pass it on unread ([`AAuthLayer::streaming`](crate::AAuthLayer::streaming)).
    #[must_use]
    pub fn reads_body(&self, parts: &Parts) -> bool {
        self.policy.verify.body_coverage == BodyCoverage::Required
            || parts.headers.contains_key("content-digest")
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
            (false, Access::PersonToken | Access::AuthToken) => Some(Refusal::Unsigned {
                requirement: Requirement::PersonToken,
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
        match self.decide(parts, body, now).await {
            Outcome::Admit(a) => Ok(*a),
            Outcome::AuthChallenge { resource_token, .. } => Err(Refusal::Challenge {
                requirement: Requirement::AuthToken { resource_token },
            }),
            Outcome::Refuse(r) => Err(r),
        }
    }

    /// The signature check (and, for a state-changing request, the replay record) without
    /// the token-type gate: what a poll of a pending URL needs before it looks at the
    /// token.
    pub(crate) async fn verify_only(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Result<VerifiedRequest, Refusal> {
        if let Some(refusal) = self.precheck(parts) {
            return Err(refusal);
        }
        self.verifier
            .verify(parts, body, now)
            .await
            .map_err(|error| Refusal::signature(error, &self.policy.verify))
    }

    /// Whether a verified request's token may serve here; an auth-token challenge comes
    /// back separately so that a deferring layer can hold the request instead.
    pub(crate) fn gate(&self, request: &VerifiedRequest, now: UnixTime) -> Result<(), Gated> {
        match self.token_gate(request, now) {
            Ok(()) => Ok(()),
            Err(Refusal::Challenge {
                requirement: Requirement::AuthToken { resource_token },
            }) => Err(Gated::AuthChallenge(resource_token)),
            Err(r) => Err(Gated::Refuse(r)),
        }
    }

    /// The whole check, with the auth-token challenge kept apart.
    pub(crate) async fn decide(&self, parts: &Parts, body: &[u8], now: UnixTime) -> Outcome {
        match self.verify_only(parts, body, now).await {
            Ok(request) => self.decide_verified(parts, request, now).await,
            Err(r) => Outcome::Refuse(r),
        }
    }

    /// What can be checked before the body is read: the signature, and the key and token
    /// behind it ([`aauth_signing::Verifier::verify_head`]); a layer that must read the
    /// body whole reads it only when this passes.
    pub(crate) async fn verify_head(
        &self,
        parts: &Parts,
        body: BodyHint,
        now: UnixTime,
    ) -> Result<HeadVerified, Refusal> {
        if let Some(refusal) = self.precheck(parts) {
            return Err(refusal);
        }
        self.verifier
            .verify_head(parts, body, now)
            .await
            .map_err(|error| Refusal::signature(error, &self.policy.verify))
    }

    /// [`Route::verify_only`] of a request whose head verified, with its body read.
    pub(crate) async fn verify_body(
        &self,
        head: HeadVerified,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Result<VerifiedRequest, Refusal> {
        self.verifier
            .verify_body(head, parts, body, now)
            .await
            .map_err(|error| Refusal::signature(error, &self.policy.verify))
    }

    /// [`Route::decide`] of a request whose head verified, with its body read.
    pub(crate) async fn decide_with_body(
        &self,
        head: HeadVerified,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Outcome {
        match self.verify_body(head, parts, body, now).await {
            Ok(request) => self.decide_verified(parts, request, now).await,
            Err(refusal) => Outcome::Refuse(refusal),
        }
    }

    /// The rest of the check, after the verifier: the token gate, then the session.
    async fn decide_verified(
        &self,
        parts: &Parts,
        request: VerifiedRequest,
        now: UnixTime,
    ) -> Outcome {
        match self.gate(&request, now) {
            Ok(()) => {}
            Err(Gated::AuthChallenge(resource_token)) => {
                return Outcome::AuthChallenge {
                    resource_token,
                    request: Box::new(request),
                };
            }
            Err(Gated::Refuse(r)) => return Outcome::Refuse(r),
        }
        let (session, rolled) = if self.policy.access == Access::SessionToken {
            match self.session(parts, &request, now).await {
                Ok((s, r)) => (Some(s), r),
                Err(r) => return Outcome::Refuse(r),
            }
        } else {
            (None, None)
        };
        Outcome::Admit(Box::new(Admitted {
            request,
            session,
            rolled,
        }))
    }
}
