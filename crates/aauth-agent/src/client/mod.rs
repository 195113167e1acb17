//! The signing client: signs every request with the right token for its resource and
//! answers challenges by itself (draft -11 §8.2, §9, AG-20…26, AG-60/61).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use aauth_headers::{
    AAuthCapabilities, AAuthRequirement, AuthorizationAAuth, Capability, ErrorCode, Prefer,
    Requirement, Scheme, SessionToken, SignatureErrorHeader, names,
};
use aauth_keys::rand::SharedRandom;
use aauth_keys::time::{Clock, SystemClock, UnixTime};
use aauth_keys::{PublicKey, Signer};
use aauth_signing::{SignOptions, SigningKey, sign};
use aauth_tokens::{
    AuthClaims, IssuerKeyResolver, PersonClaims, ResourceClaims, ServerId, TokenClaims, Unverified,
    Validation, verify,
};
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, request::Parts};
use serde::Deserialize;

use crate::agent::problem_error;
use crate::cache::{CachedToken, TokenCache, TokenKind};
use crate::deferred_poll::pending_url;
use crate::{Agent, AgentError, Compatibility, PollPolicy, Transport};

mod authorize;
mod chain;
mod challenge;
mod pending;

use chain::Chain;

use pending::{Acted, ResourcePending};

/// What the agent asks its Person Server for a person token (draft -11 §7.1).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PersonTokenRequest<'a> {
    /// The resource the token is for (its `aud`).
    pub resource: &'a ServerId,
    /// The mission the agent acts under.
    pub mission_s256: Option<&'a str>,
}

impl<'a> PersonTokenRequest<'a> {
    /// A request for `resource`, under `mission_s256` if any.
    #[must_use]
    pub fn new(resource: &'a ServerId, mission_s256: Option<&'a str>) -> Self {
        Self {
            resource,
            mission_s256,
        }
    }
}

/// What the agent asks its Person Server for an auth token (draft -11 §7.2). `Debug`
/// leaves the tokens out.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct AuthTokenRequest<'a> {
    /// The resource token from the challenge, already checked (AG-22).
    pub resource_token: &'a str,
    /// The token whose `jti` the resource token names (AG-21): the person token on a
    /// first challenge, the auth token presented on a step-up.
    pub presented_token: &'a str,
    /// The resource token's `login_hint`, passed through unchanged (AG-24).
    pub login_hint: Option<&'a str>,
}

impl std::fmt::Debug for AuthTokenRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthTokenRequest")
            .field("resource_token", &"<redacted>")
            .field("presented_token", &"<redacted>")
            .field("login_hint", &self.login_hint)
            .finish()
    }
}

/// The agent's Person Server, as the client needs it. The HTTP implementation (with its
/// own deferred responses and consent) belongs to the Person Server crate; anything that
/// returns the tokens can stand in.
#[async_trait]
pub trait PersonServerClient: Send + Sync {
    /// A person token for a resource.
    ///
    /// # Errors
    ///
    /// [`AgentError::PersonServer`] or [`AgentError::Transport`].
    async fn person_token(
        &self,
        agent: &Agent,
        request: PersonTokenRequest<'_>,
    ) -> Result<String, AgentError>;

    /// An auth token for a resource token.
    ///
    /// # Errors
    ///
    /// [`AgentError::PersonServer`] or [`AgentError::Transport`].
    async fn auth_token(
        &self,
        agent: &Agent,
        request: AuthTokenRequest<'_>,
    ) -> Result<String, AgentError>;

    /// Relays a resource's interaction to the person through the Person Server (draft
    /// -11 §Relaying Through the Person Server): `true` when it took it (`202`: it
    /// reaches the person its own way, and the resource's pending URL still says when
    /// they are done), `false` when the agent must direct the person itself (the Person
    /// Server's `interaction_unavailable`, no `interaction_endpoint`, or no answer). The
    /// default never relays.
    async fn relay_interaction(&self, _agent: &Agent, _interaction: &Interaction) -> bool {
        false
    }

    /// The upstream token every request is made with (call chaining, draft -11 §7.1,
    /// §10.1), if any; read once, when a client is built with this Person Server. The
    /// Person Server then issues for the person that token was issued for, under its
    /// `mission_s256`: the client names no mission of its own, holds the person tokens
    /// it receives to the upstream token's mission, and caches them under it. `None` by
    /// default.
    fn upstream_token(&self) -> Option<&str> {
        None
    }
}

