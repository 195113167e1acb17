//! The Person Server's token endpoints, sans-IO: a request's head and body in, the
//! response out.

use std::sync::Arc;

use aauth_keys::rand::OsRandom;
use aauth_keys::time::UnixTime;
use aauth_keys::{JwkSet, PublicKey, Signer, base64url};
use aauth_metadata::{HttpsUrl, PersonServerMetadata, Published};
use aauth_signing::{
    AuthoritySource, JwtResolver, KeyIdentity, ReplayGuard, SchemeResolver, Verifier, VerifyError,
    VerifyPolicy,
};
use aauth_tokens::{
    AgentClaims, AuthClaims, AuthIssuer, AuthTokenBuilder, BoundToken, IssuerKeyResolver,
    PersonClaims, PersonTokenBuilder, ResourceClaims, ServerId, TokenError, TokenType, Unverified,
    Validation, Verified, verify,
};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, request::Parts};
use serde::Deserialize;

use crate::IssuedToken;
use crate::mission::{Check, Constraints, Mission, Proposal, TerminationReason};
use crate::pending::{Pending, PendingRequest, PendingState};
use crate::policy::{ConsentKind, ConsentPolicy, ConsentRequest, Decision};
use crate::store::{AuthTokenRecord, PersonTokenRecord, PsStore};
use crate::{AutoApprove, PsError};
use aauth_metadata::serve::json_response;
use aauth_metadata::throttle::{ClientAddr, MemoryThrottle, Throttle, ThrottleKey};

/// The consent pages' sign-in form target.
pub const LOGIN_PATH: &str = "/interact/login";

/// The most resources a mission proposal may name.
pub const MAX_PROPOSAL_RESOURCES: usize = 32;
/// The most tools a mission proposal may name.
pub const MAX_PROPOSAL_TOOLS: usize = 64;
/// The longest description (of the mission, or of a tool) a proposal may carry.
pub const MAX_PROPOSAL_TEXT: usize = 8 * 1024;
/// The most agents whose recent resources are tracked for the distinct-resource limit.
const MAX_TRACKED_AGENTS: usize = 10_000;

/// The most entries a mission's log takes from the agent's audit records.
pub const MAX_MISSION_LOG: usize = 10_000;

/// The most long polls (`Prefer: wait`) held at once; more are answered at once.
pub const DEFAULT_LONG_POLLS: usize = 256;

/// The most deferred requests one agent may have open at once, by default.
pub const DEFAULT_MAX_PENDING: usize = 16;

/// How many password checks (argon2id) may run at once, by default: each takes tens of
/// milliseconds of a core and 19 MiB; more attempts wait (a little) or are refused.
pub const DEFAULT_CONCURRENT_HASHES: usize = 2;

/// The person-token endpoint's path.
pub const PERSON_TOKEN_PATH: &str = "/person-token";
/// The auth-token endpoint's path.
pub const AUTH_TOKEN_PATH: &str = "/auth-token";
/// The JWKS path.
pub const JWKS_PATH: &str = "/jwks.json";

/// A Person Server. Share it behind an `Arc`.
///
/// ```
/// use std::sync::Arc;
/// use aauth_keys::PrivateKey;
/// use aauth_person_server::{MemoryStore, PersonServer};
/// use aauth_tokens::{ServerId, StaticIssuerKeys};
/// let ps = PersonServer::new(
///     ServerId::parse("https://ps.example")?,
///     Arc::new(PrivateKey::ed25519_from_seed(&[1; 32])),
///     "ps-1",
///     Arc::new(StaticIssuerKeys::new()), // a KeyCache in production
///     Arc::new(MemoryStore::default()),
///     [7; 32],                           // the secret behind directed identifiers
/// )?;
/// assert!(ps.published().respond(&http::Method::GET, "/.well-known/aauth-person.json").is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PersonServer {
    id: ServerId,
    signer: Arc<dyn Signer>,
    kid: String,
    issuer_keys: Arc<dyn IssuerKeyResolver>,
    store: Arc<dyn PsStore>,
    policy: Arc<dyn ConsentPolicy>,
    terms: Arc<MissionTerms>,
    directed: aws_lc_rs::hmac::Key,
    published: Published,
    agents: Verifier,
    person_lifetime: u64,
    auth_lifetime: u64,
    /// Whether the consent pages are served (the channel to the person).
    interaction: bool,
    pending_ttl: u64,
    /// The most deferred requests one agent may have open at once.
    max_pending: usize,
    /// Wrong interaction codes and passwords, counted per account, client and request.
    throttle: Arc<dyn Throttle>,
    /// Bounds concurrent password hashing (argon2id: memory and CPU per attempt).
    hashing: Arc<tokio::sync::Semaphore>,
    /// Bounds the long polls held at once.
    long_polls: Arc<tokio::sync::Semaphore>,
    /// Verifies revocation requests (`jwks_uri` scheme, body covered).
    revocation_verifier: Verifier,
    /// The agent providers whose revocations are accepted.
    revoking_providers: std::collections::BTreeSet<ServerId>,
    /// Tells resources about the person and auth tokens a cascade revoked.
    notifier: Option<Arc<dyn crate::RevocationNotifier>>,
    /// Reads agent providers' metadata to admit interaction callbacks.
    callbacks: Option<Arc<dyn aauth_metadata::Fetch>>,
    /// PS-13: at most `.0` distinct resources per agent within `.1` seconds.
    resource_limit: (usize, u64),
    /// Sends four-party token requests to resources' Access Servers (PS-50…54).
    federation: Option<Arc<dyn aauth_agent::Transport>>,
    /// The most a federation exchange may take before it is `as_unreachable`.
    federation_timeout: std::time::Duration,
    /// What it tells an Access Server that asks for claims.
    claims: Option<Arc<dyn crate::ClaimsSource>>,
    /// Pays an Access Server that answers `402`.
    payments: Option<Arc<dyn crate::PaymentSettler>>,
    /// Answers an Access Server's questions itself, when it can.
    as_questions: Option<Arc<dyn crate::AsQuestions>>,
    /// The most intermediaries a call chain may pass through (M8).
    max_chain: usize,
    /// Serializes a mission ledger's read-allocate-write in this process (two concurrent
    /// grants must not both spend the same remainder).
    ledger_lock: tokio::sync::Mutex<()>,
    /// The resources each agent asked person tokens for, with when it last did.
    asked: std::sync::Mutex<
        std::collections::BTreeMap<
            (ServerId, aauth_tokens::AgentId),
            std::collections::BTreeMap<String, u64>,
        >,
    >,
}

/// What a verified upstream token (call chaining) establishes.
struct Upstream {
    /// The person it names (from this server's record).
    account: String,
    /// Its expiry: nothing issued from it outlives it.
    exp: u64,
    /// Its mission, carried downstream.
    mission_s256: Option<String>,
    /// The intermediaries of the call chain so far, first to last (the last is the one
    /// asking now).
    chain: Vec<ServerId>,
}

/// The default of [`PersonServer::max_chain_depth`]: three intermediaries.
pub const DEFAULT_MAX_CHAIN: usize = 3;

/// The default of [`PersonServer::distinct_resources_per_agent`]: 50 resources an hour.
pub const DEFAULT_RESOURCE_LIMIT: (usize, u64) = (50, 3600);

/// The optional parameters both token endpoints accept (draft -11 §7.2, PS-10), all
/// agent-asserted: `justification`, `platform` and `device` are shown to the person
/// (escaped); `prompt` is honoured; `login_hint`, `tenant` and `domain_hint` are checked
/// for size and otherwise not used by this Person Server (it MAY ignore them).
#[derive(Debug, Default, Deserialize)]
struct Hints {
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    login_hint: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    domain_hint: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    device: Option<String>,
}

/// What `prompt` asks of the consent decision.
#[derive(Debug, Clone, Copy, Default)]
struct Prompt {
    /// `none`: never ask the person (`user_unreachable` if they would be).
    none: bool,
    /// `consent` (or `login`, `select_account`: the person must act): always ask.
    ask: bool,
}

impl Prompt {
    fn apply(self, d: Decision) -> Result<Decision, PsError> {
        match d {
            Decision::AskPerson if self.none => Err(PsError::UserUnreachable(
                "the person must be asked and the request says prompt=none".to_owned(),
            )),
            Decision::Approve if self.ask => Ok(Decision::AskPerson),
            other => Ok(other),
        }
    }
}

impl Hints {
    /// Sizes and forms (`invalid_request` otherwise); the `prompt` asked for.
    fn check(&self) -> Result<Prompt, PsError> {
        let bad = |what: &str| Err(PsError::InvalidRequest(what.to_owned()));
        let printable =
            |s: &str, max: usize| s.chars().count() <= max && !s.chars().any(char::is_control);
        if self.device.as_deref().is_some_and(|d| !printable(d, 64)) {
            return bad("device: at most 64 printable characters");
        }
        if self.platform.as_deref().is_some_and(|p| !printable(p, 64)) {
            return bad("platform: at most 64 printable characters");
        }
        for (name, v) in [
            ("login_hint", &self.login_hint),
            ("tenant", &self.tenant),
            ("domain_hint", &self.domain_hint),
        ] {
            if v.as_deref().is_some_and(|v| !printable(v, 256)) {
                return Err(PsError::InvalidRequest(format!(
                    "{name}: at most 256 printable characters"
                )));
            }
        }
        if self
            .justification
            .as_deref()
            .is_some_and(|j| j.len() > 16 * 1024)
        {
            return bad("justification: at most 16 KiB");
        }
        let mut p = Prompt::default();
        if let Some(values) = &self.prompt {
            let values: Vec<&str> = values.split(' ').collect();
            for v in &values {
                match *v {
                    "none" => p.none = true,
                    "login" | "consent" | "select_account" => p.ask = true,
                    other => {
                        return Err(PsError::InvalidRequest(format!(
                            "prompt: {other:?} is not none, login, consent or select_account"
                        )));
                    }
                }
            }
            if p.none && values.len() > 1 {
                return bad("prompt: none cannot be combined with other values");
            }
        }
        Ok(p)
    }
}

/// Decides the constraints a mission is approved with, from the proposal and the time.
pub type MissionTerms = dyn Fn(&Proposal, u64) -> Constraints + Send + Sync;

/// The default terms: what was proposed (its resources and tools, when it names any), for
/// a day, no sub-agents, no grant budget.
fn default_terms(p: &Proposal, now: u64) -> Constraints {
    Constraints {
        valid_until: Some(now + 86_400),
        resources: (!p.resources.is_empty()).then(|| p.resources.clone()),
        tools: (!p.tools.is_empty()).then(|| p.tools.iter().map(|t| t.name.clone()).collect()),
        ..Constraints::default()
    }
}

/// The revocation endpoint (agent providers revoke agent tokens here).
pub const REVOCATION_PATH: &str = "/revocation";

/// The permission endpoint (governance of actions outside any resource).
pub const PERMISSION_PATH: &str = "/permission";
/// The audit endpoint.
pub const AUDIT_PATH: &str = "/audit";
/// The interaction endpoint (reaching the person through the Person Server).
pub const INTERACTION_PATH: &str = "/interaction";

/// The mission endpoint (`{mission_endpoint}/{s256}` is a mission's own URL).
pub const MISSION_PATH: &str = "/mission";

/// The pending-URL prefix.
pub const PENDING_PATH: &str = "/pending/";
/// The consent page (`{url}?code={code}`).
pub const INTERACT_PATH: &str = "/interact";

/// What a token endpoint answers.
enum Outcome {
    /// `200` with this JSON.
    Issued(serde_json::Value),
    /// A response made already (`202`).
    Respond(http::Response<Bytes>),
}

impl std::fmt::Debug for PersonServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonServer")
            .field("id", &self.id)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Who a token is issued to: the signing agent, or the sub-agent its `subagent_token`
/// names (draft -11 §10.2: the parent asks on the sub-agent's behalf).
struct Acting {
    /// The key the token binds.
    key: PublicKey,
    /// The agent (provider, identifier).
    agent: (ServerId, aauth_tokens::AgentId),
    /// The latest the token may expire: the agent token's, and the sub-agent token's.
    exp: u64,
    /// Call chaining: the upstream token's `exp`. A request deferred for the person
    /// ends (`expired`) when it passes (PS-64).
    ends: Option<u64>,
}

/// A request verified as coming from an agent (not a sub-agent), with its token.
struct AgentRequest {
    key: PublicKey,
    agent: Verified<AgentClaims>,
    /// The agent token as sent (forwarded to an Access Server in four-party access).
    token: String,
}

