//! The Person Server's token endpoints, sans-IO: a request's head and body in, the
//! response out.

mod access_reply;
mod account;
mod consent;
mod decision;
mod defer;
mod federation;
mod governance;
mod missions;
mod poll;
mod resource_flow;
mod revocation;
mod router;
#[cfg(feature = "oidc")]
mod sign_in;
mod tokens;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use aauth_keys::rand::SharedRandom;
use aauth_keys::time::UnixTime;
use aauth_keys::{JwkSet, Signer, base64url};
use aauth_metadata::{HttpsUrl, PersonServerMetadata, Published};
use aauth_signing::{
    AuthoritySource, JwtResolver, ReplayGuard, SchemeResolver, Verifier, VerifyPolicy,
};
use aauth_tokens::{IssuerKeyResolver, ServerId, TokenType};
use bytes::Bytes;
use http::request::Parts;

use crate::policy::ConsentPolicy;
use crate::store::PsStore;
use crate::{AlwaysAsk, PsError};
use aauth_metadata::throttle::{MemoryThrottle, Throttle};

pub use missions::MissionTerms;
use missions::default_terms;
use revocation::revokers;
#[cfg(feature = "oidc")]
pub use sign_in::{NewAccounts, SignInProvider, SignInSetupError};

/// Where a sign-in with a provider starts (`?provider={id}&code={code}[&callback=…]`).
pub const OIDC_START_PATH: &str = "/interact/oidc";

/// Where providers send the browser back: register `{this server's id}{OIDC_CALLBACK_PATH}`
/// as the client's redirect URI at each provider.
pub const OIDC_CALLBACK_PATH: &str = "/interact/oidc/callback";

/// The consent pages' sign-in form target.
pub const LOGIN_PATH: &str = "/interact/login";

/// Where the signed-in person signs out (`POST`, with the session's CSRF token).
pub const LOGOUT_PATH: &str = "/interact/logout";

/// The most resources a mission proposal may name.
pub const MAX_PROPOSAL_RESOURCES: usize = 32;

/// The most tools a mission proposal may name.
pub const MAX_PROPOSAL_TOOLS: usize = 64;

/// The longest description (of the mission, or of a tool) a proposal may carry.
pub const MAX_PROPOSAL_TEXT: usize = 8 * 1024;

/// The most agents whose recent resources are tracked for the distinct-resource limit.
const MAX_TRACKED_AGENTS: usize = 10_000;

pub use crate::mission::MAX_MISSION_LOG;

/// The most long polls (`Prefer: wait`) held at once; more are answered at once.
pub const DEFAULT_LONG_POLLS: usize = 256;

/// The most deferred requests one agent may have open at once, by default.
pub const DEFAULT_MAX_PENDING: usize = 16;

/// The most deferred requests the agents of one provider may have open at once, by
/// default, while no person here is known for them
/// ([`PersonServer::max_pending_per_provider`]).
pub const DEFAULT_MAX_PENDING_PER_PROVIDER: usize = 256;

