//! The Access Server's endpoints (sans-IO: a request's head and body in, a response out).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;

use aauth_keys::time::UnixTime;
use aauth_keys::{JwkSet, PublicKey, Signer};
use aauth_metadata::serve::json_response;
use aauth_metadata::throttle::{ClientAddr, MemoryThrottle, Throttle, ThrottleKey};
use aauth_metadata::{AccessServerMetadata, HttpsUrl, Published};
use aauth_signing::{
    AuthoritySource, IssuerJwksUriResolver, KeyIdentity, ReplayGuard, Verifier, VerifyPolicy,
};
use aauth_tokens::{
    AgentClaims, AuthClaims, AuthIssuer, AuthTokenBuilder, IssuerKeyResolver, PersonClaims,
    ResourceClaims, ServerId, TokenError, TokenType, Unverified, Validation, Verified, verify,
};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::store::{AsStore, Awaiting, IssuedRecord, MemoryStore, StoreError, WaitingRecord};
use crate::{AccessDecision, AccessPolicy, AccessRequest, AsError, GrantAll};

/// Where the Access Server takes token requests from Person Servers.
pub const AUTH_TOKEN_PATH: &str = "/auth-token";
/// Where it publishes its keys.
pub const JWKS_PATH: &str = "/jwks.json";
/// Where Person Servers revoke person tokens and resources revoke resource tokens.
pub const REVOCATION_PATH: &str = "/revocation";

/// Where the Person Server answers this server's deferred requirements.
pub const PENDING_PATH: &str = "/pending/";
/// The interaction page the person is sent to (`{url}?code={code}`).
pub const INTERACT_PATH: &str = "/interact";

/// What a waiting request waits for.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Step {
    /// The Person Server's claims (`POST` to the pending URL).
    Claims(Vec<String>),
    /// The person, on the interaction page: its code, the binding it makes, and whether
    /// the person approved.
    Interaction {
        code: String,
        /// The binding it makes: (resource, `sub`) for the request's Person Server.
        resource: String,
        sub: String,
        done: bool,
    },
    /// An approval out of band: `None` while undecided, then the decision.
    Approval(Option<bool>),
    /// An answer to a question (`POST` with `action`).
    Clarification {
        question: String,
        options: Vec<String>,
    },
    /// A payment (`402`), confirmed out of band.
    Payment { challenge: String },
    /// Its resource token was revoked (AS-42): the next poll ends it.
    Revoked,
}

/// What earlier steps of a request gave, carried to the next decision.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Given {
    claims: Option<serde_json::Map<String, serde_json::Value>>,
    clarification: Option<String>,
    rounds: u8,
    approved: bool,
}

/// A token request waiting for the Person Server, the person, an approver or a payment;
/// every step of one request keeps the same pending URL.
#[derive(Debug, Clone)]
struct Waiting {
    /// The Person Server that asked (only it may poll or answer).
    ps: ServerId,
    /// The request, as it came (or as an `updated_request` replaced it).
    body: Vec<u8>,
    /// Until when the answer is taken.
    expires: u64,
    step: Step,
    /// The resource token's `(iss, jti)`, so that its revocation ends the request.
    rt: (String, String),
    given: Given,
}

impl Step {
    fn awaiting(&self) -> Awaiting {
        match self {
            Self::Claims(_) => Awaiting::Claims,
            Self::Interaction { .. } => Awaiting::Interaction,
            Self::Approval(_) => Awaiting::Approval,
            Self::Clarification { .. } => Awaiting::Clarification,
            Self::Payment { .. } => Awaiting::Payment,
            Self::Revoked => Awaiting::Ended,
        }
    }
}

/// The server's state for a waiting request, as the store keeps it (`data`).
#[derive(Serialize, Deserialize)]
struct WaitingData {
    body: String,
    step: Step,
    given: Given,
}

impl Waiting {
    fn into_record(self, id: String) -> Result<WaitingRecord, AsError> {
        let code = match &self.step {
            Step::Interaction {
                code, done: false, ..
            } => Some(code.clone()),
            _ => None,
        };
        let awaiting = self.step.awaiting();
        let body = String::from_utf8(self.body)
            .map_err(|_| AsError::Server("a request body that is not UTF-8".to_owned()))?;
        let data = serde_json::to_string(&WaitingData {
            body,
            step: self.step,
            given: self.given,
        })
        .map_err(|e| AsError::Server(e.to_string()))?;
        Ok(WaitingRecord {
            id,
            ps: self.ps,
            expires: self.expires,
            resource_token: self.rt,
            code,
            awaiting,
            data,
        })
    }

    fn from_record(r: WaitingRecord) -> Result<Self, AsError> {
        let d: WaitingData = serde_json::from_str(&r.data)
            .map_err(|e| AsError::Server(format!("a stored waiting request: {e}")))?;
        Ok(Self {
            ps: r.ps,
            body: d.body.into_bytes(),
            expires: r.expires,
            step: d.step,
            rt: r.resource_token,
            given: d.given,
        })
    }
}

/// A token that could not be checked because its issuer's keys are unavailable is this
/// server's failure (`500`, the Person Server reports `as_unreachable`), never the
/// caller's `invalid_*`.
fn unavailable(e: &TokenError) -> Option<AsError> {
    match e {
        TokenError::KeyResolution(aauth_tokens::ResolveError::Unavailable { reason }) => Some(
            AsError::Server(format!("an issuer's keys are unavailable: {reason}")),
        ),
        _ => None,
    }
}

/// What a token request comes to.
enum Outcome {
    /// The auth token (`200`).
    Issued(serde_json::Value),
    /// A step first, for the resource token `(iss, jti)`.
    Deferred(Step, (String, String)),
}

/// The most clarification rounds one request may take.
const MAX_CLARIFICATION_ROUNDS: u8 = 5;

/// The `Location`, `Retry-After` and `AAuth-Requirement` of a `202`.
fn pending_headers(
    r: &mut http::Response<Bytes>,
    id: &str,
    retry: &'static str,
    requirement: HeaderValue,
) {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("{PENDING_PATH}{id}")) {
        h.insert(http::header::LOCATION, v);
    }
    h.insert(http::header::RETRY_AFTER, HeaderValue::from_static(retry));
    h.insert("aauth-requirement", requirement);
}

/// A single-use interaction code: eight symbols from the OS CSPRNG.
fn random_code() -> Option<String> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut b = [0u8; 8];
    aauth_keys::rand::RandomSource::fill(&mut aauth_keys::rand::OsRandom, &mut b).ok()?;
    Some(
        b.iter()
            .map(|x| char::from(ALPHABET[usize::from(x & 31)]))
            .collect(),
    )
}

/// The most requests one Person Server may have waiting at an Access Server at once, by
/// default.
pub const DEFAULT_MAX_WAITING: usize = 64;

