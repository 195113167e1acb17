//! The Access Server's endpoints (sans-IO: a request's head and body in, a response out).
//!
//! This module owns the [`AccessServer`] itself (its configuration, the builder setters
//! and getters), the request pipeline ([`AccessServer::handle`]: route, then dispatch),
//! and the one check every Person Server request passes first ([`AccessServer::calling_ps`],
//! AS-10). Each endpoint lives in its own module:
//!
//! | Module | Owns |
//! |---|---|
//! | [`router`] | the route table: which method and path reach which endpoint |
//! | [`token`] | `POST /auth-token`: the token request, from checks to the issued token |
//! | [`checks`] | the checks of the tokens in a request (AS-11…14) |
//! | [`decide`] | the policy's decision: a scope to issue, a step to wait for, or a refusal |
//! | [`waiting`] | the waiting request (`Waiting`, `Step`, `Given`) and the `202`/`402` answers |
//! | [`pending`] | `GET`/`POST /pending/{id}`: the Person Server polls and answers |
//! | [`admin`] | the approval and payment API, out of band |
//! | [`interaction`] | `GET`/`POST /interact`: the person's page and their approval |
//! | [`callback`] | the agent's `callback` on that page: admitted, and where the person goes next |
//! | [`revocation`] | `POST /revocation`: revocations received, and sent on to resources; `GET /revocation/{id}`, the poll of a cascade that outlasted its hold |
//!
//! The metadata document and JWKS are answered by [`Published`].

mod admin;
mod callback;
mod checks;
mod decide;
mod interaction;
mod pending;
mod revocation;
mod router;
mod token;
mod waiting;

use std::collections::BTreeSet;
use std::sync::Arc;

use aauth_keys::rand::SharedRandom;
use aauth_keys::time::UnixTime;
use aauth_keys::{JwkSet, Signer};
use aauth_metadata::audit::operator::{AuditSource, Operators};
use aauth_metadata::rate::{RateLimits, Refused, SignedBy};
use aauth_metadata::serve::json_response;
use aauth_metadata::throttle::{MemoryThrottle, Throttle};
use aauth_metadata::{AccessServerMetadata, HttpsUrl, Published};
use aauth_signing::{
    AuthoritySource, IssuerJwksUriResolver, KeyIdentity, ReplayGuard, Verifier, VerifyPolicy,
};
use aauth_tokens::{IssuerKeyResolver, ServerId};
use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;

use crate::store::{AsStore, MemoryStore, StoreError};
use crate::{AccessPolicy, AsError, GrantTrusted};

use router::Route;

/// Where the Access Server takes token requests from Person Servers.
pub const AUTH_TOKEN_PATH: &str = "/auth-token";
/// Where it publishes its keys.
pub const JWKS_PATH: &str = "/jwks.json";
/// Where Person Servers revoke person tokens and resources revoke resource tokens.
pub const REVOCATION_PATH: &str = "/revocation";
/// The prefix of a pending revocation's URL (`/revocation/{id}`): where a Person Server
/// polls a cascade that outlasted its request.
pub const REVOCATION_PENDING_PATH: &str = "/revocation/";

/// Where the Person Server answers this server's deferred requirements.
pub const PENDING_PATH: &str = "/pending/";
/// The interaction page the person is sent to (`{url}?code={code}`).
pub const INTERACT_PATH: &str = "/interact";

/// The most requests one Person Server may have waiting at an Access Server at once, by
/// default.
pub const DEFAULT_MAX_WAITING: usize = 64;

/// The most waiting requests an Access Server keeps in all, by default, for the Person
/// Servers it does not trust ahead ([`AccessServer::max_waiting_total`]).
pub const DEFAULT_MAX_WAITING_TOTAL: usize = 10_000;

