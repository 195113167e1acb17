//! The client side: access tokens by the client-credentials grant (RFC 6749 §4.4), cached
//! and refreshed before they expire.
//!
//! [`ClientCredentials::token`]:
//! - serves the cached token while it is fresh: until `refresh_margin` (60 s by default,
//!   at most half the token's lifetime) before it expires; that path takes one lock and
//!   clones an `Arc`;
//! - otherwise fetches a new one, one fetch at a time: while it runs, callers are served
//!   the token held if it has not expired (refresh ahead costs them nothing), and wait
//!   otherwise; those that waited share its result, a failure included (they do not
//!   each fetch again); [`ClientCredentials::token_now`] (what [`BearerLayer`] uses) runs
//!   the refresh ahead in a background task, so that not even the first caller inside
//!   the margin waits for it;
//! - authenticates as `client_secret_basic`, `client_secret_post` or `private_key_jwt`
//!   (RFC 7523 §2.2; the assertion signed by an Ed25519 or P-256 key, a fresh `jti`, a
//!   one-minute lifetime, `aud` the token endpoint unless
//!   [`ClientConfig::assertion_audience`] names another);
//! - retries what may succeed later (a transport failure, `429`, `5xx`, honouring
//!   `Retry-After`) with the workspace's `RetryPolicy`, and stops asking after repeated
//!   failures (the `CircuitBreaker`; half-open after `open_for`);
//! - when the server cannot be reached, keeps serving the token it has until that token
//!   expires, then fails with a typed error; after a failed refresh ahead of expiry the
//!   next one waits [`REFRESH_PAUSE`] (the token held is served meanwhile), so that callers
//!   in the margin do not each wait out a failing server in turn;
//! - fails at once, never retrying, on the server's own refusal (`invalid_client`,
//!   `invalid_scope`, …), with its `error` and `error_description`.

use std::sync::{Arc, Mutex, PoisonError};

use aauth_keys::rand::{RandomSource, SharedRandom, random_id};
use aauth_keys::time::{Clock, UnixTime};
use aauth_keys::{Algorithm, Signer, base64url};
use aauth_metadata::{
    BreakerConfig, BreakerState, CircuitBreaker, FetchError, HttpsUrl, RetryPolicy, Transport,
};
use aauth_tokens::json::{Object, string_value, u64_value};
use bytes::Bytes;

mod present;

pub use present::Presenter;

/// How the client authenticates at the token endpoint.
#[derive(Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1).
    SecretBasic {
        /// `client_id`.
        client_id: String,
        /// The secret. Never printed by `Debug`.
        secret: String,
    },
    /// The id and secret in the form body (RFC 6749 §2.3.1).
    SecretPost {
        /// `client_id`.
        client_id: String,
        /// The secret. Never printed by `Debug`.
        secret: String,
    },
    /// A JWT assertion signed by the client's key (RFC 7523 §2.2, OpenID Connect
    /// `private_key_jwt`).
    PrivateKeyJwt {
        /// `client_id`: the assertion's `iss` and `sub`.
        client_id: String,
        /// The client's key (Ed25519, written `EdDSA`, or ES256).
        key: Arc<dyn Signer>,
        /// The key's `kid` at the server.
        kid: String,
    },
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (method, id) = match self {
            Self::SecretBasic { client_id, .. } => ("client_secret_basic", client_id),
            Self::SecretPost { client_id, .. } => ("client_secret_post", client_id),
            Self::PrivateKeyJwt { client_id, .. } => ("private_key_jwt", client_id),
        };
        f.debug_struct("ClientAuth")
            .field("method", &method)
            .field("client_id", id)
            .finish_non_exhaustive()
    }
}

impl ClientAuth {
    /// The client's `client_id`, however it authenticates.
    #[must_use]
    pub fn client_id(&self) -> &str {
        match self {
            Self::SecretBasic { client_id, .. }
            | Self::SecretPost { client_id, .. }
            | Self::PrivateKeyJwt { client_id, .. } => client_id,
        }
    }
}

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server refused (RFC 6749 §5.2): its `error` and `error_description`.
    #[error("token endpoint refused ({status}): {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        /// The HTTP status.
        status: u16,
        /// `error` (`invalid_client`, `invalid_scope`, `unauthorized_client`, …).
        error: String,
        /// `error_description`.
        description: Option<String>,
    },
    /// The server could not be reached or kept failing (after the retries).
    #[error("token endpoint unavailable: {reason}")]
    Unavailable {
        /// The last failure.
        reason: String,
    },
    /// The circuit is open after repeated failures: no request is sent until `until`.
    #[error("token endpoint circuit open until {until}")]
    CircuitOpen {
        /// When a request may be tried again.
        until: UnixTime,
    },
    /// The server answered `200` with something that is not a token response.
    #[error("token response: {reason}")]
    Response {
        /// What was wrong.
        reason: String,
    },
    /// The client could not build its request (the assertion's signature, randomness).
    #[error("token request: {reason}")]
    Request {
        /// What failed.
        reason: String,
    },
}

