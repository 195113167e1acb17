//! The agent provider: issues agent tokens to the agents it has enrolled, and sub-agent
//! tokens to their sub-agents; publishes its metadata and JWKS. Nothing is minted for an
//! unauthenticated caller: an agent token is issued only to a request signed by a key
//! enrolled for that agent, a sub-agent token only to a request signed under the parent's
//! own agent token from this provider.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError, RwLock};

use aauth_keys::rand::SharedRandom;
use aauth_keys::time::UnixTime;
use aauth_keys::{JwkSet, PublicKey, Signer};
use aauth_metadata::outbound::{Revoker, ServerSigner};
use aauth_metadata::{AgentProviderMetadata, HttpsUrl, MetadataDocument, Published};
use aauth_signing::{
    AuthoritySource, JwtResolver, ReplayGuard, ReplayStore, SchemeResolver, Verifier, VerifyError,
    VerifyPolicy,
};
use aauth_tokens::{AgentId, ServerId, StaticIssuerKeys, TokenType};
use bytes::Bytes;
use http::{Response, request::Parts};
use serde::Deserialize;

/// Where an enrolled agent asks for its agent token: `POST`, signed with the enrolled key
/// (`Signature-Key: sig=hwk`), body `{"agent": "aauth:…"}`.
pub const AGENT_TOKEN_PATH: &str = "/agent-token";
/// Where an agent asks for a sub-agent token: `POST`, signed under its own agent token,
/// body `{"agent": "aauth:parent+name@domain", "jwk": {…}}`.
pub const SUBAGENT_TOKEN_PATH: &str = "/subagent-token";
/// The JWKS path named by the provider's `jwks_uri`.
pub const JWKS_PATH: &str = "/jwks.json";
/// The default agent-token lifetime: one hour (the draft's cap is 24 h; an agent
/// refreshes five minutes before expiry, so a short lifetime costs little).
pub const DEFAULT_AGENT_TOKEN_LIFETIME: u64 = 3600;

mod agent_token;
mod error;
mod router;
mod subagent_token;

pub use error::ProviderError;

#[derive(Debug, Default)]
struct Enrollment {
    keys: BTreeSet<String>,
    person_server: Option<ServerId>,
}

/// An agent provider. Cheap to share behind an `Arc`.
///
/// ```
/// use std::sync::Arc;
/// use aauth_agent::AgentProvider;
/// use aauth_keys::{PrivateKey, time::UnixTime};
/// use aauth_tokens::{AgentId, ServerId};
///
/// let provider = AgentProvider::new(
///     ServerId::parse("https://agent.example")?,
///     Arc::new(PrivateKey::ed25519_from_seed(&[1; 32])),
///     "key-1",
/// )?;
/// let agent = AgentId::parse("aauth:assistant@agent.example")?;
/// let agent_key = PrivateKey::ed25519_from_seed(&[2; 32]);
/// // Not enrolled: nothing is minted.
/// assert!(provider.issue(&agent, agent_key.public_key(), UnixTime(1_800_000_000)).is_err());
/// provider.enroll(&agent, agent_key.public_key(), None)?;
/// let token = provider.issue(&agent, agent_key.public_key(), UnixTime(1_800_000_000))?;
/// assert_eq!(token.exp, 1_800_000_000 + 3600);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AgentProvider {
    id: ServerId,
    signer: Arc<dyn Signer>,
    kid: String,
    lifetime: u64,
    enrolled: Arc<RwLock<BTreeMap<AgentId, Enrollment>>>,
    published: Published,
    enrolled_keys: Verifier,
    own_tokens: Verifier,
    random: SharedRandom,
}

