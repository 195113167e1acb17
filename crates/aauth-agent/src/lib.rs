//! AAuth layer 3: the agent role.
//!
//! - [`Agent`]: an agent identifier, its signing key and its agent token, refreshed from
//!   a [`TokenSource`] when fewer than five minutes remain, one refresh however many
//!   tasks ask.
//! - [`AAuthClient`]: the signing HTTP client. It signs each request with the best token
//!   it holds for the resource (auth, person, agent), sends `AAuth-Capabilities`, and
//!   answers challenges by itself: `requirement=agent-token | person-token | auth-token`
//!   (the resource token checked per AG-22, the auth token per AG-23, both through a
//!   [`PersonServerClient`]), `Signature-Error` `revoked_jwt`/`expired_jwt`/`clock_skew`
//!   (AG-60), `202` deferred responses (polling with `Retry-After`, `429` slow-down,
//!   interaction and clarification hooks, `DELETE` on give-up), and `AAuth-Access`
//!   session tokens. [`SigningLayer`] is the same as a tower layer over any HTTP
//!   service. With the feature `oauth` (off by default), `ClientBuilder::oauth_fallback`
//!   lets the client reach the APIs it names that offer only `WWW-Authenticate: Bearer`
//!   with an OAuth client-credentials token (`aauth_oauth::ClientCredentials`); no other
//!   server is ever handed the token.
//! - [`AgentProvider`]: issues agent tokens to enrolled agents and sub-agent tokens to
//!   their sub-agents, and publishes its metadata and JWKS. It mints nothing for an
//!   unauthenticated caller.
//!
//! ```
//! use std::sync::Arc;
//! use aauth_agent::{AAuthClient, Agent, AgentProvider};
//! use aauth_keys::PrivateKey;
//! use aauth_tokens::{AgentId, ServerId};
//!
//! let provider = Arc::new(AgentProvider::new(
//!     ServerId::parse("https://agent.example")?,
//!     Arc::new(PrivateKey::ed25519_from_seed(&[1; 32])),
//!     "key-1",
//! )?);
//! let id = AgentId::parse("aauth:assistant@agent.example")?;
//! let key = Arc::new(PrivateKey::ed25519_from_seed(&[2; 32]));
//! provider.enroll(&id, key.public_key(), None)?;
//! let agent = Arc::new(Agent::new(id, key, provider));
//! let layer = AAuthClient::builder(agent).layer(); // wrap any Bytes-bodied HTTP service
//! # drop(layer);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// docs.rs marks each feature-gated item with the feature that enables it.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod agent;
mod cache;
mod client;
mod compat;
mod deferred_poll;
mod error;
mod https;
mod provider;
mod ps_client;
#[cfg(feature = "reqwest")]
mod reqwest_transport;

pub use aauth_metadata::{ServiceTransport, Transport, TransportError};
pub use agent::{
    Agent, AgentToken, HttpTokenSource, REFRESH_MARGIN, SubagentTokenSource, TokenSource,
};
pub use cache::{CachedToken, TokenCache, TokenKind};
pub use client::{
    AAuthClient, AuthTokenRequest, ClientBuilder, Interaction, PersonServerClient,
    PersonTokenRequest, SigningLayer,
};
pub use compat::Compatibility;
pub use deferred_poll::PollPolicy;
pub use error::{AgentError, PendingCap};
pub use https::HttpsClient;
pub use provider::{
    AGENT_TOKEN_PATH, AgentProvider, DEFAULT_AGENT_TOKEN_LIFETIME, JWKS_PATH, LocalTokenSource,
    ProviderError, SUBAGENT_TOKEN_PATH,
};
pub use ps_client::{ApprovedMission, HttpPersonServer, Permission, SubagentRelay, UpstreamRelay};
#[cfg(feature = "reqwest")]
pub use reqwest_transport::{REQWEST_MAX_BODY, REQWEST_TIMEOUT, ReqwestTransport};

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
