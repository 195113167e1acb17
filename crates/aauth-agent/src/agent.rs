//! The agent: its key, its identifier, and its agent token, refreshed from its provider
//! inside the five-minute margin (AG-70) by one task however many ask.

use std::sync::{Arc, PoisonError, RwLock};

use aauth_headers::Scheme;
use aauth_keys::rand::SharedRandom;
use aauth_keys::time::UnixTime;
use aauth_keys::{PublicKey, Signer};
use aauth_signing::{SignOptions, SigningKey, hwk_scheme, sign};
use aauth_tokens::{AgentClaims, AgentId, ServerId, Unverified, Validation};
use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;

use crate::provider::AGENT_TOKEN_PATH;
use crate::{AgentError, AgentProvider, Transport};

/// A token is refreshed, and not presented, when fewer than this many seconds remain
/// (draft -11 §7.9.1, AG-70).
pub const REFRESH_MARGIN: u64 = 300;

/// An agent token and what the agent reads from it. `Debug` leaves the token out.
#[derive(Clone)]
#[non_exhaustive]
pub struct AgentToken {
    /// The token.
    pub token: String,
    /// Its expiry.
    pub exp: u64,
    /// The agent's Person Server (`ps`), if the provider named one.
    pub person_server: Option<ServerId>,
    /// The thumbprint of the key it binds.
    pub jkt: String,
}

impl std::fmt::Debug for AgentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentToken")
            .field("token", &"<redacted>")
            .field("exp", &self.exp)
            .field("person_server", &self.person_server)
            .field("jkt", &self.jkt)
            .finish()
    }
}

impl AgentToken {
    /// Reads a token issued to `agent` for `key`, checking that it is an agent token
    /// naming that agent and binding that key (the provider's signature is the
    /// resource's to verify; the agent only refuses a token that cannot be its own).
    ///
    /// # Errors
    ///
    /// [`AgentError::TokenCheck`].
    pub fn read(token: String, agent: &AgentId, key: &PublicKey) -> Result<Self, AgentError> {
        let fail = |check, reason: String| AgentError::check("agent", check, reason);
        let claims = Unverified::<AgentClaims>::decode(&token, &Validation::new(UnixTime(0)))
            .map_err(|e| fail("format", e.to_string()))?
            .unverified_claims()
            .clone();
        if claims.sub != *agent {
            return Err(fail("sub", format!("names {}", claims.sub)));
        }
        let jkt = key.thumbprint().as_str().to_owned();
        let bound = PublicKey::from_jwk(&claims.cnf.jwk).map_err(|e| fail("cnf", e.to_string()))?;
        if bound.thumbprint().as_str() != jkt {
            return Err(fail("cnf", "binds another key".to_owned()));
        }
        Ok(Self {
            token,
            exp: claims.exp,
            person_server: claims.ps,
            jkt,
        })
    }
}

/// Where an agent gets its agent token.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A fresh agent token for `agent` bound to `signer`'s key.
    ///
    /// # Errors
    ///
    /// [`AgentError::Provider`] when the provider refuses; [`AgentError::Transport`].
    async fn agent_token(
        &self,
        agent: &AgentId,
        signer: &dyn Signer,
        now: UnixTime,
    ) -> Result<String, AgentError>;
}

/// An agent provider in the same process.
#[async_trait]
impl TokenSource for AgentProvider {
    async fn agent_token(
        &self,
        agent: &AgentId,
        signer: &dyn Signer,
        now: UnixTime,
    ) -> Result<String, AgentError> {
        self.issue(agent, signer.public_key(), now)
            .map(|m| m.token)
            .map_err(|e| AgentError::Provider {
                status: e.status(),
                error: e.code().to_owned(),
            })
    }
}

/// An agent provider over HTTP: `POST {provider}/agent-token` signed with the enrolled
/// key (`hwk`), covering the body.
#[derive(Clone)]
pub struct HttpTokenSource {
    provider: ServerId,
    transport: Arc<dyn Transport>,
    random: SharedRandom,
}

impl std::fmt::Debug for HttpTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTokenSource")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl HttpTokenSource {
    /// The provider `provider`, reached through `transport`.
    #[must_use]
    pub fn new(provider: ServerId, transport: Arc<dyn Transport>) -> Self {
        Self {
            provider,
            transport,
            random: SharedRandom::default(),
        }
    }

    /// Where the signatures' `nonce` values come from (the operating system's CSPRNG by
    /// default).
    #[must_use]
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = random;
        self
    }
}