impl std::fmt::Debug for AgentProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentProvider")
            .field("id", &self.id)
            .field("kid", &self.kid)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl AgentProvider {
    /// A provider `id` signing agent tokens with `signer` under `kid`, publishing
    /// `/.well-known/aauth-agent.json` with `jwks_uri` `{id}/jwks.json`.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Mint`] when the JWKS URL cannot be formed.
    pub fn new(id: ServerId, signer: Arc<dyn Signer>, kid: &str) -> Result<Self, ProviderError> {
        let jwks_uri = HttpsUrl::parse(&format!("{}{JWKS_PATH}", id.as_str())).map_err(|e| {
            ProviderError::Mint {
                reason: e.to_string(),
            }
        })?;
        let mut jwk = signer.public_key().to_jwk();
        jwk.kid = Some(kid.to_owned());
        let mut doc = AgentProviderMetadata::new(id.clone(), jwks_uri);
        // Both verifiers below keep the default policy's algorithms.
        doc.common.accepts(&aauth_keys::Algorithm::ALL);
        let published = Published::new(&doc).jwks(JWKS_PATH, &JwkSet::from_jwks(&[jwk]));
        // Requests must be addressed to this provider, and each is accepted once (one
        // replay store for both endpoints: a replayed token request would mint again).
        let replay = ReplayGuard::in_memory();
        let enrolled: Arc<RwLock<BTreeMap<AgentId, Enrollment>>> = Arc::default();
        // Only an enrolled key's request is verified, and so recorded in the replay
        // store: before, anyone's self-signed requests filled the share every `hwk`
        // signer has together, and the enrolled agents were refused (429) with them.
        let enrolled_keys = Verifier::new(
            VerifyPolicy::for_server(&id).accept_schemes(&["hwk"]),
            Arc::new(SchemeResolver::new().hwk()),
        )
        .gate(Arc::new(enrolled_only(Arc::clone(&enrolled))))
        .replay(replay.clone());
        let own =
            StaticIssuerKeys::new().with(&id, "aauth-agent.json", kid, signer.public_key().clone());
        let own_tokens = Verifier::new(
            VerifyPolicy::for_server(&id).accept_schemes(&["jwt"]),
            Arc::new(
                SchemeResolver::new().jwt(JwtResolver::new(Arc::new(own), &[TokenType::Agent])),
            ),
        )
        .replay(replay);
        Ok(Self {
            id,
            signer,
            kid: kid.to_owned(),
            lifetime: DEFAULT_AGENT_TOKEN_LIFETIME,
            enrolled,
            published,
            enrolled_keys,
            own_tokens,
            random: SharedRandom::default(),
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

    /// The authorities the provider's endpoints answer to (by default its identifier's
    /// host): several names, or the external authority behind a proxy.
    #[must_use]
    pub fn authority(mut self, source: AuthoritySource) -> Self {
        self.enrolled_keys = self.enrolled_keys.authority(source.clone());
        self.own_tokens = self.own_tokens.authority(source);
        self
    }

    /// Records accepted requests in `store` (shared across instances) instead of this
    /// provider's own memory.
    #[must_use]
    pub fn replay_store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        let guard = ReplayGuard::new(store);
        self.enrolled_keys = self.enrolled_keys.replay(guard.clone());
        self.own_tokens = self.own_tokens.replay(guard);
        self
    }

    /// Turns the replay check off (only where a replayed token request is harmless).
    #[must_use]
    pub fn without_replay_check(mut self) -> Self {
        self.enrolled_keys = self.enrolled_keys.without_replay();
        self.own_tokens = self.own_tokens.without_replay();
        self
    }

    /// Agent tokens last `lifetime` (whole seconds, at most 24 h).
    #[must_use]
    pub fn lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.lifetime = lifetime
            .as_secs()
            .min(aauth_tokens::AGENT_TOKEN_MAX_LIFETIME);
        self
    }

    /// Where agent tokens' `jti` values come from (the operating system's CSPRNG by
    /// default).
    #[must_use]
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = random;
        self
    }

    /// The provider's identifier.
    #[must_use]
    pub fn id(&self) -> &ServerId {
        &self.id
    }

    /// Revocations signed as this provider (`sig=jwks_uri;dwk="aauth-agent.json"`), sent
    /// through `transport` (checklist AP-07): revoke an agent token at the agent's Person
    /// Server, which ends everything it issued to that agent.
    ///
    /// ```no_run
    /// # async fn demo(
    /// #     provider: &aauth_agent::AgentProvider,
    /// #     transport: std::sync::Arc<dyn aauth_metadata::Transport>,
    /// #     ps: aauth_tokens::ServerId,
    /// #     token: aauth_tokens::Minted,
    /// # ) -> Result<(), aauth_metadata::outbound::RevocationError> {
    /// use aauth_metadata::PersonServerMetadata;
    /// let now = aauth_keys::time::UnixTime(1_800_000_000);
    /// provider
    ///     .revoker(transport)
    ///     .revoke::<PersonServerMetadata>(&ps, &token.jti, token.exp, now)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn revoker(&self, transport: Arc<dyn aauth_metadata::Transport>) -> Revoker {
        let signer = ServerSigner::new(
            self.id.clone(),
            AgentProviderMetadata::DWK,
            Arc::clone(&self.signer),
            &self.kid,
        )
        .random(self.random.clone());
        Revoker::new(signer, transport)
    }

    /// The provider's metadata document and JWKS, for serving.
    #[must_use]
    pub fn published(&self) -> &Published {
        &self.published
    }

    /// Enrolls `key` for `agent` (an agent may have several keys, for rotation), with the
    /// agent's Person Server if it has one (the tokens' `ps` claim).
    ///
    /// # Errors
    ///
    /// [`ProviderError::ForeignAgent`] for an identifier outside this provider's domain;
    /// [`ProviderError::Subagent`] for one with a `+` in its local part, which names a
    /// sub-agent (`parent+name`): enrolled as an agent of its own, it could not be told
    /// from the sub-agent of that name its parent may mint.
    pub fn enroll(
        &self,
        agent: &AgentId,
        key: &PublicKey,
        person_server: Option<&ServerId>,
    ) -> Result<(), ProviderError> {
        self.own_domain(agent)?;
        if agent.local().contains('+') {
            return Err(ProviderError::Subagent {
                reason: format!(
                    "{agent} names a sub-agent (a + in its local part): enroll its parent, \
                     which asks for sub-agent tokens"
                ),
            });
        }
        let mut map = self
            .enrolled
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let e = map.entry(agent.clone()).or_default();
        e.keys.insert(key.thumbprint().as_str().to_owned());
        if let Some(ps) = person_server {
            e.person_server = Some(ps.clone());
        }
        Ok(())
    }

    /// Removes `key` from `agent`'s enrolled keys: no further token binds it.
    pub fn unenroll(&self, agent: &AgentId, key: &PublicKey) {
        let mut map = self
            .enrolled
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = map.get_mut(agent) {
            e.keys.remove(key.thumbprint().as_str());
        }
    }

    fn own_domain(&self, agent: &AgentId) -> Result<(), ProviderError> {
        if agent.domain() == self.id.host() {
            Ok(())
        } else {
            Err(ProviderError::ForeignAgent {
                agent: agent.as_str().to_owned(),
                provider: self.id.as_str().to_owned(),
            })
        }
    }
}