/// An Access Server: issues auth tokens (`dwk: aauth-access.json`) for the resources
/// that name it as their `aud`, only to the Person Servers it trusts, each request
/// signed by the Person Server under `sig=jwks_uri;id;dwk="aauth-person.json";kid`
/// covering its body, after every check of AS-10…21.
pub struct AccessServer {
    id: ServerId,
    signer: Arc<dyn Signer>,
    kid: String,
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
    notifier: Option<Arc<dyn aauth_agent::Transport>>,
    /// The most requests one Person Server may have waiting here at once.
    max_waiting: usize,
    /// Wrong interaction codes, counted per account and per client.
    throttle: Arc<dyn Throttle>,
    /// The resources this server issues for (`None`: any whose resource token names it).
    governs: Option<BTreeSet<ServerId>>,
}

impl std::fmt::Debug for AccessServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessServer")
            .field("id", &self.id)
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

/// The body of a token request (AS-11).
#[derive(Deserialize)]
struct Body {
    resource_token: Option<String>,
    agent_token: Option<String>,
    presented_token: Option<String>,
    #[serde(default)]
    subagent_token: Option<String>,
    #[serde(default)]
    upstream_token: Option<String>,
    #[serde(default)]
    budget: Option<aauth_tokens::Budget>,
}

fn not_found() -> http::Response<Bytes> {
    json_response(
        StatusCode::NOT_FOUND,
        &serde_json::json!({ "error": "not_found" }),
    )
}