/// What the person must do for a deferred request: open `{url}?code={code}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Interaction {
    /// The interaction URL.
    pub url: String,
    /// The code.
    pub code: String,
}

impl Interaction {
    /// An interaction a server asked for, checked before the person (or a browser) is
    /// given it: `url` uses `https` and has no query or fragment (draft -11
    /// §Requirement Responses), and `code` is at most 64 URL-unreserved characters, so
    /// that `{url}?code={code}` is that URL with one parameter. The draft has servers
    /// emit Crockford base32 codes (§Interaction Code Format), as this project's do; the
    /// agent does not refuse a lagging server's other unreserved characters (mockin's
    /// codes are base64url), since a code only correlates.
    ///
    /// ```
    /// use aauth_agent::Interaction;
    /// assert!(Interaction::checked("https://ps.example/consent", "ABCD-2345").is_ok());
    /// assert!(Interaction::checked("http://ps.example/consent", "ABCD2345").is_err());
    /// assert!(Interaction::checked("https://ps.example/c?x=1", "ABCD2345").is_err());
    /// assert!(Interaction::checked("https://ps.example/c", "ABCD 2345").is_err());
    /// assert!(Interaction::checked("https://ps.example/c", "AB&next=x").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`AgentError::BadDeferred`] naming what is wrong.
    pub fn checked(url: &str, code: &str) -> Result<Self, AgentError> {
        let bad = |reason: &str| AgentError::BadDeferred {
            reason: format!("interaction {reason}"),
        };
        let uri: http::Uri = url.parse().map_err(|_| bad("url is not a URL"))?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err(bad("url is not an https URL"));
        }
        if uri.query().is_some() || url.contains('#') {
            return Err(bad("url has a query or a fragment"));
        }
        let unreserved = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
        if code.is_empty() || code.len() > 64 || !code.chars().all(unreserved) {
            let shown: String = code.chars().take(64).collect();
            return Err(bad(&format!(
                "code {shown:?} is not up to 64 URL-unreserved characters"
            )));
        }
        Ok(Self {
            url: url.to_owned(),
            code: code.to_owned(),
        })
    }
}

pub(crate) type InteractionHook = dyn Fn(&Interaction) + Send + Sync;

/// The interaction hook, or the refusal of a requirement that needs one.
pub(crate) fn interaction_hook(
    hook: Option<&Arc<InteractionHook>>,
) -> Result<&InteractionHook, AgentError> {
    hook.map(AsRef::as_ref)
        .ok_or_else(|| AgentError::Unsatisfiable {
            requirement: "interaction".to_owned(),
            reason: "no interaction hook is configured".to_owned(),
        })
}
pub(crate) type ClarificationHook = dyn Fn(&str) -> Option<String> + Send + Sync;

struct Config {
    agent: Arc<Agent>,
    clock: Arc<dyn Clock>,
    person_server: Option<Arc<dyn PersonServerClient>>,
    keys: Option<Arc<dyn IssuerKeyResolver>>,
    mission: Option<String>,
    /// The Person Server client's upstream token (call chaining), as read when it was set.
    chain: Option<Chain>,
    capabilities: Option<AAuthCapabilities>,
    on_interaction: Option<Arc<InteractionHook>>,
    on_clarification: Option<Arc<ClarificationHook>>,
    /// Whether a resource's interaction goes to the Person Server first.
    relay: bool,
    poll: PollPolicy,
    max_rounds: usize,
    cache: TokenCache,
    /// Seconds this agent's clock was found ahead of each server's (from `Date`).
    ahead_by: std::sync::Mutex<std::collections::BTreeMap<ServerId, u64>>,
    /// The components each resource asked to be covered beyond the profile's
    /// (`invalid_input` with `required_input`), covered on every later request to it.
    required_input: std::sync::Mutex<std::collections::BTreeMap<ServerId, Vec<String>>>,
    /// Where signatures' `nonce` values come from.
    random: SharedRandom,
    /// The departures from -11 made for peers that lag it.
    compatibility: Compatibility,
    /// OAuth tokens, and the APIs they are for, for a resource that offers only
    /// `WWW-Authenticate: Bearer`.
    #[cfg(feature = "oauth")]
    oauth: Option<(Arc<aauth_oauth::ClientCredentials>, Vec<ServerId>)>,
}