/// The most deferred requests kept in all, by default, when one of an agent no person
/// here is known for would be added ([`PersonServer::max_pending_total`]).
pub const DEFAULT_MAX_PENDING_TOTAL: usize = 10_000;

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
    /// Whether the sign-in page offers the password form.
    passwords: bool,
    /// The texts of the person's pages.
    messages: Arc<crate::web::text::Messages>,
    /// What the consent page shows of resources (their metadata and logo), kept a while.
    described: crate::web::describe::Described,
    /// The OpenID Providers the sign-in page offers.
    #[cfg(feature = "oidc")]
    providers: Vec<SignInProvider>,
    pending_ttl: u64,
    /// The most deferred requests one agent may have open at once.
    max_pending: usize,
    /// The most deferred requests of no known person the agents of one provider may have
    /// open at once.
    max_pending_per_provider: usize,
    /// The most deferred requests kept in all when one of no known person is added.
    max_pending_total: usize,
    /// Wrong interaction codes and passwords, counted per account, client and request.
    throttle: Arc<dyn Throttle>,
    /// The rate limits counted by the agent that signed (checked once its signature
    /// verified); none by default.
    rate_limits: Option<Arc<aauth_metadata::rate::RateLimits>>,
    /// Bounds concurrent password hashing (argon2id: memory and CPU per attempt).
    hashing: Arc<tokio::sync::Semaphore>,
    /// Bounds the long polls held at once.
    long_polls: Arc<tokio::sync::Semaphore>,
    /// Set when the service shuts down: held long polls are answered at once.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Verifies revocation requests (`jwks_uri` scheme, body covered).
    revocation_verifier: Verifier,
    /// The agent providers whose revocations are accepted.
    revoking_providers: std::collections::BTreeSet<ServerId>,
    /// Tells resources about the person and auth tokens a cascade revoked.
    notifier: Option<Arc<dyn crate::RevocationNotifier>>,
    /// The agent-token cascades that outlasted their request (PS-111: `202` and polls),
    /// in this process's memory.
    revocations: aauth_metadata::cascade::Cascades,
    /// Reads agent providers' metadata (to admit interaction callbacks) and resources'
    /// (to describe them on the consent page).
    metadata: Option<Arc<dyn aauth_metadata::Fetch>>,
    /// The keys that read the audit log at `/admin/audit` (none: not served).
    operators: Option<aauth_metadata::audit::operator::Operators>,
    /// PS-13: at most `.0` distinct resources per agent within `.1` seconds.
    resource_limit: (usize, u64),
    /// Sends four-party token requests to resources' Access Servers (PS-50…54).
    federation: Option<Arc<dyn aauth_metadata::Transport>>,
    /// The most a federation exchange may take before it is `as_unreachable`.
    federation_timeout: Duration,
    /// What it tells an Access Server that asks for claims.
    claims: Option<Arc<dyn crate::ClaimsSource>>,
    /// Pays an Access Server that answers `402`.
    payments: Option<Arc<dyn crate::PaymentSettler>>,
    /// Answers an Access Server's questions itself, when it can.
    access_server_questions: Option<Arc<dyn crate::AccessServerQuestions>>,
    /// The most intermediaries a call chain may pass through (M8).
    max_chain: usize,
    /// The resources each agent asked person tokens for, with when it last did.
    asked: std::sync::Mutex<
        std::collections::BTreeMap<
            (ServerId, aauth_tokens::AgentId),
            std::collections::BTreeMap<String, u64>,
        >,
    >,
    /// Where identifiers, codes, nonces and salts come from.
    random: SharedRandom,
    /// The departures from -11 made for agents and resources that lag it.
    compatibility: crate::Compatibility,
}

/// The default of [`PersonServer::max_chain_depth`]: three intermediaries.
pub const DEFAULT_MAX_CHAIN: usize = 3;

/// The default of [`PersonServer::distinct_resources_per_agent`]: 50 resources an hour.
pub const DEFAULT_RESOURCE_LIMIT: (usize, u64) = (50, 3600);

/// The revocation endpoint (agent providers revoke agent tokens here).
pub const REVOCATION_PATH: &str = "/revocation";

/// The prefix of a pending revocation's URL (`/revocation/{id}`): where an agent
/// provider polls a cascade that outlasted its request.
pub const REVOCATION_PENDING_PATH: &str = "/revocation/";

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

/// Constant-time equality of two byte strings (CSRF tokens).
fn subtle_eq(a: &[u8], b: &[u8]) -> subtle::Choice {
    use subtle::ConstantTimeEq;
    if a.len() == b.len() {
        a.ct_eq(b)
    } else {
        subtle::Choice::from(0)
    }
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

    /// Answers every held long poll now (a `202` with its pending URL and `Retry-After`,
    /// as at the end of its wait) and holds no new one: the agent polls again, at this
    /// instance once it is back or at another; nothing pending is lost with a store that
    /// outlives the process. Held revocations and their polls are answered the same way
    /// (`aauth_metadata::cascade::Cascades::stop_holding`): the tokens they revoke are
    /// revoked here already, and the provider resends what was cut short.
    fn stop_holding(&self) {
        self.stopping.send_replace(true);
        self.revocations.stop_holding();
    }
}