#[async_trait]
impl TokenSource for HttpTokenSource {
    async fn agent_token(
        &self,
        agent: &AgentId,
        signer: &dyn Signer,
        now: UnixTime,
    ) -> Result<String, AgentError> {
        #[derive(Deserialize)]
        struct Answer {
            agent_token: String,
        }
        let body = serde_json::json!({ "agent": agent })
            .to_string()
            .into_bytes();
        let (mut parts, ()) =
            http::Request::post(format!("{}{AGENT_TOKEN_PATH}", self.provider.as_str()))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(())
                .map_err(AgentError::transport)?
                .into_parts();
        let scheme = hwk_scheme(signer.public_key());
        let options = SignOptions::default().unique_for(&parts.method, &mut self.random.clone())?;
        sign(
            &mut parts,
            &body,
            &[SigningKey::new("sig", signer, &scheme)],
            &options,
            now,
        )?;
        let resp = self
            .transport
            .send(http::Request::from_parts(parts, Bytes::from(body)))
            .await?;
        if !resp.status().is_success() {
            return Err(AgentError::Provider {
                status: resp.status(),
                error: problem_error(resp.body()),
            });
        }
        serde_json::from_slice::<Answer>(resp.body())
            .map(|a| a.agent_token)
            .map_err(|e| AgentError::Provider {
                status: resp.status(),
                error: format!("unreadable answer: {e}"),
            })
    }
}

/// A sub-agent's token source: its parent asks the provider's sub-agent endpoint
/// (`POST {provider}/subagent-token`, signed under the parent's own agent token) for a
/// token naming the sub-agent and binding the sub-agent's key.
#[derive(Clone)]
pub struct SubagentTokenSource {
    provider: ServerId,
    parent: Arc<Agent>,
    transport: Arc<dyn Transport>,
    random: SharedRandom,
}

impl std::fmt::Debug for SubagentTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubagentTokenSource")
            .field("provider", &self.provider)
            .field("parent", &self.parent)
            .finish_non_exhaustive()
    }
}

impl SubagentTokenSource {
    /// `parent` asks `provider` through `transport`.
    #[must_use]
    pub fn new(provider: ServerId, parent: Arc<Agent>, transport: Arc<dyn Transport>) -> Self {
        Self {
            provider,
            parent,
            transport,
            random: SharedRandom::default(),
        }
    }

    /// Where the signatures' `nonce` values come from (the operating system's CSPRNG by
    /// default).
    #[must_use]
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = random;
        self
    }
}

#[async_trait]
impl TokenSource for SubagentTokenSource {
    async fn agent_token(
        &self,
        agent: &AgentId,
        signer: &dyn Signer,
        now: UnixTime,
    ) -> Result<String, AgentError> {
        #[derive(Deserialize)]
        struct Answer {
            agent_token: String,
        }
        let parent_token = self.parent.token(now).await?;
        let body = serde_json::json!({ "agent": agent, "jwk": signer.public_key().to_jwk() })
            .to_string()
            .into_bytes();
        let (mut parts, ()) = http::Request::post(format!(
            "{}{}",
            self.provider.as_str(),
            crate::provider::SUBAGENT_TOKEN_PATH
        ))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(())
        .map_err(AgentError::transport)?
        .into_parts();
        let parent_signer = self.parent.signer();
        let scheme = Scheme::jwt(parent_token.token.as_str());
        let options = SignOptions::default().unique_for(&parts.method, &mut self.random.clone())?;
        sign(
            &mut parts,
            &body,
            &[SigningKey::new("sig", parent_signer.as_ref(), &scheme)],
            &options,
            now,
        )?;
        let resp = self
            .transport
            .send(http::Request::from_parts(parts, Bytes::from(body)))
            .await?;
        if !resp.status().is_success() {
            return Err(AgentError::Provider {
                status: resp.status(),
                error: problem_error(resp.body()),
            });
        }
        serde_json::from_slice::<Answer>(resp.body())
            .map(|a| a.agent_token)
            .map_err(|e| AgentError::Provider {
                status: resp.status(),
                error: format!("unreadable answer: {e}"),
            })
    }
}

/// The `error` member of a problem body, or a short description of the body.
pub(crate) fn problem_error(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Problem {
        error: String,
    }
    serde_json::from_slice::<Problem>(body).map_or_else(
        |_| {
            let text = String::from_utf8_lossy(body);
            text.chars().take(120).collect()
        },
        |p| p.error,
    )
}

struct KeyState {
    signer: Arc<dyn Signer>,
    token: Option<Arc<AgentToken>>,
}

/// A refresh that failed: shared with the callers that waited for it under the same key.
struct Failed {
    at: tokio::time::Instant,
    error: AgentError,
    key: PublicKey,
}