impl AccessServer {
    /// An Access Server `id` signing with `signer` under `kid`, finding the keys of
    /// Person Servers, resources and agent providers through `issuer_keys`. It trusts no
    /// Person Server until told ([`AccessServer::trust`]) and grants every verified
    /// request by default ([`AccessServer::policy`]).
    ///
    /// # Errors
    ///
    /// [`AsError::Server`] when the endpoint URLs cannot be formed from `id`.
    pub fn new(
        id: ServerId,
        signer: Arc<dyn Signer>,
        kid: &str,
        issuer_keys: Arc<dyn IssuerKeyResolver>,
    ) -> Result<Self, AsError> {
        let url = |path: &str| {
            HttpsUrl::parse(&format!("{}{path}", id.as_str()))
                .map_err(|e| AsError::Server(e.to_string()))
        };
        let mut doc = AccessServerMetadata::new(id.clone(), url(JWKS_PATH)?, url(AUTH_TOKEN_PATH)?);
        doc.revocation_endpoint = Some(url(REVOCATION_PATH)?);
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
            issuer_keys,
            published,
            verifier,
            trusted: BTreeSet::new(),
            admit_unknown: false,
            people: None,
            policy: Arc::new(GrantAll),
            auth_lifetime: 3600,
            store: Arc::new(MemoryStore::default()),
            notifier: None,
            max_waiting: DEFAULT_MAX_WAITING,
            throttle: Arc::new(MemoryThrottle::default()),
            governs: None,
        }
        .gated())
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

    /// Counts wrong interaction codes in `throttle` (shared by several instances)
    /// instead of this server's memory.
    #[must_use]
    pub fn throttle(mut self, throttle: Arc<dyn Throttle>) -> Self {
        self.throttle = throttle;
        self
    }

    /// Issues auth tokens only for these resources: a resource token from any other is
    /// refused `invalid_resource_token`, whoever it names as its `aud` (by default every
    /// resource whose resource token names this server is served).
    #[must_use]
    pub fn governs(mut self, resources: impl IntoIterator<Item = ServerId>) -> Self {
        self.governs
            .get_or_insert_with(BTreeSet::new)
            .extend(resources);
        self
    }

    /// Trusts these Person Servers (pre-established trust); every other caller is
    /// refused with `403 denied`.
    #[must_use]
    pub fn trust(mut self, person_servers: impl IntoIterator<Item = ServerId>) -> Self {
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
    /// default: only [`AccessServer::trust`]ed Person Servers are answered. (This server
    /// then fetches the keys of any Person Server that asks, through the egress guard of
    /// its key resolver.)
    #[must_use]
    pub fn admit_unknown_person_servers(mut self) -> Self {
        self.admit_unknown = true;
        self.gated()
    }

    /// Signs people in on the interaction page through `authenticator`: the binding of a
    /// person's Person Server here ([`AccessDecision::RequireInteraction`]) is made only by
    /// a person signed in here, on a same-origin form, and records their account. Without
    /// one, a policy asking for the person is a server error.
    #[must_use]
    pub fn authenticate_people(
        mut self,
        authenticator: Arc<dyn crate::PeopleAuthenticator>,
    ) -> Self {
        self.people = Some(authenticator);
        self
    }

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
    pub fn auth_lifetime(mut self, secs: u64) -> Self {
        self.auth_lifetime = secs.min(3600);
        self
    }

    /// Revokes the auth tokens a revocation cascades to at their resources, through
    /// `transport` (each resource's `revocation_endpoint`, signed as this Access Server).
    /// Without it, those outcomes are reported as `revocation_unsupported`.
    #[must_use]
    pub fn notify_revocations(mut self, transport: Arc<dyn aauth_agent::Transport>) -> Self {
        self.notifier = Some(transport);
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

    /// Answers one request.
    pub async fn handle(&self, parts: &Parts, body: &[u8], now: UnixTime) -> http::Response<Bytes> {
        if let Some(doc) = self.published.respond(&parts.method, parts.uri.path()) {
            return doc;
        }
        match (&parts.method, parts.uri.path()) {
            (&Method::POST, AUTH_TOKEN_PATH) => match self.auth_token(parts, body, now).await {
                Ok(resp) => resp,
                Err(resp) => resp,
            },
            (&Method::GET | &Method::POST, INTERACT_PATH) => {
                self.interaction_page(parts, body, now).await
            }
            (&Method::GET, path) if path.starts_with(PENDING_PATH) => {
                let id = path.trim_start_matches(PENDING_PATH).to_owned();
                match self.poll_waiting(&id, parts, now).await {
                    Ok(resp) | Err(resp) => resp,
                }
            }
            (&Method::POST, path) if path.starts_with(PENDING_PATH) => {
                let id = path.trim_start_matches(PENDING_PATH).to_owned();
                match self.answer(&id, parts, body, now).await {
                    Ok(resp) | Err(resp) => resp,
                }
            }
            (&Method::POST, REVOCATION_PATH) => self.revocation(parts, body, now).await,
            _ => not_found(),
        }
    }

    /// `auth_token_endpoint` (AS-10…21).
    async fn auth_token(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Result<http::Response<Bytes>, http::Response<Bytes>> {
        let ps = self.calling_ps(parts, body, now).await?;
        let given = Given::default();
        let outcome = self
            .issue(&ps, body, &given, now)
            .await
            .map_err(AsError::into_response)?;
        Ok(self.respond(outcome, &ps, body, given, None, now).await)
    }

    /// The answer to a token request: the token, or the step it waits for at its pending
    /// URL (kept for ten minutes; `reuse`, a request's later steps keep its URL).
    async fn respond(
        &self,
        outcome: Outcome,
        ps: &ServerId,
        body: &[u8],
        given: Given,
        reuse: Option<&str>,
        now: UnixTime,
    ) -> http::Response<Bytes> {
        match outcome {
            Outcome::Issued(json) => {
                if let Some(id) = reuse
                    && let Err(e) = self.store.remove_waiting(id).await
                {
                    return AsError::from(e).into_response();
                }
                json_response(StatusCode::OK, &json)
            }
            Outcome::Deferred(step, rt) => {
                let id = match reuse {
                    Some(id) => id.to_owned(),
                    None => {
                        let mut raw = [0u8; 16];
                        if aauth_keys::rand::RandomSource::fill(
                            &mut aauth_keys::rand::OsRandom,
                            &mut raw,
                        )
                        .is_err()
                        {
                            return AsError::Server("no randomness".to_owned()).into_response();
                        }
                        aauth_keys::base64url::encode(&raw)
                    }
                };
                let resp = self.step_response(&id, &step);
                let waiting = Waiting {
                    ps: ps.clone(),
                    body: body.to_vec(),
                    expires: now.as_secs().saturating_add(600),
                    step,
                    rt,
                    given,
                };
                let stored = if reuse.is_some() {
                    // Taken to be decided again: put back for its next step.
                    self.put_waiting(id, waiting, now).await
                } else {
                    self.create_waiting(id, waiting, now).await
                };
                if let Err(e) = stored {
                    return e.into_response();
                }
                resp
            }
        }
    }

    /// Stores a new waiting request within its Person Server's share.
    async fn create_waiting(&self, id: String, w: Waiting, now: UnixTime) -> Result<(), AsError> {
        match self
            .store
            .create_waiting(w.into_record(id)?, self.max_waiting, now)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(AsError::RateLimited {
                reason: format!(
                    "this Person Server already has {} requests waiting here",
                    self.max_waiting
                ),
                retry_after: 600,
            }),
            Err(e) => Err(AsError::from(e)),
        }
    }

    async fn put_waiting(&self, id: String, w: Waiting, now: UnixTime) -> Result<(), AsError> {
        self.store
            .put_waiting(w.into_record(id)?, now)
            .await
            .map_err(AsError::from)
    }

    /// What the Person Server is told while a request waits for `step`.
    fn step_response(&self, id: &str, step: &Step) -> http::Response<Bytes> {
        let pending = serde_json::json!({ "status": "pending" });
        let (status, json, retry, requirement) = match step {
            Step::Claims(names) => (
                StatusCode::ACCEPTED,
                serde_json::json!({ "status": "pending", "required_claims": names }),
                "0",
                HeaderValue::from_static("requirement=claims"),
            ),
            // (A step is answered here only as it starts; a poll of an interaction the
            // person has not finished gets `interacting` from `poll_waiting`.)
            Step::Interaction { code, .. } => match HeaderValue::from_str(&format!(
                "requirement=interaction;url=\"{}{INTERACT_PATH}\";code=\"{code}\"",
                self.id.as_str()
            )) {
                Ok(v) => (StatusCode::ACCEPTED, pending, "1", v),
                Err(e) => return AsError::Server(e.to_string()).into_response(),
            },
            Step::Approval(_) => (
                StatusCode::ACCEPTED,
                pending,
                "1",
                HeaderValue::from_static("requirement=approval"),
            ),
            Step::Clarification { question, options } => (
                StatusCode::ACCEPTED,
                serde_json::json!({ "status": "pending", "clarification": question, "options": options }),
                "0",
                HeaderValue::from_static("requirement=clarification"),
            ),
            Step::Payment { challenge } => {
                let mut r = json_response(
                    StatusCode::PAYMENT_REQUIRED,
                    &serde_json::json!({ "status": "pending", "error": "payment_required" }),
                );
                if let Ok(v) = HeaderValue::from_str(&format!("{PENDING_PATH}{id}")) {
                    r.headers_mut().insert(http::header::LOCATION, v);
                }
                match HeaderValue::from_str(challenge) {
                    Ok(v) => {
                        r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
                    }
                    Err(e) => return AsError::Server(e.to_string()).into_response(),
                }
                return r;
            }
            Step::Revoked => return AsError::RevokedResourceToken.into_response(),
        };
        let mut r = json_response(status, &json);
        pending_headers(&mut r, id, retry, requirement);
        r
    }

    /// The requests waiting for an approval out of band (their pending ids).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn awaiting_approval(&self, now: UnixTime) -> Result<Vec<String>, StoreError> {
        Ok(self
            .store
            .waiting_on(Awaiting::Approval, now)
            .await?
            .into_iter()
            .filter(|r| {
                Waiting::from_record(r.clone())
                    .is_ok_and(|w| matches!(w.step, Step::Approval(None)))
            })
            .map(|r| r.id)
            .collect())
    }

    /// Approves (or refuses) the waiting request `id`; `Ok(false)` when there is none
    /// awaiting approval.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the store fails (or holds a record it cannot read).
    pub async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let unreadable = |e: AsError| StoreError::unreadable("access-server", "waiting request", e);
        let Some(record) = self.store.waiting(id, now).await? else {
            return Ok(false);
        };
        let mut w = Waiting::from_record(record).map_err(unreadable)?;
        if !matches!(w.step, Step::Approval(None)) {
            return Ok(false);
        }
        w.step = Step::Approval(Some(approve));
        let record = w.into_record(id.to_owned()).map_err(unreadable)?;
        self.store.put_waiting(record, now).await?;
        Ok(true)
    }

    /// The requests waiting for a payment: their pending ids and Person Servers.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn awaiting_payment(
        &self,
        now: UnixTime,
    ) -> Result<Vec<(String, ServerId)>, StoreError> {
        Ok(self
            .store
            .waiting_on(Awaiting::Payment, now)
            .await?
            .into_iter()
            .map(|r| (r.id, r.ps))
            .collect())
    }

    /// Confirms the payment the waiting request `id` asked for (say, on the payment
    /// processor's notice): its Person Server is billed here from now on, and the
    /// request is decided again at its next poll. `Ok(false)` when `id` awaits no payment.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn confirm_payment(&self, id: &str, now: UnixTime) -> Result<bool, StoreError> {
        match self.store.waiting(id, now).await? {
            Some(r) if r.awaiting == Awaiting::Payment => {
                self.store.bill(&r.ps).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The waiting request `id`, if `ps` asked for it and it has not expired (`404`
    /// otherwise, the same for both).
    async fn waiting_for(
        &self,
        id: &str,
        ps: &ServerId,
        now: UnixTime,
    ) -> Result<Waiting, http::Response<Bytes>> {
        match self.store.waiting(id, now).await {
            Ok(Some(r)) if r.ps == *ps => Waiting::from_record(r).map_err(AsError::into_response),
            Ok(_) => Err(not_found()),
            Err(e) => Err(AsError::from(e).into_response()),
        }
    }

    /// Forgets waiting request `id`, answering `then` (or the store's failure).
    async fn end_waiting(&self, id: &str, then: AsError) -> http::Response<Bytes> {
        match self.store.remove_waiting(id).await {
            Ok(()) => then.into_response(),
            Err(e) => AsError::from(e).into_response(),
        }
    }

    /// Decides waiting request `id` again with what its steps gave; ends it on a refusal.
    /// The request is taken from the store first (one step: of two concurrent polls, one
    /// decides it and the other finds nothing), so one completed step issues one token;
    /// it goes back for a further step, or on a failure of this server's.
    async fn decide_again(
        &self,
        id: &str,
        ps: &ServerId,
        body: &[u8],
        given: Given,
        now: UnixTime,
    ) -> http::Response<Bytes> {
        let taken = match self.store.take_waiting(id, now).await {
            Ok(Some(r)) if r.ps == *ps => r,
            Ok(Some(r)) => {
                // Not this caller's (checked before; a race with nothing): put it back.
                return match self.store.put_waiting(r, now).await {
                    Ok(()) => not_found(),
                    Err(e) => AsError::from(e).into_response(),
                };
            }
            Ok(None) => return not_found(),
            Err(e) => return AsError::from(e).into_response(),
        };
        match self.issue(ps, body, &given, now).await {
            Ok(outcome) => self.respond(outcome, ps, body, given, Some(id), now).await,
            Err(AsError::Server(why)) => match self.store.put_waiting(taken, now).await {
                Ok(()) => AsError::Server(why).into_response(),
                Err(e) => AsError::from(e).into_response(),
            },
            Err(e) => e.into_response(),
        }
    }

    /// The Person Server polls a waiting request (`GET` on its pending URL, signed by the
    /// Person Server that asked; anyone else gets `404`): the same answer until its step
    /// is done, then the request is decided again (and may take a further step at the
    /// same URL).
    async fn poll_waiting(
        &self,
        id: &str,
        parts: &Parts,
        now: UnixTime,
    ) -> Result<http::Response<Bytes>, http::Response<Bytes>> {
        let ps = self.calling_ps(parts, &[], now).await?;
        let w = self.waiting_for(id, &ps, now).await?;
        let mut given = w.given.clone();
        match &w.step {
            Step::Claims(_) => {
                return Err(AsError::InvalidRequest(
                    "this request waits for claims: POST them".to_owned(),
                )
                .into_response());
            }
            Step::Revoked => {
                return Err(self.end_waiting(id, AsError::RevokedResourceToken).await);
            }
            Step::Approval(Some(false)) => {
                return Err(self
                    .end_waiting(id, AsError::Denied("the approver refused".to_owned()))
                    .await);
            }
            Step::Interaction { done: false, .. } | Step::Approval(None) => {
                let mut r = json_response(
                    StatusCode::ACCEPTED,
                    &serde_json::json!({ "status": "interacting" }),
                );
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                return Ok(r);
            }
            Step::Payment { .. } => {
                if !self
                    .store
                    .is_billed(&ps)
                    .await
                    .map_err(|e| AsError::from(e).into_response())?
                {
                    return Ok(self.step_response(id, &w.step));
                }
            }
            Step::Clarification { .. } => return Ok(self.step_response(id, &w.step)),
            Step::Approval(Some(true)) => given.approved = true,
            Step::Interaction { done: true, .. } => {}
        }
        Ok(self.decide_again(id, &ps, &w.body, given, now).await)
    }

    /// The person's page (`GET`, `{url}?code={code}`): what their Person Server asks for,
    /// and an Approve button; the approval (`POST`, a same-origin form) binds that Person
    /// Server here for them. The person must be signed in here
    /// ([`AccessServer::authenticate_people`]; otherwise they are sent to its login first):
    /// the code alone, which the agent also holds, approves nothing.
    async fn interaction_page(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> http::Response<Bytes> {
        let field = |src: &str, name: &str| {
            src.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(str::to_owned)
        };
        let page = |status: StatusCode, html: String| {
            let mut r = http::Response::new(Bytes::from(format!(
                "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Access Server</title></head><body>{html}</body></html>"
            )));
            *r.status_mut() = status;
            let h = r.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            h.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            h.insert("x-frame-options", HeaderValue::from_static("DENY"));
            h.insert(
                "content-security-policy",
                HeaderValue::from_static(
                    "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
                ),
            );
            r
        };
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let post = parts.method == Method::POST;
        let (code, approve) = if post {
            let form = String::from_utf8_lossy(body);
            (
                field(&form, "code"),
                field(&form, "decision").as_deref() == Some("grant"),
            )
        } else {
            (field(parts.uri.query().unwrap_or_default(), "code"), false)
        };
        let no_request = || {
            page(
                StatusCode::NOT_FOUND,
                "<p>This code matches no open request.</p>".to_owned(),
            )
        };
        let Some(code) = code.filter(|c| {
            !c.is_empty() && c.len() <= 16 && c.bytes().all(|b| b.is_ascii_alphanumeric())
        }) else {
            return no_request();
        };
        let Some(people) = self.people.as_ref() else {
            return no_request();
        };
        // A form posted from another site is not the person's decision (CSRF): browsers
        // say where a form came from.
        if post && !self.same_origin(parts) {
            return page(
                StatusCode::FORBIDDEN,
                "<p>This form must be sent from this Access Server's own page.</p>".to_owned(),
            );
        }
        let Some(account) = people.account(parts, now).await else {
            let mut r = page(StatusCode::SEE_OTHER, "<p>Sign in first.</p>".to_owned());
            match HeaderValue::from_str(&people.login_url(&format!("{INTERACT_PATH}?code={code}")))
            {
                Ok(v) => {
                    r.headers_mut().insert(http::header::LOCATION, v);
                }
                Err(e) => return AsError::Server(e.to_string()).into_response(),
            }
            return r;
        };
        // Codes are guessed one request at a time: throttled per account and per client
        // (each code that opens nothing counts against both; a blocked one is refused
        // before any lookup).
        let mut keys = vec![ThrottleKey::new("code/account", &account)];
        keys.extend(
            parts
                .extensions
                .get::<ClientAddr>()
                .map(|c| ThrottleKey::client("code/client", *c)),
        );
        match self.throttle.blocked(&keys, now).await {
            Ok(None) => {}
            Ok(Some(wait)) => {
                let mut r = page(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("<p>Too many wrong codes. Try again in {wait} seconds.</p>"),
                );
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(wait));
                return r;
            }
            Err(e) => return AsError::from(e).into_response(),
        }
        let wrong = || async {
            match self.throttle.failed(&keys, now).await {
                Ok(()) => no_request(),
                Err(e) => AsError::from(e).into_response(),
            }
        };
        let record = match self.store.waiting_by_code(&code, now).await {
            Ok(Some(r)) => r,
            Ok(None) => return wrong().await,
            Err(e) => return AsError::from(e).into_response(),
        };
        let id = record.id.clone();
        let mut w = match Waiting::from_record(record) {
            Ok(w) => w,
            Err(e) => return e.into_response(),
        };
        let Step::Interaction {
            resource,
            sub,
            done,
            ..
        } = &mut w.step
        else {
            return wrong().await;
        };
        if *done {
            return wrong().await;
        }
        let (resource_id, sub) = (resource.clone(), sub.clone());
        if approve {
            *done = true;
            let Ok(resource) = ServerId::parse(&resource_id) else {
                return AsError::Server("a stored resource identifier".to_owned()).into_response();
            };
            if let Err(e) = self.store.bind(&w.ps, &resource, &sub, &account).await {
                return AsError::from(e).into_response();
            }
            if let Err(e) = self.put_waiting(id, w, now).await {
                return e.into_response();
            }
            return page(
                StatusCode::OK,
                "<p>Approved. You can return to your agent.</p>".to_owned(),
            );
        }
        page(
            StatusCode::OK,
            format!(
                "<p>Signed in as {}.</p><h1>Allow your Person Server here?</h1><p>{} asks this Access Server for access to {} on your behalf.</p>\
                 <form method=\"post\" action=\"{INTERACT_PATH}\"><input type=\"hidden\" name=\"code\" value=\"{}\">\
                 <button name=\"decision\" value=\"grant\">Approve</button></form>",
                esc(&account),
                esc(w.ps.as_str()),
                esc(&resource_id),
                esc(&code)
            ),
        )
    }

    /// Whether a form was posted from this server's own pages: `Sec-Fetch-Site:
    /// same-origin`, or an `Origin` that is this server's.
    fn same_origin(&self, parts: &Parts) -> bool {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        header("sec-fetch-site") == Some("same-origin")
            || header("origin").is_some_and(|o| o.trim_end_matches('/') == self.id.as_str())
    }

    /// The Person Server answers a waiting request (`POST` to its pending URL, signed by
    /// the Person Server that asked; anyone else gets `404`): the claims asked for, or,
    /// for a clarification, `action` = `clarification_response` | `updated_request`
    /// (AS-16). The request is decided again at once.
    async fn answer(
        &self,
        id: &str,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Result<http::Response<Bytes>, http::Response<Bytes>> {
        let ps = self.calling_ps(parts, body, now).await?;
        let w = self.waiting_for(id, &ps, now).await?;
        let invalid = |why: &str| AsError::InvalidRequest(why.to_owned()).into_response();
        let mut given = w.given.clone();
        let mut request = w.body.clone();
        match &w.step {
            Step::Claims(_) => {
                let mut claims = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| match v {
                        serde_json::Value::Object(m) => Some(m),
                        _ => None,
                    })
                    .ok_or_else(|| invalid("the claims are a JSON object"))?;
                // The person is `ps` and `sub` of the tokens: a `sub` here is not theirs
                // to set.
                claims.remove("sub");
                given.claims = Some(claims);
            }
            Step::Clarification { .. } => {
                #[derive(Deserialize)]
                struct Action {
                    action: Option<String>,
                    clarification_response: Option<String>,
                    resource_token: Option<String>,
                    presented_token: Option<String>,
                }
                let a = serde_json::from_slice::<Action>(body)
                    .map_err(|_| invalid("the body is a JSON object with an action"))?;
                match a.action.as_deref() {
                    Some("clarification_response") => {
                        let answer = a
                            .clarification_response
                            .filter(|t| !t.trim().is_empty() && t.len() <= 4000)
                            .ok_or_else(|| {
                                invalid("clarification_response must be a non-empty string of at most 4000 bytes")
                            })?;
                        given.clarification = Some(answer);
                    }
                    Some("updated_request") => {
                        let (Some(rt), Some(pt)) = (a.resource_token, a.presented_token) else {
                            return Err(invalid(
                                "updated_request carries resource_token and presented_token",
                            ));
                        };
                        request =
                            Self::updated(&w.body, &rt, &pt).map_err(AsError::into_response)?;
                        given.clarification = None;
                    }
                    Some(_) => return Err(invalid("unknown action")),
                    None => return Err(invalid("the body must name an action")),
                }
                given.rounds = given.rounds.saturating_add(1);
            }
            Step::Revoked => return Err(self.end_waiting(id, AsError::RevokedResourceToken).await),
            _ => return Err(invalid("this request takes polls, not answers")),
        }
        Ok(self.decide_again(id, &ps, &request, given, now).await)
    }

    /// AS-16: the request with an updated resource token and presented token, whose
    /// resource token matches the original's `iss`, `ps`, `sub`, `agent_jkt`,
    /// `mission_s256` and `tenant` (the pair is then verified as any request's).
    fn updated(original: &[u8], rt: &str, pt: &str) -> Result<Vec<u8>, AsError> {
        let claims = |t: &str| {
            aauth_tokens::jws::CompactJws::parse(t)
                .ok()
                .and_then(|j| serde_json::from_slice::<serde_json::Value>(&j.payload).ok())
        };
        let mut body: serde_json::Value = serde_json::from_slice(original)
            .map_err(|e| AsError::Server(format!("the waiting request: {e}")))?;
        let old = body["resource_token"]
            .as_str()
            .and_then(claims)
            .ok_or_else(|| AsError::Server("the waiting request's resource token".to_owned()))?;
        let new = claims(rt).ok_or_else(|| {
            AsError::InvalidResourceToken("the updated resource token is not a JWS".to_owned())
        })?;
        for claim in ["iss", "ps", "sub", "agent_jkt", "mission_s256", "tenant"] {
            if old.get(claim) != new.get(claim) {
                return Err(AsError::InvalidResourceToken(format!(
                    "the updated resource token's {claim} differs from the original's"
                )));
            }
        }
        body["resource_token"] = rt.into();
        body["presented_token"] = pt.into();
        Ok(body.to_string().into_bytes())
    }

    /// The trusted Person Server that signed this request (AS-10), or the refusal.
    async fn calling_ps(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Result<ServerId, http::Response<Bytes>> {
        // AS-10: a Person Server's signature, covering the body.
        let untrusted = || {
            AsError::Untrusted(
                "this Access Server takes requests only from the Person Servers it trusts"
                    .to_owned(),
            )
            .into_response()
        };
        let verified = match self.verifier.verify(parts, body, now).await {
            Ok(v) => v,
            Err(aauth_signing::VerifyError::SignerNotAdmitted { .. }) => return Err(untrusted()),
            Err(error) => {
                return Err(error.to_response(self.verifier.policy()).map(Bytes::from));
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

    async fn issue(
        &self,
        ps: &ServerId,
        body: &[u8],
        given: &Given,
        now: UnixTime,
    ) -> Result<Outcome, AsError> {
        let claims = given.claims.as_ref();
        let b: Body = serde_json::from_slice(body)
            .map_err(|e| AsError::InvalidRequest(format!("body: {e}")))?;
        let missing = |what: &str| AsError::InvalidRequest(format!("{what} is required"));
        let resource_token = b.resource_token.ok_or_else(|| missing("resource_token"))?;
        let agent_token = b.agent_token.ok_or_else(|| missing("agent_token"))?;
        let presented = b
            .presented_token
            .ok_or_else(|| missing("presented_token"))?;

        // Only the resources this server governs (when it says which), decided before any
        // key is fetched for anyone: the resource token's issuer, unverified, only chooses
        // whether to go on (the token is verified below).
        if let Some(governed) = &self.governs {
            let iss = Unverified::<ResourceClaims>::decode(&resource_token, &Validation::new(now))
                .map(|u| u.unverified_claims().iss.clone())
                .map_err(|e| match e {
                    TokenError::Expired { .. } => AsError::ExpiredResourceToken,
                    other => AsError::InvalidResourceToken(other.to_string()),
                })?;
            if !governed.contains(&iss) {
                return Err(AsError::InvalidResourceToken(
                    "this Access Server does not serve that resource".to_owned(),
                ));
            }
        }

        // The agent (AS-11), or the sub-agent it asks for (AS-13).
        let agent: Verified<AgentClaims> = verify(
            &agent_token,
            &Validation::new(now),
            self.issuer_keys.as_ref(),
        )
        .await
        .map_err(|e| {
            unavailable(&e).unwrap_or_else(|| AsError::InvalidAgentToken(e.to_string()))
        })?;
        if agent.claims.parent_agent.is_some() {
            return Err(AsError::InvalidAgentToken(
                "agent_token is the parent's for a sub-agent, never a sub-agent's".to_owned(),
            ));
        }
        let mut cap = agent.claims.exp;
        let bound: PublicKey = match &b.subagent_token {
            Some(t) => {
                let sub: Verified<AgentClaims> =
                    verify(t, &Validation::new(now), self.issuer_keys.as_ref())
                        .await
                        .map_err(|e| {
                            unavailable(&e)
                                .unwrap_or_else(|| AsError::InvalidSubagentToken(e.to_string()))
                        })?;
                if sub.claims.parent_agent.as_ref() != Some(&agent.claims.sub)
                    || sub.claims.iss != agent.claims.iss
                {
                    return Err(AsError::InvalidSubagentToken(
                        "its parent_agent and iss must be the agent's".to_owned(),
                    ));
                }
                cap = cap.min(sub.claims.exp);
                sub.cnf_key
                    .ok_or_else(|| AsError::InvalidSubagentToken("no cnf".to_owned()))?
            }
            None => agent
                .cnf_key
                .clone()
                .ok_or_else(|| AsError::InvalidAgentToken("no cnf".to_owned()))?,
        };

        // AS-12: the resource token, for this Access Server, from the calling PS's person.
        let rt = verify::<ResourceClaims>(
            &resource_token,
            &Validation::new(now).audience(&self.id),
            self.issuer_keys.as_ref(),
        )
        .await
        .map_err(|e| match e {
            TokenError::Expired { .. } => AsError::ExpiredResourceToken,
            other => unavailable(&other)
                .unwrap_or_else(|| AsError::InvalidResourceToken(other.to_string())),
        })?
        .claims;
        if rt.agent_jkt != bound.thumbprint().as_str() {
            return Err(AsError::InvalidResourceToken(
                "agent_jkt is not the agent's (or sub-agent's) key".to_owned(),
            ));
        }
        if rt.ps != *ps {
            return Err(AsError::InvalidResourceToken(
                "ps is not the Person Server asking".to_owned(),
            ));
        }
        // What the store knows of this request, asked at once.
        let standing = self
            .store
            .standing(
                &crate::StandingQuery {
                    ps,
                    resource: &rt.iss,
                    sub: &rt.sub,
                    resource_token_jti: &rt.jti,
                    presented_jti: &rt.presented_jti,
                },
                now,
            )
            .await
            .map_err(AsError::from)?;
        // AS-42: a resource token its resource revoked.
        if standing.resource_token_revoked {
            return Err(AsError::RevokedResourceToken);
        }
        cap = cap.min(self.presented(&presented, &rt, ps, now).await?);
        // AS-41: never again against a person token its Person Server revoked here (the
        // presented token's `jti` is the resource token's `presented_jti`, checked above).
        if standing.presented_token_revoked {
            return Err(AsError::RevokedPresentedToken);
        }

        // AS-14: an upstream token (call chaining), for the intermediary, from this PS.
        if let Some(u) = &b.upstream_token {
            cap = cap.min(self.upstream(u, &agent.claims.iss, ps, now).await?);
        }

        let (is_bound, billed) = (standing.bound, standing.billed);
        let rt_key = (rt.iss.as_str().to_owned(), rt.jti.clone());
        let deferred = |step: Step| Ok(Outcome::Deferred(step, rt_key.clone()));
        let scope = match self.policy.decide(&AccessRequest {
            ps,
            resource: &rt.iss,
            sub: &rt.sub,
            scope: rt.scope.as_deref(),
            agent: (&agent.claims.iss, &agent.claims.sub),
            mission_s256: rt.mission_s256.as_deref(),
            claims,
            pre_established: self.trusted.contains(ps),
            bound: is_bound,
            approved: given.approved,
            clarification: given.clarification.as_deref(),
            billed,
        }) {
            AccessDecision::Grant => rt.scope.clone(),
            AccessDecision::GrantScope(s) => {
                let offered: BTreeSet<&str> =
                    rt.scope.as_deref().unwrap_or_default().split(' ').collect();
                if s.split(' ').any(|v| !offered.contains(v)) {
                    return Err(AsError::Server(
                        "the policy granted a scope the resource token does not name".to_owned(),
                    ));
                }
                Some(s)
            }
            AccessDecision::Deny(reason) => return Err(AsError::Denied(reason)),
            // Asked again for what was given: a refusal, not a loop.
            AccessDecision::RequireClaims(_) if claims.is_some() => {
                return Err(AsError::Denied(
                    "the claims provided do not satisfy this Access Server's policy".to_owned(),
                ));
            }
            AccessDecision::RequireApproval if given.approved => {
                return Err(AsError::Denied(
                    "the policy still asks for approval after it was given".to_owned(),
                ));
            }
            AccessDecision::RequireInteraction if is_bound => {
                return Err(AsError::Denied(
                    "the policy still asks for the person after their approval".to_owned(),
                ));
            }
            AccessDecision::RequirePayment(_) if billed => {
                return Err(AsError::Denied(
                    "the policy still asks for payment from a billed Person Server".to_owned(),
                ));
            }
            AccessDecision::RequireClarification { .. }
                if given.rounds >= MAX_CLARIFICATION_ROUNDS =>
            {
                return Err(AsError::Denied(format!(
                    "no decision after {MAX_CLARIFICATION_ROUNDS} clarification rounds"
                )));
            }
            AccessDecision::RequireApproval => return deferred(Step::Approval(None)),
            AccessDecision::RequireInteraction if self.people.is_none() => {
                return Err(AsError::Server(
                    "the policy asks for the person, and this Access Server has no way to sign people in (authenticate_people)"
                        .to_owned(),
                ));
            }
            AccessDecision::RequireInteraction => {
                let code =
                    random_code().ok_or_else(|| AsError::Server("no randomness".to_owned()))?;
                return deferred(Step::Interaction {
                    code,
                    resource: rt.iss.as_str().to_owned(),
                    sub: rt.sub.clone(),
                    done: false,
                });
            }
            AccessDecision::RequireClaims(names) => {
                // AS-17: never `sub`.
                let names: Vec<String> = names.into_iter().filter(|n| n != "sub").collect();
                return deferred(Step::Claims(names));
            }
            AccessDecision::RequireClarification { question, options } => {
                return deferred(Step::Clarification { question, options });
            }
            AccessDecision::RequirePayment(challenge) => {
                if HeaderValue::from_str(&challenge).is_err() {
                    return Err(AsError::Server(
                        "the policy's payment challenge is not a header value".to_owned(),
                    ));
                }
                return deferred(Step::Payment { challenge });
            }
        };

        // AS-20, AS-21: the auth token.
        let mut builder = AuthTokenBuilder::new(
            AuthIssuer::AccessServer,
            self.id.clone(),
            rt.iss.clone(),
            ps.clone(),
            rt.sub.clone(),
            &bound,
        )
        .lifetime(self.auth_lifetime)
        .not_after(cap);
        if let Some(s) = scope {
            builder = builder.scope(s);
        }
        if let Some(a) = &rt.account {
            builder = builder.account(a.clone());
        }
        if let Some(m) = &rt.mission_s256 {
            builder = builder.mission_s256(m.clone());
        }
        if let Some(t) = &rt.tenant {
            builder = builder.tenant(t.clone());
        }
        // The resource denominates; the PS and then this server may only lower.
        if let Some(offer) = &rt.budget {
            let ceiling = b
                .budget
                .as_ref()
                .filter(|c| c.same_denomination(offer))
                .map_or(offer.amount, |c| c.amount.min(offer.amount));
            builder = builder.budget(offer.with_amount(ceiling));
        }
        let minted = builder
            .sign(
                self.signer.as_ref(),
                &self.kid,
                now,
                &mut aauth_keys::rand::OsRandom,
            )
            .map_err(|e| AsError::Server(e.to_string()))?;
        // AS-44: kept until `exp` plus skew, for the revocation cascade.
        self.store
            .record_issued(
                IssuedRecord::new(
                    minted.jti.clone(),
                    ps.clone(),
                    rt.presented_jti.clone(),
                    rt.iss.clone(),
                    minted.exp,
                ),
                now,
            )
            .await
            .map_err(AsError::from)?;
        Ok(Outcome::Issued(
            serde_json::json!({ "auth_token": minted.token, "expires_in": minted.expires_in(now) }),
        ))
    }

    /// Verifies an auth token with the key its issuer publishes, or with this server's
    /// own key for the auth tokens it issued (a four-party step-up presents one).
    async fn verify_auth(
        &self,
        token: &str,
        v: &Validation<'_>,
    ) -> Result<Verified<AuthClaims>, TokenError> {
        let u = Unverified::<AuthClaims>::decode(token, v)?;
        if u.unverified_claims().iss == self.id {
            u.finish(self.signer.public_key(), v)
        } else {
            verify(token, v, self.issuer_keys.as_ref()).await
        }
    }

    /// The presented token (AS-12): a person or auth token for the resource, bound to
    /// `agent_jkt`, named by `presented_jti`, from the calling PS, for the same person,
    /// mission and tenant. Returns its `exp`.
    async fn presented(
        &self,
        token: &str,
        rt: &ResourceClaims,
        ps: &ServerId,
        now: UnixTime,
    ) -> Result<u64, AsError> {
        let v = Validation::new(now).audience(&rt.iss);
        let map = |e: TokenError| match e {
            TokenError::Expired { .. } => AsError::ExpiredPresentedToken,
            other => unavailable(&other)
                .unwrap_or_else(|| AsError::InvalidPresentedToken(other.to_string())),
        };
        let typ = aauth_tokens::jws::CompactJws::parse(token)
            .ok()
            .and_then(|j| j.header.typ);
        let (issuer_ok, jti, sub, mission, tenant, key, exp) = match typ {
            Some(t) if TokenType::Person.matches_typ(&t) => {
                // Its issuer must be the caller: checked before its keys are fetched.
                let unverified = Unverified::<PersonClaims>::decode(token, &v).map_err(map)?;
                if unverified.unverified_claims().iss != *ps {
                    return Err(AsError::InvalidPresentedToken(
                        "not issued by the Person Server asking".to_owned(),
                    ));
                }
                let p = verify::<PersonClaims>(token, &v, self.issuer_keys.as_ref())
                    .await
                    .map_err(map)?;
                let c = p.claims;
                (
                    c.iss == *ps,
                    c.jti,
                    c.sub,
                    c.mission_s256,
                    c.tenant,
                    p.cnf_key,
                    c.exp,
                )
            }
            Some(t) if TokenType::Auth.matches_typ(&t) => {
                let a = self.verify_auth(token, &v).await.map_err(map)?;
                let c = a.claims;
                (
                    c.ps == *ps && (c.iss == *ps || c.iss == self.id),
                    c.jti,
                    c.sub,
                    c.mission_s256,
                    c.tenant,
                    a.cnf_key,
                    c.exp,
                )
            }
            _ => {
                return Err(AsError::InvalidPresentedToken(
                    "presented_token must be a person token or an auth token".to_owned(),
                ));
            }
        };
        if !issuer_ok {
            return Err(AsError::InvalidPresentedToken(
                "not issued by (or for) the Person Server asking".to_owned(),
            ));
        }
        if key.is_none_or(|k| k.thumbprint().as_str() != rt.agent_jkt) {
            return Err(AsError::InvalidPresentedToken(
                "cnf.jwk is not the key the resource token names".to_owned(),
            ));
        }
        let mismatch = |what: &str| {
            AsError::InvalidResourceToken(format!("{what} differs from the presented token's"))
        };
        if jti != rt.presented_jti {
            return Err(mismatch("presented_jti"));
        }
        if sub != rt.sub {
            return Err(mismatch("sub"));
        }
        if mission != rt.mission_s256 {
            return Err(mismatch("mission_s256"));
        }
        if tenant != rt.tenant {
            return Err(mismatch("tenant"));
        }
        Ok(exp)
    }

    /// An upstream token (AS-14): a person or auth token for the intermediary (`aud` is
    /// the `iss` of its agent token), from the calling PS. Returns its `exp`.
    async fn upstream(
        &self,
        token: &str,
        intermediary: &ServerId,
        ps: &ServerId,
        now: UnixTime,
    ) -> Result<u64, AsError> {
        let v = Validation::new(now).audience(intermediary);
        let map = |e: TokenError| {
            unavailable(&e).unwrap_or_else(|| AsError::InvalidUpstreamToken(e.to_string()))
        };
        let typ = aauth_tokens::jws::CompactJws::parse(token)
            .ok()
            .and_then(|j| j.header.typ);
        let (from_ps, exp) = match typ {
            Some(t) if TokenType::Person.matches_typ(&t) => {
                let c = verify::<PersonClaims>(token, &v, self.issuer_keys.as_ref())
                    .await
                    .map_err(map)?
                    .claims;
                (c.iss == *ps, c.exp)
            }
            Some(t) if TokenType::Auth.matches_typ(&t) => {
                let c = self.verify_auth(token, &v).await.map_err(map)?.claims;
                (c.ps == *ps, c.exp)
            }
            _ => {
                return Err(AsError::InvalidUpstreamToken(
                    "upstream_token must be a person token or an auth token".to_owned(),
                ));
            }
        };
        if !from_ps {
            return Err(AsError::InvalidUpstreamToken(
                "not from the Person Server asking".to_owned(),
            ));
        }
        Ok(exp)
    }

    /// `revocation_endpoint` (AS-40…43): a trusted Person Server revokes a person token it
    /// presented here, and every auth token issued against it is revoked at its resource
    /// (`200` with a `downstream` outcome per resource); a resource revokes a resource token
    /// naming this server. Records are kept by `(issuer, jti)` until `exp` plus skew.
    async fn revocation(&self, parts: &Parts, body: &[u8], now: UnixTime) -> http::Response<Bytes> {
        #[derive(Deserialize)]
        struct Revoke {
            jti: String,
            exp: u64,
        }
        let unsupported = || {
            json_response(
                StatusCode::FORBIDDEN,
                &serde_json::json!({ "error": "unsupported_iss", "detail": "this Access Server takes revocations from the Person Servers it trusts and from resources" }),
            )
        };
        let verified = match self.verifier.verify(parts, body, now).await {
            Ok(v) => v,
            Err(aauth_signing::VerifyError::SignerNotAdmitted { .. }) => return unsupported(),
            Err(error) => {
                return error.to_response(self.verifier.policy()).map(Bytes::from);
            }
        };
        let (caller, person_server) = match &verified.identity {
            KeyIdentity::JwksUri { id, dwk, .. } => match (ServerId::parse(id), dwk.as_str()) {
                (Ok(ps), "aauth-person.json") if self.admits(&ps) => (ps, true),
                (Ok(rs), "aauth-resource.json") => (rs, false),
                _ => return unsupported(),
            },
            _ => return unsupported(),
        };
        let r = match serde_json::from_slice::<Revoke>(body) {
            Ok(r) if !r.jti.is_empty() && r.jti.len() <= 256 => r,
            _ => {
                return AsError::InvalidRequest(
                    "the body is {\"jti\": \"…\", \"exp\": N}".to_owned(),
                )
                .into_response();
            }
        };
        // Person and resource tokens live at most an hour: a record need not outlive
        // that, whatever `exp` says (u64::MAX included).
        let exp = r.exp.min(now.as_secs().saturating_add(3600));
        if let Err(e) = self.store.revoke(caller.as_str(), &r.jti, exp, now).await {
            return AsError::from(e).into_response();
        }
        if !person_server {
            // AS-42: a pending request started for that resource token ends (its next
            // poll is answered `revoked_resource_token`).
            let waiting = match self.store.waiting_with(caller.as_str(), &r.jti).await {
                Ok(w) => w,
                Err(e) => return AsError::from(e).into_response(),
            };
            for record in waiting {
                let id = record.id.clone();
                let ended = match Waiting::from_record(record) {
                    Ok(mut w) => {
                        w.step = Step::Revoked;
                        self.put_waiting(id, w, now).await
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = ended {
                    return e.into_response();
                }
            }
            return json_response(StatusCode::OK, &serde_json::json!({}));
        }
        // The cascade: every auth token issued against that person token, at its resource.
        let cascade = match self.store.issued_against(&caller, &r.jti, now).await {
            Ok(c) => c,
            Err(e) => return AsError::from(e).into_response(),
        };
        let mut outcomes: BTreeMap<String, Option<&'static str>> = BTreeMap::new();
        for issued in cascade {
            let outcome = self
                .revoke_at(&issued.aud, &issued.jti, issued.exp, now)
                .await;
            let entry = outcomes
                .entry(issued.aud.as_str().to_owned())
                .or_insert(None);
            if outcome.is_some() {
                *entry = outcome;
            }
        }
        let downstream: Vec<serde_json::Value> = outcomes
            .into_iter()
            .map(|(recipient, error)| match error {
                Some(e) => serde_json::json!({ "recipient": recipient, "error": e }),
                None => serde_json::json!({ "recipient": recipient }),
            })
            .collect();
        json_response(
            StatusCode::OK,
            &serde_json::json!({ "downstream": downstream }),
        )
    }

    /// Revokes auth token `jti` at `resource`; `None` when done, else the draft's error.
    async fn revoke_at(
        &self,
        resource: &ServerId,
        jti: &str,
        exp: u64,
        now: UnixTime,
    ) -> Option<&'static str> {
        let Some(transport) = &self.notifier else {
            return Some("revocation_unsupported");
        };
        let url = format!("{}/.well-known/aauth-resource.json", resource.as_str());
        let Ok(req) = http::Request::get(url).body(Bytes::new()) else {
            return Some("revocation_unavailable");
        };
        let doc = match transport.send(req).await {
            Ok(r) if r.status() == StatusCode::OK => r,
            _ => return Some("revocation_unavailable"),
        };
        let Ok(doc) =
            <aauth_metadata::ResourceMetadata as aauth_metadata::MetadataDocument>::parse_for(
                doc.body(),
                resource,
            )
        else {
            return Some("revocation_unavailable");
        };
        let Some(endpoint) = doc.revocation_endpoint else {
            return Some("revocation_unsupported");
        };
        let body = serde_json::json!({ "jti": jti, "exp": exp })
            .to_string()
            .into_bytes();
        let Ok(req) = http::Request::post(endpoint.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(())
        else {
            return Some("revocation_unavailable");
        };
        let (mut head, ()) = req.into_parts();
        let scheme = aauth_headers::Scheme::JwksUri {
            id: self.id.as_str().to_owned(),
            dwk: "aauth-access.json".to_owned(),
            kid: self.kid.clone(),
        };
        let Ok(options) = aauth_signing::SignOptions::default()
            .unique_for(&head.method, &mut aauth_keys::rand::OsRandom)
        else {
            return Some("revocation_unavailable");
        };
        if aauth_signing::sign(
            &mut head,
            &body,
            &[aauth_signing::SigningKey::new(
                "sig",
                self.signer.as_ref(),
                &scheme,
            )],
            &options,
            now,
        )
        .is_err()
        {
            return Some("revocation_unavailable");
        }
        match transport
            .send(http::Request::from_parts(head, Bytes::from(body)))
            .await
        {
            Ok(r) if r.status().is_success() => None,
            Ok(r) if r.status() == StatusCode::FORBIDDEN => Some("revocation_unsupported"),
            _ => Some("revocation_unavailable"),
        }
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
        Some(self.handle(parts, body, now).await)
    }
}