impl PersonServer {
    /// A Person Server `id` signing with `signer` under `kid`; agent providers' and
    /// resources' keys from `issuer_keys`; records in `store`; directed identifiers
    /// derived with the 32-byte `directed_secret` (keep it stable: it is the persons'
    /// identifiers at every resource). Approves everything by default
    /// ([`PersonServer::policy`]).
    ///
    /// # Errors
    ///
    /// [`PsError::Server`] when the endpoint URLs cannot be formed.
    pub fn new(
        id: ServerId,
        signer: Arc<dyn Signer>,
        kid: &str,
        issuer_keys: Arc<dyn IssuerKeyResolver>,
        store: Arc<dyn PsStore>,
        directed_secret: [u8; 32],
    ) -> Result<Self, PsError> {
        let url = |path: &str| {
            HttpsUrl::parse(&format!("{}{path}", id.as_str()))
                .map_err(|e| PsError::Server(e.to_string()))
        };
        let mut doc = PersonServerMetadata::new(
            id.clone(),
            url(JWKS_PATH)?,
            url(AUTH_TOKEN_PATH)?,
            url(PERSON_TOKEN_PATH)?,
        );
        doc.mission_endpoint = Some(url(MISSION_PATH)?);
        doc.revocation_endpoint = Some(url(REVOCATION_PATH)?);
        doc.permission_endpoint = Some(url(PERMISSION_PATH)?);
        doc.audit_endpoint = Some(url(AUDIT_PATH)?);
        doc.interaction_endpoint = Some(url(INTERACTION_PATH)?);
        let mut jwk = signer.public_key().to_jwk();
        jwk.kid = Some(kid.to_owned());
        let published = Published::new(&doc).jwks(JWKS_PATH, &JwkSet::from_jwks(&[jwk]));
        let revocation_keys = Arc::clone(&issuer_keys);
        // Every endpoint answers only requests addressed to this server, and accepts each
        // state-changing request once (one replay store for all of them).
        let replay = ReplayGuard::in_memory();
        let agents = Verifier::new(
            VerifyPolicy::for_server(&id).accept_schemes(&["jwt"]),
            Arc::new(SchemeResolver::new().jwt(JwtResolver::new(
                Arc::clone(&issuer_keys),
                &[TokenType::Agent],
            ))),
        )
        .replay(replay.clone());
        let revocation_verifier = Verifier::new(
            VerifyPolicy::for_server(&id)
                .accept_schemes(&["jwks_uri"])
                .body_coverage(aauth_signing::BodyCoverage::Required),
            Arc::new(aauth_signing::IssuerJwksUriResolver::new(Arc::clone(
                &revocation_keys,
            ))),
        )
        .replay(replay)
        .gate(revokers(std::collections::BTreeSet::new()));
        Ok(Self {
            id,
            signer,
            kid: kid.to_owned(),
            issuer_keys,
            store,
            policy: Arc::new(AutoApprove),
            terms: Arc::new(default_terms),
            directed: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &directed_secret),
            published,
            agents,
            person_lifetime: aauth_tokens::PERSON_TOKEN_MAX_LIFETIME,
            auth_lifetime: aauth_tokens::AUTH_TOKEN_MAX_LIFETIME,
            interaction: false,
            pending_ttl: 600,
            max_pending: DEFAULT_MAX_PENDING,
            throttle: Arc::new(MemoryThrottle::default()),
            hashing: Arc::new(tokio::sync::Semaphore::new(DEFAULT_CONCURRENT_HASHES)),
            long_polls: Arc::new(tokio::sync::Semaphore::new(DEFAULT_LONG_POLLS)),
            revocation_verifier,
            revoking_providers: std::collections::BTreeSet::new(),
            notifier: None,
            callbacks: None,
            resource_limit: DEFAULT_RESOURCE_LIMIT,
            asked: std::sync::Mutex::default(),
            ledger_lock: tokio::sync::Mutex::new(()),
            federation: None,
            federation_timeout: std::time::Duration::from_secs(10),
            payments: None,
            as_questions: None,
            max_chain: DEFAULT_MAX_CHAIN,
            claims: None,
        })
    }

    /// The authorities this server's endpoints answer to (by default its identifier's
    /// host): several names, or the external authority behind a proxy that rewrites
    /// `Host`. A request signed for any other authority is refused `401
    /// invalid_signature`.
    #[must_use]
    pub fn authority(mut self, source: AuthoritySource) -> Self {
        self.agents = self.agents.authority(source.clone());
        self.revocation_verifier = self.revocation_verifier.authority(source);
        self
    }

    /// Records accepted state-changing requests in `store` (shared by several instances)
    /// instead of this server's own memory.
    #[must_use]
    pub fn replay_store(mut self, store: Arc<dyn aauth_signing::ReplayStore>) -> Self {
        let guard = ReplayGuard::new(store);
        self.agents = self.agents.replay(guard.clone());
        self.revocation_verifier = self.revocation_verifier.replay(guard);
        self
    }

    /// Turns the replay check off. Without it, anyone who sees a signed request within
    /// its window can send it again: a second person token, a second audit record.
    #[must_use]
    pub fn without_replay_check(mut self) -> Self {
        self.agents = self.agents.without_replay();
        self.revocation_verifier = self.revocation_verifier.without_replay();
        self
    }

    /// At most `max` deferred requests open at once per agent (default
    /// [`DEFAULT_MAX_PENDING`]); past it, a request that would be deferred is answered
    /// `429 rate_limited`.
    #[must_use]
    pub fn max_pending_per_agent(mut self, max: usize) -> Self {
        self.max_pending = max.max(1);
        self
    }

    /// Counts wrong interaction codes and passwords in `throttle` (shared by several
    /// instances) instead of this server's memory ([`aauth_metadata::throttle`]).
    #[must_use]
    pub fn throttle(mut self, throttle: Arc<dyn Throttle>) -> Self {
        self.throttle = throttle;
        self
    }

    /// Serves the consent pages ([`INTERACT_PATH`]): when the policy asks the person (or
    /// an unbound agent asks), an agent that declared the `interaction` capability gets a
    /// `202` with a pending URL and an interaction code, and the person signs in, sees the
    /// request, and grants or denies. Deferred requests last `ttl` seconds.
    #[must_use]
    pub fn with_consent_pages(mut self, ttl: u64) -> Self {
        self.interaction = true;
        self.pending_ttl = ttl;
        self
    }

    /// Sets `account`'s password (hashed with argon2id; the hash is what is stored).
    ///
    /// # Errors
    ///
    /// [`PsError::Server`] when hashing or the store fails.
    pub async fn set_password(&self, account: &str, password: &str) -> Result<(), PsError> {
        let phc = crate::web::hash_password(password).map_err(PsError::Server)?;
        self.store
            .set_password_hash(account, &phc)
            .await
            .map_err(PsError::from)
    }

    /// Decides the constraints missions are approved with (default: what was proposed,
    /// for a day, no sub-agents).
    #[must_use]
    pub fn mission_terms(mut self, terms: Arc<MissionTerms>) -> Self {
        self.terms = terms;
        self
    }

    /// Ends mission `s256` (a person or administrator's decision; there is no way back).
    ///
    /// # Errors
    ///
    /// [`PsError::MissionNotFound`], [`PsError::Server`].
    pub async fn terminate_mission(
        &self,
        s256: &str,
        reason: TerminationReason,
        now: UnixTime,
    ) -> Result<(), PsError> {
        let mut m = self
            .store
            .mission(s256)
            .await
            .map_err(PsError::from)?
            .ok_or(PsError::MissionNotFound)?;
        if m.terminated.is_none() {
            m.terminated = Some(reason);
            m.log(
                now.as_secs(),
                "terminated",
                None,
                "permit",
                Some(reason.as_str().to_owned()),
            );
            self.store.put_mission(m).await.map_err(PsError::from)?;
        }
        Ok(())
    }

    /// Accepts agent-token revocations from `providers` (signed by them under the
    /// `jwks_uri` scheme); others get `403 unsupported_iss`.
    #[must_use]
    pub fn accept_revocations_from(
        mut self,
        providers: impl IntoIterator<Item = ServerId>,
    ) -> Self {
        self.revoking_providers.extend(providers);
        // Decided from the Signature-Key member, before any key is fetched: an agent
        // provider not on the list (or a document no revoker publishes) costs nothing.
        let providers: std::collections::BTreeSet<String> = self
            .revoking_providers
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        self.revocation_verifier = self.revocation_verifier.gate(revokers(providers));
        self
    }

    /// Tells resources (through `notifier`) which of the tokens this server issued for
    /// them a cascade revoked (draft -11 §11.12.4: PS → resource).
    #[must_use]
    pub fn notify_revocations(mut self, notifier: Arc<dyn crate::RevocationNotifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Honours the `callback` an agent adds to its interaction link: the consent pages
    /// send the person's browser there when they are done (with `?error=access_denied` or
    /// `interaction_expired` when it did not succeed), if the agent's provider publishes
    /// it as its `callback_endpoint` (or allows localhost); its metadata is read through
    /// `fetch`. Without this, or for any other URL, the pages end with their own
    /// completion page and the agent learns the outcome by polling, as always.
    #[must_use]
    pub fn callbacks(mut self, fetch: Arc<dyn aauth_metadata::Fetch>) -> Self {
        self.callbacks = Some(fetch);
        self
    }

    /// PS-13: refuses person tokens for more than `max` distinct resources per agent
    /// within `window` seconds (`429 rate_limited` with `Retry-After`); resources already
    /// asked for in the window are always admitted. Default [`DEFAULT_RESOURCE_LIMIT`].
    /// Counted in this process.
    #[must_use]
    pub fn distinct_resources_per_agent(mut self, max: usize, window: u64) -> Self {
        self.resource_limit = (max, window);
        self
    }

    /// Admits (and notes) `resource` for `agent` under the PS-13 limit.
    fn admit_resource(
        &self,
        agent: &(ServerId, aauth_tokens::AgentId),
        resource: &ServerId,
        now: u64,
    ) -> Result<(), PsError> {
        let (max, window) = self.resource_limit;
        let mut asked = self
            .asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Bounded: past the bound, the agent asked least recently is forgotten first
        // (one at a time, never a scan of the whole map).
        if asked.len() >= MAX_TRACKED_AGENTS && !asked.contains_key(agent) {
            let quietest = asked
                .iter()
                .take(64)
                .min_by_key(|(_, seen)| seen.values().max().copied().unwrap_or(0))
                .map(|(k, _)| k.clone());
            if let Some(k) = quietest {
                asked.remove(&k);
            }
        }
        let seen = asked.entry(agent.clone()).or_default();
        seen.retain(|_, t| t.saturating_add(window) > now);
        if !seen.contains_key(resource.as_str()) && seen.len() >= max {
            let oldest = seen.values().min().copied().unwrap_or(now);
            return Err(PsError::RateLimited {
                reason: format!("this agent asked for {max} distinct resources within {window} s"),
                retry_after: oldest.saturating_add(window).saturating_sub(now).max(1),
            });
        }
        seen.insert(resource.as_str().to_owned(), now);
        Ok(())
    }

    /// Four-party access (draft -11 §9.1): a resource token whose `aud` is the resource's
    /// Access Server is honoured by asking that Access Server, through `transport`, once
    /// the person's policy approves: signed as this Person Server, with the resource,
    /// agent and presented tokens; the auth token it returns is verified (PS-53) before
    /// the agent gets it. An unreachable or failing Access Server is `502 as_unreachable`;
    /// its refusals are relayed with their status and `error`. Without this, such a
    /// resource token is `invalid_resource_token`.
    #[must_use]
    pub fn federate(mut self, transport: Arc<dyn aauth_agent::Transport>) -> Self {
        self.federation = Some(transport);
        self
    }

    /// Answers an Access Server's `requirement=claims` with what `source` gives for the
    /// person (never `sub`). Without it, the Access Server gets an empty set of claims.
    #[must_use]
    pub fn claims_from(mut self, source: Arc<dyn crate::ClaimsSource>) -> Self {
        self.claims = Some(source);
        self
    }

    /// Pays an Access Server that asks for a billing relationship (`402 Payment
    /// Required`) through `settler`, then polls its pending URL (the agent waits at this
    /// server's). Without it, the `402` is relayed to the agent as a refusal
    /// (`payment_required`).
    #[must_use]
    pub fn settle_payments(mut self, settler: Arc<dyn crate::PaymentSettler>) -> Self {
        self.payments = Some(settler);
        self
    }

    /// The most intermediaries one call chain may pass through ([`DEFAULT_MAX_CHAIN`] by
    /// default): a request whose `upstream_token` would make the chain deeper is
    /// `invalid_upstream_token`, as is one whose chain returns to a resource it passed.
    #[must_use]
    pub fn max_chain_depth(mut self, intermediaries: usize) -> Self {
        self.max_chain = intermediaries.max(1);
        self
    }

    /// Answers an Access Server's questions through `answers` when it gives an answer;
    /// otherwise they go to the agent (if it declared the `clarification` capability).
    #[must_use]
    pub fn answer_as_questions(mut self, answers: Arc<dyn crate::AsQuestions>) -> Self {
        self.as_questions = Some(answers);
        self
    }

    /// How long a federation exchange (the Access Server's metadata and its token) may
    /// take before the agent gets `502 as_unreachable` (default 10 s).
    #[must_use]
    pub fn federation_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.federation_timeout = timeout;
        self
    }

    /// `callback`, if the agent provider `provider` publishes it as its agents'.
    async fn callback_for(&self, provider: &ServerId, callback: Option<&str>) -> Option<String> {
        let fetch = self.callbacks.as_ref()?;
        let callback = callback.filter(|c| !c.is_empty())?;
        let doc = aauth_metadata::discover::<aauth_metadata::AgentProviderMetadata>(
            fetch.as_ref(),
            provider,
        )
        .await
        .ok()?;
        crate::web::callback_allowed(&doc, callback).then(|| callback.to_owned())
    }

    /// Decides consent with `policy`.
    #[must_use]
    pub fn policy(mut self, policy: Arc<dyn ConsentPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// The Person Server's identifier.
    #[must_use]
    pub fn id(&self) -> &ServerId {
        &self.id
    }

    /// The metadata document and JWKS.
    #[must_use]
    pub fn published(&self) -> &Published {
        &self.published
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn PsStore> {
        &self.store
    }

    /// The person's directed identifier at `resource` (PS-20): the same for every agent
    /// and key, different at every resource, unlinkable without the secret.
    #[must_use]
    pub fn directed_sub(&self, account: &str, resource: &ServerId) -> String {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.directed);
        ctx.update(&(account.len() as u64).to_be_bytes());
        ctx.update(account.as_bytes());
        ctx.update(resource.as_str().as_bytes());
        let tag = ctx.sign();
        base64url::encode(&tag.as_ref()[..16])
    }

    /// Answers a request: the published documents, the two token endpoints, pending URLs
    /// and (when enabled) the consent pages; `None` for another path.
    pub async fn handle(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Option<http::Response<Bytes>> {
        let path = parts.uri.path();
        if let Some(resp) = self.published.respond(&parts.method, path) {
            return Some(resp);
        }
        if self.interaction && (path == INTERACT_PATH || path == LOGIN_PATH) {
            return Some(self.web(parts, body, now).await);
        }
        if path == REVOCATION_PATH {
            return Some(self.revocation(parts, body, now).await);
        }
        if [PERMISSION_PATH, AUDIT_PATH, INTERACTION_PATH].contains(&path) {
            if parts.method != Method::POST {
                return Some(PsError::InvalidRequest("POST".to_owned()).into_response());
            }
            let request = match self.verify_agent(parts, body, now).await {
                Ok(r) => r,
                Err(resp) => return Some(resp),
            };
            let result = match path {
                PERMISSION_PATH => self.permission(&request, body, now).await,
                AUDIT_PATH => self.audit(&request, body, now).await,
                _ => self.interaction_request(&request, body, now).await,
            };
            return Some(match result {
                Ok(Outcome::Issued(json)) => json_response(StatusCode::OK, &json),
                Ok(Outcome::Respond(r)) => r,
                Err(e) => e.into_response(),
            });
        }
        if path == MISSION_PATH || path.starts_with("/mission/") {
            let request = match self.verify_agent(parts, body, now).await {
                Ok(r) => r,
                Err(resp) => return Some(resp),
            };
            let result = if path == MISSION_PATH && parts.method == Method::POST {
                self.propose(&request, body, now).await
            } else if let Some(s256) = path.strip_prefix("/mission/") {
                self.mission_url(&request, s256, &parts.method, body, now)
                    .await
            } else {
                Err(PsError::InvalidRequest(
                    "POST a proposal to the mission endpoint".to_owned(),
                ))
            };
            return Some(match result {
                Ok(Outcome::Issued(json)) => json_response(StatusCode::OK, &json),
                Ok(Outcome::Respond(r)) => r,
                Err(e) => e.into_response(),
            });
        }
        if let Some(id) = path.strip_prefix(PENDING_PATH) {
            return Some(self.poll(id, parts, body, now).await);
        }
        if path != PERSON_TOKEN_PATH && path != AUTH_TOKEN_PATH {
            return None;
        }
        if parts.method != Method::POST {
            let mut r = http::Response::new(Bytes::new());
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
            return Some(r);
        }
        let request = match self.verify_agent(parts, body, now).await {
            Ok(r) => r,
            Err(resp) => return Some(resp),
        };
        let result = if path == PERSON_TOKEN_PATH {
            self.person_token(&request, body, now).await
        } else {
            self.auth_token(&request, body, now).await
        };
        Some(match result {
            Ok(Outcome::Issued(json)) => json_response(StatusCode::OK, &json),
            Ok(Outcome::Respond(r)) => r,
            Err(e) => e.into_response(),
        })
    }

    /// The request's signature under its agent token (`401` + `Signature-Error`
    /// otherwise); a sub-agent may not sign here (its parent asks on its behalf).
    async fn verify_agent(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Result<AgentRequest, http::Response<Bytes>> {
        let verified = match self.agents.verify(parts, body, now).await {
            Ok(v) => v,
            Err(error) => {
                return Err(error.to_response(self.agents.policy()).map(Bytes::from));
            }
        };
        let agent = match verified.identity {
            KeyIdentity::Token(t) => match *t {
                BoundToken::Agent(a) => a,
                _ => {
                    return Err(
                        PsError::InvalidRequest("sign with your agent token".to_owned())
                            .into_response(),
                    );
                }
            },
            _ => {
                return Err(
                    PsError::InvalidRequest("sign with your agent token".to_owned())
                        .into_response(),
                );
            }
        };
        // Revoked by its provider? If not, its agent is recorded (for a later cascade).
        let revoked_key = format!("agent {} {}", agent.claims.iss.as_str(), agent.claims.jti);
        match self
            .store
            .see_agent_token(
                (&agent.claims.iss, &agent.claims.jti),
                &agent.claims.sub,
                agent.claims.exp,
                &revoked_key,
                now,
            )
            .await
        {
            Ok(false) => {}
            Ok(true) => {
                return Err(VerifyError::Revoked
                    .to_response(self.agents.policy())
                    .map(Bytes::from));
            }
            Err(e) => return Err(PsError::from(e).into_response()),
        }
        if agent.claims.parent_agent.is_some() {
            return Err(PsError::InvalidSubagentToken(
                "a sub-agent's request is made by its parent, with subagent_token".to_owned(),
            )
            .into_response());
        }
        // The token the signature verified under, as sent.
        let token = parts
            .headers
            .get(aauth_headers::names::SIGNATURE_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| aauth_headers::SignatureKey::parse(v).ok())
            .and_then(|k| match k.get(&verified.label).map(|m| &m.scheme) {
                Some(Ok(aauth_headers::Scheme::Jwt { jwt, .. })) => Some(jwt.clone()),
                _ => None,
            })
            .unwrap_or_default();
        Ok(AgentRequest {
            key: verified.key,
            agent,
            token,
        })
    }

    /// A device cookie for `account`: a random id and its MAC under this server's secret
    /// (nothing stored; it proves only that this browser once signed in to `account`).
    fn new_device(&self, account: &str) -> Option<String> {
        let id = crate::web::random_token().ok()?;
        let tag = self.device_tag(account, &id);
        Some(format!("{id}.{tag}"))
    }

    fn device_tag(&self, account: &str, id: &str) -> String {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.directed);
        for part in ["aauth-device", account, id] {
            ctx.update(part.as_bytes());
            ctx.update(&[0]);
        }
        base64url::encode(ctx.sign().as_ref())
    }

    /// Whether `cookie` is a device cookie this server issued for `account`.
    fn device_is_known(&self, account: &str, cookie: &str) -> bool {
        cookie.split_once('.').is_some_and(|(id, tag)| {
            bool::from(subtle_eq(
                self.device_tag(account, id).as_bytes(),
                tag.as_bytes(),
            ))
        })
    }

    /// Stores a new deferred request, within the agent's share of open ones.
    async fn create_pending(&self, p: Pending, now: UnixTime) -> Result<(), PsError> {
        match self.store.create_pending(p, self.max_pending, now).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(PsError::RateLimited {
                reason: format!(
                    "this agent already has {} requests waiting for the person",
                    self.max_pending
                ),
                retry_after: self.pending_ttl,
            }),
            Err(e) => Err(PsError::from(e)),
        }
    }

    /// Writes a change of `p`, unless another writer changed it first.
    async fn save(&self, p: &mut Pending) -> Result<(), PsError> {
        match self.store.update_pending(p).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(PsError::Conflict(
                "the pending request changed while this was answered: read it again",
            )),
            Err(e) => Err(PsError::from(e)),
        }
    }

    /// Asks the policy; an unbound agent always needs the person (to bind it).
    fn decide(&self, request: &ConsentRequest<'_>, bound: bool) -> Decision {
        if bound {
            self.policy.decide(request)
        } else {
            Decision::AskPerson
        }
    }

    /// Defers `request` until the person answers: `202` with the pending URL and an
    /// interaction code, when this server can reach the person and the agent can relay an
    /// interaction; `user_unreachable` otherwise.
    #[allow(clippy::too_many_arguments, reason = "the request's parts, each once")]
    async fn defer(
        &self,
        r: &AgentRequest,
        acting: &Acting,
        account: Option<String>,
        request: PendingRequest,
        capabilities: &[String],
        hints: &Hints,
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        if !self.interaction {
            return Err(PsError::UserUnreachable(
                "this Person Server has no interaction channel to the person".to_owned(),
            ));
        }
        if !capabilities.iter().any(|c| c == "interaction") {
            return Err(PsError::UserUnreachable(
                "the person must be asked and the agent declared no interaction capability"
                    .to_owned(),
            ));
        }
        let p = Self::pending_for(
            r,
            acting,
            account,
            request,
            capabilities,
            hints,
            now,
            self.pending_ttl,
        )?;
        let resp = self.pending_response(&p, StatusCode::ACCEPTED, "pending", 0);
        self.create_pending(p, now).await?;
        Ok(Outcome::Respond(resp))
    }

    /// Four-party, when the Access Server needs the person (`requirement=interaction`:
    /// the agent gets the Access Server's link unchanged), an approval, a payment's
    /// confirmation, or an answer to its question (passed to the agent as this server's
    /// `requirement=clarification`): the agent polls this server's pending URL, whose
    /// polls poll (or answer) the Access Server's.
    #[allow(clippy::too_many_arguments, reason = "the request's parts, each once")]
    async fn defer_to_access_server(
        &self,
        r: &AgentRequest,
        acting: &Acting,
        account: String,
        request: PendingRequest,
        (location, requirement, question): (String, String, Option<String>),
        capabilities: &[String],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        if requirement.starts_with("requirement=interaction")
            && !capabilities.iter().any(|c| c == "interaction")
        {
            return Err(PsError::UserUnreachable(
                "the Access Server needs the person and the agent declared no interaction capability"
                    .to_owned(),
            ));
        }
        if question.is_some()
            && !capabilities
                .iter()
                .any(|c| c == "clarification" || c == "interaction")
        {
            return Err(PsError::UserUnreachable(
                "the Access Server asks a question and the agent declared neither the clarification nor the interaction capability"
                    .to_owned(),
            ));
        }
        let mut p = Self::pending_for(
            r,
            acting,
            Some(account),
            request,
            capabilities,
            &Hints::default(),
            now,
            self.pending_ttl,
        )?;
        let resp = self.park_at_access_server(&mut p, location, &requirement, question)?;
        self.create_pending(p, now).await?;
        Ok(Outcome::Respond(resp))
    }

    /// Marks `p` as waiting at the Access Server's `location` (with its question for the
    /// agent, if any) and gives the agent's `202`; not stored.
    fn park_at_access_server(
        &self,
        p: &mut Pending,
        location: String,
        requirement: &str,
        question: Option<String>,
    ) -> Result<http::Response<Bytes>, PsError> {
        // Who answers the Access Server's question: the agent, if it can (its answer
        // comes back through the chat); else the person, on the consent page (the agent
        // is given this server's interaction link and code).
        if question.is_some() && !p.clarification && !self.interaction {
            return Err(PsError::UserUnreachable(
                "the Access Server asks a question and neither the agent (no clarification capability) nor the person (no consent pages) can answer it"
                    .to_owned(),
            ));
        }
        if let PendingRequest::AuthToken {
            four_party: Some(f),
            ..
        } = &mut p.request
        {
            f.as_pending = Some(location);
            f.as_question = question.clone().map(|q| (q, None));
        }
        Ok(match question {
            Some(_) => self.pending_response(p, StatusCode::ACCEPTED, "pending", 0),
            None => Self::as_pending_response(p, requirement),
        })
    }

    /// The `202` while the Access Server has the request: its requirement (if the agent
    /// has anything to do), our URL.
    fn as_pending_response(p: &Pending, requirement: &str) -> http::Response<Bytes> {
        let mut r = json_response(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "status": "pending" }),
        );
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("{PENDING_PATH}{}", p.id)) {
            h.insert(http::header::LOCATION, v);
        }
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        if let Ok(v) = HeaderValue::from_str(requirement)
            && !requirement.is_empty()
        {
            h.insert("aauth-requirement", v);
        }
        r
    }

    /// A new pending request (not stored).
    #[allow(clippy::too_many_arguments, reason = "the request's parts, each once")]
    fn pending_for(
        r: &AgentRequest,
        acting: &Acting,
        account: Option<String>,
        request: PendingRequest,
        capabilities: &[String],
        hints: &Hints,
        now: UnixTime,
        ttl: u64,
    ) -> Result<Pending, PsError> {
        Ok(Pending {
            id: crate::web::random_token().map_err(PsError::Server)?,
            code: crate::code::new_code().map_err(PsError::Server)?,
            // Polls come from the signer; the token will bind the acting party's key.
            agent: (r.agent.claims.iss.clone(), r.agent.claims.sub.clone()),
            key: acting.key.to_jwk(),
            jkt: r.key.thumbprint().as_str().to_owned(),
            agent_exp: acting.exp,
            account,
            request,
            state: PendingState::Pending,
            // PS-64: a chained request ends with its upstream token.
            expires: now
                .as_secs()
                .saturating_add(ttl)
                .min(acting.ends.unwrap_or(u64::MAX)),
            attempts: 0,
            clarification: capabilities.iter().any(|c| c == "clarification"),
            chat: Vec::new(),
            revision: 0,
            justification: hints.justification.clone(),
            platform: hints.platform.clone(),
            device: hints.device.clone(),
            version: 0,
        })
    }

    /// A `202` for `p` (or its status while pending): `Location`, `Retry-After`,
    /// `Cache-Control: no-store`, the interaction requirement, `{"status": …}`.
    fn pending_response(
        &self,
        p: &Pending,
        status: StatusCode,
        state: &str,
        retry_after: u64,
    ) -> http::Response<Bytes> {
        let question = p
            .open_as_question()
            .or_else(|| p.open_question())
            .filter(|_| p.clarification);
        let mut body = serde_json::json!({ "status": state });
        if let Some(q) = question {
            body["clarification"] = q.into();
        }
        let mut r = json_response(status, &body);
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("{PENDING_PATH}{}", p.id)) {
            h.insert(http::header::LOCATION, v);
        }
        h.insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after));
        let requirement = aauth_headers::AAuthRequirement::new(if question.is_some() {
            aauth_headers::Requirement::Clarification
        } else {
            aauth_headers::Requirement::Interaction {
                url: format!("{}{INTERACT_PATH}", self.id.as_str()),
                code: crate::code::display(&p.code),
            }
        });
        if let Some(v) = requirement
            .serialize()
            .ok()
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            h.insert(aauth_headers::names::AAUTH_REQUIREMENT, v);
        }
        r
    }

    /// The acting party: the signer, or the sub-agent of a `subagent_token` whose
    /// `parent_agent` is the signer and whose `iss` is the signer's provider.
    async fn acting(
        &self,
        r: &AgentRequest,
        subagent_token: Option<&str>,
        now: UnixTime,
    ) -> Result<Acting, PsError> {
        let Some(token) = subagent_token else {
            return Ok(Acting {
                key: r.key.clone(),
                agent: (r.agent.claims.iss.clone(), r.agent.claims.sub.clone()),
                exp: r.agent.claims.exp,
                ends: None,
            });
        };
        let st = verify::<AgentClaims>(token, &Validation::new(now), self.issuer_keys.as_ref())
            .await
            .map_err(|e| match e {
                TokenError::Expired { .. } => PsError::ExpiredSubagentToken,
                TokenError::KeyResolution(aauth_tokens::ResolveError::Unavailable { reason }) => {
                    PsError::Server(format!("the provider's keys are unavailable: {reason}"))
                }
                other => PsError::InvalidSubagentToken(other.to_string()),
            })?;
        if st.claims.iss != r.agent.claims.iss {
            return Err(PsError::InvalidSubagentToken(
                "its iss is not the signer's agent provider".to_owned(),
            ));
        }
        if st.claims.parent_agent.as_ref() != Some(&r.agent.claims.sub) {
            return Err(PsError::InvalidSubagentToken(
                "its parent_agent is not the agent that signed this request".to_owned(),
            ));
        }
        // Revoked by its provider? A sub-agent token is checked (and recorded, for a later
        // cascade) exactly as the signer's own agent token is.
        let revoked_key = format!("agent {} {}", st.claims.iss.as_str(), st.claims.jti);
        match self
            .store
            .see_agent_token(
                (&st.claims.iss, &st.claims.jti),
                &st.claims.sub,
                st.claims.exp,
                &revoked_key,
                now,
            )
            .await
        {
            Ok(false) => {}
            Ok(true) => return Err(PsError::RevokedSubagentToken),
            Err(e) => return Err(PsError::from(e)),
        }
        let key = st
            .cnf_key
            .ok_or_else(|| PsError::InvalidSubagentToken("it binds no key".to_owned()))?;
        Ok(Acting {
            key,
            agent: (st.claims.iss, st.claims.sub),
            exp: st.claims.exp.min(r.agent.claims.exp),
            ends: None,
        })
    }

    async fn binding_of(&self, r: &AgentRequest) -> Result<Option<String>, PsError> {
        self.store
            .binding(&r.agent.claims.iss, &r.agent.claims.sub)
            .await
            .map_err(PsError::from)
    }

    /// An `upstream_token` (call chaining, PS-61): a person or auth token this Person
    /// Server issued, for the intermediary `intermediary` (its `aud` is the `iss` of the
    /// intermediary's agent token), unexpired, unrevoked, on record; `cnf` is not compared
    /// with the signing key. Auth tokens from an Access Server come with four-party
    /// federation and are refused here.
    async fn upstream(
        &self,
        token: &str,
        intermediary: &ServerId,
        now: UnixTime,
    ) -> Result<Upstream, PsError> {
        let v = Validation::new(now).audience(intermediary);
        let own = self.signer.public_key();
        let map = |e: TokenError| match e {
            TokenError::Expired { .. } => PsError::ExpiredUpstreamToken,
            other => PsError::InvalidUpstreamToken(other.to_string()),
        };
        let typ = aauth_tokens::jws::CompactJws::parse(token)
            .ok()
            .and_then(|j| j.header.typ);
        let (jti, sub, mission_s256, exp, person) = match typ {
            Some(t) if TokenType::Person.matches_typ(&t) => {
                let c = Unverified::<PersonClaims>::decode(token, &v)
                    .and_then(|u| u.finish(own, &v))
                    .map_err(map)?
                    .claims;
                if c.iss != self.id {
                    return Err(PsError::InvalidUpstreamToken(
                        "a person token from another Person Server".to_owned(),
                    ));
                }
                (c.jti, c.sub, c.mission_s256, c.exp, true)
            }
            Some(t) if TokenType::Auth.matches_typ(&t) => {
                let c = Unverified::<AuthClaims>::decode(token, &v)
                    .and_then(|u| u.finish(own, &v))
                    .map_err(map)?
                    .claims;
                if c.iss != self.id || c.ps != self.id {
                    return Err(PsError::InvalidUpstreamToken(
                        "an auth token this Person Server did not issue".to_owned(),
                    ));
                }
                (c.jti, c.sub, c.mission_s256, c.exp, false)
            }
            _ => {
                return Err(PsError::InvalidUpstreamToken(
                    "upstream_token must be a person token or an auth token".to_owned(),
                ));
            }
        };
        let (aud, rec_sub, account) = match self.issued(&jti, person, now).await? {
            IssuedToken::Known { aud, sub, account } => (aud, sub, account),
            IssuedToken::Revoked => return Err(PsError::RevokedUpstreamToken),
            _ => {
                return Err(PsError::InvalidUpstreamToken(
                    "no record of this token".to_owned(),
                ));
            }
        };
        if aud != *intermediary || rec_sub != sub {
            return Err(PsError::InvalidUpstreamToken(
                "the token differs from this Person Server's record of it".to_owned(),
            ));
        }
        // M8: the chain so far, this intermediary last; never deeper than allowed.
        let mut chain = self.store.chain(&jti).await.map_err(PsError::from)?;
        chain.push(intermediary.clone());
        if chain.len() > self.max_chain {
            return Err(PsError::InvalidUpstreamToken(format!(
                "the call chain would be deeper than {} intermediaries",
                self.max_chain
            )));
        }
        Ok(Upstream {
            account,
            exp,
            mission_s256,
            chain,
        })
    }

    /// The call chain a downstream request for `resource` continues: `upstream`'s, unless
    /// `resource` is already in it (a cycle, M8).
    fn chain_to(
        upstream: Option<&Upstream>,
        resource: &ServerId,
    ) -> Result<Vec<ServerId>, PsError> {
        let chain = upstream.map(|u| u.chain.clone()).unwrap_or_default();
        if chain.contains(resource) {
            return Err(PsError::InvalidUpstreamToken(format!(
                "the call chain returns to {resource}"
            )));
        }
        Ok(chain)
    }

    /// The mission `s256` names, if any, active (call chaining: the upstream's mission,
    /// whose agent is not the intermediary): `mission_terminated` once it ended.
    async fn mission_active(
        &self,
        s256: Option<&str>,
        now: UnixTime,
    ) -> Result<Option<Mission>, PsError> {
        let Some(s256) = s256 else {
            return Ok(None);
        };
        let m = self
            .store
            .mission(s256)
            .await
            .map_err(PsError::from)?
            .ok_or_else(|| {
                PsError::InvalidUpstreamToken("its mission is not on record".to_owned())
            })?;
        let m = self.expire(m, now).await?;
        match m.terminated {
            Some(reason) => Err(PsError::MissionTerminated(reason.as_str())),
            None => Ok(Some(m)),
        }
    }

    /// `person_token_endpoint` (draft -11 §7.1, PS-10…13).
    async fn person_token(
        &self,
        r: &AgentRequest,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        #[derive(Deserialize)]
        struct Body {
            resource: String,
            #[serde(default)]
            mission_s256: Option<String>,
            #[serde(default)]
            capabilities: Vec<String>,
            #[serde(default)]
            subagent_token: Option<String>,
            #[serde(default)]
            upstream_token: Option<String>,
            #[serde(flatten)]
            hints: Hints,
        }
        let b: Body = serde_json::from_slice(body)
            .map_err(|e| PsError::InvalidRequest(format!("body: {e}")))?;
        let prompt = b.hints.check()?;
        let resource = ServerId::parse(&b.resource)
            .map_err(|e| PsError::InvalidRequest(format!("resource: {e}")))?;
        let mut acting = self.acting(r, b.subagent_token.as_deref(), now).await?;
        // Call chaining (PS-60, PS-63): an intermediary asks for the person its upstream
        // token names; the mission is the upstream's; no binding is used or made.
        let upstream = match &b.upstream_token {
            Some(t) => {
                if b.mission_s256.is_some() {
                    return Err(PsError::InvalidRequest(
                        "with upstream_token the mission is the upstream token's".to_owned(),
                    ));
                }
                Some(self.upstream(t, &r.agent.claims.iss, now).await?)
            }
            None => None,
        };
        let mission_s256 = match &upstream {
            Some(u) => u.mission_s256.clone(),
            None => b.mission_s256.clone(),
        };
        let mission = match &upstream {
            Some(u) => self.mission_active(u.mission_s256.as_deref(), now).await?,
            None => {
                self.mission_check(
                    b.mission_s256.as_deref(),
                    (&r.agent.claims.iss, &r.agent.claims.sub),
                    "person_token",
                    Check {
                        now: now.as_secs(),
                        resource: &resource,
                        scope: None,
                        subagent: b.subagent_token.is_some(),
                        offer: None,
                        consumed: &[],
                    },
                    false,
                    now,
                )
                .await?
            }
        };
        if let Some(e) = mission.as_ref().and_then(Mission::expires_at) {
            acting.exp = acting.exp.min(e);
        }
        let account = match &upstream {
            Some(u) => {
                acting.exp = acting.exp.min(u.exp);
                acting.ends = Some(u.exp);
                Some(u.account.clone())
            }
            None => self.binding_of(r).await?,
        };
        let decision = prompt.apply(self.decide(
            &ConsentRequest {
                account: account.as_deref().unwrap_or_default(),
                provider: &acting.agent.0,
                agent: &acting.agent.1,
                resource: &resource,
                scope: None,
                kind: ConsentKind::PersonToken,
            },
            account.is_some(),
        ))?;
        let chain = Self::chain_to(upstream.as_ref(), &resource)?;
        // Counted against the agent that signs (a parent's sub-agents share its count:
        // minting sub-agents buys no more resources).
        self.admit_resource(
            &(r.agent.claims.iss.clone(), r.agent.claims.sub.clone()),
            &resource,
            now.as_secs(),
        )?;
        match (decision, account) {
            (Decision::Approve, Some(account)) => self
                .mint_person_in(
                    &chain,
                    &resource,
                    &account,
                    &acting.key,
                    (&acting.agent.0, &acting.agent.1),
                    acting.exp,
                    mission_s256.as_deref(),
                    now,
                )
                .await
                .map(Outcome::Issued),
            (Decision::Deny(reason), _) => Err(PsError::Denied(reason)),
            (_, account) => {
                self.defer(
                    r,
                    &acting,
                    account,
                    PendingRequest::PersonToken {
                        resource,
                        mission_s256,
                        chain,
                    },
                    &b.capabilities,
                    &b.hints,
                    now,
                )
                .await
            }
        }
    }

    /// Mints and records a person token (under `mission` when given), expiring no later
    /// than `cap`.
    #[allow(clippy::too_many_arguments, reason = "the token's inputs, each once")]
    async fn mint_person_in(
        &self,
        chain: &[ServerId],
        resource: &ServerId,
        account: &str,
        key: &PublicKey,
        agent: (&ServerId, &aauth_tokens::AgentId),
        cap: u64,
        mission: Option<&str>,
        now: UnixTime,
    ) -> Result<serde_json::Value, PsError> {
        let sub = self.directed_sub(account, resource);
        let mut builder =
            PersonTokenBuilder::new(self.id.clone(), resource.clone(), sub.clone(), key)
                .lifetime(self.person_lifetime)
                .not_after(cap);
        if let Some(m) = mission {
            builder = builder.mission_s256(m);
        }
        let minted = builder
            .sign(self.signer.as_ref(), &self.kid, now, &mut OsRandom)
            .map_err(|e| PsError::Server(e.to_string()))?;
        self.store
            .record_person_token(PersonTokenRecord {
                jti: minted.jti.clone(),
                aud: resource.clone(),
                sub,
                account: account.to_owned(),
                agent: (agent.0.clone(), agent.1.clone()),
                mission_s256: mission.map(str::to_owned),
                exp: minted.exp,
            })
            .await
            .map_err(PsError::from)?;
        if !chain.is_empty() {
            self.store
                .record_chain(&minted.jti, chain, minted.exp)
                .await
                .map_err(PsError::from)?;
        }
        Ok(
            serde_json::json!({ "person_token": minted.token, "expires_in": minted.expires_in(now) }),
        )
    }

    /// `auth_token_endpoint`, three-party (draft -11 §7.2, PS-30…35).
    async fn auth_token(
        &self,
        r: &AgentRequest,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        #[derive(Deserialize)]
        struct Body {
            resource_token: String,
            presented_token: Option<String>,
            #[serde(default)]
            capabilities: Vec<String>,
            #[serde(default)]
            subagent_token: Option<String>,
            #[serde(default)]
            upstream_token: Option<String>,
            #[serde(flatten)]
            hints: Hints,
        }
        let b: Body = serde_json::from_slice(body)
            .map_err(|e| PsError::InvalidRequest(format!("body: {e}")))?;
        let prompt = b.hints.check()?;
        let presented = b.presented_token.ok_or_else(|| {
            PsError::InvalidRequest("presented_token is required (PS-30)".to_owned())
        })?;
        let mut acting = self.acting(r, b.subagent_token.as_deref(), now).await?;
        let rt = self.resource_token(&b.resource_token, &acting, now).await?;
        let held = self.presented(&presented, &rt, now).await?;
        // Call chaining: the same person as upstream, the upstream's mission, and
        // nothing that outlives the upstream token.
        let upstream = match &b.upstream_token {
            Some(t) => {
                let u = self.upstream(t, &r.agent.claims.iss, now).await?;
                if u.account != held.account {
                    return Err(PsError::InvalidUpstreamToken(
                        "the upstream token is another person's".to_owned(),
                    ));
                }
                if u.mission_s256 != rt.mission_s256 {
                    return Err(PsError::InvalidResourceToken(
                        "mission_s256 differs from the upstream token's".to_owned(),
                    ));
                }
                acting.exp = acting.exp.min(u.exp);
                acting.ends = Some(u.exp);
                Some(u)
            }
            None => None,
        };
        let mission = if upstream.is_some() {
            self.mission_active(rt.mission_s256.as_deref(), now).await?
        } else {
            self.mission_check(
                rt.mission_s256.as_deref(),
                (&r.agent.claims.iss, &r.agent.claims.sub),
                "auth_token",
                Check {
                    now: now.as_secs(),
                    resource: &rt.iss,
                    scope: Some(rt.scope.as_deref().unwrap_or_default()),
                    subagent: b.subagent_token.is_some(),
                    offer: rt.budget.as_ref(),
                    consumed: rt.budget_consumed.as_deref().unwrap_or_default(),
                },
                true,
                now,
            )
            .await?
        };
        if let Some(e) = mission.as_ref().and_then(Mission::expires_at) {
            acting.exp = acting.exp.min(e);
        }
        let chain = Self::chain_to(upstream.as_ref(), &rt.iss)?;
        let request = PendingRequest::AuthToken {
            chain,
            resource: rt.iss.clone(),
            sub: rt.sub.clone(),
            scope: rt.scope.clone(),
            account_claim: rt.account.clone(),
            mission_s256: rt.mission_s256.clone(),
            tenant: rt.tenant.clone(),
            presented_jti: rt.presented_jti.clone(),
            presented_exp: held.exp,
            budget: rt.budget.clone(),
            budget_consumed: rt.budget_consumed.clone().unwrap_or_default(),
            four_party: (rt.aud != self.id).then(|| {
                Box::new(crate::pending::FourParty {
                    access_server: rt.aud.clone(),
                    resource_token: b.resource_token.clone(),
                    agent_token: r.token.clone(),
                    presented_token: presented.clone(),
                    subagent_token: b.subagent_token.clone(),
                    upstream_token: b.upstream_token.clone(),
                    as_pending: None,
                    as_question: None,
                })
            }),
        };
        match prompt.apply(self.decide(
            &ConsentRequest {
                account: &held.account,
                provider: &acting.agent.0,
                agent: &acting.agent.1,
                resource: &rt.iss,
                scope: rt.scope.as_deref(),
                kind: ConsentKind::AuthToken,
            },
            true,
        ))? {
            Decision::Approve => {
                match self
                    .mint_auth(&request, &held.account, &acting.key, acting.exp, now)
                    .await
                {
                    Ok(json) => Ok(Outcome::Issued(json)),
                    Err(PsError::AsInteraction {
                        location,
                        requirement,
                        question,
                    }) => {
                        self.defer_to_access_server(
                            r,
                            &acting,
                            held.account,
                            request,
                            (location, requirement, question),
                            &b.capabilities,
                            now,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                }
            }
            Decision::Deny(reason) => Err(PsError::Denied(reason)),
            Decision::AskPerson => {
                self.defer(
                    r,
                    &acting,
                    Some(held.account),
                    request,
                    &b.capabilities,
                    &b.hints,
                    now,
                )
                .await
            }
        }
    }

    /// `action: updated_request` at a pending auth-token request (draft -11 §7.5.2.2,
    /// PS-30): a new resource token for the same resource, person, key, mission and
    /// tenant, with the presented token it was obtained with; the person is shown the
    /// new request (a revision: approving what they saw before is refused).
    async fn update_request(
        &self,
        p: &mut Pending,
        body: &[u8],
        now: UnixTime,
    ) -> Result<(), PsError> {
        #[derive(Deserialize)]
        struct Update {
            resource_token: Option<String>,
            presented_token: Option<String>,
            justification: Option<String>,
        }
        let u: Update = serde_json::from_slice(body)
            .map_err(|e| PsError::InvalidRequest(format!("body: {e}")))?;
        let token = u.resource_token.ok_or_else(|| {
            PsError::InvalidRequest("an updated request carries a resource_token".to_owned())
        })?;
        let presented = u.presented_token.ok_or_else(|| {
            PsError::InvalidRequest("presented_token is required (PS-30)".to_owned())
        })?;
        let PendingRequest::AuthToken {
            resource,
            sub,
            mission_s256,
            tenant,
            ..
        } = &p.request
        else {
            return Err(PsError::InvalidRequest(
                "only an auth-token request can be updated".to_owned(),
            ));
        };
        let acting = Acting {
            key: PublicKey::from_jwk(&p.key).map_err(|e| PsError::Server(e.to_string()))?,
            agent: p.agent.clone(),
            exp: p.agent_exp,
            ends: None,
        };
        let rt = self.resource_token(&token, &acting, now).await?;
        // Who issues stays who it was: this server (three-party) or the same Access Server
        // (four-party); an update cannot switch the request to another issuer.
        let issuer = match &p.request {
            PendingRequest::AuthToken {
                four_party: Some(f),
                ..
            } => &f.access_server,
            _ => &self.id,
        };
        if rt.iss != *resource
            || rt.aud != *issuer
            || rt.sub != *sub
            || rt.mission_s256 != *mission_s256
            || rt.tenant != *tenant
        {
            return Err(PsError::InvalidResourceToken(
                "an updated request keeps the original's resource, audience, person, mission and tenant"
                    .to_owned(),
            ));
        }
        let held = self.presented(&presented, &rt, now).await?;
        if p.account.as_ref().is_some_and(|a| *a != held.account) {
            return Err(PsError::InvalidPresentedToken(
                "the presented token is another person's".to_owned(),
            ));
        }
        self.mission_check(
            rt.mission_s256.as_deref(),
            (&p.agent.0, &p.agent.1),
            "updated_request",
            Check {
                now: now.as_secs(),
                resource: &rt.iss,
                scope: Some(rt.scope.as_deref().unwrap_or_default()),
                subagent: acting.key.thumbprint().as_str() != p.jkt,
                offer: rt.budget.as_ref(),
                consumed: rt.budget_consumed.as_deref().unwrap_or_default(),
            },
            false,
            now,
        )
        .await?;
        let chain = match &p.request {
            PendingRequest::AuthToken { chain, .. } => chain.clone(),
            _ => Vec::new(),
        };
        p.request = PendingRequest::AuthToken {
            chain,
            resource: rt.iss,
            sub: rt.sub,
            scope: rt.scope,
            account_claim: rt.account,
            mission_s256: rt.mission_s256,
            tenant: rt.tenant,
            presented_jti: rt.presented_jti,
            presented_exp: held.exp,
            four_party: match &p.request {
                PendingRequest::AuthToken {
                    four_party: Some(f),
                    ..
                } => Some(Box::new(crate::pending::FourParty {
                    resource_token: token.clone(),
                    presented_token: presented.clone(),
                    ..(**f).clone()
                })),
                _ => None,
            },
            budget: rt.budget,
            budget_consumed: rt.budget_consumed.unwrap_or_default(),
        };
        p.justification = u
            .justification
            .map(|j| j.chars().take(4000).collect::<String>())
            .filter(|j| !j.trim().is_empty());
        p.revision += 1;
        Ok(())
    }

    async fn mint_auth(
        &self,
        request: &PendingRequest,
        account: &str,
        key: &PublicKey,
        agent_exp: u64,
        now: UnixTime,
    ) -> Result<serde_json::Value, PsError> {
        let PendingRequest::AuthToken {
            resource,
            sub,
            scope,
            account_claim,
            mission_s256,
            tenant,
            presented_jti,
            presented_exp,
            budget,
            budget_consumed,
            four_party,
            chain,
        } = request
        else {
            return Err(PsError::Server("not an auth-token request".to_owned()));
        };
        // The mission's spending ledger: take the resource's consumption reports, then
        // grant at most what remains (draft-hardt-aauth-budgets, the PS's decision).
        let _ledger = self.ledger_lock.lock().await;
        let mut ledger = match mission_s256 {
            Some(s) => self.store.mission(s).await.map_err(PsError::from)?,
            None => None,
        };
        let granted = match &mut ledger {
            Some(m) => {
                m.record_consumption(budget.as_ref(), budget_consumed, resource);
                m.allocate(budget.as_ref(), &[], resource)
                    .map_err(PsError::Violation)?
            }
            None => budget.clone(),
        };
        let cap = agent_exp.min(*presented_exp);
        let (minted, granted) = if let Some(fp) = four_party {
            // Four-party: the resource's Access Server issues, within what the PS allows.
            let f = self
                .federated(
                    fp,
                    (resource, sub, account),
                    scope.as_deref(),
                    key,
                    cap,
                    granted.as_ref(),
                    now,
                )
                .await?;
            self.store
                .record_presentation(presented_jti, &fp.access_server, *presented_exp)
                .await
                .map_err(PsError::from)?;
            (f.0, f.1)
        } else {
            let mut builder = AuthTokenBuilder::new(
                AuthIssuer::PersonServer,
                self.id.clone(),
                resource.clone(),
                self.id.clone(),
                sub.clone(),
                key,
            )
            .lifetime(self.auth_lifetime)
            .not_after(cap);
            if let Some(s) = scope {
                builder = builder.scope(s.clone());
            }
            if let Some(a) = account_claim {
                builder = builder.account(a.clone());
            }
            if let Some(m) = mission_s256 {
                builder = builder.mission_s256(m.clone());
            }
            if let Some(t) = tenant {
                builder = builder.tenant(t.clone());
            }
            if let Some(b) = &granted {
                builder = builder.budget(b.clone());
            }
            let minted = builder
                .sign(self.signer.as_ref(), &self.kid, now, &mut OsRandom)
                .map_err(|e| PsError::Server(e.to_string()))?;
            (minted, granted)
        };
        if let Some(mut m) = ledger {
            if let Some(b) = &granted {
                m.record_allocation(&minted.jti, b.amount, resource);
                m.log(
                    now.as_secs(),
                    "budget",
                    Some(resource),
                    "permit",
                    Some(format!("granted {b}; spent {} so far", m.spent())),
                );
            }
            self.store.put_mission(m).await.map_err(PsError::from)?;
        }
        self.store
            .record_auth_token(AuthTokenRecord {
                jti: minted.jti.clone(),
                aud: resource.clone(),
                sub: sub.clone(),
                account: account.to_owned(),
                presented_jti: presented_jti.clone(),
                exp: minted.exp,
            })
            .await
            .map_err(PsError::from)?;
        if !chain.is_empty() {
            self.store
                .record_chain(&minted.jti, chain, minted.exp)
                .await
                .map_err(PsError::from)?;
        }
        Ok(serde_json::json!({ "auth_token": minted.token, "expires_in": minted.expires_in(now) }))
    }

    /// Asks the resource's Access Server for the auth token (PS-50…54) and verifies what
    /// it returns: `iss` the Access Server, `aud` the resource, `cnf` the agent's key,
    /// `sub` the directed identifier, `scope` within the resource token's, `exp` within
    /// `cap`, a budget within what the PS allowed. Returns the token and its budget.
    #[allow(clippy::too_many_arguments, reason = "the request's parts, each once")]
    async fn federated(
        &self,
        fp: &crate::pending::FourParty,
        person: (&ServerId, &str, &str),
        scope: Option<&str>,
        key: &PublicKey,
        cap: u64,
        allowed: Option<&aauth_tokens::Budget>,
        now: UnixTime,
    ) -> Result<(aauth_tokens::Minted, Option<aauth_tokens::Budget>), PsError> {
        tokio::time::timeout(
            self.federation_timeout,
            self.federated_exchange(fp, person, scope, key, cap, allowed, now),
        )
        .await
        .map_err(|_| {
            PsError::AsUnreachable(format!(
                "no answer within {} ms",
                self.federation_timeout.as_millis()
            ))
        })?
    }

    /// [`PersonServer::federated`] without its deadline.
    #[allow(clippy::too_many_arguments, reason = "the request's parts, each once")]
    async fn federated_exchange(
        &self,
        fp: &crate::pending::FourParty,
        (resource, sub, account): (&ServerId, &str, &str),
        scope: Option<&str>,
        key: &PublicKey,
        cap: u64,
        allowed: Option<&aauth_tokens::Budget>,
        now: UnixTime,
    ) -> Result<(aauth_tokens::Minted, Option<aauth_tokens::Budget>), PsError> {
        let transport = self
            .federation
            .as_ref()
            .ok_or_else(|| PsError::AsUnreachable("no federation configured".to_owned()))?;
        let unreachable = |what: String| PsError::AsUnreachable(what);
        let sign = (self.signer.as_ref(), self.kid.as_str());
        // Already waiting at the Access Server: forward the agent's answer to its
        // question, or poll.
        if let Some(location) = &fp.as_pending {
            let resp = match fp.as_question.as_ref().and_then(|(_, a)| a.as_ref()) {
                Some(answer) => {
                    crate::revocation::signed_post(
                        transport.as_ref(),
                        &self.id,
                        sign.0,
                        sign.1,
                        now,
                        location,
                        &serde_json::json!({
                            "action": "clarification_response",
                            "clarification_response": answer,
                        }),
                    )
                    .await
                }
                None => {
                    crate::revocation::signed_get(
                        transport.as_ref(),
                        &self.id,
                        sign.0,
                        sign.1,
                        now,
                        location,
                    )
                    .await
                }
            }
            .map_err(unreachable)?;
            let resp = self
                .follow(resp, fp, account, Some(location.clone()), now)
                .await?;
            return self
                .as_answer(resp, fp, (resource, sub), scope, key, cap, allowed, now)
                .await;
        }
        let doc: aauth_metadata::AccessServerMetadata = {
            let url = format!(
                "{}/.well-known/{}",
                fp.access_server.as_str(),
                <aauth_metadata::AccessServerMetadata as aauth_metadata::MetadataDocument>::DWK
            );
            let req = http::Request::get(url)
                .body(Bytes::new())
                .map_err(|e| unreachable(e.to_string()))?;
            let resp = transport
                .send(req)
                .await
                .map_err(|e| unreachable(format!("metadata: {e}")))?;
            if resp.status() != StatusCode::OK {
                return Err(unreachable(format!("metadata: {}", resp.status())));
            }
            <aauth_metadata::AccessServerMetadata as aauth_metadata::MetadataDocument>::parse_for(
                resp.body(),
                &fp.access_server,
            )
            .map_err(|e| unreachable(format!("metadata: {e}")))?
        };
        let mut body = serde_json::json!({
            "resource_token": fp.resource_token,
            "agent_token": fp.agent_token,
            "presented_token": fp.presented_token,
        });
        if let Some(t) = &fp.subagent_token {
            body["subagent_token"] = t.clone().into();
        }
        if let Some(t) = &fp.upstream_token {
            body["upstream_token"] = t.clone().into();
        }
        if let Some(b) = allowed {
            body["budget"] = serde_json::to_value(b).map_err(|e| PsError::Server(e.to_string()))?;
        }
        let resp = crate::revocation::signed_post(
            transport.as_ref(),
            &self.id,
            sign.0,
            sign.1,
            now,
            doc.auth_token_endpoint.as_str(),
            &body,
        )
        .await
        .map_err(unreachable)?;
        let resp = self.follow(resp, fp, account, None, now).await?;
        self.as_answer(resp, fp, (resource, sub), scope, key, cap, allowed, now)
            .await
    }

    /// Follows the Access Server's deferred answers (draft -11 §AS Response) until one
    /// is final: claims this server answers itself; a `402` paid through the
    /// [`crate::PaymentSettler`] (or relayed as a refusal without one) and then polled;
    /// a clarification passed to the agent, and an interaction or approval the agent
    /// waits for, as [`PsError::AsInteraction`] (this server's pending URL then polls
    /// the Access Server's). `waiting` is the Access Server's pending URL when this is a
    /// poll of it: a `202` or `402` without anything new is then [`PsError::AsPending`].
    async fn follow(
        &self,
        mut resp: http::Response<Bytes>,
        fp: &crate::pending::FourParty,
        account: &str,
        waiting: Option<String>,
        now: UnixTime,
    ) -> Result<http::Response<Bytes>, PsError> {
        let unreachable = |what: String| PsError::AsUnreachable(what);
        let Some(transport) = self.federation.as_ref() else {
            return Err(unreachable("no federation configured".to_owned()));
        };
        let mut polling = waiting.is_some();
        // Steps compose (payment, then interaction, then claims…): a few per exchange.
        for _ in 0..4 {
            let status = resp.status();
            if status != StatusCode::ACCEPTED && status != StatusCode::PAYMENT_REQUIRED {
                return Ok(resp);
            }
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            // On the Access Server's own origin only; a poll may omit it.
            let location = header("location");
            let target = if location.starts_with('/') && !location.starts_with("//") {
                format!("{}{location}", fp.access_server.as_str())
            } else if location.starts_with(&format!("{}/", fp.access_server.as_str())) {
                location
            } else if let Some(w) = waiting.as_ref().filter(|_| location.is_empty()) {
                w.clone()
            } else {
                return Err(unreachable(
                    "a deferred answer without a Location on the Access Server".to_owned(),
                ));
            };
            let json: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
            if status == StatusCode::PAYMENT_REQUIRED {
                if polling {
                    // Paid; the Access Server has not confirmed it yet.
                    return Err(if waiting.is_some() {
                        PsError::AsPending
                    } else {
                        PsError::AsInteraction {
                            location: target,
                            requirement: String::new(),
                            question: None,
                        }
                    });
                }
                let Some(settler) = self.payments.as_ref() else {
                    return Err(PsError::AsRefused {
                        status: 402,
                        error: "payment_required".to_owned(),
                        detail:
                            "the Access Server requires payment and this Person Server settles none"
                                .to_owned(),
                    });
                };
                settler
                    .settle(&fp.access_server, &header("www-authenticate"))
                    .await
                    .map_err(|why| PsError::AsRefused {
                        status: 402,
                        error: "payment_required".to_owned(),
                        detail: why.chars().take(500).collect(),
                    })?;
                polling = true;
                resp = crate::revocation::signed_get(
                    transport.as_ref(),
                    &self.id,
                    self.signer.as_ref(),
                    &self.kid,
                    now,
                    &target,
                )
                .await
                .map_err(unreachable)?;
                continue;
            }
            let requirement = header("aauth-requirement");
            if requirement.starts_with("requirement=clarification") {
                let question = json["clarification"]
                    .as_str()
                    .filter(|q| !q.trim().is_empty() && q.len() <= 4000)
                    .ok_or_else(|| unreachable("a clarification without a question".to_owned()))?;
                // This server answers what it knows; the rest goes to the agent.
                if let Some(answer) = self
                    .as_questions
                    .as_ref()
                    .and_then(|q| q.answer(account, &fp.access_server, question))
                    .filter(|a| !a.trim().is_empty())
                {
                    resp = crate::revocation::signed_post(
                        transport.as_ref(),
                        &self.id,
                        self.signer.as_ref(),
                        &self.kid,
                        now,
                        &target,
                        &serde_json::json!({
                            "action": "clarification_response",
                            "clarification_response": answer,
                        }),
                    )
                    .await
                    .map_err(unreachable)?;
                    continue;
                }
                return Err(PsError::AsInteraction {
                    location: target,
                    requirement,
                    question: Some(question.to_owned()),
                });
            }
            if requirement.starts_with("requirement=interaction")
                || requirement.starts_with("requirement=approval")
            {
                // The person must go to the Access Server (the agent is given its link),
                // or someone approves out of band (the agent waits): either way the
                // agent polls this server, which polls the Access Server.
                return Err(PsError::AsInteraction {
                    location: target,
                    requirement,
                    question: None,
                });
            }
            if !requirement.starts_with("requirement=claims") {
                if waiting.is_some() {
                    // Still with the person or the approver.
                    return Err(PsError::AsPending);
                }
                return Err(unreachable(format!(
                    "the Access Server's {requirement:?} is not relayed by this Person Server"
                )));
            }
            let names: Vec<String> = json["required_claims"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .filter(|n| n != "sub")
                        .collect()
                })
                .unwrap_or_default();
            let mut claims = self
                .claims
                .as_ref()
                .map(|c| {
                    c.claims(&crate::ClaimsRequest::new(
                        account,
                        &names,
                        &fp.access_server,
                    ))
                })
                .unwrap_or_default();
            claims.remove("sub");
            resp = crate::revocation::signed_post(
                transport.as_ref(),
                &self.id,
                self.signer.as_ref(),
                &self.kid,
                now,
                &target,
                &serde_json::Value::Object(claims),
            )
            .await
            .map_err(unreachable)?;
        }
        Err(unreachable(
            "the Access Server asked for more steps than this Person Server follows".to_owned(),
        ))
    }

    /// The Access Server's final answer: relayed refusal, or its token checked (PS-53).
    #[allow(clippy::too_many_arguments, reason = "the request's parts, each once")]
    async fn as_answer(
        &self,
        resp: http::Response<Bytes>,
        fp: &crate::pending::FourParty,
        (resource, sub): (&ServerId, &str),
        scope: Option<&str>,
        key: &PublicKey,
        cap: u64,
        allowed: Option<&aauth_tokens::Budget>,
        now: UnixTime,
    ) -> Result<(aauth_tokens::Minted, Option<aauth_tokens::Budget>), PsError> {
        let unreachable = |what: String| PsError::AsUnreachable(what);
        let status = resp.status();
        let json: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
        if status.is_client_error() {
            // PS-54: the Access Server's terminal refusal, relayed.
            return Err(PsError::AsRefused {
                status: status.as_u16(),
                error: json["error"]
                    .as_str()
                    .filter(|e| !e.is_empty() && e.len() <= 64)
                    .unwrap_or("denied")
                    .to_owned(),
                detail: json["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(500)
                    .collect(),
            });
        }
        if status != StatusCode::OK {
            return Err(unreachable(format!("the Access Server answered {status}")));
        }
        let token = json["auth_token"]
            .as_str()
            .ok_or_else(|| unreachable("no auth_token in the answer".to_owned()))?;
        // PS-53: never hand the agent a token that fails these.
        let v = Validation::new(now).audience(resource);
        let t = verify::<AuthClaims>(token, &v, self.issuer_keys.as_ref())
            .await
            .map_err(|e| unreachable(format!("its auth token: {e}")))?;
        let c = &t.claims;
        let within = |granted: Option<&str>| {
            let offered: std::collections::BTreeSet<&str> =
                scope.unwrap_or_default().split(' ').collect();
            granted.is_none_or(|g| g.split(' ').all(|v| offered.contains(v)))
        };
        let bad =
            if c.dwk != "aauth-access.json" {
                Some("dwk is not an Access Server's document")
            } else if c.iss != fp.access_server {
                Some("iss is not the Access Server")
            } else if c.ps != self.id {
                Some("ps is not this Person Server")
            } else if t
                .cnf_key
                .as_ref()
                .is_none_or(|k| k.thumbprint() != key.thumbprint())
            {
                Some("cnf.jwk is not the agent's key")
            } else if c.sub != sub {
                Some("sub is not the person's directed identifier")
            } else if !within(c.scope.as_deref()) {
                Some("scope is broader than the resource token's")
            } else if c.exp > cap {
                Some("exp is later than the presented token allows")
            } else if c.budget.as_ref().is_some_and(|b| {
                allowed.is_none_or(|a| !a.same_denomination(b) || b.amount > a.amount)
            }) {
                Some("budget exceeds what this Person Server allowed")
            } else {
                None
            };
        if let Some(why) = bad {
            return Err(unreachable(format!("its auth token: {why}")));
        }
        let budget = c.budget.clone();
        Ok((
            aauth_tokens::Minted::from_parts(token.to_owned(), c.jti.clone(), c.exp),
            budget,
        ))
    }

    /// The resource token (PS-31): verified under its resource's published key, `aud` is
    /// this Person Server (three-party), `agent_jkt` is the signing key (or the
    /// sub-agent's), `ps` is this Person Server.
    async fn resource_token(
        &self,
        token: &str,
        acting: &Acting,
        now: UnixTime,
    ) -> Result<ResourceClaims, PsError> {
        let v = Validation::new(now).audience(&self.id);
        let first = verify::<ResourceClaims>(token, &v, self.issuer_keys.as_ref()).await;
        // Four-party: the resource names its Access Server as `aud` (with `ps` = us).
        let first = match first {
            Err(TokenError::WrongAudience { found, .. }) if self.federation.is_some() => {
                match ServerId::parse(&found) {
                    Ok(access) => {
                        verify::<ResourceClaims>(
                            token,
                            &Validation::new(now).audience(&access),
                            self.issuer_keys.as_ref(),
                        )
                        .await
                    }
                    Err(e) => Err(TokenError::Claim {
                        claim: "aud",
                        reason: e.to_string(),
                    }),
                }
            }
            other => other,
        };
        let rt = first
            .map_err(|e| match e {
                TokenError::Expired { .. } => PsError::ExpiredResourceToken,
                TokenError::KeyResolution(aauth_tokens::ResolveError::Unavailable { reason }) => {
                    PsError::Server(format!("the resource's keys are unavailable: {reason}"))
                }
                other => PsError::InvalidResourceToken(other.to_string()),
            })?
            .claims;
        if rt.agent_jkt != acting.key.thumbprint().as_str() {
            return Err(PsError::InvalidResourceToken(
                "agent_jkt is not the key of the agent (or sub-agent) asking".to_owned(),
            ));
        }
        if rt.ps != self.id {
            return Err(PsError::InvalidResourceToken(format!(
                "ps names {}, not this Person Server",
                rt.ps
            )));
        }
        if self
            .store
            .is_revoked(&resource_revocation_key(&rt.iss, &rt.jti), now)
            .await
            .map_err(PsError::from)?
        {
            return Err(PsError::RevokedResourceToken);
        }
        Ok(rt)
    }

    /// The presented token (PS-31, PS-32): a person or auth token this Person Server
    /// issued, for the resource that issued the resource token (`aud` = its `iss`), bound
    /// to `agent_jkt`, named by `presented_jti`, for the same person, mission and tenant;
    /// recorded, unrevoked, unexpired.
    async fn presented(
        &self,
        token: &str,
        rt: &ResourceClaims,
        now: UnixTime,
    ) -> Result<Held, PsError> {
        let v = Validation::new(now).audience(&rt.iss);
        let own = self.signer.public_key();
        let map = |e: TokenError| match e {
            TokenError::Expired { .. } => PsError::ExpiredPresentedToken,
            other => PsError::InvalidPresentedToken(other.to_string()),
        };
        let is_person = aauth_tokens::jws::CompactJws::parse(token)
            .ok()
            .and_then(|j| j.header.typ)
            .is_some_and(|t| TokenType::Person.matches_typ(&t));
        let (iss_or_ps, sub, jti, mission, tenant, cnf, exp) = if is_person {
            let p: Verified<PersonClaims> = Unverified::decode(token, &v)
                .and_then(|u| u.finish(own, &v))
                .map_err(map)?;
            let c = p.claims;
            (
                c.iss,
                c.sub,
                c.jti,
                c.mission_s256,
                c.tenant,
                c.cnf.jwk,
                c.exp,
            )
        } else {
            let a: Verified<AuthClaims> = Unverified::decode(token, &v)
                .and_then(|u| u.finish(own, &v))
                .map_err(map)?;
            let c = a.claims;
            (
                c.ps,
                c.sub,
                c.jti,
                c.mission_s256,
                c.tenant,
                c.cnf.jwk,
                c.exp,
            )
        };
        let bound = PublicKey::from_jwk(&cnf)
            .map_err(|e| PsError::InvalidPresentedToken(format!("cnf: {e}")))?;
        if bound.thumbprint().as_str() != rt.agent_jkt {
            return Err(PsError::InvalidPresentedToken(
                "cnf.jwk is not the key the resource token names".to_owned(),
            ));
        }
        let mismatch = |what: &str| {
            Err(PsError::InvalidResourceToken(format!(
                "{what} differs from the presented token's"
            )))
        };
        if jti != rt.presented_jti {
            return mismatch("presented_jti");
        }
        if iss_or_ps != rt.ps {
            return mismatch("ps");
        }
        if sub != rt.sub {
            return mismatch("sub");
        }
        if mission != rt.mission_s256 {
            return mismatch("mission_s256");
        }
        if tenant != rt.tenant {
            return mismatch("tenant");
        }
        let account = match self.issued(&jti, is_person, now).await? {
            IssuedToken::Known { account, .. } => account,
            IssuedToken::Revoked => return Err(PsError::RevokedPresentedToken),
            _ if is_person => return Err(PsError::UnknownPersonToken),
            _ => {
                return Err(PsError::InvalidPresentedToken(
                    "no record of this auth token".to_owned(),
                ));
            }
        };
        Ok(Held { account, exp })
    }

    /// What the store knows of a person (`person`) or auth token this server issued.
    async fn issued(&self, jti: &str, person: bool, now: UnixTime) -> Result<IssuedToken, PsError> {
        self.store
            .issued(jti, person, now)
            .await
            .map_err(PsError::from)
    }
}

impl PersonServer {
    /// A pending URL: `GET` polls (signed by the key that made the request; anyone else
    /// gets `404`), `DELETE` cancels, `POST` takes an `action`.
    async fn poll(
        &self,
        id: &str,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> http::Response<Bytes> {
        let r = match self.verify_agent(parts, body, now).await {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let not_found = || {
            json_response(
                StatusCode::NOT_FOUND,
                &serde_json::json!({ "error": "not_found", "detail": "no such pending request" }),
            )
        };
        let mut p = match self.store.pending(id).await {
            Ok(Some(p))
                if p.jkt == r.key.thumbprint().as_str()
                    && p.agent == (r.agent.claims.iss.clone(), r.agent.claims.sub.clone()) =>
            {
                p
            }
            Ok(_) => return not_found(),
            Err(e) => return PsError::from(e).into_response(),
        };
        let gone = || {
            PollError::new(StatusCode::GONE, "invalid_code", "this request has ended").response()
        };
        match parts.method {
            Method::DELETE => {
                p.state = PendingState::Done;
                return match self.save(&mut p).await {
                    Ok(()) => {
                        let mut r = http::Response::new(Bytes::new());
                        *r.status_mut() = StatusCode::NO_CONTENT;
                        r
                    }
                    Err(e) => e.into_response(),
                };
            }
            Method::POST => {
                #[derive(Deserialize)]
                struct Action {
                    action: Option<String>,
                    clarification_response: Option<String>,
                }
                let action = serde_json::from_slice::<Action>(body).ok();
                let detail = match action.as_ref().and_then(|a| a.action.as_deref()) {
                    None => "the body must name an action",
                    Some("clarification_response") => {
                        let answer = action
                            .and_then(|a| a.clarification_response)
                            .filter(|a| !a.trim().is_empty());
                        // The Access Server's question, passed to this agent: its answer is
                        // forwarded at the next poll.
                        if p.clarification
                            && let PendingRequest::AuthToken {
                                four_party: Some(f),
                                ..
                            } = &mut p.request
                            && let Some((_, slot @ None)) = f.as_question.as_mut()
                        {
                            let Some(answer) = answer else {
                                return PsError::InvalidRequest(
                                    "clarification_response must be a non-empty string".to_owned(),
                                )
                                .into_response();
                            };
                            *slot = Some(answer.chars().take(4000).collect());
                            return match self.save(&mut p).await {
                                Ok(()) => {
                                    self.pending_response(&p, StatusCode::ACCEPTED, "pending", 0)
                                }
                                Err(e) => e.into_response(),
                            };
                        }
                        match (answer, p.chat.last_mut()) {
                            (Some(answer), Some(turn)) if turn.answer.is_none() => {
                                turn.answer = Some(answer.chars().take(4000).collect());
                                return match self.save(&mut p).await {
                                    Ok(()) => self.pending_response(
                                        &p,
                                        StatusCode::ACCEPTED,
                                        "interacting",
                                        0,
                                    ),
                                    Err(e) => e.into_response(),
                                };
                            }
                            (None, _) => "clarification_response must be a non-empty string",
                            _ => "no clarification is waiting for an answer",
                        }
                    }
                    Some("updated_request") => {
                        if !matches!(p.state, PendingState::Pending | PendingState::Interacting) {
                            return gone();
                        }
                        return match self.update_request(&mut p, body, now).await {
                            Ok(()) => match self.save(&mut p).await {
                                Ok(()) => {
                                    let state = if p.state == PendingState::Interacting {
                                        "interacting"
                                    } else {
                                        "pending"
                                    };
                                    self.pending_response(&p, StatusCode::ACCEPTED, state, 0)
                                }
                                Err(e) => e.into_response(),
                            },
                            Err(e) => e.into_response(),
                        };
                    }
                    Some(_) => "unknown action",
                };
                return PsError::InvalidRequest(detail.to_owned()).into_response();
            }
            Method::GET => {}
            _ => return not_found(),
        }
        // Four-party, the Access Server has the person: its answer is ours.
        if let PendingRequest::AuthToken {
            four_party: Some(f),
            ..
        } = &p.request
            && f.as_pending.is_some()
            && matches!(p.state, PendingState::Pending | PendingState::Interacting)
        {
            return self.poll_access_server(p, now).await;
        }
        // Long-poll (`Prefer: wait=N`, at most 30 s) while nothing changes.
        let wait = parts
            .headers
            .get("prefer")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| aauth_headers::Prefer::parse(v).ok())
            .and_then(|p| p.wait)
            .map_or(0, |w| w.min(30));
        // Bounded: at most `DEFAULT_LONG_POLLS` held at once (past that a poll is answered
        // at once), each re-reading the store less often the longer it waits.
        let held = if wait > 0 {
            Arc::clone(&self.long_polls).try_acquire_owned().ok()
        } else {
            None
        };
        let wait = if held.is_some() { wait } else { 0 };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
        let mut pause = std::time::Duration::from_millis(200);
        while matches!(p.state, PendingState::Pending | PendingState::Interacting)
            && !(p.clarification && p.open_question().is_some())
            && now.as_secs() < p.expires
            && tokio::time::Instant::now() < deadline
        {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(1));
            match self.store.pending(id).await {
                Ok(Some(q)) => p = q,
                Ok(None) => return not_found(),
                Err(e) => return PsError::from(e).into_response(),
            }
        }
        // Every ending is a compare-and-set: of two concurrent polls one ends the request
        // and answers; the other is told it changed (`409`), and its next poll gets `410`.
        let ended = |mut p: Pending| async move {
            p.state = PendingState::Done;
            self.save(&mut p).await
        };
        match p.state.clone() {
            PendingState::Done => gone(),
            PendingState::Denied if matches!(p.request, PendingRequest::Permission { .. }) => {
                match ended(p).await {
                    Ok(()) => json_response(
                        StatusCode::OK,
                        &serde_json::json!({ "permission": "denied", "reason": "The person denied it." }),
                    ),
                    Err(e) => e.into_response(),
                }
            }
            PendingState::Answered { answer } => match ended(p).await {
                Ok(()) => json_response(StatusCode::OK, &serde_json::json!({ "answer": answer })),
                Err(e) => e.into_response(),
            },
            PendingState::Denied => match ended(p).await {
                Ok(()) => PollError::new(
                    StatusCode::FORBIDDEN,
                    "denied",
                    "the person denied the request",
                )
                .response(),
                Err(e) => e.into_response(),
            },
            // Approved, but what the token would be capped by (the agent token, or the
            // upstream token of a chained request: PS-64) has expired: nothing to issue.
            PendingState::Approved { .. } | PendingState::Delivering { .. }
                if now.as_secs() >= p.agent_exp =>
            {
                match ended(p).await {
                    Ok(()) => PollError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "expired",
                        "the token this request depends on has expired",
                    )
                    .response(),
                    Err(e) => e.into_response(),
                }
            }
            // Another poll holds the delivery: wait for it (it ends the request, or gives
            // the approval back if minting failed).
            PendingState::Delivering { since, .. }
                if now.as_secs() < since.saturating_add(crate::pending::DELIVERY_LEASE) =>
            {
                self.pending_response(&p, StatusCode::ACCEPTED, "pending", 1)
            }
            PendingState::Approved { account } | PendingState::Delivering { account, .. } => {
                // One approval, one token: claim the delivery first (compare-and-set), so
                // that of concurrent polls exactly one mints; a claim whose server stopped
                // mid-way is taken over once its lease has run out.
                p.state = PendingState::Delivering {
                    account: account.clone(),
                    since: now.as_secs(),
                };
                match self.store.update_pending(&mut p).await {
                    Ok(true) => {}
                    Ok(false) => {
                        return self.pending_response(&p, StatusCode::ACCEPTED, "pending", 1);
                    }
                    Err(e) => return PsError::from(e).into_response(),
                }
                let key = match PublicKey::from_jwk(&p.key) {
                    Ok(k) => k,
                    Err(e) => return PsError::Server(e.to_string()).into_response(),
                };
                let minted = match &p.request {
                    PendingRequest::PersonToken {
                        resource,
                        mission_s256,
                        chain,
                    } => {
                        let agent = (p.agent.0.clone(), p.agent.1.clone());
                        self.mint_person_in(
                            chain,
                            resource,
                            &account,
                            &key,
                            (&agent.0, &agent.1),
                            p.agent_exp,
                            mission_s256.as_deref(),
                            now,
                        )
                        .await
                    }
                    PendingRequest::Mission { proposal } => {
                        match serde_json::from_slice::<Proposal>(proposal.as_bytes()) {
                            Ok(prop) => {
                                let agent = (p.agent.0.clone(), p.agent.1.clone());
                                self.approve_mission(
                                    &prop,
                                    &account,
                                    &key,
                                    (&agent.0, &agent.1),
                                    p.agent_exp,
                                    now,
                                )
                                .await
                            }
                            Err(e) => Err(PsError::Server(e.to_string())),
                        }
                    }
                    PendingRequest::Permission { .. } => {
                        Ok(serde_json::json!({ "permission": "granted" }))
                    }
                    PendingRequest::Question { .. } => Err(PsError::Server(
                        "a question is answered, not approved".to_owned(),
                    )),
                    PendingRequest::Completion { s256, summary } => {
                        match self.store.mission(s256).await {
                            Ok(Some(m)) => self
                                .complete(m, summary, now)
                                .await
                                .map(|()| serde_json::json!({ "status": "completed" })),
                            Ok(None) => Err(PsError::MissionNotFound),
                            Err(e) => Err(PsError::from(e)),
                        }
                    }
                    other => {
                        self.mint_auth(other, &account, &key, p.agent_exp, now)
                            .await
                    }
                };
                match minted {
                    // Delivered only once the request is recorded as ended: if that cannot
                    // be written, the token is withheld (the claim's lease runs out and a
                    // later poll mints anew), never delivered twice.
                    Ok(json) => match ended(p).await {
                        Ok(()) => json_response(StatusCode::OK, &json),
                        Err(e) => e.into_response(),
                    },
                    // Approved here; the Access Server needs the person too.
                    Err(PsError::AsInteraction {
                        location,
                        requirement,
                        question,
                    }) => {
                        self.wait_for_access_server(p, location, &requirement, question)
                            .await
                    }
                    // Nothing was delivered: the approval stands for the next poll.
                    Err(e) => {
                        p.state = PendingState::Approved { account };
                        match self.save(&mut p).await {
                            Ok(()) => e.into_response(),
                            Err(se) => se.into_response(),
                        }
                    }
                }
            }
            _ if now.as_secs() >= p.expires => match ended(p).await {
                Ok(()) => PollError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "expired",
                    "the person did not answer in time",
                )
                .response(),
                Err(e) => e.into_response(),
            },
            PendingState::Interacting => {
                self.pending_response(&p, StatusCode::ACCEPTED, "interacting", 5)
            }
            _ => self.pending_response(&p, StatusCode::ACCEPTED, "pending", 5),
        }
    }

    /// Switches an approved four-party request to waiting for the Access Server, and
    /// tells the agent what it needs (a link for the person, a question, or nothing).
    async fn wait_for_access_server(
        &self,
        mut p: Pending,
        location: String,
        requirement: &str,
        question: Option<String>,
    ) -> http::Response<Bytes> {
        let resp = match self.park_at_access_server(&mut p, location, requirement, question) {
            Ok(r) => r,
            Err(e) => {
                p.state = PendingState::Done;
                return match self.save(&mut p).await {
                    Ok(()) => e.into_response(),
                    Err(se) => se.into_response(),
                };
            }
        };
        p.state = PendingState::Pending;
        match self.save(&mut p).await {
            Ok(()) => resp,
            Err(e) => e.into_response(),
        }
    }

    /// A poll of a request the Access Server holds: ask it; its token (checked), its
    /// refusal (relayed, the request ended), or still `202`.
    async fn poll_access_server(&self, mut p: Pending, now: UnixTime) -> http::Response<Bytes> {
        if now.as_secs() >= p.expires {
            p.state = PendingState::Done;
            return match self.save(&mut p).await {
                Ok(()) => PollError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "expired",
                    "the person did not answer in time",
                )
                .response(),
                Err(e) => e.into_response(),
            };
        }
        let key = match PublicKey::from_jwk(&p.key) {
            Ok(k) => k,
            Err(e) => return PsError::Server(e.to_string()).into_response(),
        };
        let Some(account) = p.account.clone() else {
            return PsError::Server("a four-party request without its person".to_owned())
                .into_response();
        };
        // The Access Server's question: forwarded once the agent (at this pending URL) or
        // the person (on the consent page) answered it here.
        let mut forwarding = false;
        if let PendingRequest::AuthToken {
            four_party: Some(f),
            ..
        } = &p.request
            && let Some((_, answer)) = &f.as_question
        {
            if answer.is_none() {
                return self.pending_response(&p, StatusCode::ACCEPTED, "pending", 1);
            }
            forwarding = true;
        }
        let outcome = self
            .mint_auth(&p.request, &account, &key, p.agent_exp, now)
            .await;
        if forwarding
            && let PendingRequest::AuthToken {
                four_party: Some(f),
                ..
            } = &mut p.request
        {
            f.as_question = None;
        }
        match outcome {
            Ok(json) => {
                p.state = PendingState::Done;
                match self.save(&mut p).await {
                    Ok(()) => json_response(StatusCode::OK, &json),
                    Err(e) => e.into_response(),
                }
            }
            // Something new for the agent (a link, a question): tell it.
            Err(PsError::AsInteraction {
                location,
                requirement,
                question,
            }) if question.is_some() || !requirement.is_empty() => {
                self.wait_for_access_server(p, location, &requirement, question)
                    .await
            }
            Err(PsError::AsPending | PsError::AsInteraction { .. }) => {
                if forwarding && let Err(e) = self.save(&mut p).await {
                    return e.into_response();
                }
                let mut r = json_response(
                    StatusCode::ACCEPTED,
                    &serde_json::json!({ "status": "interacting" }),
                );
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                if let Ok(v) = HeaderValue::from_str(&format!("{PENDING_PATH}{}", p.id)) {
                    r.headers_mut().insert(http::header::LOCATION, v);
                }
                r
            }
            Err(e) => {
                p.state = PendingState::Done;
                match self.save(&mut p).await {
                    Ok(()) => e.into_response(),
                    Err(se) => se.into_response(),
                }
            }
        }
    }

    /// The consent pages.
    async fn web(&self, parts: &Parts, body: &[u8], now: UnixTime) -> http::Response<Bytes> {
        use crate::web::{self, page};
        let query = web::form(parts.uri.query().unwrap_or_default().as_bytes());
        let posted = web::form(body);
        let session_cookie = web::cookie(&parts.headers, web::SESSION_COOKIE);
        let session = match &session_cookie {
            Some(c) => match self.store.session(&web::session_key(c), now).await {
                Ok(s) => s,
                Err(e) => return PsError::from(e).into_response(),
            },
            None => None,
        };
        let error_page = |status, msg: &str| {
            page(
                status,
                "Person Server",
                &format!("<p>{}</p>", web::esc(msg)),
            )
        };
        // A pending request another writer changed first (the agent updated it, another
        // tab answered): nothing written, the person looks again.
        let failed = |e: PsError| match e {
            PsError::Conflict(_) => error_page(
                StatusCode::CONFLICT,
                "This request changed while you were answering it. Open the link again.",
            ),
            e => e.into_response(),
        };
        let client = parts.extensions.get::<ClientAddr>().copied();
        // Guessing a code is throttled per account and per client (each wrong code counts
        // against both, and a blocked one is refused before any lookup); guessing a
        // request's code from another account also ends that request (`attempts`).
        let code_keys = |account: &str| {
            let mut keys = vec![ThrottleKey::new("code/account", account)];
            keys.extend(client.map(|c| ThrottleKey::client("code/client", c)));
            keys
        };
        let too_many = |wait: u64, what: &str| {
            let mut r = error_page(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many {what}. Try again in {wait} seconds."),
            );
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(wait));
            r
        };
        match (parts.method.clone(), parts.uri.path()) {
            (Method::GET, INTERACT_PATH) => {
                let code = web::field(&query, "code").unwrap_or_default().to_owned();
                let Some(mut s) = session else {
                    // Sign in first; the login form is protected by a double-submit token.
                    let csrf = match web::random_token() {
                        Ok(t) => t,
                        Err(e) => return PsError::Server(e).into_response(),
                    };
                    let mut r = page(
                        StatusCode::OK,
                        "Sign in to approve an agent's request",
                        &web::login_form(&code, &csrf, web::field(&query, "callback"), None),
                    );
                    if let Some(v) = web::set_cookie(web::CSRF_COOKIE, &csrf, 600) {
                        r.headers_mut().append(http::header::SET_COOKIE, v);
                    }
                    return r;
                };
                if s.bad_codes >= web::MAX_BAD_CODES {
                    return error_page(
                        StatusCode::TOO_MANY_REQUESTS,
                        "Too many wrong codes. Sign in again later.",
                    );
                }
                let keys = code_keys(&s.account);
                match self.throttle.blocked(&keys, now).await {
                    Ok(None) => {}
                    Ok(Some(wait)) => return too_many(wait, "wrong codes"),
                    Err(e) => return PsError::from(e).into_response(),
                }
                let found = match crate::code::normalize(&code) {
                    Some(c) => match self.store.pending_by_code(&c).await {
                        Ok(p) => p,
                        Err(e) => return PsError::from(e).into_response(),
                    },
                    None => None,
                };
                // The person came too late: back to the agent, if it gave a callback.
                let callback = web::field(&query, "callback");
                if let Some(p) = found.as_ref().filter(|p| {
                    matches!(p.state, PendingState::Pending | PendingState::Interacting)
                        && now.as_secs() >= p.expires
                        && p.account.as_ref().is_none_or(|a| *a == s.account)
                }) && let Some(cb) = self.callback_for(&p.agent.0, callback).await
                {
                    return web::see_other(&web::with_error(&cb, "interaction_expired"));
                }
                let Some(mut p) = found.filter(|p| {
                    matches!(p.state, PendingState::Pending | PendingState::Interacting)
                        && now.as_secs() < p.expires
                        && p.attempts < web::MAX_ATTEMPTS
                }) else {
                    s.bad_codes = s.bad_codes.saturating_add(1);
                    if let Err(e) = self.throttle.failed(&keys, now).await {
                        return PsError::from(e).into_response();
                    }
                    if let Some(c) = &session_cookie
                        && let Err(e) = self.store.put_session(&web::session_key(c), s).await
                    {
                        return PsError::from(e).into_response();
                    }
                    return error_page(
                        StatusCode::NOT_FOUND,
                        "This code matches no open request. It may have expired or been used.",
                    );
                };
                if p.account.as_ref().is_some_and(|a| *a != s.account) {
                    // Someone else holds this request's code: after MAX_ATTEMPTS such
                    // tries the request ends, and the agent's next poll gets 410
                    // invalid_code (a wrong code names no request; those are limited per
                    // session above).
                    p.attempts = p.attempts.saturating_add(1);
                    if p.attempts >= web::MAX_ATTEMPTS {
                        p.state = PendingState::Done;
                    }
                    if let Err(e) = self.throttle.failed(&keys, now).await {
                        return PsError::from(e).into_response();
                    }
                    if let Err(e) = self.save(&mut p).await {
                        return failed(e);
                    }
                    return error_page(
                        StatusCode::NOT_FOUND,
                        "This code matches no open request. It may have expired or been used.",
                    );
                }
                p.state = PendingState::Interacting;
                let callback = self.callback_for(&p.agent.0, callback).await;
                let body = self.consent_page(&p, &s.csrf, callback.as_deref());
                if let Err(e) = self.save(&mut p).await {
                    return failed(e);
                }
                page(StatusCode::OK, "An agent asks for your approval", &body)
            }
            (Method::POST, LOGIN_PATH) => {
                let csrf_cookie = web::cookie(&parts.headers, web::CSRF_COOKIE);
                let (Some(csrf), Some(form_csrf)) = (csrf_cookie, web::field(&posted, "csrf"))
                else {
                    return error_page(
                        StatusCode::FORBIDDEN,
                        "The form expired. Open the link again.",
                    );
                };
                if !bool::from(subtle_eq(csrf.as_bytes(), form_csrf.as_bytes())) {
                    return error_page(
                        StatusCode::FORBIDDEN,
                        "The form expired. Open the link again.",
                    );
                }
                let code = web::field(&posted, "code").unwrap_or_default();
                let account = web::field(&posted, "username").unwrap_or_default();
                let password = web::field(&posted, "password").unwrap_or_default();
                if account.len() > web::MAX_ACCOUNT_LEN || password.len() > web::MAX_PASSWORD_LEN {
                    return error_page(
                        StatusCode::BAD_REQUEST,
                        "That account or password is too long.",
                    );
                }
                // Guesses are throttled per client and per account, refused before any hash
                // is computed. A browser that signed in to this account before (its device
                // cookie) is exempt from the account's count, so guessing from elsewhere
                // never locks the person out of their own browser.
                let known_device = web::cookie(&parts.headers, web::DEVICE_COOKIE)
                    .is_some_and(|d| self.device_is_known(account, &d));
                let mut keys: Vec<ThrottleKey> = client
                    .map(|c| ThrottleKey::client("password/client", c))
                    .into_iter()
                    .collect();
                if !known_device {
                    keys.push(ThrottleKey::new("password/account", account));
                }
                match self.throttle.blocked(&keys, now).await {
                    Ok(None) => {}
                    Ok(Some(wait)) => return too_many(wait, "failed sign-ins"),
                    Err(e) => return PsError::from(e).into_response(),
                }
                let phc = match self.store.password_hash(account).await {
                    Ok(h) => h,
                    Err(e) => return PsError::from(e).into_response(),
                };
                // The same work whether or not the account exists, a bounded number at a
                // time, off the threads that answer requests.
                let Ok(Ok(permit)) = tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    Arc::clone(&self.hashing).acquire_owned(),
                )
                .await
                else {
                    let mut r = error_page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Too many sign-ins at once. Try again in a moment.",
                    );
                    r.headers_mut()
                        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                    return r;
                };
                let (stored, given) = (
                    phc.clone().unwrap_or_else(|| web::dummy_hash().to_owned()),
                    password.to_owned(),
                );
                let checked = tokio::task::spawn_blocking(move || {
                    let ok = web::check_password(&stored, &given);
                    drop(permit);
                    ok
                })
                .await;
                let ok = matches!(checked, Ok(true)) && phc.is_some();
                if ok {
                    if let Err(e) = self.throttle.succeeded(&keys).await {
                        return PsError::from(e).into_response();
                    }
                } else if let Err(e) = self.throttle.failed(&keys, now).await {
                    return PsError::from(e).into_response();
                }
                if !ok {
                    return page(
                        StatusCode::UNAUTHORIZED,
                        "Sign in to approve an agent's request",
                        &web::login_form(
                            code,
                            &csrf,
                            web::field(&posted, "callback"),
                            Some("Wrong account or password."),
                        ),
                    );
                }
                let (cookie, csrf) = match (web::random_token(), web::random_token()) {
                    (Ok(a), Ok(b)) => (a, b),
                    (Err(e), _) | (_, Err(e)) => return PsError::Server(e).into_response(),
                };
                let session = crate::pending::WebSession {
                    account: account.to_owned(),
                    csrf,
                    expires: now.as_secs().saturating_add(3600),
                    bad_codes: 0,
                };
                if let Err(e) = self
                    .store
                    .put_session(&web::session_key(&cookie), session)
                    .await
                {
                    return PsError::from(e).into_response();
                }
                let mut target = String::from(INTERACT_PATH);
                target.push_str("?code=");
                target.extend(code.chars().filter(char::is_ascii_alphanumeric).take(9));
                if let Some(cb) = web::field(&posted, "callback").filter(|c| !c.is_empty()) {
                    target.push_str("&callback=");
                    target.push_str(&web::query_escape(cb));
                }
                let mut r = web::see_other(&target);
                if let Some(v) = web::set_cookie(web::SESSION_COOKIE, &cookie, 3600) {
                    r.headers_mut().append(http::header::SET_COOKIE, v);
                }
                // This browser is now known for this account (see the throttle above).
                if let Some(v) = self
                    .new_device(account)
                    .and_then(|d| web::set_cookie(web::DEVICE_COOKIE, &d, web::DEVICE_COOKIE_AGE))
                {
                    r.headers_mut().append(http::header::SET_COOKIE, v);
                }
                r
            }
            (Method::POST, INTERACT_PATH) => {
                let Some(s) = session else {
                    return error_page(StatusCode::UNAUTHORIZED, "Sign in first.");
                };
                let form_csrf = web::field(&posted, "csrf").unwrap_or_default();
                if !bool::from(subtle_eq(s.csrf.as_bytes(), form_csrf.as_bytes())) {
                    return error_page(
                        StatusCode::FORBIDDEN,
                        "The form expired. Open the link again.",
                    );
                }
                // The form names its request by code: a decision is a guess like any other
                // (a matching code would approve someone else's request and bind its
                // agent here), throttled the same way.
                let keys = code_keys(&s.account);
                match self.throttle.blocked(&keys, now).await {
                    Ok(None) => {}
                    Ok(Some(wait)) => return too_many(wait, "wrong codes"),
                    Err(e) => return PsError::from(e).into_response(),
                }
                let found =
                    match crate::code::normalize(web::field(&posted, "code").unwrap_or_default()) {
                        Some(c) => match self.store.pending_by_code(&c).await {
                            Ok(p) => p,
                            Err(e) => return PsError::from(e).into_response(),
                        },
                        None => None,
                    };
                if found.is_none()
                    && let Err(e) = self.throttle.failed(&keys, now).await
                {
                    return PsError::from(e).into_response();
                }
                let Some(mut p) = found.filter(|p| {
                    matches!(p.state, PendingState::Pending | PendingState::Interacting)
                        && now.as_secs() < p.expires
                        && p.account.as_ref().is_none_or(|a| *a == s.account)
                }) else {
                    return error_page(
                        StatusCode::GONE,
                        "This request has already been answered or has expired.",
                    );
                };
                if web::field(&posted, "decision") == Some("ask") {
                    let question = web::field(&posted, "question").unwrap_or_default().trim();
                    if !p.clarification
                        || p.open_question().is_some()
                        || p.chat.len() >= crate::pending::MAX_CLARIFICATIONS
                        || question.is_empty()
                    {
                        return error_page(
                            StatusCode::BAD_REQUEST,
                            "You cannot ask the agent a question now.",
                        );
                    }
                    p.chat.push(crate::pending::ChatTurn::new(
                        question.chars().take(2000).collect::<String>(),
                    ));
                    let code = crate::code::display(&p.code);
                    if let Err(e) = self.save(&mut p).await {
                        return failed(e);
                    }
                    return page(
                        StatusCode::OK,
                        "Question sent",
                        &format!(
                            "<p>The agent will answer. <a href=\"{INTERACT_PATH}?code={}\">Reload the request</a> to read its answer.</p>",
                            web::esc(&code)
                        ),
                    );
                }
                if web::field(&posted, "decision") == Some("answer")
                    && let PendingRequest::AuthToken {
                        four_party: Some(f),
                        ..
                    } = &mut p.request
                    && let Some((_, answer @ None)) = f.as_question.as_mut()
                {
                    let given = web::field(&posted, "answer").unwrap_or_default().trim();
                    if given.is_empty() {
                        return error_page(StatusCode::BAD_REQUEST, "Write an answer first.");
                    }
                    *answer = Some(given.chars().take(4000).collect());
                    if let Err(e) = self.save(&mut p).await {
                        return failed(e);
                    }
                    return error_page(
                        StatusCode::OK,
                        "Answered. Your Person Server passes it on to the resource's Access Server.",
                    );
                }
                if web::field(&posted, "decision") == Some("answer") {
                    let answer = web::field(&posted, "answer").unwrap_or_default().trim();
                    if !matches!(p.request, PendingRequest::Question { .. }) || answer.is_empty() {
                        return error_page(
                            StatusCode::BAD_REQUEST,
                            "There is nothing to answer here.",
                        );
                    }
                    p.state = PendingState::Answered {
                        answer: answer.chars().take(4000).collect(),
                    };
                    let provider = p.agent.0.clone();
                    if let Err(e) = self.save(&mut p).await {
                        return failed(e);
                    }
                    if let Some(cb) = self
                        .callback_for(&provider, web::field(&posted, "callback"))
                        .await
                    {
                        return web::see_other(&cb);
                    }
                    return error_page(StatusCode::OK, "Answered. You can return to your agent.");
                }
                let grant = web::field(&posted, "decision") == Some("grant");
                if grant
                    // A form without a revision is of the request as first asked.
                    && web::field(&posted, "revision").map_or(Some(0), |r| r.parse::<u32>().ok())
                        != Some(p.revision)
                {
                    return error_page(
                        StatusCode::CONFLICT,
                        "The agent changed its request while you were reading it. Open the link again to see what it asks now.",
                    );
                }
                if grant {
                    if p.account.is_none()
                        && let Err(e) = self.store.bind(&p.agent.0, &p.agent.1, &s.account).await
                    {
                        return PsError::from(e).into_response();
                    }
                    p.state = PendingState::Approved {
                        account: s.account.clone(),
                    };
                } else {
                    p.state = PendingState::Denied;
                }
                let provider = p.agent.0.clone();
                if let Err(e) = self.save(&mut p).await {
                    return failed(e);
                }
                // Back to the agent, if it asked (draft -11: access_denied on a denial).
                if let Some(cb) = self
                    .callback_for(&provider, web::field(&posted, "callback"))
                    .await
                {
                    return web::see_other(&if grant {
                        cb
                    } else {
                        web::with_error(&cb, "access_denied")
                    });
                }
                error_page(
                    StatusCode::OK,
                    if grant {
                        "Approved. You can return to your agent."
                    } else {
                        "Denied. The agent has been told."
                    },
                )
            }
            _ => error_page(StatusCode::METHOD_NOT_ALLOWED, "Not here."),
        }
    }

    /// The consent page's body: what the resource asserts, apart from what the agent does.
    fn consent_page(&self, p: &Pending, csrf: &str, callback: Option<&str>) -> String {
        use crate::web::esc;
        let (resource, asked, says) = match &p.request {
            PendingRequest::PersonToken { resource, .. } => (
                resource.as_str(),
                "to know who you are at this resource (a person token: no access is granted)"
                    .to_owned(),
                p.justification.clone(),
            ),
            PendingRequest::AuthToken {
                resource,
                scope,
                budget,
                ..
            } => (
                resource.as_str(),
                format!(
                    "for access with scope: {}{}",
                    scope.as_deref().unwrap_or("(none)"),
                    budget
                        .as_ref()
                        .map_or_else(String::new, |b| format!(", spending up to {b}"))
                ),
                p.justification.clone(),
            ),
            PendingRequest::Mission { proposal } => {
                let prop = serde_json::from_str::<Proposal>(proposal).ok();
                let resources = prop
                    .as_ref()
                    .map(|p| p.resources.join(", "))
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "(none named)".to_owned());
                (
                    self.id.as_str(),
                    format!("for your approval of a mission, for the resources: {resources}"),
                    prop.map(|p| p.description),
                )
            }
            PendingRequest::Completion { s256, summary } => (
                self.id.as_str(),
                format!("for your acceptance that mission {s256} is complete"),
                Some(summary.clone()),
            ),
            PendingRequest::Permission {
                action,
                description,
                ..
            } => (
                self.id.as_str(),
                format!("for your permission for the action: {action}"),
                description.clone(),
            ),
            PendingRequest::Question { question, .. } => (
                self.id.as_str(),
                "for your answer to the agent's question".to_owned(),
                Some(question.clone()),
            ),
        };
        let heading = match &p.request {
            PendingRequest::Mission { .. }
            | PendingRequest::Completion { .. }
            | PendingRequest::Permission { .. }
            | PendingRequest::Question { .. } => "Your Person Server",
            _ => "The resource",
        };
        let says = says.map_or_else(String::new, |t| {
            format!("<p><strong>The agent says:</strong> {}</p>", esc(&t))
        });
        let chat: String = p
            .chat
            .iter()
            .map(|t| {
                format!(
                    "<p><strong>You asked:</strong> {}</p><p><strong>The agent answered:</strong> {}</p>",
                    esc(&t.question),
                    t.answer
                        .as_deref()
                        .map_or_else(|| "(waiting for the agent)".to_owned(), esc)
                )
            })
            .collect();
        let ask = if p.clarification
            && p.open_question().is_none()
            && p.chat.len() < crate::pending::MAX_CLARIFICATIONS
        {
            format!(
                "<p><label>Ask the agent <input name=\"question\" maxlength=\"2000\"></label> \
                 <button name=\"decision\" value=\"ask\">Ask</button> ({} of {} questions left)</p>",
                crate::pending::MAX_CLARIFICATIONS - p.chat.len(),
                crate::pending::MAX_CLARIFICATIONS
            )
        } else {
            String::new()
        };
        // The person answers the Access Server's question when the agent cannot.
        let as_question = p.open_as_question().filter(|_| !p.clarification);
        let ask = if let Some(q) = as_question {
            format!(
                "<p><strong>The resource's Access Server asks you:</strong> {}</p>\
                 <p><label>Your answer <input name=\"answer\" maxlength=\"4000\"></label> \
                 <button name=\"decision\" value=\"answer\">Answer</button></p>",
                esc(q)
            )
        } else if matches!(p.request, PendingRequest::Question { .. }) {
            "<p><label>Your answer <input name=\"answer\" maxlength=\"4000\"></label> \
             <button name=\"decision\" value=\"answer\">Answer</button></p>"
                .to_owned()
        } else {
            ask
        };
        let updated = if p.revision > 0 {
            "<p><em>The agent changed this request since it first asked.</em></p>"
        } else {
            ""
        };
        let runs_on = [p.platform.as_deref(), p.device.as_deref()]
            .into_iter()
            .flatten()
            .map(esc)
            .collect::<Vec<_>>()
            .join(", ");
        let runs_on = if runs_on.is_empty() {
            String::new()
        } else {
            format!("<p>runs on {runs_on}</p>")
        };
        let binding = if p.account.is_none() {
            "<p><strong>This agent is not yet linked to your account.</strong> Approving links it.</p>"
        } else {
            ""
        };
        format!(
            "<section class=\"resource\"><h2>{heading}</h2><p>{}</p><p>asks {}</p>{updated}</section>\
             <section class=\"agent\"><h2>The agent (as it describes itself)</h2><p>{}</p><p>from {}</p>{runs_on}{says}{binding}{chat}</section>\
             <form method=\"post\" action=\"{INTERACT_PATH}\"><input type=\"hidden\" name=\"code\" value=\"{}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <input type=\"hidden\" name=\"revision\" value=\"{}\">{}{ask}\
             <button name=\"decision\" value=\"grant\">Approve</button> <button name=\"decision\" value=\"deny\">Deny</button></form>",
            esc(resource),
            esc(&asked),
            esc(p.agent.1.as_str()),
            esc(p.agent.0.as_str()),
            esc(&crate::code::display(&p.code)),
            esc(csrf),
            p.revision,
            crate::web::hidden_callback(callback),
        )
    }
}