/// An Access Server: issues auth tokens (`dwk: aauth-access.json`) for the resources
/// that name it as their `aud`, only to the Person Servers it trusts, each request
/// signed by the Person Server under `sig=jwks_uri;id;dwk="aauth-person.json";kid`
/// covering its body, after every check of AS-10…21.
pub struct AccessServer {
    id: ServerId,
    signer: Arc<dyn Signer>,
    kid: String,
    /// The keys it signed with before a rotation, published each until its time: its
    /// own auth tokens signed with one still verify here (a step-up presents one).
    retiring: Vec<aauth_metadata::RetiringKey>,
    issuer_keys: Arc<dyn IssuerKeyResolver>,
    published: Published,
    verifier: Verifier,
    trusted: BTreeSet<ServerId>,
    /// Whether Person Servers without pre-established trust reach the policy.
    admit_unknown: bool,
    /// Signs people in on the interaction page (none: no interaction binding).
    people: Option<Arc<dyn crate::PeopleAuthenticator>>,
    policy: Arc<dyn AccessPolicy>,
    auth_lifetime: u64,
    /// Issuance records, revocations, waiting requests, bindings, billing.
    store: Arc<dyn AsStore>,
    /// Sends revocations to resources (AS-41, AS-43).
    notifier: Option<Arc<dyn aauth_metadata::Transport>>,
    /// The person-token cascades that outlasted their request (AS-41: `202` and polls),
    /// in this process's memory.
    revocations: aauth_metadata::cascade::Cascades,
    /// The most requests one Person Server may have waiting here at once.
    max_waiting: usize,
    /// The most waiting requests kept here in all when a Person Server it does not trust
    /// ahead asks.
    max_waiting_total: usize,
    /// Wrong interaction codes, counted per account and per client.
    throttle: Arc<dyn Throttle>,
    /// The rate limits counted by who signed or whom a request is for (checked once
    /// verified); none by default.
    rate_limits: Option<Arc<RateLimits>>,
    /// The resources this server issues for (`None`: any whose resource token names it).
    governs: Option<BTreeSet<ServerId>>,
    /// Where pending ids, interaction codes, `jti`s and nonces come from.
    random: SharedRandom,
    /// The keys that read the audit log at `/admin/audit` (none: not served).
    operators: Option<Operators>,
    /// Reads agent providers' metadata, to admit the `callback` of an interaction link
    /// (none: no callback is followed).
    metadata: Option<Arc<dyn aauth_metadata::Fetch>>,
}

impl std::fmt::Debug for AccessServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessServer")
            .field("id", &self.id)
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

/// Why an endpoint answers with something other than its result. Every endpoint step
/// returns [`Answer`], so a store's failure or a refused check is passed on with `?`;
/// [`Refusal::into_http_response`] turns it into the response at the end of the pipeline.
#[derive(Debug)]
pub(super) enum Refusal {
    /// The request names nothing here (`404`): no such path, no such waiting request, or
    /// one that is not the caller's (the same answer for all three).
    NotFound,
    /// One of the Access Server's refusals (its `error` code and status).
    Error(AsError),
    /// An answer already formed: the signature check's own response, or a page for the
    /// person.
    Answered(Box<http::Response<Bytes>>),
}

impl From<AsError> for Refusal {
    fn from(e: AsError) -> Self {
        Self::Error(e)
    }
}

impl From<aauth_metadata::serve::InternalError> for Refusal {
    fn from(e: aauth_metadata::serve::InternalError) -> Self {
        Self::Error(AsError::from(e))
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Self::Error(AsError::from(e))
    }
}

impl Refusal {
    /// Answers with `response`, already formed.
    pub(super) fn answered(response: http::Response<Bytes>) -> Self {
        Self::Answered(Box::new(response))
    }

    /// The response it comes to ([`AsError::into_http_response`] for the Access Server's own
    /// refusals).
    pub(super) fn into_http_response(self) -> http::Response<Bytes> {
        match self {
            Self::NotFound => not_found(),
            Self::Error(e) => e.into_http_response(),
            Self::Answered(r) => *r,
        }
    }
}

/// What an endpoint (or one of its steps) answers.
pub(super) type Answer = Result<http::Response<Bytes>, Refusal>;

/// The `404` of a path or a waiting request that is not here.
fn not_found() -> http::Response<Bytes> {
    json_response(
        StatusCode::NOT_FOUND,
        &serde_json::json!({ "error": "not_found" }),
    )
}

impl AccessServer {
    /// A fresh random identifier (a pending URL's id): 16 bytes from the server's random
    /// source.
    pub(super) fn random_id(&self) -> Result<String, AsError> {
        aauth_keys::rand::random_id(&mut self.random.clone(), 16)
            .map_err(|e| aauth_metadata::serve::InternalError::produce("random id", e).into())
    }
}