impl ClientError {
    /// A stable code for logs and metrics.
    #[must_use]
    pub fn code(&self) -> &str {
        match self {
            Self::Refused { error, .. } => error,
            Self::Unavailable { .. } => "temporarily_unavailable",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Response { .. } => "invalid_token_response",
            Self::Request { .. } => "client_error",
        }
    }
}

/// A token obtained from the token endpoint.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuedToken {
    /// The access token. Never printed by `Debug`.
    pub access_token: String,
    /// `token_type` (`Bearer`, or `DPoP` for a bound token).
    pub token_type: String,
    /// When it expires (`expires_in` after it was received).
    pub expires_at: UnixTime,
    /// When it was received.
    pub received_at: UnixTime,
    /// `scope`, when the server said (it may grant less than asked).
    pub scope: Option<String>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// What to ask for, and how persistently.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The token endpoint.
    pub token_endpoint: HttpsUrl,
    /// How the client authenticates.
    pub auth: ClientAuth,
    /// `scope`, space-separated.
    pub scope: Option<String>,
    /// `resource` (RFC 8707): the API the token is for.
    pub resource: Option<String>,
    /// Refresh this long before expiry (default 60 s; at most half a token's lifetime).
    pub refresh_margin: u64,
    /// The lifetime assumed when the server sends no `expires_in` (default 300 s).
    pub default_lifetime: u64,
    /// Retries of one fetch.
    pub retry: RetryPolicy,
    /// When to stop asking a failing server.
    pub breaker: BreakerConfig,
    /// The key DPoP proofs are signed with (RFC 9449): the token requested bound to it,
    /// and [`ClientCredentials::dpop_proof`] proving possession on each request.
    pub dpop: Option<Arc<dyn Signer>>,
    /// The `aud` of a `private_key_jwt` client assertion: `None` (the default) for the
    /// token endpoint's URL, which RFC 7523 §3 allows; a server that requires its issuer
    /// identifier (or another value it documents) is given it here.
    pub assertion_audience: Option<String>,
}

impl ClientConfig {
    /// Tokens from `token_endpoint`, authenticated by `auth`; the defaults above.
    #[must_use]
    pub fn new(token_endpoint: HttpsUrl, auth: ClientAuth) -> Self {
        Self {
            token_endpoint,
            auth,
            scope: None,
            resource: None,
            refresh_margin: 60,
            default_lifetime: 300,
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            dpop: None,
            assertion_audience: None,
        }
    }

    /// Names `aud` in `private_key_jwt` client assertions (by default the token
    /// endpoint's URL): the authorization server's issuer identifier, say, for a server
    /// that takes only that.
    #[must_use]
    pub fn assertion_audience(mut self, aud: impl Into<String>) -> Self {
        self.assertion_audience = Some(aud.into());
        self
    }

    /// Asks for tokens bound to `key` (RFC 9449 §5): each token request carries a DPoP
    /// proof by it.
    #[must_use]
    pub fn dpop(mut self, key: Arc<dyn Signer>) -> Self {
        self.dpop = Some(key);
        self
    }

    /// Asks for `scope`.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Asks for a token for `resource` (RFC 8707).
    #[must_use]
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Refreshes `seconds` before expiry.
    #[must_use]
    pub fn refresh_margin(mut self, seconds: u64) -> Self {
        self.refresh_margin = seconds;
        self
    }
}

#[derive(Debug)]
struct State {
    token: Option<Arc<IssuedToken>>,
    breaker: CircuitBreaker,
    fetches: u64,
    /// Counts finished fetches, so a caller that waited knows whether one ended meanwhile.
    generation: u64,
    /// How the last finished fetch failed, if it did: the answer of those that waited.
    last_error: Option<ClientError>,
    /// When the last fetch failed, while none has succeeded since.
    failed_at: Option<UnixTime>,
}