impl PersonServer {
    /// `POST {mission_endpoint}`: a proposal, approved at once or after the person
    /// reviews it.
    async fn propose(
        &self,
        r: &AgentRequest,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        #[derive(Deserialize)]
        struct Caps {
            #[serde(default)]
            capabilities: Vec<String>,
        }
        let proposal: Proposal = serde_json::from_slice(body)
            .map_err(|e| PsError::InvalidRequest(format!("proposal: {e}")))?;
        if proposal.description.trim().is_empty() {
            return Err(PsError::InvalidRequest(
                "description is required".to_owned(),
            ));
        }
        // Bounded: an approval mints a person token per resource and keeps the
        // proposal's bytes (the blob) for the mission's life.
        if proposal.resources.len() > MAX_PROPOSAL_RESOURCES
            || proposal.tools.len() > MAX_PROPOSAL_TOOLS
            || proposal.description.len() > MAX_PROPOSAL_TEXT
            || proposal
                .tools
                .iter()
                .any(|t| t.name.len() > 256 || t.description.len() > MAX_PROPOSAL_TEXT)
        {
            return Err(PsError::InvalidRequest(format!(
                "a proposal names at most {MAX_PROPOSAL_RESOURCES} resources and \
                 {MAX_PROPOSAL_TOOLS} tools, with texts of at most {MAX_PROPOSAL_TEXT} bytes"
            )));
        }
        for res in &proposal.resources {
            ServerId::parse(res).map_err(|e| PsError::InvalidRequest(format!("resources: {e}")))?;
        }
        let caps = serde_json::from_slice::<Caps>(body)
            .map(|c| c.capabilities)
            .unwrap_or_default();
        let account = self.binding_of(r).await?;
        let decision = self.decide(
            &ConsentRequest {
                account: account.as_deref().unwrap_or_default(),
                provider: &r.agent.claims.iss,
                agent: &r.agent.claims.sub,
                resource: &self.id,
                scope: None,
                kind: ConsentKind::Mission,
            },
            account.is_some(),
        );
        match (decision, account) {
            (Decision::Approve, Some(account)) => self
                .approve_mission(
                    &proposal,
                    &account,
                    &r.key,
                    (&r.agent.claims.iss, &r.agent.claims.sub),
                    r.agent.claims.exp,
                    now,
                )
                .await
                .map(Outcome::Issued),
            (Decision::Deny(reason), _) => Err(PsError::Denied(reason)),
            (_, account) => {
                let acting = self.acting(r, None, now).await?;
                let body = String::from_utf8_lossy(body).into_owned();
                self.defer(
                    r,
                    &acting,
                    account,
                    PendingRequest::Mission { proposal: body },
                    &caps,
                    &Hints::default(),
                    now,
                )
                .await
            }
        }
    }