/// The signer gate of `/agent-token`: an `hwk` key enrolled for some agent (which agent
/// the request names is checked after the signature verifies).
fn enrolled_only(
    enrolled: Arc<RwLock<BTreeMap<AgentId, Enrollment>>>,
) -> impl Fn(&aauth_headers::Scheme) -> Result<(), VerifyError> + Send + Sync {
    move |scheme| {
        let aauth_headers::Scheme::Hwk(hwk) = scheme else {
            return Err(VerifyError::SignerNotAdmitted {
                signer: scheme.name().to_owned(),
            });
        };
        let thumbprint = aauth_signing::resolve_hwk(hwk)?.key.thumbprint();
        let map = enrolled.read().unwrap_or_else(PoisonError::into_inner);
        if map.values().any(|e| e.keys.contains(thumbprint.as_str())) {
            Ok(())
        } else {
            Err(VerifyError::SignerNotAdmitted {
                signer: format!("the agent of hwk key {}", thumbprint.as_str()),
            })
        }
    }
}

impl AgentProvider {
    /// Signs the agent token `b` at `now` with this provider's key.
    fn sign(
        &self,
        b: aauth_tokens::AgentTokenBuilder,
        now: UnixTime,
    ) -> Result<aauth_tokens::Minted, ProviderError> {
        let minted = b
            .sign(
                self.signer.as_ref(),
                &self.kid,
                now,
                &mut self.random.clone(),
            )
            .map_err(|e| ProviderError::Mint {
                reason: e.to_string(),
            })?;
        metrics::counter!(aauth_metadata::metric::TOKENS_ISSUED, "type" => "agent").increment(1);
        Ok(minted)
    }
}

fn parse<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|e| ProviderError::InvalidRequest {
        reason: e.to_string(),
    })
}

/// Agent tokens straight from a provider in the same process: for a server that is its
/// own agent provider (an intermediary in call chaining), whose agents need no HTTP
/// round trip to their provider.
#[derive(Debug, Clone)]
pub struct LocalTokenSource(pub Arc<AgentProvider>);

#[async_trait::async_trait]
impl crate::TokenSource for LocalTokenSource {
    async fn agent_token(
        &self,
        agent: &AgentId,
        signer: &dyn Signer,
        now: UnixTime,
    ) -> Result<String, crate::AgentError> {
        self.0
            .issue(agent, &signer.public_key().clone(), now)
            .map(|m| m.token)
            .map_err(|e| crate::AgentError::Provider {
                status: e.status(),
                error: e.code().to_owned(),
            })
    }
}

#[async_trait::async_trait]
impl aauth_metadata::serve::Endpoint for AgentProvider {
    async fn respond(&self, parts: &Parts, body: &[u8], now: UnixTime) -> Option<Response<Bytes>> {
        self.handle(parts, body, now).await
    }
}