impl PersonServer {
    /// A Person Server `id` signing with `signer` under `kid`; agent providers' and
    /// resources' keys from `issuer_keys`; records in `store`; directed identifiers
    /// derived with the 32-byte `directed_secret` (keep it stable: it is the persons'
    /// identifiers at every resource). Asks the person about everything by default
    /// ([`AlwaysAsk`](crate::AlwaysAsk); set another with [`PersonServer::policy`], e.g.
    /// [`dangerous::AutoApprove`](crate::dangerous::AutoApprove) for agents the person
    /// lets act alone).
    ///
    /// # Errors
    ///
    /// [`PsError::Internal`] when the endpoint URLs cannot be formed.
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
                .map_err(|e| aauth_metadata::serve::InternalError::produce("endpoint URL", e))
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
        // Every verifier below keeps the default policy's algorithms.
        doc.common.accepts(&aauth_keys::Algorithm::ALL);
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
            policy: Arc::new(AlwaysAsk),
            terms: Arc::new(default_terms),
            directed: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &directed_secret),
            published,
            agents,
            person_lifetime: aauth_tokens::PERSON_TOKEN_MAX_LIFETIME,
            auth_lifetime: aauth_tokens::AUTH_TOKEN_MAX_LIFETIME,
            interaction: false,
            passwords: true,
            messages: Arc::new(crate::web::text::Messages::english()),
            described: crate::web::describe::Described::default(),
            #[cfg(feature = "oidc")]
            providers: Vec::new(),
            pending_ttl: 600,
            random: SharedRandom::default(),
            max_pending: DEFAULT_MAX_PENDING,
            max_pending_per_provider: DEFAULT_MAX_PENDING_PER_PROVIDER,
            max_pending_total: DEFAULT_MAX_PENDING_TOTAL,
            throttle: Arc::new(MemoryThrottle::default()),
            rate_limits: None,
            hashing: Arc::new(tokio::sync::Semaphore::new(DEFAULT_CONCURRENT_HASHES)),
            long_polls: Arc::new(tokio::sync::Semaphore::new(DEFAULT_LONG_POLLS)),
            stopping: tokio::sync::watch::Sender::new(false),
            revocation_verifier,
            revoking_providers: std::collections::BTreeSet::new(),
            notifier: None,
            revocations: aauth_metadata::cascade::Cascades::new(REVOCATION_PENDING_PATH),
            metadata: None,
            operators: None,
            resource_limit: DEFAULT_RESOURCE_LIMIT,
            asked: std::sync::Mutex::default(),
            federation: None,
            federation_timeout: Duration::from_secs(10),
            payments: None,
            access_server_questions: None,
            max_chain: DEFAULT_MAX_CHAIN,
            claims: None,
            compatibility: crate::Compatibility::strict(),
        })
    }
    /// Also publishes `keys` in this server's JWKS, each until its time: the keys it
    /// signed with before a key rotation, so that what they signed still verifies, and a
    /// verifier's cached JWKS is not the only one that knows them. The key it signs with
    /// is always published.
    #[must_use]
    pub fn retiring_keys(mut self, keys: &[aauth_metadata::RetiringKey]) -> Self {
        let mut jwk = self.signer.public_key().to_jwk();
        jwk.kid = Some(self.kid.clone());
        self.published = self.published.jwks_rotating(JWKS_PATH, &[jwk], keys);
        self
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

    /// At most `max` deferred requests open at once for the agents of one provider (the
    /// agent token's `iss`) together (default [`DEFAULT_MAX_PENDING_PER_PROVIDER`]), when
    /// no person here is known for the request (an agent not yet bound, outside any
    /// mission): any domain can run an agent provider and mint agent identifiers without
    /// end, and an unbound agent always waits for the person. Past it, such a request is
    /// refused as past the per-agent bound is (`429 rate_limited`, `Retry-After`), counted
    /// and stored as one step by the store. The requests of agents bound to a person here
    /// count towards it but are held only to their own per-agent bound, so that a flood
    /// of fresh identifiers at a provider cannot shut out its agents people already use.
    #[must_use]
    pub fn max_pending_per_provider(mut self, max: usize) -> Self {
        self.max_pending_per_provider = max.max(1);
        self
    }

    /// At most `max` deferred requests kept in all, every agent's together (default
    /// [`DEFAULT_MAX_PENDING_TOTAL`]): the open ones, and the ended or expired ones kept
    /// [`PENDING_KEPT`](crate::PENDING_KEPT) for late polls. Past it, a request for which
    /// no person here is known (as for [`PersonServer::max_pending_per_provider`]) is
    /// refused the same way, counted and stored as one step; the agents bound to a person
    /// here are held only to their own per-agent bound (their requests count towards
    /// this one), so that a flood from many providers, a domain each, cannot stop the
    /// people's own agents from reaching them.
    #[must_use]
    pub fn max_pending_total(mut self, max: usize) -> Self {
        self.max_pending_total = max.max(1);
        self
    }

    /// Draws identifiers, interaction codes, session and CSRF tokens, nonces and password
    /// salts from `random` (the OS CSPRNG by default; a test makes them reproducible).
    #[must_use]
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = random;
        self
    }

    /// Counts wrong interaction codes and passwords in `throttle` (shared by several
    /// instances) instead of this server's memory ([`aauth_metadata::throttle`]).
    #[must_use]
    pub fn throttle(mut self, throttle: Arc<dyn Throttle>) -> Self {
        self.throttle = throttle;
        self
    }

    /// Enforces the rules of `limits` that count requests by agent
    /// ([`RateScope::Agent`](aauth_metadata::rate::RateScope::Agent)), on every request an
    /// agent signs here: counted right after its signature and agent token verified,
    /// never before (a request merely claiming to be an agent spends nothing of its
    /// budget). Over a limit, `429 rate_limited` with `Retry-After`; a poll of a pending
    /// URL (`GET`) gets `429 slow_down` instead (draft -11 §11.9.4), and the agent polls
    /// 5 seconds slower; a limiter that cannot answer, `503`. Rules of other scopes are
    /// not this server's to count (a service checks them before the request reaches it).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use aauth_keys::PrivateKey;
    /// use aauth_metadata::rate::{MemoryRateLimiter, RateLimit, RateLimits, RateScope, Rule};
    /// use aauth_person_server::{MemoryStore, PersonServer};
    /// use aauth_tokens::{ServerId, StaticIssuerKeys};
    /// // Each agent: 60 person tokens an hour, 10 at once.
    /// let limits = RateLimits::new(
    ///     vec![Rule {
    ///         scope: RateScope::Agent,
    ///         path: "/person-token".to_owned(),
    ///         limit: RateLimit::new(60, Duration::from_secs(3600), 10)?,
    ///     }],
    ///     Arc::new(MemoryRateLimiter::default()),
    /// );
    /// let ps = PersonServer::new(
    ///     ServerId::parse("https://ps.example")?,
    ///     Arc::new(PrivateKey::ed25519_from_seed(&[1; 32])),
    ///     "ps-1",
    ///     Arc::new(StaticIssuerKeys::new()),
    ///     Arc::new(MemoryStore::default()),
    ///     [7; 32],
    /// )?
    /// .rate_limits(Arc::new(limits));
    /// # drop(ps);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn rate_limits(mut self, limits: Arc<aauth_metadata::rate::RateLimits>) -> Self {
        self.rate_limits = Some(limits);
        self
    }

    /// Serves the consent pages ([`INTERACT_PATH`]): when the policy asks the person (or
    /// an unbound agent asks), an agent that declared the `interaction` capability gets a
    /// `202` with a pending URL and an interaction code, and the person signs in, sees the
    /// request, and grants or denies. Deferred requests last `ttl` (whole seconds).
    #[must_use]
    pub fn consent_pages(mut self, ttl: Duration) -> Self {
        self.interaction = true;
        self.pending_ttl = ttl.as_secs();
        self
    }

    /// Whether the sign-in page offers the password form (on by default). Turn it off
    /// when every person signs in with an OpenID Provider (the `oidc` feature's
    /// [`PersonServer::sign_in_with`]): `POST` [`LOGIN_PATH`] is then `404`.
    #[must_use]
    pub fn password_sign_in(mut self, on: bool) -> Self {
        self.passwords = on;
        self
    }

    /// The texts of the person's pages, in one language (English by default; see
    /// [`Messages::from_entries`](crate::Messages::from_entries) for a translation).
    #[must_use]
    pub fn messages(mut self, messages: crate::Messages) -> Self {
        self.messages = Arc::new(messages);
        self
    }

    /// Decides the constraints missions are approved with: the person's power of attorney
    /// (default: a day, no sub-agents, no limit on resources or tools; the proposal's lists
    /// are a record, not a limit).
    #[must_use]
    pub fn mission_terms(mut self, terms: Arc<MissionTerms>) -> Self {
        self.terms = terms;
        self
    }

    /// Accepts agent-token revocations from `providers` (signed by them under the
    /// `jwks_uri` scheme); others get `403 unsupported_iss`.
    #[must_use]
    pub fn revoking_providers(mut self, providers: impl IntoIterator<Item = ServerId>) -> Self {
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
    pub fn revocation_notifier(mut self, notifier: Arc<dyn crate::RevocationNotifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Holds a revocation request (and each poll of its pending URL) at most `hold` while
    /// its cascade runs (default
    /// [`DEFAULT_REVOCATION_HOLD`](aauth_metadata::cascade::DEFAULT_REVOCATION_HOLD), 20 s;
    /// at most [`MAX_REVOCATION_HOLD`](aauth_metadata::cascade::MAX_REVOCATION_HOLD), 30
    /// s). A cascade done within it is answered `200`; one still running is answered
    /// `202` with its pending URL ([`REVOCATION_PENDING_PATH`]`{id}`), which the agent
    /// provider polls with a signed `GET`. A sender's `Prefer: wait=N` sets the hold of
    /// its own request (clamped the same way).
    #[must_use]
    pub fn revocation_hold(mut self, hold: Duration) -> Self {
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

    /// Reads other parties' metadata documents through `fetch` (give it an egress-guarded
    /// one, such as [`aauth_metadata::GuardedFetch`]). Two things need it:
    ///
    /// - **the agent's `callback`**: the consent pages send the person's browser to the
    ///   `callback` an agent adds to its interaction link when they are done (with
    ///   `?error=access_denied` or `interaction_expired` when it did not succeed), if the
    ///   agent's provider publishes it as its `callback_endpoint` (or allows localhost);
    /// - **describing the resource** (PS-12): the consent page for a person or auth token
    ///   shows the resource's `name`, `description` and `access_mode` from its
    ///   `aauth-resource.json`, so the person answers the question the resource will
    ///   apply. They are labelled as the resource's own words; a resource that publishes
    ///   no document (or an unreadable one) is shown by its identifier alone.
    ///
    /// Without this (the default), the pages end with their own completion page, the
    /// agent learns the outcome by polling, and resources are shown by identifier.
    #[must_use]
    pub fn metadata(mut self, fetch: Arc<dyn aauth_metadata::Fetch>) -> Self {
        self.metadata = Some(fetch);
        self
    }

    /// Serves the audit log to `operators` at `GET /admin/audit`
    /// ([`aauth_metadata::audit::operator`]): requests signed (`hwk`) by one of their
    /// keys. Without operators the path is not served (`404`).
    #[must_use]
    pub fn operators(mut self, operators: aauth_metadata::audit::operator::Operators) -> Self {
        self.operators = Some(operators);
        self
    }

    /// PS-13: refuses person tokens for more than `max` distinct resources per agent
    /// within `window` (whole seconds; `429 rate_limited` with `Retry-After`); resources
    /// already asked for in the window are always admitted. Default
    /// [`DEFAULT_RESOURCE_LIMIT`]. Counted in this process.
    #[must_use]
    pub fn distinct_resources_per_agent(mut self, max: usize, window: Duration) -> Self {
        self.resource_limit = (max, window.as_secs());
        self
    }

    /// Four-party access (draft -11 §9.1): a resource token whose `aud` is the resource's
    /// Access Server is honoured by asking that Access Server, through `transport`, once
    /// the person's policy approves: signed as this Person Server, with the resource,
    /// agent and presented tokens; the auth token it returns is verified (PS-53) before
    /// the agent gets it. An unreachable or failing Access Server is `502 as_unreachable`;
    /// its refusals are relayed with their status and `error`. Without this, such a
    /// resource token is `invalid_resource_token`.
    #[must_use]
    pub fn federation(mut self, transport: Arc<dyn aauth_metadata::Transport>) -> Self {
        self.federation = Some(transport);
        self
    }

    /// Answers an Access Server's `requirement=claims` with what `source` gives for the
    /// person (never `sub`). Without it, the Access Server gets an empty set of claims.
    #[must_use]
    pub fn claims_source(mut self, source: Arc<dyn crate::ClaimsSource>) -> Self {
        self.claims = Some(source);
        self
    }

    /// Pays an Access Server that asks for a billing relationship (`402 Payment
    /// Required`) through `settler`, then polls its pending URL (the agent waits at this
    /// server's). Without it, the `402` is relayed to the agent as a refusal
    /// (`payment_required`).
    #[must_use]
    pub fn payment_settler(mut self, settler: Arc<dyn crate::PaymentSettler>) -> Self {
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
    pub fn access_server_answers(mut self, answers: Arc<dyn crate::AccessServerQuestions>) -> Self {
        self.access_server_questions = Some(answers);
        self
    }

    /// How long a federation exchange (the Access Server's metadata and its token) may
    /// take before the agent gets `502 as_unreachable` (default 10 s).
    #[must_use]
    pub fn federation_timeout(mut self, timeout: Duration) -> Self {
        self.federation_timeout = timeout;
        self
    }

    /// The departures from -11 to make for agents and resources that lag it
    /// ([`Compatibility`](crate::Compatibility)); strict -11 unless set.
    #[must_use]
    pub fn compatibility(mut self, compatibility: crate::Compatibility) -> Self {
        self.compatibility = compatibility;
        self
    }

    /// Decides consent with `policy` (default: [`AlwaysAsk`](crate::AlwaysAsk)).
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

    /// Refuses to issue anything for a disabled account (the operator's
    /// [`Admin::set_disabled`](crate::Admin::set_disabled)).
    pub(super) async fn account_active(&self, account: &str) -> Result<(), PsError> {
        if self.store.account_disabled(account).await? {
            return Err(tokens::account_disabled());
        }
        Ok(())
    }

    /// Records an issued token in the name of `account` (its record, chain and audit
    /// event: one step), then asks again whether the account is disabled. The operator's
    /// disabling marks the account first and then reads the records to revoke, so an
    /// issuance checked just before the mark may be recorded after that read; asked again
    /// after the record is written, one of the two always sees the other (each writes
    /// before it reads, in every store): the disabling revokes the token, or the issuance
    /// sees the mark, revokes its own record and delivers nothing (`denied`).
    pub(super) async fn record_issued(
        &self,
        issuance: crate::store::Issuance,
        account: &str,
        now: UnixTime,
    ) -> Result<(), PsError> {
        let (jti, exp) = (issuance.token.jti().to_owned(), issuance.token.exp());
        let kind = match issuance.token {
            crate::store::TokenRecord::Person(_) => "person",
            crate::store::TokenRecord::Auth(_) => "auth",
        };
        self.store.record_issuance(issuance).await?;
        if !self.store.account_disabled(account).await? {
            return Ok(());
        }
        self.withdraw_issued(
            (kind, &jti, exp),
            account,
            "the account was disabled as it was issued",
            now,
        )
        .await?;
        Err(tokens::account_disabled())
    }

    /// Revokes a recorded token that is not delivered after all (`kind` token `jti`,
    /// expiring at `exp`, issued in the name of `account`), auditing `why`.
    pub(super) async fn withdraw_issued(
        &self,
        (kind, jti, exp): (&str, &str, u64),
        account: &str,
        why: &str,
        now: UnixTime,
    ) -> Result<(), PsError> {
        self.store.revoke(jti, exp, now).await?;
        self.log_event(
            crate::AuditEvent::new(
                now.as_secs(),
                crate::AuditAction::Revoked,
                format!("{kind} token {jti} revoked: {why}"),
            )
            .account(account),
        )
        .await
    }

    /// Appends `e` to the audit log.
    pub(super) async fn log_event(&self, e: crate::AuditEvent) -> Result<(), PsError> {
        Ok(self.store.record_event(e).await?)
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
}

impl PersonServer {
    /// 32 random bytes, base64url: pending ids, session and CSRF tokens, device ids.
    pub(super) fn random_token(&self) -> Result<String, PsError> {
        aauth_keys::rand::random_id(&mut self.random.clone(), 32)
            .map_err(|e| aauth_metadata::serve::InternalError::produce("random token", e).into())
    }

    /// This server as the signer of its server-to-server requests.
    pub(super) fn server_signer(&self) -> aauth_metadata::outbound::ServerSigner {
        aauth_metadata::outbound::ServerSigner::new(
            self.id.clone(),
            crate::outbound::PS_DOCUMENT,
            Arc::clone(&self.signer),
            &self.kid,
        )
        .random(self.random.clone())
    }
}