/// Builds an [`AAuthClient`] or a [`SigningLayer`].
#[must_use]
pub struct ClientBuilder {
    config: Config,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("agent", &self.config.agent)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Person and auth tokens come from `person_server`; the resource tokens of
    /// challenges and the auth tokens received are verified with issuer keys from `keys`
    /// (the metadata crate's `KeyCache`).
    pub fn person_server(
        mut self,
        person_server: Arc<dyn PersonServerClient>,
        keys: Arc<dyn IssuerKeyResolver>,
    ) -> Self {
        self.config.chain = person_server.upstream_token().map(Chain::of);
        self.config.person_server = Some(person_server);
        self.config.keys = Some(keys);
        self
    }

    /// Acts under the mission `s256`: person and auth tokens are cached per mission. A
    /// Person Server client with an upstream token (call chaining) overrides it: the
    /// mission is then the upstream token's.
    pub fn mission(mut self, s256: &str) -> Self {
        self.config.mission = Some(s256.to_owned());
        self
    }

    /// The clock for `created` and token lifetimes (the system clock by default).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.config.clock = clock;
        self
    }

    /// Sends exactly `caps` as `AAuth-Capabilities` (by default: `interaction` when an
    /// interaction hook is set, `clarification` when a clarification hook is).
    pub fn capabilities(mut self, caps: &[Capability]) -> Self {
        self.config.capabilities = Some(AAuthCapabilities(caps.to_vec()));
        self
    }

    /// Called once per interaction a deferred response asks for.
    pub fn on_interaction(mut self, hook: impl Fn(&Interaction) + Send + Sync + 'static) -> Self {
        self.config.on_interaction = Some(Arc::new(hook));
        self
    }

    /// Whether a resource's `requirement=interaction` is relayed through the Person Server
    /// before the interaction hook is called (the draft's SHOULD, and the default): the
    /// hook is called only when the Person Server does not take it.
    pub fn relay_interactions(mut self, relay: bool) -> Self {
        self.config.relay = relay;
        self
    }

    /// Called with the question of a `requirement=clarification`; its answer is posted
    /// to the pending URL, `None` gives up.
    pub fn on_clarification(
        mut self,
        hook: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.config.on_clarification = Some(Arc::new(hook));
        self
    }

    /// How deferred responses are polled.
    pub fn poll_policy(mut self, poll: PollPolicy) -> Self {
        self.config.poll = poll;
        self
    }

    /// Where the signatures' `nonce` values come from (the operating system's CSPRNG by
    /// default).
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.config.random = random;
        self
    }

    /// The departures from -11 to make for peers that lag it ([`Compatibility`]); strict
    /// -11 unless set.
    pub fn compatibility(mut self, compatibility: Compatibility) -> Self {
        self.config.compatibility = compatibility;
        self
    }

    /// Falls back to OAuth (feature `oauth`): a resource among `apis` whose `401`
    /// carries no AAuth requirement and no signature error but a `WWW-Authenticate:
    /// Bearer` challenge gets the request again, unsigned, with a token from `tokens` (an
    /// API that has not moved to AAuth yet): `Bearer`, or `DPoP` with a proof for a
    /// DPoP-bound token. Any other server asking for a bearer token gets its `401` back:
    /// the token is for the APIs it was issued for, and a server that is handed it could
    /// replay it there. Only [`AAuthClient::send`] falls back, not [`SigningLayer`].
    #[cfg(feature = "oauth")]
    pub fn oauth_fallback(
        mut self,
        tokens: Arc<aauth_oauth::ClientCredentials>,
        apis: impl IntoIterator<Item = ServerId>,
    ) -> Self {
        self.config.oauth = Some((tokens, apis.into_iter().collect()));
        self
    }

    /// The client over `transport`.
    pub fn build(self, transport: Arc<dyn Transport>) -> AAuthClient {
        AAuthClient {
            config: Arc::new(self.config),
            transport,
        }
    }

    /// A tower layer that turns an HTTP service into a signing client.
    pub fn layer(self) -> SigningLayer {
        SigningLayer {
            config: Arc::new(self.config),
        }
    }
}

/// The agent's HTTP client: signs, sends, and answers challenges by itself. Cheap to
/// clone; clones share the token cache.
///
/// Credentials for a resource, best first: a cached auth token, a cached person token,
/// the agent token, each with more than five minutes left. Answers: `401
/// requirement=agent-token | person-token | auth-token` (the resource token checked per
/// AG-22, the auth token per AG-23), `Signature-Error` `revoked_jwt`/`expired_jwt`
/// (the credential refreshed once) and `clock_skew` (corrected once from `Date`),
/// `202` deferred responses (polled per [`PollPolicy`]), and a `403` to a request that
/// carried the resource's session token (the session dropped, the request sent once
/// more without it).
#[derive(Clone)]
pub struct AAuthClient {
    config: Arc<Config>,
    transport: Arc<dyn Transport>,
}