/// Seconds after a failed refresh during which the token held, if unexpired, is served
/// without asking the server again.
pub const REFRESH_PAUSE: u64 = 5;

/// A client-credentials token source. Cheap to share (`Arc`); see the module docs.
///
/// ```no_run
/// # async fn demo(transport: std::sync::Arc<dyn aauth_metadata::Transport>) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use aauth_keys::time::SystemClock;
/// use aauth_metadata::HttpsUrl;
/// use aauth_oauth::{ClientAuth, ClientConfig, ClientCredentials};
/// let tokens = ClientCredentials::new(
///     ClientConfig::new(
///         HttpsUrl::parse("https://login.example/token")?,
///         ClientAuth::SecretBasic { client_id: "svc".into(), secret: "…".into() },
///     )
///     .scope("read")
///     .resource("https://api.example"),
///     transport,
///     Arc::new(SystemClock),
/// );
/// let token = tokens.token().await?; // cached; refreshed 60 s before it expires
/// # let _ = token; Ok(()) }
/// ```
pub struct ClientCredentials {
    config: ClientConfig,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    random: SharedRandom,
    state: Mutex<State>,
    /// Held across one fetch: the callers that find the token stale wait for it.
    fetching: tokio::sync::Mutex<()>,
    /// A background refresh ([`ClientCredentials::token_now`]) is running.
    refreshing: std::sync::atomic::AtomicBool,
    /// The last DPoP nonce each server (by origin) gave (RFC 9449 §8, §9).
    nonces: Mutex<std::collections::BTreeMap<String, String>>,
}

