//! Shared fixtures: keys, a counting resolver, and a forge that builds arbitrary tokens
//! without the production JWS code.

use std::sync::atomic::{AtomicUsize, Ordering};

use aauth_keys::rand::OsRandom;
use aauth_keys::time::UnixTime;
use aauth_keys::{PrivateKey, PublicKey, Signer, base64url};
use aauth_tokens::{
    AgentId, AgentTokenBuilder, IssuerKeyResolver, KeyRequest, Minted, ResolveError, ServerId,
    StaticIssuerKeys,
};
use async_trait::async_trait;

pub const NOW: UnixTime = UnixTime(1_800_000_000);

pub fn sid(s: &str) -> ServerId {
    ServerId::parse(s).unwrap()
}

pub fn provider_key() -> PrivateKey {
    PrivateKey::ed25519_from_seed(&[1; 32])
}

pub fn ps_key() -> PrivateKey {
    PrivateKey::ed25519_from_seed(&[3; 32])
}

pub fn agent_key() -> PrivateKey {
    PrivateKey::ed25519_from_seed(&[2; 32])
}

/// Issuer keys for agent.example (agent provider), ps.example (Person Server),
/// as.example (Access Server) and resource.example, all under kid "k1".
pub fn issuers() -> StaticIssuerKeys {
    StaticIssuerKeys::new()
        .with(
            &sid("https://agent.example"),
            "aauth-agent.json",
            "k1",
            provider_key().public_key().clone(),
        )
        .with(
            &sid("https://ps.example"),
            "aauth-person.json",
            "k1",
            ps_key().public_key().clone(),
        )
        .with(
            &sid("https://as.example"),
            "aauth-access.json",
            "k1",
            ps_key().public_key().clone(),
        )
        .with(
            &sid("https://resource.example"),
            "aauth-resource.json",
            "k1",
            ps_key().public_key().clone(),
        )
}

/// Counts resolver calls, to prove cheap checks run before any key lookup.
#[derive(Debug, Default)]
pub struct Counting {
    pub inner: StaticIssuerKeys,
    pub resolves: AtomicUsize,
    pub refreshes: AtomicUsize,
    /// Returned by `refresh`, if set.
    pub fresh: Option<PublicKey>,
}

impl Counting {
    pub fn new(inner: StaticIssuerKeys) -> Self {
        Self {
            inner,
            ..Self::default()
        }
    }

    pub fn resolves(&self) -> usize {
        self.resolves.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl IssuerKeyResolver for Counting {
    async fn resolve(&self, req: &KeyRequest<'_>) -> Result<PublicKey, ResolveError> {
        self.resolves.fetch_add(1, Ordering::SeqCst);
        self.inner.resolve(req).await
    }

    async fn refresh(&self, _req: &KeyRequest<'_>) -> Result<Option<PublicKey>, ResolveError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        Ok(self.fresh.clone())
    }
}

pub fn agent_token() -> Minted {
    AgentTokenBuilder::new(
        sid("https://agent.example"),
        AgentId::parse("aauth:assistant@agent.example").unwrap(),
        agent_key().public_key(),
    )
    .person_server(sid("https://ps.example"))
    .sign(&provider_key(), "k1", NOW, &mut OsRandom)
    .unwrap()
}

/// Builds `b64(header).b64(payload).b64(sig)` from raw JSON text, signed by `key`.
pub fn forge(header: &str, payload: &str, key: &dyn Signer) -> String {
    let input = format!(
        "{}.{}",
        base64url::encode(header.as_bytes()),
        base64url::encode(payload.as_bytes())
    );
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", base64url::encode(&sig))
}

/// A valid agent-token payload (as JSON text) at NOW, for forging variants.
pub fn agent_payload() -> serde_json::Value {
    serde_json::json!({
        "iss": "https://agent.example",
        "dwk": "aauth-agent.json",
        "sub": "aauth:assistant@agent.example",
        "jti": "j1",
        "cnf": { "jwk": agent_key().public_key().to_jwk() },
        "iat": NOW.0,
        "exp": NOW.0 + 3600,
    })
}

pub const AGENT_HEADER: &str = r#"{"alg":"Ed25519","kid":"k1","typ":"aa-agent+jwt"}"#;

pub fn block<F: Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}