    /// Creates the mission and answers `{s256, mission, capabilities, person_tokens}`.
    async fn approve_mission(
        &self,
        proposal: &Proposal,
        account: &str,
        key: &PublicKey,
        agent: (&ServerId, &aauth_tokens::AgentId),
        agent_exp: u64,
        now: UnixTime,
    ) -> Result<serde_json::Value, PsError> {
        let constraints = (self.terms)(proposal, now.as_secs());
        let blob = crate::mission::blob(agent.1, proposal, &constraints, now.as_secs());
        let mut m = Mission::new(
            blob,
            (agent.0.clone(), agent.1.clone()),
            account,
            constraints,
        );
        m.log(now.as_secs(), "proposal", None, "permit", None);
        let s256 = m.s256.clone();
        let mut person_tokens = serde_json::Map::new();
        let resources: Vec<String> = m.constraints.resources.clone().unwrap_or_default();
        let expires_at = m.expires_at();
        self.store.put_mission(m).await.map_err(PsError::from)?;
        for res in resources {
            let resource = ServerId::parse(&res).map_err(|e| PsError::Server(e.to_string()))?;
            // The same limit on distinct resources as a person-token request's.
            self.admit_resource(
                &(agent.0.clone(), agent.1.clone()),
                &resource,
                now.as_secs(),
            )?;
            let cap = expires_at.map_or(agent_exp, |e| e.min(agent_exp));
            let json = self
                .mint_person_in(&[], &resource, account, key, agent, cap, Some(&s256), now)
                .await?;
            if let Some(t) = json.get("person_token") {
                person_tokens.insert(res, t.clone());
            }
        }
        let stored = self
            .store
            .mission(&s256)
            .await
            .map_err(PsError::from)?
            .ok_or_else(|| PsError::Server("the mission vanished".to_owned()))?;
        let mut capabilities = Vec::new();
        if self.interaction {
            capabilities.push("interaction");
        }
        Ok(serde_json::json!({
            "s256": s256,
            "mission": base64url::encode(&stored.blob),
            "capabilities": capabilities,
            "person_tokens": person_tokens,
        }))
    }