/// The most servers whose DPoP nonces a token source remembers.
const MAX_NONCE_ORIGINS: usize = 64;

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("config", &self.config)
            .field("state", &self.lock())
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// A token source for `config`, sending through `transport` (give it the egress-guarded
    /// HTTPS client), timed by `clock`.
    #[must_use]
    pub fn new(config: ClientConfig, transport: Arc<dyn Transport>, clock: Arc<dyn Clock>) -> Self {
        let breaker = CircuitBreaker::new(config.breaker);
        Self {
            config,
            transport,
            clock,
            random: SharedRandom::default(),
            state: Mutex::new(State {
                token: None,
                breaker,
                fetches: 0,
                generation: 0,
                last_error: None,
                failed_at: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
            refreshing: std::sync::atomic::AtomicBool::new(false),
            nonces: Mutex::default(),
        }
    }

    /// Remembers the `DPoP-Nonce` a server at `url`'s origin answered with, for the
    /// proofs sent to it from now on (what [`BearerLayer`], [`Presenter`] and the token
    /// requests do by themselves; call it when sending requests another way). A value
    /// that could not be a nonce is ignored.
    pub fn learn_dpop_nonce(&self, url: &str, nonce: &str) {
        let Some(origin) = origin_of(url) else {
            return;
        };
        if nonce.is_empty()
            || nonce.len() > crate::MAX_NONCE_LEN
            || !nonce
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            return;
        }
        let mut nonces = self.nonces.lock().unwrap_or_else(PoisonError::into_inner);
        if nonces.len() >= MAX_NONCE_ORIGINS && !nonces.contains_key(&origin) {
            nonces.pop_first();
        }
        nonces.insert(origin, nonce.to_owned());
    }

    /// Learns the `DPoP-Nonce` of a response from `url`, if it carries one.
    fn learn_from(&self, url: &str, headers: &http::HeaderMap) {
        if let Some(n) = headers.get("dpop-nonce").and_then(|v| v.to_str().ok()) {
            self.learn_dpop_nonce(url, n);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many token requests were sent (retries included).
    #[must_use]
    pub fn fetches(&self) -> u64 {
        self.lock().fetches
    }

    /// The breaker's state.
    #[must_use]
    pub fn breaker(&self) -> BreakerState {
        self.lock().breaker.state()
    }

    /// The token to use now. See the module docs for when it is fetched.
    ///
    /// # Errors
    ///
    /// [`ClientError`]: the server's refusal at once; `Unavailable` or `CircuitOpen` once
    /// no unexpired token is left to serve.
    pub async fn token(&self) -> Result<Arc<IssuedToken>, ClientError> {
        let now = self.clock.now();
        if let Some(t) = self.fresh(now) {
            return Ok(t);
        }
        // A refresh failed a moment ago: the token held serves until the pause is over.
        let paused = self
            .lock()
            .failed_at
            .is_some_and(|at| now.as_secs() < at.as_secs().saturating_add(REFRESH_PAUSE));
        if paused && let Some(t) = self.unexpired(now) {
            return Ok(t);
        }
        let generation = self.lock().generation;
        let _one = if let Ok(one) = self.fetching.try_lock() {
            one
        } else {
            // Someone is fetching: the token held serves until it expires.
            if let Some(t) = self.unexpired(now) {
                return Ok(t);
            }
            self.fetching.lock().await
        };
        // Another caller may have fetched while this one waited.
        if let Some(t) = self.fresh(self.clock.now()) {
            return Ok(t);
        }
        let shared = {
            let state = self.lock();
            (state.generation != generation)
                .then(|| state.last_error.clone())
                .flatten()
        };
        let outcome = match shared {
            Some(e) => Err(e),
            None => {
                let outcome = self.fetch().await;
                let mut state = self.lock();
                state.generation += 1;
                state.last_error = outcome.as_ref().err().cloned();
                // A refusal is answered as it is (never with the token held): no pause.
                state.failed_at =
                    matches!(&outcome, Err(e) if !matches!(e, ClientError::Refused { .. }))
                        .then(|| self.clock.now());
                outcome
            }
        };
        match outcome {
            Ok(t) => Ok(t),
            Err(e @ ClientError::Refused { .. }) => Err(e),
            // Stale-if-error: the token it has, until it expires (by the clock now, after
            // however long the fetch and its retries took).
            Err(e) => self.unexpired(self.clock.now()).ok_or(e),
        }
    }

    /// As [`ClientCredentials::token`], but a caller with an unexpired token in hand
    /// never waits for its refresh: inside the refresh margin the token held is returned
    /// at once and the refresh runs in a task of the current Tokio runtime (one at a
    /// time), so that no request waits on the token endpoint until the token has expired.
    /// Outside a Tokio runtime, or with no unexpired token, it is
    /// [`ClientCredentials::token`]. [`BearerLayer`] and the agent's client call this.
    ///
    /// # Errors
    ///
    /// As [`ClientCredentials::token`].
    pub async fn token_now(self: &Arc<Self>) -> Result<Arc<IssuedToken>, ClientError> {
        let now = self.clock.now();
        if let Some(t) = self.fresh(now) {
            return Ok(t);
        }
        if let (Some(held), Ok(runtime)) =
            (self.unexpired(now), tokio::runtime::Handle::try_current())
        {
            use std::sync::atomic::Ordering;
            // After a failed refresh the held token serves until the pause is over: no
            // task is started meanwhile.
            let paused = self
                .lock()
                .failed_at
                .is_some_and(|at| now.as_secs() < at.as_secs().saturating_add(REFRESH_PAUSE));
            if !paused && !self.refreshing.swap(true, Ordering::AcqRel) {
                /// Clears the flag however the task ends.
                struct Done(Arc<ClientCredentials>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        self.0.refreshing.store(false, Ordering::Release);
                    }
                }
                let done = Done(Arc::clone(self));
                runtime.spawn(async move {
                    // Its outcome is kept (the token, or the failure the next caller
                    // shares and the pause after it).
                    let _ = done.0.token().await;
                });
            }
            return Ok(held);
        }
        self.token().await
    }

    /// Forgets the cached token, whatever it is: the next [`ClientCredentials::token`]
    /// fetches.
    pub fn invalidate(&self) {
        self.lock().token = None;
    }

    /// Forgets `rejected` (a resource said it is no longer valid) if it is still the
    /// cached token: one that a refresh has already replaced is not thrown away with it.
    pub fn invalidate_token(&self, rejected: &Arc<IssuedToken>) {
        let mut state = self.lock();
        if state
            .token
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, rejected))
        {
            state.token = None;
        }
    }

    /// The token held, if it has not expired.
    fn unexpired(&self, now: UnixTime) -> Option<Arc<IssuedToken>> {
        let state = self.lock();
        state
            .token
            .as_ref()
            .filter(|t| now < t.expires_at)
            .map(Arc::clone)
    }

    fn fresh(&self, now: UnixTime) -> Option<Arc<IssuedToken>> {
        let state = self.lock();
        let t = state.token.as_ref()?;
        let lifetime = t
            .expires_at
            .as_secs()
            .saturating_sub(t.received_at.as_secs());
        let margin = self.config.refresh_margin.min(lifetime / 2);
        (now.as_secs() < t.expires_at.as_secs().saturating_sub(margin)).then(|| Arc::clone(t))
    }

    /// One fetch with its retries, through the breaker.
    async fn fetch(&self) -> Result<Arc<IssuedToken>, ClientError> {
        let mut attempt = 0u32;
        loop {
            let now = self.clock.now();
            {
                let mut state = self.lock();
                if !state.breaker.allow(now) {
                    let until = match state.breaker.state() {
                        BreakerState::Open { until } => until,
                        _ => now,
                    };
                    return Err(ClientError::CircuitOpen { until });
                }
                state.fetches += 1;
            }
            let outcome = self.request_once(now).await;
            // A half-open breaker lets one probe through: its failure is not retried.
            let probing = matches!(self.lock().breaker.state(), BreakerState::HalfOpen { .. });
            let retry = match &outcome {
                Ok(_) | Err(Attempt::Final(_)) => None,
                Err(Attempt::Transient(..)) if probing => None,
                Err(Attempt::Transient(err, _)) => {
                    let mut jitter = [0u8; 1];
                    let _ = self.random.clone().fill(&mut jitter);
                    self.config
                        .retry
                        .delay(attempt, err, f64::from(jitter[0]) / 255.0)
                }
            };
            {
                let mut state = self.lock();
                match &outcome {
                    Ok(t) => {
                        state.breaker.record_success(now);
                        state.token = Some(Arc::clone(t));
                    }
                    Err(Attempt::Final(ClientError::Refused { .. })) => {
                        // The server answered: it is up.
                        state.breaker.record_success(now);
                    }
                    Err(_) if retry.is_none() => state.breaker.record_failure(now),
                    Err(_) => {}
                }
            }
            match (outcome, retry) {
                (Ok(t), _) => return Ok(t),
                (Err(Attempt::Final(e)), _) => return Err(e),
                (Err(Attempt::Transient(_, reason)), None) => {
                    return Err(ClientError::Unavailable { reason });
                }
                (Err(Attempt::Transient(..)), Some(delay)) => {
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn request_once(&self, now: UnixTime) -> Result<Arc<IssuedToken>, Attempt> {
        let endpoint = self.config.token_endpoint.as_str();
        let mut resp = self.send_token_request(now).await?;
        // RFC 9449 §8: a server that wants a nonce in the proof says so once; the request
        // goes again with it (once: a second refusal is the server's answer).
        if self.config.dpop.is_some()
            && resp.status() == http::StatusCode::BAD_REQUEST
            && resp.headers().contains_key("dpop-nonce")
            && refusal(400, resp.body()).code() == "use_dpop_nonce"
        {
            self.learn_from(endpoint, resp.headers());
            resp = self.send_token_request(now).await?;
        }
        self.learn_from(endpoint, resp.headers());
        let status = resp.status().as_u16();
        if status == 200 {
            let bound = self.config.dpop.is_some();
            return parse_token(resp.body(), now, self.config.default_lifetime, bound)
                .map(Arc::new)
                .map_err(Attempt::Final);
        }
        if status == 429 || status >= 500 {
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| aauth_metadata::freshness::retry_after(v, now));
            return Err(Attempt::Transient(
                FetchError::Status {
                    status,
                    retry_after,
                },
                format!("the token endpoint answered {status}"),
            ));
        }
        Err(Attempt::Final(refusal(status, resp.body())))
    }

    async fn send_token_request(&self, now: UnixTime) -> Result<http::Response<Bytes>, Attempt> {
        let req = self.build(now).map_err(Attempt::Final)?;
        self.transport
            .send(req)
            .await
            .map_err(|e| Attempt::Transient(FetchError::Transport(e.reason.clone()), e.to_string()))
    }

    fn build(&self, now: UnixTime) -> Result<http::Request<Bytes>, ClientError> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &self.config.scope {
            form.append_pair("scope", scope);
        }
        if let Some(resource) = &self.config.resource {
            form.append_pair("resource", resource);
        }
        let aud = self
            .config
            .assertion_audience
            .as_deref()
            .unwrap_or(self.config.token_endpoint.as_str());
        let mut req = authenticated_post(
            &self.config.token_endpoint,
            aud,
            &self.config.auth,
            form,
            &self.random,
            now,
        )?;
        if self.config.dpop.is_some() {
            let proof = self.dpop_proof("POST", self.config.token_endpoint.as_str(), None)?;
            let v = http::HeaderValue::from_str(&proof).map_err(|e| ClientError::Request {
                reason: e.to_string(),
            })?;
            req.headers_mut().insert("dpop", v);
        }
        Ok(req)
    }

    /// A DPoP proof (RFC 9449 §4.2) by the configured key for a request of `method` to
    /// `url` (its query and fragment left out of `htu`), with `ath` when it presents
    /// `access_token`, and the `nonce` the server at `url` last gave, if any.
    ///
    /// # Errors
    ///
    /// [`ClientError::Request`] when no DPoP key is configured or signing fails.
    pub fn dpop_proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
    ) -> Result<String, ClientError> {
        let request = |reason: String| ClientError::Request { reason };
        let key = self
            .config
            .dpop
            .as_ref()
            .ok_or_else(|| request("no DPoP key is configured".to_owned()))?;
        let alg = match key.algorithm() {
            Algorithm::Es256 => "ES256",
            _ => "EdDSA",
        };
        let jwk = key.public_key().to_jwk().to_json();
        let jti = random_id(&mut self.random.clone(), 16).map_err(|e| request(e.to_string()))?;
        let htu = url.split(['?', '#']).next().unwrap_or(url);
        let mut claims = format!(
            r#"{{"jti":"{jti}","htm":{},"htu":{},"iat":{}"#,
            json_string(method),
            json_string(htu),
            self.clock.now().as_secs()
        );
        if let Some(token) = access_token {
            claims.push_str(&format!(
                r#","ath":"{}""#,
                base64url::encode(&aauth_keys::digest::sha256(token.as_bytes()))
            ));
        }
        let nonce = origin_of(url).and_then(|o| {
            self.nonces
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&o)
                .cloned()
        });
        if let Some(nonce) = nonce {
            claims.push_str(&format!(r#","nonce":{}"#, json_string(&nonce)));
        }
        claims.push('}');
        let header = format!(r#"{{"typ":"dpop+jwt","alg":"{alg}","jwk":{jwk}}}"#);
        let input = format!(
            "{}.{}",
            base64url::encode(header.as_bytes()),
            base64url::encode(claims.as_bytes())
        );
        let sig = key
            .sign(input.as_bytes())
            .map_err(|e| request(e.to_string()))?;
        Ok(format!("{input}.{}", base64url::encode(&sig)))
    }

    /// The client id this source authenticates as.
    #[must_use]
    pub fn client_id(&self) -> &str {
        self.config.auth.client_id()
    }

    /// Presents `token` on a request of `method` to `url`: `Authorization: Bearer …`,
    /// or for a DPoP-bound token (`token_type` `DPoP`, RFC 9449 §7.1) `Authorization:
    /// DPoP …` with a fresh proof in `DPoP`. The `Authorization` value is marked
    /// sensitive.
    ///
    /// # Errors
    ///
    /// [`ClientError::Request`] when a DPoP proof cannot be made;
    /// [`ClientError::Response`] when the token is not a header value.
    pub fn present(
        &self,
        token: &IssuedToken,
        method: &str,
        url: &str,
        headers: &mut http::HeaderMap,
    ) -> Result<(), ClientError> {
        let bound = token.token_type.eq_ignore_ascii_case("DPoP");
        if bound {
            let proof = self.dpop_proof(method, url, Some(&token.access_token))?;
            let v = http::HeaderValue::from_str(&proof).map_err(|e| ClientError::Request {
                reason: e.to_string(),
            })?;
            headers.insert("dpop", v);
        }
        let scheme = if bound { "DPoP" } else { "Bearer" };
        let mut v = http::HeaderValue::from_str(&format!("{scheme} {}", token.access_token))
            .map_err(|e| ClientError::Response {
                reason: format!("access_token is not a header value: {e}"),
            })?;
        v.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, v);
        Ok(())
    }
}

/// A form `POST` to `endpoint`, the client authenticated by `auth` (RFC 6749 §2.3.1,
/// RFC 7523 §2.2): what the token and introspection endpoints take. A `private_key_jwt`
/// assertion names `aud` (the endpoint itself, the server's issuer, or another value the
/// server requires).
pub(crate) fn authenticated_post(
    endpoint: &HttpsUrl,
    aud: &str,
    auth: &ClientAuth,
    mut form: form_urlencoded::Serializer<'_, String>,
    random: &SharedRandom,
    now: UnixTime,
) -> Result<http::Request<Bytes>, ClientError> {
    let request_error = |e: &dyn std::fmt::Display| ClientError::Request {
        reason: e.to_string(),
    };
    let mut req = http::Request::post(endpoint.as_str())
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json");
    match auth {
        ClientAuth::SecretBasic { client_id, secret } => {
            // RFC 6749 §2.3.1: each part form-encoded, then Basic.
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let basic = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{}:{}", enc(client_id), enc(secret)).as_bytes(),
            );
            let mut v = http::HeaderValue::from_str(&format!("Basic {basic}"))
                .map_err(|e| request_error(&e))?;
            v.set_sensitive(true);
            req = req.header(http::header::AUTHORIZATION, v);
        }
        ClientAuth::SecretPost { client_id, secret } => {
            form.append_pair("client_id", client_id);
            form.append_pair("client_secret", secret);
        }
        ClientAuth::PrivateKeyJwt {
            client_id,
            key,
            kid,
        } => {
            form.append_pair("client_id", client_id);
            form.append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            );
            form.append_pair(
                "client_assertion",
                &assertion(aud, client_id, key.as_ref(), kid, random, now)?,
            );
        }
    }
    req.body(Bytes::from(form.finish()))
        .map_err(|e| request_error(&e))
}