impl std::fmt::Debug for AAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AAuthClient")
            .field("agent", &self.config.agent)
            .finish_non_exhaustive()
    }
}

/// What one call has learnt answering its challenges.
#[derive(Default)]
struct Call {
    /// The `401` challenges already answered.
    answered: BTreeSet<&'static str>,
    /// The resource asked for the agent token (`requirement=agent-token`): the agent token
    /// is presented for the rest of the call, and the cached tokens are kept for routes
    /// that want them.
    agent_only: bool,
    /// A token the resource refused as the wrong kind (`requirement=person-token` to an
    /// auth token): not presented again in this call.
    refused: Option<Arc<str>>,
    /// The person or auth token this call obtained: presented next even when it arrived
    /// inside the refresh margin (its lifetime is capped by the tokens it derives from),
    /// where the cache would already pass it over.
    obtained: Option<CachedToken>,
}

/// The token a request is signed under.
#[derive(Clone)]
struct Credential {
    kind: TokenKind,
    token: Arc<str>,
    /// For person and auth tokens: what a resource token derived from it must name.
    held: Option<CachedToken>,
}

impl AAuthClient {
    /// A builder for `agent`.
    pub fn builder(agent: Arc<Agent>) -> ClientBuilder {
        ClientBuilder {
            config: Config {
                agent,
                clock: Arc::new(SystemClock),
                person_server: None,
                keys: None,
                mission: None,
                chain: None,
                capabilities: None,
                on_interaction: None,
                on_clarification: None,
                relay: true,
                poll: PollPolicy::default(),
                max_rounds: 6,
                cache: TokenCache::default(),
                ahead_by: std::sync::Mutex::default(),
                required_input: std::sync::Mutex::default(),
                random: SharedRandom::default(),
                compatibility: Compatibility::strict(),
                #[cfg(feature = "oauth")]
                oauth: None,
            },
        }
    }

    /// The agent.
    #[must_use]
    pub fn agent(&self) -> &Arc<Agent> {
        &self.config.agent
    }

    /// The token cache.
    #[must_use]
    pub fn cache(&self) -> &TokenCache {
        &self.config.cache
    }

    /// Rotates the agent's key: its agent token and every cached person, auth and
    /// session token are dropped (they bind or belong to the old key).
    pub fn rotate(&self, signer: Arc<dyn Signer>) {
        self.config.agent.rotate(signer);
        self.config.cache.clear();
    }

    fn now(&self) -> UnixTime {
        self.config.clock.now()
    }

    /// The mission the tokens held for resources carry (and are cached under): the
    /// upstream token's on a chained call, else the client's own.
    fn mission(&self) -> Option<&str> {
        match &self.config.chain {
            Some(chain) => chain.mission(),
            None => self.config.mission.as_deref(),
        }
    }

    fn jkt(&self) -> String {
        self.config
            .agent
            .signer()
            .public_key()
            .thumbprint()
            .as_str()
            .to_owned()
    }

    /// Sends `req`, signed, answering challenges; returns the final response.
    ///
    /// # Errors
    ///
    /// [`AgentError`] naming the step that failed.
    pub async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, AgentError> {
        let resource = resource_of(req.uri())?;
        let (parts, body) = req.into_parts();
        let mut call = Call::default();
        for _ in 0..self.config.max_rounds {
            let now = self.now();
            let cred = self.credential(&resource, now, &call).await?;
            let (resp, session) = self
                .send_signed_carrying(&parts, &body, &cred, &resource)
                .await?;
            // The resource refused the session token it issued, before any handler ran
            // (`403` with `error` `invalid_session`: unknown, expired, another key's; the
            // code `aauth-resource` gives, the draft naming none). It is dropped, and the
            // request sent once more without it. Any other `403` is the answer: the
            // application may have acted on the request, and the session may be good on
            // the resource's other routes.
            if resp.status() == StatusCode::FORBIDDEN
                && problem_error(resp.body()) == "invalid_session"
                && let Some(refused) = &session
                && call.answered.insert("session refused")
            {
                self.config.cache.forget_refused_session(&resource, refused);
                continue;
            }
            match resp.status() {
                StatusCode::ACCEPTED => {
                    return self.deferred(&parts, &resource, resp, call).await;
                }
                StatusCode::UNAUTHORIZED => {
                    if !self.answer_401(&resp, &resource, &cred, &mut call).await? {
                        #[cfg(feature = "oauth")]
                        if let Some(resp) = self
                            .bearer_fallback(&resource, &parts, &body, &resp)
                            .await?
                        {
                            return Ok(resp);
                        }
                        return Ok(resp);
                    }
                }
                _ => return Ok(resp),
            }
        }
        Err(AgentError::TooManyRounds {
            rounds: self.config.max_rounds,
        })
    }