    /// The mission `s256` if it exists and belongs to the signer; otherwise the one
    /// answer for both cases.
    async fn owned_mission(
        &self,
        r: &AgentRequest,
        s256: &str,
        now: UnixTime,
    ) -> Result<Mission, PsError> {
        let m = self
            .store
            .mission(s256)
            .await
            .map_err(PsError::from)?
            .filter(|m| m.agent == (r.agent.claims.iss.clone(), r.agent.claims.sub.clone()))
            .ok_or(PsError::MissionNotFound)?;
        self.expire(m, now).await
    }

    /// Marks a mission past its `expires_at` terminated (`expired`).
    async fn expire(&self, mut m: Mission, now: UnixTime) -> Result<Mission, PsError> {
        if m.terminated.is_none() && m.expires_at().is_some_and(|e| now.as_secs() >= e) {
            m.terminated = Some(TerminationReason::Expired);
            m.log(
                now.as_secs(),
                "terminated",
                None,
                "permit",
                Some("expired".to_owned()),
            );
            self.store
                .put_mission(m.clone())
                .await
                .map_err(PsError::from)?;
        }
        Ok(m)
    }

    /// `{mission_endpoint}/{s256}`: `GET` the approved bytes; `POST` an `update` or a
    /// `completion`.
    async fn mission_url(
        &self,
        r: &AgentRequest,
        s256: &str,
        method: &Method,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        if s256.is_empty() || s256.len() > 64 || s256.contains('/') {
            return Err(PsError::InvalidRequest("not a mission URL".to_owned()));
        }
        let mut m = self.owned_mission(r, s256, now).await?;
        if *method == Method::GET {
            let mut resp = http::Response::new(Bytes::from(m.blob.clone()));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(Outcome::Respond(resp));
        }
        if *method != Method::POST {
            return Err(PsError::InvalidRequest("GET or POST".to_owned()));
        }
        #[derive(Deserialize)]
        struct Action {
            action: Option<String>,
            description: Option<String>,
            summary: Option<String>,
            #[serde(default)]
            capabilities: Vec<String>,
        }
        let a: Action = serde_json::from_slice(body)
            .map_err(|e| PsError::InvalidRequest(format!("body: {e}")))?;
        if let Some(reason) = m.terminated {
            return Err(PsError::MissionTerminated(reason.as_str()));
        }
        match a.action.as_deref() {
            Some("update") => {
                let text = a
                    .description
                    .filter(|d| !d.trim().is_empty())
                    .ok_or_else(|| {
                        PsError::InvalidRequest("update needs a description".to_owned())
                    })?;
                let digest = crate::mission::s256(text.as_bytes());
                m.log(now.as_secs(), "update", None, "permit", Some(text));
                self.store.put_mission(m).await.map_err(PsError::from)?;
                Ok(Outcome::Issued(serde_json::json!({ "s256": digest })))
            }
            Some("completion") => {
                let summary = a.summary.filter(|d| !d.trim().is_empty()).ok_or_else(|| {
                    PsError::InvalidRequest("completion needs a summary".to_owned())
                })?;
                let account = m.account.clone();
                match self.policy.decide(&ConsentRequest {
                    account: &account,
                    provider: &r.agent.claims.iss,
                    agent: &r.agent.claims.sub,
                    resource: &self.id,
                    scope: None,
                    kind: ConsentKind::Completion,
                }) {
                    Decision::Approve => {
                        self.complete(m, &summary, now).await?;
                        Ok(Outcome::Issued(
                            serde_json::json!({ "status": "completed" }),
                        ))
                    }
                    Decision::Deny(reason) => Err(PsError::Denied(reason)),
                    Decision::AskPerson => {
                        let acting = self.acting(r, None, now).await?;
                        self.defer(
                            r,
                            &acting,
                            Some(account),
                            PendingRequest::Completion {
                                s256: m.s256.clone(),
                                summary,
                            },
                            &a.capabilities,
                            &Hints::default(),
                            now,
                        )
                        .await
                    }
                }
            }
            _ => Err(PsError::InvalidRequest(
                "action must be update or completion".to_owned(),
            )),
        }
    }