/// An agent: identifier, signing key, and agent token. Share it behind an `Arc`.
///
/// [`Agent::token`] returns a token with more than [`REFRESH_MARGIN`] seconds left,
/// fetching a new one when needed; concurrent callers wait for the one refresh in flight,
/// and share its failure (the source is not asked again by each caller that waited).
pub struct Agent {
    id: AgentId,
    source: Arc<dyn TokenSource>,
    state: RwLock<KeyState>,
    /// Held across one refresh: when the last one failed, why, and under which key.
    refresh: tokio::sync::Mutex<Option<Failed>>,
    refreshes: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// The agent `id` signing with `signer`, its tokens from `source`.
    #[must_use]
    pub fn new(id: AgentId, signer: Arc<dyn Signer>, source: Arc<dyn TokenSource>) -> Self {
        Self {
            id,
            source,
            state: RwLock::new(KeyState {
                signer,
                token: None,
            }),
            refresh: tokio::sync::Mutex::new(None),
            refreshes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The agent identifier.
    #[must_use]
    pub fn id(&self) -> &AgentId {
        &self.id
    }

    /// The current signing key.
    #[must_use]
    pub fn signer(&self) -> Arc<dyn Signer> {
        Arc::clone(
            &self
                .state
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .signer,
        )
    }

    /// How many tokens have been fetched from the source.
    #[must_use]
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn fresh(&self, now: UnixTime) -> Option<Arc<AgentToken>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state
            .token
            .as_ref()
            .filter(|t| t.exp > now.as_secs().saturating_add(REFRESH_MARGIN))
            .cloned()
    }

    /// An agent token with more than five minutes left, refreshed if needed. A source
    /// whose tokens live less than the margin is asked on every call, and its unexpired
    /// token returned.
    ///
    /// # Errors
    ///
    /// As [`TokenSource::agent_token`], or [`AgentError::TokenCheck`] when the source
    /// answers with a token that is not this agent's or already expired.
    pub async fn token(&self, now: UnixTime) -> Result<Arc<AgentToken>, AgentError> {
        if let Some(t) = self.fresh(now) {
            return Ok(t);
        }
        self.refresh_unless(now, None).await
    }

    /// Fetches a new token unless the current one is no longer `stale` (another task
    /// refreshed meanwhile): what a `revoked_jwt` or `expired_jwt` answer triggers.
    ///
    /// # Errors
    ///
    /// As [`Agent::token`].
    pub async fn refresh(&self, now: UnixTime, stale: &str) -> Result<Arc<AgentToken>, AgentError> {
        self.refresh_unless(now, Some(stale)).await
    }

    async fn refresh_unless(
        &self,
        now: UnixTime,
        stale: Option<&str>,
    ) -> Result<Arc<AgentToken>, AgentError> {
        let entered = tokio::time::Instant::now();
        let mut last_failure = self.refresh.lock().await;
        // Time passed while another task refreshed: the request is signed as of now.
        let now = now.plus(entered.elapsed().as_secs());
        // Another task may have refreshed while this one waited, or failed to: its
        // failure is this caller's answer too.
        if let Some(t) = self.fresh(now)
            && stale.is_none_or(|s| s != t.token)
        {
            return Ok(t);
        }
        // (Not across a key rotation: the new key may be taken where the old was not.)
        let key = self.signer().public_key().clone();
        if let Some(f) = last_failure.as_ref()
            && f.at > entered
            && f.key == key
        {
            return Err(f.error.clone());
        }
        let fetched = self.fetch_token(now).await;
        *last_failure = match &fetched {
            Ok(_) => None,
            Err(e) => Some(Failed {
                at: tokio::time::Instant::now(),
                error: e.clone(),
                key,
            }),
        };
        fetched
    }

    /// Asks the source for a new token at `now`, checks it and keeps it (unless the key
    /// rotated meanwhile).
    async fn fetch_token(&self, now: UnixTime) -> Result<Arc<AgentToken>, AgentError> {
        let signer = self.signer();
        let token = self
            .source
            .agent_token(&self.id, signer.as_ref(), now)
            .await?;
        self.refreshes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = Arc::new(AgentToken::read(token, &self.id, signer.public_key())?);
        if token.exp <= now.as_secs() {
            return Err(AgentError::check(
                "agent",
                "exp",
                "the new token is already expired",
            ));
        }
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        // A rotation while fetching wins: keep nothing bound to the old key.
        if state.signer.public_key() == signer.public_key() {
            state.token = Some(Arc::clone(&token));
        }
        Ok(token)
    }

    /// Rotates to `signer`: the agent token (bound to the old key) is dropped, and so
    /// are person and auth tokens in any client's cache (they bind the old key too).
    pub fn rotate(&self, signer: Arc<dyn Signer>) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.signer = signer;
        state.token = None;
    }

    /// The `Signature-Key` member for signing under `token`.
    #[must_use]
    pub fn scheme(token: &str) -> Scheme {
        Scheme::jwt(token)
    }
}