    /// `created` for a request to `resource`: now, by that server's clock if this
    /// agent's was found ahead of it.
    fn created(&self, resource: &ServerId) -> UnixTime {
        let ahead = self
            .config
            .ahead_by
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(resource)
            .copied()
            .unwrap_or(0);
        self.now().minus(ahead)
    }

    /// The best credential for `resource` in `call`: the token the call obtained, a
    /// cached auth token, a cached person token, the agent token (only the agent token
    /// once the resource asked for it; never a token it refused).
    async fn credential(
        &self,
        resource: &ServerId,
        now: UnixTime,
        call: &Call,
    ) -> Result<Credential, AgentError> {
        if !call.agent_only {
            let jkt = self.jkt();
            let usable = |t: &CachedToken| call.refused.as_deref() != Some(&*t.token);
            let obtained = call
                .obtained
                .clone()
                .filter(|t| t.jkt == jkt && t.exp > now.as_secs() && usable(t));
            let cached = || {
                [TokenKind::Auth, TokenKind::Person]
                    .into_iter()
                    .find_map(|kind| {
                        self.config
                            .cache
                            .get(resource, self.mission(), kind, &jkt, now)
                            .filter(usable)
                    })
            };
            if let Some(t) = obtained.or_else(cached) {
                return Ok(Credential {
                    kind: t.kind,
                    token: Arc::clone(&t.token),
                    held: Some(t),
                });
            }
        }
        let agent = self.config.agent.token(now).await?;
        Ok(Credential {
            kind: TokenKind::Agent,
            token: Arc::from(agent.token.as_str()),
            held: None,
        })
    }

    fn capabilities(&self) -> AAuthCapabilities {
        self.config.capabilities.clone().unwrap_or_else(|| {
            let mut caps = Vec::new();
            if self.config.on_interaction.is_some() {
                caps.push(Capability::Interaction);
            }
            if self.config.on_clarification.is_some() {
                caps.push(Capability::Clarification);
            }
            AAuthCapabilities(caps)
        })
    }

    /// Signs a copy of `parts` under `cred` and sends it.
    async fn send_signed(
        &self,
        parts: &Parts,
        body: &Bytes,
        cred: &Credential,
        resource: &ServerId,
    ) -> Result<http::Response<Bytes>, AgentError> {
        self.send_signed_carrying(parts, body, cred, resource)
            .await
            .map(|(resp, _)| resp)
    }

    /// As [`AAuthClient::send_signed`]; also the session token the request carried (the
    /// cached one, added when the request had no `Authorization` of its own).
    async fn send_signed_carrying(
        &self,
        parts: &Parts,
        body: &Bytes,
        cred: &Credential,
        resource: &ServerId,
    ) -> Result<(http::Response<Bytes>, Option<SessionToken>), AgentError> {
        let mut parts = clone_parts(parts);
        let caps = self.capabilities();
        if !caps.0.is_empty()
            && let Ok(v) = HeaderValue::from_str(&caps.serialize())
        {
            parts.headers.insert(names::AAUTH_CAPABILITIES, v);
        }
        let mut carried = None;
        if !parts.headers.contains_key(http::header::AUTHORIZATION)
            && let Some(session) = self.config.cache.session(resource)
            && let Ok(v) = HeaderValue::from_str(&AuthorizationAAuth(session.clone()).serialize())
        {
            parts.headers.insert(http::header::AUTHORIZATION, v);
            carried = Some(session);
        }
        let signer = self.config.agent.signer();
        let scheme = Scheme::jwt(cred.token.as_ref());
        let mut options =
            SignOptions::default().unique_for(&parts.method, &mut self.config.random.clone())?;
        if parts.uri.query().is_some() {
            options = options.with_query();
        }
        for component in self.required_by(resource) {
            options = options.with(&component);
        }
        sign(
            &mut parts,
            body,
            &[SigningKey::new("sig", signer.as_ref(), &scheme)],
            &options,
            self.created(resource),
        )?;
        let resp = self
            .transport
            .send(http::Request::from_parts(parts, body.clone()))
            .await?;
        // Draft -11 §AAuth-Access: a response carrying more than one credential is
        // rejected; its session token is not taken.
        let mut access = resp.headers().get_all(names::AAUTH_ACCESS).iter();
        if let (Some(v), None) = (access.next(), access.next())
            && let Some(token) = v
                .to_str()
                .ok()
                .and_then(|v| SessionToken::parse_aauth_access(v).ok())
        {
            self.config.cache.put_session(resource, token);
        }
        Ok((resp, carried))
    }