/// The RFC 7523 §3 client assertion for the audience `aud`.
fn assertion(
    aud: &str,
    client_id: &str,
    key: &dyn Signer,
    kid: &str,
    random: &SharedRandom,
    now: UnixTime,
) -> Result<String, ClientError> {
    let alg = match key.algorithm() {
        Algorithm::Es256 => "ES256",
        _ => "EdDSA",
    };
    let jti = random_id(&mut random.clone(), 16).map_err(|e| ClientError::Request {
        reason: e.to_string(),
    })?;
    let header = format!(
        r#"{{"alg":"{alg}","typ":"JWT","kid":{}}}"#,
        json_string(kid)
    );
    let claims = format!(
        r#"{{"iss":{id},"sub":{id},"aud":{aud},"jti":"{jti}","iat":{iat},"exp":{exp}}}"#,
        id = json_string(client_id),
        aud = json_string(aud),
        iat = now.as_secs(),
        exp = now.as_secs() + 60,
    );
    let input = format!(
        "{}.{}",
        base64url::encode(header.as_bytes()),
        base64url::encode(claims.as_bytes())
    );
    let sig = key
        .sign(input.as_bytes())
        .map_err(|e| ClientError::Request {
            reason: e.to_string(),
        })?;
    Ok(format!("{input}.{}", base64url::encode(&sig)))
}