    async fn complete(&self, mut m: Mission, summary: &str, now: UnixTime) -> Result<(), PsError> {
        m.log(
            now.as_secs(),
            "completion",
            None,
            "permit",
            Some(summary.to_owned()),
        );
        m.terminated = Some(TerminationReason::Completed);
        self.store.put_mission(m).await.map_err(PsError::from)
    }

    /// The mission named by a token request, checked by the policy engine; the decision
    /// is logged. `Ok(None)` without a mission.
    async fn mission_check(
        &self,
        s256: Option<&str>,
        owner: (&ServerId, &aauth_tokens::AgentId),
        event: &str,
        check: Check<'_>,
        grant: bool,
        now: UnixTime,
    ) -> Result<Option<Mission>, PsError> {
        let Some(s256) = s256 else {
            return Ok(None);
        };
        let m = self
            .store
            .mission(s256)
            .await
            .map_err(PsError::from)?
            .filter(|m| m.agent == (owner.0.clone(), owner.1.clone()))
            // At a token endpoint an unknown mission is a bad parameter (draft -11 §7.1).
            .ok_or_else(|| {
                PsError::InvalidRequest("mission_s256 names no mission of this agent".to_owned())
            })?;
        let mut m = self.expire(m, now).await?;
        let verdict = m.check(&check);
        m.log(
            now.as_secs(),
            event,
            Some(check.resource),
            if verdict.is_ok() { "permit" } else { "deny" },
            verdict.err().map(str::to_owned),
        );
        if verdict.is_ok() && grant {
            m.grants += 1;
        }
        let terminated = m.terminated;
        self.store
            .put_mission(m.clone())
            .await
            .map_err(PsError::from)?;
        match verdict {
            Ok(()) => Ok(Some(m)),
            Err(crate::mission::violation::TERMINATED) => Err(PsError::MissionTerminated(
                terminated.map_or("revoked", TerminationReason::as_str),
            )),
            Err(code) => Err(PsError::Violation(code)),
        }
    }
}