    /// A person token for `resource` from the Person Server, checked and cached.
    async fn obtain_person(&self, resource: &ServerId) -> Result<CachedToken, AgentError> {
        let ps = self
            .config
            .person_server
            .as_ref()
            .ok_or(AgentError::NoPersonServer {
                requirement: "person-token",
            })?;
        let mission_s256 = self.mission_to_ask()?;
        self.agent_token_outlasting_consent().await?;
        let token = ps
            .person_token(
                &self.config.agent,
                PersonTokenRequest {
                    resource,
                    mission_s256,
                },
            )
            .await?;
        let now = self.now();
        let signer = self.config.agent.signer();
        let claims: PersonClaims = self
            .verify_received("person", &token, resource, now)
            .await?;
        bound_to("person", &claims.cnf.jwk, signer.public_key())?;
        self.check_mission("person", claims.mission_s256.as_deref())?;
        let cached = CachedToken {
            token: Arc::from(token.as_str()),
            kind: TokenKind::Person,
            exp: claims.exp,
            jkt: self.jkt(),
            sub: claims.sub,
            jti: claims.jti,
            ps: claims.iss,
        };
        self.config
            .cache
            .put(resource, self.mission(), cached.clone());
        Ok(cached)
    }

    /// AG-70, top down: before the Person Server is asked for a token whose lifetime the
    /// agent token caps (and which may wait for the person's consent), the agent token is
    /// refreshed if it has less than twice the refresh margin left, so that the token
    /// obtained does not arrive already inside the margin.
    async fn agent_token_outlasting_consent(&self) -> Result<(), AgentError> {
        let now = self.now();
        let current = self.config.agent.token(now).await?;
        if current.exp
            <= now
                .as_secs()
                .saturating_add(2 * crate::agent::REFRESH_MARGIN)
        {
            self.config.agent.refresh(now, &current.token).await?;
        }
        Ok(())
    }

    /// Checks the challenge's resource token (AG-22), gets an auth token for it, checks
    /// that (AG-23) and caches it.
    async fn obtain_auth(
        &self,
        resource: &ServerId,
        presented: &Credential,
        resource_token: &str,
    ) -> Result<CachedToken, AgentError> {
        let (Some(ps), Some(keys)) = (&self.config.person_server, &self.config.keys) else {
            return Err(AgentError::NoPersonServer {
                requirement: "auth-token",
            });
        };
        let Some(held) = &presented.held else {
            return Err(AgentError::Unsatisfiable {
                requirement: "auth-token".to_owned(),
                reason: "a resource token derives from a person or auth token, and the \
                         request presented the agent token"
                    .to_owned(),
            });
        };
        let now = self.now();
        // The key the resource token is checked against is the key the auth token is
        // cached for.
        let jkt = self.jkt();
        let rt = self
            .check_resource_token(resource, held, resource_token, keys.as_ref(), now)
            .await?;
        self.agent_token_outlasting_consent().await?;
        let token = ps
            .auth_token(
                &self.config.agent,
                AuthTokenRequest {
                    resource_token,
                    presented_token: &held.token,
                    login_hint: rt.login_hint.as_deref(),
                },
            )
            .await?;
        let at = self
            .check_auth_token(&token, resource, &rt, held, now)
            .await?;
        let cached = CachedToken {
            token: Arc::from(token.as_str()),
            kind: TokenKind::Auth,
            exp: at.exp,
            jkt,
            sub: at.sub,
            jti: at.jti,
            ps: at.ps,
        };
        self.config
            .cache
            .put(resource, self.mission(), cached.clone());
        Ok(cached)
    }