/// One attempt's failure: worth retrying (with what the retry policy reads), or not.
enum Attempt {
    Transient(FetchError, String),
    Final(ClientError),
}

/// A JSON string literal for `s`.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// RFC 6749 §5.1; a `DPoP` token only when `dpop_key` (a proof can be made for it).
fn parse_token(
    body: &[u8],
    now: UnixTime,
    default_lifetime: u64,
    dpop_key: bool,
) -> Result<IssuedToken, ClientError> {
    let bad = |reason: String| ClientError::Response { reason };
    let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8".to_owned()))?;
    let o = Object::parse(text).map_err(|e| bad(e.to_string()))?;
    let string = |name: &str| -> Result<Option<String>, ClientError> {
        o.get(name)
            .map(|raw| string_value(raw).map(std::borrow::Cow::into_owned))
            .transpose()
            .map_err(|e| bad(format!("{name}: {e}")))
    };
    let access_token = string("access_token")?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("access_token is absent".to_owned()))?;
    if !crate::bearer::b64token(&access_token) {
        // It could never be sent (RFC 6750 §2.1): a failed fetch, not a cached token that
        // fails every request until it expires.
        return Err(bad(
            "access_token is not an RFC 6750 b64token (a character outside the syntax)".to_owned(),
        ));
    }
    let token_type = string("token_type")?.ok_or_else(|| bad("token_type is absent".to_owned()))?;
    if !(token_type.eq_ignore_ascii_case("Bearer") || token_type.eq_ignore_ascii_case("DPoP")) {
        return Err(bad(format!(
            "token_type {token_type} is not Bearer or DPoP"
        )));
    }
    if token_type.eq_ignore_ascii_case("DPoP") && !dpop_key {
        // No proof could be made for it (RFC 9449 §7.1): a failed fetch, not a cached
        // token that fails every presentation until it expires.
        return Err(bad(
            "token_type DPoP, but no DPoP key is configured to prove possession".to_owned(),
        ));
    }
    let expires_in = o
        .get("expires_in")
        .map(u64_value)
        .transpose()
        .map_err(|e| bad(format!("expires_in: {e}")))?
        .unwrap_or(default_lifetime);
    Ok(IssuedToken {
        access_token,
        token_type,
        expires_at: now.plus(expires_in),
        received_at: now,
        scope: string("scope")?,
    })
}