impl AccessServer {
    /// An Access Server `id` signing with `signer` under `kid`, finding the keys of
    /// Person Servers, resources and agent providers through `issuer_keys`. It trusts no
    /// Person Server until told ([`AccessServer::trusted`]) and grants every verified
    /// request by default ([`AccessServer::policy`]).
    ///
    /// # Errors
    ///
    /// [`AsError::Internal`] when the endpoint URLs cannot be formed from `id`.
    pub fn new(
        id: ServerId,
        signer: Arc<dyn Signer>,
        kid: &str,
        issuer_keys: Arc<dyn IssuerKeyResolver>,
    ) -> Result<Self, AsError> {
        let url = |path: &str| {
            HttpsUrl::parse(&format!("{}{path}", id.as_str()))
                .map_err(|e| aauth_metadata::serve::InternalError::produce("endpoint URL", e))
        };
        let mut doc = AccessServerMetadata::new(id.clone(), url(JWKS_PATH)?, url(AUTH_TOKEN_PATH)?);
        doc.revocation_endpoint = Some(url(REVOCATION_PATH)?);
        // Every verifier below keeps the default policy's algorithms.
        doc.common.accepts(&aauth_keys::Algorithm::ALL);
        let mut jwk = signer.public_key().to_jwk();
        jwk.kid = Some(kid.to_owned());
        let published = Published::new(&doc).jwks(JWKS_PATH, &JwkSet::from_jwks(&[jwk]));
        // Requests must be addressed to this server, and each state-changing one is
        // accepted once: a replayed token request would yield a second auth token.
        let verifier = Verifier::new(
            VerifyPolicy::for_server(&id)
                .accept_schemes(&["jwks_uri"])
                .body_coverage(aauth_signing::BodyCoverage::Required),
            Arc::new(IssuerJwksUriResolver::new(Arc::clone(&issuer_keys))),
        )
        .replay(ReplayGuard::in_memory());
        Ok(Self {
            id,
            signer,
            kid: kid.to_owned(),
            retiring: Vec::new(),
            issuer_keys,
            published,
            verifier,
            trusted: BTreeSet::new(),
            admit_unknown: false,
            people: None,
            policy: Arc::new(GrantTrusted),
            auth_lifetime: 3600,
            store: Arc::new(MemoryStore::default()),
            notifier: None,
            revocations: aauth_metadata::cascade::Cascades::new(REVOCATION_PENDING_PATH),
            max_waiting: DEFAULT_MAX_WAITING,
            max_waiting_total: DEFAULT_MAX_WAITING_TOTAL,
            throttle: Arc::new(MemoryThrottle::default()),
            rate_limits: None,
            governs: None,
            random: SharedRandom::default(),
            operators: None,
            metadata: None,
        }
        .gated())
    }

    /// Also publishes `keys` in this server's JWKS, each until its time: the keys it
    /// signed with before a key rotation, so that what they signed still verifies, and a
    /// verifier's cached JWKS is not the only one that knows them. The key it signs with
    /// is always published. Its own auth tokens presented here (a four-party step-up)
    /// verify under them too, until the same time.
    #[must_use]
    pub fn retiring_keys(mut self, keys: &[aauth_metadata::RetiringKey]) -> Self {
        let mut jwk = self.signer.public_key().to_jwk();
        jwk.kid = Some(self.kid.clone());
        self.published = self.published.jwks_rotating(JWKS_PATH, &[jwk], keys);
        self.retiring = keys.to_vec();
        self
    }

    /// The authorities this server's endpoints answer to (by default its identifier's
    /// host): several names, or the external authority behind a proxy that rewrites
    /// `Host`.
    #[must_use]
    pub fn authority(mut self, source: AuthoritySource) -> Self {
        self.verifier = self.verifier.authority(source);
        self
    }

    /// Records accepted state-changing requests in `store` (shared by several instances)
    /// instead of this server's own memory.
    #[must_use]
    pub fn replay_store(mut self, store: Arc<dyn aauth_signing::ReplayStore>) -> Self {
        self.verifier = self.verifier.replay(ReplayGuard::new(store));
        self
    }