    /// AG-22: the resource token's signature under the resource's keys, then its claims:
    /// issued by the resource called, for this agent's key, and derived from the token
    /// `held` (its Person Server, its person, its `jti`).
    async fn check_resource_token(
        &self,
        resource: &ServerId,
        held: &CachedToken,
        resource_token: &str,
        keys: &dyn IssuerKeyResolver,
        now: UnixTime,
    ) -> Result<ResourceClaims, AgentError> {
        let fail = |check, reason: String| AgentError::check("resource", check, reason);
        let v = Validation::new(now)
            .accept_person_token_jti(self.config.compatibility.reads_person_token_jti());
        let unverified = Unverified::<ResourceClaims>::decode(resource_token, &v)
            .map_err(|e| fail("format", e.to_string()))?;
        // Before any key is fetched for the issuer it names: only the resource called.
        if unverified.unverified_claims().iss != *resource {
            return Err(fail(
                "iss",
                format!(
                    "names {}, not the resource called",
                    unverified.unverified_claims().iss
                ),
            ));
        }
        let aud = unverified.unverified_claims().aud.clone();
        let rt = verify::<ResourceClaims>(resource_token, &v.audience(&aud), keys)
            .await
            .map_err(|e| fail("signature", e.to_string()))?
            .claims;
        if rt.agent_jkt != self.jkt() {
            return Err(fail("agent_jkt", "is not this agent's key".to_owned()));
        }
        if rt.ps != held.ps {
            return Err(fail(
                "ps",
                format!("names {}, not this person's Person Server", rt.ps),
            ));
        }
        if rt.sub != held.sub {
            return Err(fail(
                "sub",
                "is not the person of the token presented".to_owned(),
            ));
        }
        if rt.presented_jti != held.jti {
            return Err(fail(
                "presented_jti",
                "is not the token presented".to_owned(),
            ));
        }
        Ok(rt)
    }

    /// AG-23: the auth token received for `rt` is issued by the resource token's `aud`,
    /// bound to this agent's key, and for the person of the token `held`; and it carries
    /// the mission the client acts under ([`AAuthClient::check_mission`]).
    async fn check_auth_token(
        &self,
        token: &str,
        resource: &ServerId,
        rt: &ResourceClaims,
        held: &CachedToken,
        now: UnixTime,
    ) -> Result<AuthClaims, AgentError> {
        let at: AuthClaims = self.verify_received("auth", token, resource, now).await?;
        if at.iss != rt.aud {
            return Err(AgentError::check(
                "auth",
                "iss",
                format!("names {}, not the resource token's aud", at.iss),
            ));
        }
        bound_to("auth", &at.cnf.jwk, self.config.agent.signer().public_key())?;
        if at.sub != held.sub {
            return Err(AgentError::check(
                "auth",
                "sub",
                "is not the person of the token presented",
            ));
        }
        self.check_mission("auth", at.mission_s256.as_deref())?;
        Ok(at)
    }

    /// Verifies a person or auth token received for `resource` (its `aud`) under its
    /// issuer's keys, when the client has them; otherwise reads it.
    async fn verify_received<C: TokenClaims + Clone>(
        &self,
        what: &'static str,
        token: &str,
        resource: &ServerId,
        now: UnixTime,
    ) -> Result<C, AgentError> {
        let v = Validation::new(now).audience(resource);
        let claims = match &self.config.keys {
            Some(keys) => verify::<C>(token, &v, keys.as_ref())
                .await
                .map(|t| t.claims),
            None => Unverified::<C>::decode(token, &v).map(|u| u.unverified_claims().clone()),
        };
        claims.map_err(|e| AgentError::check(what, "verification", e.to_string()))
    }

    /// Polls a deferred response until it completes (the shared loop of
    /// [`deferred_poll`](crate::deferred_poll)).
    async fn deferred(
        &self,
        parts: &Parts,
        resource: &ServerId,
        first: http::Response<Bytes>,
        call: Call,
    ) -> Result<http::Response<Bytes>, AgentError> {
        let mut pending = ResourcePending {
            client: self,
            resource,
            location: pending_url(&first, &parts.uri)?,
            acted: Acted::default(),
            call,
        };
        crate::deferred_poll::until_done(&mut pending, &self.config.poll, first).await
    }