/// Whether `resp` is a `401` whose challenge in one of `schemes` names `error`.
fn challenged<B>(resp: &http::Response<B>, schemes: &[&str], error: &str) -> bool {
    let needle = format!("error=\"{error}\"");
    resp.status() == http::StatusCode::UNAUTHORIZED
        && resp
            .headers()
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|s| schemes.iter().any(|p| s.starts_with(p)) && s.contains(&needle))
}

/// `scheme://authority` of `url` (lowercased), the key DPoP nonces are kept under.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}").to_ascii_lowercase())
}

/// RFC 6749 §5.2: the server's `error` and `error_description`, or the status alone.
pub(crate) fn refusal(status: u16, body: &[u8]) -> ClientError {
    let parsed = std::str::from_utf8(body)
        .ok()
        .and_then(|t| Object::parse(t).ok())
        .map(|o| {
            let get = |n: &str| {
                o.get(n)
                    .and_then(|r| string_value(r).ok())
                    .map(std::borrow::Cow::into_owned)
            };
            (get("error"), get("error_description"))
        });
    let (error, description) = parsed.unwrap_or((None, None));
    ClientError::Refused {
        status,
        error: error.unwrap_or_else(|| format!("http_{status}")),
        description,
    }
}

/// A tower layer that puts the client's access token on every outgoing request
/// (`Authorization: Bearer`), from a [`ClientCredentials`]; when the API answers `401`
/// with `error="invalid_token"`, the token is dropped and the request sent once more with
/// a new one. A DPoP-bound token goes as `Authorization: DPoP` with a fresh proof; the
/// `DPoP-Nonce` a resource answers with goes into the next proofs to it, and a `401`
/// asking for one (`use_dpop_nonce`) is answered by sending the request once more with
/// it. Requests carry `Bytes` bodies, so the retries can resend them.
#[derive(Debug, Clone)]
pub struct BearerLayer {
    tokens: Arc<ClientCredentials>,
}