    /// Turns the replay check off. Without it, a replayed token request yields a second
    /// auth token for one resource token.
    #[must_use]
    pub fn without_replay_check(mut self) -> Self {
        self.verifier = self.verifier.without_replay();
        self
    }

    /// At most `max` requests waiting at once per Person Server (default
    /// [`DEFAULT_MAX_WAITING`]); past it a request that would wait is refused `429`.
    #[must_use]
    pub fn max_waiting_per_person_server(mut self, max: usize) -> Self {
        self.max_waiting = max.max(1);
        self
    }

    /// At most `max` waiting requests kept here in all, every Person Server's together
    /// (default [`DEFAULT_MAX_WAITING_TOTAL`]): the ones waiting, and the records of the
    /// ended or expired ones kept [`WAITING_KEPT`](crate::WAITING_KEPT) for their late
    /// polls. Past it, a request of a Person Server not [`AccessServer::trusted`] that
    /// would wait is refused as past the per-Person-Server bound is (`429 rate_limited`,
    /// `Retry-After`), counted and stored as one step by the store. The Person Servers
    /// trusted ahead are left out of this bound (each is held to its own,
    /// [`AccessServer::max_waiting_per_person_server`]), so that a flood from Person
    /// Servers admitted by [`AccessServer::admit_unknown_person_servers`], whose
    /// identities cost a domain each, cannot shut them out; their requests still count
    /// towards it.
    #[must_use]
    pub fn max_waiting_total(mut self, max: usize) -> Self {
        self.max_waiting_total = max.max(1);
        self
    }