    /// One signed request to the pending URL.
    async fn poll_once(
        &self,
        resource: &ServerId,
        location: &http::Uri,
        method: Method,
        body: Bytes,
        call: &Call,
    ) -> Result<http::Response<Bytes>, AgentError> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(location.clone());
        if !body.is_empty() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        if let Some(wait) = self
            .config
            .poll
            .prefer_wait
            .and_then(|w| Prefer::wait(w).serialize())
        {
            req = req.header("prefer", wait);
        }
        let (parts, ()) = req.body(()).map_err(AgentError::transport)?.into_parts();
        let cred = self.credential(resource, self.now(), call).await?;
        self.send_signed(&parts, &body, &cred, resource).await
    }

    /// Cancels a pending request (`DELETE` on its URL).
    ///
    /// # Errors
    ///
    /// [`AgentError::Transport`], or [`AgentError::Deferred`] for an answer other than
    /// `2xx`, `404`, `408` (it expired) or `410`.
    pub async fn cancel(
        &self,
        resource: &ServerId,
        location: &http::Uri,
    ) -> Result<(), AgentError> {
        let resp = self
            .poll_once(
                resource,
                location,
                Method::DELETE,
                Bytes::new(),
                &Call::default(),
            )
            .await?;
        match resp.status() {
            // Gone, expired or unknown: nothing left to cancel either way.
            s if s.is_success()
                || s == StatusCode::GONE
                || s == StatusCode::NOT_FOUND
                || s == StatusCode::REQUEST_TIMEOUT =>
            {
                Ok(())
            }
            s => Err(AgentError::Deferred {
                status: s,
                error: problem_error(resp.body()),
            }),
        }
    }
}

fn bound_to(what: &'static str, jwk: &aauth_keys::Jwk, key: &PublicKey) -> Result<(), AgentError> {
    let bound =
        PublicKey::from_jwk(jwk).map_err(|e| AgentError::check(what, "cnf", e.to_string()))?;
    if bound.thumbprint() == key.thumbprint() {
        Ok(())
    } else {
        Err(AgentError::check(what, "cnf", "binds another key"))
    }
}

/// The resource a request URI names: `https://host`.
fn resource_of(uri: &http::Uri) -> Result<ServerId, AgentError> {
    let fail = |reason: &str| AgentError::NotAServer {
        uri: uri.to_string(),
        reason: reason.to_owned(),
    };
    if uri.scheme_str() != Some("https") {
        return Err(fail("not https"));
    }
    let host = uri.host().ok_or_else(|| fail("no host"))?;
    if uri.port().is_some() {
        return Err(fail("server identifiers carry no port"));
    }
    // Host names compare without case (RFC 3986 §3.2.2); identifiers are lowercase.
    ServerId::parse(&format!("https://{}", host.to_ascii_lowercase()))
        .map_err(|e| fail(&e.to_string()))
}

fn requirement(resp: &http::Response<Bytes>) -> Result<Option<Requirement>, AgentError> {
    let Some(v) = resp.headers().get(names::AAUTH_REQUIREMENT) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| AgentError::Unsatisfiable {
        requirement: "?".to_owned(),
        reason: "AAuth-Requirement is not visible ASCII".to_owned(),
    })?;
    AAuthRequirement::parse(v)
        .map(|r| Some(r.requirement))
        .map_err(|e| AgentError::Unsatisfiable {
            requirement: "?".to_owned(),
            reason: format!("malformed AAuth-Requirement: {e}"),
        })
}

fn signature_error_header(resp: &http::Response<Bytes>) -> Option<SignatureErrorHeader> {
    resp.headers()
        .get(names::SIGNATURE_ERROR)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| SignatureErrorHeader::parse(v).ok())
}

fn pending_status(resp: &http::Response<Bytes>) -> String {
    #[derive(Deserialize)]
    struct Status {
        status: String,
    }
    serde_json::from_slice::<Status>(resp.body()).map_or_else(|_| String::new(), |s| s.status)
}

fn clone_parts(parts: &Parts) -> Parts {
    let mut req = http::Request::new(());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    req.into_parts().0
}

/// A tower layer making an HTTP service (requests and responses with `Bytes` bodies)
/// into an AAuth signing client. Services made by one layer share its token cache.
#[derive(Clone)]
pub struct SigningLayer {
    config: Arc<Config>,
}

impl std::fmt::Debug for SigningLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningLayer").finish_non_exhaustive()
    }
}

impl<S> tower_layer::Layer<S> for SigningLayer
where
    S: tower_service::Service<http::Request<Bytes>, Response = http::Response<Bytes>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
    S::Error: std::fmt::Display,
{
    type Service = AAuthClient;

    fn layer(&self, inner: S) -> AAuthClient {
        AAuthClient {
            config: Arc::clone(&self.config),
            transport: Arc::new(crate::ServiceTransport(inner)),
        }
    }
}

impl tower_service::Service<http::Request<Bytes>> for AAuthClient {
    type Response = http::Response<Bytes>;
    type Error = AgentError;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, AgentError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), AgentError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Bytes>) -> Self::Future {
        let client = self.clone();
        Box::pin(async move { client.send(req).await })
    }
}