impl BearerLayer {
    /// Tokens from `tokens`.
    #[must_use]
    pub fn new(tokens: Arc<ClientCredentials>) -> Self {
        Self { tokens }
    }
}

impl<S> tower_layer::Layer<S> for BearerLayer {
    type Service = BearerService<S>;

    fn layer(&self, inner: S) -> BearerService<S> {
        BearerService {
            inner,
            tokens: Arc::clone(&self.tokens),
        }
    }
}

/// The service [`BearerLayer`] makes.
#[derive(Debug, Clone)]
pub struct BearerService<S> {
    inner: S,
    tokens: Arc<ClientCredentials>,
}

/// Why a [`BearerService`] call failed: no token, or the inner service's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BearerServiceError<E> {
    /// No token could be had.
    #[error(transparent)]
    Token(ClientError),
    /// The inner service failed.
    #[error("{0}")]
    Inner(E),
}

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower_service::Service<http::Request<Bytes>> for BearerService<S>
where
    S: tower_service::Service<http::Request<Bytes>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Send,
    B: Send + 'static,
{
    type Response = http::Response<B>;
    type Error = BearerServiceError<S::Error>;
    type Future = BoxFuture<Result<http::Response<B>, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(BearerServiceError::Inner)
    }

    fn call(&mut self, req: http::Request<Bytes>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let tokens = Arc::clone(&self.tokens);
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let mut presenter = Presenter::new(tokens);
            loop {
                let mut req = http::Request::from_parts(parts.clone(), body.clone());
                presenter
                    .present(&mut req)
                    .await
                    .map_err(BearerServiceError::Token)?;
                std::future::poll_fn(|cx| inner.poll_ready(cx))
                    .await
                    .map_err(BearerServiceError::Inner)?;
                let resp = inner.call(req).await.map_err(BearerServiceError::Inner)?;
                if !presenter.again(&resp) {
                    return Ok(resp);
                }
            }
        })
    }
}