impl PersonServer {
    /// `permission_endpoint` (draft -11 §Permission Endpoint): an action outside any
    /// resource. Granted when the mission pre-approved the tool or the policy approves;
    /// denied with a reason; or deferred to the person.
    async fn permission(
        &self,
        r: &AgentRequest,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        #[derive(Deserialize)]
        struct Body {
            action: String,
            description: Option<String>,
            mission_s256: Option<String>,
            #[serde(default)]
            capabilities: Vec<String>,
        }
        let b: Body = serde_json::from_slice(body)
            .map_err(|e| PsError::InvalidRequest(format!("body: {e}")))?;
        if b.action.trim().is_empty() {
            return Err(PsError::InvalidRequest("action is required".to_owned()));
        }
        let owner = (&r.agent.claims.iss, &r.agent.claims.sub);
        let mission = match &b.mission_s256 {
            Some(s) => Some(self.active_mission(s, owner, now).await?),
            None => None,
        };
        let pre_approved = mission.as_ref().is_some_and(|m| {
            m.constraints
                .tools
                .as_ref()
                .is_some_and(|t| t.contains(&b.action))
        });
        let account = match &mission {
            Some(m) => Some(m.account.clone()),
            None => self.binding_of(r).await?,
        };
        let decision = if pre_approved {
            Decision::Approve
        } else {
            self.decide(
                &ConsentRequest {
                    account: account.as_deref().unwrap_or_default(),
                    provider: owner.0,
                    agent: owner.1,
                    resource: &self.id,
                    scope: Some(&b.action),
                    kind: ConsentKind::Permission,
                },
                account.is_some(),
            )
        };
        if let Some(mut m) = mission {
            let verdict = match &decision {
                Decision::Approve => "permit",
                Decision::Deny(_) => "deny",
                Decision::AskPerson => "ask",
            };
            m.log(
                now.as_secs(),
                "permission",
                None,
                verdict,
                Some(b.action.clone()),
            );
            self.store.put_mission(m).await.map_err(PsError::from)?;
        }
        match decision {
            Decision::Approve => Ok(Outcome::Issued(
                serde_json::json!({ "permission": "granted" }),
            )),
            Decision::Deny(reason) => Ok(Outcome::Issued(
                serde_json::json!({ "permission": "denied", "reason": reason }),
            )),
            Decision::AskPerson => {
                let acting = self.acting(r, None, now).await?;
                self.defer(
                    r,
                    &acting,
                    account,
                    PendingRequest::Permission {
                        action: b.action,
                        description: b.description,
                        mission_s256: b.mission_s256,
                    },
                    &b.capabilities,
                    &Hints::default(),
                    now,
                )
                .await
            }
        }
    }