    /// Draws pending ids, interaction codes, token `jti`s and request nonces from
    /// `random` (the OS CSPRNG by default; a test makes them reproducible).
    #[must_use]
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = random;
        self
    }

    /// Counts wrong interaction codes in `throttle` (shared by several instances)
    /// instead of this server's memory.
    #[must_use]
    pub fn throttle(mut self, throttle: Arc<dyn Throttle>) -> Self {
        self.throttle = throttle;
        self
    }

    /// Serves the audit log to `operators` at `GET /admin/audit`
    /// ([`aauth_metadata::audit::operator`]): requests signed (`hwk`) by one of their
    /// keys. Without operators the path is not served (`404`).
    #[must_use]
    pub fn operators(mut self, operators: Operators) -> Self {
        self.operators = Some(operators);
        self
    }

    /// Enforces the rules of `limits` that count requests by who they come from, once
    /// that is verified (never before: a request merely claiming to come from someone
    /// spends nothing of their budget):
    ///
    /// - [`RateScope::PersonServer`](aauth_metadata::rate::RateScope::PersonServer): each
    ///   Person Server, on its token requests and on its polls and answers at a pending
    ///   URL, counted right after its signature verified;
    /// - [`RateScope::Agent`](aauth_metadata::rate::RateScope::Agent): each agent, on the
    ///   token requests made for it, counted once its agent token verified and the
    ///   resource token binds the agent's key (an agent token alone proves nothing of the
    ///   request: every resource the agent calls sees it); a request decided again after
    ///   its step is not counted again.
    ///
    /// Over a limit, `429 rate_limited` with `Retry-After`; a poll of a pending URL gets
    /// `429 slow_down` instead (draft -11 §11.9.4), and the Person Server polls 5 seconds
    /// slower; a limiter that cannot answer, `503`. Revocations are never counted (a
    /// refused revocation would leave a token live). Rules of other scopes are not this
    /// server's to count (a service checks them before the request reaches it).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use aauth_access_server::AccessServer;
    /// use aauth_keys::PrivateKey;
    /// use aauth_metadata::rate::{MemoryRateLimiter, RateLimit, RateLimits, RateScope, Rule};
    /// use aauth_tokens::{ServerId, StaticIssuerKeys};
    /// // Each Person Server: 100 token requests a minute; each agent: 10.
    /// let rule = |scope, requests| -> Result<Rule, Box<dyn std::error::Error>> {
    ///     Ok(Rule {
    ///         scope,
    ///         path: "/auth-token".to_owned(),
    ///         limit: RateLimit::new(requests, Duration::from_secs(60), requests)?,
    ///     })
    /// };
    /// let limits = RateLimits::new(
    ///     vec![rule(RateScope::PersonServer, 100)?, rule(RateScope::Agent, 10)?],
    ///     Arc::new(MemoryRateLimiter::default()),
    /// );
    /// let access = AccessServer::new(
    ///     ServerId::parse("https://as.example")?,
    ///     Arc::new(PrivateKey::ed25519_from_seed(&[5; 32])),
    ///     "as-1",
    ///     Arc::new(StaticIssuerKeys::new()),
    /// )?
    /// .rate_limits(Arc::new(limits));
    /// # drop(access);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn rate_limits(mut self, limits: Arc<RateLimits>) -> Self {
        self.rate_limits = Some(limits);
        self
    }

    /// Issues auth tokens only for these resources: a resource token from any other is
    /// refused `invalid_resource_token`, whoever it names as its `aud` (by default every
    /// resource whose resource token names this server is served).
    #[must_use]
    pub fn governed(mut self, resources: impl IntoIterator<Item = ServerId>) -> Self {
        self.governs
            .get_or_insert_with(BTreeSet::new)
            .extend(resources);
        self
    }

    /// Trusts these Person Servers (pre-established trust); every other caller is
    /// refused with `403 denied`.
    #[must_use]
    pub fn trusted(mut self, person_servers: impl IntoIterator<Item = ServerId>) -> Self {
        self.trusted.extend(person_servers);
        self.gated()
    }

    /// Refuses, before any key is fetched, a signer this server would refuse after
    /// verifying: a Person Server it does not admit, or a document no caller of it
    /// publishes (resources may always sign, for their revocations).
    fn gated(mut self) -> Self {
        let (trusted, any_ps): (BTreeSet<String>, bool) = (
            self.trusted.iter().map(|p| p.as_str().to_owned()).collect(),
            self.admit_unknown,
        );
        self.verifier = self
            .verifier
            .gate(aauth_signing::jwks_uri_signers(move |id, dwk| {
                (dwk == "aauth-person.json" && (any_ps || trusted.contains(id)))
                    || dwk == "aauth-resource.json"
            }));
        self
    }

    /// Keeps its records, waiting requests, bindings and billing relationships in
    /// `store` (in memory by default: use the SQLite store, or your own, for a server
    /// whose waiting requests and records survive a restart).
    #[must_use]
    pub fn store(mut self, store: Arc<dyn AsStore>) -> Self {
        self.store = store;
        self
    }

    /// Lets Person Servers it has no pre-established trust with reach its policy (draft
    /// -11 §PS-AS Trust Establishment: trust may "emerge dynamically from the AS's
    /// response"): any Person Server whose signature verifies under its published keys,
    /// seen by the policy with `pre_established: false`, so that the policy can establish
    /// trust by interaction ([`crate::TrustByInteraction`]), by payment, or by claims.
    /// Such a Person Server may also revoke the person tokens it presented here. Off by
    /// default: only [`AccessServer::trusted`]ed Person Servers are answered. (This server
    /// then fetches the keys of any Person Server that asks, through the egress guard of
    /// its key resolver.)
    #[must_use]
    pub fn admit_unknown_person_servers(mut self) -> Self {
        self.admit_unknown = true;
        self.gated()
    }

    /// Signs people in on the interaction page through `authenticator`: the binding of a
    /// person's Person Server here ([`crate::AccessDecision::RequireInteraction`]) is made
    /// only by a person signed in here, on a same-origin form, and records their account.
    /// Without one, a policy asking for the person is a server error.
    #[must_use]
    pub fn people_authenticator(
        mut self,
        authenticator: Arc<dyn crate::PeopleAuthenticator>,
    ) -> Self {
        self.people = Some(authenticator);
        self
    }

    /// Reads agent providers' metadata through `fetch` (give it an egress-guarded one,
    /// such as [`aauth_metadata::GuardedFetch`]), for the agent's `callback` on the
    /// interaction page (draft -11 §User Interaction): an agent that opens
    /// `{url}?code={code}&callback={callback}` has the person's browser sent back to
    /// `callback` once they decide (with `?error=access_denied` on a denial,
    /// `interaction_expired` when the request expired first), if the provider of its agent
    /// token publishes that URL as its `callback_endpoint` (the agent may add a query),
    /// or sets `localhost_callback_allowed` and it is an `http` loopback URL. Any other
    /// callback is not followed: the page ends with its own completion page, as it does
    /// without this (the default), and the agent learns the outcome by polling.
    #[must_use]
    pub fn metadata(mut self, fetch: Arc<dyn aauth_metadata::Fetch>) -> Self {
        self.metadata = Some(fetch);
        self
    }

    /// Whether this server answers Person Server `ps` at all: trusted, or any when
    /// unknown Person Servers are admitted.
    fn admits(&self, ps: &ServerId) -> bool {
        self.admit_unknown || self.trusted.contains(ps)
    }

    /// Decides with `policy`.
    #[must_use]
    pub fn policy(mut self, policy: Arc<dyn AccessPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// The lifetime of the auth tokens it issues (at most and by default one hour).
    #[must_use]
    pub fn auth_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.auth_lifetime = lifetime.as_secs().min(3600);
        self
    }

    /// Revokes the auth tokens a revocation cascades to at their resources, through
    /// `transport` (each resource's `revocation_endpoint`, signed as this Access Server).
    /// Without it, those outcomes are reported as `revocation_unsupported`.
    #[must_use]
    pub fn revocation_transport(mut self, transport: Arc<dyn aauth_metadata::Transport>) -> Self {
        self.notifier = Some(transport);
        self
    }

    /// Holds a revocation request (and each poll of its pending URL) at most `hold` while
    /// its cascade runs (default
    /// [`DEFAULT_REVOCATION_HOLD`](aauth_metadata::cascade::DEFAULT_REVOCATION_HOLD), 20 s;
    /// at most [`MAX_REVOCATION_HOLD`](aauth_metadata::cascade::MAX_REVOCATION_HOLD), 30
    /// s). A cascade done within it is answered `200` with its `downstream` report; one
    /// still running is answered `202` with its pending URL ([`REVOCATION_PENDING_PATH`]
    /// `{id}`), which the Person Server polls with a signed `GET`. A sender's `Prefer:
    /// wait=N` sets the hold of its own request (clamped the same way).
    #[must_use]
    pub fn revocation_hold(mut self, hold: std::time::Duration) -> Self {
        self.revocations = self.revocations.hold(hold);
        self
    }

    /// Keeps the revocations answered `202` in `store`, shared with this server's other
    /// instances, so that any of them answers their polls (without it, only the instance
    /// that answered `202` does; see `aauth_metadata::cascade`).
    #[must_use]
    pub fn shared_revocations(
        mut self,
        store: Arc<dyn aauth_metadata::cascade::CascadeStore>,
    ) -> Self {
        self.revocations = self.revocations.shared(store);
        self
    }

    /// The Access Server's identifier.
    #[must_use]
    pub fn id(&self) -> &ServerId {
        &self.id
    }

    /// Its metadata document and JWKS.
    #[must_use]
    pub fn published(&self) -> &Published {
        &self.published
    }

    /// How many auth tokens it holds issuance records of.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn issued(&self) -> Result<usize, StoreError> {
        self.store.issued_count().await
    }

    /// The page of the audit log's events that `q` selects, newest first: every auth
    /// token issued, every token request refused (with its error code), every
    /// out-of-band decision.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn audit(
        &self,
        q: &aauth_metadata::audit::AuditQuery,
    ) -> Result<aauth_metadata::audit::AuditPage, StoreError> {
        self.store.audit(q).await
    }

    /// Answers one request: finds its endpoint in the route table, then runs it; `None`
    /// for a path (or a method on it) that is not in the table, so that the server can
    /// share a listener with other routes (the [`Endpoint`](aauth_metadata::serve::Endpoint)
    /// service answers `404`).
    pub async fn handle(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Option<http::Response<Bytes>> {
        let route = router::of(&parts.method, parts.uri.path())?;
        let answer = self.dispatch(route, parts, body, now).await;
        Some(answer.unwrap_or_else(Refusal::into_http_response))
    }

    /// Runs the endpoint `route` names.
    async fn dispatch(
        &self,
        route: Route<'_>,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Answer {
        match route {
            Route::Published => self
                .published
                .respond_at(&parts.method, parts.uri.path(), now)
                .ok_or(Refusal::NotFound),
            Route::AuthToken => self.auth_token(parts, body, now).await,
            Route::InteractionPage => self.interaction(false, parts, body, now).await,
            Route::InteractionAnswer => self.interaction(true, parts, body, now).await,
            Route::Poll { id } => self.poll_waiting(id, parts, now).await,
            Route::Answer { id } => self.answer(id, parts, body, now).await,
            Route::Revocation => self.revocation(parts, body, now).await,
            Route::RevocationPoll { id } => Ok(self.revocation_poll(id, parts, body, now).await),
            Route::OperatorAudit => match &self.operators {
                Some(ops) => Ok(ops
                    .answer(&StoreAudit(self.store.as_ref()), parts, body, now)
                    .await),
                None => Err(Refusal::NotFound),
            },
        }
    }

    /// AS-10: the admitted Person Server that signed this request (a signature covering
    /// `body`), or the refusal: the signature check's own answer, or `403 denied` for a
    /// signer that is not a Person Server this server admits.
    async fn calling_ps(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Result<ServerId, Refusal> {
        let untrusted = || {
            Refusal::Error(AsError::Untrusted(
                "this Access Server takes requests only from the Person Servers it trusts"
                    .to_owned(),
            ))
        };
        let verified = match self.verifier.verify(parts, body, now).await {
            Ok(v) => v,
            Err(aauth_signing::VerifyError::SignerNotAdmitted { .. }) => return Err(untrusted()),
            Err(error) => {
                return Err(Refusal::answered(
                    error
                        .into_http_response(self.verifier.policy())
                        .map(Bytes::from),
                ));
            }
        };
        let ps = match &verified.identity {
            KeyIdentity::JwksUri { id, dwk, .. } if dwk == "aauth-person.json" => {
                ServerId::parse(id).ok()
            }
            _ => None,
        };
        ps.filter(|p| self.admits(p)).ok_or_else(untrusted)
    }

    /// Counts a request to `path` from `signer` (verified) against the rules of its scope
    /// ([`AccessServer::rate_limits`]); `Err` when over one (or the limiter cannot
    /// answer).
    async fn count(&self, path: &str, signer: SignedBy<'_>) -> Result<(), Refused> {
        match &self.rate_limits {
            Some(limits) => limits.check_signed(path, signer).await,
            None => Ok(()),
        }
    }

    /// [`AccessServer::count`] for a Person Server's request: over a limit, `429
    /// rate_limited`, or for a poll of a pending URL `429 slow_down` (draft -11
    /// §11.9.4, Polling Error Codes), with `Retry-After`; `503` when the limiter cannot
    /// answer.
    async fn count_person_server(
        &self,
        parts: &Parts,
        ps: &ServerId,
        poll: bool,
    ) -> Result<(), Refusal> {
        use aauth_metadata::rate::{limited_response, slow_down_response};
        self.count(parts.uri.path(), SignedBy::PersonServer(ps.as_str()))
            .await
            .map_err(|refused| {
                Refusal::answered(if poll {
                    slow_down_response(&refused)
                } else {
                    limited_response(&refused)
                })
            })
    }
}

#[async_trait::async_trait]
impl aauth_metadata::serve::Endpoint for AccessServer {
    async fn respond(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Option<http::Response<Bytes>> {
        self.handle(parts, body, now).await
    }

    /// Answers the revocations held now (and their polls) at once, `202` with their
    /// pending URL, and holds no new one
    /// ([`Cascades::stop_holding`](aauth_metadata::cascade::Cascades::stop_holding)): a
    /// revocation is recorded here before it is held, and a Person Server whose poll
    /// finds the pending URL gone resends (revocation is idempotent), which sends the
    /// cascade again. The Access Server holds nothing else.
    fn stop_holding(&self) {
        self.revocations.stop_holding();
    }
}

/// The store's audit log, as the operator endpoint reads it.
struct StoreAudit<'a>(&'a dyn AsStore);

#[async_trait::async_trait]
impl AuditSource for StoreAudit<'_> {
    async fn audit_page(
        &self,
        q: &aauth_metadata::audit::AuditQuery,
    ) -> Result<aauth_metadata::audit::AuditPage, StoreError> {
        self.0.audit(q).await
    }
}
