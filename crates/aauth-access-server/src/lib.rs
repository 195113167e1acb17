//! AAuth layer 4: the Access Server (the design card's "auth-server role").
//!
//! A resource with its own policy server names it as the `aud` of its resource tokens;
//! the person's Person Server, never the agent, asks it for the auth token (four-party
//! access, draft -11 §9.1). The Access Server accepts requests only from the Person
//! Servers it trusts, each signed by the Person Server as itself (`sig=jwks_uri;id;
//! dwk="aauth-person.json";kid`, covering the body), checks the agent token, the
//! resource token (for it, bound to the agent's or sub-agent's key, naming the calling
//! Person Server), the presented token (that Person Server's person or auth token for the
//! resource, bound to the same key, for the same person, mission and tenant) and any
//! upstream token, asks its [`AccessPolicy`], and issues an auth token
//! (`dwk: aauth-access.json`) capped by every token it came from.
//!
//! Like the Person Server it is sans-IO ([`AccessServer::handle`]) and mounts on axum or
//! hyper as an [`aauth_metadata::serve::EndpointService`].
//!
//! ```
//! use std::sync::Arc;
//! use aauth_access_server::AccessServer;
//! use aauth_keys::PrivateKey;
//! use aauth_tokens::{ServerId, StaticIssuerKeys};
//!
//! let id = ServerId::parse("https://as.example").unwrap();
//! let server = AccessServer::new(
//!     id,
//!     Arc::new(PrivateKey::ed25519_from_seed(&[7; 32])),
//!     "as-1",
//!     Arc::new(StaticIssuerKeys::new()),
//! )
//! .unwrap()
//! .trusted([ServerId::parse("https://ps.example").unwrap()]);
//! let doc = server
//!     .published()
//!     .respond(&http::Method::GET, "/.well-known/aauth-access.json")
//!     .unwrap();
//! assert!(std::str::from_utf8(doc.body()).unwrap().contains("auth_token_endpoint"));
//! ```

// docs.rs marks each feature-gated item with the feature that enables it.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod people;
mod policy;
#[cfg(feature = "postgres")]
mod postgres;
mod server;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;

pub use error::{AsError, TokenParameter};
pub use people::PeopleAuthenticator;
pub use policy::{AccessDecision, AccessPolicy, AccessRequest, GrantTrusted, TrustByInteraction};
#[cfg(feature = "postgres")]
pub use postgres::PgStore;
pub use server::{
    AUTH_TOKEN_PATH, AccessServer, DEFAULT_MAX_WAITING, DEFAULT_MAX_WAITING_TOTAL, INTERACT_PATH,
    JWKS_PATH, PENDING_PATH, REVOCATION_PATH, REVOCATION_PENDING_PATH,
};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use store::{
    AsStore, Awaiting, BindError, IssuedRecord, MemoryStore, RECORD_GRACE, Standing, StandingQuery,
    StoreError, TAKE_LEASE, WAITING_KEPT, WaitingCaps, WaitingCreated, WaitingPut, WaitingRecord,
};

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