    /// `audit_endpoint`: a record of an action performed, in the mission's log; `201`.
    async fn audit(
        &self,
        r: &AgentRequest,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        #[derive(Deserialize)]
        struct Body {
            mission_s256: Option<String>,
            action: Option<String>,
            description: Option<String>,
        }
        let b: Body = serde_json::from_slice(body)
            .map_err(|e| PsError::InvalidRequest(format!("body: {e}")))?;
        let (Some(s256), Some(action)) =
            (b.mission_s256, b.action.filter(|a| !a.trim().is_empty()))
        else {
            return Err(PsError::InvalidRequest(
                "mission_s256 and action are required".to_owned(),
            ));
        };
        if action.len() > 256 {
            return Err(PsError::InvalidRequest(
                "action is at most 256 bytes".to_owned(),
            ));
        }
        let mut m = self
            .active_mission(&s256, (&r.agent.claims.iss, &r.agent.claims.sub), now)
            .await?;
        // The log is the mission's record, rewritten with it: bounded, and the agent's
        // own entries stop first.
        if m.log.len() >= MAX_MISSION_LOG {
            return Err(PsError::RateLimited {
                reason: format!("this mission's log holds {MAX_MISSION_LOG} entries"),
                retry_after: 3600,
            });
        }
        let detail = match b.description {
            Some(d) => format!("{action}: {}", d.chars().take(2000).collect::<String>()),
            None => action,
        };
        m.log(now.as_secs(), "audit", None, "record", Some(detail));
        self.store.put_mission(m).await.map_err(PsError::from)?;
        let mut resp = http::Response::new(Bytes::new());
        *resp.status_mut() = StatusCode::CREATED;
        Ok(Outcome::Respond(resp))
    }

    /// `interaction_endpoint`: a `question` goes to the person through the consent pages
    /// (deferred, answered with `{"answer"}`); `interaction` and `payment` relays have no
    /// channel here (`424 interaction_unavailable`: the agent directs the person itself).
    async fn interaction_request(
        &self,
        r: &AgentRequest,
        body: &[u8],
        now: UnixTime,
    ) -> Result<Outcome, PsError> {
        #[derive(Deserialize)]
        struct Body {
            #[serde(rename = "type")]
            kind: Option<String>,
            question: Option<String>,
            mission_s256: Option<String>,
            #[serde(default)]
            capabilities: Vec<String>,
        }
        let b: Body = serde_json::from_slice(body)
            .map_err(|e| PsError::InvalidRequest(format!("body: {e}")))?;
        if let Some(s) = &b.mission_s256 {
            self.active_mission(s, (&r.agent.claims.iss, &r.agent.claims.sub), now)
                .await?;
        }
        match b.kind.as_deref() {
            Some("question") => {
                let question = b
                    .question
                    .filter(|q| !q.trim().is_empty())
                    .ok_or_else(|| PsError::InvalidRequest("question is required".to_owned()))?;
                let account = self.binding_of(r).await?;
                let acting = self.acting(r, None, now).await?;
                self.defer(
                    r,
                    &acting,
                    account,
                    PendingRequest::Question {
                        question,
                        mission_s256: b.mission_s256,
                    },
                    &b.capabilities,
                    &Hints::default(),
                    now,
                )
                .await
            }
            Some("interaction" | "payment") => {
                let mut resp = json_response(
                    StatusCode::FAILED_DEPENDENCY,
                    &serde_json::json!({
                        "error": "interaction_unavailable",
                        "detail": "this Person Server has no channel to relay this to the person; direct them to the url yourself",
                    }),
                );
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                );
                Ok(Outcome::Respond(resp))
            }
            _ => Err(PsError::InvalidRequest(
                "type must be interaction, payment or question".to_owned(),
            )),
        }
    }

    /// The agent's mission `s256`, active: `mission_terminated` once ended.
    async fn active_mission(
        &self,
        s256: &str,
        owner: (&ServerId, &aauth_tokens::AgentId),
        now: UnixTime,
    ) -> Result<Mission, PsError> {
        let m = self
            .store
            .mission(s256)
            .await
            .map_err(PsError::from)?
            .filter(|m| m.agent == (owner.0.clone(), owner.1.clone()))
            .ok_or_else(|| {
                PsError::InvalidRequest("mission_s256 names no mission of this agent".to_owned())
            })?;
        let m = self.expire(m, now).await?;
        match m.terminated {
            Some(reason) => Err(PsError::MissionTerminated(reason.as_str())),
            None => Ok(m),
        }
    }
}

impl PersonServer {
    /// `revocation_endpoint`: an agent provider revokes one of its agent tokens; the
    /// token is refused from now on, and every person and auth token issued to that agent
    /// is revoked with it. `200` once done (idempotent; unknown tokens are recorded too).
    async fn revocation(&self, parts: &Parts, body: &[u8], now: UnixTime) -> http::Response<Bytes> {
        #[derive(Deserialize)]
        struct Body {
            jti: String,
            exp: u64,
        }
        if parts.method != Method::POST {
            return PsError::InvalidRequest("POST".to_owned()).into_response();
        }
        let unsupported = || {
            let mut r = json_response(
                StatusCode::FORBIDDEN,
                &serde_json::json!({ "error": "unsupported_iss", "detail": "this Person Server takes revocations from the agent providers it knows" }),
            );
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            r
        };
        let verified = match self.revocation_verifier.verify(parts, body, now).await {
            Ok(v) => v,
            Err(VerifyError::SignerNotAdmitted { .. }) => return unsupported(),
            Err(error) => {
                return error
                    .to_response(self.revocation_verifier.policy())
                    .map(Bytes::from);
            }
        };
        let (provider, resource) = match &verified.identity {
            KeyIdentity::JwksUri { id, dwk, .. } if dwk == "aauth-agent.json" => (
                ServerId::parse(id)
                    .ok()
                    .filter(|p| self.revoking_providers.contains(p)),
                None,
            ),
            // A resource revokes a resource token it issued for this Person Server
            // (PS-112): recorded even if never seen here.
            KeyIdentity::JwksUri { id, dwk, .. } if dwk == "aauth-resource.json" => {
                (None, ServerId::parse(id).ok())
            }
            _ => (None, None),
        };
        if let Some(resource) = resource {
            return match serde_json::from_slice::<Body>(body) {
                Ok(b) if !b.jti.is_empty() && b.jti.len() <= 256 => {
                    match self
                        .store
                        .revoke(
                            &resource_revocation_key(&resource, &b.jti),
                            revocation_exp(b.exp, TokenType::Resource, now),
                            now,
                        )
                        .await
                    {
                        Ok(()) => {
                            let mut r = http::Response::new(Bytes::new());
                            r.headers_mut().insert(
                                http::header::CACHE_CONTROL,
                                HeaderValue::from_static("no-store"),
                            );
                            r
                        }
                        Err(e) => PsError::from(e).into_response(),
                    }
                }
                _ => PsError::InvalidRequest("the body is {\"jti\": \"…\", \"exp\": N}".to_owned())
                    .into_response(),
            };
        }
        let Some(provider) = provider else {
            return unsupported();
        };
        let b = match serde_json::from_slice::<Body>(body) {
            Ok(b) if !b.jti.is_empty() && b.jti.len() <= 256 => b,
            _ => {
                return PsError::InvalidRequest(
                    "the body is {\"jti\": \"…\", \"exp\": N}".to_owned(),
                )
                .into_response();
            }
        };
        let result = async {
            let key = format!("agent {} {}", provider.as_str(), b.jti);
            self.store
                .revoke(&key, revocation_exp(b.exp, TokenType::Agent, now), now)
                .await?;
            if let Some(agent) = self.store.agent_of_token(&provider, &b.jti).await? {
                for (jti, aud, exp) in self.store.tokens_of_agent(&provider, &agent).await? {
                    self.store.revoke(&jti, exp, now).await?;
                    // The resource's outcome is not reported to the provider (§11.12.4); a
                    // failed leg is the resource's to catch up on (tokens expire within the
                    // hour).
                    if let Some(n) = &self.notifier {
                        let _outcome = n.notify(&aud, &jti, exp).await;
                        // Four-party: where it was presented, the Access Server revokes
                        // what it issued against it (PS-113).
                        for access in self.store.presentations(&jti).await? {
                            let _outcome = n.notify_access_server(&access, &jti, exp).await;
                        }
                    }
                }
            }
            Ok::<(), crate::StoreError>(())
        }
        .await;
        match result {
            Ok(()) => {
                let mut r = http::Response::new(Bytes::new());
                r.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                );
                r
            }
            Err(e) => PsError::from(e).into_response(),
        }
    }
}

/// Who may send this server a revocation: a listed agent provider (for its agent
/// tokens), or any resource (for resource tokens it issued: keyed by its own identifier,
/// so it can revoke nothing else).
fn revokers(providers: std::collections::BTreeSet<String>) -> Arc<dyn aauth_signing::SignerGate> {
    aauth_signing::jwks_uri_signers(move |id, dwk| {
        (dwk == "aauth-agent.json" && providers.contains(id)) || dwk == "aauth-resource.json"
    })
}

/// How long a revocation received for a token of type `ty` is kept: until its `exp`, but
/// never past the longest lifetime such a token can have from `now` (a verifier refuses
/// longer ones), so an `exp` far in the future (or `u64::MAX`) neither overflows nor
/// keeps a record forever.
fn revocation_exp(exp: u64, ty: TokenType, now: UnixTime) -> u64 {
    exp.min(now.as_secs().saturating_add(ty.verify_lifetime_cap()))
}

/// The revocation record of resource token `jti` issued by `resource` (keyed by
/// `(iss, jti)`, apart from agent tokens and this server's own tokens).
fn resource_revocation_key(resource: &ServerId, jti: &str) -> String {
    format!("resource {} {jti}", resource.as_str())
}

/// A polling error (draft -11 §9): `denied`, `expired`, `invalid_code`.
struct PollError {
    status: StatusCode,
    error: &'static str,
    detail: &'static str,
}

impl PollError {
    fn new(status: StatusCode, error: &'static str, detail: &'static str) -> Self {
        Self {
            status,
            error,
            detail,
        }
    }

    fn response(self) -> http::Response<Bytes> {
        let mut r = json_response(
            self.status,
            &serde_json::json!({ "error": self.error, "detail": self.detail }),
        );
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        r
    }
}

/// Constant-time equality of two byte strings (CSRF tokens).
fn subtle_eq(a: &[u8], b: &[u8]) -> subtle::Choice {
    use subtle::ConstantTimeEq;
    if a.len() == b.len() {
        a.ct_eq(b)
    } else {
        subtle::Choice::from(0)
    }
}

/// What the presented token establishes.
struct Held {
    account: String,
    exp: u64,
}

#[async_trait::async_trait]
impl aauth_metadata::serve::Endpoint for PersonServer {
    async fn respond(
        &self,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Option<http::Response<Bytes>> {
        self.handle(parts, body, now).await
    }
}
